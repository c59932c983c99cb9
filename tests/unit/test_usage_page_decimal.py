"""The Usage page's exact amounts (services/reports/static/decimal.js, run by Node): JSON numbers
kept as their source text, sums with every digit, percentages by moving the decimal point."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

DECIMAL_JS = Path(__file__).resolve().parents[2] / "services" / "reports" / "static" / "decimal.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (apt-get install nodejs)")


def run(expression: str) -> object:
    """The JSON of `expression`, evaluated with decimal.js's functions in scope."""
    script = (f"const {{ parseExact, plain, decAdd, decSum, percent, money, count }} = require({json.dumps(str(DECIMAL_JS))});"
              f"process.stdout.write(JSON.stringify({expression}));")
    assert NODE is not None
    # Chromium has JSON.parse's source text on by default; Node 20 needs it switched on, and a Node
    # that ships it may no longer know the flag.
    for flags in (["--harmony-json-parse-with-source"], []):
        done = subprocess.run([NODE, *flags, "-e", script], capture_output=True, timeout=30)
        if done.returncode == 0:
            return json.loads(done.stdout)
    raise AssertionError(done.stderr.decode())


def test_json_numbers_keep_their_digits():
    """A 19-digit amount and an exponent survive parsing as text, not as floats."""
    assert run('parseExact(\'{"a": 0.3333333333333333333, "b": 1.5E-7, "c": 12}\')') == \
        {"a": "0.3333333333333333333", "b": "1.5E-7", "c": "12"}


def test_sums_are_exact():
    """0.1 + 0.2 is 0.3, and long amounts add to the last digit."""
    assert run('[decAdd("0.1", "0.2"), decSum(["0.3333333333333333333", "0.1000825", "1E-19"]), plain("1.500")]') == \
        ["0.3", "0.4334158333333333334", "1.5"]


def test_money_counts_and_percentages():
    """Money keeps every digit; counts get thousands separators; a used share is a percentage."""
    assert run('[money("0.00000010"), money("5"), count("1234567"), percent("0.6671"), percent("1"), percent("0.5")]') == \
        ["$0.0000001", "$5", "1,234,567", "66.71 %", "100 %", "50 %"]
