"""Screenshots of what users read, in a real JupyterLab, light and dark: run by hand.

    python docs/screenshots.py        (needs Debian's chromium, playwright and jupyterlab)

It prepares a project with a branch, a merge and a pending revision that drops a column, opens
a notebook showing history, diff, show, graph, status, the panel (with its risk badge), lint and
rehearse, and saves each output as docs/<name>-<theme>.png. The JupyterLab harness is the one the
browser test uses.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

import sqlalchemy as sa  # noqa: E402
from test_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    KERNEL_NAME,
    THEMES,
    run_all_cells,
    start_lab,
    stop_lab,
    wait_until_up,
    write_notebook,
)

from framefox_magic import AlembicManager  # noqa: E402

OUTPUTS = ("history", "diff", "show", "graph", "status", "panel", "lint", "rehearse", "erd-5", "erd-60",
           "targets-status", "targets-lint", "targets-rehearse", "targets-upgrade")
FLEET = "--targets sqlite:fleet/devices/*.db --url sqlite:///fleet/main.db --dir fleet/migrations"
DOMAINS = ("shop", "cafe", "garage", "clinic", "school", "farm", "hotel", "gym", "studio", "lab")


def table(name: str, *columns: str) -> str:
    extra = "".join(f", sa.Column('{c}', sa.String(50))" for c in columns)
    return f"op.create_table('{name}', sa.Column('id', sa.Integer(), primary_key=True){extra})"


def demo_project(root: Path) -> str:
    """A history with a branch and a merge; the database one revision (a column drop) behind."""
    manager = AlembicManager(project_root=root)
    manager.init()

    def write(message: str, up: str, down: str, **options: object) -> str:
        return manager.revision(message, autogenerate=False, upgrade_body=up, downgrade_body=down,
                                **options).revision

    hero = write("create hero", table("hero", "name", "secret_name"), "op.drop_table('hero')")
    write("add hero age", "op.add_column('hero', sa.Column('age', sa.Integer()))",
          "op.drop_column('hero', 'age')")
    parent = manager.heads().ids[0]
    write("mission table", table("mission", "title"), "op.drop_table('mission')", head=parent)
    write("base table <b>", table("base", "city"), "op.drop_table('base')", head=parent, splice=True)
    manager.merge("heads", "join missions and bases")
    manager.upgrade("heads")
    engine = sa.create_engine(manager.target().url)
    with engine.begin() as connection:  # secret names that the pending drop would lose
        connection.execute(sa.text("INSERT INTO hero (name, secret_name) VALUES (:n, :s)"),
                           [{"n": "Deadpond", "s": "Dive Wilson"},
                            {"n": "Spider-Boy", "s": "Pedro Parqueador"}])
    engine.dispose()
    drop = write("drop secret name $cost$",
                 "with op.batch_alter_table('hero') as batch:\n    batch.drop_column('secret_name')",
                 "op.add_column('hero', sa.Column('secret_name', sa.String(50)))")
    del hero
    return drop


def erd_project(root: Path, domains: tuple[str, ...], tables: int = 6) -> None:
    """Related tables per domain (customer, order, order line, product, invoice, payment), applied;
    the last revision adds a column, so the diagram marks it."""
    shapes = [("customer", ""), ("product", ""), ("order", "customer"), ("order_line", "order"),
              ("invoice", "order"), ("payment", "invoice")][:tables]
    lines = []
    for domain in domains:
        for name, parent in shapes:
            key = f", sa.Column('{parent}_id', sa.Integer(), sa.ForeignKey('{domain}_{parent}.id'))"
            lines.append(f"op.create_table('{domain}_{name}', "
                         "sa.Column('id', sa.Integer(), primary_key=True), "
                         "sa.Column('name', sa.String(80), nullable=False), "
                         f"sa.Column('created', sa.DateTime()){key if parent else ''})")
    manager = AlembicManager(project_root=root)
    manager.init()
    manager.revision("schema", autogenerate=False, upgrade_body="\n".join(lines))
    email = f"op.add_column('{domains[0]}_customer', sa.Column('email', sa.String(120)))"
    manager.revision("customer email", autogenerate=False, upgrade_body=email)
    manager.upgrade()


def fleet_project(root: Path, devices: int = 12) -> None:
    """SQLite files, one per device, with readings; two of them hold readings without a value,
    which the last revision (value NOT NULL) cannot take."""
    manager = AlembicManager(project_root=root)
    manager.init()
    manager.revision("device info", autogenerate=False,
                     upgrade_body="op.create_table('device_info', "
                                  "sa.Column('id', sa.Integer(), primary_key=True), "
                                  "sa.Column('firmware', sa.String(20)))",
                     downgrade_body="op.drop_table('device_info')")
    batch = "with op.batch_alter_table('reading') as batch:\n    batch."
    value = "alter_column('value', existing_type=sa.Float(), nullable={})"
    manager.revision("reading unit", autogenerate=False,
                     upgrade_body="op.add_column('reading', sa.Column('unit', sa.String(8)))",
                     downgrade_body=batch + "drop_column('unit')")
    manager.revision("reading value required", autogenerate=False,
                     upgrade_body=batch + value.format(False), downgrade_body=batch + value.format(True))
    (root / "devices").mkdir()
    for number in range(1, devices + 1):
        engine = sa.create_engine(f"sqlite:///{root / 'devices' / f'device_{number:02d}.db'}")
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE reading (id INTEGER PRIMARY KEY, value FLOAT)"))
            values = [{"v": float(n)} for n in range(20)] + [{"v": None}] * (number if number % 5 == 0 else 0)
            connection.execute(sa.text("INSERT INTO reading (value) VALUES (:v)"), values)
        engine.dispose()


def shoot(theme: str, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    root = folder / f"project-{theme}"
    root.mkdir()
    drop = demo_project(root)
    erd_project(root / "small", DOMAINS[:1], tables=5)
    erd_project(root / "large", DOMAINS)
    fleet_project(root / "fleet")
    write_notebook(root / "tour.ipynb", [
        "%load_ext framefox_magic", "%migrate history", f"%migrate diff {drop}", f"%migrate show {drop}",
        "%migrate graph", "%migrate status", "%migrate panel", "%migrate lint", "%migrate rehearse",
        "%migrate erd --url sqlite:///small/database.db --dir small/migrations",
        "%migrate erd --url sqlite:///large/database.db --dir large/migrations",
        f"%migrate status {FLEET}", f"%migrate lint {FLEET}", f"%migrate rehearse {FLEET}",
        f"%migrate upgrade {FLEET} --keep-going --yes",
    ])
    lab = start_lab(root, folder / f"jupyter-{theme}", theme)
    try:
        wait_until_up(lab)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1400})
            page.set_default_timeout(120_000)
            page.goto(f"{lab.url}/lab/tree/tour.ipynb?token={lab.token}")
            page.locator(f'body[data-jp-theme-name="{THEMES[theme]}"]').wait_for(state="attached")
            page.locator(".jp-StatusBar-TextItem", has_text=f"{KERNEL_NAME} | Idle").wait_for()
            run_all_cells(page)
            page.locator(".ffm-panel").wait_for()
            page.locator(".jp-StatusBar-TextItem", has_text=f"{KERNEL_NAME} | Idle").wait_for()
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            for index, name in enumerate(OUTPUTS, start=1):
                output = cells.nth(index).locator(".jp-Cell-outputWrapper")
                output.scroll_into_view_if_needed()
                output.screenshot(path=str(DOCS / f"{name}-{theme}.png"))
                print(f"wrote docs/{name}-{theme}.png")
            browser.close()
    finally:
        stop_lab(lab)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        for theme in THEMES:
            shoot(theme, Path(folder))


if __name__ == "__main__":
    main()
