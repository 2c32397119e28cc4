"""What every backend shares: inputs, model facts, load options, devices and dtypes.

A backend turns `Inputs` into `AttentionResult`s; backends/registry.py picks one for
a model spec. Heavy imports (torch) happen inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..errors import DeviceError, Fix, InputError

if TYPE_CHECKING:  # numpy and torch stay out of `attnviz --help`, which reads the enums below
    import torch

    from ..result import AttentionResult, Stack, Tokens
    from ..spec import Indices, ViewSpec


class Device(str, Enum):
    AUTO = "auto"  # CUDA when present, else MPS when present, else the CPU
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


class Dtype(str, Enum):
    """The dtype the model runs in; weights always come out as float32."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class DeviceMap(str, Enum):
    """How transformers' loader (with accelerate) places a model too big for one device."""

    AUTO = "auto"  # fill the GPUs in turn, then the CPU


MAX_GENERATE = 1024  # tokens a decoder may add to a prompt: more is a long story, not a picture


@dataclass(frozen=True)
class Inputs:
    """One example: the text, plus a pair (encoders), target (enc-dec) or source (scratch); a decoder
    may first continue the text by `generate` tokens (greedy), and attention covers text + continuation."""

    text: str
    pair: str | None = None
    target: str | None = None
    source: str | None = None
    generate: int = 0

    def texts(self) -> tuple[str, ...]:
        """What the encoder's tokenizer is given: sentence A, and B for a pair."""
        return (self.text,) if self.pair is None else (self.text, self.pair)

    def extras(self) -> dict[str, str]:
        return {
            k: v for k, v in (("pair", self.pair), ("target", self.target), ("source", self.source)) if v is not None
        }


@dataclass(frozen=True)
class ModelInfo:
    """What `attnviz info` prints."""

    name: str
    family: str  # encoder | decoder | encoder-decoder
    backend: str  # native | transformers | scratch
    stacks: tuple[str, ...]
    layers: dict[str, int]  # per stack
    heads: int
    d_model: int
    vocab_size: int
    max_positions: int | None
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capture:
    """Which layers and heads of each stack a run keeps (model numbers); None: all of them.

    Backends that capture layer by layer hold only these maps; the others cut their
    full result down with `Capture.cut`. The view then picks from what was kept.
    """

    layers: Indices | None = None
    heads: Indices | None = None

    @classmethod
    def for_view(cls, spec: ViewSpec) -> Capture:
        """What a view needs: rollout multiplies every layer; mean/max still reads the chosen heads."""
        from ..spec import LAST

        return cls(layers=None if spec.rollout else spec.layers or LAST, heads=spec.heads)

    def pick(self, layers: int, heads: int) -> tuple[list[int], list[int]]:
        """Model layer and head numbers to keep, in order; SelectionError for numbers the model lacks."""
        from ..result import origins
        from ..views import positions

        li = (
            list(range(layers))
            if self.layers is None
            else positions(self.layers, origins(range(layers)), layers, "layer")
        )
        hi = list(range(heads)) if self.heads is None else positions(self.heads, origins(range(heads)), heads, "head")
        return li, hi

    def cut(self, stack: Stack) -> Stack:
        """A full stack (every model layer and head) cut down to what this capture keeps."""
        from dataclasses import replace

        import numpy as np

        from ..result import origins

        if self.layers is None and self.heads is None:
            return stack
        li, hi = self.pick(stack.layers, stack.heads)
        w = np.ascontiguousarray(stack.weights[li][:, hi])  # (L', H', q, k)
        return replace(
            stack,
            weights=w,
            layer_axis=origins(li),
            head_axis=origins(hi),
            model_layers=stack.model_layers,
            model_heads=stack.model_heads,
        )


LayerSink = Callable[["AttentionResult"], None]
"""Takes one captured layer: a result with one stack that holds one layer, as the forward pass made it."""


@runtime_checkable
class LayerStreaming(Protocol):
    """A backend that can hand each layer over as the forward pass makes it, holding none."""

    def stream(self, inputs: Inputs, sink: LayerSink, truncate: bool = False, capture: Capture | None = None) -> None:
        """Give `sink` each layer `capture` keeps, stack by stack in the order the model runs them."""
        ...


class Backend(Protocol):
    """Turns inputs into attention; one instance holds one loaded model."""

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        """Tokens per sequence: {"input": ..., "target": ...}."""
        ...

    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        """Attention for each input, the layers and heads `capture` keeps; padding is removed."""
        ...

    def vocabulary(self) -> list[str]:
        """The tokenizer's token strings, special tokens left out (the induction probe draws from it)."""
        ...


@dataclass(frozen=True)
class LoadOptions:
    device: Device = Device.AUTO
    dtype: Dtype = Dtype.FLOAT32
    trust_remote_code: bool = False
    allow_missing: bool = False  # run a checkpoint that leaves some of the model's weights random
    device_map: DeviceMap | None = None  # transformers models: spread over the devices found (needs accelerate)
    causal_lm: bool = False  # decoders: load the language-model head too, which generating text needs
    # scratch model only
    layers: int = 1
    d_model: int = 512
    heads: int = 8
    seed: int = 0
    causal: bool = False
    weights: str | None = None


E = TypeVar("E", Device, Dtype)


def resolve_choice(kind: type[E], value: E | str, what: str) -> E:
    """A Device or Dtype from its name; DeviceError naming the choices otherwise."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise DeviceError(f"unknown {what} {value!r}", hint=f"choose one of: {choices}") from None


def resolve_device(device: Device | str) -> torch.device:
    """auto → cuda if present, else mps if present, else cpu; refuse what is absent."""
    import torch

    device = resolve_choice(Device, device, "device")
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if device is Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if device is Device.CUDA and not torch.cuda.is_available():
        raise DeviceError("a CUDA device was asked for, but none is available", fix=Fix.USE_CPU)
    if device is Device.MPS and not has_mps:
        raise DeviceError("an MPS device was asked for, but MPS is not available", fix=Fix.USE_CPU)
    return torch.device(device.value)


def resolve_dtype(dtype: Dtype | str) -> torch.dtype:
    import torch

    dtype = resolve_choice(Dtype, dtype, "dtype")
    return {Dtype.FLOAT32: torch.float32, Dtype.FLOAT16: torch.float16, Dtype.BFLOAT16: torch.bfloat16}[dtype]


def check_length(n: int, limit: int | None, what: str = "input") -> None:
    if limit is not None and n > limit:
        raise InputError(
            f"{what} is {n} tokens long; the model takes at most {limit}",
            hint="shorten the text, or truncate it",
            fix=Fix.TRUNCATE,
            tokens=n,
        )
