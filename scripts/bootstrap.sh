#!/usr/bin/env bash
# Shared by run_visualize.sh and run_tests.sh: create/update ./.venv and
# install aptviz into it (with the given extras). Sourced, not run.
# Usage: bootstrap_venv [extras]   e.g. bootstrap_venv test
# The plain package and the plots extra need no torch. With extras that need
# torch (test, torch, qwen), torch==2.13.0 (CPU build) is installed first: a
# bare requirement would pull a multi-GB CUDA build.
set -euo pipefail

bootstrap_venv() {
    local extras="${1:-}"
    local root venv py stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv"
    py="${PYTHON:-python3}"
    if [ ! -x "$venv/bin/python" ]; then
        echo "aptviz: creating $venv" >&2
        "$py" -m venv "$venv"
    fi
    if [[ ",$extras," =~ ,(test|torch|qwen), ]] && ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
        echo "aptviz: installing torch==2.13.0" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
    fi
    stamp="$venv/.aptviz-installed${extras:+-$extras}"
    want="$(cksum < "$root/pyproject.toml")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$venv/bin/python" -c "import aptviz" >/dev/null 2>&1; then
        echo "aptviz: installing the project${extras:+ with [$extras]} into $venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root${extras:+[$extras]}"
        echo "$want" > "$stamp"
    fi
}
