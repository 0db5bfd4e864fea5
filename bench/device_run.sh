#!/usr/bin/env bash
# The full profile on one GPU in one command that ends within 9 minutes: every lesson's wall time,
# peak host memory and peak GPU memory (random ImageNet weights: the full profile's Xception /
# VGG16 weights need a download; time and memory do not depend on the weights), then the methods'
# bench on Xception with each method's GPU memory. Results go to $OUT (default build/bench-results/).
#
#     bash bench/device_run.sh              # on a machine with a GPU; PYTHON=... for another interpreter
#     bash bench/device_run.sh --dry-run    # the same steps on a CPU, small: smoke profile, lesson 01,
#                                           # two methods; checks that the script works, measures nothing
#
# Order and time, under DEADLINE_S (default 540 s) so that the whole fits one 10-minute command:
# lesson 03 first (the one that once passed 23 GB; up to 150 s), then the other lessons (what is
# left but 200 s), then the methods (the rest). notebook_times.py rewrites its JSON after every
# lesson, so a lesson cut off by the deadline is missing from the results, never a finished one. Output files (8 at most): gpu.txt,
# notebook_times_03.json, notebook_times_others.json, notebook_times.txt, methods.txt, log.txt.
#
# Needs: a Python with the course's requirements (TensorFlow seeing the GPU), and the ImageNet
# class index in a Keras cache ($COURSEKIT_OFFLINE_CACHE, or shared/offline-assets/keras or
# ../shared/offline-assets/keras when there is one) or the internet; lesson 09's stimuli likewise
# ($COURSEKIT_TEXTURE_SHAPE_DIR, or offline-assets/texture-vs-shape beside the cache). A GPU image
# without TensorFlow (one built for PyTorch, say) needs the course's requirements installed first.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
case "${1:-}" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    "") ;;
    *) echo "usage: bash bench/device_run.sh [--dry-run]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-build/bench-results}
DEADLINE_S=${DEADLINE_S:-540}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
for assets in shared/offline-assets ../shared/offline-assets; do
    if [ -z "${COURSEKIT_OFFLINE_CACHE:-}" ] && [ -d "$assets/keras" ]; then
        export COURSEKIT_OFFLINE_CACHE="$(cd "$assets/keras" && pwd)"
    fi
    if [ -z "${COURSEKIT_TEXTURE_SHAPE_DIR:-}" ] && [ -d "$assets/texture-vs-shape" ]; then
        export COURSEKIT_TEXTURE_SHAPE_DIR="$(cd "$assets/texture-vs-shape" && pwd)"   # lesson 09's stimuli
    fi
done
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

left() {   # seconds left before the deadline, minus a reserve for what still follows
    echo $(( DEADLINE_S - SECONDS - $1 ))
}

if [ "$DRY_RUN" = 1 ]; then
    PROFILE=smoke; FIRST=01; OTHERS=(); WEIGHTS=(); METHODS_ARGS=(--model mobilenet_v2 --images 2 --rounds 1
                                                                  --only smoothgrad grad_cam_plus_plus)
    echo "device_run.sh --dry-run: smoke profile, lesson 01 and two methods on a CPU (nothing is measured for the README)"
else
    PROFILE=full; FIRST=03; OTHERS=(01 02 04 05 06 07 08 09); WEIGHTS=(--random-weights)
    METHODS_ARGS=(--model xception --images 6 --rounds 3)
    "$PYTHON" -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); print('GPUs:', gpus); sys.exit(0 if gpus else 1)" \
        || { echo "device_run.sh: TensorFlow sees no GPU; nothing measured (--dry-run tries the steps on a CPU)." >&2; exit 1; }
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
fi

# 1. The lessons in the profile (a lesson whose host memory passes 12 GB is killed and reported).
#    Lesson 03 gets up to 150 s; the others what is left but 200 s for the methods.
times() {   # times SECONDS JSON ONLY...
    local limit=$1 json=$2; shift 2
    if [ "$limit" -lt 30 ]; then echo "device_run.sh: no time left for lessons $*"; return; fi
    timeout --kill-after=10 "$limit" "$PYTHON" bench/notebook_times.py --profiles "$PROFILE" "${WEIGHTS[@]}" \
        --kill-above-gb 12 --only "$@" --json "$json" --markdown 2>&1 \
        | grep -v "Kernel is running over TCP" | tee -a "$OUT/notebook_times.txt"
    echo "device_run.sh: lessons $* ended with status ${PIPESTATUS[0]} after ${SECONDS} s"
}
times "$(( DEADLINE_S < 300 ? DEADLINE_S / 2 : 150 ))" "$OUT/notebook_times_$FIRST.json" "$FIRST"
if [ "${#OTHERS[@]}" -gt 0 ]; then
    times "$(left 200)" "$OUT/notebook_times_others.json" "${OTHERS[@]}"
fi

# 2. Each method against its plain batched reference, with host and GPU memory per method.
limit=$(left 5)
if [ "$limit" -ge 30 ]; then
    COURSEKIT_PROFILE=$PROFILE timeout --kill-after=10 "$limit" "$PYTHON" bench/methods.py "${METHODS_ARGS[@]}" 2>&1 \
        | tee "$OUT/methods.txt"
    echo "device_run.sh: methods ended with status ${PIPESTATUS[0]}"
else
    echo "device_run.sh: no time left for bench/methods.py"
fi
echo "device_run.sh: done in $((SECONDS / 60)) min $((SECONDS % 60)) s; results in $OUT/"
