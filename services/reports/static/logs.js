// The spend logs panel: one page of /spend/logs/ui at a time, sortable by its column headers, and
// a dialog with every column of a log.
"use strict";

const LOG_SORTS = { startTime: "Time (UTC)", model: "Model", total_tokens: "Tokens", request_duration_ms: "Latency", spend: "Spend" };
// The detail dialog's order; any other column the API adds follows at the end.
const DETAIL_ORDER = [
  "request_id", "status", "call_type", "startTime", "endTime", "completionStartTime", "request_duration_ms",
  "api_key", "user", "team_id", "end_user", "organization_id", "session_id", "requester_ip_address",
  "model", "model_group", "model_id", "custom_llm_provider", "api_base", "priced_model", "catalog_version", "unpriced",
  "prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens",
  "total_tokens", "spend", "cache_hit", "cache_key", "request_tags", "metadata",
];
const MONEY_FIELDS = new Set(["spend"]);

function tagList(tags) {
  const span = document.createElement("span");
  for (const tag of Array.isArray(tags) ? tags : []) span.append(cell("span", tag, "tag"));
  return span;
}
const stamp = (t) => String(t ?? "").replace("T", " ").slice(0, 19);
const shortKey = (hash) => (hash ? hash.slice(0, 10) + "…" : "(none)");

function sortHeader(column, state, onSort) {
  const button = cell("button", LOG_SORTS[column], "sort");
  button.type = "button";
  const active = state.logs_sort === column;
  button.textContent += active ? (state.logs_order === "asc" ? " ▲" : " ▼") : "";
  button.addEventListener("click", () => onSort(column, active && state.logs_order === "desc" ? "asc" : "desc"));
  return { header: button, ariaSort: active ? (state.logs_order === "asc" ? "ascending" : "descending") : "none" };
}

function openButton(row, onOpen) {
  const button = cell("button", row.request_id, "link mono");
  button.type = "button";
  button.title = "Open this log";
  button.addEventListener("click", (event) => { event.stopPropagation(); onOpen(row.request_id); });
  return button;
}

function fillLogs(table, page, state, onSort, onOpen) {
  const sortable = (column, rest) => ({ ...rest, ...sortHeader(column, state, onSort) });
  const body = fillTable(table, [
    sortable("startTime", { get: (r) => stamp(r.startTime) }),
    { title: "Request", get: (r) => openButton(r, onOpen) },
    { title: "Key", get: (r) => shortKey(r.api_key), cls: "mono" },
    sortable("model", { get: (r) => r.model }),
    { title: "Customer", get: (r) => r.end_user || "" },
    { title: "Tags", get: (r) => tagList(r.request_tags) },
    { title: "Status", get: (r) => r.status },
    sortable("total_tokens", { num: true, get: (r) => count(r.total_tokens) }),
    sortable("request_duration_ms", { num: true, get: (r) => (r.request_duration_ms == null ? "—" : `${count(r.request_duration_ms)} ms`) }),
    sortable("spend", { num: true, get: (r) => money(r.spend) }),
  ], page.data, "No spend logs match");
  [...body.rows].forEach((tr, i) => {
    if (!page.data[i]) return;
    tr.classList.add("clickable");
    tr.addEventListener("click", () => onOpen(page.data[i].request_id));
  });
}

function detailValue(name, value) {
  if (value === null || value === undefined || value === "") return cell("span", "—", "muted");
  if (MONEY_FIELDS.has(name)) return cell("span", money(value));
  if (name === "request_tags") return tagList(value);
  if (typeof value === "object") return cell("pre", JSON.stringify(value, null, 2));
  return cell("span", String(value), name.endsWith("_id") || name === "api_key" || name === "api_base" ? "mono" : "");
}

function showDetail(dialog, fields, row) {
  const items = [];
  const add = (name, label, node) => { items.push(cell("dt", label), cell("dd", node)); items[items.length - 1].dataset.field = name; };
  const names = [...DETAIL_ORDER.filter((n) => n in row), ...Object.keys(row).filter((n) => !DETAIL_ORDER.includes(n))];
  const meta = row.metadata && typeof row.metadata === "object" ? row.metadata : {};
  if (meta.error_information) add("error", "error", detailValue("error", meta.error_information));
  for (const name of names) {
    add(name, name, detailValue(name, row[name]));
    if (name === "spend" && meta.cost_breakdown) {
      for (const [part, amount] of Object.entries(meta.cost_breakdown)) add(`cost_breakdown.${part}`, `  cost: ${part}`, cell("span", money(amount)));
    }
  }
  fields.replaceChildren(...items);
  if (!dialog.open) dialog.showModal();
}

// Numbers arrive as their JSON text (decimal.js): compare them as numbers.
function pagerText(page) {
  const [total, number, size] = [Number(page.total), Number(page.page), Number(page.page_size)];
  if (!total) return "No logs";
  const first = (number - 1) * size + 1;
  const last = Math.min(total, number * size);
  return `${count(first)}–${count(last)} of ${count(page.total)} · page ${page.page} of ${page.total_pages}`;
}
