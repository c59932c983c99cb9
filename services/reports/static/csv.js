// CSV for spreadsheets, safe to open: a text cell that a spreadsheet would read as a formula
// (starting with = + - @, a tab or a carriage return) is prefixed with a single quote, OWASP's
// rule against CSV injection. Key aliases, team ids, tags, customers and models come from callers.
// Numbers Tally computed (spend, counts) stay numbers: a numeric column's cell is left as it is
// only when it is a plain decimal number, so "-0.5" is still -0.5 but "-1+cmd" is neutralised.
"use strict";

const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

function neutralise(text) {
  return FORMULA_START.test(text) ? "'" + text : text;
}
function csvField(value, numeric) {
  let text = String(value ?? "");
  if (!(numeric && PLAIN_NUMBER.test(text))) text = neutralise(text);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
// rows: arrays of cells; numericColumns: a Set of the column indexes that hold numbers.
function csvText(rows, numericColumns) {
  return rows.map((row) => row.map((v, i) => csvField(v, numericColumns.has(i))).join(",")).join("\n") + "\n";
}

if (typeof module !== "undefined") module.exports = { neutralise, csvField, csvText };
