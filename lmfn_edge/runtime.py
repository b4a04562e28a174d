"""Run any LMFN backend over whole images: eager PyTorch, an ExecuTorch .pte, a Core ML package.

:class:`Upscaler` is the app-side wrapper (the pattern of ai-hub-models' app classes): it owns
pre/post-processing and tiling, and calls a backend that maps a ``1x3xhxw`` float32 array in
[0, 1] to ``1x3x(s*h)x(s*w)``. Eager and on-device programs thus share exactly the code the
Android app mirrors in Java (:mod:`lmfn_edge.tiling`), so what users check here is what the
phone computes.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .export import DEFAULT_OVERLAP, DEFAULT_TILE, MANIFEST_FORMAT
from .tiling import upscale_tiled


class BackendError(ValueError):
    """A model file that cannot be run here (unknown kind, missing sidecar, wrong platform)."""


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


def eager_backend(model: torch.nn.Module, threads: int | None = None) -> Backend:
    """The PyTorch model itself (training or deploy form), any input size."""
    model = model.eval()

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x)).numpy()

    if threads:
        torch.set_num_threads(threads)
    return Backend(run, model.config.scale, "eager")


def read_manifest(artifact: str | Path) -> dict:
    """The JSON sidecar the exporter wrote next to ``artifact``."""
    path = Path(str(artifact) + ".json")
    if not path.is_file():
        raise BackendError(f"{artifact} has no sidecar {path.name}; re-export it with python -m lmfn_edge.export")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BackendError(f"{path} is not valid JSON ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BackendError(f"{path} is not an lmfn-edge manifest")
    return manifest


def _shape_fields(manifest: dict) -> dict:
    shape = manifest["shape"]
    if shape["dynamic"]:
        return {"tile": None, "max_size": shape["max"], "multiple": shape["multiple"], "min_size": shape["min"]}
    if shape["height"] != shape["width"]:
        raise BackendError("non-square fixed shapes are not supported by the tiler; export a square --shape")
    return {"tile": shape["height"]}


def pte_backend(path: str | Path) -> Backend:
    """An ExecuTorch program run through ``executorch.runtime`` (XNNPACK and portable kernels)."""
    manifest = read_manifest(path)
    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise BackendError(f"executorch is required to run .pte files ({exc})") from None
    try:
        method = Runtime.get().load_program(str(path)).load_method("forward")
    except Exception as exc:  # the runtime raises RuntimeError/ValueError with codes
        raise BackendError(f"cannot load {path}: {exc}") from None

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()

    return Backend(run, manifest["scale"], f"pte:{manifest['target']}:{manifest['precision']}", **_shape_fields(manifest))


def coreml_backend(path: str | Path) -> Backend:
    """A Core ML package; prediction needs macOS (coremltools cannot run programs on Linux)."""
    manifest = read_manifest(path)
    if platform.system() != "Darwin":
        raise BackendError(
            "Core ML prediction needs macOS; on Linux, check the package numerically with "
            "python -m lmfn_edge.verify_coreml"
        )
    import coremltools as ct

    mlmodel = ct.models.MLModel(str(path))
    in_name, out_name = manifest["input"]["name"], manifest["output"]["name"]

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(mlmodel.predict({in_name: x})[out_name], dtype=np.float32)

    return Backend(run, manifest["scale"], f"coreml:{manifest['precision']}", **_shape_fields(manifest))


def load_backend(model: str | Path | None = None, scale: int | None = None) -> Backend:
    """A backend from a path (.pte / .mlpackage / .safetensors) or the embedded default weights."""
    from . import create_model, model_name

    if model is None:
        return eager_backend(create_model(model_name(scale or 4), pretrained=True))
    path = Path(model)
    if not path.exists():
        raise BackendError(f"model not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".pte":
        backend = pte_backend(path)
    elif suffix == ".mlpackage":
        backend = coreml_backend(path)
    elif suffix == ".safetensors":
        from .weights import load_weights

        backend = eager_backend(load_weights(path, scale=scale))
    else:
        raise BackendError(f"unknown model file {path.name}: expected .pte, .mlpackage or .safetensors")
    if scale is not None and backend.scale != scale:
        raise BackendError(f"{path.name} upscales x{backend.scale}, but --scale {scale} was given")
    return backend


class Upscaler:
    """Upscale HxWx3 uint8 images of any size with overlapping, blended tiles.

    Args:
        backend: What runs each tile.
        tile: LR tile side. Default: a fixed-shape program's own tile, else 128 (bounded
            memory). 0 runs an eager model on the whole image in one call.
        overlap: LR pixels shared by neighbouring tiles (default 16).
    """

    def __init__(self, backend: Backend, tile: int | None = None, overlap: int = DEFAULT_OVERLAP) -> None:
        self.backend = backend
        if tile == 0:
            if backend.tile is not None or backend.max_size is not None:
                raise BackendError(f"{backend.name} has a bounded input shape; whole-image runs need an eager model")
            tile = None
        elif backend.tile is not None:
            if tile not in (None, backend.tile):
                raise BackendError(f"{backend.name} takes {backend.tile}x{backend.tile} tiles; --tile {tile} does not fit")
            tile = backend.tile
        elif backend.max_size is not None:
            tile = min(tile or DEFAULT_TILE, backend.max_size)
            if tile % backend.multiple:
                raise BackendError(f"tile must be a multiple of {backend.multiple} for {backend.name}")
        else:
            tile = tile or DEFAULT_TILE
        if tile is not None and not 0 <= overlap < tile:
            raise BackendError(f"overlap must be in [0, tile), got {overlap} with tile {tile}")
        self.tile, self.overlap = tile, overlap

    @property
    def scale(self) -> int:
        return self.backend.scale

    def upscale(self, image: np.ndarray, progress: bool = False) -> np.ndarray:
        if self.tile is None:  # eager on the whole image
            h, w = image.shape[:2]
            return upscale_tiled(self.backend.run, image, self.scale, max(h, w), 0, pad_to_tile=False)
        if self.backend.max_size is not None:
            return self._upscale_dynamic(image, progress)
        return upscale_tiled(
            self.backend.run, image, self.scale, self.tile, self.overlap,
            pad_to_tile=self.backend.tile is not None, progress=progress,
        )

    def _upscale_dynamic(self, image: np.ndarray, progress: bool) -> np.ndarray:
        # Dynamic programs accept sizes in [min_size, max_size] that are multiples of
        # `multiple`: pad each small tile up by edge replication and crop the output back.
        m, s, lo = self.backend.multiple, self.scale, self.backend.min_size
        run = self.backend.run

        def padded_run(x: np.ndarray) -> np.ndarray:
            h, w = x.shape[2:]
            ph, pw = max(lo, h + (-h) % m) - h, max(lo, w + (-w) % m) - w
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
            return np.asarray(run(x))[:, :, : h * s, : w * s]

        return upscale_tiled(padded_run, image, s, self.tile, self.overlap, pad_to_tile=False, progress=progress)
