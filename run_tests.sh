#!/usr/bin/env bash
# Install aptviz with its test extras into ./.venv, then run the test suite.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k budget -x
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/scripts/bootstrap.sh"
bootstrap_venv test
cd "$here"
exec "$here/.venv/bin/python" -m pytest "$@"
