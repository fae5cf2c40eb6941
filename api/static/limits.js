// Libero Flow's web page, the concurrency limits: each with its number, the slots held and
// the steps waiting, one limit per key value, and a form that sets or unsets its number.
// Uses the helpers of app.js (h, api, params, go, render, refreshIn, toast), which loads
// after this file and routes "#/limits" and "#/limits/{name}" here.
"use strict";

// A slot a step claims, as the API's waiting_for names it: "payments [acme]", or
// "payments" for a limit without a key (its one count has the key "").
function limitLabel(limit) {
  return limit.key ? `${limit.name} [${limit.key}]` : limit.name;
}

// The number field's text as the body of PUT /limits/{name}, or the problem with it.
// Only what is not a number at all is refused here: a number the API refuses (negative,
// too large, not whole) is sent, so the page shows the API's own words for its rule.
function limitBody(text) {
  const trimmed = text.trim();
  if (!trimmed) return { problem: "Enter a number (0 holds everything back), or use Unset." };
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(trimmed)) return { problem: `Not a number: ${trimmed}` };
  return { body: { limit: Number(trimmed) } };
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function limitLink(name) {
  return h("a", { href: "#/limits/" + encodeURIComponent(name), class: "mono" }, name);
}

function limitNumber(limit) {
  const set = limit.set_at_run_time ? h("span", { class: "muted" }, " (set at run time)") : null;
  if (limit.kind === "rate") {
    if (limit.per_s === null) return h("span", { class: "muted" }, "no rate set");
    return [`${limit.per_s}/s` + (limit.burst > 1 ? `, burst ${limit.burst}` : ""), set];
  }
  if (limit.limit === null) return h("span", { class: "muted" }, "none set");
  return [String(limit.limit), set];
}

async function limitsPage(mine) {
  const { items } = await api("GET", "/limits");
  const rows = items.map(l => h("tr", {},
    h("th", { scope: "row" }, limitLink(l.name)),
    h("td", {}, limitNumber(l)),
    h("td", {}, l.held), h("td", {}, l.waiting), h("td", {}, l.keys)));
  const table = h("table", { class: "limits" }, h("caption", {}, "Per key value: the number is each key's; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Limit", "Number", "Slots held", "Steps waiting", "Key values"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows
      : h("tr", {}, h("td", { colspan: 5 }, "No limit has a number set or a step holding or waiting."))));
  // A named limit nobody uses yet is in no list: open it by name to set its number.
  const name = h("input", { id: "l-name", class: "mono", placeholder: "payments", spellcheck: "false" });
  const open = h("form", { class: "filters limit-open", onsubmit: e => {
      e.preventDefault();
      if (name.value.trim()) go("#/limits/" + encodeURIComponent(name.value.trim()));
    } },
    h("div", {}, h("label", { for: "l-name" }, "Open a limit by name"), name),
    h("button", { type: "submit" }, "Open"));
  if (render(mine, h("h1", {}, "Limits"), table, open)) refreshIn(mine, 2000);
}

async function limitPage(name, mine) {
  const limit = await api("GET", "/limits/" + encodeURIComponent(name));
  const rows = limit.by_key.map(k => h("tr", {},
    h("th", { scope: "row", class: "mono" }, k.key === "" ? h("span", { class: "muted" }, "(no key)") : k.key),
    h("td", {}, k.held), h("td", {}, k.waiting)));
  const table = h("table", { class: "limit-keys" },
    h("caption", {}, "Per key value; this page refreshes itself."),
    h("thead", {}, h("tr", {}, ...["Key value", "Slots held", "Steps waiting"].map(t => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 3 }, "Nothing holds or waits for this limit."))));

  const field = h("input", { id: "l-number", inputmode: "numeric", class: "mono", "aria-describedby": "l-number-error",
    placeholder: limit.limit === null ? "3" : String(limit.limit) });
  const problem = h("div", { id: "l-number-error", class: "error", role: "alert" });
  const put = async (body, done) => {
    try {
      await api("PUT", "/limits/" + encodeURIComponent(name), body);
      toast(done);
      if (document.activeElement) document.activeElement.blur();
      route();
    } catch (error) {
      // Focused, the field also holds the page's refresh back, which would redraw it
      // without the refusal while the user corrects the number.
      problem.textContent = error.message;
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
  };
  const form = h("form", { class: "filters", onsubmit: async e => {
      e.preventDefault();
      problem.textContent = ""; field.removeAttribute("aria-invalid");
      const { body, problem: local } = limitBody(field.value);
      if (local) { problem.textContent = local; field.setAttribute("aria-invalid", "true"); field.focus(); return; }
      await put(body, `${name}: ${body.limit} at a time`);
    } },
    h("div", {}, h("label", { for: "l-number" }, "Number (per key value)"), field, problem),
    h("button", { type: "submit", class: "primary" }, "Set"),
    // Unset: back to the number the definitions give (none for a named limit without one).
    limit.set_at_run_time ? h("button", { type: "button", onclick: () => put({ limit: null }, `${name}: unset`) }, "Unset") : null);
  // A rate limit's rate and burst are set from the API or the CLI, not from this form.
  const setter = limit.kind === "rate"
    ? h("p", { class: "muted" }, `A rate limit: set it with flow limits set ${name} --per-s N --burst N `
      + "(PUT /limits/{name} {per_s, burst}).")
    : form;
  const summary = h("p", { class: "limit-summary" }, limit.kind === "rate" ? "Rate: " : "Number: ", limitNumber(limit), ` · ${limit.held} held · ${limit.waiting} waiting · ${plural(limit.keys, "key value")}`);
  if (render(mine, h("h1", {}, "Limit ", h("span", { class: "mono" }, name)), summary, setter, table,
    h("p", {}, h("a", { href: "#/limits" }, "All limits")))) refreshIn(mine, 2000);
}
