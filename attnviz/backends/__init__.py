"""Backends turn text into AttentionResults, one module each.

types.py        what every backend shares: Inputs, ModelInfo, Backend, LoadOptions, devices
registry.py     model spec → backend (minilm, scratch, a folder, a hub id)
native_bert.py  the embedded MiniLM on attnviz's own numpy BERT (no torch, no transformers)
hf.py           any transformers model, with eager attention
scratch.py      the `scratch` model: attnviz's own attention on a word tokenizer
words.py        that word tokenizer, torch-free (`attnviz tokens --model scratch`)
sources.py      model folders and hub ids, checked before transformers sees them
encoding.py     token metadata from a tokenizers Encoding
"""
