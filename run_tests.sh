#!/usr/bin/env bash
# Install aptviz with its test extras into ./.venv, then run the test suite.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k budget -x
# The suite runs in one process per core, at most 4 (pytest-xdist); APTVIZ_TEST_PROCESSES=N sets how
# many, and -n N (-n 0: one process) among the arguments wins, since pytest takes the last one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/scripts/bootstrap.sh"
bootstrap_venv test
cd "$here"
processes=()
if [[ " $* " != *" no:xdist "* ]]; then
    cores="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
    n="${APTVIZ_TEST_PROCESSES:-$(( cores < 4 ? cores : 4 ))}"
    [ "$n" -gt 1 ] && processes=(-n "$n" --dist worksteal)  # idle workers take tests from busy ones
fi
exec "$here/.venv/bin/python" -m pytest "${processes[@]}" "$@"
