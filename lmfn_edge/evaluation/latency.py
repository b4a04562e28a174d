"""Latency and memory of each runtime, side by side in one run (``python -m lmfn_edge.bench``).

Runtimes: eager PyTorch fp32 (the training form, what a user would run without this SDK), the
XNNPACK .pte fp32 (and an int8 .pte when one is given per job), and ONNX Runtime CPU fp32
(``torch.onnx`` export of the same model) as the runtime a user might pick instead. Jobs: a
320x180 -> 1280x720 x4 frame, a 128x128 tile and a 64x64 tile.

Every runtime runs in its own fresh worker process (``python -m lmfn_edge.evaluation.worker``)
with the same thread count, so peak resident memory is the runtime's own (Python and torch
included) and one runtime's caches do not help another. Workers run in turns, ``rounds`` times,
and each reports the median of its repeats; the table shows the median over rounds. These
machines are noisy: read the ratios, which are measured side by side, rather than the absolute
times.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import console
from ..checks import check_integer
from ..errors import LmfnEdgeError, UsageError, first_line
from ..hardware import cpu_info, describe_cpu

__all__ = ["BenchConfig", "BenchError", "JOBS", "RUNNERS", "peak_rss_mb", "run_bench", "to_markdown", "worker"]

JOBS = {"720p_x4": (180, 320), "tile128": (128, 128), "tile64": (64, 64)}
INT8_RUNNERS = ("pte_int8", "pte_int8-mixed", "pte_int8-dynamic")  # pte_{precision} of an int8 variant's .pte
RUNNERS = ("eager", "pte_fp32", *INT8_RUNNERS, "onnxruntime")


class BenchError(LmfnEdgeError):
    """A runtime that could not be prepared or timed; the message is one line."""


@dataclass(frozen=True)
class BenchConfig:
    """What to time and how (the ``bench`` command's options)."""

    scale: int = 4
    weights: str | None = None
    random_init: bool = False
    threads: int = 2
    rounds: int = 3
    repeats: int = 5
    warmup: int = 2
    jobs: tuple[str, ...] = tuple(JOBS)
    int8_pte: dict[str, tuple[str, ...]] = field(default_factory=dict)  # job -> int8 .pte files, one per variant

    def __post_init__(self) -> None:
        for name, minimum in (("threads", 1), ("rounds", 1), ("repeats", 1), ("warmup", 0)):
            check_integer(getattr(self, name), f"--{name}", minimum, error=UsageError)
        unknown = sorted(set(self.jobs) - set(JOBS)) + sorted(set(self.int8_pte) - set(JOBS))
        if unknown or not self.jobs:
            raise UsageError(f"unknown job {', '.join(unknown) or '(none given)'}; jobs are {', '.join(JOBS)}")
        if self.weights and self.random_init:
            raise UsageError("--random-init and --weights cannot be combined")

    def check_int8(self) -> dict[tuple[str, str], str]:
        """``{(job, runner): path}`` of the int8 programs: each must be an int8 x``scale``
        .pte whose fixed shape is its job's input, at most one per variant and job."""
        from ..manifest import read_manifest
        from ..runtime.backends import check_pte

        found: dict[tuple[str, str], str] = {}
        for job, paths in self.int8_pte.items():
            for path in paths:
                if not Path(path).is_file():
                    raise UsageError(f"--int8-pte {job}: {path} not found")
                manifest = read_manifest(path)
                check_pte(Path(path), manifest)
                problems = []
                if not manifest.precision.startswith("int8") or manifest.target != "xnnpack":
                    problems.append(f"it is a {manifest.target} {manifest.precision} program")
                if manifest.scale != self.scale:
                    problems.append(f"it upscales x{manifest.scale}, not x{self.scale}")
                if manifest.shape.dynamic or manifest.shape.example != JOBS[job]:
                    h, w = JOBS[job]
                    problems.append(f"its input is {manifest.shape}, the job's {h}x{w} (export it with --shape {h}x{w})")
                runner = f"pte_{manifest.precision}"
                if (job, runner) in found:
                    problems.append(f"{found[job, runner]} is also a {manifest.precision} program for it")
                if problems:
                    raise UsageError(f"--int8-pte {job} {path}: {'; '.join(problems)}")
                found[job, runner] = str(path)
        return found


def _model(scale: int, weights: str | None, random_init: bool) -> torch.nn.Module:
    from ..model.weights import load_model

    return load_model(scale, weights, random_init)[0]


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


def worker(runner: str, job: str, artifact: str, config: BenchConfig) -> dict:
    """Load one runtime, time it; returns ``{"median_ms", "peak_rss_mb"}``."""
    torch.set_num_threads(config.threads)
    h, w = JOBS[job]
    x = torch.rand(1, 3, h, w)
    if runner == "eager":
        model = _model(config.scale, config.weights, config.random_init)

        def run():
            with torch.no_grad():
                model(x)
    elif runner.startswith("pte"):
        from executorch.extension.pybindings.portable_lib import (
            _unsafe_reset_threadpool,
        )
        from executorch.runtime import Runtime

        _unsafe_reset_threadpool(config.threads)
        with console.third_party():
            method = Runtime.get().load_program(artifact).load_method("forward")

        def run():
            method.execute([x])
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = config.threads, 1
        session = ort.InferenceSession(artifact, opts, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}

        def run():
            session.run(None, feed)

    for _ in range(config.warmup):
        run()
    times = []
    for _ in range(config.repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return {"median_ms": statistics.median(times) * 1e3, "peak_rss_mb": peak_rss_mb()}


WORKER_FIELDS = ("scale", "weights", "random_init", "threads", "repeats", "warmup")


def worker_spec(runner: str, job: str, artifact: str, config: BenchConfig) -> str:
    """A worker's argument: what it runs and the options of ``config`` it needs."""
    return json.dumps({"runner": runner, "job": job, "artifact": artifact,
                       **{name: getattr(config, name) for name in WORKER_FIELDS}})


def worker_command(runner: str, job: str, artifact: str, config: BenchConfig) -> list[str]:
    """The command line of a worker process (:mod:`lmfn_edge.evaluation.worker`)."""
    return [sys.executable, "-m", "lmfn_edge.evaluation.worker", worker_spec(runner, job, artifact, config)]


def _prepare(config: BenchConfig, model: torch.nn.Module, workdir: Path, say: Callable[[str], None],
             int8: dict) -> dict:
    """Export the .pte and ONNX artifacts for each job (not timed)."""
    from ..deployment import export
    from ..manifest import ShapeSpec
    from ..model.deploy import to_deploy

    artifacts: dict[tuple[str, str], str | None] = {}
    for job in config.jobs:
        h, w = JOBS[job]
        say(f"preparing {job}: .pte fp32 and ONNX ...")
        pte = workdir / f"{job}.pte"
        export(model, "xnnpack", pte, ShapeSpec(h, w), overlap=0)
        artifacts[(job, "pte_fp32")] = str(pte)
        for runner in INT8_RUNNERS:
            artifacts[(job, runner)] = int8.get((job, runner))
        onnx_path = workdir / f"{job}.onnx"
        try:
            with console.third_party():
                torch.onnx.export(to_deploy(model), (torch.rand(1, 3, h, w),), str(onnx_path), dynamo=True,
                                  input_names=["lr"], output_names=["sr"])
            artifacts[(job, "onnxruntime")] = str(onnx_path)
        except Exception as exc:  # noqa: BLE001  (report instead of failing the other runtimes)
            say(f"ONNX export failed for {job}: {first_line(exc)}")
            artifacts[(job, "onnxruntime")] = None
    return artifacts


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> dict:
    """Prepare the artifacts, time every runtime on every job in turns; returns the results."""
    from ..model.complexity import count_macs

    say = log or (lambda line: None)
    int8 = config.check_int8()
    model = _model(config.scale, config.weights, config.random_init)
    results = {"scale": config.scale, "threads": config.threads, "rounds": config.rounds, "repeats": config.repeats,
               "weights": config.weights or ("random-init" if config.random_init else "embedded"),
               "cpu": cpu_info(), "jobs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _prepare(config, model, Path(tmp), say, int8)
        for job in config.jobs:
            h, w = JOBS[job]
            macs = count_macs(model, h, w)
            samples: dict[str, list[dict]] = {r: [] for r in RUNNERS}
            for round_ in range(config.rounds):
                for runner in RUNNERS:
                    artifact = artifacts.get((job, runner)) if runner != "eager" else ""
                    if artifact is None:
                        continue
                    out = subprocess.run(worker_command(runner, job, artifact, config), capture_output=True, text=True)
                    if out.returncode != 0:
                        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                        raise BenchError(f"{runner} worker failed on {job}: {last}")
                    samples[runner].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    say(f"{job} round {round_ + 1} {runner}: {samples[runner][-1]['median_ms']:.1f} ms")
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
            fp32 = rows.get("pte_fp32", {}).get("median_ms")
            for row in rows.values():
                row["speedup_vs_eager"] = eager / row["median_ms"] if eager else None
                row["speedup_vs_pte_fp32"] = fp32 / row["median_ms"] if fp32 else None
            results["jobs"][job] = {"input": [h, w], "output": [h * config.scale, w * config.scale],
                                    "gmacs": macs / 1e9, "runtimes": rows}
    return results


def to_markdown(results: dict) -> str:
    lines = []
    if "cpu" in results:
        lines += [f"CPU: {describe_cpu(results['cpu'])}, {results['threads']} thread(s)", ""]
    lines += ["| job | runtime | median ms | speedup vs eager | vs fp32 .pte | peak RSS MB | file MB | GFLOP/s |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for job, data in results["jobs"].items():
        h, w = data["input"]
        for runner, r in data["runtimes"].items():
            size = f"{r['artifact_mb']:.2f}" if r.get("artifact_mb") else "-"
            speedup = f"{r['speedup_vs_eager']:.2f}x" if r.get("speedup_vs_eager") else "-"
            vs_pte = f"{r['speedup_vs_pte_fp32']:.2f}x" if r.get("speedup_vs_pte_fp32") else "-"
            lines.append(f"| {job} ({w}x{h} -> {w * results['scale']}x{h * results['scale']}) | {runner} | "
                         f"{r['median_ms']:.1f} | {speedup} | {vs_pte} | {r['peak_rss_mb']:.0f} | {size} | {r['gflops']:.1f} |")
    return "\n".join(lines)
