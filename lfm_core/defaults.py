"""Defaults the adapters share, in a module that imports nothing heavy."""

from __future__ import annotations

DEFAULT_TOP_N = 5
"""How many documents the rerankers of every adapter keep by default."""
