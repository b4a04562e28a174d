"""Ship int8 parameters: copy a QAT run's ``lmfn_x{s}_int8.safetensors`` into the package and pin
the output of the program they build (docs/quantization.md, "Shipped int8").

    python -m quantization.int8_release runs/qat_x2/lmfn_x2_int8.safetensors [...]
    python -m quantization.int8_release --pin int8-dynamic   # pin the dynamic variant's programs
    python -m quantization.int8_release --check     # rebuild every pinned program, compare
    python -m quantization.int8_release --pin-arm x4_int8.pte  # its output on emulated ARM cores

The ``int8-dynamic`` variant is built from the embedded float weights and the fp32 groups of
``lmfn_edge/data/int8_variants.json``; ``--pin`` stores its programs' fingerprints and outputs
beside the static ones (``python -m quantization.sensitivity --write`` pins after it records).

A file is refused unless it was tuned from the float weights the package embeds for its scale
(the sidecar of every int8 export then traces to the shipped float weights), and it is at most
``MAX_BYTES``. Shipping writes ``lmfn_edge/weights/lmfn_x{s}_int8.safetensors`` and, in
``lmfn_edge/data/int8_golden.json``, the program's fingerprint
(:func:`~lmfn_edge.deployment.goldens.program_fingerprint`: graph, int8 weights, scales) and its
output on :func:`~lmfn_edge.deployment.goldens.golden_input` in units of its output int8 step;
``tests/test_default_weights.py`` rebuilds each program and checks the fingerprint exactly and
the output within :data:`~lmfn_edge.deployment.goldens.GOLDEN_CODES_RMS` steps (CPUs differ in
their fp32 kernels), so a change of the deploy form, the quantizer or torch that changes the int8
program fails CI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from lmfn_edge import cli
from lmfn_edge.deployment.goldens import (
    ARM_GOLDEN,
    DYNAMIC_GOLDEN_STEP,
    GOLDEN_PATH,
    GOLDEN_SIDE,
    dynamic_golden_problems,
    encode_codes,
    golden_input,
    golden_problems,
    golden_record,
    output_codes,
    read_golden,
    store_golden,
)
from lmfn_edge.deployment.int8 import Int8ParamsError, dynamic_program, int8_program, read_int8_params
from lmfn_edge.deployment.variants import DYNAMIC
from lmfn_edge.errors import UsageError
from lmfn_edge.files import atomic_write_text
from lmfn_edge.manifest import ShapeSpec
from lmfn_edge.model.weights import load_model, sha256_file
from lmfn_edge.registry import REGISTRY_PATH, WEIGHTS_DIR, int8_params_name, model_name, models, shipped

__all__ = ["ARM_PIN_CPUS", "MAX_BYTES", "arm_entry", "check", "dynamic_entry", "golden_entry", "pin", "release"]

MAX_BYTES = 2_300_000  # "about 2 MB a scale": the float weights (1.6 MB) plus fake-quant state


def golden_entry(params: Path) -> dict:
    """The golden record of the program ``params`` builds at ``GOLDEN_SIDE``."""
    program, _ = int8_program(params, ShapeSpec(GOLDEN_SIDE, GOLDEN_SIDE))
    return golden_record(program, params_sha256=sha256_file(params))


def dynamic_entry(scale: int, side: int = GOLDEN_SIDE) -> dict:
    """The golden record of the shipped ``lmfn_x{scale}``'s ``int8-dynamic`` program at ``side``."""
    model, weights = load_model(scale)
    program, info = dynamic_program(model, ShapeSpec(side, side), weights.to_dict())
    return golden_record(program, side, DYNAMIC_GOLDEN_STEP, weights_sha256=sha256_file(shipped(scale).weights_path),
                         fp32_groups=info.details["fp32_groups"])


ARM_PIN_CPUS = ("a72", "a76", "i8mm")


def arm_entry(pte: Path) -> tuple[int, dict]:
    """``(scale, record)``: the ARM golden record of ``pte``, a static int8 export of the embedded int8 parameters at
    the golden side: its output on each of :data:`ARM_PIN_CPUS` (they must agree exactly) in
    units of the x86 golden's step."""
    import numpy as np

    from lmfn_edge.manifest import read_manifest
    from lmfn_edge.runtime.arm import CPUS, environment, run_pte

    manifest = read_manifest(pte)
    params = shipped(manifest.scale).int8_path
    if manifest.precision != "int8" or manifest.weights.get("sha256") != sha256_file(params):
        raise UsageError(f"{pte} is not an int8 export of the embedded {params.name} (python -m lmfn_edge.export "
                         f"--precision int8 --scale {manifest.scale} --shape {GOLDEN_SIDE}x{GOLDEN_SIDE})")
    if manifest.shape.dynamic or manifest.shape.example != (GOLDEN_SIDE, GOLDEN_SIDE):
        raise UsageError(f"{pte} takes {manifest.shape}; the golden input is {GOLDEN_SIDE}x{GOLDEN_SIDE}")
    step = read_golden()[manifest.scale]["step"]
    env = environment(say=lambda line: print(line, file=sys.stderr))
    x = golden_input(GOLDEN_SIDE).numpy()
    outputs = [run_pte(env, pte, x, CPUS[name], count=False).output for name in ARM_PIN_CPUS]
    if any(not np.array_equal(out, outputs[0]) for out in outputs[1:]):
        raise Int8ParamsError(f"{pte}: the ARM cores {', '.join(ARM_PIN_CPUS)} disagree; nothing pinned")
    return manifest.scale, {"params_sha256": sha256_file(params), "side": GOLDEN_SIDE, "step": step,
                            "cpus": list(ARM_PIN_CPUS), **encode_codes(np.round(outputs[0] / step))}


def release(params: Path) -> Path:
    """Validate ``params``, copy it into the package and store its golden output; returns the copy."""
    _, info = read_int8_params(params)
    scale = info.lmfn_config.scale
    model = shipped(scale)
    if info.weights.get("sha256") != model.weights_sha256:
        raise Int8ParamsError(f"{params} was tuned from {info.weights.get('source')} "
                              f"(sha256 {str(info.weights.get('sha256'))[:12]}...), not from the embedded {model.weights_file}: "
                              f"run QAT on the shipped weights (python -m quantization.qat --config "
                              f"quantization/configs/qat_x{scale}.toml)")
    if params.stat().st_size > MAX_BYTES:
        raise Int8ParamsError(f"{params} is {params.stat().st_size} bytes; the package ships at most {MAX_BYTES}")
    target = WEIGHTS_DIR / int8_params_name(scale)
    entry = golden_entry(params)  # builds the program: a file that does not fit fails here, before any write
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        shutil.copyfile(params, staged)
        staged.replace(target)
    _register_int8(scale, target)
    store_golden(scale, entry)
    return target


def _register_int8(scale: int, path: Path) -> None:
    """Name ``path`` (and its SHA-256) as the shipped model's int8 parameters in the registry."""
    table = json.loads(REGISTRY_PATH.read_text())
    table["models"][model_name(scale)].update(int8_file=path.name, int8_sha256=sha256_file(path))
    atomic_write_text(REGISTRY_PATH, json.dumps(table, indent=1) + "\n")
    models.cache_clear()


def pin(precision: str, scales: tuple[int, ...] = (2, 3, 4)) -> None:
    """Store the golden records of ``precision``'s programs (built from the embedded float weights)."""
    if precision != DYNAMIC:
        raise UsageError(f"--pin takes {DYNAMIC} (the variant built from the float weights), not {precision!r}; "
                         "static int8 is pinned when its parameters are shipped")
    for scale in scales:
        store_golden(scale, dynamic_entry(scale), precision)


def check() -> list[str]:
    """Rebuild every stored golden program; one line per program whose source, graph or output
    drifted (:func:`lmfn_edge.deployment.goldens.golden_problems`)."""
    problems = []
    for scale, entry in sorted(read_golden().items()):
        params = shipped(scale).int8_path
        if sha256_file(params) != entry["params_sha256"]:
            problems.append(f"x{scale}: {params.name} changed since its golden was written")
            continue
        program, _ = int8_program(params, ShapeSpec(entry["side"], entry["side"]))
        codes, _ = output_codes(program, golden_input(entry["side"]))
        problems += [f"x{scale}: {p}" for p in golden_problems(program, entry, codes)]
    for scale, entry in sorted(read_golden(precision=DYNAMIC).items()):
        problems += [f"x{scale} {DYNAMIC}: {p}" for p in dynamic_golden_problems(scale, entry)]
    return problems


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("quantization.int8_release", "Ship QAT int8 parameters in the package and pin their golden output.")
    p.add_argument("params", nargs="*", type=Path, help="lmfn_x{s}_int8.safetensors from python -m quantization.qat")
    p.add_argument("--pin", metavar="VARIANT", help=f"store the golden outputs of a variant built from the float "
                                                    f"weights ({DYNAMIC}), at x2, x3 and x4")
    p.add_argument("--check", action="store_true", help="rebuild the pinned programs and compare to the golden")
    p.add_argument("--pin-arm", metavar="PTE", type=Path,
                   help="store the ARM golden: this int8 .pte's output on emulated ARM cores (python -m lmfn_edge.arm "
                        "--setup first)")
    return p


def _run(args: argparse.Namespace) -> int:
    if sum((bool(args.params), args.check, args.pin is not None, args.pin_arm is not None)) != 1:
        raise UsageError("give int8 parameter files to ship, --pin VARIANT, --pin-arm PTE or --check (one of them)")
    if args.pin_arm is not None:
        scale, entry = arm_entry(args.pin_arm)
        store_golden(scale, entry, ARM_GOLDEN)
        print(f"pinned the ARM output of {args.pin_arm} (x{scale}) in {GOLDEN_PATH}")
        return 0
    if args.check:
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        print("int8 golden outputs: " + ("drift" if problems else "match"))
        return 1 if problems else 0
    if args.pin is not None:
        pin(args.pin)
        print(f"pinned {args.pin} at x2, x3, x4 in {GOLDEN_PATH}")
        return 0
    for params in args.params:
        target = release(params)
        print(f"shipped {params} as {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
