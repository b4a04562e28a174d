"""Ship int8 parameters: copy a QAT run's ``lmfn_x{s}_int8.safetensors`` into the package and pin
the output of the program they build (docs/quantization.md, "Shipped int8").

    python -m quantization.int8_release runs/qat_x2/lmfn_x2_int8.safetensors [...]
    python -m quantization.int8_release --check     # rebuild every embedded program, compare

A file is refused unless it was tuned from the float weights the package embeds for its scale
(the sidecar of every int8 export then traces to the shipped float weights), and it is at most
``MAX_BYTES``. Shipping writes ``lmfn_edge/weights/lmfn_x{s}_int8.safetensors`` and, in
``lmfn_edge/data/int8_golden.json``, the program's fingerprint
(:func:`~lmfn_edge.deployment.int8.program_fingerprint`: graph, int8 weights, scales) and its
output on :func:`~lmfn_edge.deployment.int8.golden_input` in units of its output int8 step;
``tests/test_default_weights.py`` rebuilds each program and checks the fingerprint exactly and
the output within :data:`~lmfn_edge.deployment.int8.GOLDEN_CODES_RMS` steps (CPUs differ in
their fp32 kernels), so a change of the deploy form, the quantizer or torch that changes the int8
program fails CI.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
from pathlib import Path


from lmfn_edge import cli
from lmfn_edge.deployment.int8 import (
    GOLDEN_PATH,
    GOLDEN_SIDE,
    Int8ParamsError,
    golden_input,
    golden_problems,
    int8_program,
    output_codes,
    program_fingerprint,
    read_golden,
    read_int8_params,
)
from lmfn_edge.errors import UsageError
from lmfn_edge.io import atomic_write_text
from lmfn_edge.manifest import ShapeSpec
from lmfn_edge.model.weights import default_weights_path, sha256_file

__all__ = ["MAX_BYTES", "check", "golden_entry", "release"]

MAX_BYTES = 2_300_000  # "about 2 MB a scale": the float weights (1.6 MB) plus fake-quant state


def golden_entry(params: Path) -> dict:
    """The golden record of the program ``params`` builds at ``GOLDEN_SIDE``."""
    program, _ = int8_program(params, ShapeSpec(GOLDEN_SIDE, GOLDEN_SIDE))
    codes, step = output_codes(program, golden_input())
    array = codes.numpy().astype("<i2")
    return {"params_sha256": sha256_file(params), "program_sha256": program_fingerprint(program), "side": GOLDEN_SIDE,
            "step": step, "shape": list(array.shape), "codes": base64.b64encode(array.tobytes()).decode()}


def release(params: Path) -> Path:
    """Validate ``params``, copy it into the package and store its golden output; returns the copy."""
    _, info = read_int8_params(params)
    scale = info.lmfn_config.scale
    shipped = default_weights_path(f"lmfn_x{scale}")
    if info.weights.get("sha256") != sha256_file(shipped):
        raise Int8ParamsError(f"{params} was tuned from {info.weights.get('source')} "
                              f"(sha256 {str(info.weights.get('sha256'))[:12]}...), not from the embedded {shipped.name}: "
                              f"run QAT on the shipped weights (python -m quantization.qat --config "
                              f"quantization/configs/qat_x{scale}.toml)")
    if params.stat().st_size > MAX_BYTES:
        raise Int8ParamsError(f"{params} is {params.stat().st_size} bytes; the package ships at most {MAX_BYTES}")
    target = shipped.with_name(f"lmfn_x{scale}_int8.safetensors")
    entry = golden_entry(params)  # builds the program: a file that does not fit fails here, before any write
    golden = {"description": "int8 output codes of the embedded int8 parameters on golden_input(); "
                             "regenerate with python -m quantization.int8_release",
              "scales": {str(k): v for k, v in (read_golden() if GOLDEN_PATH.is_file() else {}).items()}}
    golden["scales"][str(scale)] = entry
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        shutil.copyfile(params, staged)
        staged.replace(target)
    atomic_write_text(GOLDEN_PATH, json.dumps(golden, indent=1, sort_keys=True) + "\n")
    return target


def check() -> list[str]:
    """Rebuild every stored golden program; one line per scale whose program or output drifted
    (:func:`lmfn_edge.deployment.int8.golden_problems`)."""
    problems = []
    for scale, entry in sorted(read_golden().items()):
        params = default_weights_path(f"lmfn_x{scale}").with_name(f"lmfn_x{scale}_int8.safetensors")
        if sha256_file(params) != entry["params_sha256"]:
            problems.append(f"x{scale}: {params.name} changed since its golden was written")
            continue
        program, _ = int8_program(params, ShapeSpec(entry["side"], entry["side"]))
        codes, _ = output_codes(program, golden_input(entry["side"]))
        problems += [f"x{scale}: {p}" for p in golden_problems(program, entry, codes)]
    return problems


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.int8_release", "Ship QAT int8 parameters in the package and pin their golden output.")
    p.add_argument("params", nargs="*", type=Path, help="lmfn_x{s}_int8.safetensors from python -m quantization.qat")
    p.add_argument("--check", action="store_true", help="rebuild the embedded programs and compare to the golden")
    return p


def _run(args: argparse.Namespace) -> int:
    if bool(args.params) == args.check:
        raise UsageError("give int8 parameter files to ship, or --check (not both)")
    if args.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        print("int8 golden outputs: " + ("drift" if problems else "match"))
        return 1 if problems else 0
    for params in args.params:
        target = release(params)
        print(f"shipped {params} as {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
