// Libero Flow's web page, the events: the recent events sent to the triggers, newest first, each
// with the workflows it started (and their state) or why none.
// Uses the helpers of app.js (h, api, params, go, render, refreshIn, statusBadge, when), which
// loads after this file and routes "#/events" here.
"use strict";

function eventWorkflows(event) {
  if (!event.matched.length) return h("span", { class: "muted" }, event.reason || "nothing started");
  return h("ul", { class: "runs" }, ...event.matched.map(m => h("li", {},
    h("a", { href: "#/workflows/" + m.workflow_id, class: "mono" }, m.definition), " ",
    m.status ? statusBadge(m.status) : h("span", { class: "muted" }, m.state),
    m.state === "waiting" && m.closes_at ? h("span", { class: "muted" }, ` (${m.mode} until ${when(m.closes_at)})`) : null,
    m.error ? h("div", { class: "error" }, m.error) : null)));
}

async function eventsPage(mine) {
  // Paged as the workflows are: a page of 25, newest first, "Next page" follows `next`.
  const p = params();
  const query = new URLSearchParams({ limit: "25" });
  if (p.get("cursor")) query.set("cursor", p.get("cursor"));
  const page = await api("GET", "/events?" + query);
  const rows = page.items.map(e => h("tr", {},
    h("td", {}, when(e.received_at)),
    h("th", { scope: "row", class: "mono" }, e.id),
    h("td", {}, h("code", {}, e.type)),
    h("td", {}, eventWorkflows(e))));
  const table = h("table", {}, h("caption", {}, "Events remembered (FLOW_EVENT_DEDUP_S), newest first; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Received", "Id", "Type", "Workflows"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4 }, "No events: POST /events or flow event send TYPE."))));
  const base = new URLSearchParams(p); base.delete("cursor");
  const pager = h("div", { class: "pager" },
    p.get("cursor") ? h("button", { onclick: () => go("#/events?" + base) }, "First page") : null,
    page.next ? h("button", { onclick: () => { base.set("cursor", page.next); go("#/events?" + base); } }, "Next page") : null);
  if (render(mine, h("h1", {}, "Events"), table, pager)) refreshIn(mine, 2000);
}
