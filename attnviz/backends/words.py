"""The scratch model's tokenizer: words and punctuation, case kept. No torch here.

backends/scratch.py runs the model (torch); `attnviz tokens --model scratch` needs only
this, through `WordTokenizer`, so it starts as fast as the embedded model's tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import ModelError, UsageError
from ..result import AttentionResult, Tokens
from .types import Capture, Inputs, LoadOptions, ModelInfo

NAME = "scratch"
MAX_TOKENS = 1024  # an [h, T, T] matrix per layer: keep a pasted book from eating the memory

# CJK ideographs and kana: one token each (no spaces to split on).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Words keep inner apostrophes/hyphens ("don't", "well-known"); any other symbol stands
# alone, with the variation selectors, skin tones and joiners that belong to it (❤️, 👍🏽).
_TOKEN = re.compile(
    rf"[{_CJK}]"
    rf"|(?:(?![{_CJK}])\w)+(?:['’-](?:(?![{_CJK}])\w)+)*"
    r"|[^\w\s](?:[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]|\u200d[^\w\s])*"
)


def words(text: str) -> list[str]:
    """Word-level tokens, case kept: 'I have a dream.' → I / have / a / dream / ."""
    return _TOKEN.findall(text)


def tokens_of(text: str) -> Tokens:
    found = list(_TOKEN.finditer(text))
    return Tokens(
        texts=tuple(m.group() for m in found),
        special=(False,) * len(found),
        word_ids=tuple(range(len(found))),
        offsets=tuple(m.span() for m in found),
        sources=tuple(m.group() for m in found),  # a scratch token is its own text
    )


def scratch_tokens(inputs: Inputs) -> dict[str, Tokens]:
    """The scratch model's sequences: the text, and the cross-attention source when there is one."""
    sequences = {"input": tokens_of(inputs.text)}
    if inputs.source is not None:
        sequences["source"] = tokens_of(inputs.source)
    return sequences


class WordTokenizer:
    """The scratch model's tokenizer standing in for its backend where only tokens are needed."""

    def __init__(self, options: LoadOptions) -> None:
        self.info = ModelInfo(
            name=NAME,
            family="encoder",
            backend="scratch",
            stacks=("encoder",),
            layers={"encoder": options.layers},
            heads=options.heads,
            d_model=options.d_model,
            vocab_size=0,
            max_positions=MAX_TOKENS,
        )

    def tokenize(self, inputs: Inputs) -> dict[str, Tokens]:
        return scratch_tokens(inputs)

    def vocabulary(self) -> list[str]:
        raise UsageError("the scratch model has no vocabulary: it embeds any word it is given")

    def run(
        self, batch: Sequence[Inputs], truncate: bool = False, capture: Capture | None = None
    ) -> list[AttentionResult]:
        raise ModelError("this is the scratch model's tokenizer alone: load the model to run it")
