#!/usr/bin/env bash
# Every `mdm-lens bench` benchmark on a GPU within 8 minutes, one JSON (analyses/bench/suite.py).
#
#   scripts/gpu_bench.sh [OUT.json]                   # CUDA required; fails clearly without it
#   scripts/gpu_bench.sh --device cpu [OUT.json]      # dry run with tiny sizes (checks the wiring, no figures)
#   extra options go to the suite: --budget SECONDS, --only fast sae, --size full|tiny
#
# Output: {"device_name", "torch", "cuda", "wall_seconds", "ok", "benches": {name: {"status", "seconds",
# "command", "result"}}}; the exit status is 0 only if every benchmark ran.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
device=cuda
out=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    --*) extra+=("$1"); shift; while [[ $# -gt 0 && "$1" != --* ]]; do extra+=("$1"); shift; done ;;
    *) out="$1"; shift ;;
  esac
done
out="${out:-gpu_bench-$(date -u +%Y%m%dT%H%M%SZ).json}"
if [[ "$device" == cuda* ]] && ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_bench: no CUDA device visible to torch ($(python -c 'import torch; print(torch.__version__)')); run on a GPU machine, or pass --device cpu for a dry run" >&2
  exit 2
fi
exec python -m analyses.bench.suite --device "$device" --out "$out" "${extra[@]+"${extra[@]}"}"
