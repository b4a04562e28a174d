"""Hostile input, every command line: what users (and attackers) hand the SDK.

The harness (tests/hostile.py) runs each command's ``main`` in-process and checks one error
line, no traceback, no temporary or half-written file. Ctrl-C during a folder upscale is tested
in a real subprocess; crafted ``.pt2`` archives are in tests/test_hostile_archives.py.

Classes covered, per command that takes them: crafted pickles (checkpoints, safetensors
headers), random and truncated programs (.pte, .mlpackage), malformed sidecars, output ==
input, output folders missing / a file / read-only, failing runs over existing outputs, bad
numbers for every numeric flag, contradicting flags, HR images smaller than the scale, odd
images, Ctrl-C, and corrupt resume state.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TILE
from hostile import (
    ROOT,
    TRAIN_SETS,
    Payload,
    no_temporaries,
    read_only,
    refused,
    run,
    safetensors_bytes,
    snapshot,
    torch_pickle,
    training_data,
)
from PIL import Image

from lmfn_edge.io import save_image
from lmfn_edge.manifest import sidecar_path
from training.checkpoint import CHECKPOINT_NAME


# --- crafted pickles: checkpoints -----------------------------------------------------------


def test_checkpoint_payload_is_refused_by_every_command_that_reads_one(tmp_path, capsys, weights):
    marker = tmp_path / "ran"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_NAME).write_bytes(torch_pickle({"format": "lmfn-edge-train-checkpoint",
                                                          "step": Payload(marker)}))
    data = training_data(tmp_path)
    refused(capsys, "train", "--output-dir", run_dir, "--resume", "--data-root", data, *TRAIN_SETS,
            message="is not a readable checkpoint")
    refused(capsys, "release", run_dir / CHECKPOINT_NAME, "--output", tmp_path / "w.safetensors",
            message="is not a readable checkpoint")
    refused(capsys, "qat", "--output-dir", run_dir, "--resume", "--weights", weights, "--data-root", data,
            "--set", "scale=2", message="is not a readable checkpoint")
    refused(capsys, "train", "--output-dir", tmp_path / "fresh", "--data-root", data, *TRAIN_SETS,
            "--set", f"init_from={run_dir / CHECKPOINT_NAME}", message="is not a readable checkpoint")
    assert not marker.exists() and not (tmp_path / "w.safetensors").exists()


def test_corrupt_resume_state(tmp_path, capsys):
    data = training_data(tmp_path)
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--output-dir", run_dir, "--data-root", data, *TRAIN_SETS, "--no-progress")
    assert code == 0, err
    ckpt = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)
    # A run log with a line cut short (a run killed mid-write) and one that is not JSON: resume
    # notes and drops them, and continues.
    with open(run_dir / "log.jsonl", "a") as f:
        f.write('{"step": 2, "loss": 0.1')
        f.write("\nnot json at all\n")
    code, _, err = run(capsys, "train", "--output-dir", run_dir, "--resume", "--no-progress", "--set", "iterations=3")
    assert code == 0 and "dropped 2 unreadable line(s)" in err and "Traceback" not in err, err
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    for key in ("optimizer", "rng", "config"):
        broken = {k: v for k, v in ckpt.items() if k != key}
        torch.save(broken, run_dir / CHECKPOINT_NAME)
        refused(capsys, "train", "--output-dir", run_dir, "--resume", "--data-root", data, *TRAIN_SETS,
                message=f"lacks {key}: not a complete checkpoint")
    torch.save({**ckpt, "model": {"head.pw.weight": torch.zeros(1)}}, run_dir / CHECKPOINT_NAME)
    refused(capsys, "train", "--output-dir", run_dir, "--resume", "--data-root", data, *TRAIN_SETS,
            message="the checkpoint does not fit this run")
    (run_dir / CHECKPOINT_NAME).write_bytes(b"\x80\x02garbage")
    refused(capsys, "train", "--output-dir", run_dir, "--resume", "--data-root", data, *TRAIN_SETS,
            message="is not a readable checkpoint")
    no_temporaries(run_dir)


# --- safetensors headers --------------------------------------------------------------------


BAD_WEIGHTS = {
    "empty": b"",
    "huge_header_length": struct.pack("<Q", 2**62) + b"{}",
    "header_not_json": safetensors_bytes(b"{not json"),
    "header_a_list": safetensors_bytes(b"[1, 2]"),
    "metadata_not_strings": safetensors_bytes({"__metadata__": {"format": 3}}),
    "offsets_out_of_range": safetensors_bytes({"__metadata__": {"format": "lmfn-edge-weights"},
                                          "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}),
    "bogus_dtype": safetensors_bytes({"w": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "config_not_json": safetensors_bytes({"__metadata__": {"format": "lmfn-edge-weights", "lmfn_config": "{oops"}}),
    "config_unknown_field": safetensors_bytes({"__metadata__": {"format": "lmfn-edge-weights",
                                                           "lmfn_config": json.dumps({"evil": 1})}}),
    "no_config": safetensors_bytes({"__metadata__": {"format": "something-else"}}),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_crafted_safetensors_are_one_line_errors_everywhere(tmp_path, capsys, photo, case):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(BAD_WEIGHTS[case])
    message = "bad.safetensors"
    refused(capsys, "export", "--weights", bad, "--output", tmp_path / "m.pte", message=message)
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", bad, message=message)
    data = tmp_path / "data"
    data.mkdir()
    save_image(data / "a.png", np.zeros((16, 16, 3), np.uint8))
    refused(capsys, "evaluate", "--scale", "2", "--data", data, "--methods", "eager", "--weights", bad,
            message=message)
    refused(capsys, "ptq", "--weights", bad, "--data-root", data, "--output", tmp_path / "p.pt2", message=message)
    refused(capsys, "qat", "--weights", bad, "--data-root", data, "--output-dir", tmp_path / "q", message=message)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pte", ".png", ".pt2")]


# --- random and truncated programs ----------------------------------------------------------


def _broken_pte(tmp_path: Path, fixed_pte, kind: str) -> Path:
    """A copy of the session's .pte with its sidecar, then damaged."""
    _, result = fixed_pte
    path = tmp_path / f"{kind}.pte"
    data = result.path.read_bytes()
    sidecar = json.loads(result.manifest_path.read_text())
    if kind == "random":
        data = os.urandom(len(data))
    elif kind == "truncated":
        data = data[: len(data) // 3]
    elif kind == "random_unhashed":  # an older sidecar without the program's SHA-256
        data = os.urandom(len(data))
        sidecar.pop("artifact_sha256")
    elif kind == "truncated_unhashed":
        data = data[: len(data) // 3]
        sidecar.pop("artifact_sha256")
    path.write_bytes(data)
    sidecar_path(path).write_text(json.dumps(sidecar))
    return path


@pytest.mark.parametrize("kind", ["random", "truncated", "random_unhashed", "truncated_unhashed"])
def test_damaged_pte_is_one_line_in_every_reader(tmp_path, capsys, fixed_pte, photo, kind):
    pte = _broken_pte(tmp_path, fixed_pte, kind)
    message = {"random": "does not match its sidecar", "truncated": "does not match its sidecar",
               "random_unhashed": "is not an ExecuTorch program", "truncated_unhashed": "is truncated"}[kind]
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", pte, message=message)
    data = tmp_path / "data"
    data.mkdir()
    save_image(data / "a.png", np.zeros((16, 16, 3), np.uint8))
    refused(capsys, "evaluate", "--scale", "2", "--data", data, "--methods", f"bicubic,pte:{pte}", message=message)
    assert not (tmp_path / "o.png").exists()


def test_program_whose_input_disagrees_with_its_sidecar(tmp_path, capsys, fixed_pte, photo):
    _, result = fixed_pte
    pte = tmp_path / "m.pte"
    pte.write_bytes(result.path.read_bytes())
    sidecar = json.loads(result.manifest_path.read_text())
    sidecar.update(shape={"dynamic": False, "height": 32, "width": 32}, tile=32)
    sidecar_path(pte).write_text(json.dumps(sidecar))
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", pte, message="but its sidecar says 32x32")


def test_damaged_mlpackage_is_one_line(tmp_path, capsys, weights):
    for name, make in [("bytes", lambda p: p.write_bytes(os.urandom(512))),
                       ("empty", lambda p: p.mkdir()),
                       ("garbage", lambda p: (p.mkdir(), (p / "Manifest.json").write_bytes(os.urandom(256))))]:
        package = tmp_path / f"{name}.mlpackage"
        make(package)
        refused(capsys, "verify_coreml", package, "--weights", weights, "--scale", "2",
                message=f"{name}.mlpackage is not a readable Core ML package")


# --- malformed sidecars ---------------------------------------------------------------------

SIDECAR_DAMAGE = {
    "a list": (lambda s: [s], "must be a JSON object"),
    "not JSON": (lambda s: "{oops", "is not valid JSON"),
    "missing scale": (lambda s: {k: v for k, v in s.items() if k != "scale"}, "missing 'scale'"),
    "tile disagrees": (lambda s: {**s, "tile": 64}, "tile 64 disagrees with shape 24x24"),
    "overlap >= tile": (lambda s: {**s, "overlap": 24}, "overlap must be smaller than the tile"),
    "negative overlap": (lambda s: {**s, "overlap": -1}, "overlap must be >= 0"),
    "overlap not an int": (lambda s: {**s, "overlap": "16"}, "overlap must be an integer"),
    "scale 5": (lambda s: {**s, "scale": 5, "model": "lmfn_x5"}, "scale must be one of 2, 3, 4"),
    "model/scale": (lambda s: {**s, "model": "lmfn_x4"}, "does not match scale 2"),
    "version 2": (lambda s: {**s, "version": 2}, "unsupported sidecar version 2"),
    "other format": (lambda s: {**s, "format": "x"}, "not an lmfn-edge sidecar"),
    "input range": (lambda s: {**s, "input_range": [0, 255]}, "input_range must be [0, 1]"),
    "layout": (lambda s: {**s, "layout": "NHWC"}, "layout must be 'NCHW'"),
    "shape not an object": (lambda s: {**s, "shape": [24, 24]}, "shape must be an object"),
    "dynamic range": (lambda s: {**s, "shape": {"dynamic": True, "min": 16, "max": 20, "multiple": 8}, "tile": None},
                      "needs multiples of 8"),
    "unknown target": (lambda s: {**s, "target": "tflite"}, "unknown target 'tflite'"),
    "bad sha": (lambda s: {**s, "artifact_sha256": "zz"}, "artifact_sha256 must be a hex SHA-256"),
}


@pytest.mark.parametrize("case", sorted(SIDECAR_DAMAGE))
def test_malformed_sidecar_is_one_line_in_every_reader(tmp_path, capsys, fixed_pte, photo, case):
    _, result = fixed_pte
    damage, message = SIDECAR_DAMAGE[case]
    pte = tmp_path / "m.pte"
    pte.write_bytes(result.path.read_bytes())
    damaged = damage(json.loads(result.manifest_path.read_text()))
    sidecar_path(pte).write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", pte, message=message)
    data = tmp_path / "data"
    data.mkdir()
    save_image(data / "a.png", np.zeros((16, 16, 3), np.uint8))
    refused(capsys, "evaluate", "--scale", "2", "--data", data, "--methods", f"pte:{pte}", message=message)
    refused(capsys, "bench", "--scale", "2", "--int8-pte", "tile64", pte, message=message)
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    sidecar_path(package).write_text(sidecar_path(pte).read_text())
    refused(capsys, "verify_coreml", package, message=message)


# --- outputs: == input, missing folder, a file, read-only, existing + failing run -----------


def test_output_that_is_an_input_is_refused(tmp_path, capsys, photo, weights, tiny_pt2):
    src = tmp_path / "in.png"
    src.write_bytes(photo.read_bytes())
    before = snapshot(src)
    refused(capsys, "upscale", src, src, "--model", weights, message="is also an input")
    refused(capsys, "upscale", src, tmp_path / "." / "in.png", "--model", weights, message="is also an input")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(photo.read_bytes())
    refused(capsys, "upscale", folder, folder, "--model", weights, message="is also an input")
    link = tmp_path / "link.png"
    link.symlink_to(src)
    refused(capsys, "upscale", src, link, "--model", weights, message="is also an input")
    assert snapshot(src) == before and (folder / "a.png").read_bytes() == photo.read_bytes()
    refused(capsys, "evaluate", "--scale", "2", "--data", folder, "--json", folder / "a.png",
            message="would replace a file of the input folder")
    pt2_copy = tmp_path / "p.pt2"
    pt2_copy.write_bytes(tiny_pt2.read_bytes())
    refused(capsys, "bench", "--scale", "2", "--int8-pte", "tile64", tmp_path / "x.pte", "--json", tmp_path / "x.pte",
            message="is also an input")
    refused(capsys, "ptq", "--weights", weights, "--data-root", folder, "--output", weights, message="must end in .pt2")
    refused(capsys, "release", pt2_copy, "--output", pt2_copy, message="must end in .safetensors")
    assert snapshot(src) == before and weights.stat().st_size > 0


def test_missing_output_folders_are_created_and_files_in_the_way_refused(tmp_path, capsys, photo, weights):
    out = tmp_path / "new" / "deeper" / "o.png"
    code, _, err = run(capsys, "upscale", photo, out, "--model", weights, "--no-progress")
    assert code == 0 and out.is_file(), err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    refused(capsys, "upscale", photo, blocker / "o.png", "--model", weights, message=f"{blocker} is a file")
    refused(capsys, "export", "--random-init", "--output", blocker / "m.pte", message=f"{blocker} is a file")
    refused(capsys, "evaluate", "--scale", "2", "--data", photo.parent, "--crops-dir", blocker,
            message="is a file, but a folder is needed")
    refused(capsys, "upscale", photo, tmp_path, "--model", weights, message="is a folder; give a file path")
    refused(capsys, "upscale", photo, tmp_path / "o.txt", "--model", weights, message="needs an image extension")
    refused(capsys, "export", "--random-init", "--output", tmp_path, message="must end in .pte")
    (tmp_path / "dir.pte").mkdir()
    refused(capsys, "export", "--random-init", "--output", tmp_path / "dir.pte", message="is a folder")
    refused(capsys, "train", "--output-dir", blocker, "--data-root", tmp_path, message="is a file, but a folder")
    assert blocker.read_text() == "not a folder"


def test_read_only_output_folder_is_refused_before_any_work(tmp_path, capsys, photo, weights):
    with read_only(tmp_path / "ro") as ro:
        refused(capsys, "upscale", photo, ro / "o.png", "--model", weights, message="permission denied")
        refused(capsys, "upscale", photo, ro / "sub" / "o.png", "--model", weights, message="permission denied")
        refused(capsys, "export", "--random-init", "--output", ro / "m.pte", message="permission denied")
        refused(capsys, "evaluate", "--scale", "2", "--data", photo.parent, "--json", ro / "s.json",
                message="permission denied")
        refused(capsys, "train", "--output-dir", ro / "run", "--data-root", photo.parent, message="permission denied")
        refused(capsys, "release", tmp_path / "ckpt.pt", "--output", ro / "w.safetensors", message="permission denied")
        assert list(ro.iterdir()) == []


def test_failing_runs_leave_existing_outputs_byte_identical(tmp_path, capsys, photo, weights, fixed_pte,
                                                            monkeypatch):
    _, result = fixed_pte
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    pte, sidecar = out_dir / "m.pte", out_dir / "m.pte.json"
    pte.write_bytes(result.path.read_bytes())
    sidecar.write_bytes(result.manifest_path.read_bytes())
    image = out_dir / "o.png"
    image.write_bytes(b"an earlier result")
    before = snapshot(pte, sidecar, image)
    # Refused requests: nothing is touched.
    refused(capsys, "export", "--random-init", "--output", pte, "--shape", "7x7", message="--overlap 16")
    refused(capsys, "export", "--random-init", "--output", pte, "--target", "coreml", message="must end in .mlpackage")
    # A run that fails during the work (the lowering, here made to fail): nothing is replaced.
    from lmfn_edge.deployment import exporter

    def broken_lowering(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exporter, "lower_to_executorch", broken_lowering)
    refused(capsys, "export", "--random-init", "--pattern", "L", "--output", pte, message="No space left on device",
            code=1)
    monkeypatch.undo()
    # Ctrl-C during the work.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "lower_to_executorch", interrupted)
    code, _, err = run(capsys, "export", "--random-init", "--pattern", "L", "--output", pte)
    assert code == 130 and err.strip().endswith("interrupted") and "Traceback" not in err
    monkeypatch.undo()
    # An image that fails to decode after its header was read: the old output stays.
    broken = tmp_path / "o.png"
    broken.write_bytes(photo.read_bytes()[:200])
    code, _, err = run(capsys, "upscale", broken, image, "--model", weights, "--no-progress")
    assert code == 1 and "Traceback" not in err
    assert snapshot(pte, sidecar, image) == before
    no_temporaries(out_dir)


def test_failed_core_ml_verification_replaces_nothing(tmp_path, capsys, monkeypatch):
    from lmfn_edge.deployment import coreml_verify

    out = tmp_path / "m.mlpackage"
    out.mkdir()
    (out / "Manifest.json").write_text("an earlier package")
    monkeypatch.setattr(coreml_verify, "default_photos", lambda: ([np.full((32, 32, 3), 128, np.uint8)], ["flat"]))
    monkeypatch.setattr(coreml_verify, "within_tolerance", lambda *args: False)
    refused(capsys, "export", "--target", "coreml", "--random-init", "--pattern", "L", "--shape", "16x16",
            "--overlap", "4", "--verify", "--output", out, message="failed verification", code=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    assert (out / "Manifest.json").read_text() == "an earlier package"


# --- numbers: negative, zero, inconsistent, for every numeric flag --------------------------

ARGPARSE_NUMBERS = [  # refused by the parser before anything is loaded
    ("export", ["--overlap", "-1"], "must be >= 0"),
    ("export", ["--kernel-size", "0"], "must be >= 1"),
    ("export", ["--scale", "5"], "invalid choice"),
    ("export", ["--scale", "0"], "invalid choice"),
    ("upscale", ["in.png", "out.png", "--tile", "-8"], "must be >= 0"),
    ("upscale", ["in.png", "out.png", "--overlap", "-1"], "must be >= 0"),
    ("upscale", ["in.png", "out.png", "--tile", "abc"], "expected an integer"),
    ("evaluate", ["--scale", "2", "--data", "d", "--crop", "-2"], "must be >= 0"),
    ("evaluate", ["--scale", "1", "--data", "d"], "invalid choice"),
    ("bench", ["--threads", "0"], "must be >= 1"),
    ("bench", ["--rounds", "-1"], "must be >= 1"),
    ("bench", ["--repeats", "0"], "must be >= 1"),
    ("bench", ["--warmup", "-1"], "must be >= 0"),
    ("verify_coreml", ["m.mlpackage", "--size", "0"], "must be >= 16"),
    ("verify_coreml", ["m.mlpackage", "--kernel-size", "-3"], "must be >= 1"),
    ("info", ["--kernel-sizes", "0"], "kernel sizes must be odd"),
    ("info", ["--kernel-sizes", "4,9"], "kernel sizes must be odd"),
    ("info", ["--kernel-sizes", "nine"], "expected comma-separated odd integers"),
    ("ptq", ["--weights", "w", "--data-root", "d", "--output", "o.pt2", "--tile", "0"], "must be >= 16"),
    ("ptq", ["--weights", "w", "--data-root", "d", "--output", "o.pt2", "--num-images", "0"], "must be >= 1"),
    ("ptq", ["--weights", "w", "--data-root", "d", "--output", "o.pt2", "--crop", "8"], "must be >= 16"),
    ("throughput", ["--batch-size", "0"], "must be >= 1"),
    ("throughput", ["--iterations", "-5"], "must be >= 1"),
    ("throughput", ["--num-workers", "-1"], "must be >= 0"),
]


@pytest.mark.parametrize("command, argv, message", ARGPARSE_NUMBERS, ids=lambda v: str(v))
def test_bad_numbers_are_refused_by_the_parser(capsys, command, argv, message):
    code, _, err = run(capsys, command, *argv)
    assert code == 2 and message in err and "Traceback" not in err, err


def test_inconsistent_numbers_are_one_line_errors(tmp_path, capsys, photo, weights, fixed_pte):
    _, result = fixed_pte
    for argv, message in [
        (["--random-init", "--shape", "0x0"], "invalid --shape"),
        (["--random-init", "--shape=-8x8"], "invalid --shape"),
        (["--random-init", "--shape", "64:16"], "invalid --shape"),
        (["--random-init", "--shape", "8:64"], "invalid --shape"),
        (["--random-init", "--shape", "16x16"], "--overlap 16 must be smaller than the tile"),
        (["--random-init", "--shape", "16:512", "--overlap", "512"], "--overlap 512 must be smaller"),
        (["--random-init", "--kernel-size", "4"], "kernel_size must be odd"),
        (["--random-init", "--pattern", "LXM"], "pattern must have"),
    ]:
        refused(capsys, "export", *argv, "--output", tmp_path / "m.pte", message=message)
    for argv, message in [
        (["--model", result.path, "--tile", "32"], f"takes {TILE}x{TILE} tiles; --tile 32 does not fit"),
        (["--model", result.path, "--overlap", str(TILE)], "--overlap must be smaller than the tile"),
        (["--model", result.path, "--tile", "0"], "whole-image runs (--tile 0) need an eager model"),
        (["--model", weights, "--tile", "8", "--overlap", "8"], "--overlap must be smaller than the tile"),
        (["--model", weights, "--scale", "3"], "holds x2 weights, but x3 was requested"),
        (["--model", result.path, "--scale", "4"], "upscales x2, but --scale 4 was given"),
    ]:
        refused(capsys, "upscale", photo, tmp_path / "o.png", *argv, message=message)
    refused(capsys, "bench", "--jobs", "", message="unknown job (none given)")
    refused(capsys, "bench", "--weights", weights, "--random-init", message="cannot be combined")
    refused(capsys, "verify_coreml", tmp_path / "m.mlpackage", "--size", "20", message="model not found")
    package = tmp_path / "m.mlpackage"
    package.mkdir()
    refused(capsys, "verify_coreml", package, "--size", "20", "--random-init", "--scale", "2",
            message="--size must be a multiple of 8")
    data = training_data(tmp_path)
    for sets, message in [("iterations=0", "iterations must be >= 1"), ("batch_size=0", "batch_size must be >= 1"),
                          ("patch_size=-4", "patch_size must be >= 1"), ("learning_rate=-1", "learning_rate must be > 0"),
                          ("learning_rate=inf", "learning_rate must be > 0"), ("ema_decay=1", "ema_decay must be in"),
                          ("val_every=-1", "val_every must be >= 0"), ("time_limit=-5", "time_limit must be >= 0"),
                          ("num_workers=-2", "num_workers must be >= 0"), ("seed=-1", "seed must be >= 0"),
                          ("weight_decay=-0.1", "weight_decay must be >= 0"), ("betas=[0.9, 0.9]", "betas must be")]:
        refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", data, *TRAIN_SETS, "--set", sets,
                message=message)
    for sets, message in [("tile=12", "tile must be a multiple of 8"), ("freeze_observers_at=0", "must be >= 1"),
                          ("patch_size=20", "patch_size must be a multiple of 8"), ("scale=5", "scale must be 2, 3")]:
        refused(capsys, "qat", "--output-dir", tmp_path / "q", "--weights", weights, "--data-root", data,
                "--set", sets, message=message)
    refused(capsys, "ptq", "--weights", weights, "--data-root", data, "--output", tmp_path / "p.pt2", "--tile", "20",
            message="tile must be a multiple of 8")
    assert not (tmp_path / "m.pte").exists() and not (tmp_path / "o.png").exists()
    assert not (tmp_path / "run").exists() and not (tmp_path / "q").exists()


# --- images: smaller than the scale, odd modes, too large -----------------------------------


def test_images_smaller_than_the_scale(tmp_path, capsys, weights):
    data = tmp_path / "data"
    data.mkdir()
    save_image(data / "tiny.png", np.zeros((3, 3, 3), np.uint8))
    refused(capsys, "evaluate", "--scale", "4", "--data", data, message="smaller than the scale x4")
    refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", data, *TRAIN_SETS,
            message="smaller than")
    refused(capsys, "ptq", "--weights", weights, "--data-root", data, "--output", tmp_path / "p.pt2",
            message="no calibration image is at least 16x16")


def _odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Files users feed an upscaler, and the (width, height) each must come out at x2."""
    folder.mkdir()
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(folder / "sixteen.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb[:1, :1]).save(folder / "one.png")
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated.save(folder / "exif.jpg", exif=exif)
    return {"gray.png": (20, 24), "rgba.png": (20, 24), "sixteen.png": (20, 24), "palette.png": (20, 24),
            "one.png": (2, 2), "exif.jpg": (24, 20)}


def test_odd_images_are_upscaled_or_refused_in_one_line(tmp_path, capsys, weights):
    expected = _odd_images(tmp_path / "in")
    (tmp_path / "in" / "fake.png").write_bytes(b"not an image at all")
    huge = Image.new("RGB", (1, 1))
    huge.save(tmp_path / "in" / "huge.png")
    with open(tmp_path / "in" / "huge.png", "r+b") as f:  # a 60000x60000 header over a 1x1 image
        data = bytearray(f.read())
        data[16:24] = struct.pack(">II", 60000, 60000)
        f.seek(0)
        f.write(data)
    code, _, err = run(capsys, "upscale", tmp_path / "in", tmp_path / "out", "--model", weights, "--no-progress")
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert any("fake.png" in e and "not an image" in e for e in errors), errors
    assert any("huge.png" in e for e in errors), errors
    assert errors[-1] == "error: 2 of 8 image(s) failed"
    for name, size in expected.items():
        with Image.open(tmp_path / "out" / name) as img:
            assert img.size == size and img.mode == "RGB", name
    assert not (tmp_path / "out" / "fake.png").exists() and not (tmp_path / "out" / "huge.png").exists()
    no_temporaries(tmp_path / "out")


# --- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_during_a_folder_upscale(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for i in range(40):
        save_image(src / f"{i:02d}.png", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "lmfn_edge.upscale", str(src), str(out), "--model", str(weights),
                             "--no-progress", "--tile", "32"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    written = sorted(out.iterdir())
    assert written and len(written) < 40 and all(p.suffix == ".png" and not p.name.startswith(".") for p in written)
    for path in written:  # every file there is a whole image
        with Image.open(path) as img:
            img.load()
            assert img.size == (192, 192)


# --- everything else a command takes --------------------------------------------------------


def test_other_refusals_per_command(tmp_path, capsys, photo, weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, "upscale", empty, tmp_path / "o", "--model", weights, message="no images in")
    refused(capsys, "upscale", tmp_path / "none.png", tmp_path / "o.png", message="input not found")
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", tmp_path / "m.onnx", message="model not found")
    (tmp_path / "m.onnx").write_bytes(b"x")
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", tmp_path / "m.onnx", message="unknown model file")
    refused(capsys, "evaluate", "--scale", "2", "--data", photo.parent, "--methods", "pte", message="pte needs a path")
    refused(capsys, "evaluate", "--scale", "2", "--data", photo.parent, "--methods", ",", message="no methods given")
    refused(capsys, "export", "--target", "coreml", "--precision", "fp32", "--verify", "--random-init",
            "--output", tmp_path / "m.pte", message="must end in .mlpackage")
    refused(capsys, "skimage_photos", photo, message="is a file, but a folder is needed")
    refused(capsys, "release", tmp_path / "none.pt", "--output", tmp_path / "w.safetensors",
            message="checkpoint not found")
    refused(capsys, "qat", "--output-dir", tmp_path / "q", "--data-root", empty, message="no float weights")
    refused(capsys, "qat", "--output-dir", tmp_path / "q", "--weights", weights, "--data-root", empty,
            "--output", tmp_path / "q.pte", message="must end in .pt2")
    code, _, err = run(capsys, "export", "--target", "tflite")
    assert code == 2 and "invalid choice: 'tflite'" in err
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".png", ".pte", ".mlpackage", ".safetensors")
                and p.name != "m.onnx"]


@pytest.mark.parametrize("argv,message", [
    (["--variants", "v2,fast"], "--variants: unknown fast"),
    (["--variants", ","], "--variants: unknown (none given)"),
    (["--steps", "1"], "must be >= 2"),
    (["--config", "missing.toml"], "missing.toml"),
])
def test_loop_speed_refuses_bad_flags_before_any_work(capsys, argv, message):
    refused(capsys, "loop_speed", *argv, message=message)
