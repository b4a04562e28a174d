"""What CPU a measurement ran on: its model name and the instruction sets int8 and bf16 speed
depend on (docs/deployment.md, "Bench"). Standard library only.

Machines of one kind differ in CPU: the same bench gives another int8 or bf16 ratio on a CPU
without AVX512-VNNI or AVX512-BF16, so every benchmark records :func:`cpu_info`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["FEATURES", "cpu_info", "describe_cpu"]

# /proc/cpuinfo flag -> the name people know. x86: int8 dot products (VNNI) and bf16; ARM:
# dot products (asimddp), int8 matrix multiply (i8mm) and bf16.
FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX512F",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "bf16": "bf16",
}
_MAX_CPUINFO = 4 * 1024 * 1024


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, object]:
    """``{"model", "machine", "cores", "features"}``: the CPU's name, the architecture, the
    cores this process may use, and which of :data:`FEATURES` it has (in that order).

    Without a readable ``cpuinfo`` (macOS, Windows) the model is ``platform.processor()`` and
    the features are empty.
    """
    model, flags = "", set()
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read(_MAX_CPUINFO)
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return {
        "model": model or platform.processor() or "unknown",
        "machine": platform.machine(),
        "cores": cores,
        "features": [name for flag, name in FEATURES.items() if flag in flags],
    }


def describe_cpu(cpu: dict) -> str:
    """``AMD EPYC (x86_64, 2 cores; AVX2)``: how a benchmark's table names its CPU."""
    features = ", ".join(cpu["features"]) or "none of " + ", ".join(FEATURES.values())
    return f"{cpu['model']} ({cpu['machine']}, {cpu['cores']} cores; {features})"
