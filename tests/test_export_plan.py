"""Export planning (which images, titles, names, manifest records) and the manifest file, without drawing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from attnviz.export.files import MANIFEST, TMP_PREFIX, Manifest, prepare_folder, slug, stem, write_atomic
from attnviz.export.plan import content_key, grid_columns, look, plan, record
from attnviz.render.image import Style
from attnviz.result import AttentionResult, Origin, Stack, Tokens
from attnviz.spec import Combine, ExportView, ViewSpec
from attnviz.views import apply

STYLE = Style("png")
OURS = {"index": 0, "view": "head"}  # fields every manifest line attnviz writes has


def model_result(layers: int = 3, heads: int = 4, n: int = 5) -> AttentionResult:
    w = np.random.default_rng(1).random((layers, heads, n, n), dtype=np.float32)
    toks = Tokens(tuple(f"t{i}" for i in range(n)), special=(False,) * n, word_ids=tuple(range(n)))
    return AttentionResult("tiny", "t0 t1", (Stack("encoder", toks, toks, w / w.sum(-1, keepdims=True)),)).validate()


def planned(view: ExportView, **spec: object) -> list:
    shown = apply(model_result(), ViewSpec.build(**{"layer": "all", **spec}))  # type: ignore[arg-type]
    tasks = plan(shown, "0000-x-abcdef", {"index": 0}, view, STYLE)
    return [item for task in tasks for item in task.items]


def test_head_view_makes_one_image_per_map_named_by_model_numbers():
    items = planned(ExportView.HEAD, head="1,3")
    assert [i.name for i in items] == [
        f"0000-x-abcdef-encoder-L{layer:02d}-H{head:02d}.png" for layer in range(3) for head in (1, 3)
    ]
    assert items[1].title == "tiny · encoder · layer 0 · head 3"
    assert items[1].record == {
        "index": 0,
        "stack": "encoder",
        "layer": 0,
        "layers": [0],
        "head": 3,
        "heads": [3],
        "agg": None,
        "rollout": False,
        "file": "0000-x-abcdef-encoder-L00-H03.png",
        "look": look(STYLE),
    }
    assert items[1].weights.shape == (1, 5, 5)
    assert look(STYLE) == look(Style("png")) != look(Style("png", cmap="Blues")) != look(Style("png", vmax=None))


def test_combined_heads_say_what_was_averaged_in_title_name_and_record():
    (first, *_) = planned(ExportView.HEAD, head="0:2", agg="mean")
    assert first.title == "tiny · encoder · layer 0 · mean of heads 0,1"
    assert first.name.endswith("-L00-mean.png")
    assert (first.record["head"], first.record["heads"], first.record["agg"]) == (None, [0, 1], "mean")


def test_rollout_records_every_layer():
    (only,) = planned(ExportView.HEAD, agg="rollout", head="max")
    assert only.name.endswith("-rollout-max.png")
    assert only.title == "tiny · encoder · rollout of all 3 layers · max of all 4 heads"
    r = only.record
    assert (r["layer"], r["layers"], r["head"], r["heads"], r["agg"], r["rollout"]) == (
        None,
        [0, 1, 2],
        None,
        [0, 1, 2, 3],
        "max",
        True,
    )


def test_layer_and_model_views_lay_out_panels():
    layer_items = planned(ExportView.LAYER)
    assert len(layer_items) == 3 and layer_items[0].weights.shape == (4, 5, 5)
    assert layer_items[0].title == "tiny · encoder · layer 0 · heads 0–3"
    assert layer_items[0].record["head"] is None and layer_items[0].record["heads"] == [0, 1, 2, 3]
    (model,) = planned(ExportView.MODEL, layer="1:3")
    assert model.weights.shape == (2 * 4, 5, 5) and model.title == "tiny · encoder · layers 1,2 × heads 0–3"
    assert model.record["layers"] == [1, 2] and model.record["layer"] is None
    # heads combined into one panel: the title names it, the panel does not say it again
    shown = apply(model_result(), ViewSpec.build(layer="0", agg="mean"))
    (task,) = plan(shown, "0000-x-abcdef", {"index": 0}, ExportView.LAYER, STYLE)
    assert task.items[0].title.endswith("mean of all 4 heads") and task.layout.panel_titles == ()


def test_record_fields_have_one_type():
    s = model_result().stacks[0]
    combined = record(s, [Origin((0, 1, 2), Combine.ROLLOUT)], [Origin((2,))])
    assert combined == {
        "stack": "encoder",
        "layer": None,
        "layers": [0, 1, 2],
        "head": 2,
        "heads": [2],
        "agg": None,
        "rollout": True,
    }


@pytest.mark.parametrize("heads, cols", [(12, 4), (8, 4), (6, 3), (7, 7), (1, 1), (16, 4)])
def test_grid_columns(heads, cols):
    assert grid_columns(heads) == cols


def test_names_never_carry_a_path_and_change_with_the_text():
    assert slug("../../etc/passwd") == "etc-passwd" and slug("我有一个梦") == "wo-you-yi-ge-meng"
    assert stem(7, "I have a dream") != stem(7, "I have a dream", pair="x")
    assert stem(7, "I have a dream").startswith("0007-i-have-a-dream-")
    assert "/" not in stem(0, "a/b\\c")


def test_manifest_appends_whole_lines_and_drops_lines_of_missing_images(tmp_path):
    prepare_folder(tmp_path)
    write_atomic(tmp_path / "a.png", b"png")
    m = Manifest(tmp_path)
    m.add({**OURS, "file": "a.png", "layer": 1})
    lines = (tmp_path / MANIFEST).read_text().splitlines()
    assert json.loads(lines[0]) == {**OURS, "file": "a.png", "layer": 1, "path": str(tmp_path / "a.png")}
    with open(tmp_path / MANIFEST, "a") as f:  # a stale line and a torn last line
        f.write(json.dumps({**OURS, "file": "gone.png"}) + "\n" + '{"file": "a.p')
    Manifest(tmp_path).close()
    assert [json.loads(x)["file"] for x in (tmp_path / MANIFEST).read_text().splitlines()] == ["a.png"]


def test_manifest_replaces_a_changed_record_once_at_close(tmp_path):
    write_atomic(tmp_path / "a.png", b"png")
    m = Manifest(tmp_path)
    m.add({**OURS, "file": "a.png", "layer": 1})
    m.add({**OURS, "file": "a.png", "layer": 2})
    m.close()
    (line,) = (tmp_path / MANIFEST).read_text().splitlines()
    assert json.loads(line)["layer"] == 2


def test_stale_temporary_files_go_and_live_ones_stay(tmp_path):
    dead = tmp_path / f"{TMP_PREFIX}x.png-999999999"
    alive = tmp_path / f"{TMP_PREFIX}y.png-{os.getpid()}"
    dead.write_bytes(b"")
    alive.write_bytes(b"")
    prepare_folder(tmp_path)
    assert not dead.exists() and alive.exists()


def test_a_view_that_changes_the_numbers_changes_the_names():
    raw = model_result()
    plain = content_key(apply(raw, ViewSpec.build(layer="all")))
    assert content_key(apply(raw, ViewSpec.build(layer="2", head="0:3"))) == plain  # choosing maps changes no map
    keys = {
        content_key(apply(raw, ViewSpec.build(**kwargs)))  # type: ignore[arg-type]
        for kwargs in (
            {},
            {"agg": "mean"},
            {"agg": "max"},
            {"agg": "mean", "head": "0:2"},
            {"agg": "rollout"},
            {"words": True},
            {"tokens": "0:3"},
        )
    }
    assert len(keys) == 7
    other_model = AttentionResult("other", raw.text, raw.stacks)
    assert content_key(other_model) != content_key(raw)
    assert stem(0, "x", view=plain) != stem(0, "x", view=content_key(other_model))
