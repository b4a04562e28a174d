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

from ..errors import UsageError
from ..manifest import DYNAMIC_MULTIPLE, Manifest, ManifestError, read_manifest

__all__ = ["Backend", "BackendError", "coreml_backend", "eager_backend", "load_backend", "pte_backend"]


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


def _check_sha256(path: Path, manifest: Manifest) -> None:
    from ..model.weights import sha256_file

    if manifest.artifact_sha256 is not None and sha256_file(path) != manifest.artifact_sha256:
        raise BackendError(f"{path} does not match its sidecar (SHA-256 differs): the program was changed or "
                           "truncated after export; re-export it")


def pte_backend(path: str | Path) -> Backend:
    """An ExecuTorch program run through ``executorch.runtime`` (XNNPACK and portable kernels)."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.target not in ("xnnpack", "portable"):
        raise BackendError(f"{path} is a {manifest.target} program; this runtime runs xnnpack and portable .pte files")
    _check_sha256(path, manifest)
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise BackendError(f"executorch is required to run .pte files ({exc})") from None
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError/ValueError with error codes
        raise BackendError(f"cannot load {path}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") \
            from None
    meta = method.metadata
    expected = [1, 3, *manifest.shape.example] if not manifest.shape.dynamic else [1, 3, manifest.shape.max_size,
                                                                                   manifest.shape.max_size]
    if meta.num_inputs() != 1 or list(meta.input_tensor_meta(0).sizes()) != expected:
        raise ManifestError(f"{path}: the program takes {list(meta.input_tensor_meta(0).sizes())}, but its sidecar "
                            f"says {manifest.shape} (expected {expected}); re-export it")

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

    try:
        mlmodel = ct.models.MLModel(str(path))
    except Exception as exc:  # coremltools raises bare Exceptions for unreadable packages
        raise BackendError(f"cannot load {path}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") \
            from None

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
