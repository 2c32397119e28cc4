"""Greedy continuation for decoders: the model picks its most likely next token, step by step.

`greedy` runs a causal language model with its key/value cache and takes the argmax of the
next-token logits at each step: no sampling, and none of the penalties or forced tokens a
checkpoint's generation_config may ask `generate()` for. It stops after n tokens or at an
end-of-sequence token. `continued` makes the Tokens of prompt + continuation: the prompt's
as the tokenizer gave them, the continuation's from its ids, marked `generated`, with
offsets and sources in the continuation's text (as the tokenizer decodes it after the
prompt) and word ids from the tokenizer's own words of that text. The attention shown is
then one forward pass over all of it (hf.py), as over any text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..result import Tokens
from ..tokentext import GENERATED_MARK

if TYPE_CHECKING:  # torch is imported by the backend that calls these, not by importing this module
    from torch import Tensor

# model types whose decoding with a key/value cache differs from a pass over the whole sequence
# (ProphetNet's decoder: its cached step gives other logits): each step reads the sequence again
UNCACHED = frozenset({"prophetnet", "xlm-prophetnet"})


def greedy(lm: Any, ids: Tensor, n: int, stop: set[int], cache: bool, **flags: Any) -> tuple[list[int], bool]:
    """Up to `n` token ids after `ids` (1, T), each the argmax of the next-token logits (the first on
    a tie); True when it stopped at a `stop` id (which is kept). `cache`: the model takes a KV cache.
    Call it under torch.inference_mode()."""
    import torch

    torch.manual_seed(0)  # argmax draws nothing; a fixed seed keeps model code that does draw repeatable
    new: list[int] = []
    out = lm(input_ids=ids, use_cache=True, **flags) if cache else lm(input_ids=ids, **flags)
    while True:
        token = int(out.logits[0, -1].argmax())  # logits (1, t, vocab): the last position predicts the next
        new.append(token)
        if token in stop or len(new) == n:
            return new, token in stop
        step = torch.tensor([[token]], dtype=ids.dtype, device=ids.device)  # (1, 1)
        past = getattr(out, "past_key_values", None) if cache else None
        if past is not None:  # positions follow from the cache's length
            out = lm(input_ids=step, past_key_values=past, use_cache=True, **flags)
        else:  # no cache: read the whole sequence again
            ids = torch.cat([ids, step], 1)  # (1, t + 1)
            out = lm(input_ids=ids, **flags)


def stop_ids(lm: Any, tokenizer: Any) -> set[int]:
    """The end-of-sequence ids generation stops at: the model's generation config, else its config,
    else the tokenizer's."""
    for owner in (getattr(lm, "generation_config", None), getattr(lm, "config", None)):
        eos = getattr(owner, "eos_token_id", None)
        if eos is not None:
            return {int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos])}
    return set() if tokenizer.eos_token_id is None else {int(tokenizer.eos_token_id)}


def continued(tokenizer: Any, prompt: Tokens, prompt_ids: Sequence[int], new: Sequence[int]) -> tuple[Tokens, str]:
    """Tokens of prompt + continuation, the continuation's marked generated, and the continuation's text."""
    specials = set(tokenizer.all_special_ids)
    special = [i in specials for i in new]
    chunks = _chunks(tokenizer, prompt_ids, new)
    text = "".join(chunks)
    offsets: list[tuple[int, int]] = []
    at = 0
    for chunk, sp in zip(chunks, special):
        offsets.append((0, 0) if sp else (at, at + len(chunk)))  # specials get (0, 0), as the tokenizer gives them
        at += len(chunk)
    first = max((w for w in prompt.word_ids if w is not None), default=-1) + 1
    k, m = len(new), len(prompt)
    return (
        Tokens(
            texts=(*prompt.texts, *tokenizer.convert_ids_to_tokens(list(new))),
            special=(*prompt.special, *special) if prompt.special else (),
            word_ids=(*prompt.word_ids, *_words(tokenizer, text, offsets, special, first)) if prompt.word_ids else (),
            segments=(*prompt.segments, *[prompt.segments[-1]] * k) if prompt.segments else (),
            offsets=(*prompt.offsets, *offsets) if prompt.offsets else (),
            sources=(*prompt.sources, *[None if sp else text[a:b] for (a, b), sp in zip(offsets, special)])
            if prompt.sources
            else (),
            generated=(False,) * m + (True,) * k,
        ),
        text,
    )


def _chunks(tokenizer: Any, prompt_ids: Sequence[int], new: Sequence[int]) -> list[str]:
    """The text each new token adds after the prompt: '' for a special token, and for the first
    bytes of a character that a later token completes (that token holds the character)."""
    backend = tokenizer.backend_tokenizer
    try:
        from tokenizers.decoders import DecodeStream

        stream = DecodeStream(skip_special_tokens=True)
        for i in prompt_ids:  # read after the prompt, a first word keeps its leading space
            stream.step(backend, int(i))
        return [stream.step(backend, int(i)) or "" for i in new]
    except Exception:  # a boundary: tokenizers before 0.21, or a decoder the stream cannot run
        return [tokenizer.decode([int(i)], skip_special_tokens=True) for i in new]


def _words(
    tokenizer: Any, text: str, offsets: list[tuple[int, int]], special: list[bool], first: int
) -> list[int | None]:
    """Word ids for the continuation, numbered on from `first`: the tokenizer's own words of its text.

    A token takes the word of its first character that belongs to one; a token with no
    characters (the first bytes of a character) takes the next token's word; a token of
    only whitespace that no word holds is a word of its own; specials have none.
    """
    enc = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    keys: list[Any] = []
    for i, ((a, b), sp) in enumerate(zip(offsets, special)):
        words = (enc.char_to_word(c) for c in range(a, b))
        word = None if sp else next((w for w in words if w is not None), None)
        keys.append(None if sp else ("word", word) if word is not None else "next" if a == b else ("own", i))
    for i in range(len(keys) - 1, -1, -1):  # pieces of a character join the token that completes it
        if keys[i] == "next":
            keys[i] = keys[i + 1] if i + 1 < len(keys) and keys[i + 1] is not None else ("own", i)
    ids: list[int | None] = []
    previous, number = None, first - 1
    for key in keys:
        if key is not None and key != previous:
            number += 1
        ids.append(None if key is None else number)
        previous = key
    return ids


def notes(made: int, asked: int, stopped: bool, stop_text: str) -> tuple[str, ...]:
    """What a reader must know about a continuation: the legend of its mark, and an early stop."""
    legend = (
        f"tokens marked {GENERATED_MARK} were generated by the model: {made} token{'s' if made != 1 else ''}, "
        "greedy (its most likely token at each step)"
    )
    if not stopped:
        return (legend,)
    return legend, f"generation stopped at the end-of-sequence token {stop_text} after {made} of {asked} tokens"
