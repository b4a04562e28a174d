"""The hostile-input harness the ``test_hostile_*`` files share (imported by name).

Each case runs a command's ``main`` in-process, the way ``python -m`` runs it, and asserts what a
user relies on: a non-zero exit with one ``error:`` line (argparse's own two-line usage error
for malformed flags), no traceback, nothing executed from a file, no temporary or half-written
file, and existing outputs byte-identical after a failing run.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from lmfn_edge import bench, evaluate, export, info, upscale, verify_coreml
from lmfn_edge.io import save_image
from quantization import numerics as numerics_cli
from quantization import ptq as ptq_cli
from quantization import qat as qat_cli
from training import corpus as corpus_cli
from training import loop_speed as loop_speed_cli
from training import release as release_cli
from training import skimage_photos as skimage_cli
from training import throughput as throughput_cli
from training import train as train_cli

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "export": export.main, "upscale": upscale.main, "evaluate": evaluate.main, "bench": bench.main,
    "verify_coreml": verify_coreml.main, "info": info.main, "train": train_cli.main, "release": release_cli.main,
    "skimage_photos": skimage_cli.main, "throughput": throughput_cli.main, "qat": qat_cli.main, "ptq": ptq_cli.main,
    "numerics": numerics_cli.main, "corpus": corpus_cli.main, "loop_speed": loop_speed_cli.main,
}



def run(capsys, command: str, *argv) -> tuple[int, str, str]:
    """Run a command's main; an argparse error (SystemExit 2) counts as exit code 2."""
    try:
        code = COMMANDS[command]([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def refused(capsys, command: str, *argv, message: str, code: int = 2) -> str:
    """The command exits with ``code`` and one error line containing ``message``."""
    got, out, err = run(capsys, command, *argv)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert got == code and len(errors) == 1 and message in errors[0], (got, err)
    return errors[0]


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*") if p.name.endswith(".tmp") or ".tmp" in p.name], \
        sorted(folder.rglob(".*"))


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


class Payload:
    """A pickle that creates a folder when unpickled: proof that a file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def torch_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@contextmanager
def read_only(folder: Path):
    """A folder nothing can be written into, root included (immutable when run as root)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def training_data(tmp_path: Path) -> Path:
    """Two 32x32 HR training images."""
    folder = tmp_path / "data"
    if not folder.exists():
        folder.mkdir()
        rng = np.random.default_rng(1)
        for i in range(2):
            save_image(folder / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return folder


TRAIN_SETS = ["--set", "model=lmfn_x2", "--set", "model_overrides.channels=8", "--set", "model_overrides.pattern=L",
              "--set", "patch_size=8", "--set", "batch_size=2", "--set", "iterations=2", "--set", "num_workers=0",
              "--set", "device=cpu", "--set", "val_every=0", "--set", "ckpt_every=1", "--set", "log_every=1"]


def safetensors_bytes(header: dict | bytes, data: bytes = b"") -> bytes:
    """A safetensors file: length-prefixed JSON header, then the data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data
