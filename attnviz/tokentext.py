"""What a token string stands for, and how to show it.

Tokenizers write their tokens in private spellings: WordPiece marks a continuation with
'##', SentencePiece a word start with '▁', and byte-level BPE (GPT-2, RoBERTa, Llama 3)
writes every byte as a printable character, so ' dream' is 'Ġdream' and '，' is 'ï¼Į'.
`surface` gives the text a token covers (for metrics); `label` gives what a reader should
see in a table header or an axis: the text itself, word-start marks dropped, WordPiece's
'##' kept (it says "continues a word" in the tokenizer's own words), and a token the model
generated (a decoder continuing the text) marked with a trailing '⁺'. Every view draws its
labels from here, so the mark reaches tables, heatmaps, bars, images and the HTML page alike.
"""

from __future__ import annotations


def _byte_level() -> dict[str, int]:
    """GPT-2's byte ↔ printable character table, inverted: byte-level BPE tokens back to bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, shifted = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + shifted)
            shifted += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTES = _byte_level()
_MARKERS = ("##", "Ġ", "▁", "Ċ")  # WordPiece continuation, byte-level and SentencePiece space marks


def _decoded(token: str) -> str | None:
    """A byte-level BPE token as text, or None when the token is not byte-encoded."""
    # byte-level BPE writes some bytes as U+0100…U+0143; only then is the token byte-encoded
    if any(0x100 <= ord(c) <= 0x143 for c in token) and all(c in _BYTES for c in token):
        try:
            return bytes(_BYTES[c] for c in token).decode("utf-8")
        except UnicodeDecodeError:  # a character cut between tokens: its bytes are all we have
            return None
    return None


def surface(token: str) -> str:
    """What a token string stands for in the text: '##ing' → 'ing', 'Ġ,' → ',', 'ï¼Į' → '，'."""
    decoded = _decoded(token)
    if decoded is not None:
        return decoded.strip()
    for marker in _MARKERS:
        token = token.removeprefix(marker)
    return token.strip()


_WHITESPACE = str.maketrans({" ": "␣", "\n": "⏎", "\t": "⇥"})
# control characters drawn as pictures (ESC → ␛): text from the input never moves a terminal's cursor,
# changes its colours or its title; C1 controls (U+0080…U+009F, ESC's 8-bit twins) become '�'
_CONTROLS: dict[int, str] = {
    **{c: chr(0x2400 + c) for c in range(0x20)},
    0x7F: "␡",
    **dict.fromkeys(range(0x80, 0xA0), "�"),
}


def printable(text: str) -> str:
    """The text with every control character (newlines and tabs included) drawn as a visible picture."""
    return text.translate(_CONTROLS)


UNKNOWN = frozenset({"[UNK]", "<unk>", "<UNK>", "<|unk|>"})  # the tokenizers' "not in my vocabulary"
# after a token the model generated: one terminal cell wide, and DejaVu Sans draws it (images)
GENERATED_MARK = "⁺"


def label(token: str, source: str | None = None, generated: bool = False) -> str:
    """A token as a reader should see it: 'Ġdream' → 'dream', 'ï¼Į' → '，', '▁the' → 'the', '##ing'
    stays; a token of only whitespace shows it (␣ ⏎ ⇥) rather than nothing, newlines always; an
    unknown token with the `source` characters it replaced, '[UNK:☃]'; a `generated` one marked, 'dream⁺'."""
    shown = printable(_shown(token, source))
    return shown + GENERATED_MARK if generated else shown


def _shown(token: str, source: str | None) -> str:
    if token in UNKNOWN and source:
        return f"{token[:-1]}:{source}{token[-1]}"
    decoded = _decoded(token)
    text = decoded if decoded is not None else token.removeprefix("▁")
    stripped = text.strip(" ")
    if not stripped.strip():
        return text.translate(_WHITESPACE) if text else token
    return stripped.replace("\n", "⏎").replace("\t", "⇥")
