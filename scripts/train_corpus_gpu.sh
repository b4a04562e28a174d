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
# time_limit ends a slower run early with a checkpoint (--resume continues); a hard timeout
# 120 s later is the backstop. Extra arguments go to every run (the CPU rehearsal uses them).
set -u
out=${1:?usage: train_corpus_gpu.sh OUT_DIR [--set key=value ...]}
shift
config=training/configs/corpus_gpu.toml
limit=$(python3 -c "import tomllib; print(int(tomllib.load(open('$config', 'rb'))['time_limit']))")
for arg in "$@"; do case $arg in time_limit=*) limit=${arg#time_limit=};; esac; done
declare -A iters=([2]=${ITERS_X2:-4200} [3]=${ITERS_X3:-2600} [4]=${ITERS_X4:-2700})
if [ ! -d data/corpus/train ]; then echo "data/corpus/train missing: python -m training.corpus build data/corpus" >&2; exit 2; fi
mkdir -p "$out"
pids=()
for s in 2 3 4; do
    OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 timeout $((limit + 120)) python3 -m training.train \
        --config "$config" --set model=lmfn_x$s --set init_from=lmfn_edge/weights/lmfn_x$s.safetensors \
        --set iterations=${iters[$s]} --set cache_dir="$out/cache_x$s" \
        --output-dir "$out/x$s" --no-progress "$@" >"$out/x$s.log" 2>&1 &
    pids+=($!)
done
status=0
for i in 0 1 2; do wait "${pids[$i]}" || { echo "x$((i + 2)) failed; see $out/x$((i + 2)).log" >&2; status=1; }; done
exit $status
