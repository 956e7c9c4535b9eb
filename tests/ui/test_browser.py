"""The web UI in a real browser (Debian's chromium driven by Playwright) against real server,
worker and gateway processes: sign in, run a playbook from its form and watch it finish, read the
failed step's error, cancel, re-run from a step, bulk cancel from the list, what a viewer may not
do or see, CSRF and cookie attributes, and results holding markup shown as text.

Screenshots of every page go to a temporary directory printed at the start of the run.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import DEMO, UiCluster

CHROMIUM = "/usr/bin/chromium"


def _require_browser() -> Any:
    """Playwright's sync API; a skip when it or Debian's chromium is missing - a failure under
    ``NOETL_REQUIRE_SERVICES=1``, as in CI, whose .ci/run installs both."""
    missing = None
    try:
        import playwright.sync_api as api
    except ImportError:
        missing = "the playwright package (pip install 'noetl[browser]')"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("NOETL_REQUIRE_SERVICES"):
            pytest.fail(f"the browser tests need {missing}", pytrace=False)
        pytest.skip(f"the browser tests need {missing}", allow_module_level=True)
    return api


playwright_api = _require_browser()
expect = playwright_api.expect
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 60_000

# A second version of the demo playbook, so that the catalog page has a diff to show.
DEMO_V2 = DEMO.replace(
    "workload: {items: 6, fail: true, label: first}",
    "workload: {items: 6, fail: true, label: first, note: v2}",
)

# Runs until cancelled, under the viewer's path.
WAITER = textwrap.dedent(
    """
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata: {name: ui_wait, path: demo/ui_wait}
    workload: {seconds: 120}
    workflow:
      - step: start
        tool: {kind: shell, command: "sleep {{ seconds }}"}
    """
)


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="noetl-ui-screenshots-"))
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"UI screenshots: {folder}")
    print(f"UI screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def keys(ui_cluster: UiCluster) -> dict[str, str]:
    ui_cluster.register(DEMO_V2)
    ui_cluster.register(WAITER)
    return {
        "operator": ui_cluster.key("ui-operator", "operator", "*"),
        "viewer": ui_cluster.key("ui-viewer", "viewer", "demo/*"),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


class UI:
    """A signed-in browser page on the gateway."""

    def __init__(self, page: Any, base: str, shots: Path) -> None:
        self.page, self.base, self.shots = page, base, shots
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.set_default_timeout(WAIT_MS)

    def go(self, fragment: str) -> None:
        self.page.goto(f"{self.base}/ui/{fragment}")

    def shot(self, name: str) -> None:
        """The page down to 1,500 px (the top of a long page: what docs/ui.md shows)."""
        height = min(1500, int(self.page.evaluate("document.documentElement.scrollHeight")))
        clip = {"x": 0, "y": 0, "width": 1300, "height": height}
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True, clip=clip)

    def sign_in(self, key: str) -> None:
        self.go("#/executions")
        self.page.wait_for_selector("#login-form")
        self.page.fill("#credential", key)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector("#executions")

    def node(self, step: str) -> Any:
        return self.page.locator(f'#graph g.node[data-step="{step}"]')

    def execution_id(self) -> str:
        return str(self.page.url.rsplit("/", 1)[-1])


@pytest.fixture
def ui(browser: Any, ui_cluster: UiCluster, shots: Path) -> Iterator[UI]:
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    out = UI(page, ui_cluster.gateway_url, shots)
    yield out
    context.close()
    assert out.errors == [], f"script errors on the page: {out.errors}"


def test_sign_in_run_from_the_form_and_read_the_failed_step(
    ui: UI, keys: dict[str, str], ui_cluster: UiCluster
) -> None:
    ui.sign_in(keys["operator"])
    expect(ui.page.locator("#who")).to_contain_text("key:ui-operator · operator")
    ui.go("#/catalog/demo%2Fui_demo")
    form = ui.page.locator("#run")
    expect(form.locator('input[name="items"]')).to_have_value("6")
    form.locator('input[name="items"]').fill("5")
    form.locator('input[name="label"]').fill("from the form")
    ui.shot("catalog-run-form")
    form.locator("#run-submit").click()
    ui.page.wait_for_url("**/ui/#/executions/*")
    # the graph and the status reach their final states live, through the event stream
    expect(ui.page.locator("#exec-status .badge")).to_have_text("FAILED")
    expect(ui.node("start")).to_have_attribute("data-state", "completed")
    expect(ui.node("fanout")).to_have_attribute("data-state", "completed")
    expect(ui.node("fanout")).to_contain_text("✓5 ▶0 ✗0 / 5")
    expect(ui.node("check")).to_have_attribute("data-state", "failed")
    expect(ui.page.locator("#timeline rect.bar.completed")).to_have_count(6)
    expect(ui.page.locator("#timeline rect.bar.failed")).to_have_count(1)
    ui.node("check").click()
    error = ui.page.locator("#step-detail .outcome[data-type='call.error'] pre.message")
    expect(error).to_contain_text("the check failed for from the form: 30 is not what we expected")
    trace = ui.page.locator("#step-detail .outcome[data-type='call.error'] pre.trace")
    expect(trace).to_contain_text('raise ValueError(f"the check failed for {label}')
    expect(ui.page.locator("#exec-error pre.message")).to_contain_text("ValueError")
    # the stream filled the event table with the whole run
    row = ui_cluster.ok("GET", f"executions/{ui.execution_id()}?include_events=false")
    expect(ui.page.locator("#events-body tr").first).to_have_attribute(
        "data-event", str(row["last_event_id"])
    )
    ui.shot("execution-failed")


def test_a_result_with_markup_and_a_template_is_shown_as_text(
    ui: UI, keys: dict[str, str], ui_cluster: UiCluster
) -> None:
    execution_id = ui_cluster.execute("demo/ui_demo")
    ui_cluster.wait(execution_id)
    ui.sign_in(keys["operator"])
    ui.go(f"#/executions/{execution_id}")
    ui.node("start").click()
    result = ui.page.locator("#step-detail pre.result").first
    expect(result).to_contain_text("<script>window.__pwned = 1</script><b>bold</b> {{ not_rendered }}")
    assert ui.page.locator("#step-detail pre.result b").count() == 0
    assert ui.page.locator("#step-detail script").count() == 0
    assert ui.page.evaluate("window.__pwned") is None
    ui.page.locator("#ev-type").select_option("call.done")
    expect(ui.page.locator("#events-body tr[data-type='call.done']").first).to_be_visible()
    ui.page.locator("#events-body tr[data-type='call.done'] summary").last.click()
    expect(ui.page.locator("#events-body pre").last).to_contain_text("<script>window.__pwned = 1</script>")
    assert ui.page.evaluate("window.__pwned") is None
    ui.shot("execution-result-as-text")


def test_cancel_a_running_execution(ui: UI, keys: dict[str, str], ui_cluster: UiCluster) -> None:
    execution_id = ui_cluster.execute("ops/ui_slow")
    ui.sign_in(keys["operator"])
    ui.go(f"#/executions/{execution_id}")
    expect(ui.node("start")).to_have_attribute("data-state", "running")
    ui.shot("execution-running")
    ui.page.click("#cancel")
    expect(ui.page.locator("#exec-status .badge")).to_have_text("CANCELLED")
    expect(ui.page.locator("#cancel")).to_be_disabled()
    assert ui_cluster.wait(execution_id)["status"] == "CANCELLED"


def test_rerun_from_a_step(ui: UI, keys: dict[str, str], ui_cluster: UiCluster) -> None:
    original = ui_cluster.execute("demo/ui_demo", {"label": "original"})
    ui_cluster.wait(original)
    ui.sign_in(keys["operator"])
    ui.go(f"#/executions/{original}")
    expect(ui.page.locator("#exec-status .badge")).to_have_text("FAILED")
    ui.page.locator("#rerun-step").select_option("check")
    ui.page.click("#rerun-from")
    ui.page.wait_for_url(
        lambda url: url.endswith("/ui/#/executions/" + original) is False and "/executions/" in url
    )
    expect(ui.page.locator(".facts")).to_contain_text("step check (results carried over: fanout, start)")
    expect(ui.page.locator(f'.facts a[href="#/executions/{original}"]')).to_be_visible()
    expect(ui.page.locator("#exec-status .badge")).to_have_text("FAILED")
    expect(ui.node("start")).to_have_attribute("data-state", "carried")
    expect(ui.node("check")).to_have_attribute("data-state", "failed")
    ui.node("check").click()
    expect(ui.page.locator("#step-detail pre.error").first).to_contain_text(
        "the check failed for original: 55"
    )
    ui.shot("execution-rerun-from-step")


def test_bulk_cancel_from_the_list_updates_the_rows_live(
    ui: UI, keys: dict[str, str], ui_cluster: UiCluster
) -> None:
    ids = [ui_cluster.execute("ops/ui_slow") for _ in range(2)]
    ui.sign_in(keys["operator"])
    ui.go("#/executions?path_prefix=ops%2F&status=RUNNING")
    for execution_id in ids:
        ui.page.locator(f'input.pick[data-id="{execution_id}"]').check()
    ui.shot("executions-list")
    ui.page.click("#bulk-cancel")
    expect(ui.page.locator("#bulk-message")).to_contain_text("2 of 2 cancelled")
    for execution_id in ids:
        expect(ui.page.locator(f'tr[data-id="{execution_id}"] .badge')).to_have_text("CANCELLED")


def test_a_viewer_sees_only_its_paths_and_cannot_cancel(
    ui: UI, keys: dict[str, str], ui_cluster: UiCluster
) -> None:
    other = ui_cluster.execute("ops/ui_hello")
    ui_cluster.wait(other)
    mine = ui_cluster.execute("demo/ui_wait")
    try:
        ui.sign_in(keys["viewer"])
        rows = ui.page.locator("#executions-body tr[data-id]")
        expect(rows.first).to_be_visible()
        paths = rows.locator("td.path").all_inner_texts()
        assert paths and all(p.startswith("demo/") for p in paths), paths
        assert ui.page.locator(f'tr[data-id="{other}"]').count() == 0
        expect(ui.page.locator("#bulk-cancel")).to_be_hidden()
        ui.shot("executions-list-viewer")
        # another path's execution: refused, whatever the URL
        ui.go(f"#/executions/{other}")
        expect(ui.page.locator(".notice.error")).to_contain_text(
            "outside the paths allowed to 'key:ui-viewer'"
        )
        # its own path's running execution: no working cancel button, and the API refuses too
        ui.go(f"#/executions/{mine}")
        expect(ui.node("start")).to_have_attribute("data-state", "running")
        expect(ui.page.locator("#cancel")).to_be_disabled()
        answer = ui.page.evaluate(
            """async (id) => {
                const session = await (await fetch('/ui/session')).json();
                const r = await fetch(`/noetl/executions/${id}/cancel`, {method: 'POST',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf}, body: '{}'});
                return [r.status, await r.text()];
            }""",
            mine,
        )
        assert answer[0] == 403 and "role 'viewer' may not execute" in answer[1]
        ui.shot("execution-viewer")
        assert ui_cluster.ok("GET", f"executions/{mine}?include_events=false")["status"] == "RUNNING"
    finally:
        ui_cluster.api("POST", f"executions/{mine}/cancel", json={})


def test_session_cookie_and_csrf(ui: UI, keys: dict[str, str]) -> None:
    ui.sign_in(keys["operator"])
    cookie = next(c for c in ui.page.context.cookies() if c["name"] == "noetl_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
    assert ui.page.evaluate("document.cookie") == ""  # not readable by scripts
    status = ui.page.evaluate(
        """async () => (await fetch('/noetl/execute', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({path: 'ops/ui_hello'})})).status"""
    )
    assert status == 403  # the session cookie without the CSRF token
    ui.go("#/login?signout=1")
    ui.page.wait_for_selector("#login-form")
    status = ui.page.evaluate("async () => (await fetch('/noetl/executions/search')).status")
    assert status == 401


def test_sign_in_with_a_bad_credential_is_refused(ui: UI) -> None:
    ui.go("#/login")
    ui.page.fill("#credential", "noetl_not-a-real-key")
    ui.page.click("#login-form button[type=submit]")
    expect(ui.page.locator("#login-form .notice.error")).to_contain_text("Sign-in refused")
    ui.shot("sign-in")


def test_catalog_yaml_diff_and_graph(ui: UI, keys: dict[str, str]) -> None:
    ui.sign_in(keys["operator"])
    ui.go("#/catalog")
    expect(ui.page.locator('#catalog tr[data-path="demo/ui_demo"]')).to_contain_text("v2")
    ui.shot("catalog")
    ui.go("#/catalog/demo%2Fui_demo")
    ui.page.click("button[data-tab=yaml]")
    expect(ui.page.locator("#yaml .y-template").first).to_be_visible()
    ui.shot("catalog-yaml")
    ui.page.click("button[data-tab=diff]")
    expect(ui.page.locator("#diff-text .d-add")).to_contain_text("note: v2")
    expect(ui.page.locator("#diff-text .d-del")).to_contain_text("label: first}")
    ui.shot("catalog-diff")
    ui.page.click("button[data-tab=graph]")
    expect(ui.page.locator('#catalog-graph g.node[data-step="fanout"]')).to_contain_text("loop")
    ui.shot("catalog-graph")


def test_operations_page(ui: UI, keys: dict[str, str], ui_cluster: UiCluster) -> None:
    admin = ui_cluster.key("ui-admin", "admin", "*")
    ui.sign_in(admin)
    ui.go("#/operations")
    expect(ui.page.locator("#workers tbody tr")).to_have_count(1)
    expect(ui.page.locator("#ops-queue")).not_to_contain_text("Could not load")
    ui.shot("operations")


def test_the_run_form_follows_the_input_schema(ui: UI, keys: dict[str, str], ui_cluster: UiCluster) -> None:
    ui.sign_in(keys["operator"])
    ui.go("#/catalog/ops%2Fui_hello")
    form = ui.page.locator("#run")
    expect(form).to_contain_text("Fields from the playbook's input schema.")
    form.locator('select[name="tone"]').select_option(label="loud")
    form.locator('input[name="name"]').fill("browser")
    form.locator("#run-submit").click()
    ui.page.wait_for_url("**/ui/#/executions/*")
    expect(ui.page.locator("#exec-status .badge")).to_have_text("COMPLETED")
    row = ui_cluster.wait(ui.execution_id())
    assert row["payload"] == {"name": "browser", "tone": "loud"}
    ui.node("start").click()
    expect(ui.page.locator("#step-detail pre.result").first).to_contain_text("HELLO BROWSER")
