"""The web page's limits (api/static/limits.js), run in Node: how a claimed slot is named,
what the number field sends, and the pages drawn from stubbed API answers, through a
stand-in for app.js's ``h`` (the browser tests in tests/ui drive the real page).
Skipped without node, except in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def _node():
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed")
        pytest.skip("node is not installed: the limits page's helpers are not checked")


# Evaluates limits.js beside stand-ins for what app.js gives it (h builds plain element
# objects; api answers from argv[2], recording every call), runs the script given as
# argv[3] (an async function body with the page's functions in scope) and prints what
# it returns, as JSON.
_HARNESS = r"""
const src = require("fs").readFileSync(process.argv[1], "utf8");
const answers = JSON.parse(process.argv[2]);
const calls = [], toasts = [], routes = [];
let drawn = null;
function h(tag, attrs = {}, ...children) {
  const kept = children.flat(Infinity).filter(c => c !== null && c !== undefined && c !== false);
  const el = { tag, attrs: { ...attrs }, children: kept,
    value: attrs.value || "", textContent: "",
    setAttribute(k, v) { this.attrs[k] = v; }, removeAttribute(k) { delete this.attrs[k]; }, focus() {} };
  return el;
}
function text(node) {
  if (typeof node !== "object") return String(node);
  return (node.textContent || "") + node.children.map(text).join("");
}
function find(node, test) {
  if (typeof node !== "object") return null;
  if (test(node)) return node;
  for (const c of node.children) { const f = find(c, test); if (f) return f; }
  return null;
}
async function api(method, path, body) {
  calls.push({ method, path, body });
  const answer = answers[`${method} ${path}`];
  if (answer && answer.status) { const e = new Error(answer.description); e.status = answer.status; throw e; }
  return answer;
}
const render = (mine, ...nodes) => { drawn = h("main", {}, ...nodes); return true; };
const refreshIn = () => {}, go = hash => routes.push(hash), toast = m => toasts.push(m);
const route = () => routes.push("route");
const params = () => new URLSearchParams(""), document = { activeElement: null };
const run = new Function("h", "api", "render", "refreshIn", "go", "toast", "route", "params", "document",
  "text", "find", "state", src + "\nreturn (async () => {" + process.argv[3] + "})();");
const state = { get drawn() { return drawn; }, calls, toasts, routes };
run(h, api, render, refreshIn, go, toast, route, params, document, text, find, state)
  .then(out => console.log(JSON.stringify(out)), e => { console.error(e); process.exit(1); });
"""


def node(script: str, answers: dict | None = None):
    out = subprocess.run(
        [NODE, "-e", _HARNESS, str(ROOT / "api" / "static" / "limits.js"), json.dumps(answers or {}), script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(
    ("limit", "label"),
    [({"name": "payments", "key": "acme"}, "payments [acme]"), ({"name": "Orders.charge", "key": ""}, "Orders.charge")],
)
def test_a_claimed_slot_is_named_as_its_waiting_text_names_it(limit, label):
    assert node(f"return limitLabel({json.dumps(limit)});") == label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", {"body": {"limit": 3}}),
        (" 0 ", {"body": {"limit": 0}}),
        # The API judges numbers: these are sent so that its 422 is what the page shows.
        ("-1", {"body": {"limit": -1}}),
        ("2.5", {"body": {"limit": 2.5}}),
        ("1e9", {"body": {"limit": 1_000_000_000}}),
    ],
)
def test_the_number_field_sends_any_number_for_the_api_to_judge(text, expected):
    assert node(f"return limitBody({json.dumps(text)});") == expected


@pytest.mark.parametrize(
    ("text", "problem"), [("", "Enter a number"), ("  ", "Enter a number"), ("three", "Not a number")]
)
def test_the_number_field_refuses_what_is_no_number_before_sending(text, problem):
    assert node(f"return limitBody({json.dumps(text)}).problem;").startswith(problem)


LIMIT = {
    "name": "payments",
    "limit": 3,
    "set_at_run_time": True,
    "held": 3,
    "waiting": 5,
    "keys": 2,
    "by_key": [{"key": "acme", "held": 2, "waiting": 5}, {"key": "zeta", "held": 1, "waiting": 0}],
}


def test_the_limits_page_lists_each_limit_linked_to_its_own_page():
    items = [{k: v for k, v in LIMIT.items() if k != "by_key"}, {**LIMIT, "name": "Orders.charge", "limit": None}]
    items[1].pop("by_key")
    answers = {"GET /limits": {"items": items}}
    rows = node(
        """await limitsPage(0);
        const body = find(state.drawn, n => n.tag === "tbody");
        return body.children.map(r => [find(r, n => n.tag === "a").attrs.href, ...r.children.map(text)]);""",
        answers,
    )
    assert rows == [
        ["#/limits/payments", "payments", "3 (set at run time)", "3", "5", "2"],
        ["#/limits/Orders.charge", "Orders.charge", "none set", "3", "5", "2"],
    ]


def _submit(value: str) -> str:
    return f"""await limitPage("payments", 0);
        const field = find(state.drawn, n => n.attrs.id === "l-number");
        field.value = {json.dumps(value)};
        await find(state.drawn, n => n.tag === "form").attrs.onsubmit({{ preventDefault() {{}} }});
        return {{ problem: find(state.drawn, n => n.attrs.id === "l-number-error").textContent,
                 invalid: field.attrs["aria-invalid"] || null, calls: state.calls, toasts: state.toasts }};"""


def test_a_limit_page_lists_its_keys_and_sets_its_number():
    answers = {"GET /limits/payments": LIMIT, "PUT /limits/payments": {**LIMIT, "limit": 5}}
    keys = node(
        """await limitPage("payments", 0);
        return find(state.drawn, n => n.tag === "tbody").children.map(r => r.children.map(text));""",
        answers,
    )
    assert keys == [["acme", "2", "5"], ["zeta", "1", "0"]]
    out = node(_submit("5"), answers)
    assert out["calls"][-1] == {"method": "PUT", "path": "/limits/payments", "body": {"limit": 5}}
    assert out["problem"] == "" and out["invalid"] is None
    assert out["toasts"] == ["payments: 5 at a time"]


def test_a_limit_page_shows_the_api_s_refusal_next_to_the_field():
    refusal = "$.limit: must be an integer from 0 to 100000: how many of its slots may be held at once per key"
    answers = {"GET /limits/payments": LIMIT, "PUT /limits/payments": {"status": 422, "description": refusal}}
    out = node(_submit("-1"), answers)
    assert out["problem"] == refusal
    assert out["invalid"] == "true"


def test_a_limit_page_refuses_what_is_no_number_without_asking_the_api():
    out = node(_submit("lots"), {"GET /limits/payments": LIMIT})
    assert out["problem"] == "Not a number: lots"
    assert [c["method"] for c in out["calls"]] == ["GET"]


def test_unset_sends_null_and_is_offered_only_for_a_number_set_at_run_time():
    answers = {"GET /limits/payments": LIMIT, "PUT /limits/payments": {**LIMIT, "limit": None}}
    out = node(
        """await limitPage("payments", 0);
        await find(state.drawn, n => n.tag === "button" && text(n) === "Unset").attrs.onclick();
        return state.calls;""",
        answers,
    )
    assert out[-1] == {"method": "PUT", "path": "/limits/payments", "body": {"limit": None}}
    from_definitions = {"GET /limits/payments": {**LIMIT, "set_at_run_time": False}}
    assert (
        node(
            """await limitPage("payments", 0);
        return find(state.drawn, n => n.tag === "button" && text(n) === "Unset");""",
            from_definitions,
        )
        is None
    )


def test_a_rate_limit_shows_its_rate_and_says_where_to_set_it():
    rate = {**LIMIT, "name": "Mailer:send", "kind": "rate", "limit": None, "per_s": 10, "burst": 5}
    rate.pop("by_key")
    answers = {"GET /limits": {"items": [rate]}, "GET /limits/Mailer%3Asend": {**rate, "by_key": []}}
    shown = node(
        """await limitsPage(0);
        const row = find(state.drawn, n => n.tag === "tbody").children[0];
        const listed = row.children.map(text);
        await limitPage("Mailer:send", 0);
        return { listed, page: text(state.drawn), form: find(state.drawn, n => n.tag === "form") !== null };""",
        answers,
    )
    assert shown["listed"][1] == "10/s, burst 5 (set at run time)"
    assert "flow limits set Mailer:send --per-s N --burst N" in shown["page"]
    assert shown["form"] is False
