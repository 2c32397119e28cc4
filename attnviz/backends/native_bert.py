"""Our own BERT encoder for the embedded MiniLM: no transformers import at run time.

The embedded model is a plain BERT (absolute positions, post-LayerNorm, GELU), so
embeddings + our MultiHeadAttention + feed-forward reproduce transformers' eager
attention weights (tests hold it to 1e-5) while skipping ~2 s of importing
transformers' modeling code. Weights come straight from model.safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ModelError
from ..result import AttentionResult, Stack, Tokens
from ..scratch import MultiHeadAttention, padding_mask
from .encoding import tokens_from_encoding, truncation_notes
from .types import Capture, Dtype, Inputs, LoadOptions, ModelInfo, check_length, resolve_device, resolve_dtype


class BertLayer(nn.Module):
    """attention → add & norm → feed-forward (GELU) → add & norm."""

    def __init__(self, d_model: int, heads: int, d_ff: int, eps: float) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(d_model, heads)
        self.attention_norm = nn.LayerNorm(d_model, eps=eps)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.ff_norm = nn.LayerNorm(d_model, eps=eps)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        attended, weights = self.attention(x, x, x, mask)  # (B, T, d), (B, h, T, T)
        x = self.attention_norm(x + attended)
        x = self.ff_norm(x + self.ff_out(nn.functional.gelu(self.ff_in(x))))
        return x, weights


class BertEncoder(nn.Module):
    """Token + position + segment embeddings, then N BertLayers."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        d, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.position = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type = nn.Embedding(cfg.get("type_vocab_size", 2), d)
        self.embed_norm = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(d, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
            for _ in range(cfg["num_hidden_layers"])
        )

    def forward(self, ids: Tensor, type_ids: Tensor, keep: Tensor) -> list[Tensor]:
        """ids, type_ids, keep: (B, T) → the attention weights of each layer, (B, h, T, T) each."""
        B, T = ids.shape
        positions = torch.arange(T, device=ids.device)  # (T,)
        x = self.embed_norm(self.word(ids) + self.position(positions) + self.token_type(type_ids))  # (B, T, d)
        mask = padding_mask(keep)  # (B, 1, 1, T): padded keys get weight 0
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask)
            weights.append(w)  # (B, h, T, T)
        return weights


# transformers' checkpoint names → ours (after stripping a "bert." prefix)
_RENAMES = (
    ("embeddings.word_embeddings.", "word."),
    ("embeddings.position_embeddings.", "position."),
    ("embeddings.token_type_embeddings.", "token_type."),
    ("embeddings.LayerNorm.", "embed_norm."),
    ("encoder.layer.", "layers."),
    (".attention.self.", ".attention."),
    (".attention.output.dense.", ".attention.out."),
    (".attention.output.LayerNorm.", ".attention_norm."),
    (".intermediate.dense.", ".ff_in."),
    (".output.dense.", ".ff_out."),
    (".output.LayerNorm.", ".ff_norm."),
    (".gamma", ".weight"),
    (".beta", ".bias"),
)


def _rename(key: str) -> str:
    key = key.removeprefix("bert.")
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return key


@contextmanager
def _uninitialised() -> Iterator[None]:
    """Build modules with torch.empty parameters: the checkpoint overwrites every one.

    Random init costs ~0.1 s for MiniLM; building on the meta device instead pulls in
    torch._dynamo (~0.9 s). load_state_dict(strict=True) below proves nothing is left empty.
    """
    classes: tuple[type[nn.Module], ...] = (nn.Linear, nn.Embedding, nn.LayerNorm)
    saved = [module.reset_parameters for module in classes]  # type: ignore[attr-defined]
    for module in classes:
        module.reset_parameters = lambda self: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, reset in zip(classes, saved):
            module.reset_parameters = reset  # type: ignore[attr-defined]


def load_encoder(folder: Path, device: torch.device, dtype: torch.dtype) -> tuple[BertEncoder, dict[str, Any]]:
    """Build the encoder without random init and assign the checkpoint's tensors."""
    from safetensors.torch import load_file

    try:
        cfg = json.loads((folder / "config.json").read_text())
        with _uninitialised():
            model = BertEncoder(cfg)
        wanted = model.state_dict().keys()
        raw = load_file(str(folder / "model.safetensors"), device=str(device))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the BERT model in {folder}: {exc}") from exc
    state = {k: v.to(dtype) for k, v in ((_rename(k), v) for k, v in raw.items()) if k in wanted}
    missing = set(wanted) - state.keys()
    if missing:
        raise ModelError(f"{folder} lacks {len(missing)} BERT weights, e.g. {sorted(missing)[0]}")
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval(), cfg


class BertBackend:
    """The embedded MiniLM (or any plain BERT folder) without transformers."""

    def __init__(self, folder: Path, name: str, options: LoadOptions) -> None:
        from tokenizers import Tokenizer

        self.device = resolve_device(options.device)
        self.model, cfg = load_encoder(folder, self.device, resolve_dtype(options.dtype))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()  # the file pins 128 (sentence-transformers' choice); BERT takes 512
        self.tokenizer.no_padding()
        self.max_positions = int(cfg["max_position_embeddings"])
        self.precision = Dtype(options.dtype).value
        self.info = ModelInfo(
            name=name,
            family="encoder",
            backend="native",
            stacks=("encoder",),
            layers={"encoder": int(cfg["num_hidden_layers"])},
            heads=int(cfg["num_attention_heads"]),
            d_model=int(cfg["hidden_size"]),
            vocab_size=int(cfg["vocab_size"]),
            max_positions=self.max_positions,
            path=str(folder),
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

    @torch.inference_mode()
    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        """One padded forward pass for the batch; each result cut back to its own tokens."""
        encodings = self._encode(batch, truncate)
        T = max(len(e.ids) for e in encodings)

        def padded(rows: list[list[int]]) -> Tensor:
            return torch.tensor([r + [0] * (T - len(r)) for r in rows], device=self.device)  # (B, T)

        ids = padded([e.ids for e in encodings])
        type_ids = padded([e.type_ids for e in encodings])
        keep = padded([[1] * len(e.ids) for e in encodings]).bool()
        weights = self.model(ids, type_ids, keep)
        stacked = torch.stack(weights, dim=1).float().cpu().numpy()  # (B, L, h, T, T)
        results = []
        for b, (inputs, enc) in enumerate(zip(batch, encodings)):
            n = len(enc.ids)
            tokens, _ = tokens_from_encoding(enc, inputs.texts())
            stack = Stack("encoder", tokens, tokens, stacked[b, :, :, :n, :n].copy())
            if capture is not None:
                stack = capture.cut(stack)
            notes = truncation_notes(enc)
            results.append(
                AttentionResult(self.info.name, inputs.text, (stack,), inputs.extras(), self.precision, notes)
            )
        return results
