#!/usr/bin/env bash
# One short GPU allocation of the gpu_synth profile, from a bare checkout: nothing
# installed but torch, torchvision, numpy, pillow, pandas, matplotlib and tqdm; Python
# 3.11 or 3.12; pycocotools from a carried wheel where it is missing; no papermill or
# jupyter (the time box imports neither). docs/GPU.md has the arithmetic of the minutes.
#
#   scripts/gpu_allocation.sh [MINUTES] [OUT]
#
# MINUTES (default 8.5) hold for everything, data generation included; OUT (default
# $OUT, else /tmp/ocd-allocation) receives records.tar.gz (the finished runs' records,
# well under 16 MB), timebox.md/json (what ran, what did not and why), keypoints.png,
# command.log and, where nvidia-smi is there, gpu-utilisation-dmon.log. Wheels in
# $WHEELS (default .whl/) are installed first into /tmp/ocd-site. PROFILE=smoke runs
# the same path in seconds on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-8.5}
DEST=${2:-${OUT:-/tmp/ocd-allocation}}
PY=${PYTHON:-python3}
PROFILE=${PROFILE:-gpu_synth}
mkdir -p "$DEST"
WHEELS=${WHEELS:-.whl}
if ! "$PY" -c "import pycocotools" 2>/dev/null && compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/ocd-site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/ocd-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OCDLIB_DATA=${OCDLIB_DATA:-/tmp/ocd/data} OCDLIB_RUNS=${OCDLIB_RUNS:-/tmp/ocd/runs}
"$PY" -c "import ocdlib, sys; print('ocdlib from', ocdlib.__file__, 'on Python', sys.version.split()[0])"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi dmon -s um -d 5 >"$DEST/gpu-utilisation-dmon.log" 2>&1 &
    DMON=$!
    trap 'kill $DMON 2>/dev/null || true' EXIT
fi
"$PY" -m ocdlib reproduce --profile "$PROFILE" --minutes "$MINUTES" --out "$DEST" 2>&1 \
    | tee "$DEST/command.log"
