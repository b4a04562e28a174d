#!/usr/bin/env bash
# Default weights v2 on one leased GPU: lmfn_x2, lmfn_x3 and lmfn_x4 side by side, each
# warm-started from the weights the package embeds, on the open photo corpus, with the cosine
# schedule sized to the time box (training/configs/corpus_gpu.toml; docs/model-card.md).
#
#   bash scripts/train_corpus_gpu.sh OUT_DIR [--set key=value ...]
#
# Needs data/corpus (python -m training.corpus build data/corpus) beside the repository.
# ITERS_X2/X3/X4 are each scale's steps: what its share of the GPU affords in the time box
# (three processes on an H200 ran 10.9 / 6.7 / 7.1 it/s at batch 64, docs/model-card.md, so
# 480 s of training minus ~90 s of compilation give about 4,200 / 2,600 / 2,700). The config's
# time_limit ends a slower run early with a checkpoint (--resume continues). The launcher is
# scripts/gpu_scales.sh.
set -u
out=${1:?usage: train_corpus_gpu.sh OUT_DIR [--set key=value ...]}
shift
declare -A iters=([2]=${ITERS_X2:-4200} [3]=${ITERS_X3:-2600} [4]=${ITERS_X4:-2700})
scale_args() { echo "--set init_from=lmfn_edge/weights/lmfn_x$1.safetensors --set iterations=${iters[$1]}"; }
if [ ! -d data/corpus/train ]; then echo "data/corpus/train missing: python -m training.corpus build data/corpus" >&2; exit 2; fi
source "$(dirname "${BASH_SOURCE[0]}")/gpu_scales.sh"
run_scales training/configs/corpus_gpu.toml "$out" "$@"
