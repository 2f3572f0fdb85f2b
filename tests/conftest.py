"""Shared test setup: offline, CPU-only, a temporary model registry per test; browser fixtures."""
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lepton_apps.devservers import PostgresServer, RedisServer, free_port, pg_binary  # noqa: F401 - re-exported

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LEPTON_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).parent / "workers"
PYTHON = sys.executable


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("lepton_cache")


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path, monkeypatch, _session_cache):
    """Every test gets its own empty $LEPTON_HOME, so none touches ./lepton_models, and the
    session shares one $LEPTON_CACHE (compiled models), so none touches ~/.cache."""
    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "lepton_home"))
    monkeypatch.setenv("LEPTON_CACHE", str(_session_cache))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)




def pytest_collection_finish(session):
    """An empty selection is a failure, never a silent green run."""
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests were collected: check the test paths and -k/-m filters")


# --------------------------------------------------------------------------- browser tests
# A Streamlit hub on localhost driven by Playwright + Debian Chromium. Without /usr/bin/chromium
# (scripts/ensure_debian.sh from `make test`) or the playwright package they skip, except under CI=true where
# they fail. A domain's browser test registers bundles in ``hub_home`` and opens its page:
#
#     @pytest.mark.browser
#     def test_medical_page(open_hub, hub_home):
#         page = open_hub("medical")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
STARTUP_TIMEOUT_S = 60
RENDER_TIMEOUT_MS = 30_000


def _unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI=true fail instead, so CI cannot skip the browser tests silently."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)")
    pytest.skip(reason)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"streamlit did not answer /_stcore/health within {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    """The LEPTON_HOME of the hub server; register bundles here before opening a page."""
    return tmp_path_factory.mktemp("hub") / "registry"


@pytest.fixture(scope="module")
def hub_url(hub_home):
    """Start the hub with the real command, ``lepton-apps ui``, on a free localhost port; yield its base URL."""
    port = free_port()
    log = hub_home.parent / "streamlit.log"
    env = {**os.environ, "LEPTON_HOME": str(hub_home), "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lepton_apps.cli", "ui", "--port", str(port), "--address", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    """A headless Debian Chromium driven by Playwright (skips, or fails under CI, if either is missing)."""
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing; run 'make test' (scripts/ensure_debian.sh) or apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the 'playwright' package is missing; pip install 'lepton-apps[test]'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_hub(browser, hub_url):
    """Return ``open_hub(page_path="")``: open a hub page and wait until its script has finished."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})

    def _open(page_path: str = ""):
        page = context.new_page()
        page.goto(f"{hub_url}/{page_path.lstrip('/')}", wait_until="domcontentloaded")
        # a page's first run loads its model (and may export the ONNX encoder once): on a loaded 2-core
        # machine that took over 30 s, so the first render may take three render timeouts
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                               timeout=RENDER_TIMEOUT_MS * 3)
        return page

    yield _open
    context.close()


def wait_script_idle(page, drawn, timeout_ms: int = RENDER_TIMEOUT_MS * 3) -> None:
    """Wait until the locator ``drawn`` (something the page's script draws) is visible and the script has
    stopped (``notRunning`` is also the state before the first run starts, hence ``drawn``)."""
    drawn.first.wait_for(timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def choose_option(page, selectbox, name: str, attempts: int = 3) -> None:
    """Choose the option ``name`` of a Streamlit ``selectbox`` locator by typing it into the box's search
    field and pressing Enter. Clicking the option in the open list failed once under CI load (the option
    never appeared: a rerun redrawing the page closes the list), so wait for the script to be idle, and try
    again up to ``attempts`` times; then check the box's search field shows the chosen name."""
    for attempt in range(attempts):
        wait_script_idle(page, selectbox)
        selectbox.click()
        page.keyboard.type(name)
        option = page.get_by_role("option", name=name, exact=False).first
        try:
            option.wait_for(timeout=RENDER_TIMEOUT_MS // 3)
            page.keyboard.press("Enter")
            break
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; retry after the rerun
            page.keyboard.press("Escape")
            if attempt == attempts - 1:
                raise
    shown = selectbox.get_by_role("combobox")          # the chosen option is the search field's value
    for _ in range(RENDER_TIMEOUT_MS // 250):
        if name in (shown.input_value() or ""):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the select box shows {shown.input_value()!r}, not {name!r}")


# --------------------------------------------------------------------------- PostgreSQL
# A throw-away PostgreSQL cluster on a free localhost port (Debian's postgresql package, installed by
# scripts/ensure_debian.sh from `make test`). Without it the tests skip, except under CI=true.

def _service_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: database tests must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server for the session (stopped at the end)."""
    if not (pg_binary("initdb") and pg_binary("pg_ctl")):
        _service_unavailable("PostgreSQL is not installed ('make test' installs Debian's postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _service_unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="lepton-pg-"))  # in /tmp: the postgres user (when root) can reach it
    server = PostgresServer(folder, fsync=False)
    try:
        server.create()
        yield server
    finally:
        try:
            server.stop()
        except RuntimeError:
            pass
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- Redis
# A throw-away redis-server on a free localhost port (Debian's redis-server package, installed by
# scripts/ensure_debian.sh from `make test`), no persistence. Without it the tests skip, except under CI=true.
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A running redis-server for the session (killed at the end); tests use their own key prefixes."""
    import shutil

    if not shutil.which("redis-server") and not Path("/usr/bin/redis-server").exists():
        _service_unavailable("redis-server is not installed ('make test' installs Debian's redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        _service_unavailable("the redis client is not installed (pip install redis)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
