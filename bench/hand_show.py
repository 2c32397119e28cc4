"""The competitor: what a person writes by hand to get MiniLM's attention as JSON.

Import transformers, load the embedded model with eager attention, one forward pass
with output_attentions=True, print the weights as JSON (stacks[0].attention, as attnviz does).
"""

import json
import sys

import torch
from transformers import AutoModel, AutoTokenizer

folder = sys.argv[1]
text = sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
enc = tokenizer(text, return_tensors="pt")
with torch.no_grad():
    out = model(**enc, output_attentions=True)
weights = torch.stack(out.attentions, dim=1)[0]  # (layers, heads, q, k)
tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
doc = {
    "schema": "hand-written",
    "model": "all-MiniLM-L6-v2",
    "text": text,
    "stacks": [{"name": "encoder", "query_tokens": tokens, "key_tokens": tokens, "attention": weights.tolist()}],
}
print(json.dumps(doc))
