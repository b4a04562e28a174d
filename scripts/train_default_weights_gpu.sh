#!/usr/bin/env bash
# Trains lmfn_x2, lmfn_x3 and lmfn_x4 side by side on one GPU for the embedded default weights
# (v1: training/configs/skimage_gpu.toml, scikit-image's photos; docs/model-card.md).
#
#   bash scripts/train_default_weights_gpu.sh OUT_DIR [--set key=value ...]
#
# The launcher (outputs, time limit, extra arguments) is scripts/gpu_scales.sh.
set -u
out=${1:?usage: train_default_weights_gpu.sh OUT_DIR [--set key=value ...]}
shift
if [ ! -d data/skimage/train ]; then python3 -m training.skimage_photos data/skimage || exit 2; fi
source "$(dirname "${BASH_SOURCE[0]}")/gpu_scales.sh"
run_scales training/configs/skimage_gpu.toml "$out" "$@"
