"""The Usage page's CSV export (services/reports/static/csv.js, run by Node) neutralises cells a
spreadsheet would read as formulas, and leaves the numbers Tally computed as numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

CSV_JS = Path(__file__).resolve().parents[2] / "services" / "reports" / "static" / "csv.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (apt-get install nodejs)")


def csv_text(rows: list[list[object]], numeric: list[int]) -> str:
    """csvText(rows, new Set(numeric)) as the page calls it."""
    script = (f"const {{ csvText }} = require({json.dumps(str(CSV_JS))});"
              f"process.stdout.write(csvText({json.dumps(rows)}, new Set({json.dumps(numeric)})));")
    assert NODE is not None
    # bytes, decoded here: text mode would turn the \r under test into \n
    return subprocess.run([NODE, "-e", script], check=True, capture_output=True, timeout=30).stdout.decode()


@pytest.mark.parametrize("cell, written", [
    ("=HYPERLINK(\"http://x\",\"y\")", "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
    ("+1+2", "'+1+2"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\tleading tab", "'\tleading tab"),
    ("\rleading return", "\"'\rleading return\""),
    ("-5", "'-5"),
    ("team=ops", "team=ops"),
    ("plain alias", "plain alias"),
    ("a,b", "\"a,b\""),
    ("", ""),
])
def test_text_cells_that_start_a_formula_are_prefixed_with_a_quote(cell: str, written: str) -> None:
    """A text cell starting with = + - @ tab or CR gains a leading ' (then CSV quoting); others are kept."""
    assert csv_text([["tag", cell]], []) == f"tag,{written}\n"


def test_numbers_in_numeric_columns_stay_numbers() -> None:
    """Negative or exponent spend and counts Tally computed are written as they are."""
    rows = [["section", "name", "spend_usd", "count"], ["key", "-alias", "-0.0000074", "12"], ["day", "2024-05-01", "1E-7", ""]]
    assert csv_text(rows, [2, 3]) == "section,name,spend_usd,count\nkey,'-alias,-0.0000074,12\nday,2024-05-01,1E-7,\n"


def test_a_formula_in_a_numeric_column_is_neutralised_too() -> None:
    """Only a plain decimal number escapes neutralisation in a numeric column."""
    assert csv_text([["x", "=1+1", "-1+cmd"]], [1, 2]) == "x,'=1+1,'-1+cmd\n"
