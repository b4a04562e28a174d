"""Ctrl-C, however early or often it comes: exit 130, ``interrupted``, no traceback, no partial
file (lmfn_edge/interrupts.py).

The error boundary's logic is tested in-process with real signals raised inside the body
(``signal.raise_signal``), including an interrupt that the body swallows, as coremltools' imports
do. Whole commands are tested in subprocesses, where the package arms its handler at start-up:
a signal during the imports, in the middle of the work, and twice in a row. The assertions
hold whatever phase a signal lands in, so the delays only spread the signals over the run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import ROOT, TRAIN_SETS, no_temporaries, training_data
from PIL import Image

from lmfn_edge import cli, interrupts
from lmfn_edge.files import atomic_write_text, staged
from lmfn_edge.io import save_image

# --- the boundary, in-process ---------------------------------------------------------------


def _boundary(capsys, body) -> tuple[int, str]:
    code = cli.run(argparse.ArgumentParser(), lambda args: body(), [])
    return code, capsys.readouterr().err


def _swallow_a_ctrl_c() -> None:
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass  # what a bare ``except:`` around an optional import does


def test_ctrl_c_in_the_work_exits_130(capsys, tmp_path):
    def body():
        with staged(tmp_path / "m.mlpackage") as staging:
            staging.mkdir()
            signal.raise_signal(signal.SIGINT)

    assert _boundary(capsys, body) == (130, "interrupted\n")
    assert list(tmp_path.iterdir()) == []


def test_a_swallowed_ctrl_c_still_stops_the_command_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "out.json"
    (tmp_path / "old.json").write_text("an earlier result")

    def writes():
        _swallow_a_ctrl_c()
        atomic_write_text(out, "{}")

    def finishes():
        _swallow_a_ctrl_c()
        return 0

    def fails_oddly():  # a library left half-imported by the swallowed interrupt
        _swallow_a_ctrl_c()
        raise AttributeError("module 'coremltools' has no attribute 'models'")

    def replaces():
        _swallow_a_ctrl_c()
        with staged(tmp_path / "old.json") as staging:
            staging.write_text("new")

    for body in (writes, finishes, fails_oddly, replaces):
        assert _boundary(capsys, body) == (130, "interrupted\n"), body.__name__
    assert not out.exists() and (tmp_path / "old.json").read_text() == "an earlier result"
    no_temporaries(tmp_path)


def test_a_library_caller_gets_its_handler_back(capsys):
    before = signal.getsignal(signal.SIGINT)
    assert _boundary(capsys, lambda: signal.raise_signal(signal.SIGINT))[0] == 130
    assert _boundary(capsys, lambda: 0) == (0, "")
    assert signal.getsignal(signal.SIGINT) is before and not interrupts.interrupted()


def test_allocation_failures_are_one_line(capsys):
    def body():
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 1099511627776 bytes. Error code 12 (Cannot allocate memory)")

    code, err = _boundary(capsys, body)
    assert code == 1 and err.startswith("error: out of memory") and "Traceback" not in err


@pytest.mark.parametrize("argv, command", [
    (["python", "-m", "lmfn_edge.upscale", "a", "b"], True), (["python", "-u", "-X", "dev", "-m", "training.train"], True),
    (["python", "-m", "pytest"], False), (["python", "script.py", "-m", "lmfn_edge.x"], False),
    (["python", "-c", "import lmfn_edge"], False), (["python"], False)])
def test_only_this_projects_commands_arm_the_handler_at_import(argv, command):
    assert interrupts.started_as_command(argv) is command


# --- whole commands, in subprocesses --------------------------------------------------------


def _interrupt(argv: list[str], after: float, second: float | None = None, cwd: Path = ROOT) -> tuple[int, str, float]:
    """Run ``python -m argv``, send SIGINT ``after`` seconds in (and again ``second`` later);
    returns the exit code, stderr and the seconds from the (first) signal to the exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    if proc.poll() is not None:
        pytest.fail(f"{argv[0]} finished before it could be interrupted: {proc.communicate()}")
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    if second is not None:
        time.sleep(second)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.monotonic() - sent


def _interrupted(code: int, err: str) -> bool:
    return code == 130 and err.strip().endswith("interrupted") and "Traceback" not in err


def _random_photos(folder: Path, side: int, seed: int, count: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    for i in range(count):
        save_image(folder / f"{i:02d}.png", rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _random_photos(tmp_path_factory.mktemp("photos"), 64, seed=5)


def test_ctrl_c_during_start_up_of_every_kind_of_command(tmp_path, photos, weights):
    for argv in (["lmfn_edge.upscale", photos, tmp_path / "up", "--model", weights],
                 ["lmfn_edge.export", "--random-init", "--output", tmp_path / "m.pte"],
                 ["training.train", "--output-dir", tmp_path / "run", "--data-root", training_data(tmp_path),
                  *TRAIN_SETS],
                 ["quantization.ptq", "--weights", weights, "--data-root", photos, "--output", tmp_path / "p.pt2"]):
        code, err, took = _interrupt(argv, after=0.3)
        assert _interrupted(code, err), (argv[0], code, err)
        assert took < 5, (argv[0], took)  # at once, not after the remaining imports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_twice_during_a_folder_upscale(tmp_path, photos):
    out = tmp_path / "out"
    for after in (2.0, 4.0):
        code, err, _ = _interrupt(["lmfn_edge.upscale", photos, out, "--scale", "2", "--no-progress"], after,
                                  second=0.01)
        assert _interrupted(code, err), (after, code, err)
    no_temporaries(tmp_path)
    for path in out.iterdir():  # whatever was written is a whole image
        with Image.open(path) as img:
            img.load()
            assert img.size == (128, 128)


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory) -> Path:
    # Evaluating the 64 px photos takes about 4 s on a quiet 2-core machine, so a signal at 4 s
    # could come after the end; at 256 px the work lasts well past every signal below.
    return _random_photos(tmp_path_factory.mktemp("large_photos"), 256, seed=6)


def test_evaluate_and_export_leave_no_result_behind(tmp_path, large_photos):
    for after in (1.5, 4.0):
        code, err, _ = _interrupt(["lmfn_edge.evaluate", "--scale", "2", "--data", large_photos, "--json",
                                   tmp_path / "s.json", "--crops-dir", tmp_path / "crops", "--no-progress"], after)
        assert _interrupted(code, err), (after, code, err)
        code, err, _ = _interrupt(["lmfn_edge.export", "--random-init", "--pattern", "LM", "--output",
                                   tmp_path / "m.pte"], after + 1.0)
        assert _interrupted(code, err), (after, code, err)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "m.pte").exists()
    assert not (tmp_path / "m.pte.json").exists()
    no_temporaries(tmp_path)


@pytest.mark.slow  # exports a Core ML package first (~25 s in all); CI runs -m slow after the suite
def test_verify_coreml_stops_within_the_grace_time_when_coremltools_swallows_it(tmp_path, photos):
    package = tmp_path / "m.mlpackage"
    export = [sys.executable, "-m", "lmfn_edge.export", "--target", "coreml", "--random-init", "--pattern", "L",
              "--shape", "32x32", "--overlap", "8", "--output", str(package)]
    subprocess.run(export, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
    # At 3 s coremltools is being imported (it takes seconds here) and swallows the signal.
    code, err, took = _interrupt(["lmfn_edge.verify_coreml", package, "--random-init", "--images",
                                  photos / "00.png", photos / "01.png", "--json", tmp_path / "v.json"], 3.0)
    assert _interrupted(code, err), (code, err)
    assert took < interrupts.GRACE_SECONDS + 3, took
    assert not (tmp_path / "v.json").exists()
    no_temporaries(tmp_path)


def test_training_keeps_a_whole_checkpoint(tmp_path):
    data = training_data(tmp_path)
    run_dir = tmp_path / "run"
    code, err, _ = _interrupt(["training.train", "--output-dir", run_dir, "--data-root", data, *TRAIN_SETS,
                               "--set", "iterations=100000", "--no-progress"], after=6.0)
    assert _interrupted(code, err), (code, err)
    import torch

    if (run_dir / "ckpt.pt").exists():
        assert torch.load(run_dir / "ckpt.pt", weights_only=True)["step"] >= 1
    no_temporaries(tmp_path)
