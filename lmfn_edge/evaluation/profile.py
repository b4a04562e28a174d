"""Where a .pte's time goes: a per-operator table from ExecuTorch's etdump (``bench --profile``).

The program is loaded with event tracing on, run ``warmup + runs`` times at ``threads``
threads, and its etdump read back with ``executorch.devtools.Inspector``. XNNPACK reports each
operator it runs as a delegate event named by its kernel (``Convolution (NHWC, QS8)``,
``Convert (NC, F32, QS8)``, ...); the table sums them per name over the timed runs and gives
each its share of the delegate's time, so the costly operators (and the fp32 islands of an int8
program, which show up as ``Convert`` and F32 kernels) stand at the top.
"""

from __future__ import annotations

import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import console
from ..errors import UsageError

__all__ = ["OperatorTime", "Profile", "profile_pte"]


@dataclass
class OperatorTime:
    name: str
    calls: int  # per run
    ms: float  # per run, summed over calls

    def share(self, total: float) -> float:
        return self.ms / total if total else 0.0


@dataclass
class Profile:
    """Per-run times of one program: ``operators`` inside the delegate, ``execute_ms`` in all."""

    program: str
    threads: int
    runs: int
    execute_ms: float
    operators: list[OperatorTime] = field(default_factory=list)

    @property
    def delegate_ms(self) -> float:
        return sum(op.ms for op in self.operators)

    def markdown(self, top: int = 20) -> str:
        total = self.delegate_ms
        lines = [f"{self.program}: {self.execute_ms:.1f} ms per run (median of {self.runs}, {self.threads} threads); "
                 f"{total:.1f} ms in {sum(op.calls for op in self.operators)} operator calls",
                 "", "| operator | calls | ms | share |", "|---|---:|---:|---:|"]
        for op in self.operators[:top]:
            lines.append(f"| {op.name} | {op.calls} | {op.ms:.2f} | {100 * op.share(total):.1f} % |")
        rest = self.operators[top:]
        if rest:
            ms = sum(op.ms for op in rest)
            lines.append(f"| ({len(rest)} more) | {sum(op.calls for op in rest)} | {ms:.2f} | "
                         f"{100 * ms / total if total else 0:.1f} % |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"program": self.program, "threads": self.threads, "runs": self.runs, "execute_ms": self.execute_ms,
                "operators": [{"name": op.name, "calls": op.calls, "ms": op.ms} for op in self.operators]}


def profile_pte(path: str | Path, threads: int = 2, runs: int = 5, warmup: int = 1) -> Profile:
    """Profile an ExecuTorch program per operator (see the module docstring)."""
    from ..manifest import read_manifest
    from ..runtime.backends import check_pte

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"program not found: {path}")
    manifest = read_manifest(path)
    check_pte(path, manifest)
    if manifest.shape.dynamic:
        raise UsageError(f"{path} has a dynamic shape; profile a fixed-shape program")
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, *manifest.shape.example)
    with console.third_party():  # the imports and the thread pool print cpuinfo lines
        from executorch.devtools import Inspector
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        _unsafe_reset_threadpool(threads)
        program = Runtime.get().load_program(str(path), enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
        for _ in range(warmup + runs):
            method.execute([x])
        with tempfile.TemporaryDirectory() as tmp:
            etdump = Path(tmp) / "profile.etdp"
            program.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
            inspector = Inspector(etdump_path=str(etdump))
    per_run: dict[str, list[float]] = defaultdict(list)
    calls: dict[str, int] = defaultdict(int)
    execute = []
    for block in inspector.event_blocks:
        for event in block.events:
            times = list(event.perf_data.raw) if event.perf_data is not None else []
            if not times:
                continue
            if event.is_delegated_op:
                # One event per operator instance ("Convolution (NHWC, QS8) IGEMM #9"); its raw
                # list holds one time per execution. Instances are summed per kernel.
                kept = times[warmup:] if len(times) > runs else times
                name = event.name.rsplit(" #", 1)[0]
                per_run[name].append(sum(kept) / len(kept))
                calls[name] += 1
            elif event.name == "Method::execute":
                execute += times[warmup:] if len(times) > runs else times
    operators = sorted((OperatorTime(name, calls[name], sum(ms)) for name, ms in per_run.items()),
                       key=lambda op: -op.ms)
    return Profile(path.name, threads, runs, statistics.median(execute) if execute else float("nan"), operators)
