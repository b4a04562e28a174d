"""Hostile sizes, numbers and paths, every command they apply to: decompression bombs, shapes
and tiles that cannot be allocated, numbers that overflow, outputs that would land on an input
or inside a data folder, names too long for the file system, EXIF-rotated training photos.

Every case is refused in one line before any work (or, for one bad image among many, reported
in one line while the rest is processed), and nothing is written.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import TRAIN_SETS, no_temporaries, refused, run, snapshot, training_data
from PIL import Image

from lmfn_edge.io import DEFAULT_MAX_PIXELS, save_image
from training.checkpoint import CHECKPOINT_NAME


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A well-formed PNG header declaring ``width x height`` over a few bytes of data: what a
    decompression bomb looks like to any reader that trusts the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# Past Pillow's own bomb error (2 x 89.5 MP), and between this SDK's limit and Pillow's.
BOMBS = {"30000x30000": (30000, 30000), "12000x12000": (12000, 12000)}


@pytest.mark.parametrize("size", sorted(BOMBS))
def test_decompression_bombs_in_every_command_that_reads_images(tmp_path, capsys, weights, size):
    width, height = BOMBS[size]
    assert width * height > DEFAULT_MAX_PIXELS
    folder = tmp_path / "bombs"
    folder.mkdir()
    bomb = bomb_png(folder / "bomb.png", width, height)
    good = training_data(tmp_path)
    code, _, err = run(capsys, "upscale", bomb, tmp_path / "o.png", "--model", weights, "--no-progress")
    assert code == 1 and "bomb.png" in err and "Traceback" not in err, err
    message = "bomb.png"
    refused(capsys, "evaluate", "--scale", "2", "--data", folder, message=message)
    (tmp_path / "m.mlpackage").mkdir()  # the images are read before the package
    refused(capsys, "verify_coreml", tmp_path / "m.mlpackage", "--random-init", "--scale", "2", "--images", bomb,
            message=message)
    refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", folder, *TRAIN_SETS, message=message)
    refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", good, "--val-root", folder, *TRAIN_SETS,
            message=message)
    refused(capsys, "ptq", "--weights", weights, "--data-root", folder, "--output", tmp_path / "p.pt2", message=message)
    refused(capsys, "qat", "--weights", weights, "--data-root", folder, "--output-dir", tmp_path / "q",
            "--set", "scale=2", message=message)
    work = tmp_path / "work"
    from training.corpus import PACKAGES

    for package in PACKAGES:  # as if downloaded and unpacked already
        (work / "debs").mkdir(parents=True, exist_ok=True)
        (work / "debs" / f"{package}_1.0_all.deb").write_bytes(b"")
        (work / "unpacked" / package).mkdir(parents=True)
    bomb_png(work / "unpacked" / PACKAGES[0] / "bomb.png", width, height)
    refused(capsys, "corpus", "survey", tmp_path / "corpus", "--work", work, message=message)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "p.pt2").exists()


# --- shapes, tiles and counts that cannot be allocated --------------------------------------


def test_sizes_over_the_documented_maxima_are_refused_before_any_work(tmp_path, capsys, weights, photo):
    out = tmp_path / "m.pte"
    for shape in ("99999999x99999999", "4096x16", "16:99999992", ""):
        refused(capsys, "export", "--random-init", "--shape", shape, "--output", out, message="invalid --shape")
        refused(capsys, "export", "--precision", "int8", "--shape", shape, "--output", out, message="invalid --shape")
    for command, argv in (("ptq", ["--weights", weights, "--data-root", photo.parent, "--output", tmp_path / "p.pt2",
                                   "--tile", "99999999"]),
                          ("upscale", [photo, tmp_path / "o.png", "--tile", "99999999"]),
                          ("verify_coreml", [tmp_path / "m.mlpackage", "--size", "99999992"]),
                          ("bench", ["--threads", "99999999"])):
        code, _, err = run(capsys, command, *argv)
        assert code == 2 and "must be <=" in err and "Traceback" not in err, err
    data = training_data(tmp_path)
    for sets, message in (("batch_size=1000000000", "batch_size must be <= 1024"),
                          ("patch_size=1000000", "patch_size must be <= 512"),
                          ("num_workers=100000", "num_workers must be <= 64"),
                          (f"seed={2**76}", "seed must be < 2**32")):
        refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", data, *TRAIN_SETS, "--set", sets,
                message=message)
        refused(capsys, "qat", "--output-dir", tmp_path / "q", "--weights", weights, "--data-root", data,
                "--set", "scale=2", "--set", sets, message=message)
    refused(capsys, "qat", "--output-dir", tmp_path / "q", "--weights", weights, "--data-root", data,
            "--set", "scale=2", "--set", "tile=99999992", message="tile must be <= 2048")
    refused(capsys, "throughput", "--batch-size", "1000000000", message="batch_size must be <= 1024")
    assert not out.exists() and not (tmp_path / "run").exists() and not (tmp_path / "q").exists()


def test_repeated_set_flags_add_up(tmp_path, capsys):
    # TRAIN_SETS sets model_overrides.channels and model_overrides.pattern in two flags.
    data = training_data(tmp_path)
    code, _, err = run(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", data, *TRAIN_SETS,
                       "--set", "seed=3", "--set", "seed=4", "--no-progress")
    assert code == 0, err
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    assert (ckpt["model_config"]["channels"], ckpt["model_config"]["pattern"]) == (8, "L")
    assert ckpt["config"]["seed"] == 4  # a plain key given twice: the last one, as with flags


# --- outputs on inputs, outputs inside data folders -----------------------------------------


def test_training_outputs_never_land_in_a_data_folder(tmp_path, capsys):
    data = training_data(tmp_path)
    val = tmp_path / "val"
    val.mkdir()
    save_image(val / "v.png", np.zeros((32, 32, 3), np.uint8))
    before = snapshot(*data.iterdir(), *val.iterdir())
    for out, message in ((data, "is also an input"), (data / "run", "is inside the input folder"),
                         (val, "is also an input"), (val / "run", "is inside the input folder")):
        refused(capsys, "train", "--output-dir", out, "--data-root", data, "--val-root", val, *TRAIN_SETS,
                message=message)
    refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", data, *TRAIN_SETS,
            "--set", f"cache_dir={data / 'cache'}", message="is inside the input folder")
    assert snapshot(*data.iterdir(), *val.iterdir()) == before and not (tmp_path / "run").exists()


def test_qat_never_writes_over_its_weights(tmp_path, capsys, weights):
    data = training_data(tmp_path)
    folder = tmp_path / "dir"
    folder.mkdir()
    named = folder / "lmfn_x2_int8.safetensors"  # the name QAT gives the int8 parameters it writes
    named.write_bytes(weights.read_bytes())
    before = snapshot(named)
    refused(capsys, "qat", "--weights", named, "--output", folder / "prog.pt2", "--output-dir", tmp_path / "q",
            "--data-root", data, "--set", "scale=2", message="is also an input")
    refused(capsys, "qat", "--weights", weights, "--output", data / "prog.pt2", "--output-dir", tmp_path / "q",
            "--data-root", data, "--set", "scale=2", message="is inside the input folder")
    refused(capsys, "ptq", "--weights", weights, "--data-root", data, "--output", data / "p.pt2",
            message="is inside the input folder")
    assert snapshot(named) == before and not (tmp_path / "q").exists() and not (data / "p.pt2").exists()


def test_names_too_long_for_the_file_system_are_refused_before_any_work(tmp_path, capsys, weights, photo):
    long = "n" * 251  # legal; its temporary sibling or its sidecar would not be
    data = training_data(tmp_path)
    checks = [
        ("upscale", [photo, tmp_path / ("x" * 300 + ".png"), "--model", weights]),
        ("export", ["--random-init", "--output", tmp_path / f"{long}.pte"]),  # the sidecar adds .json
        ("evaluate", ["--scale", "2", "--data", photo.parent, "--json", tmp_path / ("j" * 300)]),
        ("verify_coreml", [tmp_path / "m.mlpackage", "--json", tmp_path / ("j" * 300)]),
        ("bench", ["--json", tmp_path / ("j" * 300)]),
        ("release", [tmp_path / "ckpt.pt", "--output", tmp_path / ("w" * 300 + ".safetensors")]),
        ("ptq", ["--weights", weights, "--data-root", data, "--output", tmp_path / ("p" * 300 + ".pt2")]),
        ("qat", ["--weights", weights, "--data-root", data, "--output-dir", tmp_path / "q", "--set", "scale=2",
                 "--output", tmp_path / ("p" * 300 + ".pt2")]),
        ("train", ["--output-dir", tmp_path / ("r" * 300), "--data-root", data, *TRAIN_SETS]),
        ("skimage_photos", [tmp_path / ("s" * 300)]),
    ]
    for command, argv in checks:
        refused(capsys, command, *argv, message="the file system allows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# --- EXIF-rotated photos in training folders -------------------------------------------------


def test_exif_rotated_portraits_train_from_hr_only_folders(tmp_path, capsys):
    from training.data import find_pairs

    folder = tmp_path / "portraits"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(2):
        img = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))  # stored 40x24, shown 24x40
        exif = img.getexif()
        exif[0x0112] = 6
        img.save(folder / f"p{i}.jpg", exif=exif, quality=95)
    pairs = find_pairs(folder, 2, tmp_path / "cache", min_lr_size=8)
    for pair in pairs:
        with Image.open(pair.lr) as lr:
            assert lr.size == (12, 20)  # half of the upright 24x40
    code, _, err = run(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", folder, *TRAIN_SETS,
                       "--no-progress")
    assert code == 0 and "Traceback" not in err, err
    no_temporaries(tmp_path)
