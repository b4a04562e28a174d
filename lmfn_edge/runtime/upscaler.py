"""Upscaling whole images of any size with any backend, in overlapping tiles.

:class:`Upscaler` is the app-side wrapper (the pattern of ai-hub-models' app classes): it owns
pre/post-processing and tiling (:mod:`lmfn_edge.runtime.tiling`, mirrored line for line by the
Android app's Java image core) and calls a :class:`~lmfn_edge.runtime.backends.Backend`, so what
users check here is what the phone computes.
"""

from __future__ import annotations

import numpy as np

from ..checks import check_integer
from ..manifest import DEFAULT_OVERLAP, DEFAULT_TILE, padded_side
from .backends import Backend, BackendError
from .tiling import upscale_tiled

__all__ = ["Upscaler"]


class Upscaler:
    """Upscale HxWx3 uint8 images of any size with overlapping, blended tiles.

    Args:
        backend: What runs each tile.
        tile: LR tile side. Default: a fixed-shape program's own tile, else 128 (bounded
            memory). 0 runs an eager model on the whole image in one call.
        overlap: LR pixels shared by neighbouring tiles. Default: the program's sidecar value
            (what the Android app uses), else 16.
    """

    def __init__(self, backend: Backend, tile: int | None = None, overlap: int | None = None) -> None:
        self.backend = backend
        for name, value in (("tile", tile), ("overlap", overlap)):
            if value is not None:
                check_integer(value, f"--{name}", 0, error=BackendError)
        if overlap is None:
            overlap = backend.overlap if backend.overlap is not None else DEFAULT_OVERLAP
        if tile == 0:
            if backend.tile is not None or backend.max_size is not None:
                raise BackendError(f"{backend.name} has a bounded input shape; whole-image runs (--tile 0) need "
                                   "an eager model")
            tile = None
        elif backend.tile is not None:
            if tile not in (None, backend.tile):
                raise BackendError(f"{backend.name} takes {backend.tile}x{backend.tile} tiles; --tile {tile} does not fit")
            tile = backend.tile
        elif backend.max_size is not None:
            tile = min(tile or DEFAULT_TILE, backend.max_size)
            if tile % backend.multiple or tile < backend.min_size:
                raise BackendError(f"--tile must be a multiple of {backend.multiple} in [{backend.min_size}, "
                                   f"{backend.max_size}] for {backend.name}, got {tile}")
        else:
            tile = tile or DEFAULT_TILE
        if tile is not None and overlap >= tile:
            raise BackendError(f"--overlap must be smaller than the tile, got {overlap} with tile {tile}")
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
            ph, pw = padded_side(h, m, lo) - h, padded_side(w, m, lo) - w
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
            return np.asarray(run(x))[:, :, : h * s, : w * s]

        return upscale_tiled(padded_run, image, s, self.tile, self.overlap, pad_to_tile=False, progress=progress)
