#!/usr/bin/env bash
# The quality gate: what CI runs, runnable on a developer's machine.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
make test
echo "quality gate passed in $(( $(date +%s) - start ))s"
