#!/usr/bin/env bash
# The full profile on one GPU, in one command of about 12 minutes: every lesson's wall time, peak host
# memory and peak GPU memory (random ImageNet weights: the full profile's Xception / VGG16 weights
# need a download; time and memory do not depend on the weights), then the methods' bench on
# Xception with the GPU memory of each method. Results go to $OUT (default build/bench-results/).
#
#     bash bench/device_run.sh              # PYTHON=... to use another interpreter than .venv's
#
# Needs: a Python with the course's requirements (TensorFlow seeing the GPU), and the ImageNet
# class index in a Keras cache ($COURSEKIT_OFFLINE_CACHE, or shared/offline-assets/keras or
# ../shared/offline-assets/keras when there is one) or the internet.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-build/bench-results}
mkdir -p "$OUT"
for cache in shared/offline-assets/keras ../shared/offline-assets/keras; do
    if [ -z "${COURSEKIT_OFFLINE_CACHE:-}" ] && [ -d "$cache" ]; then
        export COURSEKIT_OFFLINE_CACHE="$(cd "$cache" && pwd)"
    fi
done
export TF_CPP_MIN_LOG_LEVEL=2
"$PYTHON" -c "import tensorflow as tf, sys; gpus = tf.config.list_physical_devices('GPU'); print('GPUs:', gpus); sys.exit(0 if gpus else 1)" \
    || { echo "device_run.sh: TensorFlow sees no GPU; nothing measured." >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null | tee "$OUT/gpu.txt"

# 1. Every lesson in the full profile (a lesson whose host memory passes 12 GB is killed and reported).
timeout 540 "$PYTHON" bench/notebook_times.py --profiles full --random-weights --kill-above-gb 12 \
    --json "$OUT/notebook_times_full.json" --markdown 2>&1 | grep -v "Kernel is running over TCP" | tee "$OUT/notebook_times_full.txt"

# 2. Each method against its plain batched reference on Xception, with host and GPU memory.
COURSEKIT_PROFILE=full timeout 150 "$PYTHON" bench/methods.py --model xception --images 6 --rounds 3 2>&1 \
    | tee "$OUT/methods_xception_full.txt"
echo "device_run.sh: done in $((SECONDS / 60)) min $((SECONDS % 60)) s; results in $OUT/"
