"""python -m lmfn_edge.bench: latency and peak memory of eager, .pte and ONNX Runtime, side by side.

Each runtime runs in its own worker process, in turns; read the ratios, which are measured side
by side (see :mod:`lmfn_edge.evaluation.latency`). ``--profile P.pte`` prints where one
program's time goes instead, per operator and per LMFN module (:mod:`lmfn_edge.evaluation.profile`).
"""

from __future__ import annotations

import argparse
import json
import sys

from . import cli

MAX_THREADS = 256  # a thread pool larger than any phone or server has is a typo, not a request

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .evaluation.latency import JOBS

    p = cli.parser("lmfn_edge.bench", "Latency and peak memory of eager PyTorch, the XNNPACK .pte (fp32, int8) and "
                                      "ONNX Runtime, side by side.")
    cli.add_scale(p, default=4)
    cli.add_weights(p)
    cli.add_random_init(p)
    p.add_argument("--threads", type=cli.int_at_least(1, MAX_THREADS), default=2, help="threads for every runtime (default 2)")
    p.add_argument("--rounds", type=cli.int_at_least(1), default=3, help="turns over all runtimes (default 3)")
    p.add_argument("--repeats", type=cli.int_at_least(1), default=5, help="timed runs per worker (default 5)")
    p.add_argument("--warmup", type=cli.int_at_least(0), default=2, help="untimed runs per worker (default 2)")
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, from {', '.join(JOBS)} (default: all)")
    p.add_argument("--int8-pte", nargs=2, action="append", metavar=("JOB", "PTE"),
                   help="an int8 .pte for a job (repeatable; one per int8 variant and job)")
    p.add_argument("--profile", metavar="PTE", help="instead: where this .pte's time goes, per XNNPACK kernel and per LMFN "
                                                    "module and block (ExecuTorch etdump), --repeats timed runs after "
                                                    "--warmup at --threads")
    p.add_argument("--top", type=cli.int_at_least(1), default=20, help="rows of the kernel and module tables of --profile (default 20)")
    cli.add_json(p)
    return p


def _by_job(pairs: list[list[str]]) -> dict[str, tuple[str, ...]]:
    jobs: dict[str, tuple[str, ...]] = {}
    for job, path in pairs:
        jobs[job] = (*jobs.get(job, ()), path)
    return jobs


def _run(args: argparse.Namespace) -> int:
    from .evaluation.latency import BenchConfig, run_bench, to_markdown
    from .files import atomic_write_text, check_output

    config = BenchConfig(scale=args.scale, weights=args.weights, random_init=args.random_init, threads=args.threads,
                         rounds=args.rounds, repeats=args.repeats, warmup=args.warmup,
                         jobs=tuple(j.strip() for j in args.jobs.split(",") if j.strip()),
                         int8_pte=_by_job(args.int8_pte or []))
    if args.profile:
        from .evaluation.profile import profile_pte

        if args.json:
            check_output(args.json, inputs=(args.profile,), flag="--json")
        profile = profile_pte(args.profile, args.threads, args.repeats, args.warmup)
        print(profile.markdown(args.top))
        if args.json:
            atomic_write_text(args.json, json.dumps(profile.to_dict(), indent=2) + "\n")
        return 0
    if args.json:
        check_output(args.json, inputs=(args.weights, *(p for ps in config.int8_pte.values() for p in ps)), flag="--json")
    results = run_bench(config, log=lambda line: print(line, file=sys.stderr))
    print(to_markdown(results))
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
