#!/usr/bin/env bash
# Visualize APT patches: ./run_visualize.sh [IMAGE_OR_FOLDER ...] [aptviz options]
# With no argument it visualizes sample_images/ into ./visualizations with all three methods.
# Uses `aptviz` from PATH when installed, otherwise bootstraps ./.venv first
# (aptviz with its plots extra, so the demo draws the batch figures too; no torch).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [ "$#" -eq 0 ]; then
    set -- "$here/sample_images" -o ./visualizations -m v1 -m v2:1.0 -m budget:0.3
fi

if command -v aptviz >/dev/null 2>&1; then
    exec aptviz "$@"
fi
source "$here/scripts/bootstrap.sh"
bootstrap_venv plots
exec "$here/.venv/bin/aptviz" "$@"
