"""Lowering time, graph size and latency of lmfn_x4's deploy form for several DSConv kernel sizes.

    python scripts/kernel_size_study.py --kernel-sizes 3,5,9 --size 64 --threads 2

For each K: torch.export + XNNPACK lowering time, node counts and delegation, then the eager
training form and the .pte timed in alternation (median of --repeats) at the same thread count.
Latency does not depend on weights, so the models are randomly initialised.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lmfn_edge import create_model
from lmfn_edge.deployment import export
from lmfn_edge.manifest import ShapeSpec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel-sizes", default="3,5,9")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    torch.set_num_threads(args.threads)
    _unsafe_reset_threadpool(args.threads)
    x = torch.rand(1, 3, args.size, args.size)
    print("| K | export+lower s | delegated nodes | subgraphs | non-delegated compute ops | eager ms | .pte ms | speedup |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for k in (int(v) for v in args.kernel_sizes.split(",")):
        torch.manual_seed(0)
        model = create_model("lmfn_x4", kernel_size=k).eval()
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = export(model, "xnnpack", Path(tmp) / "m.pte", ShapeSpec(args.size, args.size))
            lower_s = time.perf_counter() - t
            method = Runtime.get().load_program(str(result.path)).load_method("forward")
            eager, pte = [], []
            with torch.no_grad():
                model(x), method.execute([x])
                for _ in range(args.repeats):  # alternate so both see the same machine state
                    t = time.perf_counter(); model(x); eager.append(time.perf_counter() - t)
                    t = time.perf_counter(); method.execute([x]); pte.append(time.perf_counter() - t)
        d = result.manifest.delegation
        e, q = statistics.median(eager) * 1e3, statistics.median(pte) * 1e3
        print(f"| {k} | {lower_s:.0f} | {d['delegated_nodes']} | {d['subgraphs']} | "
              f"{d['non_delegated_compute_ops'] or 'none'} | {e:.1f} | {q:.1f} | {e / q:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
