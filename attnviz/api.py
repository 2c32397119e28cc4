"""The Python API: `extract(text, model=...) -> AttentionResult`, and batches of inputs."""

from __future__ import annotations

from collections.abc import Sequence

from .backends.registry import DEFAULT_MODEL, cached
from .backends.types import Backend, Capture, Device, Dtype, Inputs, LoadOptions, resolve_choice
from .errors import Fix, InputError, ModelError, UsageError
from .result import AttentionResult


def check_text(text: str, what: str = "text") -> None:
    if not text.strip():
        hint = "give a sentence, or - to read standard input" if what == "text" else f"give a non-empty {what}"
        raise InputError(f"the {what} is empty", hint=hint)


def check_fits(backend: Backend, batch: Sequence[Inputs]) -> None:
    """Refuse inputs the model has no use for, rather than silently ignoring them."""
    info = backend.info
    name = info.name
    if any(x.pair is not None for x in batch) and (info.family != "encoder" or info.backend == "scratch"):
        kind = "the scratch model" if info.backend == "scratch" else info.family
        raise UsageError(f"a sentence pair is for pretrained encoder models; {name} is {kind}", fix=Fix.DROP_PAIR)
    if any(x.target is not None for x in batch) and info.family != "encoder-decoder":
        raise UsageError(
            f"a decoder target is for encoder-decoder models; {name} is {info.family}", fix=Fix.DROP_TARGET
        )
    if any(x.source is not None for x in batch) and info.backend != "scratch":
        raise UsageError("a cross-attention source text is for the scratch model", fix=Fix.DROP_SOURCE)
    for x in batch:
        for what, text in x.extras().items():
            check_text(text, f"{what} text")


def run_batch(
    backend: Backend,
    batch: Sequence[Inputs],
    batch_size: int = 16,
    truncate: bool = False,
    capture: Capture | None = None,
) -> list[AttentionResult]:
    """Run inputs through a backend in batches and validate every result once; `capture` keeps
    only some layers and heads (None: all)."""
    for x in batch:
        check_text(x.text)
    check_fits(backend, batch)
    results: list[AttentionResult] = []
    for start in range(0, len(batch), max(1, batch_size)):
        results.extend(
            _checked(r) for r in backend.run(batch[start : start + batch_size], truncate=truncate, capture=capture)
        )
    return results


def _checked(result: AttentionResult) -> AttentionResult:
    """The result, validated: a model whose numbers overflowed is an error, never a drawing of NaN."""
    try:
        return result.validate()
    except ValueError as exc:
        half = result.precision != "float32"
        raise ModelError(
            f"{result.model} gave attention weights that are not usable: {exc}",
            hint="float16/bfloat16 can overflow: try --dtype float32" if half else "the model's weights may be broken",
        ) from None


def extract(
    text: str,
    model: str = DEFAULT_MODEL,
    *,
    pair: str | None = None,
    target: str | None = None,
    source: str | None = None,
    device: Device | str = Device.AUTO,
    dtype: Dtype | str = Dtype.FLOAT32,
    truncate: bool = False,
    trust_remote_code: bool = False,
) -> AttentionResult:
    """Attention of `model` on `text`: every layer and head of every stack, as float32."""
    options = LoadOptions(
        device=resolve_choice(Device, device, "device"),
        dtype=resolve_choice(Dtype, dtype, "dtype"),
        trust_remote_code=trust_remote_code,
    )
    backend = cached(model, options)
    return run_batch(backend, [Inputs(text, pair=pair, target=target, source=source)], truncate=truncate)[0]
