// The Usage page: sign in with a key kept in sessionStorage; the whole view (range, filters,
// stacking, log paging and sorting, the open log) lives in the URL, so a view can be shared and
// reloaded. Panels load in parallel and each says when it is loading, empty or failed.
"use strict";

const KEY_STORE = "tally.key";
const FILTERS = ["team", "key", "model", "customer", "tag"];
const DEFAULTS = { stack_by: "model", logs_page: "1", logs_sort: "startTime", logs_order: "desc", logs_status: "", logs_model: "", request_id: "" };
const LOGS_PAGE_SIZE = 25;
const ISO_DAY = /^\d{4}-\d{2}-\d{2}$/;
const $ = (id) => document.getElementById(id);
let state = {};
let shown = { usage: null, budgets: null, logs: null };
let generation = 0;

// ---- dates (UTC days) ------------------------------------------------------------------------
const utcToday = () => new Date().toISOString().slice(0, 10);
function addDays(iso, n) { const d = new Date(iso + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return d.toISOString().slice(0, 10); }
function presetRange(name, today = utcToday()) {
  const monthStart = today.slice(0, 8) + "01";
  switch (name) {
    case "today": return [today, today];
    case "7d": return [addDays(today, -6), today];
    case "this-month": return [monthStart, today];
    case "last-month": { const lastDay = addDays(monthStart, -1); return [lastDay.slice(0, 8) + "01", lastDay]; }
    default: return [addDays(today, -29), today];
  }
}

// ---- state <-> URL ---------------------------------------------------------------------------
function readState() {
  const q = new URLSearchParams(location.search);
  const [start, end] = presetRange("30d");
  const next = { start_date: start, end_date: end };
  if (ISO_DAY.test(q.get("start_date") || "") && ISO_DAY.test(q.get("end_date") || "") && q.get("start_date") <= q.get("end_date")) {
    next.start_date = q.get("start_date");
    next.end_date = q.get("end_date");
  }
  for (const name of FILTERS) next[name] = (q.get(name) || "").trim();
  for (const [name, value] of Object.entries(DEFAULTS)) next[name] = q.get(name) || value;
  return next;
}
function stateQuery(s = state) {
  const q = new URLSearchParams({ start_date: s.start_date, end_date: s.end_date });
  for (const name of FILTERS) if (s[name]) q.set(name, s[name]);
  for (const [name, value] of Object.entries(DEFAULTS)) if (s[name] && s[name] !== value) q.set(name, s[name]);
  return q.toString();
}
function setState(patch, { logsOnly = false, reload = true } = {}) {
  state = { ...state, ...patch };
  history.pushState(null, "", "/ui?" + stateQuery());
  syncControls();
  if (reload) refresh(logsOnly);
}
// What the panels show (the open log aside): the browser test waits for this after each change.
const viewQuery = () => stateQuery({ ...state, request_id: "" });
window.tallyReady = () => document.body.dataset.loaded === viewQuery();

// ---- API ---------------------------------------------------------------------------------------
async function api(path, params) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_STORE)}` } });
  const text = await response.text();
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try { message = parseExact(text).error.message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return parseExact(text);
}
const filterParams = (names) => Object.fromEntries(names.filter((n) => state[n]).map((n) => [n, state[n]]));

// ---- panels --------------------------------------------------------------------------------------
async function panel(id, gen, load) {
  const section = $(id);
  section.setAttribute("aria-busy", "true");
  section.classList.remove("failed");
  try {
    await load();
  } catch (error) {
    if (gen !== generation) return;
    if (error.status === 401) { signOut(error.message); return; }
    section.classList.add("failed");
    $("status").textContent = `Could not load ${section.getAttribute("aria-label") || section.querySelector("h2").textContent.toLowerCase()}: ${error.message}`;
  } finally {
    if (gen === generation) section.setAttribute("aria-busy", "false");
  }
}

async function loadUsage(gen) {
  const usage = await api("/global/spend/usage", { start_date: state.start_date, end_date: state.end_date,
                                                   stack_by: state.stack_by, ...filterParams(FILTERS) });
  if (gen !== generation) return;
  shown.usage = usage;
  renderUsage(usage);
}
async function loadBudgets(gen) {
  const rows = await api("/global/spend/budgets", filterParams(["team", "key", "customer"]));
  if (gen !== generation) return;
  shown.budgets = rows;
  fillBudgets($("budgets-table"), rows);
}
async function loadLogs(gen) {
  const params = { start_date: state.start_date, end_date: state.end_date, page: state.logs_page, page_size: LOGS_PAGE_SIZE,
                   sort_by: state.logs_sort, sort_order: state.logs_order };
  if (state.logs_status) params.status_filter = state.logs_status;
  if (state.logs_model || state.model) params.model = state.logs_model || state.model;
  if (state.team) params.team_id = state.team;
  if (state.key) params.key = state.key;
  if (state.customer) params.end_user = state.customer;
  if (state.tag) params.tag = state.tag;
  const page = await api("/spend/logs/ui", params);
  if (gen !== generation) return;
  shown.logs = page;
  fillLogs($("logs"), page, state, (sort, order) => setState({ logs_sort: sort, logs_order: order, logs_page: "1" }, { logsOnly: true }),
           openLog);
  $("logs-page").textContent = pagerText(page);
  $("logs-prev").disabled = Number(page.page) <= 1;
  $("logs-next").disabled = Number(page.page) >= Number(page.total_pages);
}

async function refresh(logsOnly = false) {
  const gen = ++generation;
  document.body.dataset.loaded = "";
  $("status").textContent = "";
  const tasks = [panel("logs-card", gen, () => loadLogs(gen))];
  if (!logsOnly) tasks.push(panel("overview", gen, () => loadUsage(gen)), panel("budgets", gen, () => loadBudgets(gen)));
  await Promise.allSettled(tasks);
  if (gen === generation) document.body.dataset.loaded = viewQuery();
}

// ---- rendering ---------------------------------------------------------------------------------------
function renderUsage(usage) {
  const t = usage.totals;
  $("total-spend").textContent = money(t.spend);
  $("total-requests").textContent = count(t.api_requests);
  $("total-failed").textContent = count(t.failed_requests);
  $("total-tokens").textContent = `${count(t.prompt_tokens)} / ${count(t.completion_tokens)} / ${count(t.cache_read_input_tokens)}`;
  $("tag-note").hidden = usage.stack_by !== "tag";
  drawUsageCharts(usage);
  fillDaily($("daily-table"), usage);
  $("daily-details").open = $("daily-details").open || !chartsAvailable();
  const onFilter = (dimension, value) => setState({ [dimension]: value, logs_page: "1" });
  for (const [name, rows] of Object.entries(usage.top)) {
    fillTop($(`top-${name}`), rows, onFilter);
    const list = $(`l-${$(`top-${name}`).dataset.dimension}`);
    list.replaceChildren(...rows.filter((r) => r.name).map((r) => Object.assign(document.createElement("option"), { value: r.label })));
  }
}

function drawUsageCharts(usage) {
  const days = usage.daily.map((d) => d.date);
  drawChart("chart-spend", { days, bars: true, stacked: true, unit: "$", format: money, height: 260,
    series: usage.stacks.map((s, i) => ({ label: s.label || NONE_LABEL[usage.stack_by], values: s.daily,
                                          colour: colourFor(i, s.name, "(other)") })) });
  drawChart("chart-requests", { days, bars: true, stacked: true, format: count, series: [
    { label: "Succeeded", values: usage.daily.map((d) => d.successful_requests), colour: PALETTE[2] },
    { label: "Failed", values: usage.daily.map((d) => d.failed_requests), colour: PALETTE[7] }] });
  drawChart("chart-tokens", { days, format: count, series: [
    { label: "Input", values: usage.daily.map((d) => d.prompt_tokens), colour: PALETTE[0] },
    { label: "Output", values: usage.daily.map((d) => d.completion_tokens), colour: PALETTE[1] },
    { label: "Cached", values: usage.daily.map((d) => d.cache_read_input_tokens), colour: PALETTE[4] }] });
}

function syncControls() {
  $("start").value = state.start_date;
  $("end").value = state.end_date;
  for (const name of FILTERS) $(`f-${name}`).value = state[name];
  $("stack-by").value = state.stack_by;
  $("logs-status").value = state.logs_status;
  $("logs-model").value = state.logs_model;
  const chips = FILTERS.filter((n) => state[n]).map((name) => {
    const li = cell("li", `${name}: ${state[name]} `);
    const remove = cell("button", "×", "chip-remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove the ${name} filter`);
    remove.addEventListener("click", () => setState({ [name]: "", logs_page: "1" }));
    li.append(remove);
    return li;
  });
  $("active-filters").replaceChildren(...chips);
}

async function openLog(requestId, { push = true } = {}) {
  if (push) setState({ request_id: requestId }, { reload: false });
  try {
    const rows = await api("/spend/logs", { request_id: requestId });
    if (!rows.length) throw new Error(`no spend log ${requestId} for this key`);
    showDetail($("log-detail"), $("detail-fields"), rows[0]);
  } catch (error) {
    $("status").textContent = `Could not open the log: ${error.message}`;
  }
}

// ---- CSV of what is shown ------------------------------------------------------------------------------
const CSV_NUMERIC = new Set([2, 3]);
function exportCsv() {
  const u = shown.usage;
  if (!u) return;
  const rows = [["section", "name", "spend_usd", "count", "detail"]];
  u.daily.forEach((r) => rows.push(["day", r.date, plain(r.spend), r.api_requests, `failed=${r.failed_requests}`]));
  u.stacks.forEach((s) => rows.push([`stack:${u.stack_by}`, s.name, plain(s.spend), "", s.label]));
  for (const [name, list] of Object.entries(u.top)) list.forEach((r) => rows.push([name.replace(/s$/, ""), r.name, plain(r.spend), r.api_requests, r.label]));
  (shown.logs?.data || []).forEach((r) => rows.push(["log", r.request_id, plain(r.spend), r.total_tokens,
                                                       `${r.startTime} ${r.model} ${(r.request_tags || []).join("|")}`]));
  download(`tally-usage-${u.start_date}-to-${u.end_date}.csv`, csvText(rows, CSV_NUMERIC));
}

// ---- sign-in and wiring ------------------------------------------------------------------------------------
function signedIn() {
  $("signin").hidden = true;
  $("usage").hidden = false;
  $("signout").hidden = false;
  state = readState();
  syncControls();
  refresh();
  if (state.request_id) openLog(state.request_id, { push: false });
}
function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  $("usage").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value.trim());
  try {
    await api("/global/spend", { start_date: "2000-01-01", end_date: "2000-01-01" });
    $("key").value = "";
    $("signin-error").textContent = "";
    signedIn();
  } catch (error) {
    signOut(error.status === 403 ? "This key may not read spend (it needs get_spend_routes)." : error.message);
  }
});
$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("end").value < $("start").value) { $("status").textContent = "The end date is before the start date."; return; }
  const patch = { start_date: $("start").value, end_date: $("end").value, logs_page: "1" };
  for (const name of FILTERS) patch[name] = $(`f-${name}`).value.trim();
  setState(patch);
});
for (const button of document.querySelectorAll("[data-preset]")) {
  button.addEventListener("click", () => {
    const [start, end] = presetRange(button.dataset.preset);
    setState({ start_date: start, end_date: end, logs_page: "1" });
  });
}
$("clear-filters").addEventListener("click", () => setState({ ...Object.fromEntries(FILTERS.map((n) => [n, ""])), logs_page: "1" }));
$("stack-by").addEventListener("change", () => setState({ stack_by: $("stack-by").value }));
$("logs-status").addEventListener("change", () => setState({ logs_status: $("logs-status").value, logs_page: "1" }, { logsOnly: true }));
$("logs-model").addEventListener("change", () => setState({ logs_model: $("logs-model").value.trim(), logs_page: "1" }, { logsOnly: true }));
$("logs-prev").addEventListener("click", () => setState({ logs_page: String(Number(state.logs_page) - 1) }, { logsOnly: true }));
$("logs-next").addEventListener("click", () => setState({ logs_page: String(Number(state.logs_page) + 1) }, { logsOnly: true }));
$("detail-close").addEventListener("click", () => $("log-detail").close());
$("log-detail").addEventListener("close", () => { if (state.request_id) setState({ request_id: "" }, { reload: false }); });
$("export").addEventListener("click", exportCsv);
$("budgets-csv").addEventListener("click", () => shown.budgets && download("tally-budgets.csv", budgetsCsv(shown.budgets)));
$("signout").addEventListener("click", () => signOut(""));
window.addEventListener("popstate", () => {
  if ($("usage").hidden) return;
  state = readState();
  syncControls();
  refresh();
});
let resizing = null;
window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(resizeCharts, 100); });
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => shown.usage && drawUsageCharts(shown.usage));
if (sessionStorage.getItem(KEY_STORE)) signedIn();
