"""Layer-by-layer capture for models that name no attention modules (hf.py `_legacy_taps`): the
same numbers as transformers' own `output_attentions=True`, and the model's own tuple of layers
holds only placeholders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_zoo import BY_NAME, build

from attnviz.backends import families
from attnviz.backends.hooks import Tap, find_taps
from attnviz.backends.registry import load
from attnviz.backends.types import Capture, Device, Inputs, LoadOptions
from attnviz.spec import ALL, Indices

CPU = LoadOptions(device=Device.CPU)
# every tiny family whose transformers code lists no attention modules
LEGACY = (
    "deberta",
    "deberta-v2",
    "roformer",
    "squeezebert",
    "longformer",
    "xlnet",
    "gpt_neo",
    "bloom",
    "mpt",
    "falcon",
    "fsmt",
    "led",
    "longt5",
    "prophetnet",
)
TEXTS = ("I have a dream", "the quick brown fox jumps over the lazy dog", "so do I")
CAPTURES = {
    "every layer": None,
    "layer 0": Capture(layers=Indices.parse(0)),
    "heads 1,3 of every layer": Capture(layers=ALL, heads=Indices.parse("1,3", "head")),
}
FIELDS = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    root = tmp_path_factory.mktemp("legacy-zoo")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build(BY_NAME[name], root / name)
        return built[name]

    return get


def fields_of(backend) -> dict[str, str]:
    return FIELDS if backend.family == "encoder-decoder" else {backend.family: "attentions"}


def reference(backend, batch: list[Inputs]) -> list[dict[str, np.ndarray]]:
    """transformers' own layers (output_attentions=True) as weights, padding cut by the masks."""
    if len(batch) > 1 and families.unbatched(backend.config):  # attnviz runs these one at a time
        return [m for x in batch for m in reference(backend, [x])]
    _, inputs = backend._prepare(batch, False)
    with torch.inference_mode():
        out = backend.model(**inputs, output_attentions=True)
    src = inputs["attention_mask"].bool().numpy()
    tgt = inputs["decoder_attention_mask"].bool().numpy() if "decoder_attention_mask" in inputs else None
    sides = {"encoder": (src, src), "decoder": (tgt, tgt), "cross": (tgt, src)}
    if backend.family != "encoder-decoder":
        sides = {backend.family: (src, src)}
    maps: list[dict[str, np.ndarray]] = [{} for _ in batch]
    for stack, field in fields_of(backend).items():
        layers = [families.to_weights(backend.config, stack, w) for w in getattr(out, field)]
        full = torch.stack(layers, 1).float().numpy()  # (B, L, h, q, k)
        q, k = sides[stack]
        for b in range(len(batch)):
            maps[b][stack] = full[b][:, :, np.flatnonzero(q[b])][:, :, :, np.flatnonzero(k[b])]
    return maps


@pytest.mark.parametrize("name", LEGACY)
def test_legacy_families_are_tapped_layer_by_layer_with_the_same_numbers(zoo, name):
    backend = load(str(zoo(name)), CPU)
    assert not backend.sites, f"{name} now names its attention modules: move it to test_capture.py"
    taps = backend._legacy_taps()
    assert set(taps) == set(fields_of(backend))
    for size in (1, 3):
        batch = [Inputs(t) for t in TEXTS[:size]]
        full = reference(backend, batch)
        for label, capture in CAPTURES.items():
            wanted = capture or Capture()
            results = backend.run(batch, capture=capture)
            for result, maps in zip(results, full):
                assert result.stack_names == tuple(maps)
                for stack in result.stacks:
                    layers, heads = wanted.pick(stack.model_layers, stack.model_heads)
                    expected = maps[stack.name][layers][:, heads]
                    assert stack.weights.shape == expected.shape, (label, stack.name)
                    np.testing.assert_allclose(stack.weights, expected, atol=1e-5, rtol=0, err_msg=label)
                    assert stack.model_layers == len(taps[stack.name]) == maps[stack.name].shape[0]
                result.validate()


@pytest.mark.parametrize("name", LEGACY)
def test_the_model_keeps_only_placeholders_and_hooks_go_away(zoo, name):
    backend = load(str(zoo(name)), CPU)
    taps = backend._legacy_taps()  # its two probe passes first
    outputs: list[object] = []
    handle = backend.model.register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        (result,) = backend.run([Inputs("the quick brown fox jumps over the lazy dog")], capture=Capture())
    finally:
        handle.remove()
    (out,) = outputs  # one forward pass
    for stack, field in fields_of(backend).items():
        layers = getattr(out, field)
        assert len(layers) == result.stack(stack).layers
        # the real maps are 4·T² floats or more a layer; each placeholder holds at most one
        assert all(layer.untyped_storage().nbytes() <= layer.element_size() for layer in layers), stack
    assert not any(tap.module._forward_hooks for layers in taps.values() for tap in layers)
    assert np.all(np.isfinite(result.stacks[0].weights)) and result.stacks[0].weights.any()


def test_taps_are_refused_when_a_layer_is_not_found_or_ambiguous():
    """find_taps gives nothing (the model then runs the old way) rather than a guess."""
    torch.manual_seed(0)
    module_a, module_b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    layer = torch.rand(1, 2, 3, 5).softmax(-1)
    assert find_taps([(module_a, 1, layer)], {"encoder": [layer]}) == {"encoder": [Tap(module_a, 1, None)]}
    # XLNet's layout: the model permutes its (q, k, B, h) layers
    xl = layer.permute(2, 3, 0, 1).contiguous()
    assert find_taps([(module_a, 2, xl)], {"encoder": [layer]}) == {"encoder": [Tap(module_a, 2, (2, 3, 0, 1))]}
    assert find_taps([(module_a, 1, layer)], {"encoder": [layer, layer * 0.5]}) == {}  # a layer no module gave
    assert find_taps([(module_a, 1, layer), (module_b, 1, layer)], {"encoder": [layer, layer]}) != {}
    square = torch.ones(1, 2, 4, 4) / 4  # every permutation of an (…, q, q) map of equal rows reads the same
    assert find_taps([(module_a, 1, square)], {"encoder": [square]}) == {}
