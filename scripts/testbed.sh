#!/usr/bin/env bash
# Runs the testbed CLI (scripts/testbed/cli.ts, built by `npm run build`) from the repo root.
# Named testbed.sh because scripts/testbed/ is the module's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node dist/scripts/testbed/cli.js "$@"
