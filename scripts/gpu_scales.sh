# Shared by the GPU launchers (source it): run lmfn_x2, lmfn_x3 and lmfn_x4 side by side on one
# GPU. The network is launch-bound (about 2,900 small kernels an iteration), so three processes
# share one GPU better than three runs in a row, each paying its own compilation.
#
#   run_scales CONFIG OUT_DIR [--set key=value ...]
#
# Each scale writes OUT_DIR/x{2,3,4}/{ckpt.pt,log.jsonl,curves.png} and OUT_DIR/x{2,3,4}.log.
# A launcher may define scale_args S to print extra arguments for scale S. The config's
# time_limit (or a --set time_limit=...) ends each run with a checkpoint; a hard timeout 120 s
# later is the backstop. Extra arguments go to every run (the CPU rehearsal uses them).
run_scales() {
    local config=$1 out=$2 limit arg s i status=0
    shift 2
    limit=$(python3 -c "import tomllib; print(int(tomllib.load(open('$config', 'rb'))['time_limit']))")
    for arg in "$@"; do case $arg in time_limit=*) limit=${arg#time_limit=};; esac; done
    mkdir -p "$out"
    local pids=()
    for s in 2 3 4; do
        # shellcheck disable=SC2046  # scale_args prints space-separated arguments
        OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 timeout $((limit + 120)) python3 -m training.train \
            --config "$config" --set model=lmfn_x$s --set cache_dir="$out/cache_x$s" \
            $(declare -F scale_args >/dev/null && scale_args $s) \
            --output-dir "$out/x$s" --no-progress "$@" >"$out/x$s.log" 2>&1 &
        pids+=($!)
    done
    for i in 0 1 2; do wait "${pids[$i]}" || { echo "x$((i + 2)) failed; see $out/x$((i + 2)).log" >&2; status=1; }; done
    return $status
}
