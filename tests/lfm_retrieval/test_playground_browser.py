"""The playground page in a real browser: headless Chromium (Selenium) against `serve`.

One `lfm-retrieval serve` process (MiniLM dense, the tiny ColBERT, an Edge store indexed
before it starts, an API key) and one browser for the module. A screenshot of the page is
kept in the test's tmp dir (and copied to ``$LFM_PLAYGROUND_SCREENSHOT`` when set).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from lfm_core import DenseEncoder, LateInteractionEncoder

KEY = "playground-key"
KEY_ENV = "LFM_TEST_PLAYGROUND_KEY"
SCRIPT_DOC = (
    "<script>window.pwned = 1; document.title = 'pwned'</script>"
    '<img src=x onerror="window.pwned = 2"> Gift cards never expire.'
)
DOCS = [
    "Orders ship within two business days.",
    "Returns are accepted for 30 days with a receipt.",
    "Das Café öffnet um neun Uhr.",
    "La tienda cierra los domingos.",
    SCRIPT_DOC,
    "We ship to Norway, Sweden and Japan.",
    "Refunds go back to the original card.",
    "Le magasin est fermé le lundi.",
]
LANGS = ["en", "en", "de", "es", "en", "en", "en", "fr"]
QUERY = "when do orders ship?"


def _browser_paths() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "no headless Chromium: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver)"
        )
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store_dir(
    tmp_path_factory: pytest.TempPathFactory,
    minilm: DenseEncoder,
    tiny_colbert: LateInteractionEncoder,
) -> tuple[Path, dict[str, list[str]]]:
    """An Edge store with one hybrid collection, and the ids each mode gives in-process."""
    from lfm_qdrant import EdgeStore, MultiVectorWriter

    folder = tmp_path_factory.mktemp("playground-store")
    with EdgeStore(folder) as store:
        writer = MultiVectorWriter(store, "faq", dense=minilm, colbert=tiny_colbert)
        writer.add(
            DOCS, ids=[f"doc-{i}" for i in range(len(DOCS))], metadata=[{"lang": x} for x in LANGS]
        )
        expected = {
            mode: [str(p.id) for p in writer.search(QUERY, limit=5, prefetch_limit=8, mode=mode)]
            for mode in ("hybrid", "dense", "colbert")
        }
    return folder, expected


@pytest.fixture(scope="module")
def server(minilm_dir: Path, tiny_colbert_dir: Path, store_dir: tuple[Path, Any]) -> Iterator[str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "lfm_retrieval.cli", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--device", "cpu", "--log-level", "warning"]
    cmd += ["--embedding-model", str(minilm_dir), "--colbert-model", str(tiny_colbert_dir)]
    cmd += ["--path", str(store_dir[0]), "--api-key-env", KEY_ENV]
    proc = subprocess.Popen(
        cmd, env={**os.environ, KEY_ENV: KEY}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"server exited: {out}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become healthy")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _browser_paths()
    home = tmp_path_factory.mktemp("chromium-home")
    options = Options()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-crash-reporter",
        "--no-first-run",
        "--window-size=1280,860",
        f"--user-data-dir={home / 'profile'}",
    ):
        options.add_argument(arg)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "XDG_CACHE_HOME": str(home),
    }
    driver = webdriver.Chrome(service=Service(driver_path, env=env), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: Any, server: str, searches: int = 0, **params: str) -> None:
    """Load the page with the key as Basic credentials, and wait for ``searches`` searches."""
    from selenium.webdriver.support.ui import WebDriverWait

    host = server.removeprefix("http://")
    query = f"?{urlencode(params)}" if params else ""
    browser.get(f"http://user:{KEY}@{host}/{query}")
    wait_for(
        browser,
        f"document.body.dataset.ready === 'true' && "
        f"Number(document.body.dataset.searches || 0) >= {searches}",
    )
    WebDriverWait(browser, 30)


def wait_for(browser: Any, condition: str, timeout: float = 60) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda d: d.execute_script(f"return {condition}"))


def pane_ids(browser: Any, pane: str = "pane-main") -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(li => li.dataset.id)",
        f"#{pane} li.hit",
    )


def submit(browser: Any) -> None:
    before = int(browser.execute_script("return Number(document.body.dataset.searches || 0)"))
    browser.find_element("id", "run").click()
    wait_for(browser, f"Number(document.body.dataset.searches || 0) > {before}")


def test_linked_search_runs_on_load_and_shows_the_expected_hits(
    browser: Any, server: str, store_dir: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    open_page(browser, server, 1, collection="faq", q=QUERY, mode="hybrid", limit="5", prefetch="8")
    assert pane_ids(browser) == store_dir[1]["hybrid"]
    assert browser.find_element("id", "query").get_attribute("value") == QUERY
    assert browser.find_element("id", "error").get_attribute("hidden") is not None
    # the legs that found each hit
    legs = browser.execute_script(
        "return [...document.querySelectorAll('#pane-main li.hit:first-child .leg')].map(e => e.textContent)"
    )
    # the service's own per-leg report ("dense #1", "lexical #2", "colbert #3")
    assert legs and all(re.fullmatch(r"(dense|lexical|colbert) #\d+", leg) for leg in legs)


def test_mode_switch_changes_the_hits(
    browser: Any, server: str, store_dir: tuple[Path, dict[str, list[str]]]
) -> None:
    from selenium.webdriver.support.ui import Select

    expected = store_dir[1]
    assert expected["dense"] != expected["colbert"]  # else the switch would show nothing
    open_page(browser, server, 1, collection="faq", q=QUERY, mode="dense", limit="5", prefetch="8")
    assert pane_ids(browser) == expected["dense"]
    Select(browser.find_element("id", "mode")).select_by_value("colbert")
    submit(browser)
    assert pane_ids(browser) == expected["colbert"]
    assert "mode=colbert" in browser.current_url  # the URL follows, to be shared


def test_highlights_are_the_words_explain_names(browser: Any, server: str) -> None:
    open_page(browser, server, 1, collection="faq", q=QUERY, mode="hybrid", limit="5", prefetch="8")
    answer = httpx.post(
        f"{server}/v1/search",
        json={
            "query": QUERY,
            "collection": "faq",
            "limit": 5,
            "prefetch_limit": 8,
            "explain": True,
        },
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()
    shown = browser.execute_script(
        """return [...document.querySelectorAll('#pane-main li.hit')].map(li => ({
            id: li.dataset.id,
            marks: [...li.querySelectorAll('mark')].map(m => ({
                span: m.dataset.span, text: m.textContent, title: m.title}))}))"""
    )
    assert [hit["id"] for hit in shown] == [str(h["id"]) for h in answer["results"]]
    for hit, page_hit in zip(answer["results"], shown):
        text = hit["payload"]["text"]
        named = {tuple(m["document_span"]) for m in hit["explain"]["matches"] if m["document_span"]}
        marks = {tuple(int(x) for x in m["span"].split(":")) for m in page_hit["marks"]}
        assert marks == named and marks
        for mark in page_hit["marks"]:
            start, end = (int(x) for x in mark["span"].split(":"))
            assert mark["text"] == text[start:end]
            # hover: which query tokens picked this word
            tokens = [
                m["query_token"]
                for m in hit["explain"]["matches"]
                if m["document_span"] == [start, end]
            ]
            assert mark["title"].startswith("matched query tokens: ")
            assert all(token in mark["title"] for token in tokens)


def test_second_pane_marks_the_overlap(
    browser: Any, server: str, store_dir: tuple[Path, dict[str, list[str]]], tmp_path: Path
) -> None:
    expected = store_dir[1]
    open_page(
        browser,
        server,
        1,
        collection="faq",
        q=QUERY,
        mode="dense",
        compare="colbert",
        limit="5",
        prefetch="8",
    )
    wait_for(browser, "document.querySelectorAll('#pane-compare li.hit').length > 0")
    assert pane_ids(browser) == expected["dense"]
    assert pane_ids(browser, "pane-compare") == expected["colbert"]
    both = set(expected["dense"]) & set(expected["colbert"])
    marked = browser.execute_script(
        "return [...document.querySelectorAll('#pane-main li.hit.both')].map(li => li.dataset.id)"
    )
    assert set(marked) == both and both
    path = tmp_path / "playground.png"
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    if os.environ.get("LFM_PLAYGROUND_SCREENSHOT"):
        shutil.copyfile(path, os.environ["LFM_PLAYGROUND_SCREENSHOT"])


def test_script_in_documents_and_queries_is_text(browser: Any, server: str) -> None:
    query = (
        '<script>window.pwnedQuery = 1</script><img src=x onerror="window.pwnedQuery=2"> gift cards'
    )
    open_page(browser, server, 1, collection="faq", q=query, mode="dense", limit="8", prefetch="8")
    texts = browser.execute_script(
        "return [...document.querySelectorAll('#pane-main .text')].map(p => p.textContent)"
    )
    assert SCRIPT_DOC in texts  # shown character for character
    assert browser.execute_script("return [window.pwned, window.pwnedQuery]") == [None, None]
    assert browser.title != "pwned"
    assert (
        browser.execute_script(
            "return document.querySelectorAll('#pane-main script, #pane-main img').length"
        )
        == 0
    )
    assert browser.find_element("id", "query").get_attribute("value") == query


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"collection": "nope", "q": "x", "mode": "dense"}, "collection 'nope' does not exist"),
        (
            {"collection": "faq", "q": "x", "mode": "dense", "filter": "{bad"},
            "the filter is not valid JSON",
        ),
        ({"collection": "faq", "q": "x", "mode": "dense", "filter": '{"must": 5}'}, "filter"),
        ({"collection": "faq", "q": "x", "mode": "dense", "filter": "lang"}, "field=value"),
    ],
)
def test_bad_input_is_a_readable_message(
    browser: Any, server: str, params: dict[str, str], message: str
) -> None:
    open_page(browser, server, 1, **params)
    error = browser.find_element("id", "error")
    assert error.is_displayed()
    assert message in error.text


def test_the_page_wants_the_api_key(browser: Any, server: str) -> None:
    assert httpx.get(f"{server}/").status_code == 401
    assert httpx.get(f"{server}/v1/collections").status_code == 401
    host = server.removeprefix("http://")
    for url in (f"http://user:wrong-key@{host}/", f"http://{host}/"):
        browser.get(url)
        assert browser.find_elements("id", "search-form") == []
        assert "playground" not in browser.title
    # the right key opens it
    open_page(browser, server)
    assert browser.find_elements("id", "search-form")
