"""Renderers: turn a (selected) AttentionResult into text, data or images. They never print."""
