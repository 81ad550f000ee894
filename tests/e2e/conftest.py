"""Browser harness for end-to-end tests: JupyterLab and Voila in headless Chromium.

Fixtures
    e2e_artifacts   folder for screenshots and server logs ($E2E_ARTIFACTS, else a pytest tmp dir)
    server_root     temp dir both servers serve; tests copy notebooks into it
    lab_server      session JupyterLab server (a ``Server``)
    lab             ``lab_server``, plus: every kernel/session is shut down after the test
    voila_server    session Voila server in tree mode over ``server_root``
    chromium        session Playwright Chromium (``$CHROMIUM_PATH`` or /usr/bin/chromium)
    page            a fresh browser context + page, offline guard, 90 s timeouts
    page_errors     list of console errors / page errors seen by ``page`` (assert it is empty)

Helpers, handed out as fixtures of the same name (no ``import conftest``: other conftest.py
files exist in this tree, and the module name would be ambiguous)
    open_notebook_in_lab(page, server, nb_path)   copy, open, wait for idle kernel, run all cells
    open_notebook_in_voila(page, server, nb_path) copy, open the Voila render page
    screenshot(page, name)                        PNG into the artifacts folder
    wait_blob_src(page, selector)                 wait for a settled blob: src, return it
    wait_src_changes(page, selector, old)         wait until src != old, return the new one
    lab_hide_code(page)                           hide code cells (widgets fit on screen)
    write_notebook(name, *cells)                  a notebook of code cells (python3 kernel) in the test's tmp dir

Needs apt ``chromium`` and pip ``playwright``; never runs ``playwright install``.
Without Chromium the tests skip, or fail when ``CI`` is set.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cnnviz-e2e-token"
SERVER_START_TIMEOUT = 90  # s
UI_TIMEOUT_MS = 90_000  # kernel start + torch import + first execution + widget JS load
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# where JupyterLab and Voila render a cell's traceback (error outputs become stderr text)
_TRACEBACK_SEL = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}

_ARTIFACTS: Path | None = None  # set by the e2e_artifacts fixture, used by screenshot()


# --------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():  # runs in the child before exec
    """Linux: the server gets SIGTERM when pytest dies (even by SIGKILL) and then
    shuts its kernels down itself."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG


@dataclass
class Server:
    name: str
    base: str  # e.g. http://127.0.0.1:12345
    root: Path  # folder the server serves
    log_path: Path
    token: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _log: object = field(default=None, repr=False)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM lets Jupyter/Voila shut their kernels down (kernels live in their
        own sessions, so killing the process group alone would orphan them)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def _start(server: Server, cmd, env, probe) -> Server:
    """Start a server in its own session, output to a log file (never to pytest's
    stdout: an inherited pipe could keep a CI log open); wait until probe() holds."""
    server._log = open(server.log_path, "w")
    server.proc = subprocess.Popen(
        cmd, cwd=server.root, env=env, stdout=server._log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{server.log_tail()}")
        if probe():
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {SERVER_START_TIMEOUT}s:\n{server.log_tail()}")


def _http(url, method="GET", token=None, timeout=5):
    """Tiny urllib wrapper; returns (status, body bytes). Closes everything (no ResourceWarning)."""
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, b""


def _http_ok(url, token=None):
    def probe():
        try:
            return _http(url, token=token, timeout=2)[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    return probe


def _port_open(port):
    def probe():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    return probe


def _server_env(state: Path) -> dict:
    """Same interpreter, fresh Jupyter state, nothing downloaded."""
    torch_home = state / "torch-home"  # empty: any attempt to use cached weights finds nothing
    torch_home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The kernel must import the working tree's package (an editable install points there too).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(
        TORCH_HOME=str(torch_home),
        CNNVIZ_OFFLINE="1",
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "lab-workspaces"),
        JUPYTER_CONFIG_DIR=str(state / "config"),  # ignore ~/.jupyter
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
    )
    env.pop("JUPYTER_TOKEN", None)
    return env


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def e2e_artifacts(tmp_path_factory) -> Path:
    global _ARTIFACTS
    d = os.environ.get("E2E_ARTIFACTS")
    p = Path(d) if d else tmp_path_factory.mktemp("e2e-artifacts")
    p.mkdir(parents=True, exist_ok=True)
    _ARTIFACTS = p
    return p


@pytest.fixture(scope="session")
def server_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-root")


@pytest.fixture(scope="session")
def lab_server(server_root, e2e_artifacts, tmp_path_factory):
    state = tmp_path_factory.mktemp("lab-state")
    env = _server_env(state)
    settings = {
        # attach every cell to the DOM (the default virtualises off-screen cells)
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        # no "get notified about official Jupyter news?" toast
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
    }
    for rel, data in settings.items():
        f = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(data))
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={server_root}", "--ServerApp.open_browser=False",
        "--allow-root", "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
    ]
    base = f"http://127.0.0.1:{port}"
    server = Server("jupyterlab", base, server_root, e2e_artifacts / "jupyterlab.log", TOKEN)
    _start(server, cmd, env, _http_ok(f"{base}/api/status", TOKEN))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def notebook7_server(server_root, e2e_artifacts, tmp_path_factory):
    """Session Jupyter Notebook 7 server (same interpreter, same root, app exposed for commands)."""
    state = tmp_path_factory.mktemp("nb7-state")
    env = _server_env(state)
    port = _free_port()
    cmd = [
        sys.executable, "-m", "jupyter", "notebook", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={server_root}", "--ServerApp.open_browser=False", "--allow-root",
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ]
    base = f"http://127.0.0.1:{port}"
    server = Server("notebook7", base, server_root, e2e_artifacts / "notebook7.log", TOKEN)
    _start(server, cmd, env, _http_ok(f"{base}/api/status", TOKEN))
    yield server
    server.stop()


@pytest.fixture
def notebook7(notebook7_server):
    """The session Notebook 7 server; its kernels are shut down after each test."""
    shutdown_kernels(notebook7_server)
    yield notebook7_server
    shutdown_kernels(notebook7_server)


def shutdown_kernels(server: Server):
    """Delete every session and kernel of a Jupyter server (clean state between tests)."""
    for kind in ("sessions", "kernels"):
        try:
            status, body = _http(f"{server.base}/api/{kind}", token=server.token)
            for item in json.loads(body or b"[]") if status == 200 else []:
                _http(f"{server.base}/api/{kind}/{item['id']}", method="DELETE", token=server.token, timeout=30)
        except (urllib.error.URLError, OSError, ValueError):
            pass


@pytest.fixture
def lab(lab_server):
    """The session JupyterLab server; its kernels are shut down after each test."""
    shutdown_kernels(lab_server)
    yield lab_server
    shutdown_kernels(lab_server)


@pytest.fixture(scope="session")
def voila_server(server_root, e2e_artifacts, tmp_path_factory):
    state = tmp_path_factory.mktemp("voila-state")
    port = _free_port()
    cmd = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--show_tracebacks=True",
           # notebook 7's lab extension fails to load in Voila and logs a console error
           # ("The getter for the shared module is not a function"; cf. voila issue #1514).
           # It has no role in a Voila page, so don't load it.
           "--VoilaConfiguration.extension_denylist=@jupyter-notebook/lab-extension"]
    server = Server("voila", f"http://127.0.0.1:{port}", server_root, e2e_artifacts / "voila.log")
    # Probe with a TCP connect: a GET on a notebook would start a kernel and run it.
    _start(server, cmd, _server_env(state), _port_open(port))
    yield server
    server.stop()


def _chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium():
    exe = _chromium_path()
    if not os.path.exists(exe):
        msg = f"no Chromium at {exe} (apt-get install chromium, or set CHROMIUM_PATH)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        msg = "playwright is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _is_loopback(url: str) -> bool:
    return urlparse(url).hostname in LOOPBACK


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"_e2e_rep_{rep.when}", rep)
    return rep


@pytest.fixture
def _page_and_errors(chromium, request, e2e_artifacts):
    ctx = chromium.new_context(viewport={"width": 1280, "height": 1000})
    ctx.set_default_timeout(UI_TIMEOUT_MS)
    aborted: list[str] = []
    errors: list[str] = []

    def offline_guard(route):
        """Abort anything not on loopback at once (e.g. Voila's FontAwesome CDN link),
        so the tests never touch the network and never stall on it."""
        url = route.request.url
        if url.startswith(("data:", "blob:")) or _is_loopback(url):
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    ctx.route("**/*", offline_guard)
    page = ctx.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.set_default_navigation_timeout(UI_TIMEOUT_MS)

    def on_console(msg):
        if msg.type != "error":
            return
        text = msg.text
        url = (msg.location or {}).get("url", "")
        if url in aborted or not _is_loopback(url) and url.startswith("http"):
            return  # a request our offline guard aborted
        if "favicon" in text or "favicon" in url:
            return
        errors.append(f"console.error: {text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc} {(exc.stack or '')[:600]}"))
    yield page, errors
    rep = getattr(request.node, "_e2e_rep_call", None)
    if rep is not None and rep.failed:
        # Evidence for a failed test: screenshot, page text and errors, next to the server logs.
        stem = e2e_artifacts / f"FAILED-{request.node.name}"
        try:
            page.screenshot(path=f"{stem}.png", timeout=10_000)
            text = page.locator("body").inner_text(timeout=10_000)
            Path(f"{stem}.txt").write_text(f"errors: {errors}\naborted: {aborted}\n\n{text}")
        except Exception:  # noqa: BLE001 - best effort only
            pass
    ctx.close()


@pytest.fixture
def page(_page_and_errors):
    """A fresh Chromium page (own context): non-loopback requests aborted, 90 s timeouts."""
    return _page_and_errors[0]


@pytest.fixture
def page_errors(_page_and_errors) -> list:
    """Console errors and uncaught page errors seen by ``page``; tests assert it is empty."""
    return _page_and_errors[1]


# --------------------------------------------------------------------------- helpers
def _copy_into(server: Server, nb_path) -> str:
    src = Path(nb_path)
    dst = server.root / src.name
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    return src.name


def open_notebook_in_lab(page, server: Server, nb_path) -> str:
    """Copy ``nb_path`` into the server root, open it in JupyterLab, wait until its
    kernel is idle, then run all cells fire-and-forget. Returns the notebook name."""
    name = _copy_into(server, nb_path)
    page.goto(f"{server.base}/lab/tree/{quote(name)}?token={server.token}")
    # Run-all before the kernel is up opens a modal "Select Kernel" dialog (recipe pitfall 4).
    page.wait_for_function(
        """(name) => {
            const w = window.jupyterapp?.shell?.currentWidget;
            return w?.context?.path === name
                && w?.sessionContext?.session?.kernel?.status === 'idle';
        }""",
        arg=name,
    )
    # Fire and forget: evaluate() would await the command's promise with no timeout.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    return name


def open_notebook_in_notebook7(page, server: Server, nb_path) -> str:
    """Like ``open_notebook_in_lab``, in Jupyter Notebook 7's single-document page."""
    name = _copy_into(server, nb_path)
    page.goto(f"{server.base}/notebooks/{quote(name)}?token={server.token}")
    page.wait_for_function(
        """() => window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"""
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    return name


def open_notebook_in_voila(page, server: Server, nb_path) -> str:
    """Copy ``nb_path`` into the Voila root and open its render page (Voila runs all cells)."""
    name = _copy_into(server, nb_path)
    page.goto(f"{server.base}/voila/render/{quote(name)}")
    return name


def lab_hide_code(page):
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:hide-all-cell-code'); }")


def screenshot(page, name: str) -> Path:
    """Save a PNG as ``<artifacts>/<name>.png``: of the page, or of one element if
    given a Locator (JupyterLab's notebook scrolls inside its own panel)."""
    folder = _ARTIFACTS or Path(os.environ.get("E2E_ARTIFACTS") or "e2e-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    page.screenshot(path=str(path))
    return path


def wait_src_changes(page, selector: str, old: str):
    """Wait until the element's src differs from ``old`` (a new blob: URL = new bytes from the kernel)."""
    page.wait_for_function(
        "([sel, old]) => { const e = document.querySelector(sel); return !!e && !!e.src && e.src !== old; }",
        arg=[selector, old],
    )
    return page.locator(selector).first.get_attribute("src")


def wait_blob_src(page, selector: str, settle_ms: int = 1000) -> str:
    """Wait for ``selector`` to have a blob: src that stays the same for ``settle_ms``
    (so that a late initial update is not mistaken for a round trip); fail at once
    with the traceback if a notebook cell raised meanwhile."""
    # Also stop at once when a cell raised: no point waiting 90 s for a widget that never comes.
    found = page.wait_for_function(
        """(sel) => {
            const e = document.querySelector(sel);
            if (e && (e.src || '').startsWith('blob:')) return 'ok';
            for (const o of document.querySelectorAll(TRACEBACK_SEL)) {
                if (o.textContent.includes('Traceback')) return o.textContent;
            }
            return false;
        }""".replace("TRACEBACK_SEL", json.dumps(_TRACEBACK_SEL)),
        arg=selector,
    ).json_value()
    if found != "ok":
        pytest.fail(f"a notebook cell raised while waiting for {selector}:\n{found[-3000:]}")
    src = page.locator(selector).first.get_attribute("src")
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        page.wait_for_timeout(settle_ms)
        now = page.locator(selector).first.get_attribute("src")
        if now == src:
            return src
        src = now
    return src


# --------------------------------------------------------------------------- helpers as fixtures
@pytest.fixture(name="open_notebook_in_lab")
def _fx_open_notebook_in_lab():
    return open_notebook_in_lab


@pytest.fixture(name="open_notebook_in_voila")
def _fx_open_notebook_in_voila():
    return open_notebook_in_voila


@pytest.fixture(name="screenshot")
def _fx_screenshot(e2e_artifacts):
    return screenshot


@pytest.fixture(name="wait_blob_src")
def _fx_wait_blob_src():
    return wait_blob_src


@pytest.fixture(name="wait_src_changes")
def _fx_wait_src_changes():
    return wait_src_changes


@pytest.fixture(name="lab_hide_code")
def _fx_lab_hide_code():
    return lab_hide_code


@pytest.fixture(name="open_notebook_in_notebook7")
def _fx_open_notebook_in_notebook7():
    return open_notebook_in_notebook7


@pytest.fixture
def write_notebook(tmp_path):
    """``write_notebook(name, *cells) -> Path``: a notebook of code cells for the python3 kernel."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    def write(name: str, *cells: str) -> Path:
        nb = new_notebook(cells=[new_code_cell(code) for code in cells], metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        path = tmp_path / name
        nbformat.write(nb, path)
        return path
    return write
