"""The transformers backend: any model folder or hub id, with eager attention, captured layer by layer.

sdpa and flash kernels never materialise the weights, and with sdpa transformers 5.x
returns an empty tuple for `output_attentions=True`, so eager is forced.

Under eager, a transformers 5.x attention module returns (output, weights) whether or not
weights were asked for, and each model names the modules `output_attentions` reads
(`_can_record_outputs`). attnviz puts a forward hook on those modules: as each returns,
the hook keeps the layers and heads a Capture names, moves them to the CPU as float32 and
cuts the padding, and the model frees the rest. A run holds one layer's maps at a time on
the device, never L·H·T² of them. Models that do not name their attention modules (older
code in transformers) run with `output_attentions=True`, their attention modules found on a
probe pass (`_legacy_taps`): a hook takes each layer as it is made and hands the model a
one-element placeholder in its place. Where no module can be matched to each layer, and
checked on a second probe pass, they run the old way, every layer held, then cut.

A decoder loaded with its language-model head (`LoadOptions.causal_lm`) can first continue
an input greedily (`Inputs.generate`, see generation.py); the attention is then one forward
pass of the base model over prompt + continuation, hooked as any other.
"""

from __future__ import annotations

import inspect
import logging as pylogging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..errors import DeviceError, Fix, InputError, ModelError, UsageError
from ..result import AttentionResult, Tokens
from . import families, generation
from .encoding import tokens_from_encoding, truncation_notes
from .hooks import (
    STACKS,
    Counter,
    Example,
    Gather,
    Side,
    Stream,
    Taker,
    Taps,
    attention_modules,
    attention_sites,
    declared_heads,
    declared_layers,
    find_taps,
    hook,
    is_placeholder,
    leading,
    module_heads,
    record,
    tap_hook,
    text_config,
)
from .sources import Source
from .types import (
    MAX_GENERATE,
    Capture,
    Device,
    Dtype,
    Inputs,
    LayerSink,
    LoadOptions,
    ModelInfo,
    check_length,
    resolve_device,
    resolve_dtype,
)

_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")
PROBE = Inputs("attention is all you need", target="attention")
TOO_BIG = "run it in bfloat16 or float16, or spread it over the GPUs and the CPU with a device map (needs accelerate)"


def _family(config: Any) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if families.is_bidirectional(config):  # XLNet: listed as a causal LM, attends both ways as run here
        return "encoder"
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
    """The model's position limit (less RoBERTa's offset) or the tokenizer's, whichever is less."""
    return families.max_positions(config, tokenizer)


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


def _check_head(spec: str, config: Any, family: str) -> None:
    """Refuse, before any weights load, a model that cannot continue a text: not a decoder, or no
    causal-LM class in transformers (nor in the folder's own code)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    # a BERT-like type with an LM head (BertLMHeadModel, XLMWithLMHeadModel) is causal only when its config says so
    both_ways = config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not (
        getattr(config, "is_decoder", False) or getattr(config, "causal", False)
    )
    if family != "decoder" or both_ways:
        kind = {"encoder-decoder": "an encoder-decoder", "decoder": "a bidirectional"}.get(family, "an encoder")
        raise UsageError(
            f"{spec} is {kind} model: only a decoder continues a text",
            hint="generate with a decoder such as GPT-2, LLaMA or Mistral",
        )
    own_code = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not own_code:
        raise UsageError(f"{spec} ({config.model_type}) has no language-model head in transformers to generate with")


def _check_lm_head(spec: str, model: Any, loading: dict[str, Any], allow: bool) -> None:
    """A checkpoint saved without its language-model head (a base model's save_pretrained) would
    generate from a random head: refuse it, as _check_weights does for the other weights."""
    prefix = f"{model.base_model_prefix}."
    head = sorted(k for k in loading.get("missing_keys", ()) if not k.startswith(prefix))
    if head and not allow:
        raise ModelError(
            f"{spec} was saved without its language-model head ({', '.join(head[:3])}): "
            "its continuation would come from random weights",
            hint="save the whole causal LM (its …ForCausalLM class), or allow it anyway with --allow-missing",
        )


class HFBackend:
    """A transformers model loaded with AutoModel (no task head) in eval mode; with `causal_lm`, a
    decoder loaded with AutoModelForCausalLM, whose base model gives the attention."""

    def __init__(self, spec: str, source: Source, options: LoadOptions) -> None:
        trust = options.trust_remote_code
        self.device = resolve_device(options.device)
        placement: dict[str, Any] = {}
        if options.device_map is not None:
            placement["device_map"] = _device_map(options)
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging

        logging.set_verbosity_error()  # load reports and progress bars are noise on our stderr
        logging.disable_progress_bar()
        pylogging.getLogger("accelerate").setLevel(pylogging.ERROR)  # "offloaded to the cpu": what a map is for
        common: dict[str, Any] = dict(trust_remote_code=trust, local_files_only=source.local_files_only)
        try:
            config = AutoConfig.from_pretrained(source.location, **common)
        except Exception as exc:  # a boundary: a missing or broken config.json
            raise ModelError(f"cannot load model {spec!r}: {_first_line(exc)}") from exc
        refused = families.refusal(config)
        if refused is not None:  # before the weights: what cannot be shown need not be loaded
            raise ModelError(f"{spec}: {refused}")
        if options.causal_lm:
            _check_head(spec, config, _family(config))
        loader: Any = AutoModelForCausalLM if options.causal_lm else AutoModel
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source.location, **common)
            # safetensors first; a .bin checkpoint goes through torch.load(weights_only=True)
            model, loading = loader.from_pretrained(
                source.location,
                config=families.for_loading(config),  # BigBird: dense attention (see families.py)
                attn_implementation="eager",
                dtype=resolve_dtype(options.dtype),
                output_loading_info=True,
                **placement,
                **common,
            )
            if not placement:
                model.to(self.device)
        except torch.OutOfMemoryError as exc:
            message = f"{spec} does not fit in memory on {self.device}: {_first_line(exc)}"
            raise ModelError(message, hint=TOO_BIG) from None
        except Exception as exc:  # a boundary: transformers and accelerate raise many types for bad folders
            first = _first_line(exc)
            if placement and ("offload" in first or "disk" in first):  # accelerate: it fits neither GPUs nor CPU
                raise ModelError(f"{spec} does not fit in the memory of this machine's devices: {first}") from None
            raise ModelError(f"cannot load model {spec!r}: {first}") from exc
        if placement and "disk" in set((getattr(model, "hf_device_map", None) or {}).values()):
            # accelerate would page those weights in from the disk on every forward pass
            raise ModelError(f"{spec} does not fit in the memory of this machine's devices", hint=TOO_BIG)
        if options.causal_lm:
            _check_lm_head(spec, model, loading, options.allow_missing)
        _check_weights(spec, model, loading, options.allow_missing)
        model.eval()
        # the head only generates: attention comes from the base model, which computes no logits
        self.lm = model if options.causal_lm else None
        self.model = model.base_model if options.causal_lm else model
        if placement:  # inputs go where the embeddings are (accelerate moves them on from the CPU)
            self.device = self.model.device if self.model.device.type != "meta" else torch.device("cpu")
        self.config = config
        self.family = _family(config)
        if self.tokenizer.pad_token is None:  # GPT-2/LLaMA: any id works, padded keys are masked
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        self.max_positions = _max_positions(config, self.tokenizer)
        self.max_target_positions = families.max_target_positions(config, self.tokenizer)
        self.spec = spec
        self.precision = Dtype(options.dtype).value
        self.sites = attention_sites(self.model, self.family)
        self._takes_cache = "use_cache" in inspect.signature(self.model.forward).parameters
        self._layers: dict[str, int] | None = None
        self._taps: Taps | None = None  # found on first use (_legacy_taps)
        self._info: ModelInfo | None = None

    @property
    def info(self) -> ModelInfo:
        """Layers counted off the hooked attention modules, heads read off the first of them (or the
        config), without a forward pass; a model that names no attention modules, or whose config
        counts its layers otherwise, is counted on a short probe pass."""
        if self._info is None:
            layers, heads = self._layer_counts() if self.sites else {}, None
            if self.sites:
                first = self.sites[STACKS[self.family][0]][0].module
                heads = (
                    module_heads(first)
                    or declared_heads(self.config)
                    or self._probe().heads.get(STACKS[self.family][0])
                )
            if not self.sites or heads is None:  # (a probe may have found a stack without weights)
                probe = self.run([PROBE])[0]
                layers, heads = {s.name: s.layers for s in probe.stacks}, probe.stacks[0].heads
            cfg = self.config
            text_cfg = text_config(cfg)
            self._info = ModelInfo(
                name=self.spec,
                family=self.family,
                backend="transformers",
                stacks=tuple(s for s in STACKS[self.family] if s in layers),
                layers=layers,
                heads=heads,
                d_model=int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "d_model", 0) or 0),
                vocab_size=int(getattr(text_cfg, "vocab_size", 0) or 0),
                max_positions=self.max_positions,
                path=str(getattr(cfg, "_name_or_path", self.spec)),
                extra={"model_type": cfg.model_type, "class": type(self.model).__name__},
            )
        return self._info

    def _layer_counts(self) -> dict[str, int]:
        """Layers per stack: one per hooked module, unless the config counts otherwise (layers that
        share one module, layers without attention): then the modules that give weights on a probe."""
        if self._layers is None:
            counts = {stack: len(sites) for stack, sites in self.sites.items()}
            declared = declared_layers(self.config, self.family)
            if any(declared.get(stack) not in (None, n) for stack, n in counts.items()):
                counts = dict(self._probe().fired)
            if not self.sites:
                return {}
            self._layers = counts
        return self._layers

    @torch.inference_mode()
    def _probe(self) -> Counter:
        counter = Counter()
        _, model_inputs = self._prepare([PROBE], False)
        self._hooked(model_inputs, counter, {stack: 0 for stack in self.sites})
        if set(counter.fired) != set(self.sites):  # some stack gave no weights: read output_attentions instead
            self.sites = {}
        return counter

    def _encode(
        self, texts: list[str], pairs: list[str] | None, truncate: bool, target: bool = False, room: int = 0
    ) -> Any:
        """The tokenizer's batch; `room`: positions kept free for tokens generated after the text."""
        kwargs: dict[str, Any] = dict(padding=True, return_tensors="pt", return_special_tokens_mask=True)
        # the decoder reads the target behind one start token, so the target gets one position less
        limit = self.max_positions
        if target:
            limit = self.max_target_positions - 1 if self.max_target_positions else None
        if limit and room:
            limit -= room
        if truncate and limit:
            kwargs.update(truncation=True, max_length=limit)
        if target:
            batch = self.tokenizer(text_target=texts, **kwargs)
        else:
            batch = self.tokenizer(texts, text_pair=pairs, **kwargs)
        if not getattr(batch, "encodings", None):
            raise ModelError(f"{self.spec}: attnviz needs a fast (tokenizers-based) tokenizer")
        for enc in batch.encodings:
            n = sum(enc.attention_mask)
            if room and limit is not None and n > limit:
                raise InputError(
                    f"input is {n} tokens long and {room} more are to be generated; "
                    f"the model takes at most {self.max_positions} in all",
                    hint="shorten the text, generate fewer tokens, or truncate the text",
                    fix=Fix.TRUNCATE,
                    tokens=n,
                )
            check_length(n, limit, "target" if target else "input")
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
        if len(batch) > 1 and any(x.generate for x in batch):  # each continuation has its own length: unpadded
            return [r for x in batch for r in self.run([x], truncate, capture)]
        with_pair = [x.pair is not None for x in batch]
        if len(set(with_pair)) > 1:
            # one padded batch cannot hold both: the pairless would get an empty sentence B
            results = iter(self.run([x for x in batch if x.pair is None], truncate, capture))
            paired = iter(self.run([x for x in batch if x.pair is not None], truncate, capture))
            return [next(paired) if has else next(results) for has in with_pair]
        if len(batch) > 1 and families.unbatched(self.config):  # padding would change their numbers
            return [r for x in batch for r in self.run([x], truncate, capture)]
        examples, model_inputs = self._prepare(batch, truncate)
        gather = Gather(self.spec, capture, examples)
        if not self._forward(model_inputs, gather):
            gather = Gather(self.spec, capture, examples)  # the modules gave other layers than counted
            self._forward_all(model_inputs, gather)
        return [families.mark(self.config, r) for r in gather.results(STACKS[self.family], self.precision)]

    @torch.inference_mode()
    def stream(self, inputs: Inputs, sink: LayerSink, truncate: bool = False, capture: Capture | None = None) -> None:
        """Each kept layer to `sink` the moment its module returns: the run holds one layer's maps at a time."""
        examples, model_inputs = self._prepare([inputs], truncate)

        def marked(result: AttentionResult) -> None:  # as run() marks its results (sink models)
            sink(families.mark(self.config, result))

        stream = Stream(self.spec, capture, examples[0], self.precision, marked)
        if not self._forward(model_inputs, stream):
            raise ModelError(
                f"{self.spec}: its attention modules gave {stream.fired} layers where {self._layer_counts()} "
                "were counted, so the layers cannot be told apart"
            )

    def _prepare(self, batch: Sequence[Inputs], truncate: bool) -> tuple[list[Example], dict[str, Tensor]]:
        """The model's inputs for a batch, and each example's tokens per stack."""
        if any(x.generate for x in batch):  # run() and stream() hand these over one at a time
            (one,) = batch
            return self._prepare_continued(one, truncate)
        pairs = [x.pair or "" for x in batch] if any(x.pair is not None for x in batch) else None
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
        examples = []
        for b, inputs in enumerate(batch):
            src = Side.of(*tokens_from_encoding(enc.encodings[b], inputs.texts()))
            if dec is None:
                sides = {self.family: (src, src)}
            else:
                tgt = Side.of(*self._decoder_tokens(dec.encodings[b], inputs))
                sides = {"encoder": (src, src), "decoder": (tgt, tgt), "cross": (tgt, src)}
            notes = truncation_notes(enc.encodings[b], dec.encodings[b] if dec is not None else None)
            examples.append(Example(inputs, sides, notes))
        return examples, model_inputs

    def _prepare_continued(self, inputs: Inputs, truncate: bool) -> tuple[list[Example], dict[str, Tensor]]:
        """Continue the text greedily, then the model's inputs for prompt + continuation: one
        unpadded sequence, whose generated tokens are marked (see generation.py)."""
        n = inputs.generate
        if not 1 <= n <= MAX_GENERATE:
            raise UsageError(f"a continuation is 1 to {MAX_GENERATE} tokens long, not {n}")
        lm = self.lm
        if lm is None:
            raise UsageError(
                f"{self.spec} was loaded without its language-model head, which generating needs",
                hint="load it with its head: LoadOptions(causal_lm=True)",
            )
        limit = self.max_positions
        if limit is not None and n >= limit:
            raise UsageError(f"{self.spec} takes at most {limit} tokens: {n} generated ones leave no room for the text")
        enc = self._encode([inputs.text], None, truncate, room=n)
        ids = enc["input_ids"].to(self.device)  # (1, T): one input, no padding
        new, stopped = self._greedy(lm, ids, n)
        prompt, _ = tokens_from_encoding(enc.encodings[0], inputs.texts())
        tokens, text = generation.continued(self.tokenizer, prompt, ids[0].tolist(), new)
        full = torch.cat([ids, torch.tensor([new], dtype=ids.dtype, device=ids.device)], 1)  # (1, T + n')
        side = Side.of(tokens, list(range(len(tokens))))
        notes = generation.notes(len(new), n, stopped, repr(tokens.texts[-1]))
        if enc.encodings[0].overflowing:
            cut = f"input truncated to {len(prompt)} tokens (the model's maximum, less the {n} to generate)"
            notes = (cut, *notes)
        example = Example(inputs, {self.family: (side, side)}, notes, continuation=text)
        return [example], {"input_ids": full, "attention_mask": torch.ones_like(full)}

    def _greedy(self, lm: Any, ids: Tensor, n: int) -> tuple[list[int], bool]:
        """generation.greedy on the language model, its errors as ModelErrors."""
        params = inspect.signature(lm.forward).parameters
        # the first step needs the last position's logits only, not [T, vocab] of them
        flags = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        cache = (
            "use_cache" in params and "past_key_values" in params and self.config.model_type not in generation.UNCACHED
        )
        try:
            return generation.greedy(lm, ids, n, generation.stop_ids(lm, self.tokenizer), cache, **flags)
        except torch.OutOfMemoryError as exc:
            raise ModelError(f"{self.spec}: out of memory while generating: {_first_line(exc)}", hint=TOO_BIG) from None
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ModelError(f"{self.spec}: generating failed: {_first_line(exc)}") from exc

    def _forward(self, model_inputs: dict[str, Tensor], taker: Taker) -> bool:
        """One forward pass, each layer to `taker` as it is made; False when the hooked modules gave
        other layers than were counted (nothing is right then)."""
        counts = self._layer_counts() if self.sites else {}
        if self.sites:  # (the probe may have found a stack without weights)
            self._hooked(model_inputs, taker, counts)
            return taker.fired == counts
        taps = self._legacy_taps()
        if not taps:
            self._forward_all(model_inputs, taker)
            return True
        self._tapped(model_inputs, taker, taps)
        return taker.fired == {stack: len(layers) for stack, layers in taps.items()}

    def _hooked(self, model_inputs: dict[str, Tensor], taker: Taker, counts: dict[str, int]) -> None:
        """The forward pass with a hook on each attention module, without output_attentions."""
        handles = [
            site.module.register_forward_hook(hook(taker, stack, counts[stack], site.index))
            for stack, sites in self.sites.items()
            for site in sites
        ]
        try:
            self._call(model_inputs)
        finally:
            for handle in handles:
                handle.remove()

    def _tapped(self, model_inputs: dict[str, Tensor], taker: Callable[[str, int, Tensor], None], taps: Taps) -> Any:
        """The forward pass of a model that names no attention modules, with output_attentions: each
        tapped module hands its layer to `taker` and the model keeps a one-element placeholder."""

        def convert(stack: str, layer: Tensor) -> Tensor:  # Longformer's band, SqueezeBERT's scores, …
            return families.to_weights(self.config, stack, layer)

        handles = [
            tap.module.register_forward_hook(tap_hook(taker, stack, len(stack_taps), tap, convert))
            for stack, stack_taps in taps.items()
            for tap in stack_taps
        ]
        try:
            return self._call(model_inputs, output_attentions=True)
        finally:
            for handle in handles:
                handle.remove()

    @torch.inference_mode()
    def _legacy_taps(self) -> Taps:
        """For a model that names no attention modules: the modules whose outputs are its
        `output_attentions` layers, found on a probe pass and checked on a second, tapped one
        (same weights, same hidden states, placeholders only left in the output); empty when
        any of that fails, and the model runs the old way."""
        if self._taps is None:
            self._taps = {}
            _, model_inputs = self._prepare([PROBE], False)
            seen: list[tuple[torch.nn.Module, int | str | None, Tensor]] = []
            handles = record(attention_modules(self.model), seen)
            try:
                out = self._call(model_inputs, output_attentions=True)
                held = self._held(out)
            except ModelError:  # the real run says it, on the real input
                return self._taps
            finally:
                for handle in handles:
                    handle.remove()
            taps = find_taps(seen, held)
            for empty in (False, True):  # a one-element placeholder of the layer's shape first, then an empty one
                taps = {stack: [replace(tap, empty=empty) for tap in layers] for stack, layers in taps.items()}
                if taps and self._taps_agree(model_inputs, taps, out, held):
                    self._taps = taps
                    break
        return self._taps

    def _taps_agree(self, model_inputs: dict[str, Tensor], taps: Taps, out: Any, held: dict[str, Any]) -> bool:
        """Whether a tapped pass gives `held`'s weights and `out`'s hidden states, and keeps no maps."""
        taken: dict[str, list[Tensor]] = {}

        def take(stack: str, layers: int, weights: Tensor) -> None:
            taken.setdefault(stack, []).append(weights)

        try:
            tapped = self._tapped(model_inputs, take, taps)
            left = self._held(tapped)
        except (ModelError, RuntimeError, ValueError, IndexError, TypeError):  # the placeholder broke the model
            return False

        def same(a: Any, b: Any) -> bool:  # `a` may hold padding the model cut off `b` (see hooks.leading)
            corner = leading(a, b.shape) if isinstance(a, Tensor) and isinstance(b, Tensor) else None
            return corner is not None and torch.allclose(corner.float(), b.float(), atol=1e-6, rtol=0)

        for stack, layers in held.items():
            got = taken.get(stack, [])
            wanted = [families.to_weights(self.config, stack, layer) for layer in layers]
            if len(got) != len(wanted) or not all(same(a, b) for a, b in zip(got, wanted)):
                return False
            if not all(is_placeholder(layer) for layer in left[stack]):
                return False
        return same(out[0], tapped[0])  # a ModelOutput or a tuple: the last hidden states first

    def _held(self, out: Any) -> dict[str, Any]:
        """The layers of each stack in a model's output_attentions."""
        if self.family == "encoder-decoder":
            fields = {"encoder": "encoder_attentions", "decoder": "decoder_attentions", "cross": "cross_attentions"}
        else:
            fields = {self.family: "attentions"}
        held: dict[str, Any] = {stack: getattr(out, field, None) for stack, field in fields.items()}
        if any(not layers for layers in held.values()):
            raise ModelError(
                f"{self.spec} ({type(self.model).__name__}) gives no attention weights: it has no attention layers",
                hint="attnviz shows attention models: BERT, GPT-2, LLaMA, BART, T5 and their kin",
            )
        return held

    def _forward_all(self, model_inputs: dict[str, Tensor], taker: Taker) -> None:
        """The old way, when no module can be tapped: every layer at once from output_attentions."""
        out = self._call(model_inputs, output_attentions=True)
        held = self._held(out)
        del out
        for stack, layers in held.items():
            for weights in layers:  # Longformer's band, SqueezeBERT's scores, … → weights (see families.py)
                taker(stack, len(layers), families.to_weights(self.config, stack, weights))

    def _call(self, model_inputs: dict[str, Tensor], **flags: bool) -> Any:
        if self._takes_cache:  # one pass, no generation: a key/value cache would only hold memory
            flags["use_cache"] = False
        try:
            return self.model(**model_inputs, **flags)
        except torch.OutOfMemoryError as exc:
            message = f"{self.spec}: out of memory in the forward pass: {_first_line(exc)}"
            raise ModelError(message, hint=TOO_BIG) from None
        except TypeError as exc:
            if "output_attentions" in flags:  # e.g. a model whose forward() has no output_attentions
                name = type(self.model).__name__
                raise ModelError(f"{self.spec} ({name}) gives no attention weights: {exc}") from exc
            raise ModelError(f"{self.spec}: the forward pass failed: {_first_line(exc)}") from exc
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(f"{self.spec}: the forward pass failed: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """The error's first line; one that ends in ':' (transformers' 'Validation error for field …:') with the
    line that says what, and never 'look at the above report' (there is none above ours)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[1]}"
    return first.replace(" For details look at the above report!", "").strip()[:300]


def _device_map(options: LoadOptions) -> str:
    """The device map for transformers' loader; accelerate places the model, so no single device is chosen."""
    import importlib.util

    if options.device is not Device.AUTO:
        raise DeviceError(
            "a device map places the model itself, over every device it finds; "
            f"it cannot also go on {options.device.value}",
            hint="leave the device to the map, or drop the map",
        )
    if importlib.util.find_spec("accelerate") is None:
        raise ModelError(
            "spreading a model over devices needs accelerate, which is not installed",
            hint="pip install 'attnviz[big]' (or pip install accelerate)",
        )
    return options.device_map.value if options.device_map is not None else "auto"
