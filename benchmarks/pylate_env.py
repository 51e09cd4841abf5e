"""Build the PyLate reference environment (``.venv-pylate``) beside the project's own.

Why a second environment: ``pylate==1.6.0`` pins ``sentence-transformers==5.3.0`` and
``transformers<=5.3.0`` (the project uses sentence-transformers 6 and a newer
transformers) and requires ``fast-plaid``, whose wheels pull their own CUDA torch.
``pylate.models.ColBERT`` and ``pylate.scores``/``pylate.rank`` need none of
``fast-plaid``, ``fastkmeans`` or ``ninja`` (they serve PyLate's PLAID index), so the
recipe is:

1. ``python -m venv .venv-pylate``
2. ``pip install torch==<the project's torch version>`` first, so pip never picks a
   different (CUDA) torch;
3. PyLate's real runtime dependencies under a constraint that pins that torch;
4. ``pip install --no-deps pylate==1.6.0``;
5. check that ``from pylate import models, rank, scores`` imports.

Usage: ``python benchmarks/pylate_env.py [--venv PATH] [--force]`` (about a minute on
2 cores with a warm pip cache). The tests and the benchmark find the interpreter through
:func:`pylate_python` (``LFM_PYLATE_PYTHON`` overrides the default path).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = PROJECT_ROOT / ".venv-pylate"
PYLATE_VERSION = "1.6.0"
# pylate 1.6.0's Requires-Dist minus fast-plaid, fastkmeans and ninja (PLAID indexing only);
# scipy is imported by pylate.models.colbert (token pooling) without being declared.
RUNTIME_DEPS = (
    "sentence-transformers==5.3.0",
    "transformers>=4.41.0,<=5.3.0",
    "datasets>=2.20.0",
    "accelerate>=0.31.0",
    "pandas>=2.2.1",
    "ujson==5.12.0",
    "scipy>=1.10",
)
IMPORT_CHECK = "from pylate import models, rank, scores; import pylate; print(pylate.__version__)"


def pylate_python(venv: Path = DEFAULT_VENV) -> Path | None:
    """The PyLate interpreter: ``$LFM_PYLATE_PYTHON``, else ``venv/bin/python``; None if absent."""
    override = os.environ.get("LFM_PYLATE_PYTHON")
    path = Path(override) if override else venv / "bin" / "python"
    return path if path.is_file() else None


def project_torch_spec() -> str:
    """``torch==X.Y.Z`` for the torch this interpreter runs (local tag such as ``+cpu`` dropped)."""
    import torch

    return f"torch=={torch.__version__.split('+', 1)[0]}"


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True)


def build(venv: Path = DEFAULT_VENV, *, torch_spec: str | None = None, force: bool = False) -> Path:
    """Create ``venv`` with PyLate and the project's torch; return its interpreter.

    Args:
        venv: where to create it (default ``<project>/.venv-pylate``).
        torch_spec: pip requirement for torch (default: the version this process runs).
        force: delete and rebuild an existing environment.

    Raises:
        subprocess.CalledProcessError: a pip step or the import check failed.
    """
    if force and venv.exists():
        shutil.rmtree(venv)
    torch_spec = torch_spec or project_torch_spec()
    if not (venv / "bin" / "python").is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    _pip(python, torch_spec)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write(torch_spec + "\n")
    try:
        _pip(python, "-c", constraints.name, *RUNTIME_DEPS)
    finally:
        os.unlink(constraints.name)
    _pip(python, "--no-deps", f"pylate=={PYLATE_VERSION}")
    subprocess.run(
        [str(python), "-c", IMPORT_CHECK], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    return python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the PyLate reference environment.")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="default: %(default)s")
    parser.add_argument("--torch", dest="torch_spec", default=None, help="pip spec for torch")
    parser.add_argument("--force", action="store_true", help="rebuild from scratch")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    python = build(args.venv, torch_spec=args.torch_spec, force=args.force)
    print(f"PyLate environment ready: {python} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
