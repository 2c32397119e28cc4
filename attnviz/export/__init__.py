"""Batch export: many results → heatmap images + manifest.jsonl, safely.

plan.py   which images a result makes (layout, title, file name, manifest record)
files.py  names, atomic writes, the manifest, the output folder
run.py    results in, drawing processes, progress and failures out
"""
