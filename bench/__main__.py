"""`make bench`: run every benchmark under bench/ in turn; each prints its figures and writes
bench/results/<name>.json. `python -m bench proxy ledger` runs only those."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(selected: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if selected:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in selected]
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                failed.append(script.stem)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
