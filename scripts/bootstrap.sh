#!/usr/bin/env bash
# Shared by run_visualize.sh and run_tests.sh: create/update ./.venv and
# install aptviz into it (with the given extras). Sourced, not run.
# Usage: bootstrap_venv [extras]   e.g. bootstrap_venv test
# The plain package and the plots extra need no torch. With extras that need
# torch (test, torch, qwen), torch==2.13.0 (CPU build) is installed first: a
# bare requirement would pull a multi-GB CUDA build.
set -euo pipefail

# pip byte-compiles what it installs (about a third of a fresh venv's install time): without it, where
# PYTHONDONTWRITEBYTECODE is set (some CI images and containers), every command compiled numpy, typer,
# pydantic, torch... from source again on every start (import torch 3.05 s against 1.79 s; aptviz --help 1.4x
# its floor against 1.2x).
PIP_INSTALL=(-m pip install -q --disable-pip-version-check)

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
        "$venv/bin/python" "${PIP_INSTALL[@]}" "torch==2.13.0"
    fi
    stamp="$venv/.aptviz-installed${extras:+-$extras}"
    want="$(cksum < "$root/pyproject.toml")"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$venv/bin/python" -c "import aptviz" >/dev/null 2>&1; then
        echo "aptviz: installing the project${extras:+ with [$extras]} into $venv" >&2
        "$venv/bin/python" "${PIP_INSTALL[@]}" -e "$root${extras:+[$extras]}"
        echo "$want" > "$stamp"
    fi
    # aptviz's own modules too (an editable install leaves them to Python; up-to-date ones are skipped)
    "$venv/bin/python" -m compileall -q "$root/aptviz" >/dev/null || true
}

# The lowest transformers that aptviz[qwen] supports (the lower bound of the transformers requirement in
# pyproject.toml), installed beside the venv's own (newest) one, into .venv/transformers-X.Y.Z: put that folder
# first on PYTHONPATH to run the Qwen tests on the low end. Requirements of that version which the venv does
# not meet (an older tokenizers or huggingface-hub) are installed into the same folder. Installed once, then
# reused. Prints the folder. Usage: target="$(transformers_floor)"
transformers_floor() {
    local root venv low target unmet=""
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv"
    low="$(sed -n 's/.*"transformers>=\([0-9][0-9.]*\)[,"].*/\1/p' "$root/pyproject.toml" | head -n 1)"
    if [ -z "$low" ]; then
        echo "aptviz: pyproject.toml states no lower bound for transformers" >&2
        return 1
    fi
    target="$venv/transformers-$low"
    if [ ! -f "$target/.complete" ]; then
        echo "aptviz: installing transformers==$low into $target" >&2
        rm -rf "$target"
        local -a want=("transformers==$low") more
        local round
        for round in 1 2 3 4; do
            "$venv/bin/python" "${PIP_INSTALL[@]}" --no-deps --upgrade --target "$target" \
                "${want[@]}" >&2 || return 1
            # requirements of what the folder holds that neither it nor the venv meets (e.g. an older
            # huggingface-hub, then that one's own dependencies): into the folder too, until none is left
            unmet="$(PYTHONPATH="$target" "$venv/bin/python" -c '
import sys
from importlib.metadata import PackageNotFoundError, distributions, version
from packaging.requirements import Requirement
for dist in distributions(path=[sys.argv[1]]):
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            ok = req.specifier.contains(version(req.name), prereleases=True)
        except PackageNotFoundError:
            ok = False
        if not ok:
            print(req.name + str(req.specifier))
' "$target" | sort -u)" || return 1
            [ -z "$unmet" ] && break
            mapfile -t more <<< "$unmet"
            echo "aptviz: round $round, and beside it: ${more[*]}" >&2
            want=("${more[@]}")  # the next round adds just these
        done
        if [ -n "$unmet" ]; then
            echo "aptviz: could not meet transformers==$low's requirements in $target: ${unmet//$'\n'/ }" >&2
            return 1
        fi
        touch "$target/.complete"
    fi
    echo "$target"
}
