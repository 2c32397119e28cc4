"""Attention weights from a transformers model's own attention modules, one layer at a time.

Each transformers 5.x model names the modules whose outputs `output_attentions` returns
(`_can_record_outputs`: a class, a class name or an OutputRecorder, per submodel), and
under eager those modules return their weights whether or not they were asked for.
`attention_sites` finds them per stack by transformers' own rules; a forward hook on each
hands the weights (B, h, q, k) to a `Taker` as the module returns, which keeps what a
Capture names and lets the model free the rest:

    Gather   fills one [layers, heads, q, k] array per example and stack (HFBackend.run)
    Stream   hands each layer on as a one-layer result (HFBackend.stream)
    Counter  counts the layers and heads the modules give (a probe)

Models that name no modules are tapped instead (`find_taps`, `tap_hook`): the attention
modules whose outputs hold the very values `output_attentions` returns, each layer taken as
it is made and replaced in the model's output by a placeholder that holds no map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ModelError
from ..result import AttentionResult, Stack, Tokens, origins
from .types import Capture, Inputs, LayerSink

STACKS = {"encoder": ("encoder",), "decoder": ("decoder",), "encoder-decoder": ("encoder", "decoder", "cross")}
# the keys of `_can_record_outputs` that `output_attentions` returns
_RECORDED = ("attentions", "cross_attentions")


@dataclass(frozen=True)
class Site:
    """An attention module and the item of its output tuple that holds its weights (B, h, q, k)."""

    module: torch.nn.Module
    index: int


def _recorders(model: Any) -> list[tuple[str, Any]]:
    """(key, recorder) for each attention output a (sub)model declares in `_can_record_outputs`."""
    found: list[tuple[str, Any]] = []
    for key, specs in (getattr(model, "_can_record_outputs", None) or {}).items():
        if key in _RECORDED:
            found.extend((key, spec) for spec in (specs if isinstance(specs, list) else [specs]))
    return found


def _matches(module: torch.nn.Module, name: str, spec: Any) -> tuple[bool, int]:
    """transformers' own rule for a recorder: its class (or a module-name suffix), then its layer name.

    A recorder is a module class, a class name, or an OutputRecorder; the weights are item 1
    of the output unless an OutputRecorder says otherwise (T5: the last item).
    """
    plain = isinstance(spec, (type, str))
    target = spec if isinstance(spec, type) else None if plain else spec.target_class
    suffix = spec if isinstance(spec, str) else None if plain else spec.class_name
    hit = (target is not None and isinstance(module, target)) or (suffix is not None and name.endswith(suffix))
    layer = None if plain else spec.layer_name
    if hit and layer is not None:
        hit = f".{layer.strip('.')}." in f"{name}."
    return hit, 1 if plain else int(spec.index)


def _stack_of(key: str, family: str, in_encoder: bool) -> str | None:
    if family == "encoder-decoder":
        if key == "cross_attentions":
            return None if in_encoder else "cross"
        return "encoder" if in_encoder else "decoder"
    # a decoder-only model's cross-attention (GPT-2 add_cross_attention) never runs without an encoder
    return None if key == "cross_attentions" else family


def attention_sites(model: Any, family: str) -> dict[str, list[Site]]:
    """The modules whose weights `output_attentions` returns, per stack, in the model's order.

    Each submodel (an encoder, a decoder) names its own, as transformers reads them: the
    encoder of an encoder-decoder is `get_encoder()`. Empty when the model names none, or
    not every stack its family has (such models run the old way).
    """
    from transformers import PreTrainedModel

    encoder = model.get_encoder() if family == "encoder-decoder" and hasattr(model, "get_encoder") else None
    sites: dict[str, list[Site]] = {}

    def walk(module: torch.nn.Module, name: str, recorders: list[tuple[str, Any]], in_encoder: bool) -> None:
        for child_name, child in module.named_children():
            inner = _recorders(child) if isinstance(child, PreTrainedModel) else recorders
            walk(child, f"{name}.{child_name}", inner, in_encoder or child is encoder)
        for key, spec in recorders:
            hit, index = _matches(module, name, spec)
            stack = _stack_of(key, family, in_encoder) if hit else None
            if stack is not None and all(s.module is not module for s in sites.get(stack, ())):
                sites.setdefault(stack, []).append(Site(module, index))

    walk(model, "", _recorders(model), model is encoder)
    return sites if set(sites) == set(STACKS[family]) else {}


def text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def declared_layers(config: Any, family: str) -> dict[str, int | None]:
    """Layers per stack as the config counts them (None: it does not say)."""
    cfg = text_config(config)

    def first(*names: str) -> int | None:
        values = [getattr(cfg, n, None) for n in names]
        return next((v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0), None)

    if family == "encoder-decoder":
        decoder = first("decoder_layers", "num_decoder_layers")
        encoder = first("encoder_layers", "num_layers", "num_hidden_layers")
        return {"encoder": encoder, "decoder": decoder, "cross": decoder}
    return {family: first("num_hidden_layers")}


def module_heads(module: torch.nn.Module) -> int | None:
    """The head count an attention module keeps (ConvBERT's is half its config's), if it says."""
    for part in (module, *module.children()):  # T5's recorded module wraps the attention
        for name in ("num_heads", "num_attention_heads", "n_head", "n_heads"):
            value = getattr(part, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def declared_heads(config: Any) -> int | None:
    heads = getattr(text_config(config), "num_attention_heads", None)
    return heads if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 else None


# ---------------------------------------------------------------- taking the weights


@dataclass(frozen=True)
class Side:
    """One side of a map: its tokens, and where they sit in the padded sequence."""

    tokens: Tokens
    at: slice | list[int]

    @property
    def span(self) -> int:
        """How long the padded sequence must be to hold these positions."""
        return self.at.stop if isinstance(self.at, slice) else max(self.at, default=-1) + 1

    @classmethod
    def of(cls, tokens: Tokens, keep: list[int]) -> Side:
        # right padding keeps positions 0..n-1: a slice takes them without a copy
        return cls(tokens, slice(0, len(keep)) if keep == list(range(len(keep))) else keep)


@dataclass(frozen=True)
class Example:
    """One input of a batch: the query and key sides of each stack, notes about its tokens, and the
    text a decoder generated after it (its tokens are part of the sides)."""

    inputs: Inputs
    sides: dict[str, tuple[Side, Side]]
    notes: tuple[str, ...]
    continuation: str | None = None

    def result(self, spec: str, stacks: tuple[Stack, ...], precision: str) -> AttentionResult:
        """The result of this input's run, as the stacks hold it."""
        x = self.inputs
        return AttentionResult(spec, x.text, stacks, x.extras(), precision, self.notes, continuation=self.continuation)


@dataclass(frozen=True)
class Pick:
    """A stack's kept layers and heads (model numbers), and the model's counts."""

    layers: list[int]
    heads: list[int]
    model_layers: int
    model_heads: int

    @property
    def slots(self) -> dict[int, int]:
        return {layer: i for i, layer in enumerate(self.layers)}

    def stack(self, example: Example, name: str, weights: np.ndarray, layers: Sequence[int]) -> Stack:
        q, k = example.sides[name]
        return Stack(
            name,
            q.tokens,
            k.tokens,
            weights,
            causal=name == "decoder",
            layer_axis=origins(layers),
            head_axis=origins(self.heads),
            model_layers=self.model_layers,
            model_heads=self.model_heads,
        )


class Taker:
    """Takes each layer's weights (B, h, q, k) as the forward pass makes them, as a hook sees them.

    Layers and heads the capture does not keep are left to the model to free; kept ones
    leave the device in the model's dtype and become float32 on the CPU (for a float32
    model on the CPU both steps are free), then `keep` takes them.
    """

    def __init__(self, spec: str, capture: Capture | None) -> None:
        self.spec = spec
        self.capture = capture or Capture()
        self.fired: dict[str, int] = {}
        self.picks: dict[str, Pick] = {}
        self._slots: dict[str, dict[int, int]] = {}

    def __call__(self, stack: str, layers: int, weights: Tensor) -> None:
        n = self.fired.get(stack, 0)
        self.fired[stack] = n + 1
        if not isinstance(weights, Tensor) or weights.ndim != 4:
            what = f"a {type(weights).__name__}" if not isinstance(weights, Tensor) else f"shaped {list(weights.shape)}"
            raise ModelError(
                f"{self.spec}: its {stack} attention gives weights attnviz cannot read ({what}, "
                "not one [batch, heads, query, key] tensor per layer)"
            )
        heads = int(weights.shape[1])
        pick = self.picks.get(stack)
        if pick is None:
            kept, kept_heads = self.capture.pick(layers, heads)
            pick = self.picks[stack] = Pick(kept, kept_heads, layers, heads)
            self._slots[stack] = pick.slots
        elif heads != pick.model_heads:
            raise ModelError(
                f"{self.spec}: the {stack} layers have different numbers of heads ({pick.model_heads} and {heads}); "
                "attnviz holds the layers of a stack in one array"
            )
        slot = self._slots[stack].get(n)
        if slot is None:
            return
        if len(pick.heads) < heads:
            weights = weights[:, pick.heads]  # (B, h', q, k), still on the device
        self.keep(stack, n, slot, weights.detach().cpu().float().numpy())

    def keep(self, stack: str, layer: int, slot: int, weights: np.ndarray) -> None:
        """One kept layer of a stack: float32 (B, h', q, k) on the CPU."""

    def cut(self, example: Example, stack: str, weights: np.ndarray) -> np.ndarray:
        """One example's rows and columns of its (h, q, k) map: padding dropped (a view when it can be)."""
        q, k = example.sides[stack]
        if weights.shape[1] < q.span or weights.shape[2] < k.span:  # e.g. Funnel pools the sequence between blocks
            raise ModelError(
                f"{self.spec}: a {stack} layer's map is {weights.shape[1]}×{weights.shape[2]} for "
                f"{len(q.tokens)}×{len(k.tokens)} tokens; attnviz shows maps over the model's own tokens"
            )
        return weights[:, q.at][:, :, k.at]


class Gather(Taker):
    """Fills one array per example and stack, [kept layers, kept heads, q, k], as the layers come."""

    def __init__(self, spec: str, capture: Capture | None, examples: list[Example]) -> None:
        super().__init__(spec, capture)
        self.examples = examples
        self.arrays: dict[tuple[int, str], np.ndarray] = {}

    def keep(self, stack: str, layer: int, slot: int, weights: np.ndarray) -> None:
        for b, example in enumerate(self.examples):
            part = self.cut(example, stack, weights[b])  # (h', q, k)
            out = self.arrays.get((b, stack))
            if out is None:
                out = np.empty((len(self.picks[stack].layers), *part.shape), dtype=np.float32)
                self.arrays[(b, stack)] = out
            out[slot] = part

    def results(self, stacks: Sequence[str], precision: str) -> list[AttentionResult]:
        results = []
        for b, example in enumerate(self.examples):
            held = tuple(
                self.picks[name].stack(example, name, self.arrays[(b, name)], self.picks[name].layers)
                for name in stacks
            )
            results.append(example.result(self.spec, held, precision))
        return results


class Stream(Taker):
    """Hands each kept layer of one example to a sink, as a result of one stack and one layer."""

    def __init__(self, spec: str, capture: Capture | None, example: Example, precision: str, sink: LayerSink) -> None:
        super().__init__(spec, capture)
        self.example, self.precision, self.sink = example, precision, sink

    def keep(self, stack: str, layer: int, slot: int, weights: np.ndarray) -> None:
        part = self.cut(self.example, stack, weights[0])[None]  # (1, h', q, k)
        held = self.picks[stack].stack(self.example, stack, part, [layer])
        self.sink(self.example.result(self.spec, (held,), self.precision))


class Counter(Taker):
    """Counts the layers each stack's modules give, and their heads; keeps nothing."""

    def __init__(self) -> None:
        super().__init__("", None)
        self.heads: dict[str, int] = {}

    def __call__(self, stack: str, layers: int, weights: Tensor) -> None:
        self.fired[stack] = self.fired.get(stack, 0) + 1
        if isinstance(weights, Tensor) and weights.ndim == 4:  # what cannot be read is refused by a real run
            self.heads.setdefault(stack, int(weights.shape[1]))


def hook(taker: Taker, stack: str, layers: int, index: int) -> Any:
    """A forward hook for one of `stack`'s attention modules (of `layers` in all): item `index` of its output."""

    def on_output(module: torch.nn.Module, args: Any, output: Any) -> None:
        weights = output[index] if isinstance(output, tuple) else output
        if weights is not None:  # as transformers: a module that gives no weights records no layer
            taker(stack, layers, weights)

    return on_output


# ---------------------------------------------------------------- models that name no attention modules


@dataclass(frozen=True)
class Tap:
    """An attention module of a model that names none: item `index` of its output (a tuple's position,
    a dict's key, None: the output itself) is one layer of `output_attentions` once permuted by `order`
    (None: as it is). `empty`: the model gets an empty placeholder, not a one-element one of the
    layer's shape (XLNet copies its layers at the end: a copy of an expanded one is full size)."""

    module: torch.nn.Module
    index: int | str | None
    order: tuple[int, ...] | None
    empty: bool = False


Taps = dict[str, list[Tap]]


def _items(output: Any) -> list[tuple[int | str | None, Tensor]]:
    if isinstance(output, Tensor):
        return [(None, output)]
    if isinstance(output, tuple):
        return [(i, item) for i, item in enumerate(output) if isinstance(item, Tensor)]
    if isinstance(output, dict):  # SqueezeBERT's attention returns a dict
        return [(k, item) for k, item in output.items() if isinstance(k, str) and isinstance(item, Tensor)]
    return []


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every module whose class name says it is an attention (wrappers included: the innermost returns first)."""
    return [m for m in model.modules() if type(m).__name__.endswith("Attention")]


def record(
    modules: Sequence[torch.nn.Module], seen: list[tuple[torch.nn.Module, int | str | None, Tensor]]
) -> list[Any]:
    """Hooks that note each module's tensor outputs in `seen`, in the order the modules return."""

    def on_output(module: torch.nn.Module, args: Any, output: Any) -> None:
        seen.extend((module, index, item) for index, item in _items(output) if item.ndim >= 4)

    return [m.register_forward_hook(on_output) for m in modules]


def leading(big: Tensor, shape: Sequence[int]) -> Tensor | None:
    """The corner of `big` of `shape` (None: it is smaller): a model may cut the padding it added
    off the layers it returns (Longformer pads to its window), a cut the capture makes anyway."""
    if big.ndim != len(shape) or any(b < n for b, n in zip(big.shape, shape)):
        return None
    return big[tuple(slice(0, n) for n in shape)]


def _orders(source: Tensor, layer: Tensor) -> list[tuple[int, ...] | None]:
    """The permutations of `source` whose leading corner gives `layer`'s values (None first: as it is)."""
    import itertools

    if source.ndim != layer.ndim:
        return []
    found: list[tuple[int, ...] | None] = []
    for order in itertools.permutations(range(source.ndim)):
        view = leading(source.permute(order), layer.shape)
        if view is not None and view.dtype == layer.dtype and torch.equal(view, layer):
            identity = order == tuple(range(source.ndim))
            found.append(None if identity else order)
    return found


def find_taps(
    seen: Sequence[tuple[torch.nn.Module, int | str | None, Tensor]], held: dict[str, Sequence[Tensor]]
) -> Taps:
    """For each layer `output_attentions` gave, the first module output that holds its values, one
    module per layer, no module twice; empty when any layer has none, or more than one reading."""
    taps: Taps = {}
    used: set[int] = set()
    for stack, layers in held.items():
        for layer in layers:
            tap = None
            for module, index, source in seen:
                if id(module) in used:
                    continue
                orders = _orders(source, layer)
                if len(orders) > 1:  # a size-1 or equal axis: which is which cannot be told from the probe
                    return {}
                if orders:
                    tap = Tap(module, index, orders[0])
                    break
            if tap is None:
                return {}
            used.add(id(tap.module))
            taps.setdefault(stack, []).append(tap)
    return taps


def tap_hook(taker: Callable[[str, int, Tensor], None], stack: str, layers: int, tap: Tap, convert: Any) -> Any:
    """A forward hook that hands a tapped layer, `convert`ed, to `taker` and gives the model a one-element
    placeholder of the same shape instead, so its `output_attentions` tuple holds no maps."""

    def on_output(module: torch.nn.Module, args: Any, output: Any) -> Any:
        item = output if tap.index is None else output[tap.index]
        if not isinstance(item, Tensor):
            return None  # no weights this call (transformers' rule): nothing taken, nothing replaced
        layer = item.permute(tap.order) if tap.order is not None else item
        taker(stack, layers, convert(stack, layer))
        # one element of the layer's shape (strides 0), or none at all
        placeholder = item.new_empty((0,) * item.ndim) if tap.empty else item.new_zeros(()).expand(item.shape)
        if tap.index is None:
            return placeholder
        if isinstance(tap.index, str):
            return {**output, tap.index: placeholder}
        return (*output[: tap.index], placeholder, *output[tap.index + 1 :])

    return on_output


def is_placeholder(item: Any) -> bool:
    """Whether a tensor is a tap's placeholder (or no tensor): it holds at most one element."""
    return not isinstance(item, Tensor) or item.untyped_storage().nbytes() <= item.element_size()
