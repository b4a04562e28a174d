"""``python -m training.loop_speed``: the real training loop's steps/s, change by change, side by side.

``training.throughput`` times the step alone on random batches; this runs the whole loop
(:class:`~training.train.FloatTrainer` on a config: data, step, EMA, finite checks, logging,
validation, checkpoint, plot) for ``--warmup`` + ``--steps`` iterations per variant, in rounds
(every variant once per round, in order), so that drift of a shared machine hits each alike. The
default config is the v2 x4 CPU run (``training/configs/corpus_cpu.toml``).

A short window holds one validation and one checkpoint (each run ends with both); their cost is
taken out and put back at the config's ``val_every`` and ``ckpt_every``, so the number is what a
long run of the config gets per step. Every variant is measured in the same process; the table
(docs/training.md, "Loop speed") gives the median over rounds and each variant's ratio to the
first.

    python -m training.loop_speed --threads 2 --rounds 2 --json runs/loop_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from lmfn_edge import cli
from lmfn_edge.errors import UsageError
from lmfn_edge.files import atomic_write_text, check_output
from lmfn_edge.hardware import cpu_info, describe_cpu

from .config import TrainConfig, load_config
from .train import FloatTrainer

__all__ = ["VARIANTS", "measure", "main"]

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "corpus_cpu.toml"

# Each variant is the previous one plus one change; "v2" is the loop the v2 x4 weights were
# trained with. (config fields, whether LKA's dilated conv runs on sub-images)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "v2": ({"channels_last": False, "amp_bf16": False}, False),
    "subimage": ({"channels_last": False, "amp_bf16": False}, True),
    "channels-last": ({"channels_last": True, "amp_bf16": False}, True),
    "bf16": ({"channels_last": True, "amp_bf16": True}, True),
}
DESCRIPTIONS = {
    "v2": "the v2 run's loop (NCHW, oneDNN's dilated depthwise conv)",
    "subimage": "+ LKA's dilated conv on 3x3 sub-images",
    "channels-last": "+ channels-last (NHWC) maps",
    "bf16": "+ bf16 autocast (fp32 master weights)",
}


@contextlib.contextmanager
def _dilated_conv(on_sub_images: bool) -> Iterator[None]:
    """The "v2" variant trains LKA's dilated conv with the conv itself, as v2 did."""
    from lmfn_edge.model import lmfn

    saved = lmfn.dilated_depthwise
    if not on_sub_images:
        lmfn.dilated_depthwise = lambda conv, x: conv(x)
    try:
        yield
    finally:
        lmfn.dilated_depthwise = saved


class _TimedTrainer(FloatTrainer):
    """Resets the loop's clock when the warm-up ends and notes when the last step is done."""

    def __init__(self, *args: Any, warmup: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warmup, self.started, self.ended = warmup, 0.0, 0.0

    def before_step(self, model, step: int) -> None:
        if step == self.warmup:
            self.clock.reset()
            self.started = time.perf_counter()

    def finish(self, model, ema, summary, val_images) -> None:
        self.ended = time.perf_counter()


def measure(config: TrainConfig, variant: str, steps: int, warmup: int, verbose: bool = False) -> dict[str, Any]:
    """One run of ``variant`` on ``config``: loop steps/s at the config's validation and checkpoint
    intervals, and the seconds per phase (per step, those two amortised)."""
    fields, on_sub_images = VARIANTS[variant]
    run = replace(config, iterations=warmup + steps, time_limit=0, val_every=0, ckpt_every=0,
                  log_every=min(config.log_every, steps), **fields)
    with tempfile.TemporaryDirectory(prefix="loop_speed_") as tmp, _dilated_conv(on_sub_images):
        trainer = _TimedTrainer(run, Path(tmp) / "run", progress=False, warmup=warmup)
        quiet = io.StringIO()  # the run's own lines (init_from, validation) unless --verbose
        with contextlib.redirect_stderr(sys.stderr if verbose else quiet), \
                contextlib.redirect_stdout(sys.stdout if verbose else quiet):
            trainer.run()
    window = trainer.ended - trainer.started
    phases = trainer.clock.seconds()
    once = {"validation": phases.pop("validation", 0.0),
            "checkpoint": phases.pop("checkpoint", 0.0) + phases.pop("plot", 0.0)}
    per_step = {k: v / steps for k, v in phases.items()}
    per_step["other"] = max(0.0, (window - sum(once.values())) / steps - sum(per_step.values()))
    every = {"validation": config.val_every if config.val_root else 0, "checkpoint": config.ckpt_every}
    for name, seconds in once.items():
        per_step[name] = seconds / every[name] if every[name] else 0.0
    total = sum(per_step.values())
    return {"variant": variant, "steps_per_s": 1.0 / total, "seconds_per_step": per_step,
            "validation_s": once["validation"], "checkpoint_s": once["checkpoint"]}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.loop_speed", "The training loop's steps/s, change by change, side by side.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the run to time (default: the v2 x4 CPU "
                   "config, training/configs/corpus_cpu.toml)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated, from {', '.join(VARIANTS)} (default: all but bf16, which joins on "
                        "CPUs with AVX512-BF16 or AMX-BF16)")
    p.add_argument("--steps", type=cli.int_at_least(2, 10_000), default=20, help="timed steps per run")
    p.add_argument("--warmup", type=cli.int_at_least(1, 10_000), default=3,
                   help="untimed steps first (the first read of each image)")
    p.add_argument("--rounds", type=cli.int_at_least(1, 100), default=2, help="runs of every variant")
    p.add_argument("--threads", type=cli.int_at_least(1, 1024), default=2, help="torch threads")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field, e.g. --set model=lmfn_x2")
    cli.add_json(p)
    return p


def _variants(text: str | None, features: list) -> list[str]:
    if text is None:
        bf16 = "AVX512-BF16" in features or "AMX-BF16" in features
        return [v for v in VARIANTS if v != "bf16" or bf16]
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise UsageError(f"--variants: unknown {', '.join(unknown) or '(none given)'}; choose from "
                             f"{', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


def _run(args: argparse.Namespace) -> int:
    import torch

    cpu = cpu_info()
    variants = _variants(args.variants, cpu["features"])
    if args.json:
        check_output(args.json, (args.config,), flag="--json")
    config = load_config(args.config, args.sets, TrainConfig)
    torch.set_num_threads(args.threads)
    print(f"{config.model}, batch {config.batch_size} of {config.patch_size} px; {args.rounds} round(s) of "
          f"{', '.join(variants)}", file=sys.stderr)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            result = measure(config, v, args.steps, args.warmup, args.verbose)
            runs[v].append(result)
            print(f"round {r + 1}/{args.rounds} {v}: {result['steps_per_s']:.3f} steps/s", file=sys.stderr)
    rows = []
    for v in variants:
        speeds = [run["steps_per_s"] for run in runs[v]]
        split = {k: statistics.median(run["seconds_per_step"][k] for run in runs[v]) for k in runs[v][0]["seconds_per_step"]}
        rows.append({"variant": v, "description": DESCRIPTIONS[v], "steps_per_s": statistics.median(speeds),
                     "rounds": speeds, "seconds_per_step": split})
    base = rows[0]["steps_per_s"]
    print(f"CPU: {describe_cpu(cpu)}, {args.threads} thread(s)\n")
    print(f"| variant | steps/s | x {rows[0]['variant']} | step | data | validation | checkpoint | other |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        s = row["seconds_per_step"]
        total = sum(s.values())
        pct = {k: f"{100 * s.get(k, 0.0) / total:.1f} %" for k in ("step", "data", "validation", "checkpoint")}
        rest = f"{100 * (total - sum(s.get(k, 0.0) for k in pct)) / total:.1f} %"
        print(f"| {row['description']} | {row['steps_per_s']:.3f} | {row['steps_per_s'] / base:.2f}x | {pct['step']} | "
              f"{pct['data']} | {pct['validation']} | {pct['checkpoint']} | {rest} |")
    if args.json:
        report = {"cpu": cpu, "threads": args.threads, "config": str(args.config), "model": config.model,
                  "batch_size": config.batch_size, "patch_size": config.patch_size, "steps": args.steps,
                  "warmup": args.warmup, "rows": rows}
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
