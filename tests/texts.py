"""Text the tests share: seeded support-doc prose, long enough to be cut into chunks."""

from __future__ import annotations

import numpy as np

WORDS = ["install", "the", "server", "then", "restart", "cache", "and", "check", "logs"]


def prose(seed: int, paragraphs: int, words: int = 10) -> str:
    """``paragraphs`` one-sentence paragraphs of ``words`` words each, the same for a seed."""
    rng = np.random.default_rng(seed)
    return "\n\n".join(
        " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), words)).capitalize() + "."
        for _ in range(paragraphs)
    )
