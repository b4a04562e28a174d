"""How fast an int8 LMFN could be with a free DSConv: the bound on any DSConv deploy form.

    python scripts/dsconv_bound.py --threads 2 [--int8-pte artifacts/lmfn_x4_xnnpack_int8_180x320.pte]

Builds two int8 XNNPACK programs of lmfn_x4 at --shape (default 180x320, the 720p frame): the
shipped one (the embedded int8 parameters, as ``export --precision int8`` builds it; or --int8-pte, a program exported that way), and a stand-in in which every DSConv
is only its line kernel, a plain (1,K)/(K,1) conv with zero offsets and no sampling. No deploy
form of DSConv can be cheaper than its line conv, so the stand-in bounds what a new deploy form
can reach, in latency and in lowering time. The stand-in's activation ranges come from a few
random batches (PTQ): its outputs are meaningless, its kernels the same as a real program's.
Then eager fp32 (the embedded float model at the job's input) and both programs run in turns
(--rounds rounds of --repeats runs each, after one warm-up) and the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lmfn_edge.deployment.int8 import int8_program
from lmfn_edge.registry import shipped
from lmfn_edge.deployment.lowering import lower_to_executorch
from lmfn_edge.deployment.pt2e import convert, export_converted, prepare
from lmfn_edge.manifest import ShapeSpec
from lmfn_edge.model.deploy import to_deploy
from lmfn_edge.model.dsconv import DSConvDeploy
from lmfn_edge.model.weights import load_model


class LineOnly(nn.Module):
    """A DSConv without sampling: its line kernel as a zero-padded conv along the tap axis
    ((1,K) for morph 0, whose taps lie along the width; (K,1) for morph 1)."""

    def __init__(self, ds: DSConvDeploy) -> None:
        super().__init__()
        k = ds.kernel_size
        line, pad = ((1, k), (0, k // 2)) if ds.morph == 0 else ((k, 1), (k // 2, 0))
        self.conv = nn.Conv2d(ds.in_channels, ds.out_channels, line, padding=pad)
        self.conv.weight.data = ds.line.weight.data.reshape(ds.out_channels, ds.in_channels, *line).clone()
        self.conv.bias.data = ds.line.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def line_only(model: nn.Module) -> nn.Module:
    """The deploy form of ``model`` with every DSConv replaced by :class:`LineOnly`."""
    deployed = to_deploy(model)
    for module in list(deployed.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, DSConvDeploy):
                setattr(module, name, LineOnly(child))
    return deployed


SHIPPED, STAND_IN = "int8, shipped", "int8, DSConv = line conv"


def lower(ep: torch.export.ExportedProgram, path: Path) -> tuple[int, float]:
    nodes = sum(1 for n in ep.graph.nodes if n.op == "call_function")
    start = time.perf_counter()
    program, summary = lower_to_executorch(ep, "xnnpack")
    seconds = time.perf_counter() - start
    if summary.subgraphs != 1 or summary.non_delegated_compute_ops:
        raise SystemExit(f"{path.name}: not one XNNPACK subgraph ({summary.to_dict()})")
    path.write_bytes(program.buffer)
    return nodes, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="180x320", help="int8 input HxW (default 180x320, 720p x4)")
    p.add_argument("--eager-shape", default="180x320", help="eager fp32 input HxW (default 180x320, 720p x4)")
    p.add_argument("--int8-pte", help="the shipped x4 int8 program at --shape, if already exported")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.shape.split("x"))
    model, _ = load_model(4)
    rows: dict[str, tuple[int | None, float | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {SHIPPED: Path(args.int8_pte) if args.int8_pte else Path(tmp, "shipped.pte"),
                 STAND_IN: Path(tmp, "line_only.pte")}
        if args.int8_pte:
            rows[SHIPPED] = (None, None)
        else:
            print("building and lowering the shipped int8 program ...", flush=True)
            ep, _ = int8_program(shipped(4).int8_path, ShapeSpec(h, w))
            rows[SHIPPED] = lower(ep, paths[SHIPPED])
        print("building and lowering the line-conv stand-in ...", flush=True)
        prepared = prepare(line_only(model), qat=False)
        with torch.no_grad():
            for _ in range(4):
                prepared(torch.rand(2, 3, 32, 32))
        rows[STAND_IN] = lower(export_converted(convert(prepared), h, w), paths[STAND_IN])

        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        torch.set_num_threads(args.threads)
        _unsafe_reset_threadpool(args.threads)
        # Eager runs --eager-shape, the int8 programs --shape (the same frame by default).
        x = torch.rand(1, 3, *(int(v) for v in args.eager_shape.split("x")))
        x8 = torch.rand(1, 3, h, w)
        runs = {"eager fp32": lambda: model(x)}
        for name, path in paths.items():
            method = Runtime.get().load_program(str(path)).load_method("forward")
            runs[name] = lambda m=method: m.execute([x8])
        times: dict[str, list[float]] = {name: [] for name in runs}
        with torch.no_grad():
            for run in runs.values():
                run()
            for _ in range(args.rounds):
                for name, run in runs.items():
                    for _ in range(args.repeats):
                        start = time.perf_counter()
                        run()
                        times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"\n{args.threads} threads, eager at {x.shape[2]}x{x.shape[3]}, int8 at {h}x{w}, "
          f"median of {args.rounds * args.repeats} runs each, in turns\n")
    print("| program | call nodes | lowering s | median ms | x eager |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in median.items():
        nodes, seconds = rows.get(name, (None, None))
        cells = (f"{nodes:,}" if nodes else "-", f"{seconds:.0f}" if seconds else "-")
        print(f"| {name} | {cells[0]} | {cells[1]} | {ms:.1f} | {median['eager fp32'] / ms:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
