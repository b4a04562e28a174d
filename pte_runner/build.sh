#!/usr/bin/env bash
# Cross-compile pte_runner for aarch64 Linux against an unpacked executorch
# aarch64 wheel (e.g. executorch-1.5.1-cp311-cp311-manylinux_2_28_aarch64.whl).
#
#   ET_WHEEL=/tmp/arm/et ./build.sh [OUT_DIR]
#   ./build.sh OUT_DIR /tmp/arm/et
#
# ET_WHEEL (or the 2nd argument) is the directory the wheel was unzipped into,
# i.e. the one holding executorch/include and executorch/lib.
# Output: OUT_DIR/pte_runner (default: ./build next to this script).
#
# Run under emulation with:
#   qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu OUT_DIR/pte_runner ...
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT_DIR="${1:-$HERE/build}"
ET_WHEEL="${2:-${ET_WHEEL:-}}"
[ -n "$ET_WHEEL" ] || { echo "set ET_WHEEL or pass it as 2nd argument" >&2; exit 2; }
ET_ROOT="$(cd "$ET_WHEEL" && pwd)"
[ -d "$ET_ROOT/executorch" ] && ET_ROOT="$ET_ROOT/executorch"
INC="$ET_ROOT/include"
LIB="$ET_ROOT/lib"
[ -f "$LIB/libexecutorch.so" ] || { echo "no $LIB/libexecutorch.so" >&2; exit 2; }
CXX="${CXX:-aarch64-linux-gnu-g++}"

mkdir -p "$OUT_DIR"

# Defines the shipped libraries were built with (from the wheel's
# share/cmake/executorch-config.cmake). -DET_USE_THREADPOOL because the wheel
# ships libexecutorch_threadpool.so.
DEFS=(-DC10_USING_CUSTOM_GENERATED_MACROS -DET_EVENT_TRACER_ENABLED -DET_USE_THREADPOOL)

# Kernels and the XNNPACK delegate register themselves from static
# initializers and export nothing the runner calls, so they must be kept with
# --no-as-needed or the linker drops them ("Missing operator" / "backend not
# registered" at run time).
# rpath: the absolute wheel lib dir, plus $ORIGIN/lib for copying the libs
# next to the binary on a device.
set -x
"$CXX" -std=c++17 -O2 -Wall -Wno-deprecated-declarations "${DEFS[@]}" \
  -I"$INC" -I"$INC/executorch/runtime/core/portable_type/c10" \
  "$HERE/pte_runner.cpp" -o "$OUT_DIR/pte_runner" \
  -L"$LIB" \
  -Wl,--enable-new-dtags,-rpath,"$LIB",-rpath,'$ORIGIN/lib' \
  -lexecutorch -lexecutorch_threadpool \
  -Wl,--push-state,--no-as-needed \
  -lexecutorch_kernels_optimized -lexecutorch_backend_xnnpack \
  -Wl,--pop-state \
  -lpthread
