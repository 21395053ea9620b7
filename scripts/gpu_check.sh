#!/usr/bin/env bash
# The GPU box check, one script: install, run the tests marked `cuda`, then measure yolov5s training at 640 px
# with 16-mixed and bf16-mixed beside YOLOv5's train.py (float16 AMP) on the same GPU: images/s, peak GPU memory,
# mean GPU utilisation and loader wait per step (does the loader keep the GPU busy?). About 6-8 minutes on one
# CUDA GPU with 16 CPU cores.
#
#   bash scripts/gpu_check.sh                                  # lightning_yolo alone
#   YOLOV5=/path/to/yolov5 bash scripts/gpu_check.sh           # beside an upstream YOLOv5 checkout
#
# Settings (environment variables):
#   PYTHON         interpreter holding a CUDA build of torch (default: python3)
#   INSTALL        1: pip install the project first (default), 0: use what is installed
#   WHEELS         a folder of wheels: install from it alone (offline machines)
#   YOLOV5         an upstream YOLOv5 checkout; without it the YOLOv5 side is skipped
#   YOLOV5_PYTHON  interpreter for YOLOv5 (default: $PYTHON)
#   DATA           dataset yaml (default: ../shared coco128 when present, else the built-in synthetic set)
#   GPU            GPU index (default 0); BATCH (64), WORKERS (8), SKIP (10), BATCHES (60), REPEAT (32)
#   OUT_DIR        logs and results (default: runs/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
YOLOV5_PYTHON=${YOLOV5_PYTHON:-$PYTHON}
GPU=${GPU:-0}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-8}
SKIP=${SKIP:-10}
BATCHES=${BATCHES:-60}
REPEAT=${REPEAT:-32}
OUT_DIR=${OUT_DIR:-runs/gpu_check}
WORK_DIR="$OUT_DIR/work"
mkdir -p "$OUT_DIR" "$WORK_DIR"
export WANDB_MODE=disabled PYTHONUNBUFFERED=1 BENCH_GPU_INDEX=$GPU
status=0
step() { echo; echo "== $(date +%T) $*"; }

step "device"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "error: $PYTHON has no CUDA device (torch.cuda.is_available() is False); this script measures a GPU" >&2
    exit 2
fi
nvidia-smi -L || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name($GPU))"

if [ "${INSTALL:-1}" = 1 ]; then
    step "install"
    if [ -n "${WHEELS:-}" ]; then
        "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" -e '.[dev]' || exit 2
    else
        "$PYTHON" -m pip install -q -e '.[dev]' || exit 2
    fi
fi

step "tests marked cuda"
"$PYTHON" -m pytest -q -m cuda -p no:cacheprovider tests 2>&1 | tee "$OUT_DIR/tests_cuda.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "dataset"
if [ -z "${DATA:-}" ]; then
    if [ -f ../shared/data/coco128/coco128.yaml ]; then
        DATA=../shared/data/coco128/coco128.yaml
    else
        DATA=$("$PYTHON" -c "from lightning_yolo.data.synthetic import generate_synthetic_dataset as g; \
print(g('$WORK_DIR/synthetic', sizes={'train': 512, 'val': 16}, seed=0))")
    fi
fi
echo "data: $DATA (x$REPEAT)"

bench() {  # side precision
    local log="$OUT_DIR/train_$1_$2.log" python=$PYTHON
    [ "$1" = yolov5 ] && python=$YOLOV5_PYTHON
    "$python" scripts/bench_train.py --side "$1" --cfg yolov5s.yaml --imgsz 640 --batch-size "$BATCH" \
        --workers "$WORKERS" --device "$GPU" --precision "$2" --skip "$SKIP" --batches "$BATCHES" --epochs 3 \
        --data "$DATA" --repeat "$REPEAT" --work-dir "$WORK_DIR" --yolov5 "${YOLOV5:-none}" >"$log" 2>&1
    local rc=$?
    grep '^RESULT ' "$log" | tail -1 | sed "s/^RESULT /RESULT $1 $2 /" >>"$OUT_DIR/results.txt"
    [ $rc = 0 ] || { echo "$1 $2: failed (exit $rc), see $log"; status=1; }
}

step "training throughput: yolov5s, 640 px, batch $BATCH, $WORKERS loader workers"
: >"$OUT_DIR/results.txt"
bench ours 16-mixed
bench ours bf16-mixed
if [ -n "${YOLOV5:-}" ]; then
    bench yolov5 16-mixed
else
    echo "YOLOV5 is not set: the YOLOv5 side is skipped"
fi

step "summary"
"$PYTHON" - "$OUT_DIR/results.txt" <<'EOF'
import json
import sys

rows = []
for line in open(sys.argv[1]):
    _, side, precision, payload = line.split(" ", 3)
    rows.append((side, precision, json.loads(payload)))
print(f"{'side':8s} {'precision':11s} {'img/s':>8s} {'GPU util %':>10s} {'loader wait ms/step':>20s} {'peak GiB':>9s}")
for side, precision, r in rows:
    label = "fp16 AMP" if side == "yolov5" else precision
    print(
        f"{side:8s} {label:11s} {r['images_per_s']:8.1f} {r.get('gpu_util_mean', float('nan')):10.0f} "
        f"{r['loader_wait_ms_per_step']:20.1f} {r.get('gpu_peak_allocated_gib', float('nan')):9.2f}"
    )
speeds = {(s, p): r["images_per_s"] for s, p, r in rows}
reference = next((v for (s, _), v in speeds.items() if s == "yolov5"), None)
if reference:
    for (side, precision), value in speeds.items():
        if side == "ours":
            print(f"lightning_yolo {precision} / YOLOv5: {value / reference:.2f}x images/s")
EOF
exit $status
