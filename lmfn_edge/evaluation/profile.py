"""Where a .pte's time goes: a per-operator table from ExecuTorch's etdump (``bench --profile``).

The program is loaded with event tracing on, run ``warmup + runs`` times at ``threads``
threads, and its etdump read back with ``executorch.devtools.Inspector``. XNNPACK reports each
operator it runs as a delegate event named by its kernel (``Convolution (NHWC, QS8)``,
``Convert (NC, F32, QS8)``, ...); the table sums them per name over the timed runs and gives
each its share of the delegate's time, so the costly operators (and the fp32 islands of an int8
program, which show up as ``Convert`` and F32 kernels) stand at the top.

Programs exported by this SDK carry in their sidecar the LMFN module of each XNNPACK node
(:mod:`lmfn_edge.deployment.xnnpack_map`). XNNPACK runs its nodes in that order, one operator each,
except that it may drop a node (a no-op reshape), emit a fused activation as its own ``Clamp``,
and rename a kind (a 1x1 convolution runs as ``Fully Connected``, ``x * x`` as ``Square``, a
concatenation as ``Copy``, an int8 GELU with its Converts as one lookup-table operator). :func:`match_operators` walks the operators and the nodes together
under exactly those rules; when every operator finds its node, the profile also sums the time
per module ("DSConv in blocks.3"), otherwise it says so and keeps to the kernel table.
"""

from __future__ import annotations

import re
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import console
from ..errors import UsageError

__all__ = ["OperatorTime", "PartTime", "Profile", "match_operators", "profile_pte"]


@dataclass
class OperatorTime:
    name: str
    calls: int  # per run
    ms: float  # per run, summed over calls

    def share(self, total: float) -> float:
        return self.ms / total if total else 0.0


@dataclass
class PartTime:
    """The time of the operators of one kind of module in one block (``DSConv`` in ``blocks.3``)."""

    block: str
    module: str
    calls: int
    ms: float
    kernels: dict[str, int] = field(default_factory=dict)  # calls per XNNPACK kernel


@dataclass
class Profile:
    """Per-run times of one program: ``operators`` inside the delegate, ``execute_ms`` in all."""

    program: str
    threads: int
    runs: int
    execute_ms: float
    operators: list[OperatorTime] = field(default_factory=list)
    parts: list[PartTime] = field(default_factory=list)  # empty when the modules are unknown
    parts_note: str = ""  # why they are unknown

    @property
    def delegate_ms(self) -> float:
        return sum(op.ms for op in self.operators)

    def markdown(self, top: int = 20) -> str:
        total = self.delegate_ms
        lines = [f"{self.program}: {self.execute_ms:.1f} ms per run (median of {self.runs}, {self.threads} threads); "
                 f"{total:.1f} ms in {sum(op.calls for op in self.operators)} operator calls", ""]
        lines += _table(["operator", "calls", "ms", "share"],
                        [([op.name], op.calls, op.ms) for op in self.operators], total, top)
        if self.parts:
            for title, header, key in (
                    ("By module, over all blocks (the innermost of LMFN's modules around each operator):", "module",
                     lambda p: p.module),
                    ("By block:", "block", lambda p: p.block)):
                sums: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
                for part in self.parts:
                    sums[key(part)][0] += part.calls
                    sums[key(part)][1] += part.ms
                rows = [([name], calls, ms) for name, (calls, ms) in sums.items()]
                rows.sort(key=_block_order if header == "block" else lambda row: -row[2])
                lines += ["", title, ""] + _table([header, "calls", "ms", "share"], rows, total, len(rows))
            lines += ["", "By module in each block (a block's own row is its convolutions and activations outside "
                          "its cell):", ""]
            lines += _table(["block", "module", "calls", "ms", "share"],
                            [([p.block, p.module], p.calls, p.ms) for p in self.parts], total, top)
        elif self.parts_note:
            lines += ["", self.parts_note]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = {"program": self.program, "threads": self.threads, "runs": self.runs, "execute_ms": self.execute_ms,
               "operators": [{"name": op.name, "calls": op.calls, "ms": op.ms} for op in self.operators]}
        if self.parts:
            out["parts"] = [{"block": p.block, "module": p.module, "calls": p.calls, "ms": p.ms, "kernels": p.kernels}
                            for p in self.parts]
        elif self.parts_note:
            out["parts_note"] = self.parts_note
        return out


def _table(header: list[str], rows: list[tuple[list[str], int, float]], total: float, top: int) -> list[str]:
    """A markdown table of ``(labels, calls, ms)`` rows with each row's share of ``total``, the
    first ``top`` rows and one line for the rest."""

    def share(ms: float) -> str:
        return f"{100 * ms / total if total else 0:.1f} %"

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * (len(header) - 3) + "---:|---:|---:|"]
    for labels, calls, ms in rows[:top]:
        lines.append(f"| {' | '.join(labels)} | {calls} | {ms:.2f} | {share(ms)} |")
    rest = rows[top:]
    if rest:
        ms = sum(r[2] for r in rest)
        blanks = " |" * (len(header) - 4)
        lines.append(f"| ({len(rest)} more){blanks} | {sum(r[1] for r in rest)} | {ms:.2f} | {share(ms)} |")
    return lines


def _block_order(row) -> tuple:
    # head, blocks.0, blocks.1, ..., blocks.10, then the rest in name order
    name = row[0][0]
    number = re.fullmatch(r"blocks\.(\d+)", name)
    return (0 if name == "head" else 1 if number else 2, int(number.group(1)) if number else 0, name)


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
    ordered: list[tuple[str, float]] = []  # (kernel, ms per run) of each operator, in execution order
    execute = []
    for block in inspector.event_blocks:
        for event in block.events:
            times = list(event.perf_data.raw) if event.perf_data is not None else []
            if not times:
                continue
            if event.is_delegated_op:
                # One event per operator instance ("Convolution (NHWC, QS8) IGEMM #9"); its raw
                # list holds one time per execution.
                kept = times[warmup:] if len(times) > runs else times
                ordered.append((event.name.rsplit(" #", 1)[0], sum(kept) / len(kept)))
            elif event.name == "Method::execute":
                execute += times[warmup:] if len(times) > runs else times
    per_kernel: dict[str, list[float]] = defaultdict(list)
    for name, ms in ordered:
        per_kernel[name].append(ms)
    operators = sorted((OperatorTime(name, len(ms), sum(ms)) for name, ms in per_kernel.items()), key=lambda op: -op.ms)
    parts, note = _parts(ordered, manifest)
    return Profile(path.name, threads, runs, statistics.median(execute) if execute else float("nan"), operators,
                   parts, note)


def _parts(ordered: list[tuple[str, float]], manifest) -> tuple[list[PartTime], str]:
    """Time per (block, module), or why it cannot be told (see the module docstring)."""
    from ..deployment.xnnpack_map import ModuleMapError, read_module_map

    raw = (manifest.delegation or {}).get("modules")
    if raw is None:
        return [], ("Modules: the sidecar does not map XNNPACK's nodes to LMFN's modules (a program exported "
                    "before lmfn-edge recorded them, or not by lmfn-edge); re-export it to see time per module.")
    try:
        modules = read_module_map(raw)
    except ModuleMapError as exc:
        raise UsageError(f"{manifest.artifact}'s sidecar: {exc}") from None
    if len(modules.delegates) != 1:
        return [], f"Modules: named for one-delegate programs; this one has {len(modules.delegates)}."
    nodes = modules.delegates[0]
    matched = match_operators([name for name, _ in ordered], [kind for kind, _ in nodes])
    if matched is None:
        return [], (f"Modules: the {len(ordered)} operators XNNPACK ran do not line up with the {len(nodes)} nodes "
                    "the sidecar records, so they are not named (is the sidecar this program's?).")
    totals: dict[tuple[str, str], PartTime] = {}
    for (name, ms), node in zip(ordered, matched):
        part = modules.part(nodes[node][1])
        if part is not None:
            key = (_block(part[0]), _module(part[1]))
        elif _kernel_key(name) == "transpose":  # ExecuTorch's, between NCHW and NHWC operators
            key = ("(layout)", "NCHW/NHWC transposes")
        else:
            key = ("(no module)", name.split(" (", 1)[0])
        total = totals.setdefault(key, PartTime(*key, 0, 0.0))
        total.calls += 1
        total.ms += ms
        total.kernels[name] = total.kernels.get(name, 0) + 1
    return sorted(totals.values(), key=lambda p: -p.ms), ""


def _block(path: str) -> str:
    """``blocks.3`` for anything inside the fourth building module, ``head`` for the head, ...;
    the network's own ops (the global residual, the fuse GELU) are ``(top level)``."""
    if not path:
        return "(top level)"
    first, *rest = path.split(".")
    return f"{first}.{rest[0]}" if first == "blocks" and rest else first


def _module(cls: str) -> str:
    return cls.removesuffix("Deploy") or cls  # the deploy form's classes stand for the paper's


# How XNNPACK names the operator a node kind becomes, where the names differ (module docstring).
_RUNS_AS = {
    "conv": {"convolution", "fullyconnected"},
    "depthwiseconv": {"convolution"},
    "convtranspose": {"deconvolution"},
    "multiply": {"multiply", "square"},
    "concatenate": {"copy", "concatenate"},
    "reshape": {"reshape", "copy"},
    "avgpooling": {"averagepooling"},
    "globalavgpooling": {"globalaveragepooling", "mean"},
    "div": {"divide"},
}
# Elementwise kinds XNNPACK may fuse with the Converts around them into one int8 lookup-table
# operator, which its profiler names "Invalid Unary Op" in 1.5.1.
_UNARY = {"gelu", "tanh", "sigmoid", "abs", "negate", "square", "squareroot", "reciprocalsquareroot", "exp", "log",
          "sin", "cos", "floor", "ceiling", "hardswish", "elu", "leakyrelu"}
LOOKAHEAD = 8  # nodes a run of dropped ones may span


def _kernel_key(name: str) -> str:
    base = re.sub(r"[^a-z]", "", name.split(" (", 1)[0].lower())
    return base.removeprefix("static")


def _runs_as(kind: str) -> set[str]:
    key = re.sub(r"\d+d$|\d+$", "", kind.removeprefix("XNN"), flags=re.I).lower().removeprefix("static")
    return _RUNS_AS.get(key, {key}) | ({"invalidunaryop"} if key in _UNARY else set())


def match_operators(kernels: list[str], kinds: list[str]) -> list[int] | None:
    """The node each operator ran for, walking both in order, or ``None`` if they do not line up.

    ``kernels``: XNNPACK's operator names in execution order (``Convolution (NHWC, F32) IGEMM``);
    ``kinds``: the delegate's node kinds in order (``XNNConv2d``). An operator belongs to the next
    node that runs as its kind, up to :data:`LOOKAHEAD` nodes on (the ones between were dropped);
    a ``Clamp`` with no clamp node next is the previous node's fused activation. Every node may
    be dropped, but no operator may be left over.
    """
    runs_as = [_runs_as(kind) for kind in kinds]
    out: list[int] = []
    at = 0  # the next node not yet matched
    for kernel in kernels:
        key = _kernel_key(kernel)
        if at < len(kinds) and key in runs_as[at]:
            out.append(at)
            at += 1
        elif key == "clamp" and out:
            out.append(out[-1])
        else:
            ahead = next((i for i in range(at + 1, min(at + 1 + LOOKAHEAD, len(kinds))) if key in runs_as[i]), None)
            if ahead is None:
                return None
            out.append(ahead)
            at = ahead + 1
    return out
