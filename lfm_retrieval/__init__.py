"""lfm_retrieval: the ``lfm-retrieval`` command, corpus readers and retrieval evaluations.

- :mod:`lfm_retrieval.cli` — ``lfm-retrieval index | search | eval | crosslingual | bench``.
- :mod:`lfm_retrieval.corpus` — JSONL, BEIR and text-folder readers.
- :mod:`lfm_retrieval.pipeline` — index a corpus into Qdrant (resumable), search it, run a
  BEIR evaluation.
- :mod:`lfm_retrieval.evaluation` — nDCG@k and Recall@k as BEIR computes them.
- :mod:`lfm_retrieval.crosslingual` — the NTREX-128 cross-lingual table.

Nothing heavy is imported here, so ``lfm-retrieval --help`` answers at once.
"""
