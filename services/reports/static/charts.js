// The Usage page's charts: uPlot bars and lines over a day-index x axis (0 .. days-1), so the axis
// holds exactly the chosen range's days, whatever the data, and labels are the days' own dates.
// Heights are floats for drawing only; the legend (hover) shows each day's exact amounts.
"use strict";

const PALETTE = ["#3559e0", "#e0731b", "#1b9e77", "#c2185b", "#7b5cd6", "#8c6d1f", "#0f8fb0", "#d03b3b"];
const OTHER_COLOUR = "#8a94a6";
const charts = {};

function themeColour(name) { return getComputedStyle(document.body).getPropertyValue(name).trim() || "#888"; }

// Evenly stepped days from the first, and the last day always (the step before it is dropped
// when the two would crowd), as many as the width has room for.
function dayTicks(days, width) {
  const n = days.length;
  const room = Math.max(2, Math.floor(width / 96));
  if (n <= room) return days.map((_, i) => i);
  const step = Math.ceil((n - 1) / (room - 1));
  const ticks = [];
  for (let i = 0; i < n - 1; i += step) ticks.push(i);
  if (ticks.length > 1 && n - 1 - ticks[ticks.length - 1] < step) ticks.pop();
  ticks.push(n - 1);
  return ticks;
}

function chartsAvailable() { return !window.uPlotMissing && typeof window.uPlot === "function"; }

// spec: {days: ["2026-11-04", ...], series: [{label, values: [exact strings], colour}], stacked, bars, unit}
function drawChart(boxId, spec) {
  const box = document.getElementById(boxId);
  if (charts[boxId]) { charts[boxId].destroy(); delete charts[boxId]; }
  box.replaceChildren();
  if (!chartsAvailable()) return;
  const n = spec.days.length;
  const xs = spec.days.map((_, i) => i);
  const floats = spec.series.map((s) => s.values.map(Number));
  let drawn = floats;
  if (spec.stacked) { // series i is drawn as the sum of series 0..i, the tallest first so all show
    drawn = floats.map((_, i) => xs.map((x) => floats.slice(0, i + 1).reduce((sum, f) => sum + f[x], 0)));
  }
  const order = spec.stacked ? [...spec.series.keys()].reverse() : [...spec.series.keys()];
  const ink = themeColour("--ink"), grid = themeColour("--line");
  const width = Math.max(280, box.clientWidth || 900);
  const format = spec.format || ((v) => v);
  const bars = spec.bars && window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 48] }) : undefined;
  charts[boxId] = new window.uPlot({
    width, height: spec.height || 220,
    padding: [12, 44, 0, 0], // room for the last day's label
    legend: { live: true },
    cursor: { points: { show: !spec.bars } },
    scales: { x: { time: false, range: () => [-0.5, n - 0.5] } },
    axes: [
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
        splits: (u) => dayTicks(spec.days, u.bbox.width / devicePixelRatio),
        values: (u, splits) => {
          const labels = splits.map((i) => spec.days[i] ?? "");
          box.dataset.xLabels = JSON.stringify(labels);
          return labels;
        } },
      { stroke: ink, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 64,
        values: (u, vals) => vals.map((v) => (spec.unit === "$" ? "$" : "") + v.toLocaleString("en-US", { maximumSignificantDigits: 4 })) },
    ],
    series: [
      { label: "Day", value: (u, v) => (v == null ? "–" : spec.days[v] ?? "–") },
      ...order.map((i) => {
        const s = spec.series[i];
        return { label: s.label, stroke: s.colour, fill: spec.bars ? s.colour : undefined, width: spec.bars ? 0 : 2,
                 paths: bars, points: { show: false },
                 value: (u, v, si, idx) => (idx == null ? "–" : format(s.values[idx])) };
      }),
    ],
  }, [xs, ...order.map((i) => drawn[i])], box);
  box.dataset.drawn = String(n);
}

function colourFor(index, name, otherName) {
  return name === otherName ? OTHER_COLOUR : PALETTE[index % PALETTE.length];
}

function resizeCharts() {
  for (const [id, chart] of Object.entries(charts)) {
    const box = document.getElementById(id);
    chart.setSize({ width: Math.max(280, box.clientWidth), height: chart.height });
  }
}
