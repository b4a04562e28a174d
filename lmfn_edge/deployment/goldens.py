"""Golden outputs of the shipped int8 programs (``lmfn_edge/data/int8_golden.json``): the one
module that reads and writes that file.

A record pins a program built from the embedded int8 parameters (``scales``), a variant built
from the embedded float weights (``variants``), or the static x4 program as emulated ARM cores
run it (``arm``): the program's fingerprint and its output on :func:`golden_input` in integer
units of a step. ``python -m quantization.int8_release`` writes them; the slow tests and the ARM
tests check them (docs/quantization.md, "Goldens of the shipped variants").
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ..manifest import ShapeSpec
from ..registry import shipped
from .int8 import Int8ParamsError, dynamic_program

__all__ = ["ARM_GOLDEN", "DYNAMIC_GOLDEN_STEP", "GOLDEN_CODES_RMS", "GOLDEN_PATH", "GOLDEN_SIDE",
           "dynamic_golden_problems", "encode_codes", "golden_codes", "golden_input", "golden_problems",
           "golden_record", "output_codes", "output_step", "program_fingerprint", "read_golden", "store_golden"]


GOLDEN_PATH = Path(str(resources.files("lmfn_edge") / "data" / "int8_golden.json"))
GOLDEN_SIDE = 16  # LR side of the golden input: the smallest int8 shape, quick to build


def golden_input(side: int = GOLDEN_SIDE):
    """A fixed smooth-plus-edges RGB image in [0, 1], shape ``(1, 3, side, side)``.

    Built from integers and float64 cosines rounded to uint8 levels, so it does not depend on a
    random generator or the torch release."""
    import numpy as np
    import torch

    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    planes = [0.5 + 0.35 * np.cos(0.45 * x + 0.8 * c) * np.cos(0.3 * y - 0.5 * c) + 0.15 * ((x + 2 * y + c) % 7 > 3)
              for c in range(3)]
    levels = np.clip(np.round(np.stack(planes) * 255), 0, 255) / 255
    return torch.from_numpy(levels.astype(np.float32))[None]


def output_step(program) -> float:
    """The output's int8 step: the scale of the last dequantize (the pixel shuffle only moves values)."""
    graph = program.graph
    (node,) = next(n for n in graph.nodes if n.op == "output").args[0]
    while "dequantize_per_tensor" not in str(node.target):
        if not node.args:
            raise Int8ParamsError("the int8 program's output has no dequantize before it")
        node = node.args[0]
    return float(node.args[1])


def output_codes(program, x, step: float | None = None) -> tuple[Any, float]:
    """``(codes, step)``: the program's output on ``x`` in units of ``step`` (default: its output
    int8 step; a dynamic-range program, whose output is fp32, passes :data:`DYNAMIC_GOLDEN_STEP`)."""
    import torch

    step = output_step(program) if step is None else step
    with torch.no_grad():
        out = program.module()(x)
    return torch.round(out / step).to(torch.int16), step


# The key of the ARM golden: the static int8 .pte's output on emulated ARM cores, whose int8
# kernels round differently from x86's (tests/test_arm.py; docs/deployment.md).
ARM_GOLDEN = "arm"


def read_golden(path: str | Path = GOLDEN_PATH, precision: str = "int8") -> dict:
    """``{scale: {"program_sha256", "side", "step", "shape", "codes", ...}}`` as stored (codes:
    base64 int16) for ``precision``: the static program of the embedded int8 parameters
    (``int8``: ``params_sha256``), or a variant built from the embedded float weights
    (``int8-dynamic``: ``weights_sha256`` and ``fp32_groups``), or the static program's .pte as
    emulated ARM cores run it (:data:`ARM_GOLDEN`: ``params_sha256``, ``cpus``; codes in the
    static golden's step)."""
    data = json.loads(Path(path).read_text())
    if precision == ARM_GOLDEN:
        records = data.get("arm", {})
    else:
        records = data["scales"] if precision == "int8" else data.get("variants", {}).get(precision, {})
    return {int(k): v for k, v in records.items()}


# A dynamic-range program's output is fp32 (no output grid); its golden codes are in units of a
# quarter of an 8-bit level, fine enough that the tolerance below (in these units) is 0.6 levels.
DYNAMIC_GOLDEN_STEP = 1 / 1020


def golden_record(program, side: int = GOLDEN_SIDE, step: float | None = None, **source: Any) -> dict:
    """The golden record of ``program`` (built at ``side``): its fingerprint and its output on
    :func:`golden_input` in units of ``step`` (default: its output int8 step), with ``source``
    (what it was built from) stored beside them."""
    codes, step = output_codes(program, golden_input(side), step)
    return {**source, "program_sha256": program_fingerprint(program), "side": side, "step": step,
            **encode_codes(codes.numpy())}


def encode_codes(codes) -> dict:
    """``{"shape", "codes"}`` of an integer array as a golden record stores it (base64 int16)."""
    import base64

    import numpy as np

    array = np.ascontiguousarray(codes).astype("<i2")
    return {"shape": list(array.shape), "codes": base64.b64encode(array.tobytes()).decode()}


def store_golden(scale: int, entry: dict, precision: str = "int8", path: str | Path = GOLDEN_PATH) -> None:
    """Write ``entry`` as ``precision``'s golden at ``scale`` (see :func:`read_golden`), keeping
    every other record; atomically."""
    from ..files import atomic_write_text

    path = Path(path)
    golden = json.loads(path.read_text()) if path.is_file() else {"scales": {}}
    golden["description"] = ("output codes of the shipped int8 programs on golden_input(): scales, the embedded int8 "
                             "parameters; variants, the programs built from the embedded float weights; arm, the "
                             "static x4 program on emulated ARM cores. Regenerate with python -m "
                             "quantization.int8_release")
    if precision == ARM_GOLDEN:
        records = golden.setdefault("arm", {})
    else:
        records = golden["scales"] if precision == "int8" else golden.setdefault("variants", {}).setdefault(precision, {})
    records[str(scale)] = entry
    atomic_write_text(path, json.dumps(golden, indent=1, sort_keys=True) + "\n")


def golden_codes(entry: dict):
    """The stored codes of one golden record as an int16 array."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(entry["codes"]), dtype="<i2").reshape(entry["shape"])


def program_fingerprint(program) -> str:
    """SHA-256 of what an int8 program *is*, whatever CPU runs it: its graph, op by op with every
    literal argument exact (the q/dq scales and zero points), and every tensor it holds (the int8
    weights, per-channel scales and zero points).

    A change of the deploy form, the quantizer or torch's conversion changes it. Its outputs are
    a weaker pin: they depend on the CPU's fp32 kernels, and in int8 a last-bit difference before a
    quantize can move a code by one step, which the next layers carry on (see
    :data:`GOLDEN_CODES_RMS`).
    """
    import hashlib

    import torch

    digest = hashlib.sha256()
    index: dict = {}

    def encode(value: Any) -> str:
        if isinstance(value, torch.fx.Node):
            return f"%{index[value]}"
        if isinstance(value, (list, tuple)):
            return "[" + ",".join(encode(v) for v in value) + "]"
        if isinstance(value, float):
            return value.hex()
        return repr(value)

    for i, node in enumerate(program.graph.nodes):  # by position: node names are not part of the program
        index[node] = i
        digest.update(f"{node.op} {node.target} {encode(node.args)} {encode(sorted(node.kwargs.items()))}\n".encode())
    tensors = {**program.state_dict, **program.constants}
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-d scalars (dynamic eps)
    return digest.hexdigest()


# The stored output codes were written on one machine; another CPU's fp32 kernels (or another
# thread count) move some codes by a step, and the steps spread through the following layers.
# Measured on the golden input against codes written on an AVX512 machine: x2 and x4 within
# one step; x3 on an AVX2 machine, RMS 1.45 steps (max 6) with two threads, 1.5 with one. Within
# a machine the program is deterministic; a wrong program is tens of steps off everywhere.
GOLDEN_CODES_RMS = 2.5


def golden_problems(program, entry: dict, codes: Any) -> list[str]:
    """What differs between an int8 program built at ``entry["side"]``, its output ``codes`` on
    :func:`golden_input` (from :func:`output_codes`), and the stored golden record ``entry``."""
    import numpy as np

    problems = []
    if "program_sha256" in entry and program_fingerprint(program) != entry["program_sha256"]:
        problems.append("the program differs from the one its golden recorded (graph, int8 weights or scales)")
    stored = golden_codes(entry)
    got = np.asarray(codes, dtype=np.int32)
    if got.shape != stored.shape:
        problems.append(f"the output has shape {list(got.shape)}, the golden {list(stored.shape)}")
        return problems
    rms = float(np.sqrt(np.mean((got - stored.astype(np.int32)) ** 2)))
    if rms > GOLDEN_CODES_RMS:
        problems.append(f"the output differs from the golden by {rms:.2f} int8 steps RMS (more than {GOLDEN_CODES_RMS})")
    return problems


def dynamic_golden_problems(scale: int, entry: dict) -> list[str]:
    """What differs between the shipped ``lmfn_x{scale}``'s ``int8-dynamic`` program built today
    and its golden record ``entry`` (``read_golden(precision="int8-dynamic")``).

    The fingerprint pins the program exactly (graph, int8 weights, fp32 groups); the output is
    held to :data:`GOLDEN_CODES_RMS` units of :data:`DYNAMIC_GOLDEN_STEP` (0.6 8-bit levels RMS).
    Measured on the x2 golden input: the same program is bit-identical with 1 and 2 threads;
    XNNPACK's kernels, another implementation of the same program, are 2.4 units RMS from it;
    the program without its fp32 groups is 5.9 units away (docs/quantization.md "Goldens of the
    shipped variants").
    """
    from ..model.weights import load_model, sha256_file
    from .variants import DYNAMIC

    weights = shipped(scale).weights_path
    if sha256_file(weights) != entry.get("weights_sha256"):
        return [f"{weights.name} changed since its golden was written (pin again: python -m quantization.int8_release "
                f"--pin {DYNAMIC})"]
    model, _ = load_model(scale)
    program, info = dynamic_program(model, ShapeSpec(entry["side"], entry["side"]))
    if info.details["fp32_groups"] != entry.get("fp32_groups"):
        return [f"its fp32 groups are {info.details['fp32_groups']}, the golden's {entry.get('fp32_groups')} (pin "
                f"again: python -m quantization.int8_release --pin {DYNAMIC})"]
    codes, _ = output_codes(program, golden_input(entry["side"]), entry["step"])
    return golden_problems(program, entry, codes.numpy())
