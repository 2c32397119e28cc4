"""The scratch model: words in, our own multi-head attention, attention out.

    text ─► words ─► X = hashed word vector + sinusoidal position ─► N × MultiHeadAttention

Nothing is learned and nothing is downloaded: each word's vector comes from a
generator seeded by a SHA-256 of the word itself (same word, same vector, on any
machine), and the projection weights come from `--seed` or a safetensors file.
Layer l+1 reads layer l's output plus its input (the residual path), so `--layers N`
stacks up. With a source text the layers are cross-attention: queries from the
text, keys and values from the source's vectors.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..errors import Fix, InputError, ModelError, UsageError
from ..result import AttentionResult, Stack, Tokens
from ..scratch import MultiHeadAttention, causal_mask
from .types import Capture, Dtype, Inputs, LoadOptions, ModelInfo, check_length, resolve_device, resolve_dtype
from .words import MAX_TOKENS, NAME, scratch_tokens, tokens_of, words  # noqa: F401 (the tokenizer, torch-free)

if TYPE_CHECKING:
    from ..limits import Limits

WEIGHTS_FORMAT = "attnviz-scratch/1"


@lru_cache(maxsize=4096)
def _word_vector(word: str, d_model: int) -> Tensor:
    seed = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:8], "little")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(d_model, generator=generator)  # (d_model,)


def word_vectors(tokens: Sequence[str], d_model: int) -> Tensor:
    """(T, d_model): one fixed random vector per token string (a stable hash, not Python's salted hash())."""
    return torch.stack([_word_vector(t, d_model) for t in tokens])


def sinusoidal_positions(T: int, d_model: int) -> Tensor:
    """(T, d_model): sin on even dimensions, cos on odd, wavelengths from 2π to 10000·2π."""
    position = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # (⌈d/2⌉,)
    angles = position * rate  # (T, ⌈d/2⌉)
    pe = torch.zeros(T, d_model)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return pe


def embed(tokens: Sequence[str], d_model: int) -> Tensor:
    """X = word vector + position, (1, T, d_model)."""
    return (word_vectors(tokens, d_model) + sinusoidal_positions(len(tokens), d_model))[None]


class ScratchModel(nn.Module):
    """N MultiHeadAttention layers with residual connections and nothing else."""

    def __init__(self, d_model: int, heads: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MultiHeadAttention(d_model, heads) for _ in range(layers))

    def reset(self, seed: int) -> ScratchModel:
        """Seeded weights, independent of torch's global generator: normal with std 1/√d, zero biases.

        std 1/√d keeps Q and K about as large as X, so the scores spread enough for
        the rows to show visible preferences instead of near-uniform weights.
        """
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                if p.ndim == 2:
                    p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[1]))
                else:
                    p.zero_()
        return self

    def forward(
        self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """x (B, Tq, d), memory (B, Tk, d) or None → (inputs to each layer, weights of each layer)."""
        hidden, weights = [], []
        for layer in self.layers:
            hidden.append(x)
            kv = x if memory is None else memory
            out, w = layer(x, kv, kv, mask)  # (B, Tq, d), (B, h, Tq, Tk)
            x = x + out  # residual: the next layer sees what this one added
            weights.append(w)
        return hidden, weights


def save_weights(model: ScratchModel, path: str | Path) -> None:
    """Write the model to safetensors: `layers.{i}.{query,key,value,out}.{weight,bias}` (see README)."""
    from safetensors.torch import save_file

    first = model.layers[0]
    assert isinstance(first, MultiHeadAttention)
    heads = first.heads
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": WEIGHTS_FORMAT, "heads": str(heads)})


_KEY = re.compile(r"layers\.(\d+)\.(query|key|value|out)\.(weight|bias)")


def _file_heads(meta: dict[str, str], heads: int, path: str | Path) -> int:
    """The head count from the file's metadata ('heads'), else `heads`; ModelError for one that is no count."""
    value = meta.get("heads")
    if value is None:
        return heads
    if not value.strip().isdigit() or not 0 < int(value) <= 1 << 20:
        raise ModelError(
            f"{path}: its metadata says heads={value!r}, which is not a head count (a whole number above 0)",
            hint="set the metadata key 'heads' to the number of heads, e.g. '8'",
        )
    return int(value)


def _check_header(path: str | Path, shapes: dict[str, list[int]], limits: Limits | None) -> tuple[int, int]:
    """(d_model, layers) from a weights file's header, checked before any tensor is read: every key a
    scratch key, the layers numbered 0..N-1 without gaps (a file naming layer 1,000,000 would build a
    million layers), each query weight a d_model × d_model matrix, and the size within `limits`."""
    from ..limits import check_size

    layers: set[int] = set()
    for key in shapes:
        m = _KEY.fullmatch(key)
        if m is None:
            raise ModelError(
                f"{path} has a tensor {key!r} the scratch model does not have",
                hint="keys are layers.N.{query,key,value,out}.{weight,bias} (see the README, 'The scratch model')",
            )
        layers.add(int(m.group(1)))
    if not layers or "layers.0.query.weight" not in shapes:
        raise ModelError(
            f"{path} has no scratch-model weights (expected keys like layers.0.query.weight)",
            hint="see the README, 'The scratch model', on its weights file",
        )
    n = max(layers) + 1
    if len(layers) != n:
        missing = min(set(range(n)) - layers)
        raise ModelError(
            f"{path} names layer {n - 1} but has no weights for layer {missing}: layers are numbered 0, 1, 2, … "
            "without gaps"
        )
    shape = shapes["layers.0.query.weight"]
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        described = "a single number" if not shape else "x".join(map(str, shape))
        raise ModelError(f"{path}: layers.0.query.weight is {described}, not a d_model x d_model matrix")
    if limits is not None:
        check_size(f"the scratch model in {path}", sum(math.prod(s) for s in shapes.values()), n, limits)
    return shape[0], n


def load_weights(path: str | Path, heads: int, limits: Limits | None = None) -> ScratchModel:
    """Read a file save_weights wrote (or one with the same key names); shapes come from the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
            meta = f.metadata() or {}
            d_model, layers = _check_header(path, shapes, limits)
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read scratch weights from {path}: {exc}", hint="pass a .safetensors file") from None
    heads = _file_heads(meta, heads, path)
    if d_model % heads:
        raise ModelError(
            f"{path}: d_model {d_model} is not divisible by {heads} heads",
            hint="set the head count in the file's metadata key 'heads'",
        )
    model = ScratchModel(d_model, heads, layers)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise ModelError(f"{path} does not fit the scratch model: {first}") from None
    return model


@dataclass(frozen=True)
class Trace:
    """Everything one forward pass saw: tokens, the layers' inputs and weights, the mask."""

    query: Tokens
    key: Tokens
    hidden: list[Tensor]  # (1, Tq, d) entering each layer
    memory: Tensor | None  # (1, Tk, d): the source's vectors for cross-attention
    mask: Tensor | None  # (Tq, Tk) bool, True = may attend
    weights: list[Tensor]  # (1, h, Tq, Tk) per layer


class ScratchBackend:
    """The Backend for the `scratch` model (see the module docstring)."""

    def __init__(self, options: LoadOptions, limits: Limits | None = None) -> None:
        from ..limits import check_size

        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype)
        self.precision = Dtype(options.dtype).value
        self.causal = options.causal
        if options.weights is not None:
            if not Path(options.weights).is_file():
                raise ModelError(f"no weights file at {options.weights}", hint="pass a .safetensors file")
            model = load_weights(options.weights, options.heads, limits)
            source = options.weights
        else:
            if options.d_model % options.heads:
                raise UsageError(
                    f"d_model {options.d_model} is not divisible by {options.heads} heads",
                    hint="each head gets d_model / heads dimensions",
                    fix=Fix.SCRATCH_SIZES,
                )
            if limits is not None:  # before allocating: 4 projections of d x d (+ d biases) a layer
                d = options.d_model
                check_size("the scratch model", options.layers * 4 * (d * d + d), options.layers, limits)
            model = ScratchModel(options.d_model, options.heads, options.layers).reset(options.seed)
            source = f"random, seed {options.seed}"
        self.model = model.to(self.device, self.dtype).eval()
        first = self.model.layers[0]
        assert isinstance(first, MultiHeadAttention)
        self.d_model, self.heads = first.d_model, first.heads
        self.info = ModelInfo(
            name=NAME,
            family="decoder" if self.causal else "encoder",
            backend="scratch",
            stacks=("decoder",) if self.causal else ("encoder",),
            layers={"decoder" if self.causal else "encoder": len(self.model.layers)},
            heads=self.heads,
            d_model=self.d_model,
            vocab_size=0,
            max_positions=MAX_TOKENS,
            extra={
                "tokenizer": "words and punctuation, case kept; open vocabulary (no word list)",
                "embeddings": "fixed random vector per word (SHA-256 seeded) + sinusoidal positions",
                "weights": source,
                "cross-attention": "with a source text (a 'cross' stack)",
            },
        )

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        return scratch_tokens(inputs)

    def vocabulary(self) -> list[str]:
        raise UsageError(
            "the scratch model has no vocabulary: it embeds any word it is given",
            hint="probe a pretrained model (--model DIR) instead",
        )

    def _tokens(self, text: str, what: str, truncate: bool) -> Tokens:
        tokens = tokens_of(text)
        if not len(tokens):
            raise InputError(f"the {what} has no words or symbols to attend over")
        if truncate and len(tokens) > MAX_TOKENS:
            return tokens.take(list(range(MAX_TOKENS)))
        check_length(len(tokens), MAX_TOKENS, what)
        return tokens

    def _check_room(self, tq: int, tk: int) -> None:
        """InputError before a forward pass whose maps would not fit in memory: every layer's (h, Tq, Tk)
        is kept, then copied into one float32 array (a kernel's kill would say nothing)."""
        from ..limits import bytes_text, memory_bytes

        need = 2 * len(self.model.layers) * self.heads * tq * tk * 4
        memory = memory_bytes()
        if memory is not None and need > memory:
            raise InputError(
                f"the attention maps of {len(self.model.layers):,} layers x {self.heads:,} heads over {tq:,} x {tk:,} "
                f"tokens would take {bytes_text(need)}, more than this machine's {bytes_text(memory)} of memory",
                hint="use a shorter input, or fewer layers or heads",
            )

    @torch.inference_mode()
    def trace(self, inputs: Inputs, truncate: bool = False) -> Trace:
        """Run one input and keep every layer's input: what `attnviz explain` walks through."""
        query = self._tokens(inputs.text, "text", truncate)
        key, memory = query, None
        if inputs.source is not None:
            if self.causal:
                raise UsageError(
                    "a causal mask hides future tokens of one sequence; with a source text there are two",
                    fix=Fix.SCRATCH_CAUSAL_SOURCE,
                )
            key = self._tokens(inputs.source, "source", truncate)
            memory = embed(key.texts, self.d_model).to(self.device, self.dtype)  # (1, Tk, d)
        self._check_room(len(query), len(key))
        x = embed(query.texts, self.d_model).to(self.device, self.dtype)  # (1, Tq, d)
        mask = causal_mask(len(query), device=self.device) if self.causal else None  # (Tq, Tq)
        hidden, weights = self.model(x, memory, mask)
        return Trace(query, key, hidden, memory, mask, weights)

    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        """One input at a time: the model is small, and unpadded runs need no padding mask."""
        results = []
        for inputs in batch:
            t = self.trace(inputs, truncate)
            weights = torch.cat(t.weights).float().cpu().numpy()  # (L, h, Tq, Tk)
            name = "cross" if t.memory is not None else "decoder" if self.causal else "encoder"
            stack = Stack(name, t.query, t.key, weights, causal=self.causal)
            if capture is not None:
                stack = capture.cut(stack)
            cut = [
                f"{what} truncated to {MAX_TOKENS} tokens (the scratch model's maximum)"
                for what, text in (("input", inputs.text), ("source", inputs.source))
                if text is not None and truncate and len(tokens_of(text)) > MAX_TOKENS
            ]
            results.append(AttentionResult(NAME, inputs.text, (stack,), inputs.extras(), self.precision, tuple(cut)))
        return results
