#!/usr/bin/env bash
# One GPU, under 5 minutes: the training-step table, images per second and RATIOS line of
# `python -m bench.train_step` on CUDA, first in float32, then with bf16 autocast and
# channels_last. Paste both outputs into BENCHMARKS.md ("Training step" section).
#   bash bench/gpu_check.sh            (PY=path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    "bench/gpu_check.sh: no CUDA device visible; run it on a GPU machine")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# in one process per precision (CUDA peak memory resets per configuration); the neuron loop
# is launch-bound at this batch, so a few timed steps per configuration are enough
common=(--device cuda --arch preact_resnet20 preact_resnet18 --T 5 10 20 --threads 4
        --warmup 2 --repeats 10 --max-seconds 5 --timeout 120)
echo "== float32 =="
"$PY" -m bench.train_step "${common[@]}"
echo "== bf16 autocast + channels_last =="
"$PY" -m bench.train_step "${common[@]}" --amp bf16 --channels-last
