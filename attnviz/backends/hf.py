"""The transformers backend: any model folder or hub id, with eager attention.

sdpa and flash kernels never materialise the weights, and with sdpa transformers
5.x returns an empty tuple for `output_attentions=True`, so eager is forced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelError
from ..result import AttentionResult, Stack, Tokens
from .encoding import tokens_from_encoding, truncation_notes
from .sources import Source
from .types import Capture, Dtype, Inputs, LoadOptions, ModelInfo, check_length, resolve_device, resolve_dtype

_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _family(config: Any) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    archs = getattr(config, "architectures", None) or []
    if getattr(config, "is_decoder", False) or any(a.endswith(_DECODER_SUFFIXES) for a in archs):
        return "decoder"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    causal_only = (
        config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )
    return "decoder" if causal_only else "encoder"


def _max_positions(config: Any, tokenizer: Any) -> int | None:
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and limit < 1_000_000 else None


def _check_weights(spec: str, model: Any, loading: dict[str, Any], allow: bool) -> None:
    """A checkpoint that leaves weights of the model at their random start, or that holds weights of
    layers the model does not have, would give attention that looks right and is not: refuse it.

    The pooler is not on the attention path, and keys of a task head (lm_head, cls, …) are
    simply not part of the base model: neither counts.
    """
    prefix = f"{model.base_model_prefix}."
    parts = {name for name, _ in model.named_children()}
    missing = sorted(k for k in loading.get("missing_keys", ()) if "pooler" not in k)
    unexpected = sorted(k for k in loading.get("unexpected_keys", ()) if k.removeprefix(prefix).split(".")[0] in parts)
    if not (missing or unexpected) or allow:
        return
    found = [f"{len(missing)} missing ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})"] if missing else []
    if unexpected:
        more = ", …" if len(unexpected) > 3 else ""
        found.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])}{more})")
    raise ModelError(
        f"the checkpoint of {spec!r} does not match its config: weights {' and '.join(found)}; "
        "the model would run with random weights there",
        hint="check the folder was saved whole; allow it anyway with --allow-missing",
    )


class HFBackend:
    """A transformers model loaded with AutoModel (no task head) in eval mode."""

    def __init__(self, spec: str, source: Source, options: LoadOptions) -> None:
        trust = options.trust_remote_code
        self.device = resolve_device(options.device)
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging

        logging.set_verbosity_error()  # load reports and progress bars are noise on our stderr
        logging.disable_progress_bar()
        common: dict[str, Any] = dict(trust_remote_code=trust, local_files_only=source.local_files_only)
        try:
            config = AutoConfig.from_pretrained(source.location, **common)
            self.tokenizer = AutoTokenizer.from_pretrained(source.location, **common)
            # safetensors first; a .bin checkpoint goes through torch.load(weights_only=True)
            self.model, loading = AutoModel.from_pretrained(
                source.location,
                config=config,
                attn_implementation="eager",
                dtype=resolve_dtype(options.dtype),
                output_loading_info=True,
                **common,
            )
        except Exception as exc:  # a boundary: transformers raises many types for bad folders
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(f"cannot load model {spec!r}: {first[:300]}") from exc
        _check_weights(spec, self.model, loading, options.allow_missing)
        self.model.to(self.device).eval()
        self.config = config
        self.family = _family(config)
        if self.tokenizer.pad_token is None:  # GPT-2/LLaMA: any id works, padded keys are masked
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        self.max_positions = _max_positions(config, self.tokenizer)
        self.spec = spec
        self.precision = Dtype(options.dtype).value
        self._info: ModelInfo | None = None

    @property
    def info(self) -> ModelInfo:
        """Layer and head counts read off a real forward pass, not guessed from config names."""
        if self._info is None:
            probe = self.run([Inputs("attention is all you need", target="attention")])[0]
            cfg = self.config
            text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
            self._info = ModelInfo(
                name=self.spec,
                family=self.family,
                backend="transformers",
                stacks=probe.stack_names,
                layers={s.name: s.layers for s in probe.stacks},
                heads=probe.stacks[0].heads,
                d_model=int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "d_model", 0) or 0),
                vocab_size=int(getattr(text_cfg, "vocab_size", 0) or 0),
                max_positions=self.max_positions,
                path=str(getattr(cfg, "_name_or_path", self.spec)),
                extra={"model_type": cfg.model_type, "class": type(self.model).__name__},
            )
        return self._info

    def _encode(self, texts: list[str], pairs: list[str] | None, truncate: bool, target: bool = False) -> Any:
        kwargs: dict[str, Any] = dict(padding=True, return_tensors="pt", return_special_tokens_mask=True)
        # the decoder reads the target behind one start token, so the target gets one position less
        limit = self.max_positions - 1 if target and self.max_positions else self.max_positions
        if truncate and limit:
            kwargs.update(truncation=True, max_length=limit)
        if target:
            batch = self.tokenizer(text_target=texts, **kwargs)
        else:
            batch = self.tokenizer(texts, text_pair=pairs, **kwargs)
        if not getattr(batch, "encodings", None):
            raise ModelError(f"{self.spec}: attnviz needs a fast (tokenizers-based) tokenizer")
        for enc in batch.encodings:
            check_length(sum(enc.attention_mask), limit, "target" if target else "input")
        return batch

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        pairs = [inputs.pair] if inputs.pair is not None else None
        encoding = self._encode([inputs.text], pairs, False).encodings[0]
        out = {"input": tokens_from_encoding(encoding, inputs.texts())[0]}
        if self.family == "encoder-decoder":
            out["target"] = self._decoder_tokens(self._decoder_inputs([inputs], False).encodings[0], inputs)[0]
        return out

    def vocabulary(self) -> list[str]:
        vocab = self.tokenizer.get_vocab()
        specials = set(self.tokenizer.all_special_tokens)
        return [t for t in sorted(vocab, key=vocab.__getitem__) if t not in specials]

    def _decoder_inputs(self, batch: Sequence[Inputs], truncate: bool) -> Any:
        """Target texts (default: the input text) as the decoder sees them, start token first."""
        return self._encode([x.target if x.target is not None else x.text for x in batch], None, truncate, target=True)

    def _decoder_tokens(self, encoding: Any, inputs: Inputs) -> tuple[Tokens, list[int]]:
        """Target tokens behind the decoder's start token, and their positions in decoder_input_ids."""
        tokens, keep = tokens_from_encoding(encoding, (inputs.target if inputs.target is not None else inputs.text,))
        start = self.tokenizer.convert_ids_to_tokens([self._start_id()])[0]
        with_start = Tokens(
            texts=(start, *tokens.texts),
            special=(True, *tokens.special),
            word_ids=(None, *tokens.word_ids),
            offsets=((0, 0), *tokens.offsets),
            sources=(None, *tokens.sources),
        )
        return with_start, [0] + [i + 1 for i in keep]

    def _start_id(self) -> int:
        start = self.config.decoder_start_token_id
        return int(start if start is not None else self.tokenizer.pad_token_id)

    @torch.inference_mode()
    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        with_pair = [x.pair is not None for x in batch]
        if len(set(with_pair)) > 1:
            # one padded batch cannot hold both: the pairless would get an empty sentence B
            results = iter(self.run([x for x in batch if x.pair is None], truncate, capture))
            paired = iter(self.run([x for x in batch if x.pair is not None], truncate, capture))
            return [next(paired) if has else next(results) for has in with_pair]
        pairs = [x.pair or "" for x in batch] if any(with_pair) else None
        enc = self._encode([x.text for x in batch], pairs, truncate)
        model_inputs: dict[str, Tensor] = {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
        }
        if "token_type_ids" in enc and pairs is not None:
            model_inputs["token_type_ids"] = enc["token_type_ids"].to(self.device)
        dec = None
        if self.family == "encoder-decoder":
            dec = self._decoder_inputs(batch, truncate)
            ids = dec["input_ids"]
            # the decoder reads the target shifted right behind its start token
            start = torch.full_like(ids[:, :1], self._start_id())
            model_inputs["decoder_input_ids"] = torch.cat([start, ids], 1).to(self.device)
            model_inputs["decoder_attention_mask"] = torch.cat(
                [torch.ones_like(ids[:, :1]), dec["attention_mask"]], 1
            ).to(self.device)
        try:
            out = self.model(**model_inputs, output_attentions=True)
        except TypeError as exc:  # e.g. a model whose forward() has no output_attentions
            raise ModelError(f"{self.spec} ({type(self.model).__name__}) gives no attention weights: {exc}") from exc
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"{self.spec}: the forward pass failed: {str(exc).splitlines()[0]}") from exc
        return self._results(batch, enc, dec, out, capture)

    def _results(
        self, batch: Sequence[Inputs], enc: Any, dec: Any, out: Any, capture: Capture | None
    ) -> list[AttentionResult]:
        if self.family == "encoder-decoder":
            names = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}
        else:
            names = {"decoder" if self.family == "decoder" else "encoder": "attentions"}
        raw: dict[str, Any] = {stack: getattr(out, field, None) for stack, field in names.items()}
        if any(not v for v in raw.values()):
            raise ModelError(
                f"{self.spec} ({type(self.model).__name__}) gives no attention weights: it has no attention layers",
                hint="attnviz shows attention models: BERT, GPT-2, LLaMA, BART, T5 and their kin",
            )
        arrays = {k: torch.stack(list(v), dim=1).float().cpu().numpy() for k, v in raw.items()}  # (B, L, h, q, k)
        results = []
        for b, inputs in enumerate(batch):
            src, src_keep = tokens_from_encoding(enc.encodings[b], inputs.texts())
            stacks = []
            if dec is not None:
                tgt, tgt_keep = self._decoder_tokens(dec.encodings[b], inputs)
            for name, arr in arrays.items():
                q_tokens, q_keep = (src, src_keep) if name == "encoder" or dec is None else (tgt, tgt_keep)
                k_tokens, k_keep = (q_tokens, q_keep) if name != "cross" else (src, src_keep)
                w = arr[b][:, :, q_keep][:, :, :, k_keep]  # drop padded rows and columns
                stack = Stack(name, q_tokens, k_tokens, w, causal=name == "decoder")
                stacks.append(capture.cut(stack) if capture is not None else stack)
            notes = truncation_notes(enc.encodings[b], dec.encodings[b] if dec is not None else None)
            results.append(
                AttentionResult(self.spec, inputs.text, tuple(stacks), inputs.extras(), self.precision, notes)
            )
        return results
