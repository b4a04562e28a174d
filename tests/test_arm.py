"""Programs on emulated ARM cores (``-m arm``; CI runs it after the suite): pte_runner under QEMU
against x86 ExecuTorch, the eager model and a stored ARM golden, and the shipped x4 programs'
x86 golden.

Tolerances (docs/deployment.md "ARM cores under emulation"): an fp32 program is within 1e-5 of
x86 (different NEON/AVX kernels sum in other orders; measured 1.3e-6 on the x4 at 16x16); an
int8 program rounds its requantizations differently from x86's kernels, so its outputs move by
whole steps, but its PSNR against the float model is the same within 0.05 dB and at least 80 %
of its outputs are within one step of x86's. The ARM kernels of one program agree with each
other bit for bit, which the ARM golden pins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_model

from lmfn_edge.arm import grid_step, parity
from lmfn_edge.deployment.goldens import golden_input

pytestmark = pytest.mark.arm

# The models CI emulates for parity; "sme2" (QEMU 10) joins when `--setup --cpus sme2` ran.
PARITY_CPUS = ("a72", "a76", "i8mm")
SIDE = 16  # LR side of the shipped programs here: the int8 golden's


@pytest.fixture(scope="module")
def env():
    from lmfn_edge.runtime.arm import environment

    return environment()


def _x86(path, x: np.ndarray) -> np.ndarray:
    from lmfn_edge.runtime.backends import pte_backend

    return pte_backend(path).run(x)


def _arm(env, path, x, cpu_name, **kw):
    from lmfn_edge.runtime.arm import CPUS, run_pte

    return run_pte(env, path, x, CPUS[cpu_name], **kw)


def _lower_plain(module: torch.nn.Module, x: torch.Tensor, path) -> None:
    # Straight through ExecuTorch's own API, none of lmfn_edge's lowering: the known answer
    # must not depend on the code it helps to check.
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(module.eval(), (x,))
    path.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)


def test_emulated_cores_compute_a_known_answer(env, tmp_path):
    # A 1x1 convolution and a ReLU with weights in quarters and inputs in eighths: every product
    # and sum is exact in float32, so the answer is known exactly from numpy. An emulator (or a
    # kernel path) that computes wrongly fails here, loudly, before any parity claim.
    weight = np.array([[1, -2, 0.5], [0.25, 1, -1], [-0.75, 0.5, 2]], dtype=np.float32)
    bias = np.array([0.5, -0.25, 0.125], dtype=np.float32)
    conv = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight)[..., None, None])
        conv.bias.copy_(torch.from_numpy(bias))
    x = (np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8) % 17 - 8) / 8
    expected = np.maximum(np.einsum("oc,nchw->nohw", weight, x) + bias[None, :, None, None], 0)
    path = tmp_path / "known.pte"
    _lower_plain(torch.nn.Sequential(conv, torch.nn.ReLU()), torch.from_numpy(x), path)
    cpus = PARITY_CPUS + (("sme2",) if "10" in env.qemu else ())
    for cpu in cpus:
        run = _arm(env, path, x, cpu)
        assert run.output.shape == expected.shape, cpu
        assert np.array_equal(run.output, expected), (cpu, np.abs(run.output - expected).max())
        if cpu != "sme2":
            assert run.instructions and run.instructions > 1000, (cpu, run.instructions)


@pytest.fixture(scope="module")
def tiny_programs(tmp_path_factory):
    """``{"fp32" | "int8": (.pte path, eager model)}`` of a tiny x2 model at 24x24."""
    from lmfn_edge.deployment import QuantizedInfo, export, export_quantized
    from lmfn_edge.manifest import ShapeSpec
    from quantization.ptq import ptq

    folder = tmp_path_factory.mktemp("arm_tiny")
    model = tiny_model(2, channels=8, num_blocks=1, pattern="I", kernel_size=3)
    fp32 = export(model, "xnnpack", folder / "fp32.pte", ShapeSpec(24, 24), overlap=4).path
    calibration = [golden_input(24), torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))]
    program, _ = ptq(model, calibration, tile=24)
    int8 = export_quantized(program, QuantizedInfo("ptq", model.config.to_dict(), 24), "xnnpack",
                            folder / "int8.pte", overlap=4).path
    return {"fp32": (fp32, model), "int8": (int8, model)}


@pytest.fixture(scope="module")
def shipped_x4(tmp_path_factory):
    """``{"fp32" | "int8": .pte}``: the one-flag exports of the embedded x4 model at 16x16 (the
    int8 one from the embedded int8 parameters)."""
    from lmfn_edge.export import main as export_main

    folder = tmp_path_factory.mktemp("arm_x4")
    out = {}
    for precision in ("fp32", "int8"):
        out[precision] = folder / f"x4_{precision}.pte"
        assert export_main(["--target", "xnnpack", "--precision", precision, "--scale", "4", "--shape",
                            f"{SIDE}x{SIDE}", "--overlap", "4", "--output", str(out[precision])]) == 0
    return out


def _check_parity(precision: str, arm: np.ndarray, x86: np.ndarray, eager: np.ndarray, cpu: str) -> None:
    if precision == "fp32":
        assert np.abs(arm - x86).max() <= 1e-5, (cpu, np.abs(arm - x86).max())
        return
    step = grid_step(x86)
    assert step is not None, "an int8 program's output should lie on its output grid"
    gap = parity(arm, eager, None)["psnr"] - parity(x86, eager, None)["psnr"]
    assert abs(gap) <= 0.05, (cpu, gap)
    assert parity(arm, x86, step)["within_one_step"] >= 0.8, (cpu, parity(arm, x86, step))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tiny_programs_on_arm_match_x86(env, tiny_programs, precision):
    path, model = tiny_programs[precision]
    x = golden_input(24).numpy()
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    x86 = _x86(path, x)
    for cpu in PARITY_CPUS[:2]:
        _check_parity(precision, _arm(env, path, x, cpu, count=False).output, x86, eager, cpu)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shipped_x4_on_arm_matches_x86(env, shipped_x4, precision):
    from lmfn_edge.model.weights import load_model

    x = golden_input(SIDE).numpy()
    with torch.no_grad():
        eager = load_model(4)[0](torch.from_numpy(x)).numpy()
    x86 = _x86(shipped_x4[precision], x)
    for cpu in PARITY_CPUS:
        _check_parity(precision, _arm(env, shipped_x4[precision], x, cpu, count=False).output, x86, eager, cpu)


def test_shipped_x4_int8_arm_golden(env, shipped_x4):
    # The shipped x4 int8 program's output on ARM, in output steps, as stored when it was pinned
    # (python -m quantization.int8_release --pin-arm): exactly, on every ARM int8 path.
    from lmfn_edge.deployment.goldens import golden_codes, read_golden
    from lmfn_edge.registry import shipped

    entry = read_golden(precision="arm")[4]
    assert entry["params_sha256"] == shipped(4).int8_sha256, \
        "the embedded x4 int8 parameters changed: re-pin with python -m quantization.int8_release --pin-arm"
    x = golden_input(entry["side"]).numpy()
    for cpu in PARITY_CPUS:
        out = _arm(env, shipped_x4["int8"], x, cpu, count=False).output
        codes = np.round(out / entry["step"]).astype(np.int16)
        assert np.array_equal(codes, golden_codes(entry)), (cpu, np.abs(codes - golden_codes(entry)).max())
