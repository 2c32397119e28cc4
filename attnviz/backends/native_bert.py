"""The embedded MiniLM (or any plain BERT folder) in numpy: no torch, no transformers.

A plain BERT (absolute positions, post-LayerNorm, exact GELU) is embeddings, then per
layer: attention → add & norm → feed-forward → add & norm. This module runs that in
float32 numpy on weights read from model.safetensors, and equals transformers' eager
attention weights within 1e-5 (tests/test_bert.py, 1 to 512 tokens) while skipping
the ~1.5 s of `import torch` and the ~1 s of transformers' modeling code.

Weights load lazily: a run reads only the layers it needs (a view of layer 0 reads one
of six) and only the word-embedding rows its tokens use, until it has read so many that
the whole table is cheaper.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError, ModelError
from ..result import AttentionResult, Stack, Tokens, origins
from .encoding import tokens_from_encoding, truncation_notes
from .types import (
    Capture,
    Device,
    Dtype,
    Inputs,
    LayerSink,
    LoadOptions,
    ModelInfo,
    check_length,
    resolve_choice,
)

F32 = np.float32

# ---------------------------------------------------------------- GELU with an exact erf
#
# transformers' BERT uses the erf GELU, 0.5·x·(1 + erf(x/√2)), and numpy has no erf.
# For z ≥ 0, erfc(z) = exp(−z²)·g(t) with t = 3/(3 + z) ∈ (0, 1], where g is smooth and
# bounded; g is the degree-12 polynomial below, fitted by least squares on 400 Chebyshev
# nodes in t to exp(z²)·erfc(z) computed with Python's math.erfc (tests/test_bert.py
# checks it against math.erf). Its error in erf is 2.3e-10, far under float32's 6e-8,
# and its coefficients are small, so float32 Horner keeps it to ~1 ulp of 1 + erf —
# GELU ends within 4e-7 of the exact value, closer than torch's own float32 GELU (1.2e-6).
# Writing 1 + erf as 2 − erfc(z) or erfc(|z|) also keeps the tail for negative x exact.
_ERFC_T = 3.0
_ERFC_G = (  # highest power of t first
    -2.00432410e-02,
    1.35823630e-01,
    -3.54547798e-01,
    4.36232938e-01,
    -3.07895903e-01,
    2.27385255e-01,
    3.40107002e-02,
    1.40327650e-01,
    1.54808286e-01,
    1.77779273e-01,
    1.88055889e-01,
    1.88063322e-01,
    -3.70554829e-10,
)
_ERFC_G32 = tuple(F32(c) for c in _ERFC_G)


def erfc_positive(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z ≥ 0, in z's dtype (a new array)."""
    t = F32(_ERFC_T) / (F32(_ERFC_T) + z) if z.dtype == F32 else _ERFC_T / (_ERFC_T + z)
    coeffs = _ERFC_G32 if z.dtype == F32 else _ERFC_G
    g = np.full_like(t, coeffs[0])
    for c in coeffs[1:]:  # Horner, in place: two passes over the array per coefficient
        g *= t
        g += c
    g *= np.exp(-(z * z))
    return g


def gelu(x: np.ndarray) -> np.ndarray:
    """0.5·x·(1 + erf(x/√2)), the exact GELU, for a float32 array (a new array)."""
    tail = erfc_positive(np.abs(x) * F32(1 / math.sqrt(2)))  # erfc(|x|/√2)
    phi = np.where(x >= 0, F32(2) - tail, tail)  # 1 + erf(x/√2)
    phi *= x
    phi *= F32(0.5)
    return phi


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis, biased variance, as torch computes it."""
    centred = x - x.mean(-1, keepdims=True)
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    centred /= np.sqrt(var + F32(eps))
    centred *= weight
    centred += bias
    return centred


# ---------------------------------------------------------------- weights


@dataclass(frozen=True)
class BertConfig:
    """The config.json fields the forward pass reads."""

    layers: int
    heads: int
    d_model: int
    d_ff: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float

    @classmethod
    def read(cls, folder: Path) -> BertConfig:
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            config = cls(
                layers=int(cfg["num_hidden_layers"]),
                heads=int(cfg["num_attention_heads"]),
                d_model=int(cfg["hidden_size"]),
                d_ff=int(cfg["intermediate_size"]),
                vocab_size=int(cfg["vocab_size"]),
                max_positions=int(cfg["max_position_embeddings"]),
                type_vocab_size=int(cfg.get("type_vocab_size", 2)),
                eps=float(cfg.get("layer_norm_eps", 1e-12)),
            )
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"cannot read the BERT config in {folder}: {exc}") from None
        # what this forward pass implements; anything else would give wrong weights quietly
        unsupported = {
            "hidden_act": (cfg.get("hidden_act", "gelu"), "gelu"),
            "position_embedding_type": (cfg.get("position_embedding_type", "absolute"), "absolute"),
        }
        for key, (value, wanted) in unsupported.items():
            if value != wanted:
                raise ModelError(f"{folder}: {key} {value!r} is not a plain BERT's {wanted!r}")
        if config.heads < 1 or config.d_model % config.heads:
            raise ModelError(f"{folder}: {config.heads} heads do not divide the width {config.d_model}")
        return config


@dataclass(frozen=True)
class LayerWeights:
    """One encoder layer, matrices laid out for x @ W: (in, out)."""

    qkv: np.ndarray  # (d, 3d): query | key | value
    qkv_bias: np.ndarray  # (3d,)
    out: np.ndarray  # (d, d)
    out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]  # weight, bias
    ff_in: np.ndarray  # (d, d_ff)
    ff_in_bias: np.ndarray
    ff_out: np.ndarray  # (d_ff, d)
    ff_out_bias: np.ndarray
    ff_norm: tuple[np.ndarray, np.ndarray]


# names after the "bert." prefix a task checkpoint (BertForMaskedLM, …) puts before them
_EMBEDDINGS = {
    "word": "embeddings.word_embeddings.weight",
    "position": "embeddings.position_embeddings.weight",
    "token_type": "embeddings.token_type_embeddings.weight",
    "norm_weight": "embeddings.LayerNorm.weight",
    "norm_bias": "embeddings.LayerNorm.bias",
}
_LAYER = (
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
)
# After this many word-embedding rows read one by one, map the whole table (one row costs
# ~25 µs read alone; from the map, rows are read from the page cache as they are used, so a
# long run does not hold MiniLM's 47 MB table in its own memory).
_ROWS_BEFORE_TABLE = 1000


class BertWeights:
    """The checkpoint, read on demand from model.safetensors (memory-mapped by safetensors)."""

    def __init__(self, folder: Path, config: BertConfig) -> None:
        from safetensors import safe_open

        file = folder / "model.safetensors"
        self._path = file
        try:
            self._file = safe_open(str(file), framework="np")
            shapes = {k: tuple(self._file.get_slice(k).get_shape()) for k in self._file.keys()}
        except Exception as exc:  # a boundary: safetensors raises its own types for missing, bad or short files
            raise ModelError(f"cannot read the BERT weights {file}: {exc}") from None
        self.prefix = "bert." if f"bert.{_EMBEDDINGS['word']}" in shapes else ""
        d, f = config.d_model, config.d_ff
        expected = {
            _EMBEDDINGS["word"]: (config.vocab_size, d),
            _EMBEDDINGS["position"]: (config.max_positions, d),
            _EMBEDDINGS["token_type"]: (config.type_vocab_size, d),
            _EMBEDDINGS["norm_weight"]: (d,),
            _EMBEDDINGS["norm_bias"]: (d,),
        }
        per_layer = dict(zip(_LAYER, [(d, d), (d,)] * 4 + [(d,), (d,), (f, d), (f,), (d, f), (d,), (d,), (d,)]))
        for i in range(config.layers):
            expected.update({f"encoder.layer.{i}.{k}": shape for k, shape in per_layer.items()})
        missing = [k for k in expected if self.prefix + k not in shapes]
        if missing:
            raise ModelError(f"{file} lacks {len(missing)} BERT weights, e.g. {missing[0]}")
        wrong = [k for k, shape in expected.items() if shapes[self.prefix + k] != shape]
        if wrong:
            k = wrong[0]
            raise ModelError(f"{file}: {k} is {shapes[self.prefix + k]}, the config says {expected[k]}")
        self.config = config
        self._layers: dict[int, LayerWeights] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._word_table: np.ndarray | None = None
        self._rows_read = 0

    def _get(self, name: str) -> np.ndarray:
        return np.asarray(self._file.get_tensor(self.prefix + name), dtype=F32)

    def embedding(self, name: str) -> np.ndarray:
        """position, token_type, norm_weight or norm_bias (not word: see word_rows)."""
        if name not in self._embeddings:
            self._embeddings[name] = self._get(_EMBEDDINGS[name])
        return self._embeddings[name]

    def word_rows(self, ids: np.ndarray) -> np.ndarray:
        """Word embeddings of token ids (any shape) → ids.shape + (d,)."""
        if self._word_table is None and self._rows_read + ids.size > _ROWS_BEFORE_TABLE:
            mapped = self._mapped(_EMBEDDINGS["word"])
            self._word_table = mapped if mapped is not None else self._get(_EMBEDDINGS["word"])
        if self._word_table is not None:
            return self._word_table[ids]
        unique, inverse = np.unique(ids, return_inverse=True)
        table = self._file.get_slice(self.prefix + _EMBEDDINGS["word"])
        rows = np.stack([table[int(i) : int(i) + 1][0] for i in unique]).astype(F32, copy=False)  # (U, d)
        self._rows_read += len(unique)
        return rows[inverse.reshape(ids.shape)]

    def _mapped(self, name: str) -> np.ndarray | None:
        """A float32 tensor as a read-only memory map of model.safetensors (8-byte header length,
        JSON header, then the data), or None when it is stored otherwise."""
        import struct

        try:
            with open(self._path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                entry = json.loads(f.read(size))[self.prefix + name]
            if entry["dtype"] != "F32":
                return None
            start, end = entry["data_offsets"]
            shape = tuple(entry["shape"])
            if end - start != 4 * math.prod(shape):
                return None
            return np.memmap(self._path, dtype="<f4", mode="r", offset=8 + size + start, shape=shape)
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None  # read whole instead, as safetensors reads it

    def layer(self, i: int) -> LayerWeights:
        if i not in self._layers:
            w = {k: self._get(f"encoder.layer.{i}.{k}") for k in _LAYER}
            a = "attention.self."
            # torch's Linear stores (out, in); concatenating q, k, v as rows gives one (3d, in) matrix
            qkv = np.concatenate([w[a + "query.weight"], w[a + "key.weight"], w[a + "value.weight"]])
            self._layers[i] = LayerWeights(
                qkv=qkv.T,
                qkv_bias=np.concatenate([w[a + "query.bias"], w[a + "key.bias"], w[a + "value.bias"]]),
                out=w["attention.output.dense.weight"].T,
                out_bias=w["attention.output.dense.bias"],
                attention_norm=(w["attention.output.LayerNorm.weight"], w["attention.output.LayerNorm.bias"]),
                ff_in=w["intermediate.dense.weight"].T,
                ff_in_bias=w["intermediate.dense.bias"],
                ff_out=w["output.dense.weight"].T,
                ff_out_bias=w["output.dense.bias"],
                ff_norm=(w["output.LayerNorm.weight"], w["output.LayerNorm.bias"]),
            )
        return self._layers[i]


# ---------------------------------------------------------------- the forward pass


def attention_weights(
    x: np.ndarray, lw: LayerWeights, heads: int, keep: np.ndarray | None, only: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax(q kᵀ/√d_k) of one layer, and the value vectors (None with `only`).

    x: (B, T, d); keep: (B, T) bool, None when nothing is padded. `only` computes just those
    heads and no values: the last layer a run needs goes no further than its weights.
    """
    B, T, d = x.shape
    d_k = d // heads
    width = 2 * d if only is not None else 3 * d
    qkv = x @ lw.qkv[:, :width]  # (B, T, 2d or 3d)
    qkv += lw.qkv_bias[:width]
    split = qkv.reshape(B, T, width // d_k, d_k).transpose(0, 2, 1, 3)  # (B, 3h, T, d_k)
    q, k = split[:, :heads], split[:, heads : 2 * heads]  # (B, h, T, d_k) each
    if only is not None:
        q, k = q[:, list(only)], k[:, list(only)]  # (B, h', T, d_k)
    scores = q @ k.transpose(0, 1, 3, 2)  # (B, h, T, T)
    scores *= F32(d_k**-0.5)  # scaled after the product, as transformers does: same rounding
    if keep is not None:
        np.copyto(scores, -np.inf, where=~keep[:, None, None, :])  # padded keys: weight 0
    scores -= scores.max(-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(-1, keepdims=True)
    return scores, (split[:, 2 * heads :] if only is None else None)  # (B, h, T, T), (B, h, T, d_k)


def encoder_layer(x: np.ndarray, lw: LayerWeights, weights: np.ndarray, values: np.ndarray, eps: float) -> np.ndarray:
    """The rest of a layer after its attention weights: context, add & norm, feed-forward, add & norm."""
    B, T, d = x.shape
    context = (weights @ values).transpose(0, 2, 1, 3).reshape(B, T, d)  # (B, h, T, d_k) → (B, T, d)
    attended = context @ lw.out
    attended += lw.out_bias
    attended += x
    x = layer_norm(attended, *lw.attention_norm, eps)  # (B, T, d)
    hidden = x @ lw.ff_in
    hidden += lw.ff_in_bias
    fed = gelu(hidden) @ lw.ff_out  # (B, T, d_ff) → (B, T, d)
    fed += lw.ff_out_bias
    fed += x
    return layer_norm(fed, *lw.ff_norm, eps)


class BertEncoder:
    """Embeddings, then layer after layer, yielding each layer's attention weights."""

    def __init__(self, folder: Path) -> None:
        self.config = BertConfig.read(folder)
        self.weights = BertWeights(folder, self.config)

    def embed(self, ids: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        """ids, type_ids: (B, T) → (B, T, d)."""
        w, T, cfg = self.weights, ids.shape[1], self.config
        if ids.max() >= cfg.vocab_size or type_ids.max() >= cfg.type_vocab_size:  # a tokenizer of another model
            raise ModelError(f"the tokenizer gives ids the model has no embedding for (vocabulary {cfg.vocab_size})")
        x = w.word_rows(ids)  # (B, T, d)
        x += w.embedding("position")[:T]
        x += w.embedding("token_type")[type_ids]
        return layer_norm(x, w.embedding("norm_weight"), w.embedding("norm_bias"), cfg.eps)

    def attention(
        self,
        ids: np.ndarray,
        type_ids: np.ndarray,
        keep: np.ndarray | None,
        layers: Sequence[int],
        heads: Sequence[int],
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(layer, weights (B, h', T, T) of `heads`) for each of `layers` (ascending), stopping after the last."""
        cfg = self.config
        x = self.embed(ids, type_ids)
        wanted, last = set(layers), max(layers)
        every_head = list(heads) == list(range(cfg.heads))
        for i in range(last + 1):
            lw = self.weights.layer(i)
            if i == last:  # nothing after its weights is needed
                w, _ = attention_weights(x, lw, cfg.heads, keep, only=heads)
                yield i, w
                return
            w, values = attention_weights(x, lw, cfg.heads, keep)
            if i in wanted:
                yield i, w if every_head else w[:, list(heads)]
            assert values is not None
            x = encoder_layer(x, lw, w, values, cfg.eps)


# ---------------------------------------------------------------- BLAS threads

# OpenBLAS's default (one thread per core) is slower for this model's small matrices, and
# far slower on a busy machine: on the 2-core box the project measures on, one thread ran
# a 512-token MiniLM pass in 0.2–0.4 s against 0.9–4.4 s with two. A user who sets the
# usual variables keeps their choice.
BLAS_THREADS = 1
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@contextmanager
def blas_threads() -> Iterator[None]:
    """Run the block with BLAS_THREADS BLAS threads (--threads N: N), unless the environment says otherwise."""
    from ..threads import chosen

    limit = chosen()
    if limit is None and any(os.environ.get(v) for v in _THREAD_VARIABLES):
        yield
        return
    with _blas_controller().limit(limits=limit or BLAS_THREADS, user_api="blas"):
        yield


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the BLAS numpy loaded (~1 ms): once per process


# ---------------------------------------------------------------- the backend


class BertBackend:
    """The embedded MiniLM (or any plain BERT folder) on numpy, float32, CPU."""

    def __init__(self, folder: Path, name: str, options: LoadOptions) -> None:
        from tokenizers import Tokenizer

        device = resolve_choice(Device, options.device, "device")
        dtype = resolve_choice(Dtype, options.dtype, "dtype")
        if device not in (Device.AUTO, Device.CPU) or dtype is not Dtype.FLOAT32:
            # the registry sends these to the transformers backend; reaching here is a caller's mistake
            raise DeviceError(f"attnviz's numpy BERT runs float32 on the CPU, not {dtype.value} on {device.value}")
        self.encoder = BertEncoder(folder)
        cfg = self.encoder.config
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # a boundary: tokenizers raises its own error for bad files
            raise ModelError(f"cannot read the tokenizer of {folder}: {exc}") from None
        self.tokenizer.no_truncation()  # the file pins 128 (sentence-transformers' choice); BERT takes 512
        self.tokenizer.no_padding()
        self.max_positions = cfg.max_positions
        self.info = ModelInfo(
            name=name,
            family="encoder",
            backend="native",
            stacks=("encoder",),
            layers={"encoder": cfg.layers},
            heads=cfg.heads,
            d_model=cfg.d_model,
            vocab_size=cfg.vocab_size,
            max_positions=self.max_positions,
            path=str(folder),
            extra={"runs on": "numpy, CPU, float32 (another device or dtype runs it on transformers)"},
        )

    def _encode(self, batch: Sequence[Inputs], truncate: bool) -> list[Any]:
        if truncate:
            self.tokenizer.enable_truncation(self.max_positions)
        try:
            pairs = [(x.text, x.pair) if x.pair is not None else x.text for x in batch]
            encodings = self.tokenizer.encode_batch(pairs)
        finally:
            self.tokenizer.no_truncation()
        for enc in encodings:
            check_length(len(enc.ids), self.max_positions)
        return encodings

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        return {"input": tokens_from_encoding(self._encode([inputs], truncate=False)[0], inputs.texts())[0]}

    def vocabulary(self) -> list[str]:
        vocab = self.tokenizer.get_vocab(with_added_tokens=False)
        return sorted(vocab, key=vocab.__getitem__)

    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        """One padded forward pass for the batch, as far as the last captured layer; padding cut off."""
        layers, heads = self._pick(capture)
        encodings = self._encode(batch, truncate)
        maps = dict(self._forward(encodings, sorted(set(layers)), heads))
        return [
            self._result(inputs, enc, b, [maps[i] for i in layers], layers, heads)  # in the capture's order
            for b, (inputs, enc) in enumerate(zip(batch, encodings))
        ]

    def stream(self, inputs: Inputs, sink: LayerSink, truncate: bool = False, capture: Capture | None = None) -> None:
        """Each kept layer to `sink` as the forward pass makes it: one layer's maps held at a time."""
        layers, heads = self._pick(capture)
        encodings = self._encode([inputs], truncate)
        for i, maps in self._forward(encodings, sorted(set(layers)), heads):
            sink(self._result(inputs, encodings[0], 0, [maps], [i], heads))

    def _pick(self, capture: Capture | None) -> tuple[list[int], list[int]]:
        cfg = self.encoder.config
        return (capture or Capture()).pick(cfg.layers, cfg.heads)

    def _forward(self, encodings: list[Any], layers: list[int], heads: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(layer, maps (B, h', T, T)) for each of `layers` (ascending), the batch padded to its longest."""
        lengths = [len(e.ids) for e in encodings]
        B, T = len(encodings), max(lengths)
        ids = np.zeros((B, T), dtype=np.int64)
        type_ids = np.zeros((B, T), dtype=np.int64)
        keep = np.zeros((B, T), dtype=bool)
        for b, (enc, n) in enumerate(zip(encodings, lengths)):
            ids[b, :n], type_ids[b, :n], keep[b, :n] = enc.ids, enc.type_ids, True
        with blas_threads():
            yield from self.encoder.attention(ids, type_ids, None if keep.all() else keep, layers, heads)

    def _result(
        self, inputs: Inputs, enc: Any, b: int, maps: list[np.ndarray], layers: list[int], heads: list[int]
    ) -> AttentionResult:
        """Row b of the batch's maps (one (B, h', T, T) per layer), cut to its own tokens."""
        cfg, n = self.encoder.config, len(enc.ids)
        tokens, _ = tokens_from_encoding(enc, inputs.texts())
        weights = np.stack([m[b, :, :n, :n] for m in maps])  # (L', h', n, n)
        stack = Stack(
            "encoder",
            tokens,
            tokens,
            weights,
            layer_axis=origins(layers),
            head_axis=origins(heads),
            model_layers=cfg.layers,
            model_heads=cfg.heads,
        )
        notes = truncation_notes(enc)
        return AttentionResult(self.info.name, inputs.text, (stack,), inputs.extras(), Dtype.FLOAT32.value, notes)
