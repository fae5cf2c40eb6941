// Libero Flow's web page: plain JavaScript on the HTTP API, no build step, no CDN.
"use strict";

const main = document.getElementById("main");
let refreshTimer = null;
// Each navigation or refresh is a generation; a page whose data arrives after the user
// moved on must not draw over the newer page, nor keep refreshing.
let generation = 0;
// After a cancel or retry, keep refreshing a while even if the workflow looks ended:
// the engine applies the request a moment later.
let watchUntil = 0;

function render(mine, ...nodes) {
  if (mine !== generation) return false;
  main.replaceChildren(...nodes);
  return true;
}

function refreshIn(mine, ms) {
  if (mine !== generation) return;
  refreshTimer = setTimeout(() => {
    // A refresh redraws the page: not while the user is typing in one of its fields.
    if (main.contains(document.activeElement) && document.activeElement.matches("input, textarea")) refreshIn(mine, ms);
    else route();
  }, ms);
}

// -- API --------------------------------------------------------------------------------

function token() { return localStorage.getItem("flow-token") || ""; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.description || data.title || response.statusText);
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

async function allEvents(id) {
  let items = [], after = 0;
  for (;;) {
    const page = await api("GET", `/workflows/${encodeURIComponent(id)}/events?limit=500&after=${after}`);
    items = items.concat(page.items);
    if (!page.next) return items;
    after = page.next;
  }
}

// -- helpers ----------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    else if (key === "style") {
      for (const declaration of value.split(";")) {
        const colon = declaration.indexOf(":");
        if (colon > 0) el.style.setProperty(declaration.slice(0, colon).trim(), declaration.slice(colon + 1).trim());
      }
    }
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function statusBadge(status) {
  return h("span", { class: "status s-" + status.replace(/ /g, "-") }, status);
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

function duration(startIso, endIso) {
  if (!startIso) return "";
  const ms = (endIso ? new Date(endIso) : new Date()) - new Date(startIso);
  if (ms < 1000) return ms.toFixed(0) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = "show";
  setTimeout(() => { el.className = ""; }, 4000);
}

function showError(error) {
  // A 404 is the answer for what does not exist and for another namespace's thing alike
  // (the API hides which): the page says "Not found" with the API's words, nothing more.
  if (error.status === 404) {
    main.replaceChildren(h("h1", {}, "Not found"), h("p", { role: "alert" }, error.message),
      h("p", {}, h("a", { href: "#/workflows" }, "Back to the workflows")));
    return;
  }
  main.replaceChildren(h("h1", {}, "Something went wrong"),
    h("p", { class: "error", role: "alert" }, error.status === 401
      ? "The API wants a token: enter FLOW_API_TOKEN above and save." : error.message));
}

function params() {
  const [, query] = location.hash.split("?");
  return new URLSearchParams(query || "");
}

function go(hash) { location.hash = hash; }

// -- pages ------------------------------------------------------------------------------

async function workflowsPage(mine) {
  const p = params();
  const query = new URLSearchParams({ limit: "25" });
  for (const key of ["status", "name", "input", "cursor"]) if (p.get(key)) query.set(key, p.get(key));
  // Search attributes: attr.<name>[.<op>]=<value>, passed on as they are (the API checks them).
  const attrs = [...p].filter(([key]) => key.startsWith("attr."));
  for (const [key, value] of attrs) query.append(key, value);
  const [page, definitions] = await Promise.all([api("GET", "/workflows?" + query), api("GET", "/definitions")]);

  const statusSelect = h("select", { id: "f-status", name: "status" },
    h("option", { value: "" }, "any"),
    ...["In Progress", "Compensating", "Finished", "Failed", "Cancelled"].map(s => h("option", { value: s, selected: p.get("status") === s }, s)));
  const nameSelect = h("select", { id: "f-name", name: "name" },
    h("option", { value: "" }, "any"),
    ...definitions.items.map(d => h("option", { value: d.name, selected: p.get("name") === d.name }, d.name)));
  const search = h("input", { id: "f-id", name: "id", placeholder: "workflow id" });
  const contains = h("input", { id: "f-input", name: "input", class: "mono", placeholder: '{"order_id": 42}',
    value: p.get("input") || undefined, spellcheck: "false", "aria-describedby": "f-input-error" });
  const containsError = h("div", { id: "f-input-error", class: "error", role: "alert" });
  const attributes = h("input", { id: "f-attr", name: "attr", class: "mono", placeholder: "customer=acme amount.gt=100",
    value: attrs.map(([key, value]) => key.slice(5) + "=" + value).join(" ") || undefined, spellcheck: "false",
    "aria-describedby": "f-attr-error" });
  const attributesError = h("div", { id: "f-attr-error", class: "error", role: "alert" });
  const filters = h("form", { class: "filters", onsubmit: e => {
      e.preventDefault();
      if (search.value.trim()) return go("#/workflows/" + encodeURIComponent(search.value.trim()));
      const q = new URLSearchParams();
      if (statusSelect.value) q.set("status", statusSelect.value);
      if (nameSelect.value) q.set("name", nameSelect.value);
      if (contains.value.trim()) {
        let data, problem = null;
        try { data = JSON.parse(contains.value); } catch (error) { problem = "Not valid JSON: " + error.message; }
        if (!problem && (data === null || typeof data !== "object" || Array.isArray(data))) problem = 'Must be a JSON object, like {"order_id": 42}.';
        if (problem) { containsError.textContent = problem; contains.setAttribute("aria-invalid", "true"); contains.focus(); return; }
        q.set("input", JSON.stringify(data));
      }
      for (const term of attributes.value.trim().split(/\s+/).filter(Boolean)) {
        const at = term.indexOf("=");
        if (at < 1) {
          attributesError.textContent = `"${term}" must be name=value or name.op=value (op: eq, ne, gt, gte, lt, lte).`;
          attributes.setAttribute("aria-invalid", "true"); attributes.focus(); return;
        }
        q.append("attr." + term.slice(0, at), term.slice(at + 1));
      }
      go("#/workflows?" + q);
    } },
    h("div", {}, h("label", { for: "f-status" }, "Status"), statusSelect),
    h("div", {}, h("label", { for: "f-name" }, "Definition"), nameSelect),
    h("div", {}, h("label", { for: "f-input" }, "Input contains (JSON)"), contains, containsError),
    h("div", {}, h("label", { for: "f-attr" }, "Search attributes"), attributes, attributesError),
    h("div", {}, h("label", { for: "f-id" }, "Find by id"), search),
    h("button", { type: "submit" }, "Apply"));

  const rows = page.items.map(w => h("tr", {},
    h("td", { class: "mono" }, h("a", { href: "#/workflows/" + w.id }, w.id)),
    h("td", {}, w.name, h("span", { class: "muted" }, " v" + w.definition_version)),
    h("td", {}, statusBadge(w.status)),
    h("td", {}, when(w.created_at)),
    h("td", {}, duration(w.created_at, w.finished_at))));
  const table = h("table", {}, h("caption", {}, "Newest first; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Id", "Definition", "Status", "Started", "Duration"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5 }, "No workflows match."))));

  const base = new URLSearchParams(p); base.delete("cursor");
  const pager = h("div", { class: "pager" },
    p.get("cursor") ? h("button", { onclick: () => go("#/workflows?" + base) }, "First page") : null,
    page.next ? h("button", { onclick: () => { base.set("cursor", page.next); go("#/workflows?" + base); } }, "Next page") : null);
  if (render(mine, h("h1", {}, "Workflows"), filters, table, pager)) refreshIn(mine, 2000);
}

function attemptBars(workflow, events) {
  // One bar per attempt: waiting (scheduled -> started), then running (-> result).
  const attempts = new Map();
  const key = (pos, att) => pos + ":" + att;
  for (const e of events) {
    if (e.position === null || !e.data || e.data.stale) continue;
    const k = key(e.position, e.data.attempt);
    if (e.type === "schedule-activity") attempts.set(k, { position: e.position, attempt: e.data.attempt, scheduled: e.occurred_at });
    const a = attempts.get(k);
    if (!a) continue;
    if (e.type === "activity-started") a.started = a.started || e.occurred_at;
    if (e.type === "activity-result") {
      a.started = e.data.started_at || a.started || a.scheduled;
      a.finished = e.data.finished_at || e.occurred_at;
      a.outcome = e.data.outcome;
    }
  }
  return [...attempts.values()];
}

function gantt(workflow, events) {
  const bars = attemptBars(workflow, events);
  const start = new Date(workflow.created_at).getTime();
  // An attempt without a result is drawn up to now, or to the workflow's end once it has
  // ended (a cancelled workflow's activity may still run, but the timeline stops there).
  const openEnd = workflow.finished_at || new Date().toISOString();
  const times = bars.map(b => new Date(b.finished || b.started || b.scheduled).getTime());
  times.push(new Date(openEnd).getTime());
  const end = Math.max(start + 1, ...times);
  const span = Math.max(end - start, 1);
  const percent = t => Math.min(Math.max((new Date(t).getTime() - start) / span * 100, 0), 100);
  const pct = t => percent(t).toFixed(2) + "%";
  // Never past the track's right edge, whatever the clocks say.
  const width = (a, b) => Math.min(Math.max(percent(b) - percent(a), 0.2), 100 - percent(a)).toFixed(2) + "%";
  // One row per activity of the definition; a map's row holds every attempt of its items.
  const items = mapItems(workflow.activities);
  const rows = workflow.activities.filter(a => a.kind !== "item").map(activity => {
    const track = h("div", { class: "gantt-track" });
    const positions = new Set([activity.position, ...(items.get(activity.id) || []).map(i => i.position)]);
    for (const bar of bars.filter(b => positions.has(b.position))) {
      const state = bar.outcome || (workflow.finished_at ? "no result when the workflow ended" : "running");
      const label = `${activityName(workflow.activities[bar.position], bar.position)} attempt ${bar.attempt}: ${state}, waited ${duration(bar.scheduled, bar.started)}, ran ${duration(bar.started, bar.finished || openEnd)}`;
      if (bar.started && bar.started !== bar.scheduled)
        track.append(h("div", { class: "bar wait", style: `left:${pct(bar.scheduled)};width:${width(bar.scheduled, bar.started)}`, title: label }));
      const runStart = bar.started || bar.scheduled;
      track.append(h("div", { class: "bar " + (bar.outcome || "running"), role: "img", "aria-label": label, title: label,
        style: `left:${pct(runStart)};width:${width(runStart, bar.finished || openEnd)}` }));
    }
    return h("div", { class: "gantt-row" }, h("div", { class: "gantt-label" }, `${activity.position}. ${activity.id || activity.name}`), track);
  });
  const legend = h("div", { class: "legend" },
    h("span", { style: "--c:#d0d7de" }, "waiting for a worker"), h("span", { style: "--c:#0969da" }, "running"),
    h("span", { style: "--c:#1a7f37" }, "succeeded"), h("span", { style: "--c:#bf8700" }, "failed, retried"),
    h("span", { style: "--c:#cf222e" }, "failed permanently"));
  return h("div", {}, h("div", { class: "gantt", role: "group", "aria-label": "Timeline of every attempt" }, rows), legend,
    h("p", { class: "muted" }, `Timeline from ${when(workflow.created_at)}, ${duration(workflow.created_at, workflow.finished_at)} in all.`));
}

async function workflowPage(id, mine) {
  const [workflow, events] = await Promise.all([api("GET", "/workflows/" + encodeURIComponent(id)), allEvents(id)]);
  const act = async (action) => {
    try {
      await api("POST", `/workflows/${encodeURIComponent(id)}/${action}`, action === "cancel" ? { reason: "cancelled from the web page" } : undefined);
      toast({ cancel: "Cancelling…", pause: "Pausing…", resume: "Resuming…" }[action] || "Retrying from where it stopped…");
      watchUntil = Date.now() + 10000;
    } catch (error) { toast(error.message); }
    route();
  };
  const actions = h("div", { class: "actions" },
    workflow.status === "In Progress" ? h("button", { class: "danger", onclick: () => act("cancel") }, "Cancel workflow") : null,
    workflow.status === "In Progress" && !workflow.paused ? h("button", { onclick: () => act("pause") }, "Pause") : null,
    workflow.status === "In Progress" && workflow.paused ? h("button", { class: "primary", onclick: () => act("resume") }, "Resume") : null,
    ["Failed", "Cancelled"].includes(workflow.status) && !workflow.compensation ? h("button", { class: "primary", onclick: () => act("retry") }, "Retry from failure") : null);
  const signals = workflow.activities.filter(a => a.status === "Waiting" && kindOf(a).form).map(a => kindOf(a).form(workflow, a));
  // Rerun from a step (POST /workflows/{id}/rerun): it and what depends on it run again.
  const ended = ["Failed", "Finished", "Cancelled"].includes(workflow.status) && !workflow.parent_id;
  const rerunFrom = async (step) => {
    try {
      await api("POST", `/workflows/${encodeURIComponent(id)}/rerun`, { from: step, by: "web" });
      toast(`Rerunning from ${step}…`);
      watchUntil = Date.now() + 10000;
    } catch (error) { toast(error.message); }
    route();
  };
  const rerunButton = a => ended && a.kind !== "item" && !kindOf(a).ending
    ? h("button", { class: "small rerun", title: `Run ${a.id} and every step that depends on it again`, onclick: () => rerunFrom(a.id) }, "Rerun from here")
    : null;

  const items = mapItems(workflow.activities);
  const activityRow = a => h("tr", { class: kindOf(a).row || "" },
    h("td", {}, a.position),
    h("td", {}, activityLabel(a), kindOf(a).note ? kindOf(a).note(a) : null,
      a.independent ? h("span", { class: "muted" }, " (independent)") : null,
      a.depends_on ? h("span", { class: "muted" }, ` after ${a.depends_on.join(", ")}` + (a.trigger !== "all_succeeded" ? ` (${a.trigger})` : "")) : null,
      a.when ? h("span", { class: "muted mono" }, ` when ${a.when}`) : null,
      // The worker pool it runs on (a map's items are on their map's, said once on the map).
      a.queue && a.kind !== "item" ? h("span", { class: "muted pool" }, " on pool ", h("span", { class: "mono" }, a.queue)) : null,
      a.required || kindOf(a).row || kindOf(a).ending ? null : h("span", { class: "muted" }, " (optional)"), " ", rerunButton(a)),
    h("td", {}, statusBadge(a.status)),
    h("td", {}, kindOf(a).attempts ? kindOf(a).attempts(a) : `${a.attempt} / ${a.max_attempts}`),
    h("td", {}, a.duration_ms === null ? "" : duration(a.started_at, a.finished_at)),
    h("td", {}, a.error ? h("pre", {}, a.error) : a.skip_reason ? h("span", { class: "muted" }, "skipped: " + a.skip_reason) : "",
      a.waiting_for ? h("span", { class: "muted waiting-for" }, a.waiting_for) : null,
      // The slot a Queued step claims, linked to its limit's page (where its number is set).
      a.limit && a.status === "Queued" ? h("span", { class: "muted claim" }, " · limit ",
        h("a", { href: "#/limits/" + encodeURIComponent(a.limit.name), class: "mono" }, limitLabel(a.limit))) : null,
      // A long activity's progress: what its last heartbeat said (details, at most 120 characters shown).
      a.heartbeat && a.heartbeat.details != null && !["Succeeded", "Skipped"].includes(a.status)
        ? h("span", { class: "muted mono heartbeat" }, "last heartbeat: " + JSON.stringify(a.heartbeat.details).slice(0, 120))
        : null));
  const rowsOf = a => {
    const mine = items.get(a.id) || [];
    const shown = mine.slice(0, MAX_ITEM_ROWS).map(activityRow);
    if (mine.length > MAX_ITEM_ROWS) shown.push(h("tr", { class: "item" }, h("td", {}), h("td", { class: "muted", colspan: 5 },
      `… and ${mine.length - MAX_ITEM_ROWS} more items (GET /workflows/${workflow.id} lists them all)`)));
    return [activityRow(a), ...shown];
  };
  const activities = h("table", {}, h("caption", {}, "Activities, in definition order (a map's items under it)"),
    h("thead", {}, h("tr", {}, ...["#", "Activity", "Status", "Attempts", "Duration", "Error or reason"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, workflow.activities.filter(a => a.kind !== "item").flatMap(rowsOf)));

  const history = h("table", {}, h("caption", {}, "Event history"),
    h("thead", {}, h("tr", {}, ...["#", "Time", "Type", "Activity", "Data"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, events.map(e => h("tr", {},
      h("td", {}, e.id), h("td", {}, when(e.occurred_at)), h("td", { class: "mono" }, e.type),
      // The history is fetched beside the workflow and may be a moment newer: a map's item
      // listed there may not be in the workflow yet (the next refresh has it).
      h("td", {}, e.position === null ? "" : activityName(workflow.activities[e.position], e.position)),
      h("td", { class: "mono" }, Object.keys(e.data).length ? JSON.stringify(e.data) : "")))));

  const drawn = render(mine,
    h("h1", {}, workflow.name, " ", h("span", { class: "muted mono" }, workflow.id)),
    h("p", {}, statusBadge(workflow.status), workflow.paused ? h("span", { class: "badge" }, " paused") : null, ` · definition version ${workflow.definition_version} · priority ${workflow.priority} · started ${when(workflow.created_at)}`,
      workflow.finished_at ? ` · ended ${when(workflow.finished_at)}` : "", workflow.error ? h("span", { class: "error" }, " · " + workflow.error) : null,
      workflow.compensation ? h("span", { class: "badge" }, " compensation " + workflow.compensation) : null),
    ...(workflow.parent_id ? [h("p", {}, "Child workflow of ", h("a", { href: "#/workflows/" + encodeURIComponent(workflow.parent_id), class: "mono" }, workflow.parent_id),
      ` (its activity ${workflow.parent_position})`)] : []),
    actions, ...signals,
    h("h2", {}, "Graph"), graph(workflow.name, workflow.activities.filter(a => a.kind !== "item" && !kindOf(a).ending)),
    h("h2", {}, "Timeline"), gantt(workflow, events),
    h("h2", {}, "Activities"), activities,
    ...(Object.keys(workflow.attributes || {}).length ? [h("h2", {}, "Search attributes"),
      h("dl", { class: "attributes" }, ...Object.entries(workflow.attributes).flatMap(([name, value]) =>
        [h("dt", {}, name), h("dd", { class: "mono" }, JSON.stringify(value))]))] : []),
    h("h2", {}, "Input"), h("pre", {}, JSON.stringify(workflow.input_data, null, 2)),
    h("h2", {}, "Output"), h("pre", {}, JSON.stringify(workflow.output, null, 2)),
    h("h2", {}, "History"), history);
  if (drawn && (["In Progress", "Compensating"].includes(workflow.status) || Date.now() < watchUntil)) refreshIn(mine, 500);
}

// A step waiting for a signal: a form that sends it, with an optional JSON payload; a
// wait with choices offers one button per answer instead, each sending {"choice": answer}.
function signalForm(workflow, step) {
  const problem = h("div", { class: "error", role: "alert" });
  const waits = `${step.id} waits for the signal ${step.wait_for}` + (step.timeout_s ? ` (at most ${step.timeout_s} s)` : "");
  // For a third party: POST /signals/{token} sends this step its signal, once.
  const token = step.callback_token ? h("p", { class: "muted token" }, "Callback token: ", h("code", {}, step.callback_token)) : null;
  const send = async (body, sent) => {
    try {
      await api("POST", `/workflows/${encodeURIComponent(workflow.id)}/signals/${encodeURIComponent(step.wait_for)}`, body);
      toast(sent);
      watchUntil = Date.now() + 10000;
      if (document.activeElement) document.activeElement.blur();
      route();
    } catch (error) { problem.textContent = error.message; }
  };
  if (step.choices) {
    const labelId = `signal-choices-${step.position}`;
    const buttons = step.choices.map((choice, i) => h("button", {
      type: "button", class: i === 0 ? "primary" : "choice",
      onclick: () => send({ payload: { choice } }, `Sent ${choice} (signal ${step.wait_for})`),
    }, choice.charAt(0).toUpperCase() + choice.slice(1)));
    return h("form", { class: "signal", "aria-labelledby": labelId, onsubmit: (event) => event.preventDefault() },
      h("span", { id: labelId }, waits + ". Answer:"), h("div", { class: "choices" }, buttons), problem, token);
  }
  const fieldId = `signal-payload-${step.position}`;
  const field = h("textarea", { id: fieldId, rows: 2, class: "mono", placeholder: '{"approved_by": "ana"}' });
  const submit = async (event) => {
    event.preventDefault();
    problem.textContent = "";
    let body = {};
    try {
      if (field.value.trim()) body = { payload: JSON.parse(field.value) };
    } catch (error) { problem.textContent = "The payload is not JSON: " + error.message; return; }
    await send(body, `Sent the signal ${step.wait_for}`);
  };
  return h("form", { class: "signal", onsubmit: submit },
    h("label", { for: fieldId }, waits + ". Payload, JSON, optional:"),
    field, h("button", { type: "submit", class: "primary" }, `Send ${step.wait_for}`), problem, token);
}

function activityName(activity, position) {
  return activity ? activity.id || activity.name : `#${position}`;
}

// A map's items come after the definition's activities, each naming its map as parent.
const MAX_ITEM_ROWS = 100;

function mapItems(activities) {
  const items = new Map();
  for (const a of activities) if (a.kind === "item") items.set(a.parent, [...(items.get(a.parent) || []), a]);
  return items;
}

// What the page does differently for each kind of step (the API's `kind`, one entry a
// kind): `label` names it, `note` follows its name in the table, `row` is its row's class
// (an item's rows sit under its map), `attempts` fills the attempts column, `form` is
// what a waiting one offers, `node` its class in the graph (drawn by the stylesheet).
const STEP_KINDS = {
  activity: {},
  map: {
    note: a => h("span", { class: "muted mono" }, ` map over ${a.map.over}` + (a.map.max_concurrency ? `, ${a.map.max_concurrency} at a time` : "")),
    attempts: a => itemCounts(a.items),
    node: "mapped",
  },
  item: { row: "item", note: a => h("span", { class: "muted mono" }, " item " + JSON.stringify(a.item).slice(0, 80)) },
  sleep: {},
  wait: { note: a => h("span", { class: "muted mono" }, ` for signal ${a.wait_for}`), form: (workflow, a) => signalForm(workflow, a) },
  child: {
    label: a => `${a.id} (workflow ${a.name})`,
    note: a => a.child_id ? h("span", {}, " → ", h("a", { href: "#/workflows/" + encodeURIComponent(a.child_id), class: "mono" }, "child " + a.child_id)) : null,
    node: "child",
  },
  // The steps of a failed run's ending (undos, then the failure handler): not in the graph.
  compensation: { ending: true, note: a => h("span", { class: "muted mono" }, ` undoes ${a.compensates}`) },
  on_failure: {
    ending: true,
    note: a => a.child_id ? h("span", {}, " → ", h("a", { href: "#/workflows/" + encodeURIComponent(a.child_id), class: "mono" }, "child " + a.child_id))
      : h("span", { class: "muted mono" }, " failure handler"),
  },
};

function kindOf(a) { return STEP_KINDS[a.kind] || STEP_KINDS.activity; }

function itemCounts(counts) {
  const entries = Object.entries(counts || {}).sort((x, y) => y[1] - x[1]);
  const total = entries.reduce((n, [, c]) => n + c, 0);
  return `${total} item${total === 1 ? "" : "s"}` + (entries.length ? ": " + entries.map(([s, c]) => `${c} ${s}`).join(", ") : "");
}

// -- the graph of a definition or a workflow -------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const MAX_DRAWN = 300;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) el.setAttribute(key, value);
  for (const child of children.flat()) if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// A step's id, with its class when the id is not the class (every step the page draws
// comes from the API with its id, name and kind: a definition's from its `steps`).
function activityLabel(a) {
  if (kindOf(a).label) return kindOf(a).label(a);
  return a.id !== a.name ? `${a.id} (${a.name})` : a.name;
}

function graphLayout(activities) {
  // Edges: depends_on as written; for the positional rule ("waits for every activity
  // listed before it") only the edges no other path already implies.
  const ids = activities.map(a => a.id);
  const index = new Map(ids.map((id, i) => [id, i]));
  const waits = activities.map(a => a.depends_on ? a.depends_on.map(d => index.get(d)).filter(i => i !== undefined) : null);
  const edges = [];
  let lastPositional = -1;
  activities.forEach((a, i) => {
    if (waits[i]) { for (const d of waits[i]) edges.push([d, i]); return; }
    if (a.independent) return;
    for (let j = Math.max(lastPositional, 0); j < i; j++) {
      // A one_succeeded activity may end before all its dependencies: it implies nothing.
      const impliedLater = waits.slice(j + 1, i).some((w, k) => w && w.includes(j) && activities[j + 1 + k].trigger !== "one_succeeded");
      if (!impliedLater) edges.push([j, i]);
    }
    lastPositional = i;
  });
  const preds = activities.map(() => []);
  for (const [from, to] of edges) preds[to].push(from);
  const level = [];
  const depth = i => level[i] ?? (level[i] = preds[i].length ? 1 + Math.max(...preds[i].map(depth)) : 0);
  activities.forEach((_, i) => depth(i));
  return { ids, edges, level };
}

function graph(title, activities) {
  const labels = activities.map(a => activityLabel(a) +
    (a.independent ? " (independent)" : "") + (a.depends_on ? ` after ${a.depends_on.join(", ")}` : "") +
    (a.when ? ` when ${a.when}` : "") + (a.kind === "map" ? ` map over ${a.map.over}` : "") + (a.status ? `: ${a.status}` : "") +
    (a.items ? ` (${itemCounts(a.items)})` : ""));
  const label = `${title}: ` + labels.join(", ");
  if (activities.length > MAX_DRAWN)
    return h("p", { class: "muted", role: "img", "aria-label": label }, `${activities.length} activities: too many to draw.`);
  const { ids, edges, level } = graphLayout(activities);
  const W = 190, H = 34, GX = 56, GY = 14;
  const rows = new Map();
  const at = activities.map((_, i) => { const r = rows.get(level[i]) || 0; rows.set(level[i], r + 1); return [level[i] * (W + GX), r * (H + GY)]; });
  const width = (Math.max(...level) + 1) * (W + GX) - GX + 2, height = Math.max(...rows.values()) * (H + GY) - GY + 2;
  const arrow = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  const lines = edges.map(([from, to]) => {
    const [x1, y1] = [at[from][0] + W + 1, at[from][1] + H / 2 + 1], [x2, y2] = [at[to][0] + 1, at[to][1] + H / 2 + 1];
    const mid = (x1 + x2) / 2;
    return svg("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" });
  });
  const nodes = activities.map((a, i) => {
    const kind = kindOf(a);
    const classes = ["node", a.status ? "s-" + a.status.replace(/ /g, "-") : "", a.required === false ? "optional" : "",
      a.when ? "conditional" : "", kind.node || ""];
    const name = (a.when ? "? " : "") + ids[i];
    const total = a.items ? Object.values(a.items).reduce((n, c) => n + c, 0) : null;
    const suffix = kind.node === "mapped" ? (total === null ? " ×n" : ` ×${total}`) : "";
    const text = name.length + suffix.length > 22 ? name.slice(0, 21 - suffix.length) + "…" + suffix : name + suffix;
    // A map is drawn as a stack (one card behind another, for its many items); a child
    // workflow as a second frame inside the first, linked to the child's page once it runs.
    const node = svg("g", { class: classes.join(" "), transform: `translate(${at[i][0] + 1},${at[i][1] + 1})` },
      svg("title", {}, labels[i] + (a.skip_reason ? ` (skipped: ${a.skip_reason})` : "") + (a.child_id ? ` (child ${a.child_id})` : "")),
      kind.node === "mapped" ? svg("rect", { class: "stack", x: 4, y: -4, width: W - 4, height: H, rx: 6 }) : null,
      svg("rect", { width: W - (kind.node === "mapped" ? 4 : 0), height: H, rx: 6 }),
      kind.node === "child" ? svg("rect", { class: "inner", x: 3, y: 3, width: W - 6, height: H - 6, rx: 4 }) : null,
      svg("text", { x: 10, y: H / 2 + 4 }, text));
    return a.child_id ? svg("a", { href: "#/workflows/" + encodeURIComponent(a.child_id), class: "child-link" }, node) : node;
  });
  return h("div", { class: "graph" },
    svg("svg", { role: "img", "aria-label": label, width, height, viewBox: `0 0 ${width} ${height}` },
      svg("defs", {}, arrow), ...lines, ...nodes));
}

async function definitionsPage(mine) {
  const list = await api("GET", "/definitions");
  const details = await Promise.all(list.items.map(d => api("GET", "/definitions/" + encodeURIComponent(d.name))));
  render(mine, h("h1", {}, "Definitions"),
    h("p", { class: "muted" }, "An arrow means: waits for. Boxes in one column may run side by side; dashed boxes are optional; a ? marks a condition (when)."),
    ...details.map(d => h("section", {},
      h("h2", {}, d.name, h("span", { class: "muted" }, ` version ${d.version}`)),
      graph(d.name, d.definition.activities.map((entry, i) => ({ ...entry, ...d.steps[i] }))),
      h("p", { class: "muted" }, "Versions: ", d.versions.map(v => `${v.version} (${when(v.created_at)})`).join(", ")),
      h("button", { onclick: () => go("#/start?name=" + encodeURIComponent(d.name)) }, `Start ${d.name}`))));
}

async function startPage(mine) {
  const definitions = await api("GET", "/definitions");
  const p = params();
  const select = h("select", { id: "s-name", required: true },
    ...definitions.items.map(d => h("option", { value: d.name, selected: p.get("name") === d.name }, d.name)));
  const input = h("textarea", { id: "s-input", rows: 8, cols: 60, "aria-describedby": "s-input-error", spellcheck: "false" }, "{}");
  const inputError = h("div", { id: "s-input-error", class: "error", role: "alert" });
  const key = h("input", { id: "s-key", placeholder: "optional" });
  const formError = h("div", { class: "error", role: "alert" });
  const form = h("form", { onsubmit: async e => {
      e.preventDefault();
      inputError.textContent = ""; formError.textContent = "";
      let data;
      try { data = JSON.parse(input.value || "{}"); } catch (error) {
        inputError.textContent = "Not valid JSON: " + error.message; input.setAttribute("aria-invalid", "true"); input.focus(); return;
      }
      if (data === null || typeof data !== "object" || Array.isArray(data)) {
        inputError.textContent = "The input must be a JSON object, like {\"x\": 1}."; input.setAttribute("aria-invalid", "true"); input.focus(); return;
      }
      input.removeAttribute("aria-invalid");
      try {
        const body = { name: select.value, input_data: data };
        if (key.value.trim()) body.idempotency_key = key.value.trim();
        const workflow = await api("POST", "/workflows", body);
        go("#/workflows/" + workflow.id);
      } catch (error) {
        const problems = (error.data && error.data.errors) || [];
        const inputProblem = problems.find(p => p.path.startsWith("$.input_data"));
        if (inputProblem) inputError.textContent = inputProblem.message; else formError.textContent = error.message;
      }
    } },
    h("div", { class: "field" }, h("label", { for: "s-name" }, "Definition"), select),
    h("div", { class: "field" }, h("label", { for: "s-input" }, "Input (JSON object)"), input, inputError),
    h("div", { class: "field" }, h("label", { for: "s-key" }, "Idempotency key"), key),
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Start")), formError);
  render(mine, h("h1", {}, "Start a workflow"), form);
}

// -- routing ----------------------------------------------------------------------------

async function route() {
  clearTimeout(refreshTimer);
  const mine = ++generation;
  const path = location.hash.slice(1).split("?")[0] || "/workflows";
  try {
    if (path === "/workflows") await workflowsPage(mine);
    else if (path.startsWith("/workflows/")) await workflowPage(decodeURIComponent(path.slice("/workflows/".length)), mine);
    else if (path === "/definitions") await definitionsPage(mine);
    else if (path === "/schedules") await schedulesPage(mine);
    else if (path === "/events") await eventsPage(mine);
    else if (path === "/limits") await limitsPage(mine);
    else if (path === "/batches") await batchesPage(mine);
    else if (path.startsWith("/limits/")) await limitPage(decodeURIComponent(path.slice("/limits/".length)), mine);
    else if (path === "/start") await startPage(mine);
    else render(mine, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/workflows" }, "Back to the workflows")));
  } catch (error) { if (mine === generation) showError(error); }
}

document.getElementById("token").value = token();
document.getElementById("token-form").addEventListener("submit", e => {
  e.preventDefault();
  localStorage.setItem("flow-token", document.getElementById("token").value);
  toast("Token saved in this browser");
  route();
});
window.addEventListener("hashchange", () => { route(); main.focus(); });
route();
