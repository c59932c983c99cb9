#!/usr/bin/env bash
# Fetch the Usage page's charting library (uPlot, MIT) from the npm registry into the git-ignored
# services/reports/static/vendor/, and axe-core (MPL-2.0; the browser test's accessibility check)
# unless TALLY_VENDOR_AXE=0 (the Docker image leaves it out). Idempotent: a pinned version already
# present is not fetched again. The page works without uPlot (it shows its figures as tables), so a
# failure is reported, not fatal to the caller, unless TALLY_VENDOR_STRICT=1.
set -euo pipefail

UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
AXE_VERSION="${AXE_VERSION:-4.10.3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/services/reports/static/vendor"

fail() {
    echo "vendor_ui: $1" >&2
    [[ "${TALLY_VENDOR_STRICT:-0}" == "1" ]] && exit 1
    exit 0
}

# fetch <package> <version> <stamp name> <file in the package>... : copies the files into $DEST.
fetch() {
    local package="$1" version="$2" name="$3" stamp="$DEST/.$3-$2"
    shift 3
    local present=1 file
    for file in "$@"; do [[ -f "$DEST/$(basename "$file")" ]] || present=0; done
    [[ -f "$stamp" && "$present" == 1 ]] && return 0
    command -v npm >/dev/null || fail "npm is missing: apt-get install -y npm (the Usage page will show tables without a chart)"
    local work
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent "$package@$version" >/dev/null 2>"$work/npm.err") \
        || { rm -rf "$work"; fail "npm pack $package@$version failed"; }
    tar -xzf "$work"/*.tgz -C "$work"
    mkdir -p "$DEST"
    for file in "$@"; do cp "$work/package/$file" "$DEST/"; done
    rm -f "$DEST/.$name"-*
    touch "$stamp"
    rm -rf "$work"
    echo "vendor_ui: $package $version in $DEST"
}

fetch uplot "$UPLOT_VERSION" uplot dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE
if [[ "${TALLY_VENDOR_AXE:-1}" != "0" ]]; then
    fetch axe-core "$AXE_VERSION" axe axe.min.js
fi
