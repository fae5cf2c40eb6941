// Libero Flow's web page, the bulk operations: each batch with its progress, running ones first.
// Uses the helpers of app.js (h, api, render, refreshIn, when, toast, route), which loads after
// this file and routes "#/batches" here.
"use strict";

function batchProgress(b) {
  const handled = b.done + b.failed + b.skipped;
  // While running, `matched` grows page by page: the bar shows what is handled of what is found.
  return h("div", {},
    h("progress", { max: String(Math.max(b.matched, 1)), value: String(handled), "aria-label": `Batch ${b.id} progress` }),
    h("div", {}, `${b.matched} matched: ${b.done} done, ${b.failed} failed, ${b.skipped} skipped, ${b.pending} pending`));
}

async function cancelBatch(id) {
  try {
    await api("POST", `/batches/${encodeURIComponent(id)}/cancel`);
    toast("Cancelling batch " + id);
  } catch (error) { toast(error.message); }
  route();
}

async function batchesPage(mine) {
  // The running batches, then the 25 newest of the others.
  const [running, recent] = await Promise.all([
    api("GET", "/batches?status=running&limit=100"), api("GET", "/batches?limit=25")]);
  const others = recent.items.filter(b => b.status !== "running");
  const rows = running.items.concat(others).map(b => h("tr", {},
    h("th", { scope: "row", class: "mono" }, b.id),
    h("td", {}, b.operation),
    h("td", {}, h("code", {}, JSON.stringify(b.filter))),
    h("td", {}, h("span", { class: "status b-" + b.status }, b.status)),
    h("td", {}, batchProgress(b)),
    h("td", {}, when(b.created_at), b.created_by ? h("div", { class: "muted" }, "by " + b.created_by) : null),
    h("td", {}, b.status === "running"
      ? h("button", { onclick: () => cancelBatch(b.id) }, `Cancel batch ${b.id}`) : null)));
  const table = h("table", {}, h("caption", {}, "Running batches first; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Batch", "Operation", "Filter", "Status", "Progress", "Created", "Actions"]
      .map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7 }, "No batches: POST /batches or flow batch start."))));
  if (render(mine, h("h1", {}, "Batches"), table)) refreshIn(mine, 2000);
}
