#!/usr/bin/env bash
# One GPU, at most 8 minutes: the training-step table, images per second and RATIOS line of
# `python -m bench.train_step` on CUDA at batch 128, every default variant (DSR fast, exact and
# approx, SpikingJelly's DSR and BPTT, SLTT, OTTT, the no-grad forward) on PreAct-ResNet-20 and
# -18 at T = 5/10/20 in float32, then the T = 20 PreAct-ResNet-18 comparison of fast mode with
# SLTT, SLTT-K (K = 2), OTTT and BPTT under bf16 autocast and channels_last. Paste both outputs
# into BENCHMARKS.md ("Training step" section).
#   bash bench/gpu_check.sh            (PY=path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    "bench/gpu_check.sh: no CUDA device visible; run it on a GPU machine")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# in one process per precision (CUDA peak memory resets per configuration); the neuron loop
# is launch-bound, so a few timed steps per configuration are enough. `timeout` keeps each part
# inside its share of the 8 minutes: rows are printed as they finish, so a cut run still reports
common=(--device cuda --batch 128 --threads 4 --warmup 2 --repeats 5 --max-seconds 3
        --timeout 90)
echo "== float32, batch 128 =="
timeout 360 "$PY" -m bench.train_step "${common[@]}" --arch preact_resnet20 preact_resnet18 \
    --T 5 10 20 || echo "(float32 part stopped: exit $?)"
echo "== bf16 autocast + channels_last, batch 128, PreAct-ResNet-18, T = 20 =="
timeout 100 "$PY" -m bench.train_step "${common[@]}" --arch preact_resnet18 --T 20 \
    --variants fast exact sj-bptt sltt sltt-k2 ottt --amp bf16 --channels-last \
    || echo "(bf16 part stopped: exit $?)"
