"""Multi-head attention written out the textbook way.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

Every step is a separate line with its shape beside it, so the module can be read
as the lesson and tested against torch.nn.MultiheadAttention and real BERT layers.
Shape letters: B batch, Tq / Tk query / key length, h heads, d_k = d_model / h.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn


def causal_mask(tq: int, tk: int | None = None, device: torch.device | None = None) -> Tensor:
    """(Tq, Tk) bool, True where query i may look at key j (j <= i)."""
    tk = tq if tk is None else tk
    return torch.ones(tq, tk, dtype=torch.bool, device=device).tril()


def padding_mask(key_keep: Tensor) -> Tensor:
    """(B, Tk) bool keep-flags → (B, 1, 1, Tk): broadcasts over heads and queries."""
    return key_keep[:, None, None, :].bool()


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value/output linear maps.

    `forward(query, key, value, mask)` returns `(output, weights)`; weights are per
    head, `[B, h, Tq, Tk]`, never averaged. `mask` is boolean and broadcastable to
    `[B, h, Tq, Tk]`: True where attention is allowed (the opposite of PyTorch's
    `attn_mask` convention, and the one the textbook formula uses).
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} is not divisible by heads={heads}")
        self.d_model = d_model
        self.heads = heads
        self.d_k = d_model // heads
        self.query = nn.Linear(d_model, d_model, bias=bias)
        self.key = nn.Linear(d_model, d_model, bias=bias)
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, d_model) → (B, h, T, d_k)."""
        B, T, _ = x.shape
        x = x.view(B, T, self.heads, self.d_k)  # (B, T, h, d_k)
        return x.transpose(1, 2)  # (B, h, T, d_k)

    def attention_weights(self, q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
        """softmax(q kᵀ / √d_k) with masked keys at exactly 0: (B, h, Tq, Tk)."""
        scores = q @ k.transpose(-2, -1)  # (B, h, Tq, d_k) @ (B, h, d_k, Tk) → (B, h, Tq, Tk)
        scores = scores / math.sqrt(self.d_k)  # keeps the softmax out of saturation as d_k grows
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)  # each row: a distribution over keys
        if mask is not None:
            weights = weights.nan_to_num(0.0)  # a row with every key masked: all zeros, not NaN
        return weights

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Self-attention when query is key is value; cross-attention otherwise."""
        B, Tq, _ = query.shape
        q = self.split_heads(self.query(query))  # (B, h, Tq, d_k)
        k = self.split_heads(self.key(key))  # (B, h, Tk, d_k)
        v = self.split_heads(self.value(value))  # (B, h, Tk, d_k)
        weights = self.attention_weights(q, k, mask)  # (B, h, Tq, Tk)
        mixed = self.dropout(weights) @ v  # (B, h, Tq, d_k): weighted sum of values
        mixed = mixed.transpose(1, 2).reshape(B, Tq, self.d_model)  # concat heads: (B, Tq, d_model)
        return self.out(mixed), weights  # (B, Tq, d_model), (B, h, Tq, Tk)

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of PyTorch's module (packed or separate projections)."""
        d, h = m.embed_dim, m.num_heads
        if m.kdim != d or m.vdim != d:
            raise ValueError("from_torch needs kdim == vdim == embed_dim")
        if m.bias_k is not None or m.add_zero_attn:
            raise ValueError("from_torch does not support add_bias_kv or add_zero_attn")
        has_bias = m.in_proj_bias is not None
        ours = cls(d, h, dropout=m.dropout, bias=has_bias)
        with torch.no_grad():
            if m.in_proj_weight is not None:
                wq, wk, wv = m.in_proj_weight.chunk(3)  # packed (3·d, d) → three (d, d)
            else:
                wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
            for linear, w in zip((ours.query, ours.key, ours.value), (wq, wk, wv)):
                linear.weight.copy_(w)
            if has_bias:
                for linear, b in zip((ours.query, ours.key, ours.value), m.in_proj_bias.chunk(3)):
                    linear.bias.copy_(b)
            ours.out.weight.copy_(m.out_proj.weight)
            if has_bias:
                ours.out.bias.copy_(m.out_proj.bias)
        return ours

    @classmethod
    def from_bert_layer(cls, folder: str | Path, layer: int) -> MultiHeadAttention:
        """Transplant self-attention layer `layer` of a BERT-family checkpoint folder.

        Reads config.json and model.safetensors directly (transformers' names:
        `[bert.]encoder.layer.L.attention.self.{query,key,value}`, `...attention.output.dense`).
        """
        from safetensors import safe_open

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        d, h, n = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} does not exist: the model has {n} layers (0..{n - 1})")
        ours = cls(d, h)
        parts = {
            ours.query: "attention.self.query",
            ours.key: "attention.self.key",
            ours.value: "attention.self.value",
            ours.out: "attention.output.dense",
        }
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            names = set(f.keys())
            prefix = "bert." if f"bert.encoder.layer.{layer}.{parts[ours.query]}.weight" in names else ""
            with torch.no_grad():
                for linear, part in parts.items():
                    for attr in ("weight", "bias"):
                        getattr(linear, attr).copy_(f.get_tensor(f"{prefix}encoder.layer.{layer}.{part}.{attr}"))
        return ours.eval()
