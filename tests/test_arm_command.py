"""python -m lmfn_edge.arm without an emulator: how it reads an int8 output's grid, what it
compares, and the flags it refuses before any work starts (the emulated runs are tests/test_arm.py,
marked arm)."""

from __future__ import annotations

import numpy as np
import pytest

from lmfn_edge import arm


@pytest.mark.parametrize("scale,zero_point,levels", [(0.0034965, 100, 256), (1 / 255, 0, 40), (0.0123, -7, 200)])
def test_grid_step_reads_the_scale_of_a_float32_int8_output(scale, zero_point, levels):
    # What a dequantize computes: float32 (q - zp) * scale. Over 255 levels the float32 rounding
    # moves the smallest gap off the scale by more than a thousandth of a step at the far end.
    rng = np.random.default_rng(0)
    q = rng.permutation(np.arange(-128, -128 + levels))
    y = ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).reshape(1, 1, 1, -1)
    assert arm.grid_step(y) == pytest.approx(scale, rel=1e-5)


def test_grid_step_is_none_off_a_grid():
    rng = np.random.default_rng(1)
    assert arm.grid_step(rng.random((1, 3, 8, 8), dtype=np.float32)) is None  # fp32, dynamic int8
    assert arm.grid_step(np.zeros((1, 3, 4, 4), np.float32)) is None  # a constant has no step
    assert arm.grid_step(np.arange(1000, dtype=np.float32) / 999) is None  # over 256 levels


def test_parity_counts_outputs_within_one_step():
    ref = np.zeros((1, 1, 1, 10), np.float32)
    y = ref.copy()
    y[..., :3] = 0.01  # one step of 0.01
    y[..., 3] = 0.03  # three
    out = arm.parity(y, ref, 0.01)
    assert out["within_one_step"] == pytest.approx(0.9)
    assert out["max_abs"] == pytest.approx(0.03)
    assert arm.parity(ref, ref, None) == {"max_abs": 0.0, "psnr": float("inf"), "within_one_step": None}


@pytest.mark.parametrize("argv,message", [
    (["--cpus", "a72,m1"], "unknown --cpus m1"),
    (["--precision", "fp16"], "unknown --precision 'fp16'"),
    (["--pte", "x.pte", "--shape", "16x16"], "drop --precision/--shape"),
    (["--weights", "w.safetensors", "--random-init"], "contradict"),
    (["--pte", "missing.pte"], "no such file"),
])
def test_contradictory_or_unknown_flags_are_refused_first(argv, message, capsys, monkeypatch):
    def no_environment(*a, **k):
        raise AssertionError("the environment was set up before the flags were checked")

    monkeypatch.setattr("lmfn_edge.runtime.arm.environment", no_environment)
    assert arm.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_table_divides_by_fp32_on_the_same_core_and_shape_and_keeps_failed_rows():
    rows = [arm.ArmRow("fp32", "32x32", "a76", 1e-6, 130.0, 120.0, 120.0, None, 200_000_000),
            arm.ArmRow("fp32", "16x16", "a76", 1e-6, 130.0, 120.0, 120.0, None, 50_000_000),
            arm.ArmRow("int8", "32x32", "a76", 0.02, 45.0, 40.0, 40.0, 0.85, 100_000_000),
            arm.ArmRow("int8", "32x32", "a72", 0.02, 45.0, 40.0, 40.0, 0.85, 150_000_000),
            arm.ArmRow("fp32", "32x32", "sme2", None, None, None, 120.0, None, None, "the emulated run took over 9 s")]
    lines = arm.table(rows).splitlines()
    assert lines[4].startswith("| int8 | 32x32 | a76 |") and lines[4].endswith("| 100.0 M | 0.50 |")
    assert lines[5].endswith("| 150.0 M | - |")  # no fp32 count on a72
    assert "failed: the emulated run took over 9 s" in lines[6]
