"""Divergence: no values crash DSConv, and a run whose loss or weights stop being finite stops
with one error line, before any checkpoint, validation or release of the non-finite state.

A too-high learning rate once killed ``training.train`` with a segmentation fault: the NaNs of
the diverged model reached ``grid_sample`` as coordinates, and its CPU backward wrote out of
bounds (docs/training.md, "When a run diverges"). Any such crash is tested in a child process,
so that it fails the test instead of killing pytest.
"""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest
import torch
from hostile import ROOT, TRAIN_SETS, refused, training_data

from lmfn_edge.model.dsconv import DSConv, DSConvDeploy
from training.checkpoint import CHECKPOINT_NAME

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE = (math.nan, math.inf, -math.inf, 1e30, 3e38)


def hostile_dsconv() -> int:
    """Forward and backward of both DSConv forms on hostile features and offsets; run in a child.

    Returns:
        The number of hostile cases run (it checks the finite cases itself).
    """
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = 0
    # Odd sizes too: a NaN row coordinate times an even width wraps to an in-bounds index.
    for morph in (0, 1):
        for h, w in ((7, 9), (8, 8)):
            for value in HOSTILE:
                for where in ("features", "one feature", "offset bias", "offset weights"):
                    ds = DSConv(3, 4, kernel_size=5, extend_scope=1.5, morph=morph)
                    x = torch.randn(2, 3, h, w)
                    with torch.no_grad():
                        if where == "features":
                            x.fill_(value)
                        elif where == "one feature":
                            x[1, 2, h // 2, w // 2] = value
                        elif where == "offset bias":
                            ds.offset_conv.bias.fill_(value)
                        else:
                            ds.offset_conv.weight.fill_(value)
                    for module in (ds, DSConvDeploy(ds)):
                        x.grad = None
                        module(x.requires_grad_()).sum().backward()
                        cases += 1
            _check_finite_where_inputs_are(morph, h, w)
    return cases


def _check_finite_where_inputs_are(morph: int, h: int, w: int) -> None:
    """One NaN feature: both forms give NaN there and finite values beyond the kernel's reach."""
    ds = DSConv(2, 3, kernel_size=3, extend_scope=1.0, morph=morph)
    torch.nn.init.normal_(ds.offset_conv.weight, std=0.5)
    x = torch.rand(1, 2, h, w)
    x[0, 1, 1, 1] = math.nan
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    # Within 3 pixels: the 3x3 offset conv, the taps' reach and the zero-weight neighbours both
    # forms read (0 * NaN is NaN), the deploy form's K - 1 extension of the tap axis included.
    far = torch.maximum((rows - 1).abs(), (cols - 1).abs()) >= 4
    for module in (ds, DSConvDeploy(ds)):
        out = module(x)
        assert out[0, :, 1, 1].isnan().all(), type(module).__name__
        assert out[0][:, far].isfinite().all(), type(module).__name__
    huge = torch.full((1, 2, h, w), 1e30, requires_grad=True)
    out = ds(huge)
    out.sum().backward()
    assert out.isfinite().all() and huge.grad.isfinite().all()
    assert all(p.grad.isfinite().all() for p in ds.parameters())


def test_no_values_crash_dsconv_forward_or_backward():
    child = "from test_training_divergence import hostile_dsconv; print('cases', hostile_dsconv())"
    done = subprocess.run([sys.executable, "-c", child], check=False, cwd=ROOT / "tests", capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])  # -11: a segmentation fault
    assert "cases 160" in done.stdout, done.stdout


def test_diverging_run_with_dsconvs_exits_1_instead_of_crashing(tmp_path):
    # The reported command, in a child: the DSConvs of pattern M are what crashed on the NaNs.
    command = [sys.executable, "-m", "training.train", "--output-dir", tmp_path / "run", "--data-root",
               training_data(tmp_path), *TRAIN_SETS, "--set", "model_overrides.pattern=LM", "--set", "learning_rate=1e3",
               "--no-progress"]
    done = subprocess.run([str(a) for a in command], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode == 1 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-3000:])
    assert len(errors) == 1 and "training diverged at step 2" in errors[0], done.stderr


def _non_finite(state: Any, path: str = "") -> list[str]:
    """The paths of the non-finite floating-point tensors in a checkpoint."""
    if torch.is_tensor(state):
        return [path] if state.is_floating_point() and not state.isfinite().all() else []
    if isinstance(state, dict):
        return [p for k, v in state.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(state, (list, tuple)):
        return [p for i, v in enumerate(state) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def test_diverging_run_stops_with_one_error_line_and_keeps_the_last_finite_checkpoint(tmp_path, capsys):
    data = training_data(tmp_path)
    run_dir = tmp_path / "run"
    diverging = [*TRAIN_SETS, "--set", "learning_rate=1e3", "--no-progress"]
    line = refused(capsys, "train", "--output-dir", run_dir, "--data-root", data, "--val-root", data, *diverging,
                   code=1, message="training diverged at step 2: the loss and the weights stopped being finite")
    assert line.endswith("lower learning_rate (1000 now), e.g. --set learning_rate=100, and --resume from the "
                         "checkpoint of step 1 or start again in another --output-dir")
    ckpt = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["step"] == 1 and _non_finite(ckpt) == []
    records = (run_dir / "log.jsonl").read_text()
    assert '"event": "diverged"' in records and "val_psnr_y" not in records  # no validation of NaN weights

    # Checked every other step only, and no checkpoint before the end: a step range, nothing on disk.
    fresh = tmp_path / "fresh"
    line = refused(capsys, "train", "--output-dir", fresh, "--data-root", data, *diverging, "--set", "log_every=2",
                   "--set", "ckpt_every=0", code=1, message="training diverged between steps 1 and 2")
    assert line.endswith("e.g. --set learning_rate=100, and start again (no checkpoint was written)")
    assert not (fresh / CHECKPOINT_NAME).exists()


def test_diverging_qat_run_stops_the_same_way(tmp_path, capsys, weights):
    data = training_data(tmp_path)
    run_dir = tmp_path / "qat"
    # Fake quantization clamps activations to the observed ranges, so QAT survives rates that
    # wreck float training; at 1e15 the weights overflow by the second step.
    refused(capsys, "qat", "--weights", weights, "--output-dir", run_dir, "--data-root", data, "--no-progress",
            "--set", "scale=2", "--set", "patch_size=16", "--set", "batch_size=2", "--set", "iterations=3",
            "--set", "log_every=1", "--set", "ckpt_every=1", "--set", "num_workers=0", "--set", "device=cpu",
            "--set", "learning_rate=1e15", code=1, message="training diverged at step 2")
    ckpt = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    # The EMA never runs, so its observers keep their initial +-inf ranges (not weights).
    observers = ("min_val", "max_val")
    assert ckpt["step"] == 1 and [p for p in _non_finite(ckpt) if not p.endswith(observers)] == []
    assert not list(run_dir.glob("*.pt2")) and not list(run_dir.glob("*.safetensors"))
