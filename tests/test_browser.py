"""The panel in a real JupyterLab, driven by headless Debian Chromium through Playwright."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import table_names, version_rows

from framefox_magic.manager import AlembicManager

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
REQUIRE_SERVERS = os.environ.get("FRAMEFOX_REQUIRE_SERVERS") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
KERNEL = "framefox-test-venv"
KERNEL_NAME = "Python (framefox test)"
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
TIMEOUT_MS = 120_000

MODELS = '''"""The models the test project's revisions create."""
import sqlalchemy as sa

metadata = sa.MetaData()
sa.Table("hero", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
sa.Table("team", metadata, sa.Column("id", sa.Integer, primary_key=True))
'''
HERO = ("op.create_table('hero', sa.Column('id', sa.Integer(), primary_key=True), "
        "sa.Column('name', sa.String(50)))")
TEAM = "op.create_table('team', sa.Column('id', sa.Integer(), primary_key=True))"
PYTHON_CELLS = [
    "from framefox_magic import AlembicManager\nfrom framefox_magic.widgets import MigrationPanel",
    "panel = MigrationPanel(AlembicManager())\npanel",
]
MAGIC_CELLS = ["%load_ext framefox_magic", "%migrate panel"]


def missing_tools() -> str | None:
    """What this test needs and does not have, or None."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is not installed (Debian package: chromium)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("ipykernel", "ipykernel"), ("nbformat", "nbformat")):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {package} is not installed"
    return None


@pytest.fixture(scope="module")
def tools() -> None:
    """Skip without a browser, Playwright or JupyterLab; fail instead with FRAMEFOX_REQUIRE_SERVERS=1."""
    problem = missing_tools()
    if problem is None:
        return
    if REQUIRE_SERVERS:
        pytest.fail(f"FRAMEFOX_REQUIRE_SERVERS=1 but {problem}")
    pytest.skip(f"browser test needs it: {problem}")


# ---------------------------------------------------------------- the project and the notebook


def make_project(root: Path, cells: list[str]) -> Path:
    """Two unapplied revisions (hero, team), models matching them, and a notebook showing the panel."""
    root.mkdir()
    (root / "panel_models.py").write_text(MODELS, encoding="utf-8")
    (root / "pyproject.toml").write_text('[tool.framefox_magic]\nmetadata = "panel_models:metadata"\n',
                                         encoding="utf-8")
    manager = AlembicManager(project_root=root)
    manager.init()
    for message, body, table in (("create hero", HERO, "hero"), ("create team", TEAM, "team")):
        manager.revision(message, autogenerate=False, upgrade_body=body,
                         downgrade_body=f"op.drop_table('{table}')")
    write_notebook(root / "panel.ipynb", cells)
    return root


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook with a title and the given code cells, on the test's kernel."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Migrations")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    notebook.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_NAME, "language": "python"}
    nbformat.write(notebook, path)


# ---------------------------------------------------------------- JupyterLab


@dataclass
class Lab:
    """A running JupyterLab: where it listens, its token, its project folder."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API with the token."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lab_environment(home: Path, theme: str) -> dict[str, str]:
    """Private Jupyter folders: a kernelspec for this Python, the theme, no news; nothing of the user's."""
    names = ("config", "data", "runtime", "settings", "workspaces", "ipython")
    folders = {name: home / name for name in names}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    kernel = folders["data"] / "kernels" / KERNEL
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": KERNEL_NAME, "language": "python",
    }), encoding="utf-8")
    apputils = folders["settings"] / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "themes.jupyterlab-settings").write_text(json.dumps({"theme": THEMES[theme]}),
                                                         encoding="utf-8")
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env.update({
        "JUPYTER_CONFIG_DIR": str(folders["config"]), "JUPYTER_DATA_DIR": str(folders["data"]),
        "JUPYTER_RUNTIME_DIR": str(folders["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(folders["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(folders["workspaces"]), "IPYTHONDIR": str(folders["ipython"]),
        "JUPYTER_PLATFORM_DIRS": "1",
    })
    return env


def start_lab(root: Path, home: Path, theme: str) -> Lab:
    """Start JupyterLab on 127.0.0.1 with token auth, serving ROOT."""
    port, token = free_port(), secrets.token_hex(16)
    env = lab_environment(home, theme)
    log = home / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return Lab(f"http://127.0.0.1:{port}", token, root, process, log)


def wait_until_up(lab: Lab, timeout: float = 90) -> None:
    """Wait until the server answers its status API (fail with its log when it dies or hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {lab.process.returncode}:\n{log_tail(lab)}")
        try:
            lab.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout:g} s:\n{log_tail(lab)}")


def stop_lab(lab: Lab) -> None:
    """Shut the kernels and the server down; kill the server if it does not go."""
    try:
        for kernel in lab.api("GET", "/api/kernels") or []:
            lab.api("DELETE", f"/api/kernels/{kernel['id']}")
        lab.api("POST", "/api/shutdown")
    except (OSError, ValueError):
        pass
    try:
        lab.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(lab.process.pid, signal.SIGTERM)
        try:
            lab.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(lab.process.pid, signal.SIGKILL)
            lab.process.wait(timeout=10)


def log_tail(lab: Lab, lines: int = 40) -> str:
    """The end of the server's log."""
    try:
        return "\n".join(lab.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(params=[("light", PYTHON_CELLS), ("dark", MAGIC_CELLS)], ids=["light-python", "dark-magic"])
def lab(request: pytest.FixtureRequest, tools: None, tmp_path: Path) -> Iterator[Lab]:
    """A JupyterLab serving a prepared project; always shut down afterwards."""
    theme, cells = request.param
    root = make_project(tmp_path / "project", cells)
    running = start_lab(root, tmp_path / "jupyter", theme)
    try:
        wait_until_up(running)
        yield running
    finally:
        stop_lab(running)


@pytest.fixture
def browser(tools: None) -> Iterator[Any]:
    """Headless Debian Chromium; always closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                              headless=True)
        try:
            yield launched
        finally:
            launched.close()


# ---------------------------------------------------------------- the test


def test_upgrade_from_the_panel_in_jupyterlab(lab: Lab, browser: Any, request: pytest.FixtureRequest) -> None:
    theme = "dark" if "dark" in request.node.callspec.id else "light"
    page = browser.new_page(viewport={"width": 1360, "height": 1500})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(f"{lab.url}/lab/tree/panel.ipynb?token={lab.token}")
        page.locator(f'body[data-jp-theme-name="{THEMES[theme]}"]').wait_for(state="attached")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        page.locator(".jp-StatusBar-TextItem", has_text=f"{KERNEL_NAME} | Idle").wait_for()
        run_all_cells(page)
        panel = page.locator(".ffm-panel")
        panel.wait_for()
        assert_no_error_output(page)
        panel.locator(".badge", has_text="2 pending").wait_for()
        panel.get_by_role("button", name="Upgrade", exact=True).click()
        panel.locator(".badge", has_text="up to date").wait_for()
        panel.get_by_text("Upgraded 2 revisions").wait_for()
        url = f"sqlite:///{lab.root / 'database.db'}"
        assert {"hero", "team"} <= table_names(url)
        assert len(version_rows(url)) == 1
        open_tab(panel, "Model changes")
        panel.get_by_text("No schema changes").wait_for()
        panel.locator("select").select_option(index=2)  # the older revision: its tab opens by itself
        panel.get_by_role("heading", name="Source").wait_for()
        panel.get_by_role("heading", name="SQL (sqlite)").wait_for()
        open_tab(panel, "History")
        panel.get_by_text("History: 2 revisions, 2 applied").wait_for()
        page.locator(".jp-StatusBar-TextItem", has_text=f"{KERNEL_NAME} | Idle").wait_for()
        save_screenshot(page, "panel-jupyterlab.png" if theme == "light" else "panel-jupyterlab-dark.png")
    except Exception:
        save_screenshot(page, f"panel-jupyterlab-{theme}-failure.png")
        print(log_tail(lab))
        raise
    finally:
        page.close()


def run_all_cells(page: Any) -> None:
    """Close the file browser for room, then Run > Run All Cells from JupyterLab's menu bar."""
    if page.locator("#jp-left-stack").is_visible():
        page.keyboard.press("Control+b")  # application:toggle-left-area
        page.locator("#jp-left-stack").wait_for(state="hidden")
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def open_tab(panel: Any, title: str) -> None:
    """Click one of the panel's tabs."""
    panel.locator(".lm-TabBar-tab", has_text=title).click()


def assert_no_error_output(page: Any) -> None:
    """No cell printed a traceback."""
    errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    assert errors.count() == 0, errors.first.inner_text()


def save_screenshot(page: Any, name: str) -> None:
    """Save a screenshot of the page under test-artifacts/ (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))
    assert (ARTIFACTS / name).stat().st_size > 0
