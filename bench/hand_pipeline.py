"""The competitor for pipelines: a batched transformers loop that streams JSON lines.

What a competent user writes to dump every layer and head of many sentences: read the
lines, load the model with eager attention (sdpa returns no weights), run batches of 16
padded to their longest with output_attentions=True under inference_mode, and write one
JSON line per sentence as each batch is done (padding cut off, json.dumps of .tolist()).
--sort runs the sentences in order of length (less padding); its lines then come out in
that order, each with its input's index (putting them back in order would mean holding them).

    python bench/hand_pipeline.py MODEL_FOLDER [--sort] [--batch-size 16] [--threads N] < sentences.txt
"""

import argparse
import json
import sys

import torch
from transformers import AutoModel, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("folder")
parser.add_argument("--sort", action="store_true", help="run the sentences sorted by length")
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)

tokenizer = AutoTokenizer.from_pretrained(args.folder)
model = AutoModel.from_pretrained(args.folder, attn_implementation="eager").eval()
lines = [line.strip() for line in sys.stdin if line.strip()]
order = sorted(range(len(lines)), key=lambda i: len(lines[i])) if args.sort else list(range(len(lines)))

with torch.inference_mode():
    for start in range(0, len(order), args.batch_size):
        batch = order[start : start + args.batch_size]
        enc = tokenizer([lines[i] for i in batch], padding=True, return_tensors="pt")
        out = model(**enc, output_attentions=True)
        weights = torch.stack(out.attentions, dim=1)  # (B, layers, heads, T, T)
        for b, i in enumerate(batch):
            n = int(enc["attention_mask"][b].sum())
            doc = {
                "index": i,
                "text": lines[i],
                "tokens": tokenizer.convert_ids_to_tokens(enc["input_ids"][b, :n].tolist()),
                "attention": weights[b, :, :, :n, :n].tolist(),
            }
            sys.stdout.write(json.dumps(doc) + "\n")
