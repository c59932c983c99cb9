// Tables of the Usage page: one builder, the top-N tables (a row's name filters the page), the
// figures per day behind the charts, and the budgets.
"use strict";

const NONE_LABEL = { team: "(no team)", customer: "(no customer)", key: "(no key)", model: "(no model)", tag: "(no tag)" };

function cell(tag, content, cls) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (content instanceof Node) el.append(content); else el.textContent = content ?? "";
  return el;
}

// columns: [{title, num, get(row) -> text | Node, sort?}]; a header cell may hold a Node (a sort button).
function fillTable(table, columns, rows, emptyText) {
  const head = document.createElement("thead");
  const headRow = document.createElement("tr");
  for (const c of columns) {
    const th = cell("th", c.header || c.title, c.num ? "num" : "");
    th.scope = "col";
    if (c.ariaSort) th.setAttribute("aria-sort", c.ariaSort);
    headRow.append(th);
  }
  head.append(headRow);
  const body = document.createElement("tbody");
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell("td", emptyText, "empty");
    td.colSpan = columns.length;
    tr.append(td);
    body.append(tr);
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const c of columns) tr.append(cell("td", c.get(row), c.num ? "num" : c.cls));
    body.append(tr);
  }
  table.replaceChildren(...(table.caption ? [table.caption] : []), head, body);
  return body;
}

function filterButton(dimension, row, onFilter) {
  if (row.name === "" || row.name === "(other)") return document.createTextNode(row.name === "" ? NONE_LABEL[dimension] : row.name);
  const button = cell("button", row.label, "link");
  button.type = "button";
  button.title = `Show only ${dimension} ${row.name}`;
  button.dataset.filter = `${dimension}=${row.name}`;
  button.addEventListener("click", () => onFilter(dimension, dimension === "key" && row.label !== row.name ? row.label : row.name));
  return button;
}

function fillTop(table, rows, onFilter) {
  const dimension = table.dataset.dimension;
  fillTable(table, [
    { title: dimension[0].toUpperCase() + dimension.slice(1), get: (r) => filterButton(dimension, r, onFilter) },
    { title: "Requests", num: true, get: (r) => count(r.api_requests) },
    { title: "Failed", num: true, get: (r) => count(r.failed_requests) },
    { title: "Tokens", num: true, get: (r) => count(decAdd(r.prompt_tokens, r.completion_tokens)) },
    { title: "Spend", num: true, get: (r) => money(r.spend) },
  ], rows, "No spend in this range");
}

function fillDaily(table, usage) {
  const stacks = usage.stacks.map((s, i) => ({ title: `Spend: ${s.label || NONE_LABEL[usage.stack_by]}`, num: true,
                                               get: (r) => money(s.daily[r.index]) }));
  fillTable(table, [
    { title: "Day", get: (r) => r.date },
    { title: "Spend", num: true, get: (r) => money(r.spend) },
    ...stacks,
    { title: "Requests", num: true, get: (r) => count(r.api_requests) },
    { title: "Succeeded", num: true, get: (r) => count(r.successful_requests) },
    { title: "Failed", num: true, get: (r) => count(r.failed_requests) },
    { title: "Input tokens", num: true, get: (r) => count(r.prompt_tokens) },
    { title: "Output tokens", num: true, get: (r) => count(r.completion_tokens) },
    { title: "Cached tokens", num: true, get: (r) => count(r.cache_read_input_tokens) },
  ], usage.daily.map((r, index) => ({ ...r, index })), "No days");
}

const when = (iso) => (iso ? String(iso).replace("T", " ").slice(0, 16) + " UTC" : "—");

function usedCell(row) {
  const wrap = document.createElement("span");
  wrap.className = "used";
  const meter = document.createElement("meter");
  meter.min = 0; meter.max = 1; meter.low = 0.8; meter.high = 0.95; meter.optimum = 0;
  meter.value = row.used == null ? 1 : Math.min(1, Number(row.used));
  meter.setAttribute("aria-label", `${row.name}: share of budget used`);
  wrap.append(meter, document.createTextNode(" " + (row.used == null ? "—" : percent(row.used))));
  return wrap;
}

function fillBudgets(table, rows) {
  fillTable(table, [
    { title: "Kind", get: (r) => r.kind },
    { title: "Name", get: (r) => r.name },
    { title: "Spend", num: true, get: (r) => money(r.spend) },
    { title: "Max budget", num: true, get: (r) => money(r.max_budget) },
    { title: "Used", get: usedCell },
    { title: "Soft budget", num: true, get: (r) => (r.soft_budget == null ? "—" : money(r.soft_budget) + (r.soft_budget_crossed ? " (crossed)" : "")) },
    { title: "Window", get: (r) => r.budget_duration || "—" },
    { title: "Next reset", get: (r) => when(r.budget_reset_at) },
    { title: "Last alert", get: (r) => (r.last_alert ? `${r.last_alert.event.replaceAll("_", " ")}, ${when(r.last_alert.at)}` : "—") },
  ], rows, "No key, team, user or customer has a budget");
}

const BUDGET_CSV_NUMERIC = new Set([3, 4, 5, 6, 7]);
function budgetsCsv(rows) {
  return csvText([["kind", "id", "name", "spend_usd", "max_budget_usd", "remaining_usd", "used_fraction", "soft_budget_usd",
                   "soft_budget_crossed", "budget_duration", "budget_reset_at"],
                  ...rows.map((r) => [r.kind, r.id, r.name, plain(r.spend), plain(r.max_budget), plain(r.remaining),
                                      r.used == null ? "" : plain(r.used), r.soft_budget == null ? "" : plain(r.soft_budget),
                                      String(r.soft_budget_crossed), r.budget_duration || "", r.budget_reset_at || ""])],
                 BUDGET_CSV_NUMERIC);
}

function download(name, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}
