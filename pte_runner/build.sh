#!/usr/bin/env bash
# Build pte_runner for aarch64 Linux against the ExecuTorch 1.5.1 aarch64 wheel, and the
# instruction-counting QEMU plugin for this (x86) host. One command from a clean checkout:
#
#   pte_runner/build.sh [OUT_DIR]          # default OUT_DIR: ~/.cache/lmfn_edge/arm
#
# Needs: g++-aarch64-linux-gnu and gcc (Debian), python3 with pip. The wheel is fetched with
# `pip download` into OUT_DIR/wheel once (ET_WHEEL=DIR uses an already unpacked one instead).
# Writes OUT_DIR/pte_runner (its RUNPATH points at OUT_DIR/et/executorch/lib and at ./lib next
# to the binary, for copying to a device) and OUT_DIR/libinsn_count.so. README.md here says how
# to run both.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT_DIR="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/lmfn_edge/arm}"
ET_VERSION=1.5.1
WHEEL=executorch-$ET_VERSION-cp311-cp311-manylinux_2_28_aarch64.whl
# The wheel this project was checked with; a different file is refused.
WHEEL_SHA256=8ee02348a3ea80ddf770822911ebf78da616b73afce0fbaaa79f23311c88c66a
CXX="${CXX:-aarch64-linux-gnu-g++}"
HOST_CC="${HOST_CC:-gcc}"
PYTHON="${PYTHON:-python3}"

for tool in "$CXX" "$HOST_CC" "$PYTHON"; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install g++-aarch64-linux-gnu gcc)" >&2; exit 2; }
done
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"

if [ -n "${ET_WHEEL:-}" ]; then
  ET_ROOT="$(cd "$ET_WHEEL" && pwd)"
else
  ET_ROOT="$OUT_DIR/et"
  if [ ! -f "$ET_ROOT/executorch/lib/libexecutorch.so" ]; then
    # The 1.x aarch64 wheels are tagged manylinux_2_28 only (manylinux2014 finds none).
    [ -f "$OUT_DIR/wheel/$WHEEL" ] || "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        --platform manylinux_2_28_aarch64 --python-version 3.11 -d "$OUT_DIR/wheel" "executorch==$ET_VERSION"
    echo "$WHEEL_SHA256  $OUT_DIR/wheel/$WHEEL" | sha256sum -c --quiet - \
      || { echo "error: $OUT_DIR/wheel/$WHEEL is not the wheel this runner was checked with" >&2; exit 1; }
    rm -rf "$ET_ROOT.partial"
    "$PYTHON" -m zipfile -e "$OUT_DIR/wheel/$WHEEL" "$ET_ROOT.partial"
    rm -rf "$ET_ROOT" && mv "$ET_ROOT.partial" "$ET_ROOT"
  fi
fi
[ -d "$ET_ROOT/executorch" ] && ET_ROOT="$ET_ROOT/executorch"
INC="$ET_ROOT/include"
LIB="$ET_ROOT/lib"
[ -f "$LIB/libexecutorch.so" ] || { echo "error: no $LIB/libexecutorch.so" >&2; exit 2; }

# The defines the wheel's libraries were built with (its share/cmake/executorch-config.cmake).
DEFS=(-DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL)

# The kernels and the XNNPACK delegate register themselves from static initializers and export
# nothing the runner calls: without --no-as-needed the linker drops them, and loading fails
# with "Backend XnnpackBackend is not registered".
"$CXX" -std=c++17 -O2 -Wall -Wno-deprecated-declarations "${DEFS[@]}" \
  -I"$INC" -I"$INC/executorch/runtime/core/portable_type/c10" \
  "$HERE/pte_runner.cpp" -o "$OUT_DIR/pte_runner.partial" \
  -L"$LIB" \
  -Wl,--enable-new-dtags,-rpath,"$LIB",-rpath,'$ORIGIN/lib' \
  -lexecutorch -lexecutorch_threadpool \
  -Wl,--push-state,--no-as-needed \
  -lexecutorch_kernels_optimized -lexecutorch_backend_xnnpack \
  -Wl,--pop-state \
  -lpthread
mv "$OUT_DIR/pte_runner.partial" "$OUT_DIR/pte_runner"

"$HOST_CC" -std=c11 -O2 -Wall -shared -fPIC -fvisibility=hidden \
  "$HERE/insn_count.c" -o "$OUT_DIR/libinsn_count.so.partial"
mv "$OUT_DIR/libinsn_count.so.partial" "$OUT_DIR/libinsn_count.so"

echo "$OUT_DIR/pte_runner"
echo "$OUT_DIR/libinsn_count.so"
