"""The Python API: `extract(text, model=...) -> AttentionResult`, and batches of inputs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

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
    if any(x.generate for x in batch) and (info.family != "decoder" or info.backend != "transformers"):
        kind = "the scratch model" if info.backend == "scratch" else f"an {info.family} model"
        raise UsageError(
            f"continuing a text is for transformers decoder models; {name} is {kind}",
            hint="generate with a decoder such as GPT-2, LLaMA or Mistral",
        )
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
    """Run inputs through a backend in batches, as they come, and validate every result once;
    `capture` keeps only some layers and heads (None: all). Every input is checked before the
    first runs. (iter_results sorts batches by length and gives results as they are made.)"""
    for x in batch:
        check_text(x.text)
    check_fits(backend, batch)
    return list(iter_results(backend, batch, batch_size, truncate, capture, sort=False))


def iter_results(
    backend: Backend,
    inputs: Iterable[Inputs],
    batch_size: int = 16,
    truncate: bool = False,
    capture: Capture | None = None,
    sort: bool = True,
) -> Iterator[AttentionResult]:
    """Validated results of `inputs`, in their order, as they are made.

    Inputs are read a window at a time and run in batches sorted by length (`sort`; else
    `batch_size` at a time as they come); results that wait for earlier ones are bounded in
    memory (pipeline.py), so memory does not grow with the number of inputs. Each window's
    inputs are checked before any of it runs.
    """
    from .pipeline import in_order, token_counter

    def check(window: list[Inputs]) -> None:
        for x in window:
            check_text(x.text)
        check_fits(backend, window)

    count = token_counter(backend, backend.info.max_positions)
    return in_order(inputs, lambda chunk: _run_chunk(backend, chunk, truncate, capture), batch_size, count, check, sort)


def _run_chunk(backend: Backend, chunk: list[Inputs], truncate: bool, capture: Capture | None) -> list[AttentionResult]:
    """One forward pass's results, validated."""
    from .inputs import refuse_long, run_truncating

    # a long text is cut before tokenising, not tokenised whole to keep (or refuse) 512 tokens
    if truncate:
        ran = run_truncating(lambda b: backend.run(b, True, capture), chunk, backend.info.max_positions)
    else:
        refuse_long(backend.tokenize, chunk, backend.info.max_positions)
        ran = backend.run(chunk, truncate=False, capture=capture)
    return [_checked(r) for r in ran]


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
