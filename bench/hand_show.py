"""The competitor: what a person writes by hand to see MiniLM's attention.

Import transformers, load the model with eager attention (sdpa returns no weights), one
forward pass with output_attentions=True under inference_mode, then either
  --table  print the last layer's attention, averaged over its heads, as a text table
           (what `attnviz show TEXT` shows first), or
  (default) print every layer and head as JSON (stacks[0].attention, as attnviz writes it).

    python bench/hand_show.py MODEL_FOLDER TEXT [--table] [--threads N]
"""

import argparse
import json

import torch
from transformers import AutoModel, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("text")
parser.add_argument("--table", action="store_true")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

tokenizer = AutoTokenizer.from_pretrained(args.folder)
model = AutoModel.from_pretrained(args.folder, attn_implementation="eager").eval()
enc = tokenizer(args.text, return_tensors="pt")
with torch.inference_mode():
    out = model(**enc, output_attentions=True)
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])

if args.table:
    mean = out.attentions[-1][0].mean(0)  # (q, k): the last layer, heads averaged
    width = max(len(t) for t in tokens) + 1
    print(" " * width + "".join(f"{t:>{width}}" for t in tokens))
    for token, row in zip(tokens, mean.tolist()):
        print(f"{token:<{width}}" + "".join(f"{w:>{width}.2f}" for w in row))
else:
    weights = torch.stack(out.attentions, dim=1)[0]  # (layers, heads, q, k)
    doc = {
        "schema": "hand-written",
        "model": "all-MiniLM-L6-v2",
        "text": args.text,
        "stacks": [{"name": "encoder", "query_tokens": tokens, "key_tokens": tokens, "attention": weights.tolist()}],
    }
    print(json.dumps(doc))
