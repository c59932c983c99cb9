#!/usr/bin/env bash
# Placeholder until the Usage page lands: fetch its charting library from the npm registry.
exit 0
