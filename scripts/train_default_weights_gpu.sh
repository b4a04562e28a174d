#!/usr/bin/env bash
# Trains lmfn_x2, lmfn_x3 and lmfn_x4 side by side on one GPU for the embedded default weights.
# The network is launch-bound (about 2,900 small kernels an iteration), so three processes share
# one GPU better than three runs in a row, each paying its own compilation.
#
#   bash scripts/train_default_weights_gpu.sh OUT_DIR [--set key=value ...]
#
# Each scale writes OUT_DIR/x{2,3,4}/{ckpt.pt,log.jsonl,curves.png} and OUT_DIR/x{2,3,4}.log.
# The config's time_limit ends each run with a checkpoint; a hard timeout 120 s later is the
# backstop. Extra arguments go to every run (the CPU rehearsal uses them).
set -u
out=${1:?usage: train_default_weights_gpu.sh OUT_DIR [--set key=value ...]}
shift
config=training/configs/skimage_gpu.toml
limit=$(python3 -c "import tomllib; print(int(tomllib.load(open('$config', 'rb'))['time_limit']))")
for arg in "$@"; do case $arg in time_limit=*) limit=${arg#time_limit=};; esac; done
if [ ! -d data/skimage/train ]; then python3 -m training.skimage_photos data/skimage || exit 2; fi
mkdir -p "$out"
pids=()
for s in 2 3 4; do
    OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 timeout $((limit + 120)) python3 -m training.train \
        --config "$config" --set model=lmfn_x$s --set cache_dir="$out/cache_x$s" \
        --output-dir "$out/x$s" --no-progress "$@" >"$out/x$s.log" 2>&1 &
    pids+=($!)
done
status=0
for i in 0 1 2; do wait "${pids[$i]}" || { echo "x$((i + 2)) failed; see $out/x$((i + 2)).log" >&2; status=1; }; done
exit $status
