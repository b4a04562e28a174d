"""What runs one tile: eager PyTorch, an ExecuTorch .pte, a Core ML package.

A :class:`Backend` maps a ``1x3xhxw`` float32 array in [0, 1] to ``1x3x(s*h)x(s*w)`` and says
what input shapes it takes; :class:`~lmfn_edge.runtime.upscaler.Upscaler` tiles images around
it. Exported programs are opened through their sidecar (:func:`lmfn_edge.manifest.read_manifest`,
the same validation every reader uses), which is then checked against the program itself: its
SHA-256 and the input shape the program was planned for.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import console, interrupts
from ..errors import UsageError, first_line
from ..manifest import DYNAMIC_MULTIPLE, Manifest, ManifestError, read_manifest

__all__ = ["Backend", "BackendError", "check_pte", "coreml_backend", "eager_backend", "load_backend", "pte_backend"]


class BackendError(UsageError, ValueError):
    """A model file that cannot be run here (unknown kind, broken, wrong platform)."""


@dataclass
class Backend:
    """A callable program plus what the tiler needs to know about its input shape."""

    run: Callable[[np.ndarray], np.ndarray]
    scale: int
    name: str
    tile: int | None = None  # fixed square input side, or None when any size works
    max_size: int | None = None  # dynamic programs: the largest H/W the program accepts
    multiple: int = 1  # dynamic programs: H and W must be multiples of this
    min_size: int = 1  # dynamic programs: the smallest H/W the program accepts
    overlap: int | None = None  # the sidecar's tile overlap (what the Android app uses)


def eager_backend(model: torch.nn.Module, threads: int | None = None) -> Backend:
    """The PyTorch model itself (training or deploy form), any input size."""
    model = model.eval()

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    if threads:
        torch.set_num_threads(threads)
    return Backend(run, model.config.scale, "eager")


def _shape_fields(manifest: Manifest) -> dict:
    shape = manifest.shape
    if shape.dynamic:
        return {"tile": None, "max_size": shape.max_size, "multiple": DYNAMIC_MULTIPLE, "min_size": shape.min_size,
                "overlap": manifest.overlap}
    if shape.tile is None:
        raise BackendError(f"{manifest.artifact} has a non-square {shape} input; the tiler needs a square --shape")
    return {"tile": shape.tile, "overlap": manifest.overlap}




# ExecuTorch 1.5's program files: a flatbuffer with the file identifier "ET12" at byte 4 and an
# extended header ("eh00": length, program size, segment base offset, segment data size) at byte 8.
_PTE_IDENTIFIER, _PTE_HEADER = b"ET12", b"eh00"


def check_pte(path: Path, manifest: Manifest) -> None:
    """Refuse a file that is not the whole ExecuTorch program its sidecar describes, before the
    C++ runtime reads it.

    The sidecar's SHA-256 catches any change after export. Without one (an older sidecar), the
    header is checked: the runtime reports most damage as an error code, but it logs a wrong
    identifier through Python's stderr, and bytes that are not UTF-8 there abort the process.
    """
    import struct

    from ..model.weights import sha256_file

    if manifest.artifact_sha256 is not None and sha256_file(path) != manifest.artifact_sha256:
        raise BackendError(f"{path} does not match its sidecar (SHA-256 differs): the program was changed or "
                           "truncated after export; re-export it")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(40)
    if len(head) < 40 or head[4:8] != _PTE_IDENTIFIER or head[8:12] != _PTE_HEADER:
        raise BackendError(f"{path} is not an ExecuTorch program (no {_PTE_IDENTIFIER.decode()} header)")
    _, program_size, segment_base, segment_size = struct.unpack("<IQQQ", head[12:40])
    if program_size > size or (segment_base and segment_base + segment_size > size):
        raise BackendError(f"{path} is truncated: its header promises {max(program_size, segment_base + segment_size)} "
                           f"bytes, the file has {size}")


def pte_backend(path: str | Path) -> Backend:
    """An ExecuTorch program run through ``executorch.runtime`` (XNNPACK and portable kernels)."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.target not in ("xnnpack", "portable"):
        raise BackendError(f"{path} is a {manifest.target} program; this runtime runs xnnpack and portable .pte files")
    check_pte(path, manifest)
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise BackendError(f"executorch is required to run .pte files ({exc})") from None
    try:
        with console.third_party():  # the runtime logs its CPU probing
            method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError/ValueError with error codes
        raise BackendError(f"cannot load {path}: {first_line(exc)}") from None
    meta = method.metadata
    expected = [1, 3, *manifest.shape.example] if not manifest.shape.dynamic else [1, 3, manifest.shape.max_size,
                                                                                   manifest.shape.max_size]
    if meta.num_inputs() != 1 or list(meta.input_tensor_meta(0).sizes()) != expected:
        raise ManifestError(f"{path}: the program takes {list(meta.input_tensor_meta(0).sizes())}, but its sidecar "
                            f"says {manifest.shape} (expected {expected}); re-export it")
    # The output's planned size is the scale the program really has, whatever the sidecar claims.
    upscaled = [1, 3, *(manifest.scale * side for side in expected[2:])]
    if meta.num_outputs() != 1 or list(meta.output_tensor_meta(0).sizes()) != upscaled:
        raise ManifestError(f"{path}: the program returns {list(meta.output_tensor_meta(0).sizes())}, but its sidecar "
                            f"says x{manifest.scale} (expected {upscaled}); re-export it")

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()

    return Backend(run, manifest.scale, f"pte:{manifest.target}:{manifest.precision}", **_shape_fields(manifest))


def coreml_backend(path: str | Path) -> Backend:
    """A Core ML package; prediction needs macOS (coremltools cannot run programs on Linux)."""
    manifest = read_manifest(path)
    if manifest.target != "coreml":
        raise BackendError(f"{path} is a {manifest.target} artifact, not a Core ML package")
    if platform.system() != "Darwin":
        raise BackendError(
            "Core ML prediction needs macOS; on Linux, check the package numerically with "
            "python -m lmfn_edge.verify_coreml"
        )
    import coremltools as ct

    interrupts.check()  # coremltools' imports swallow a Ctrl-C that comes meanwhile
    try:
        with console.third_party():
            mlmodel = ct.models.MLModel(str(path))
    except Exception as exc:  # coremltools raises bare Exceptions for unreadable packages
        raise BackendError(f"cannot load {path}: {first_line(exc)}") from None

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(mlmodel.predict({"lr": x})["sr"], dtype=np.float32)

    return Backend(run, manifest.scale, f"coreml:{manifest.precision}", **_shape_fields(manifest))


def load_backend(model: str | Path | None = None, scale: int | None = None) -> Backend:
    """A backend from a path (.pte / .mlpackage / .safetensors) or the embedded default weights.

    ``scale``, when given, must be the model's.
    """
    from ..model.weights import load_model

    if model is None:
        return eager_backend(load_model(scale)[0])
    path = Path(model)
    if not path.exists():
        raise BackendError(f"model not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".pte":
        backend = pte_backend(path)
    elif suffix == ".mlpackage":
        backend = coreml_backend(path)
    elif suffix == ".safetensors":
        backend = eager_backend(load_model(scale, path)[0])
    else:
        raise BackendError(f"unknown model file {path.name}: expected .pte, .mlpackage or .safetensors")
    if scale is not None and backend.scale != scale:
        raise BackendError(f"{path.name} upscales x{backend.scale}, but --scale {scale} was given")
    return backend
