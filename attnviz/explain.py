"""The attention computation as data: every intermediate tensor of one layer, in order.

    X ─► Q, K, V ─► split heads ─► Q·Kᵀ ─► ÷ √d_k ─► mask ─► softmax ─► ·V ─► concat ─► W_O

`explain()` runs one layer of the scratch model, or transplants one layer of a
BERT-family checkpoint (the embedded MiniLM) into our MultiHeadAttention and feeds it
the hidden states transformers computed for that layer. Each step is recomputed
here line by line, then checked against the module's own forward pass and, for a
pretrained model, against transformers' own attention weights. Nothing here draws;
render/explain.py turns an Explanation into a lesson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .backends.registry import DEFAULT_MODEL, MINILM_NAME, minilm_folder
from .backends.types import Device, Inputs, LoadOptions
from .errors import Fix, ModelError, SelectionError
from .limits import Limits
from .result import Tokens
from .scratch import MultiHeadAttention
from .views import query_index

SCHEMA = "attnviz-explain/1"


@dataclass(frozen=True)
class Step:
    """One line of the computation: its tensor, how its shape came about, and the chosen head's slice."""

    key: str  # x, q, k, v, q_heads, k_heads, v_heads, scores, scaled, masked, weights, mixed, concat, output
    title: str
    formula: str
    axes: str  # what each axis of `values` is, e.g. "(B, h, Tq, Tk)"
    shapes: tuple[tuple[int, ...], ...]  # the shape chain that led here; the last one is values.shape
    values: np.ndarray  # float32, batch axis kept (B = 1)
    head_values: np.ndarray  # 2-D: the rows × columns a learner looks at for the chosen head
    rows: tuple[str, ...]  # labels of head_values' rows (tokens)
    columns: tuple[str, ...]  # labels of its columns (key tokens or dimension numbers)
    note: str = ""


@dataclass(frozen=True)
class Pooling:
    """Attention as pooling for one query: its weights over the keys, and Σ wⱼ·vⱼ."""

    query: int
    token: str
    weights: np.ndarray  # (Tk,) the chosen head's softmax row
    values: np.ndarray  # (Tk, d_k) the head's value vectors
    output: np.ndarray  # (d_k,) Σ_j weights[j] · values[j], summed here one key at a time
    max_difference: float  # between `output` and the weighted-sum step's row


@dataclass(frozen=True)
class Check:
    """One comparison: what against what, the largest absolute difference, and the bar it must clear."""

    what: str
    max_difference: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_difference <= self.tolerance


@dataclass(frozen=True)
class WeightSource:
    """Where the layer's W_Q, W_K, W_V, W_O came from: a seed, a file, or a pretrained checkpoint."""

    source: Literal["random", "file", "pretrained"]  # random: seeded, nothing in them is learned
    seed: int | None = None  # for random weights
    file: str | None = None  # for weights read from a file

    @property
    def random(self) -> bool:
        return self.source == "random"

    def to_json(self) -> dict[str, Any]:
        return {"random": self.random, "source": self.source, "seed": self.seed, "file": self.file}


@dataclass(frozen=True)
class Explanation:
    model: str
    text: str
    source: str | None
    layer: int
    layers: int
    head: int
    heads: int
    d_model: int
    d_k: int
    causal: bool
    query: Tokens
    key: Tokens
    x_note: str  # where X came from
    weights: WeightSource  # random ones show the mechanics only: nothing in them is learned
    steps: tuple[Step, ...]
    pooling: Pooling
    checks: tuple[Check, ...]
    mask: np.ndarray | None  # (Tq, Tk) bool, True = may attend

    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)

    def to_json(self) -> dict[str, Any]:
        """Every intermediate tensor; masked scores (−∞) are written as null."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "text": self.text,
            **({"source": self.source} if self.source is not None else {}),
            "layer": self.layer,
            "layers": self.layers,
            "head": self.head,
            "heads": self.heads,
            "d_model": self.d_model,
            "d_k": self.d_k,
            "causal": self.causal,
            "query_tokens": list(self.query.texts),
            "key_tokens": list(self.key.texts),
            "x": self.x_note,
            "weights": self.weights.to_json(),
            "mask": None if self.mask is None else self.mask.tolist(),
            "steps": [
                {
                    "name": s.key,
                    "title": s.title,
                    "formula": s.formula,
                    "axes": s.axes,
                    "shapes": [list(shape) for shape in s.shapes],
                    "values": _plain(s.values),
                }
                for s in self.steps
            ],
            "pooling": {
                "query": self.pooling.query,
                "token": self.pooling.token,
                "weights": _plain(self.pooling.weights),
                "values": _plain(self.pooling.values),
                "output": _plain(self.pooling.output),
                "max_difference": self.pooling.max_difference,
            },
            "checks": [
                {"what": c.what, "max_difference": c.max_difference, "tolerance": c.tolerance, "ok": c.ok}
                for c in self.checks
            ],
        }


def root(n: int) -> str:
    """'√64 = 8', '√32 ≈ 5.657': exact where the root is whole, else to four significant digits."""
    r = math.sqrt(n)
    return f"√{n} = {r:g}" if r.is_integer() else f"√{n} ≈ {r:.4g}"


def _plain(a: np.ndarray) -> Any:
    """Nested lists of floats, −∞ as None (JSON has no infinity)."""
    values = a.astype(np.float64)
    if np.isfinite(values).all():
        return values.tolist()
    plain = values.astype(object)
    plain[~np.isfinite(values)] = None
    return plain.tolist()


def _np(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def walk(
    attn: MultiHeadAttention, x_q: Tensor, x_kv: Tensor, mask: Tensor | None
) -> tuple[dict[str, Tensor], dict[str, tuple[tuple[int, ...], ...]]]:
    """One attention layer, a line per step: (tensors by step name, shape chain by step name)."""
    B, Tq, d = x_q.shape
    Tk = x_kv.shape[1]
    h, d_k = attn.heads, attn.d_k
    t: dict[str, Tensor] = {"x": x_q}
    chain: dict[str, tuple[tuple[int, ...], ...]] = {}
    t["q"] = attn.query(x_q)  # (B, Tq, d)
    t["k"] = attn.key(x_kv)  # (B, Tk, d)
    t["v"] = attn.value(x_kv)  # (B, Tk, d)
    for name, T in (("q", Tq), ("k", Tk), ("v", Tk)):
        split = t[name].view(B, T, h, d_k)  # (B, T, h, d_k): each head takes d_k consecutive columns
        t[f"{name}_heads"] = split.transpose(1, 2)  # (B, h, T, d_k): heads become a batch-like axis
        chain[f"{name}_heads"] = ((B, T, d), (B, T, h, d_k), (B, h, T, d_k))
    t["scores"] = t["q_heads"] @ t["k_heads"].transpose(-2, -1)  # (B, h, Tq, d_k) @ (B, h, d_k, Tk) → (B, h, Tq, Tk)
    t["scaled"] = t["scores"] / math.sqrt(d_k)  # (B, h, Tq, Tk)
    t["masked"] = t["scaled"] if mask is None else t["scaled"].masked_fill(~mask, float("-inf"))  # (B, h, Tq, Tk)
    t["weights"] = t["masked"].softmax(dim=-1).nan_to_num(0.0)  # (B, h, Tq, Tk): rows sum to 1
    t["mixed"] = t["weights"] @ t["v_heads"]  # (B, h, Tq, Tk) @ (B, h, Tk, d_k) → (B, h, Tq, d_k)
    merged = t["mixed"].transpose(1, 2)  # (B, Tq, h, d_k)
    t["concat"] = merged.reshape(B, Tq, d)  # (B, Tq, d): the heads side by side again
    chain["concat"] = ((B, h, Tq, d_k), (B, Tq, h, d_k), (B, Tq, d))
    t["output"] = attn.out(t["concat"])  # (B, Tq, d)
    return t, chain


def _steps(
    t: dict[str, Tensor],
    chain: dict[str, tuple[tuple[int, ...], ...]],
    head: int,
    d_k: int,
    query: Tokens,
    key: Tokens,
    x_note: str,
    mask_note: str,
) -> tuple[Step, ...]:
    cols = slice(head * d_k, (head + 1) * d_k)  # the chosen head's columns of Q, K, V, concat
    dims = tuple(str(i) for i in range(d_k))
    head_dims = tuple(str(i) for i in range(cols.start, cols.stop))
    rq, rk = query.texts, key.texts
    d = t["x"].shape[-1]

    def step(key_: str, title: str, formula: str, axes: str, head_values: Tensor, rows, columns, note="") -> Step:
        values = _np(t[key_])
        return Step(
            key_,
            title,
            formula,
            axes,
            chain.get(key_, (tuple(values.shape),)),
            values,
            _np(head_values),
            tuple(rows),
            tuple(columns),
            note,
        )

    x = t["x"][0]  # (Tq, d)
    return (
        step("x", "Input X", "X", "(B, Tq, d_model)", x, rq, map(str, range(d)), x_note),
        step("q", "Queries", "Q = X·W_Q + b_Q", "(B, Tq, d_model)", t["q"][0, :, cols], rq, head_dims),
        step("k", "Keys", "K = X·W_K + b_K", "(B, Tk, d_model)", t["k"][0, :, cols], rk, head_dims),
        step("v", "Values", "V = X·W_V + b_V", "(B, Tk, d_model)", t["v"][0, :, cols], rk, head_dims),
        step(
            "q_heads", "Q split into heads", "view, transpose(1, 2)", "(B, h, Tq, d_k)", t["q_heads"][0, head], rq, dims
        ),
        step(
            "k_heads", "K split into heads", "view, transpose(1, 2)", "(B, h, Tk, d_k)", t["k_heads"][0, head], rk, dims
        ),
        step(
            "v_heads", "V split into heads", "view, transpose(1, 2)", "(B, h, Tk, d_k)", t["v_heads"][0, head], rk, dims
        ),
        step("scores", "Raw scores", "S = Q·Kᵀ", "(B, h, Tq, Tk)", t["scores"][0, head], rq, rk),
        step(
            "scaled",
            "Scaled scores",
            f"S / √d_k = S / {root(d_k)}",
            "(B, h, Tq, Tk)",
            t["scaled"][0, head],
            rq,
            rk,
            "without it, scores grow with d_k and the softmax saturates to one key",
        ),
        step(
            "masked",
            "Mask",
            "S' = S where allowed, −∞ elsewhere",
            "(B, h, Tq, Tk)",
            t["masked"][0, head],
            rq,
            rk,
            mask_note,
        ),
        step(
            "weights",
            "Softmax",
            "A = softmax(S') over keys",
            "(B, h, Tq, Tk)",
            t["weights"][0, head],
            rq,
            rk,
            "each row sums to 1",
        ),
        step("mixed", "Weighted sum of values", "Z = A·V", "(B, h, Tq, d_k)", t["mixed"][0, head], rq, dims),
        step(
            "concat",
            "Concatenate heads",
            "transpose(1, 2), reshape",
            "(B, Tq, d_model)",
            t["concat"][0, :, cols],
            rq,
            head_dims,
            f"head {head} fills columns {cols.start}–{cols.stop - 1}",
        ),
        step(
            "output", "Output map", "O = concat·W_O + b_O", "(B, Tq, d_model)", t["output"][0], rq, map(str, range(d))
        ),
    )


def _pooling(t: dict[str, Tensor], head: int, q: int, token: str) -> Pooling:
    w = _np(t["weights"][0, head, q])  # (Tk,)
    v = _np(t["v_heads"][0, head])  # (Tk, d_k)
    out = np.zeros(v.shape[1], dtype=np.float64)
    for wj, vj in zip(w, v):  # one key at a time: the pooling, spelled out
        out += float(wj) * vj.astype(np.float64)
    row = _np(t["mixed"][0, head, q])  # (d_k,)
    return Pooling(q, token, w, v, out.astype(np.float32), float(np.abs(out - row).max()))


def _diff(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _index(spec: int, count: int, what: str, fix: Fix | None = None) -> int:
    if not -count <= spec < count:
        many = f"{count} {what}" + ("s" if count != 1 else "")
        raise SelectionError(f"{what} {spec} does not exist: this model has {many} (0..{count - 1})", fix=fix)
    return spec % count


def default_query(tokens: Tokens) -> int:
    """The last token that is not a special one: "dream" in [CLS] i have a dream [SEP], not [SEP]."""
    real = [i for i in range(len(tokens)) if not tokens.is_special(i)]
    return real[-1] if real else len(tokens) - 1


def _mask_note(mask: Tensor | None, causal: bool) -> str:
    if mask is None:
        return "no mask here: every query may look at every key"
    if causal:
        return "causal: query i may look only at keys 0..i; −∞ becomes weight 0"
    return "masked keys get −∞, so weight 0"


@torch.no_grad()
def explain(
    text: str,
    model: str = "scratch",
    *,
    layer: int = 0,
    head: int = 0,
    query: str | None = None,
    source: str | None = None,
    options: LoadOptions | None = None,
    limits: Limits | None = None,
) -> Explanation:
    """Walk one attention layer of `model` ("scratch", "minilm" or a BERT folder) on `text`; the model
    must be within `limits` (default: Limits())."""
    options = options or LoadOptions(device=Device.CPU)
    if model == "scratch":
        setup = _scratch(text, source, layer, options, limits)
    else:
        if source is not None:
            raise SelectionError("a cross-attention source text is for the scratch model", fix=Fix.DROP_SOURCE)
        setup = _pretrained(text, model, layer, limits)
    attn, x_q, x_kv, mask = setup.attn, setup.x_q, setup.x_kv, setup.mask
    q_tokens, k_tokens = setup.query, setup.key
    head = _index(head, attn.heads, "head")
    q = query_index(q_tokens, query) if query is not None else default_query(q_tokens)

    t, chain = walk(attn, x_q, x_kv, mask)
    output, weights = attn(x_q, x_kv, x_kv, mask)  # the module's own forward: the steps must agree with it
    checks = [
        Check("our steps = MultiHeadAttention.forward (weights)", _diff(t["weights"], weights), 1e-6),
        Check("our steps = MultiHeadAttention.forward (output)", _diff(t["output"], output), 1e-5),
    ]
    if setup.reference is not None:
        what, theirs = setup.reference
        checks.append(Check(what, _diff(t["weights"], theirs), 1e-5))
    causal = mask is not None and options.causal and model == "scratch"
    steps = _steps(t, chain, head, attn.d_k, q_tokens, k_tokens, setup.x_note, _mask_note(mask, causal))
    return Explanation(
        model=setup.model,
        text=text,
        source=source,
        layer=setup.index,
        layers=setup.count,
        head=head,
        heads=attn.heads,
        d_model=attn.d_model,
        d_k=attn.d_k,
        causal=causal,
        query=q_tokens,
        key=k_tokens,
        x_note=setup.x_note,
        weights=setup.weights,
        steps=steps,
        pooling=_pooling(t, head, q, q_tokens.texts[q]),
        checks=tuple(checks),
        mask=None if mask is None else _np(mask.expand(len(q_tokens), len(k_tokens))).astype(bool),
    )


@dataclass(frozen=True)
class _Layer:
    """What explain() needs about the layer it walks, wherever the layer came from."""

    attn: MultiHeadAttention
    x_q: Tensor  # (1, Tq, d)
    x_kv: Tensor  # (1, Tk, d)
    mask: Tensor | None  # broadcastable to (1, h, Tq, Tk)
    query: Tokens
    key: Tokens
    index: int
    count: int
    model: str
    x_note: str
    weights: WeightSource
    reference: tuple[str, Tensor] | None = None  # (what, transformers' weights (1, h, T, T))


def _scratch(text: str, source: str | None, layer: int, options: LoadOptions, limits: Limits | None) -> _Layer:
    from .api import check_text
    from .backends.registry import cached
    from .backends.scratch import ScratchBackend

    check_text(text)
    if source is not None:
        check_text(source, "source")
    backend = cached("scratch", options, limits)
    assert isinstance(backend, ScratchBackend)
    trace = backend.trace(Inputs(text, source=source))
    n = len(backend.model.layers)
    layer = _index(layer, n, "layer", fix=Fix.SCRATCH_LAYERS)
    attn = backend.model.layers[layer]
    assert isinstance(attn, MultiHeadAttention)
    x = trace.hidden[layer]  # (1, Tq, d)
    kv = x if trace.memory is None else trace.memory  # (1, Tk, d)
    origin = "a fixed random vector per word + sinusoidal positions"
    note = origin if layer == 0 else f"layer {layer - 1}'s input + its attention output (the residual path)"
    if trace.memory is not None:
        note += "; the source's tokens are embedded the same way (X_s)"
    if options.weights:
        weights = WeightSource("file", file=options.weights)
    else:
        weights = WeightSource("random", seed=options.seed)
    return _Layer(attn, x, kv, trace.mask, trace.query, trace.key, layer, n, "scratch", note, weights)


def _bert_folder(model: str, limits: Limits | None) -> tuple[Path, str]:
    if model == DEFAULT_MODEL:
        return minilm_folder(), MINILM_NAME
    folder = Path(model)
    config = folder / "config.json"
    hint = "explain walks the scratch model, minilm, or a BERT-family model folder"
    if not config.is_file() or not (folder / "model.safetensors").is_file():
        raise ModelError(f"explain cannot read {model!r}: no config.json and model.safetensors there", hint=hint)
    from .backends.sources import estimate_size, read_config
    from .limits import check_size

    settings = read_config(config)  # a JSON object, or ModelError
    model_type = settings.get("model_type")
    if model_type != "bert":
        raise ModelError(f"explain knows BERT-family layers; {model!r} is {model_type!r}", hint=hint)
    size = estimate_size(settings)
    check_size(f"model {model!r}", size.params, size.layers, limits or Limits())
    return folder, folder.name


def _pretrained(text: str, model: str, layer: int, limits: Limits | None) -> _Layer:
    """Transplant layer `layer` into our module; take its input and reference weights from transformers."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging

    from .api import check_text
    from .backends.encoding import tokens_from_encoding
    from .backends.types import check_length

    check_text(text)
    logging.set_verbosity_error()  # load reports and progress bars are noise on our stderr
    logging.disable_progress_bar()
    folder, name = _bert_folder(model, limits)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        hf = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    except Exception as exc:  # a boundary, as in hf.py: transformers raises many types for bad folders
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot load model {model!r}: {first[:300]}") from exc
    n = int(hf.config.num_hidden_layers)
    layer = _index(layer, n, "layer")
    encoded = tokenizer(text, return_tensors="pt")
    limit = int(hf.config.max_position_embeddings)
    check_length(encoded["input_ids"].shape[1], limit)
    out = hf(**encoded, output_attentions=True, output_hidden_states=True)
    tokens, _ = tokens_from_encoding(encoded.encodings[0])
    attn = MultiHeadAttention.from_bert_layer(folder, layer)
    x = out.hidden_states[layer]  # (1, T, d): what transformers fed this layer
    note = "token + position + segment embeddings, LayerNorm" if layer == 0 else f"the output of layer {layer - 1}"
    note = f"transformers' hidden states entering layer {layer} ({note})"
    reference = (f"our weights = transformers' (layer {layer}, all heads)", out.attentions[layer])
    return _Layer(attn, x, x, None, tokens, tokens, layer, n, name, note, WeightSource("pretrained"), reference)
