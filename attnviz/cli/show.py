"""`attnviz show`: attention of one or more sentences, as heat tables, heatmaps, bars or data."""

from __future__ import annotations

from ..backends.types import Device, Dtype
from ..limits import MAX_LAYERS, MAX_LINE_BYTES
from ..spec import ALL, Agg, parse_vmax
from .options import (
    AggOpt,
    AllowMissing,
    BatchSize,
    Causal,
    Compress,
    DeviceMapOpt,
    DeviceOpt,
    Digits,
    DModel,
    DtypeOpt,
    Format,
    Generate,
    HeadOrOverview,
    Heads,
    HideSpecial,
    Layer,
    Layers,
    MaxLayers,
    MaxLineBytes,
    MaxParams,
    Model,
    OutputFormat,
    Pair,
    Query,
    Renormalize,
    Seed,
    Source,
    StackOpt,
    Target,
    TextsArg,
    Threads,
    TokenWindowOpt,
    Truncate,
    TrustRemoteCode,
    Vmax,
    Weights,
    Words,
    load_model,
    make_inputs,
    read_texts,
    view_spec,
)
from .output import check_compress, check_count, check_format, check_vmax, print_results, stream_npz, streams

EXAMPLES = """
# the last layer at a glance: mean map and each head's strongest link
attnviz show "I have a dream"
# one head of layer 2, as bars for the query "dream"
attnviz show "I have a dream" --layer 2 --head 5 --query dream
# several sentences, one JSON document per line, for jq
attnviz show "I have a dream" "so do I" --format jsonl | jq .model
# an interactive page with every layer and head
attnviz show "I have a dream" --format html > page.html
# a decoder continues the text by 8 tokens (marked ⁺), then attention over all of it
attnviz show "Once upon a time" --model gpt2 --generate 8
"""


def show(
    texts: TextsArg,
    model: Model = "minilm",
    layer: Layer = None,
    head: HeadOrOverview = None,
    stack: StackOpt = None,
    agg: AggOpt = Agg.NONE,
    hide_special: HideSpecial = False,
    renormalize: Renormalize = False,
    words: Words = False,
    tokens: TokenWindowOpt = None,
    query: Query = None,
    fmt: Format = OutputFormat.TABLE,
    digits: Digits = 2,
    compress: Compress = False,
    vmax: Vmax = "auto",
    pair: Pair = None,
    target: Target = None,
    source: Source = None,
    generate: Generate = None,
    device: DeviceOpt = Device.AUTO,
    dtype: DtypeOpt = Dtype.FLOAT32,
    device_map: DeviceMapOpt = None,
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    allow_missing: AllowMissing = False,
    batch_size: BatchSize = 16,
    threads: Threads = None,
    max_line_bytes: MaxLineBytes = MAX_LINE_BYTES,
    max_params: MaxParams = None,
    max_layers: MaxLayers = MAX_LAYERS,
    layers: Layers = 1,
    d_model: DModel = 512,
    heads: Heads = 8,
    seed: Seed = 0,
    causal: Causal = False,
    weights: Weights = None,
) -> None:
    """Show attention weights: the last layer at a glance, every head as heat tables, or data for pipelines."""
    # flags first, before reading stdin or loading a model: a typo should not wait
    spec = view_spec(
        stack=stack,
        layer=layer,
        head="all" if head is None else head,
        agg=agg,
        words=words,
        hide_special=hide_special,
        renormalize=renormalize,
        tokens=tokens,
        query=query,
    )
    check_format(fmt)
    top = parse_vmax(vmax)
    check_vmax(fmt, top)
    check_compress(fmt, compress)
    sentences = read_texts(texts, max_line_bytes, truncate)
    check_count(fmt, len(sentences), "sentences on standard input" if texts == ["-"] else "sentences")
    from ..api import iter_results
    from ..backends.types import Capture
    from ..threads import choose

    choose(threads)  # before loading: load_model sets torch's threads for the model
    backend = load_model(
        model,
        device=device,
        dtype=dtype,
        device_map=device_map,
        trust_remote_code=trust_remote_code,
        allow_missing=allow_missing,
        causal_lm=generate is not None,
        layers=layers,
        d_model=d_model,
        heads=heads,
        seed=seed,
        causal=causal,
        weights=weights,
        max_params=max_params,
        max_layers=max_layers,
    )
    inputs = make_inputs(sentences, backend, pair, target, source)
    if generate is not None:  # each text is continued first (check_fits refuses models that cannot)
        from dataclasses import replace

        inputs = [replace(x, generate=generate) for x in inputs]
    # run only what the view shows (the HTML page offers every layer unless --layer narrows it)
    capture = Capture.for_view(spec.with_layers(ALL) if fmt is OutputFormat.HTML else spec)
    if streams(fmt, len(inputs), spec):  # one input's npz is written as the model runs, a layer at a time
        stream_npz(backend, inputs[0], sentences[0], spec, capture, truncate, compress)
        return
    # results come in input order as each window of batches is done, and are printed as they come
    results = iter_results(backend, inputs, batch_size=batch_size, truncate=truncate, capture=capture)
    tagged = (s.tag(r) for s, r in zip(sentences, results))
    several = len(inputs) > 1
    print_results(tagged, spec, fmt, digits, glance=head is None, vmax=top, several=several, compress=compress)
