"""python -m lmfn_edge.arm: LMFN's .pte programs on emulated ARM cores, against x86 and eager.

Exports each ``--precision`` at a small ``--shape`` (or takes ``--pte`` programs), runs them
through ExecuTorch on this machine and through ``pte_runner`` under QEMU on each ``--cpus``
model (:mod:`lmfn_edge.runtime.arm`), and prints, per program and core: the largest difference
and the PSNR against the x86 output and against the eager float model, the share of int8
outputs within one output step of x86, and the guest instructions of one forward pass.
docs/deployment.md ("ARM cores under emulation") shows the table and what it does not say.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cli

__all__ = ["ArmRow", "build_parser", "main", "grid_step", "parity"]

DEFAULT_CPUS = "a72,a76,i8mm"


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("lmfn_edge.arm", "Run LMFN's ExecuTorch programs on emulated ARM cores (QEMU) and compare them "
                                    "with x86 and the eager model.")
    cli.add_scale(p, help="upscaling factor (default 4)")
    cli.add_weights(p)
    cli.add_random_init(p)
    p.add_argument("--precision", default="fp32,int8",
                   help="comma-separated programs to export: fp32, int8, int8-dynamic (default fp32,int8)")
    p.add_argument("--shape", default="32x32",
                   help="LR input HxW of the exported programs (default 32x32: emulation runs about 100x slower "
                        "than the host)")
    p.add_argument("--pte", action="append", metavar="PATH",
                   help="an exported .pte (with its sidecar) instead of exporting; repeatable (the eager column "
                        "uses --weights, or the embedded weights of the program's scale)")
    p.add_argument("--cpus", default=DEFAULT_CPUS,
                   help=f"comma-separated core models: a72, a76, i8mm, sme2 (QEMU 10, no instruction count), sme "
                        f"(QEMU 7.2 with SME, known wrong for int8) (default {DEFAULT_CPUS})")
    p.add_argument("--threads", type=cli.int_at_least(1), default=1,
                   help="runner threads (default 1; instruction counts are exact with 1)")
    p.add_argument("--no-count", action="store_true", help="skip the instruction count (faster)")
    p.add_argument("--timeout", type=cli.int_at_least(1), default=900,
                   help="seconds one emulated run may take before it is reported as failed (default 900)")
    p.add_argument("--setup", action="store_true", help="only build the emulated environment (cached) and exit")
    p.add_argument("--cache", metavar="DIR", help="where the runner, plugin and wheel are cached "
                                                  "(default ~/.cache/lmfn_edge/arm)")
    cli.add_json(p, "the table")
    cli.add_progress(p)
    return p


@dataclass
class ArmRow:
    program: str  # the program's precision (its sidecar's)
    shape: str  # its LR input, HxW
    cpu: str
    max_abs_vs_x86: float | None  # None: the run failed (error)
    psnr_vs_x86: float | None
    psnr_vs_eager: float | None
    x86_psnr_vs_eager: float
    within_one_step: float | None  # int8 with an output grid: share of outputs within one step of x86
    instructions: int | None
    error: str | None = None


def grid_step(y):
    """The output grid of a static int8 program, read off its output (``(q - zp) * step``
    values); ``None`` when the values are not on one grid (fp32, dynamic int8)."""
    import numpy as np

    levels = np.unique(y.astype(np.float64))
    gaps = np.diff(levels)
    if levels.size < 16 or levels.size > 256:
        return None
    # The smallest gap is the step only to float32 rounding, which adds up over 255 steps: it
    # names each level's integer, and the span over the integers gives the step to the end.
    units = np.round((levels - levels[0]) / gaps.min())
    if units[-1] < 1:
        return None
    step = float((levels[-1] - levels[0]) / units[-1])
    return step if np.abs((levels - levels[0]) / step - units).max() < 1e-2 else None


def parity(y, reference, step: float | None) -> dict:
    """Max difference, PSNR (peak 1, all RGB values) and, given ``step``, the share within one step."""
    import numpy as np

    from .metrics import psnr_float

    diff = np.abs(y.astype(np.float64) - reference.astype(np.float64))
    return {"max_abs": float(diff.max()), "psnr": psnr_float(y, reference),
            "within_one_step": None if step is None else float(np.mean(diff <= step * 1.001))}


def _programs(args, folder: Path, say) -> list[Path]:
    from .deployment import ExportRequest

    if args.pte:
        return [Path(p) for p in args.pte]
    out = []
    # overlap 0: these programs are compared tile for tile, never tiled into an image.
    for precision in args.precision.split(","):
        path = folder / f"{precision}.pte"
        say(f"exporting {precision} at {args.shape}")
        ExportRequest(target="xnnpack", scale=args.scale, weights=args.weights, random_init=args.random_init,
                      precision=precision, shape=args.shape, overlap=0, output=str(path)).run(log=lambda line: None)
        out.append(path)
    return out


def _check(args) -> list:
    from .errors import UsageError
    from .runtime.arm import CPUS

    if args.pte and (args.precision != "fp32,int8" or args.shape != "32x32"):
        raise UsageError("--pte programs carry their own precision and shape; drop --precision/--shape")
    if args.weights and args.random_init:
        raise UsageError("--weights and --random-init contradict each other")
    precisions = [p for p in args.precision.split(",")]
    for p in precisions:
        if p not in ("fp32", "int8", "int8-dynamic"):
            raise UsageError(f"unknown --precision {p!r}; choose from fp32, int8, int8-dynamic")
    names = args.cpus.split(",")
    unknown = [n for n in names if n not in CPUS]
    if unknown:
        raise UsageError(f"unknown --cpus {','.join(unknown)}; choose from {', '.join(CPUS)}")
    for path in args.pte or ():
        if not Path(path).is_file():
            raise UsageError(f"--pte {path}: no such file")
    return [CPUS[n] for n in names]


def _run(args: argparse.Namespace) -> int:
    cpus = _check(args)
    from .runtime.arm import CACHE, environment

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    env = environment(Path(args.cache) if args.cache else CACHE, want_qemu10=any(c.qemu == "10" for c in cpus),
                      say=say)
    if args.setup:
        print(f"ready: {env.runner} (QEMU {', '.join(sorted(env.qemu))})")
        return 0
    with tempfile.TemporaryDirectory(prefix="lmfn_arm_") as tmp:
        rows = compare(_programs(args, Path(tmp), say), cpus, env, args, say)
    print(table(rows))
    if args.json:
        from .files import atomic_write_text

        atomic_write_text(args.json, json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    failed = [r for r in rows if r.error]
    for r in failed:
        say(f"error: {r.program} {r.shape} on {r.cpu}: {r.error}")
    return 1 if failed else 0


def compare(programs, cpus, env, args, say) -> list[ArmRow]:
    import torch
    from tqdm import tqdm

    from .deployment.goldens import golden_input
    from .manifest import read_manifest
    from .model.weights import load_model
    from .runtime.arm import ArmError, run_pte
    from .runtime.backends import pte_backend

    rows = []
    bar = tqdm(total=len(programs) * len(cpus), desc="emulated runs", unit="run", disable=args.no_progress,
               file=sys.stderr)
    for path in programs:
        backend = pte_backend(path)
        manifest = read_manifest(path)
        name = manifest.precision
        h, w = manifest.shape.example
        shape = f"{h}x{w}"
        x = golden_input(max(h, w))[..., :h, :w].numpy()
        x86 = backend.run(x)
        model, _ = load_model(manifest.scale, weights=args.weights, random_init=args.random_init)
        with torch.no_grad():
            eager = model(torch.from_numpy(x)).numpy()
        step = grid_step(x86)
        x86_vs_eager = parity(x86, eager, None)["psnr"]
        for cpu in cpus:
            bar.set_postfix_str(f"{name} on {cpu.name}")
            try:
                run = run_pte(env, path, x, cpu, threads=args.threads, count=not args.no_count, timeout=args.timeout)
            except ArmError as exc:  # one core's failure (a timeout) leaves the other rows standing
                rows.append(ArmRow(name, shape, cpu.name, None, None, None, x86_vs_eager, None, None,
                                   str(exc).removeprefix(f"{cpu.name}: ")))
                bar.update()
                continue
            vs_x86 = parity(run.output, x86, step)
            rows.append(ArmRow(name, shape, cpu.name, vs_x86["max_abs"], vs_x86["psnr"],
                               parity(run.output, eager, None)["psnr"], x86_vs_eager, vs_x86["within_one_step"],
                               run.instructions))
            bar.update()
    bar.close()
    return rows


def table(rows: list[ArmRow]) -> str:
    """The markdown table; "vs fp32" divides by the fp32 program's count on the same core and shape."""
    fp32 = {(r.cpu, r.shape): r.instructions for r in rows if r.program == "fp32" and r.instructions}
    head = ("| program | shape | core | max abs vs x86 | PSNR vs x86 | PSNR vs eager (x86) | within 1 step | "
            "instructions / pass | vs fp32 |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if r.error:
            lines.append(f"| {r.program} | {r.shape} | {r.cpu} | failed: {r.error} | | ({_db(r.x86_psnr_vs_eager)}) "
                         f"| | | |")
            continue
        base = fp32.get((r.cpu, r.shape))
        ratio = f"{r.instructions / base:.2f}" if r.instructions and base else "-"
        step = "-" if r.within_one_step is None else f"{100 * r.within_one_step:.1f} %"
        insns = "-" if r.instructions is None else f"{r.instructions / 1e6:.1f} M"
        lines.append(f"| {r.program} | {r.shape} | {r.cpu} | {r.max_abs_vs_x86:.2e} | {_db(r.psnr_vs_x86)} | "
                     f"{_db(r.psnr_vs_eager)} ({_db(r.x86_psnr_vs_eager)}) | {step} | {insns} | {ratio} |")
    return "\n".join(lines)


def _db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2f} dB"


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    return cli.run(p, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
