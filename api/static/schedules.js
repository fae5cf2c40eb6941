// Libero Flow's web page, the schedules: each with its next run and its recent runs.
// Uses the helpers of app.js (h, api, params, go, render, refreshIn, statusBadge, when, toast), which
// loads after this file and routes "#/schedules" here.
"use strict";

function scheduleRuns(schedule) {
  if (!schedule.recent_runs.length) return h("span", { class: "muted" }, "none yet");
  return h("ul", { class: "runs" }, ...schedule.recent_runs.map(run => h("li", {},
    h("a", { href: "#/workflows/" + run.workflow_id, class: "mono" }, when(run.tick_at)), " ",
    run.status ? statusBadge(run.status) : h("span", { class: "muted" }, "deleted"),
    run.trigger === "manual" ? h("span", { class: "muted" }, " (triggered)") : null)));
}

async function scheduleAction(name, action, message) {
  try {
    const answer = await api("POST", `/schedules/${encodeURIComponent(name)}/${action}`);
    toast(message + (answer.id ? " " + answer.id : ""));
  } catch (error) { toast(error.message); }
  route();
}

async function schedulesPage(mine) {
  // Paged as the workflows are: a page of 25 by name, "Next page" follows `next`.
  const p = params();
  const query = new URLSearchParams({ limit: "25" });
  if (p.get("cursor")) query.set("cursor", p.get("cursor"));
  const page = await api("GET", "/schedules?" + query);
  const rows = page.items.map(s => h("tr", {},
    h("th", { scope: "row" }, s.name, s.paused ? h("span", { class: "muted" }, " (paused)") : null),
    h("td", {}, s.workflow),
    h("td", {}, h("code", {}, s.cron), h("div", { class: "muted" }, s.timezone + ", overlap " + s.overlap)),
    h("td", { class: "next-run" }, s.next_run_at ? when(s.next_run_at) : h("span", { class: "muted" }, "paused")),
    h("td", {}, scheduleRuns(s)),
    h("td", {}, `${s.fired} started, ${s.skipped} skipped`,
      s.last_error ? h("div", { class: "error" }, s.last_error) : null),
    h("td", {},
      h("button", { onclick: () => scheduleAction(s.name, s.paused ? "resume" : "pause", (s.paused ? "Resumed " : "Paused ") + s.name) },
        s.paused ? `Resume ${s.name}` : `Pause ${s.name}`), " ",
      h("button", { onclick: () => scheduleAction(s.name, "trigger", "Started") }, `Trigger ${s.name} now`))));
  const table = h("table", {}, h("caption", {}, "Next runs in your time zone; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Schedule", "Definition", "Cron", "Next run", "Recent runs", "Counts", "Actions"]
      .map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7 }, "No schedules: PUT /schedules/{name} or flow schedules put FILE."))));
  const base = new URLSearchParams(p); base.delete("cursor");
  const pager = h("div", { class: "pager" },
    p.get("cursor") ? h("button", { onclick: () => go("#/schedules?" + base) }, "First page") : null,
    page.next ? h("button", { onclick: () => { base.set("cursor", page.next); go("#/schedules?" + base); } }, "Next page") : null);
  if (render(mine, h("h1", {}, "Schedules"), table, pager)) refreshIn(mine, 2000);
}
