#!/usr/bin/env bash
# A GPU rehearsal in one command: throughput bench, a 200-step roberta-base training, predict.py and the page's
# latency, in one table (`--help` for the options; `--allow_cpu` runs the same steps scaled down on a CPU).
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"
