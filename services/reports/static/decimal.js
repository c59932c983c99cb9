// Exact decimals for the Usage page: JSON numbers are kept as their source text (JSON.parse's
// reviver context) and added as scaled BigInts, so every amount shown is the API's own digits.
"use strict";

function parseExact(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" ? (context && context.source !== undefined ? context.source : String(value)) : value);
}
function toScaled(text) { // "1.25E-3" -> {n: 125n, scale: 5}
  const m = /^(-?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(String(text ?? "0").trim());
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
const decSum = (values) => values.reduce((sum, v) => decAdd(sum, v), "0");
function percent(fraction) { // "0.8125" -> "81.25 %" (a shift of the decimal point, no rounding)
  const { n, scale } = toScaled(fraction);
  return (scale >= 2 ? fromScaled(n, scale - 2) : fromScaled(n * 10n ** BigInt(2 - scale), 0)) + " %";
}
const money = (v) => "$" + plain(v ?? "0");
const count = (v) => plain(v ?? "0").replace(/\B(?=(\d{3})+(?!\d))/g, ",");

if (typeof module !== "undefined") module.exports = { parseExact, plain, decAdd, decSum, percent, money, count };
