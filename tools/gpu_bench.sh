#!/usr/bin/env bash
# `colorprop bench` GPU rows on the machine this runs on, as is: no network (the bench synthesises its
# plates; the networks are the shipped weights), 720p, 1080p and 4K, fp32 and bf16, 3 timed runs each.
#
#   tools/gpu_bench.sh                 # -> out/bench_gpu.json, and the table on stdout
#   OUT=/tmp/gpu tools/gpu_bench.sh    # the JSON under another folder
#
# Python: $PYTHON, else the repository's .venv (made by `make venv-cuda`: docs/SERVER.md, 'A GPU server').
# Exits 2 with one line saying what is missing when this torch or this machine has no usable CUDA GPU.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
out="${OUT:-out}"
if [ ! -x "$py" ]; then
    echo "gpu_bench: no Python at $py: run \`make venv-cuda\` in $repo first, or set PYTHON" >&2
    exit 2
fi
# The same check `--device cuda` gets (colorprop.engine.devices): a CPU-only torch, no visible device.
"$py" - <<'PY' || exit 2
import sys

import torch

from colorprop.engine.devices import check_device
from colorprop.errors import InputError

try:
    check_device("cuda", "--device")
except InputError as err:
    sys.exit(f"gpu_bench: no GPU rows can be measured here: {err}")
print(f"gpu_bench: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}",
      file=sys.stderr)
PY
mkdir -p "$out"
exec "$py" -m colorprop bench --device cuda --sizes 1280x720,1920x1080,3840x2160 --repeats 3 \
    --precisions fp32,bf16 --json "$out/bench_gpu.json"
