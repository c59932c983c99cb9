#!/usr/bin/env bash
# Fetch the Usage page's charting library (uPlot, MIT) from the npm registry into the git-ignored
# services/reports/static/vendor/. Idempotent: does nothing when the pinned version is present.
# The page works without it (it falls back to a plain table), so a failure here is reported, not fatal
# to the caller unless TALLY_VENDOR_STRICT=1.
set -euo pipefail

VERSION="${UPLOT_VERSION:-1.6.32}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/services/reports/static/vendor"
STAMP="$DEST/.uplot-$VERSION"

if [[ -f "$STAMP" && -f "$DEST/uPlot.iife.min.js" && -f "$DEST/uPlot.min.css" ]]; then
    exit 0
fi
fail() {
    echo "vendor_ui: $1 (the Usage page will show tables without a chart)" >&2
    [[ "${TALLY_VENDOR_STRICT:-0}" == "1" ]] && exit 1
    exit 0
}
command -v npm >/dev/null || fail "npm is missing: apt-get install -y npm"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "uplot@$VERSION" >/dev/null 2>"$WORK/npm.err") \
    || fail "npm pack uplot@$VERSION failed: $(tail -n 1 "$WORK/npm.err")"
tar -xzf "$WORK/uplot-$VERSION.tgz" -C "$WORK"
mkdir -p "$DEST"
cp "$WORK/package/dist/uPlot.iife.min.js" "$WORK/package/dist/uPlot.min.css" "$WORK/package/LICENSE" "$DEST/"
rm -f "$DEST"/.uplot-*
touch "$STAMP"
echo "vendor_ui: uPlot $VERSION in $DEST"
