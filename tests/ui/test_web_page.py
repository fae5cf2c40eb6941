"""The web page in a real browser: Debian's Chromium driven by Playwright, against ``flow up``.

Screenshots of every page go to ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Page, expect

from flow.core.namespaces import entry_line
from flow.testing import flow_up
from flow.testing.definitions import embedded_env, sample_definitions, write_definitions
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.ui

# Every expect waits for its condition; Playwright's 5 s default is a guess about the
# machine's speed, and a workflow on a busy machine can take longer to end. A deadline,
# not a delay.
expect.set_options(timeout=30_000)

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: The tokens of namespaces a and b: token -> (namespace, role).
NAMESPACE_TOKENS = {
    "ui-a-admin-token": ("a", "admin"),
    "ui-a-read-token": ("a", "read"),
    "ui-b-admin-token": ("b", "admin"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, http_server) -> Iterator[str]:
    base = tmp_path_factory.mktemp("ui")
    bodies = sample_definitions(http_server)
    bodies["SlowOne"] = {
        "name": "SlowOne",
        # SpinActivity never heartbeats: a cancel does not stop it, it runs on.
        "activities": [{"name": "SpinActivity", "config": {"spin_s": 20}}, {"name": "NoopActivity"}],
    }
    bodies["Walk"] = {
        "name": "Walk",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.4}} for _ in range(3)],
    }
    bodies["Beating"] = {
        "name": "Beating",
        "activities": [
            {
                "name": "BeatActivity",
                "config": {"steps": 100_000, "step_s": 0.05, "timeouts": {"heartbeat_s": 4}},
            }
        ],
    }
    bodies["UiChild"] = {"name": "UiChild", "activities": [{"name": "NoopActivity"}]}
    # A named limit with no number anywhere lets nothing in: its step waits Queued until
    # the limit's page sets one (each test names its own limit in the input).
    bodies["UiLimited"] = {
        "name": "UiLimited",
        "activities": [
            {"id": "call", "name": "NoopActivity", "concurrency": {"name": "ui_partner", "key": "input.tenant"}}
        ],
    }
    bodies["UiListed"] = {
        "name": "UiListed",
        "activities": [{"id": "call", "name": "NoopActivity", "concurrency": {"name": "ui_listed"}}],
    }
    bodies["UiParent"] = {
        "name": "UiParent",
        "activities": [{"id": "first", "name": "NoopActivity"}, {"id": "sub", "workflow": "UiChild"}],
    }
    bodies["UiOrder"] = {
        "name": "UiOrder",
        "attributes": {"customer": "string", "amount": "number"},
        "activities": [{"name": "NoopActivity"}],
    }
    definitions = write_definitions(base / "workflows", bodies)
    # Namespace tokens beside the operator's (which works in `default`, as with none).
    tokens = base / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [entry_line(t, ns, role) for t, (ns, role) in NAMESPACE_TOKENS.items()]}))
    env = embedded_env(base, definitions, FLOW_API_TOKEN="ui-secret", FLOW_TOKENS_FILE=str(tokens))
    with flow_up(base, env) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "Chromium is not installed (./project_tests.sh installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield chromium
        chromium.close()


@contextlib.contextmanager
def signed_in(browser, server: str, token: str) -> Iterator[Page]:
    """A new page of the web page that saved ``token``, on the list of workflows; closed
    afterwards, when the Content-Security-Policy must have blocked nothing it did."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(server)
    # The API wants a token (FLOW_API_TOKEN is set): the page says so, then uses it.
    page.get_by_role("alert").filter(has_text="token").wait_for()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Workflows").wait_for()
    yield page
    context.close()
    assert not refused, refused


@pytest.fixture
def page(browser, server):
    with signed_in(browser, server, "ui-secret") as signed:
        yield signed


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def start_from_the_page(page, name: str, input_json: str = "{}") -> str:
    page.get_by_role("link", name="Start a workflow").click()
    # Wait for the form: the list page has a "Definition" field of its own.
    page.get_by_role("heading", name="Start a workflow").wait_for()
    page.get_by_label("Definition").select_option(name)
    page.get_by_label("Input (JSON object)").fill(input_json)
    page.get_by_role("button", name="Start", exact=True).click()
    page.wait_for_url("**/#/workflows/*")
    return page.url.rsplit("/", 1)[-1]


def test_start_a_workflow_and_watch_it_finish(page):
    workflow_id = start_from_the_page(page, "Walk", '{"from": "the browser"}')
    page.get_by_role("heading", name=f"Walk {workflow_id}").wait_for()
    assert page.locator(".status").first.inner_text() == "In Progress"
    shot(page, "workflow-running")
    # The page refreshes itself until the workflow ends.
    page.locator("p .status", has_text="Finished").wait_for(timeout=20_000)
    assert page.get_by_role("img", name="Walk attempt 1: SUCCEEDED").count() == 0  # labels name the activity
    assert page.locator(".bar.SUCCEEDED").count() == 3
    assert "the browser" in page.locator("pre").first.inner_text()
    page.locator("p", has_text="· priority 3 ·").first.wait_for()  # a start from the page says none
    shot(page, "workflow-finished")
    page.get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name=workflow_id).wait_for()
    shot(page, "workflows")


def test_invalid_input_is_shown_next_to_the_field(page):
    page.get_by_role("link", name="Start a workflow").click()
    page.get_by_role("heading", name="Start a workflow").wait_for()
    page.get_by_label("Input (JSON object)").fill("{not json")
    page.get_by_role("button", name="Start", exact=True).click()
    error = page.locator("#s-input-error")
    assert "Not valid JSON" in error.inner_text()
    assert page.get_by_label("Input (JSON object)").get_attribute("aria-invalid") == "true"
    page.get_by_label("Input (JSON object)").fill("[1, 2]")
    page.get_by_role("button", name="Start", exact=True).click()
    assert "JSON object" in error.inner_text()
    shot(page, "start-invalid-input")


def test_cancel_a_slow_workflow(page):
    workflow_id = start_from_the_page(page, "SlowOne")
    page.get_by_role("button", name="Cancel workflow").click()
    page.locator("p .status", has_text="Cancelled").wait_for()
    assert page.get_by_role("button", name="Retry from failure").is_visible()
    shot(page, "workflow-cancelled")
    assert workflow_id


def test_a_heartbeating_activity_shows_its_progress_and_stops_when_cancelled(page):
    start_from_the_page(page, "Beating")
    page.locator(".heartbeat", has_text='last heartbeat: {"done":').wait_for()
    shot(page, "workflow-heartbeat")
    page.get_by_role("button", name="Cancel workflow").click()
    page.locator("p .status", has_text="Cancelled").wait_for()
    # The activity itself stopped (its next heartbeat raised), not only the workflow.
    page.locator("td .status", has_text="Cancelled").wait_for()


def test_a_cancelled_workflow_timeline_ends_with_the_workflow(page, server):
    """Its activity still runs in the worker; its bar stops at the workflow's end, inside the track."""
    workflow_id = start_from_the_page(page, "SlowOne")
    page.locator(".bar.running").wait_for()
    page.get_by_role("button", name="Cancel workflow").click()
    page.locator("p .status", has_text="Cancelled").wait_for()
    headers = {"Authorization": "Bearer ui-secret"}
    workflow = requests.get(f"{server}/workflows/{workflow_id}", headers=headers, timeout=5).json()
    # Until a bar drawn up to "now" would be three times as wide as the whole timeline.
    page.wait_for_function(
        "([created, ended]) => Date.now() > Date.parse(ended) + 2 * (Date.parse(ended) - Date.parse(created)) + 300",
        arg=[workflow["created_at"], workflow["finished_at"]],
        timeout=30_000,
    )
    page.reload()
    bar = page.get_by_role("img", name="SpinActivity attempt 1: no result when the workflow ended", exact=False)
    bar.wait_for()
    track, drawn = page.locator(".gantt-track").first.bounding_box(), bar.bounding_box()
    assert drawn["x"] >= track["x"] - 1
    assert drawn["x"] + drawn["width"] <= track["x"] + track["width"] + 1
    shot(page, "workflow-cancelled-timeline")


def test_retry_a_failed_workflow(page):
    workflow_id = start_from_the_page(page, "FailingWorkflow")
    page.locator("p .status", has_text="Failed").wait_for()
    page.get_by_role("button", name="Retry from failure").click()
    page.locator("td", has_text="retry-workflow").wait_for()
    page.locator("p .status", has_text="Failed").wait_for()  # it fails again: the activity always refuses
    shot(page, "workflow-retried")
    assert workflow_id


def test_rerun_a_failed_workflow_from_a_step(page):
    start_from_the_page(page, "FailingWorkflow")
    page.locator("p .status", has_text="Failed").wait_for()
    page.get_by_role("button", name="Rerun from here").nth(1).click()  # the step that failed
    page.locator("td", has_text="rerun-workflow").wait_for()
    page.locator("td", has_text="rerun-requested").wait_for()
    shot(page, "workflow-rerun")


def test_filter_the_list_and_see_the_definitions(page):
    page.get_by_label("Status").select_option("Failed")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**status=Failed**")
    # The list re-renders: wait until no other status is shown, and at least one Failed is.
    expect(page.locator("tbody .status").filter(has_not_text="Failed")).to_have_count(0)
    expect(page.locator("tbody .status", has_text="Failed").first).to_be_visible()
    page.get_by_role("link", name="Definitions").click()
    page.get_by_role("heading", name="ParallelWorkflow version 1").wait_for()
    # Each step is named by the id the server gives it (a class listed twice: SleepActivity.1, then SleepActivity).
    drawing = page.get_by_role(
        "img",
        name="ParallelWorkflow: SleepActivity.1 (SleepActivity) (independent), SleepActivity (independent)",
        exact=False,
    )
    assert drawing.count() == 1
    shot(page, "definitions")


def test_find_workflows_by_their_input(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    wanted = requests.post(
        f"{server}/workflows",
        json={"name": "RetryWorkflow", "input_data": {"order_id": 4242}},
        headers=headers,
        timeout=5,
    ).json()["id"]
    field = page.get_by_label("Input contains (JSON)")
    field.fill("{order_id: 4242}")
    page.get_by_role("button", name="Apply").click()
    assert "Not valid JSON" in page.locator("#f-input-error").inner_text()
    assert field.get_attribute("aria-invalid") == "true"
    field.fill('{"order_id": 4242}')
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**input=**")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name=wanted)).to_be_visible()
    expect(page.get_by_label("Input contains (JSON)")).to_have_value('{"order_id":4242}')
    shot(page, "workflows-by-input")


def test_find_workflows_by_their_search_attributes(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    ids = [
        requests.post(
            f"{server}/workflows",
            json={"name": "UiOrder", "attributes": {"customer": "ui-acme", "amount": amount}},
            headers=headers,
            timeout=5,
        ).json()["id"]
        for amount in (150, 50)
    ]
    field = page.get_by_label("Search attributes")
    field.fill("customer")
    page.get_by_role("button", name="Apply").click()
    assert "must be name=value" in page.locator("#f-attr-error").inner_text()
    field.fill("customer=ui-acme amount.gt=100")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**attr.amount.gt=100**")
    expect(page.locator("tbody tr")).to_have_count(1)
    page.get_by_role("link", name=ids[0]).click()
    expect(page.locator("dl.attributes")).to_contain_text("ui-acme")
    shot(page, "workflows-by-attributes")


def test_the_pages_pass_an_accessibility_check(page):
    """A small, dependency-free check of what axe would flag first: labels, names, alt text, lang."""
    problems = page.evaluate(
        """() => {
          const problems = [];
          if (!document.documentElement.lang) problems.push('html has no lang');
          for (const el of document.querySelectorAll('input, select, textarea')) {
            const labelled = el.labels && el.labels.length || el.getAttribute('aria-label');
            if (!labelled) problems.push('unlabelled ' + el.outerHTML.slice(0, 60));
          }
          for (const el of document.querySelectorAll('button, a')) {
            const named = el.textContent.trim() || el.getAttribute('aria-label');
            if (!named) problems.push('unnamed ' + el.outerHTML.slice(0, 60));
          }
          for (const el of document.querySelectorAll('[role=img]')) {
            if (!el.getAttribute('aria-label')) problems.push('img without name');
          }
          return problems;
        }"""
    )
    assert problems == []
    page.get_by_role("link", name="Start a workflow").click()
    page.get_by_role("heading", name="Start a workflow").wait_for()
    assert page.evaluate("() => [...document.querySelectorAll('input,select,textarea')].every(e => e.labels.length)")


@pytest.mark.parametrize(
    "route",
    [
        "#/workflows",
        "#/workflows/{id}",
        "#/definitions",
        "#/start",
        "#/schedules",
        "#/events",
        "#/limits",
        "#/limits/axe",
        "#/batches",
    ],
)
def test_axe_finds_no_serious_accessibility_violation(page, server, route):
    from axe_playwright_python.sync_playwright import Axe

    if "{id}" in route:
        headers = {"Authorization": "Bearer ui-secret"}
        workflow = requests.post(f"{server}/workflows", json={"name": "RetryWorkflow"}, headers=headers, timeout=5)
        route = route.format(id=workflow.json()["id"])
    page.goto(f"{server}/ui/{route}")
    page.locator("main h1").wait_for()
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], results.generate_report()


GRAPH = {
    "name": "Branches",
    "activities": [
        {"id": "check", "name": "NoopActivity"},
        {"id": "express", "name": "NoopActivity", "depends_on": ["check"], "when": "input.express"},
        {"id": "standard", "name": "NoopActivity", "depends_on": ["check"], "when": "!(input.express)"},
        {"id": "ship", "name": "NoopActivity", "depends_on": ["express", "standard"], "trigger": "all_done"},
        {"name": "NoopActivity", "required": False},
    ],
}


def test_a_graph_is_drawn_with_its_arrows_and_its_skipped_branch(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    assert requests.put(f"{server}/definitions/Branches", json=GRAPH, headers=headers, timeout=5).status_code in (
        200,
        201,
    )
    page.get_by_role("link", name="Definitions").click()
    drawing = page.get_by_role(
        "img", name="Branches: check (NoopActivity), express (NoopActivity) after check", exact=False
    )
    drawing.wait_for()
    # check -> express, check -> standard, express -> ship, standard -> ship, ship -> the last (positional).
    assert drawing.locator("path.edge").count() == 5
    assert drawing.locator("g.conditional").count() == 2
    shot(page, "definition-graph")

    started = requests.post(
        f"{server}/workflows", json={"name": "Branches", "input_data": {"express": True}}, headers=headers, timeout=5
    )
    page.goto(f"{server}/ui/#/workflows/{started.json()['id']}")
    expect(page.locator(".graph g.s-Succeeded")).to_have_count(4)
    skipped = page.locator(".graph g.s-Skipped")
    expect(skipped).to_have_count(1)
    assert "skipped: when '!(input.express)' was false" in skipped.locator("title").text_content()
    expect(page.get_by_text("skipped: when '!(input.express)' was false", exact=True)).to_be_visible()
    shot(page, "workflow-graph")


MAPPED = {
    "name": "Mapped",
    "activities": [
        {"id": "each", "name": "NoopActivity", "map": {"over": "input.items", "max_concurrency": 2}},
        {"id": "after", "name": "NoopActivity"},
    ],
}


def test_a_map_is_drawn_as_a_stack_and_its_items_are_listed_under_it(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    assert requests.put(f"{server}/definitions/Mapped", json=MAPPED, headers=headers, timeout=5).status_code in (
        200,
        201,
    )
    started = requests.post(
        f"{server}/workflows",
        json={"name": "Mapped", "input_data": {"items": ["a", "b", "c"]}},
        headers=headers,
        timeout=5,
    )
    page.goto(f"{server}/ui/#/workflows/{started.json()['id']}")
    expect(page.locator(".graph g.s-Succeeded")).to_have_count(2)
    # Items are not nodes of the graph: the map is one node, a stack, with its count.
    mapped = page.locator(".graph g.mapped")
    expect(mapped).to_have_count(1)
    expect(mapped.locator("rect.stack")).to_have_count(1)
    expect(mapped.locator("text")).to_have_text("each ×3")
    assert "3 items: 3 Succeeded" in mapped.locator("title").text_content()
    # The activities table lists the items under their map, each with its item.
    rows = page.locator("table tr.item")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text('each[0] (NoopActivity) item "a"')
    expect(page.get_by_role("cell", name="3 items: 3 Succeeded")).to_be_visible()
    shot(page, "map-graph")


def test_a_history_a_moment_newer_than_its_workflow_is_drawn(page, server):
    """The page fetches a workflow and its history side by side; the history may already
    list a map's items that the workflow it got does not have yet. That once threw
    ("Cannot read properties of undefined") and the page stopped refreshing: the map
    drawing test failed so twice in CI on a busy machine."""
    headers = {"Authorization": "Bearer ui-secret"}
    requests.put(f"{server}/definitions/Mapped", json=MAPPED, headers=headers, timeout=5)
    started = requests.post(
        f"{server}/workflows", json={"name": "Mapped", "input_data": {"items": ["a"]}}, headers=headers, timeout=5
    ).json()  # as created: its map not started, no item yet
    workflow_id = started["id"]
    newer = {
        "items": [
            {"id": 1, "type": "start-workflow", "position": None, "data": {}, "occurred_at": started["created_at"]},
            {"id": 2, "type": "start-map", "position": 0, "data": {"items": 1}, "occurred_at": started["created_at"]},
            {
                "id": 3,
                "type": "schedule-activity",
                "position": 2,
                "data": {"attempt": 1},
                "occurred_at": started["created_at"],
            },
        ],
        "next": None,
    }
    page.route(f"**/workflows/{workflow_id}", lambda route: route.fulfill(json=started))
    page.route(f"**/workflows/{workflow_id}/events*", lambda route: route.fulfill(json=newer))
    page.goto(f"{server}/ui/#/workflows/{workflow_id}")
    expect(page.get_by_role("cell", name="#2")).to_be_visible()  # the item, by position, until the next refresh
    assert "Something went wrong" not in page.locator("#main").inner_text()


def test_schedules_show_their_next_run_and_recent_runs(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    body = {"workflow": "BrokenOptionalWorkflow", "cron": "* * * * * *", "timezone": "Europe/Paris"}
    assert requests.put(f"{server}/schedules/ui-ticker", json=body, headers=headers, timeout=5).status_code == 201
    try:
        page.get_by_role("link", name="Schedules").click()
        page.get_by_role("heading", name="Schedules").wait_for()
        row = page.locator("tr", has=page.get_by_role("rowheader", name="ui-ticker"))
        expect(row.locator(".next-run")).not_to_be_empty()
        expect(row.locator("ul.runs .status", has_text="Finished").first).to_be_visible(timeout=30_000)
        shot(page, "schedules")
        row.get_by_role("button", name="Pause ui-ticker").click()
        expect(row.locator(".next-run")).to_have_text("paused")
        row.get_by_role("button", name="Trigger ui-ticker now").click()
        expect(row.locator("ul.runs li", has_text="(triggered)").first).to_be_visible()
        row.locator("ul.runs a").first.click()
        page.wait_for_url("**/#/workflows/*")
        page.get_by_role("heading", name="BrokenOptionalWorkflow", exact=False).wait_for()
    finally:
        requests.delete(f"{server}/schedules/ui-ticker", headers=headers, timeout=5)


def test_the_events_page_lists_recent_events_with_what_they_started(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    body = {"name": "UiOnEvent", "triggers": [{"event": "ui.clicked"}], "activities": [{"name": "NoopActivity"}]}
    assert requests.put(f"{server}/definitions/UiOnEvent", json=body, headers=headers, timeout=5).status_code in (
        200,
        201,
    )
    for event in ({"type": "ui.clicked", "id": "ui-evt-1"}, {"type": "ui.ignored", "id": "ui-evt-2"}):
        assert requests.post(f"{server}/events", json=event, headers=headers, timeout=5).status_code == 202
    page.get_by_role("link", name="Events").click()
    page.get_by_role("heading", name="Events").wait_for()
    started = page.locator("tr", has=page.get_by_role("rowheader", name="ui-evt-1"))
    expect(started.locator("ul.runs .status", has_text="Finished")).to_be_visible(timeout=30_000)
    ignored = page.locator("tr", has=page.get_by_role("rowheader", name="ui-evt-2"))
    expect(ignored).to_contain_text("no registered definition has a trigger")
    started.locator("ul.runs a").first.click()
    page.wait_for_url("**/#/workflows/*")
    page.get_by_role("heading", name="UiOnEvent", exact=False).wait_for()


def test_a_child_workflow_is_drawn_apart_and_links_to_its_page(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    started = requests.post(
        f"{server}/workflows", json={"name": "UiParent", "input_data": {}}, headers=headers, timeout=5
    )
    parent_id = started.json()["id"]
    page.goto(f"{server}/ui/#/workflows/{parent_id}")
    page.locator("p .status", has_text="Finished").wait_for(timeout=20_000)
    child = page.locator(".graph g.child")
    expect(child).to_have_count(1)
    expect(page.locator(".graph g.node:not(.child)")).to_have_count(1)
    assert "sub (workflow UiChild)" in child.locator("title").text_content()
    shot(page, "workflow-child-graph")
    page.locator(".graph a.child-link").click()
    page.get_by_role("heading", name="UiChild").wait_for()
    expect(page.get_by_text("Child workflow of")).to_be_visible()
    page.get_by_role("link", name=parent_id).click()
    page.get_by_role("heading", name=f"UiParent {parent_id}").wait_for()


WAITING = {
    "name": "Waiting",
    "activities": [
        {"id": "approval", "wait_for": "approved", "timeout_s": 600},
        {"id": "after", "name": "NoopActivity"},
    ],
}


def test_a_waiting_step_has_a_form_that_sends_its_signal(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    assert requests.put(f"{server}/definitions/Waiting", json=WAITING, headers=headers, timeout=5).status_code in (
        200,
        201,
    )
    started = requests.post(f"{server}/workflows", json={"name": "Waiting"}, headers=headers, timeout=5)
    page.goto(f"{server}/ui/#/workflows/{started.json()['id']}")
    payload = page.get_by_label("approval waits for the signal approved", exact=False)
    payload.fill("{not json")
    page.get_by_role("button", name="Send approved").click()
    expect(page.get_by_role("alert").filter(has_text="The payload is not JSON")).to_be_visible()
    payload.fill('{"approved_by": "ana"}')
    page.get_by_role("button", name="Send approved").click()
    expect(page.locator(".graph g.s-Succeeded")).to_have_count(2)
    view = requests.get(f"{server}/workflows/{started.json()['id']}", headers=headers, timeout=5).json()
    assert view["activities"][0]["output"] == {"approved_by": "ana"}
    expect(page.get_by_role("button", name="Send approved")).to_have_count(0)  # nothing waits any more
    shot(page, "signal-form")


CHOOSING = {
    "name": "Choosing",
    "activities": [
        {"id": "approval", "wait_for": "approved", "choices": ["approve", "reject"]},
        {"id": "ship", "name": "NoopActivity", "when": "outputs.approval.choice == 'approve'"},
    ],
}


@pytest.mark.parametrize(("button", "ship"), [("Approve", "Succeeded"), ("Reject", "Skipped")])
def test_a_wait_with_choices_has_a_button_per_answer(page, server, button, ship):
    headers = {"Authorization": "Bearer ui-secret"}
    assert requests.put(f"{server}/definitions/Choosing", json=CHOOSING, headers=headers, timeout=5).status_code in (
        200,
        201,
    )
    started = requests.post(f"{server}/workflows", json={"name": "Choosing"}, headers=headers, timeout=5).json()
    page.goto(f"{server}/ui/#/workflows/{started['id']}")
    answers = page.get_by_role("form", name="approval waits for the signal approved")
    expect(answers.get_by_role("button")).to_have_text(["Approve", "Reject"])
    expect(answers.get_by_role("textbox")).to_have_count(0)  # buttons instead of the JSON field
    token = requests.get(f"{server}/workflows/{started['id']}", headers=headers, timeout=5).json()["activities"][0]
    expect(answers).to_contain_text(token["callback_token"])  # for a third party to call back
    shot(page, "signal-choices")
    answers.get_by_role("button", name=button).click()
    expect(page.locator(".status").first).to_have_text("Finished")
    view = requests.get(f"{server}/workflows/{started['id']}", headers=headers, timeout=5).json()
    assert view["activities"][0]["output"] == {"choice": button.lower()}
    assert view["activities"][1]["status"] == ship
    expect(page.get_by_role("button", name=button)).to_have_count(0)  # nothing waits any more


def test_the_schedules_page_is_paged(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    body = {"workflow": "BrokenOptionalWorkflow", "cron": "0 0 1 1 *", "paused": True}
    names = [f"a-page-{n:02}" for n in range(27)]
    for name in names:
        assert requests.put(f"{server}/schedules/{name}", json=body, headers=headers, timeout=5).status_code == 201
    try:
        page.goto(f"{server}/ui/#/schedules")
        page.get_by_role("heading", name="Schedules").wait_for()
        expect(page.get_by_role("rowheader", name="a-page-24")).to_be_visible()
        expect(page.get_by_role("rowheader", name="a-page-25")).to_have_count(0)
        page.get_by_role("button", name="Next page").click()
        expect(page.get_by_role("rowheader", name="a-page-26")).to_be_visible()
        expect(page.get_by_role("rowheader", name="a-page-00")).to_have_count(0)
        page.get_by_role("button", name="First page").click()
        expect(page.get_by_role("rowheader", name="a-page-00")).to_be_visible()
    finally:
        for name in names:
            requests.delete(f"{server}/schedules/{name}", headers=headers, timeout=5)


def test_a_queued_step_links_its_limit_whose_page_sets_its_number(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    started = requests.post(
        f"{server}/workflows", json={"name": "UiLimited", "input_data": {"tenant": "acme"}}, headers=headers, timeout=5
    ).json()
    page.goto(f"{server}/ui/#/workflows/{started['id']}")
    row = page.locator("tr", has=page.get_by_role("cell", name="call (NoopActivity)", exact=False))
    expect(row.locator(".status")).to_have_text("Queued")
    expect(row.locator(".waiting-for")).to_have_text(
        "waiting for ui_partner [acme]: no limit set (PUT /limits/ui_partner)"
    )
    shot(page, "workflow-queued")
    row.get_by_role("link", name="ui_partner [acme]").click()
    page.get_by_role("heading", name="Limit ui_partner").wait_for()
    keys = page.locator("table.limit-keys")
    # Held 0, waiting 1, for the key value acme.
    expect(keys.locator("tr", has=page.get_by_role("rowheader", name="acme")).locator("td")).to_have_text(["0", "1"])
    expect(page.get_by_role("button", name="Unset")).to_have_count(0)  # no number set at run time yet

    # A number the API refuses: its 422 text is shown next to the field.
    field = page.get_by_label("Number (per key value)")
    field.fill("-1")
    page.get_by_role("button", name="Set", exact=True).click()
    expect(page.locator("#l-number-error")).to_contain_text("$.limit: must be an integer from 0 to 100000")
    assert field.get_attribute("aria-invalid") == "true"
    shot(page, "limit-refused")

    field.fill("1")
    page.get_by_role("button", name="Set", exact=True).click()
    expect(page.locator(".limit-summary")).to_contain_text("1 (set at run time)")
    page.goto(f"{server}/ui/#/workflows/{started['id']}")
    page.locator("p .status", has_text="Finished").wait_for()

    page.goto(f"{server}/ui/#/limits/ui_partner")
    page.get_by_role("button", name="Unset").click()
    expect(page.locator(".limit-summary")).to_contain_text("none set")
    expect(page.get_by_role("button", name="Unset")).to_have_count(0)
    assert requests.get(f"{server}/limits/ui_partner", headers=headers, timeout=5).json()["limit"] is None


def test_the_limits_page_lists_the_limits_and_opens_one(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    assert requests.put(f"{server}/limits/ui_listed", json={"limit": 0}, headers=headers, timeout=5).status_code == 200
    try:
        started = requests.post(f"{server}/workflows", json={"name": "UiListed"}, headers=headers, timeout=5).json()
        page.get_by_role("link", name="Limits", exact=True).click()
        page.get_by_role("heading", name="Limits").wait_for()
        row = page.locator("tr", has=page.get_by_role("rowheader", name="ui_listed"))
        # Number, slots held, steps waiting, key values: the page refreshes until the step waits.
        expect(row.locator("td")).to_have_text(["0 (set at run time)", "0", "1", "1"])
        shot(page, "limits")
        row.get_by_role("link", name="ui_listed").click()
        page.get_by_role("heading", name="Limit ui_listed").wait_for()
        expect(page.get_by_role("rowheader", name="(no key)")).to_be_visible()
        shot(page, "limit")
        page.get_by_role("link", name="All limits").click()
        page.get_by_label("Open a limit by name").fill("ui_nobody")
        page.get_by_role("button", name="Open").click()
        page.get_by_role("heading", name="Limit ui_nobody").wait_for()
        expect(page.get_by_text("Nothing holds or waits for this limit.")).to_be_visible()
    finally:
        requests.put(f"{server}/limits/ui_listed", json={"limit": None}, headers=headers, timeout=5)
        if "started" in locals():  # its step would wait for a number forever
            requests.post(f"{server}/workflows/{started['id']}/cancel", json={}, headers=headers, timeout=5)


def test_the_batches_page_shows_each_batch_with_its_progress(page, server):
    headers = {"Authorization": "Bearer ui-secret"}
    failed = requests.post(f"{server}/workflows", json={"name": "FailingWorkflow"}, headers=headers, timeout=5).json()
    wait_for(
        lambda: (
            requests.get(f"{server}/workflows/{failed['id']}", headers=headers, timeout=5).json()["status"] == "Failed"
        ),
        timeout_s=30,
        what="a failed workflow",
    )
    body = {"operation": "retry", "filter": {"status": "Failed", "input": {}}, "created_by": "ui-test"}
    batch = requests.post(f"{server}/batches", json=body, headers=headers, timeout=5).json()
    # It retries every failed workflow the other tests of this module left: on a busy
    # machine that can take longer than the page's expect waits. The page is what is tested.
    wait_for(
        lambda: (
            requests.get(f"{server}/batches/{batch['id']}", headers=headers, timeout=5).json()["status"] == "finished"
        ),
        timeout_s=120,
        what="the batch to finish",
    )
    page.get_by_role("link", name="Batches").click()
    page.get_by_role("heading", name="Batches").wait_for()
    row = page.locator("tr", has=page.get_by_role("rowheader", name=batch["id"]))
    expect(row.locator(".status")).to_have_text("finished")
    done = requests.get(f"{server}/batches/{batch['id']}", headers=headers, timeout=5).json()
    assert done["matched"] >= 1 and done["done"] >= 1
    expect(row).to_contain_text(f"{done['matched']} matched: {done['done']} done, {done['failed']} failed")
    expect(row.get_by_label(f"Batch {batch['id']} progress")).to_be_visible()
    expect(row.get_by_text("by ui-test")).to_be_visible()
    shot(page, "batches")


def _waiting_in(server: str, namespace: str) -> str:
    """A definition of ``namespace`` whose workflows wait for a signal, and one of them
    started; its id (made with the namespace's admin token)."""
    headers = {"Authorization": f"Bearer ui-{namespace}-admin-token"}
    name = f"UiTeam{namespace.upper()}"
    body = {"name": name, "activities": [{"id": "hold", "wait_for": "go"}]}
    assert requests.put(f"{server}/definitions/{name}", json=body, headers=headers, timeout=5).status_code in (200, 201)
    started = requests.post(f"{server}/workflows", json={"name": name}, headers=headers, timeout=5)
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def test_a_namespace_token_sees_only_its_namespace_and_a_read_token_changes_nothing(browser, server):
    """issue 27: the page with a's token lists a's workflows and definitions only; b's
    workflow, opened by its URL, is "Not found" exactly as an id nobody has; a read token's
    cancel and start are refused with the role they need, and change nothing."""
    a, b = _waiting_in(server, "a"), _waiting_in(server, "b")
    with signed_in(browser, server, "ui-a-admin-token") as page:
        page.get_by_role("link", name=a).wait_for()
        # The operator's workflows (default) and b's are not listed: a's one is the only row.
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.get_by_label("Definition").locator("option")).to_have_text(["any", "UiTeamA"])
        shot(page, "namespace-a-workflows")
        page.goto(f"{server}/ui/#/workflows/{b}")
        page.get_by_role("heading", name="Not found").wait_for()
        foreign = page.locator("main").inner_text()
        page.goto(f"{server}/ui/#/workflows/{b[::-1]}")
        page.locator("main", has_text=b[::-1]).wait_for()
        assert foreign.replace(b, "ID") == page.locator("main").inner_text().replace(b[::-1], "ID")
        assert "UiTeamB" not in foreign
    with signed_in(browser, server, "ui-a-read-token") as page:
        page.goto(f"{server}/ui/#/workflows/{a}")
        page.get_by_role("heading", name=f"UiTeamA {a}").wait_for()
        page.get_by_role("button", name="Cancel workflow").click()
        expect(page.locator("#toast")).to_contain_text("a read token may not POST")
        shot(page, "namespace-a-read-refused")
        start_from = page.get_by_role("link", name="Start a workflow")
        start_from.click()
        page.get_by_role("heading", name="Start a workflow").wait_for()
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_role("alert").filter(has_text="it needs operate").wait_for()
    headers = {"Authorization": "Bearer ui-a-admin-token"}
    listed = requests.get(f"{server}/workflows", headers=headers, timeout=5).json()["items"]
    assert [(w["id"], w["status"]) for w in listed] == [(a, "In Progress")]
