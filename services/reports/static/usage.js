// The Usage page: signs in with a key kept in sessionStorage, loads the spend routes in parallel,
// and shows money with the API's exact digits (numbers are kept as their JSON source text).
"use strict";

const KEY_STORE = "tally.key";
const $ = (id) => document.getElementById(id);
let shown = null; // what is on screen, for the CSV export

// ---- exact decimals ------------------------------------------------------------------------
// JSON numbers are read as their source text (JSON.parse's reviver context), never as floats.
function parseExact(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" ? (context && context.source !== undefined ? context.source : String(value)) : value);
}
function toScaled(text) { // "1.25E-3" -> {n: 125n, scale: 5}
  const m = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(String(text).trim());
  if (!m) return { n: 0n, scale: 0 };
  const digits = (m[2] || "0") + (m[3] || "");
  let scale = (m[3] || "").length - parseInt(m[4] || "0", 10);
  let n = BigInt(digits);
  if (scale < 0) { n *= 10n ** BigInt(-scale); scale = 0; }
  return { n: m[1] ? -n : n, scale };
}
function fromScaled(n, scale) { // 125n, 5 -> "0.00125"
  const negative = n < 0n;
  const digits = (negative ? -n : n).toString().padStart(scale + 1, "0");
  let out = scale ? digits.slice(0, -scale) + "." + digits.slice(-scale) : digits;
  if (out.includes(".")) out = out.replace(/0+$/, "").replace(/\.$/, "");
  return (negative && out !== "0" ? "-" : "") + out;
}
const plain = (text) => { const { n, scale } = toScaled(text); return fromScaled(n, scale); };
function decAdd(a, b) {
  const x = toScaled(a), y = toScaled(b);
  const scale = Math.max(x.scale, y.scale);
  return fromScaled(x.n * 10n ** BigInt(scale - x.scale) + y.n * 10n ** BigInt(scale - y.scale), scale);
}
const money = (v) => "$" + plain(v ?? "0");

// ---- dates -----------------------------------------------------------------------------------
const isoDay = (d) => d.toISOString().slice(0, 10);
function defaultRange() {
  const end = new Date();
  const start = new Date(end.getTime() - 29 * 86400000);
  return [isoDay(start), isoDay(end)];
}

// ---- API ---------------------------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_STORE)}`, "Content-Type": "application/json" },
  });
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = parseExact(text).error.message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return parseExact(text);
}

async function load(start, end) {
  const range = `start_date=${start}&end_date=${end}`;
  const [daily, keys, teams, customers, models, tags, logs] = await Promise.all([
    api(`/global/spend/logs?${range}`),
    api(`/global/spend/keys?limit=10&${range}`),
    api(`/global/spend/teams?${range}`),
    api(`/global/spend/end_users`, { method: "POST", body: JSON.stringify({ startTime: start, endTime: end }) }),
    api(`/global/spend/models?limit=10&${range}`),
    api(`/global/spend/tags?${range}`),
    api(`/spend/logs?summarize=false&limit=50&${range}`),
  ]);
  return { start, end, daily, keys, teams: teams.total_spend_per_team, customers: customers.slice(0, 10), models,
           tags: tags.spend_per_tag, logs };
}

// ---- rendering ---------------------------------------------------------------------------------------
function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.append(text); else td.textContent = text ?? "";
  return td;
}
function fill(tableId, rows, columns) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren();
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell("No spend in this range", "empty");
    td.colSpan = columns.length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const [get, cls] of columns) tr.append(cell(get(row), cls));
    body.append(tr);
  }
}
const shortKey = (hash) => (hash ? hash.slice(0, 10) + "…" : "(none)");
function tagList(tags) {
  const span = document.createElement("span");
  for (const tag of tags || []) {
    const t = document.createElement("span");
    t.className = "tag";
    t.textContent = tag;
    span.append(t);
  }
  return span;
}

let chart = null;
function drawChart(daily) {
  const box = $("chart");
  box.replaceChildren();
  if (chart) { chart.destroy(); chart = null; }
  const table = $("daily-table");
  fill("daily-table", daily, [[(r) => r.date], [(r) => money(r.spend), "num"]]);
  if (window.uPlotMissing || typeof window.uPlot !== "function" || !daily.length) {
    table.hidden = false; // no chart library: the same numbers as a table
    return;
  }
  table.hidden = true;
  const xs = daily.map((r) => Date.parse(r.date + "T00:00:00Z") / 1000);
  const ys = daily.map((r) => Number(r.spend)); // floats for drawing only
  chart = new window.uPlot({
    width: Math.max(320, box.clientWidth || 900), height: 240,
    scales: { x: { time: true } },
    axes: [{}, { values: (u, vals) => vals.map((v) => "$" + v) }],
    series: [{}, { label: "Spend (USD)", stroke: "#3559e0", fill: "rgba(53,89,224,.12)", width: 2,
                   value: (u, v, i, idx) => (idx == null ? "–" : money(daily[idx].spend)) }],
  }, [xs, ys], box);
}

function render(data) {
  shown = data;
  const total = data.daily.reduce((sum, r) => decAdd(sum, r.spend), "0");
  $("total-spend").textContent = money(total);
  $("active-days").textContent = String(data.daily.length);
  drawChart(data.daily);
  fill("top-keys", data.keys, [[(r) => r.key_alias || shortKey(r.api_key)], [(r) => money(r.total_spend), "num"]]);
  fill("top-teams", data.teams, [[(r) => r.team_id], [(r) => money(r.total_spend), "num"]]);
  fill("top-customers", data.customers, [[(r) => r.end_user || "(none)"], [(r) => r.total_count, "num"], [(r) => money(r.total_spend), "num"]]);
  fill("top-models", data.models, [[(r) => r.model], [(r) => r.total_tokens, "num"], [(r) => money(r.total_spend), "num"]]);
  fill("top-tags", data.tags, [[(r) => r.name], [(r) => r.log_count, "num"], [(r) => money(r.spend), "num"]]);
  fill("logs", data.logs, [[(r) => String(r.startTime).replace("T", " ").slice(0, 19)], [(r) => r.request_id, "mono"],
    [(r) => shortKey(r.api_key), "mono"], [(r) => r.model], [(r) => r.end_user || ""], [(r) => tagList(r.request_tags)],
    [(r) => r.status], [(r) => money(r.spend), "num"]]);
  document.body.dataset.loaded = `${data.start}..${data.end}`;
}

// ---- CSV export of what is shown ---------------------------------------------------------------------
const CSV_NUMERIC = new Set([2, 3]); // spend_usd and count: computed by Tally (csv.js neutralises the rest)
function exportCsv() {
  if (!shown) return;
  const d = shown;
  const rows = [["section", "name", "spend_usd", "count", "detail"]];
  d.daily.forEach((r) => rows.push(["day", r.date, plain(r.spend), "", ""]));
  d.keys.forEach((r) => rows.push(["key", r.api_key, plain(r.total_spend), "", r.key_alias || ""]));
  d.teams.forEach((r) => rows.push(["team", r.team_id, plain(r.total_spend), "", ""]));
  d.customers.forEach((r) => rows.push(["customer", r.end_user, plain(r.total_spend), r.total_count, ""]));
  d.models.forEach((r) => rows.push(["model", r.model, plain(r.total_spend), r.total_tokens, ""]));
  d.tags.forEach((r) => rows.push(["tag", r.name, plain(r.spend), r.log_count, ""]));
  d.logs.forEach((r) => rows.push(["log", r.request_id, plain(r.spend), "", `${r.startTime} ${r.model} ${(r.request_tags || []).join("|")}`]));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([csvText(rows, CSV_NUMERIC)], { type: "text/csv" }));
  link.download = `tally-usage-${d.start}-to-${d.end}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
}

// ---- wiring ------------------------------------------------------------------------------------------
async function show(start, end) {
  $("status").textContent = "";
  try {
    render(await load(start, end));
  } catch (error) {
    if (error.status === 401 || error.status === 403) return signOut(error.message);
    $("status").textContent = `Could not load spend: ${error.message}`;
  }
}
function signedIn() {
  $("signin").hidden = true;
  $("usage").hidden = false;
  $("range").hidden = false;
  if (!$("start").value) [$("start").value, $("end").value] = defaultRange();
  show($("start").value, $("end").value);
}
function signOut(message) {
  sessionStorage.removeItem(KEY_STORE);
  $("usage").hidden = true;
  $("range").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key").value.trim());
  try {
    await api("/global/spend?start_date=2000-01-01&end_date=2000-01-01");
    $("key").value = "";
    $("signin-error").textContent = "";
    signedIn();
  } catch (error) {
    signOut(error.status === 403 ? "This key may not read spend (it needs get_spend_routes)." : error.message);
  }
});
$("range").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("end").value < $("start").value) { $("status").textContent = "The end date is before the start date."; return; }
  show($("start").value, $("end").value);
});
$("export").addEventListener("click", exportCsv);
$("signout").addEventListener("click", () => signOut(""));
if (sessionStorage.getItem(KEY_STORE)) signedIn();
