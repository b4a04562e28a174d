"""``python -m lmfn_edge.bench``: latency and memory of each runtime, side by side in one run.

Runtimes: eager PyTorch fp32 (the training form, what a user would run without this SDK), the
XNNPACK .pte fp32 (and an int8 .pte when ``--int8-pte`` is given), and ONNX Runtime CPU fp32
(``torch.onnx`` export of the same model) as the runtime a user might pick instead. Jobs: a
320x180 -> 1280x720 x4 frame, and one 128x128 tile.

Every runtime runs in its own fresh worker process with the same thread count, so peak resident
memory is the runtime's own (Python and torch included) and one runtime's caches do not help
another. Workers run in turns, ``--rounds`` times, and each reports the median of its repeats;
the table shows the median over rounds. These machines are noisy: read the ratios, which are
measured side by side, rather than the absolute times.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

JOBS = {"720p_x4": (180, 320), "tile128": (128, 128), "tile64": (64, 64)}
RUNNERS = ("eager", "pte_fp32", "pte_int8", "onnxruntime")


class BenchError(RuntimeError):
    """A runtime that could not be prepared or timed; the message is one line."""


def count_macs(model: torch.nn.Module, height: int, width: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 2


def _model(args):
    from . import create_model, model_name

    if args.random_init:
        torch.manual_seed(0)
        return create_model(model_name(args.scale)).eval()
    if args.weights:
        return create_model(model_name(args.scale), weights=args.weights)
    return create_model(model_name(args.scale), pretrained=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory.

    ``VmHWM`` belongs to the address space, which ``exec`` replaces, so a worker reports its own
    peak; ``ru_maxrss`` survives fork + exec and would report the parent's if that was larger.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB on Linux


def _worker(args) -> int:
    """Load one runtime, time it, print one JSON line."""
    torch.set_num_threads(args.threads)
    h, w = JOBS[args.job]
    x = torch.rand(1, 3, h, w)
    if args.worker == "eager":
        model = _model(args)

        def run():
            with torch.no_grad():
                model(x)
    elif args.worker.startswith("pte"):
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime

        _unsafe_reset_threadpool(args.threads)
        method = Runtime.get().load_program(args.artifact).load_method("forward")

        def run():
            method.execute([x])
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(args.artifact, opts, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}

        def run():
            session.run(None, feed)

    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    peak_mb = peak_rss_mb()
    print(json.dumps({"median_ms": statistics.median(times) * 1e3, "peak_rss_mb": peak_mb}))
    return 0


def _prepare(args, workdir: Path) -> dict[tuple[str, str], str | None]:
    """Export the .pte and ONNX artifacts for each job (not timed)."""
    from .deploy import to_deploy
    from .export import ShapeSpec, export

    model = _model(args)
    artifacts: dict[tuple[str, str], str | None] = {}
    for job in args.jobs:
        h, w = JOBS[job]
        print(f"preparing {job}: .pte fp32 and ONNX ...", file=sys.stderr)
        pte = workdir / f"{job}.pte"
        export(model, "xnnpack", pte, ShapeSpec(h, w))
        artifacts[(job, "pte_fp32")] = str(pte)
        artifacts[(job, "pte_int8")] = args.int8_pte.get(job) if args.int8_pte else None
        onnx_path = workdir / f"{job}.onnx"
        try:
            torch.onnx.export(to_deploy(model), (torch.rand(1, 3, h, w),), str(onnx_path), dynamo=True,
                              input_names=["lr"], output_names=["sr"])
            artifacts[(job, "onnxruntime")] = str(onnx_path)
        except Exception as exc:  # report instead of failing the other runtimes
            print(f"ONNX export failed for {job}: {exc}", file=sys.stderr)
            artifacts[(job, "onnxruntime")] = None
    return artifacts


def run_bench(args) -> dict:
    model = _model(args)
    results = {"scale": args.scale, "threads": args.threads, "rounds": args.rounds, "repeats": args.repeats,
               "weights": args.weights or ("random-init" if args.random_init else "embedded"), "jobs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _prepare(args, Path(tmp))
        for job in args.jobs:
            h, w = JOBS[job]
            macs = count_macs(model, h, w)
            samples: dict[str, list[dict]] = {r: [] for r in RUNNERS}
            for round_ in range(args.rounds):
                for runner in RUNNERS:
                    artifact = artifacts.get((job, runner)) if runner != "eager" else ""
                    if artifact is None:
                        continue
                    cmd = [sys.executable, "-m", "lmfn_edge.bench", "--worker", runner, "--job", job,
                           "--artifact", artifact, "--threads", str(args.threads), "--repeats", str(args.repeats),
                           "--warmup", str(args.warmup), "--scale", str(args.scale)]
                    cmd += ["--random-init"] if args.random_init else (["--weights", args.weights] if args.weights else [])
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode != 0:
                        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                        raise BenchError(f"{runner} worker failed on {job}: {last}")
                    samples[runner].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(f"{job} round {round_ + 1} {runner}: {samples[runner][-1]['median_ms']:.1f} ms", file=sys.stderr)
            rows = {}
            for runner, runs in samples.items():
                if not runs:
                    continue
                ms = statistics.median(r["median_ms"] for r in runs)
                artifact = artifacts.get((job, runner)) if runner != "eager" else None
                rows[runner] = {"median_ms": ms, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                                "artifact_mb": Path(artifact).stat().st_size / 2**20 if artifact else None,
                                "gflops": 2 * macs / (ms * 1e-3) / 1e9, "rounds_ms": [r["median_ms"] for r in runs]}
            eager = rows.get("eager", {}).get("median_ms")
            for row in rows.values():
                row["speedup_vs_eager"] = eager / row["median_ms"] if eager else None
            results["jobs"][job] = {"input": [h, w], "output": [h * args.scale, w * args.scale], "gmacs": macs / 1e9,
                                    "runtimes": rows}
    return results


def to_markdown(results: dict) -> str:
    lines = ["| job | runtime | median ms | speedup vs eager | peak RSS MB | file MB | GFLOP/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for job, data in results["jobs"].items():
        h, w = data["input"]
        for runner, r in data["runtimes"].items():
            size = f"{r['artifact_mb']:.2f}" if r.get("artifact_mb") else "-"
            lines.append(f"| {job} ({w}x{h} -> {w * results['scale']}x{h * results['scale']}) | {runner} | "
                         f"{r['median_ms']:.1f} | {r['speedup_vs_eager']:.2f}x | {r['peak_rss_mb']:.0f} | {size} | "
                         f"{r['gflops']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmfn_edge.bench", description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--weights", help="safetensors weights (default: embedded)")
    p.add_argument("--random-init", action="store_true", help="untrained model (latency does not depend on weights)")
    p.add_argument("--threads", type=int, default=2, help="threads for every runtime (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="turns over all runtimes (default 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per worker (default 5)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, from {', '.join(JOBS)} (default: all)")
    p.add_argument("--int8-pte", nargs=2, action="append", metavar=("JOB", "PTE"), help="int8 .pte for a job")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--worker", choices=RUNNERS, help=argparse.SUPPRESS)
    p.add_argument("--job", choices=tuple(JOBS), help=argparse.SUPPRESS)
    p.add_argument("--artifact", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args)
    args.int8_pte = dict(args.int8_pte or [])
    args.jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    unknown = sorted(set(args.jobs) - set(JOBS)) + sorted(set(args.int8_pte) - set(JOBS))
    if unknown or not args.jobs:
        print(f"error: unknown job {', '.join(unknown) or '(none given)'}; jobs are {', '.join(JOBS)}", file=sys.stderr)
        return 2
    try:
        results = run_bench(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(to_markdown(results))
    if args.json:
        from .io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
