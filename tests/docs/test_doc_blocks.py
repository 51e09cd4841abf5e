"""Every Python and shell block of README.md and docs/*.md, run as a reader would run it.

Hub ids resolve to tiny checkpoints through an offline Hugging Face cache; a block marked
``needs gpu|server|cluster|data`` is checked (imports, arguments) and skipped with that
reason; ``pip install`` lines are checked against pyproject's extras and the tested
environment, benchmark commands against their own argument parsers. See
tests/docs/harness.py.
"""

from __future__ import annotations

import pytest

from tests.docs.blocks import Block, documents, read_blocks
from tests.docs.harness import OUTCOMES, ROOT, DocRun

BLOCKS: list[tuple[int, Block]] = [
    (i, block) for path in documents(ROOT) for i, block in enumerate(read_blocks(path, ROOT))
]


@pytest.mark.parametrize(("index", "block"), BLOCKS, ids=[block.id for _, block in BLOCKS])
def test_block(doc_runs: dict[str, DocRun], index: int, block: Block) -> None:
    if block.kind == "text":
        OUTCOMES.append((block.id, "text", ""))
        return  # a layout or a JSON shape: prose, not something to run
    try:
        outcome = doc_runs[block.doc].run_through(index)
    except BaseException as exc:
        OUTCOMES.append((block.id, "failed", str(exc).splitlines()[0] if str(exc) else repr(exc)))
        raise
    if outcome.ran:
        OUTCOMES.append((block.id, "run", ""))
        return
    reason = "; ".join(dict.fromkeys(outcome.checked))
    OUTCOMES.append((block.id, "checked", reason))
    pytest.skip(f"{block.id} not run: {reason}; its imports and arguments were checked")
