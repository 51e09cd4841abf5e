"""docs/offline.md's second way: hub ids from a Hugging Face cache with ``HF_HUB_OFFLINE=1``.

Run in a fresh process, as a user would: huggingface_hub reads both variables at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lfm_core import DenseEncoder
from lfm_core.testing import write_hub_cache

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json
from lfm_core import CheckpointError, DenseEncoder
by_id = DenseEncoder.from_pretrained("LiquidAI/LFM2.5-Embedding-350M")
pinned = DenseEncoder.from_pretrained("LiquidAI/LFM2.5-Embedding-350M", revision=COMMIT)
try:
    DenseEncoder.from_pretrained("LiquidAI/not-in-the-cache")
    missing = ""
except CheckpointError as error:
    missing = str(error)
print(json.dumps({"digest": by_id.checkpoint_digest, "pinned": pinned.checkpoint_digest,
                  "missing": missing}))
"""


def test_hub_ids_load_from_a_cache_with_the_hub_offline(
    tiny_dense_dir: Path, tiny_dense: DenseEncoder, tmp_path: Path
) -> None:
    cache = tmp_path / "hf-cache"
    snapshot = write_hub_cache(cache, "LiquidAI/LFM2.5-Embedding-350M", tiny_dense_dir)
    root = cache / "models--LiquidAI--LFM2.5-Embedding-350M"
    assert (root / "refs" / "main").read_text() == snapshot.name
    assert (snapshot / "config.json").is_symlink()  # into blobs/, as hf download leaves them

    env = {
        **os.environ,
        "HF_HUB_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT.replace("COMMIT", repr(snapshot.name))],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["digest"] == seen["pinned"] == tiny_dense.checkpoint_digest
    assert seen["missing"].startswith("cannot load model 'LiquidAI/not-in-the-cache'")
    assert "(HF_HUB_OFFLINE is set)" in seen["missing"]
