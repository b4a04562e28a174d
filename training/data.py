"""Training and validation data: paired LR/HR folders, HR-only folders, reproducible patches.

Folder layouts, resolved per root (``find_pairs``):

* DIV2K / Flickr2K as unpacked: ``DIV2K_train_HR/0001.png`` with
  ``DIV2K_train_LR_bicubic/X4/0001x4.png``; the root may be the folder holding both or the HR
  folder itself.
* Benchmark style: ``Set5/HR/baby.png`` with ``Set5/LR_bicubic/X4/babyx4.png`` (or ``baby.png``).
* HR only: any of the above without its LR folder, or a plain folder of images. LR images are
  made with the MATLAB-compatible ``bicubic_downscale`` (as the benchmarks' were) and cached as
  PNG under ``cache_dir/X{scale}/``, named after the source file's path, size and mtime so an
  edited HR image is never paired with a stale LR one.

Training samples follow BasicSR's ``PairedImageDataset``: an aligned random crop (``patch_size``
LR pixels, ``patch_size * scale`` HR pixels) and one of the 8 dihedral transforms. Randomness
is a pure function of ``(seed, sample number)``: ``StepSampler`` hands every sample its global
number, so the data stream depends neither on the number of processes nor on DataLoader
workers, and resuming at step ``t`` needs nothing but ``t``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from lmfn_edge.datasets import images, layout, matched_pairs
from lmfn_edge.errors import UsageError
from lmfn_edge.files import atomic_write
from lmfn_edge.imresize import bicubic_downscale
from lmfn_edge.io import ImageError, image_size, load_image, save_image
from lmfn_edge.metrics import hwc_uint8_to_chw_float

__all__ = [
    "DataError",
    "ImagePair",
    "StepSampler",
    "hr_images",
    "TrainPatches",
    "ValImage",
    "dihedral",
    "find_pairs",
    "load_validation",
]


class DataError(UsageError, ValueError):
    """A data folder that cannot be used; the message is one line naming the file or folder."""


@dataclass(frozen=True)
class ImagePair:
    """An HR image and its LR image (given, or cached from the HR one)."""

    hr: Path
    lr: Path


def find_pairs(
    root: str | Path,
    scale: int,
    cache_dir: str | Path | None,
    min_lr_size: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = False,
) -> list[ImagePair]:
    """Pairs every HR image under ``root`` with its LR image, making missing LR images.

    Args:
        root: A dataset folder in one of the layouts of the module docstring.
        scale: SR scale; selects ``LR_bicubic/X{scale}``.
        cache_dir: Folder for LR images made from HR-only data (needed only then).
        min_lr_size: Smallest LR side accepted (the training patch size).
        shard: ``(rank, world_size)``: where in the list this process starts making missing
            LR images, so that processes started together share the work without talking.
        progress: Show a progress bar while LR images are made.

    Returns:
        The pairs, sorted by HR file name.

    Raises:
        DataError: On a missing or empty folder, an HR image without LR partner (or the reverse),
            an LR image of the wrong size, an image smaller than ``min_lr_size``, or an
            unreadable image.
    """
    hr_dir, lr_dir = layout(root, scale, DataError)
    hr_paths = images(hr_dir, DataError)
    if lr_dir is not None:
        pairs = [ImagePair(hr, lr) for hr, lr in matched_pairs(hr_paths, lr_dir, scale, DataError)]
    else:
        if not cache_dir:
            raise DataError(f"{hr_dir} has no LR_bicubic/X{scale} folder and no cache_dir was given")
        start = len(hr_paths) * shard[0] // shard[1]
        todo = hr_paths[start:] + hr_paths[:start]
        bar = tqdm(todo, desc=f"LR x{scale} cache", unit="img", disable=not progress, leave=False)
        made = {hr: _cached_lr(hr, scale, Path(cache_dir), min_lr_size) for hr in bar}
        pairs = [ImagePair(hr, made[hr]) for hr in hr_paths]
    for pair in pairs:
        _check_sizes(pair, scale, min_lr_size)
    return pairs


def hr_images(root: str | Path, scale: int) -> list[Path]:
    """The HR images that training on ``root`` at ``scale`` reads, in ``find_pairs``' order."""
    hr_dir, _ = layout(root, scale, DataError)
    return images(hr_dir, DataError)


def _size(path: Path) -> tuple[int, int]:
    """(height, width) as the image is loaded (EXIF rotation applied), from the header; the pixel
    limit of every command's image loader (``lmfn_edge.io``) applies."""
    try:
        w, h = image_size(path)
    except ImageError as exc:
        raise DataError(str(exc)) from None
    return h, w


def _check_sizes(pair: ImagePair, scale: int, min_lr_size: int) -> None:
    (hh, hw), (lh, lw) = _size(pair.hr), _size(pair.lr)
    if (lh, lw) != (hh // scale, hw // scale):
        raise DataError(
            f"{pair.lr} is {lw}x{lh}, but x{scale} LR of {pair.hr.name} ({hw}x{hh}) must be {hw // scale}x{hh // scale}"
        )
    if min(lh, lw) < min_lr_size:
        raise DataError(f"{pair.lr} is {lw}x{lh}, smaller than the {min_lr_size}px LR patch")


def _cache_name(src: Path, suffix: str) -> str:
    """A cache file name that changes when the source file is replaced or edited."""
    st = src.stat()
    key = hashlib.sha1(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return f"{src.stem}-{key}{suffix}"


def _cached_lr(hr: Path, scale: int, cache_dir: Path, min_lr_size: int) -> Path:
    path = cache_dir / f"X{scale}" / _cache_name(hr, ".png")
    if path.is_file():
        return path
    h, w = _size(hr)
    if min(h, w) // scale < min_lr_size:
        raise DataError(f"{hr} is {w}x{h}, smaller than the {min_lr_size}px LR patch at x{scale}")
    try:
        lr = bicubic_downscale(load_image(hr), scale)
    except ImageError as exc:
        raise DataError(str(exc)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(path, lr)  # atomic: concurrent ranks or an interrupted run never see half a file
    return path


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of an HxWxC array (BasicSR's hflip, vflip, transpose)."""
    if k & 1:
        img = img[:, ::-1]
    if k & 2:
        img = img[::-1]
    if k & 4:
        img = img.transpose(1, 0, 2)
    return img


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(hwc_uint8_to_chw_float(img))


class TrainPatches(Dataset):
    """Aligned random LR/HR patches with dihedral augmentation, indexed by (image, sample).

    ``__getitem__`` takes ``(image_index, sample)``, the pair ``StepSampler`` yields; the crop
    position and transform are drawn from ``numpy.random.default_rng((seed, sample))``.

    Decoding a whole 2K PNG for one 48 px patch dominates the cost of a sample; with
    ``decoded_dir`` each image is decoded once into an ``.npy`` file there (3 bytes a pixel)
    and patches are read through a memory map (BasicSR crops DIV2K into sub-images instead).
    """

    def __init__(
        self, pairs: list[ImagePair], scale: int, patch_size: int, seed: int, decoded_dir: Path | None = None
    ) -> None:
        self.pairs, self.scale, self.patch_size, self.seed = pairs, scale, patch_size, seed
        self.decoded: list[tuple[Path, Path]] | None = None
        if decoded_dir is not None:
            decoded_dir.mkdir(parents=True, exist_ok=True)
            self.decoded = [
                (decoded_dir / _cache_name(p.lr, ".npy"), decoded_dir / _cache_name(p.hr, ".npy")) for p in pairs
            ]

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        if self.decoded is None:
            return load_image(pair.lr), load_image(pair.hr)
        return tuple(_decoded(src, npy) for src, npy in zip((pair.lr, pair.hr), self.decoded[index]))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, sample = key
        s, p = self.scale, self.patch_size
        lr, hr = self._load(index)
        rng = np.random.default_rng((self.seed, sample))
        y = int(rng.integers(0, lr.shape[0] - p + 1))
        x = int(rng.integers(0, lr.shape[1] - p + 1))
        k = int(rng.integers(0, 8))
        lr = dihedral(lr[y : y + p, x : x + p], k)
        hr = dihedral(hr[y * s : (y + p) * s, x * s : (x + p) * s], k)
        return _to_tensor(lr), _to_tensor(hr)


def _decoded(src: Path, npy: Path) -> np.ndarray:
    if not npy.is_file():
        with atomic_write(npy, "wb") as f:  # workers racing on one image each write a whole file
            np.save(f, load_image(src))
    return np.load(npy, mmap_mode="r")


class StepSampler:
    """Endless batch sampler: step ``t`` is global samples ``t*B .. t*B+B-1``, split over ranks.

    Global sample ``g`` shows image ``perm_e[g % N]`` with ``e = g // N`` and ``perm_e`` a
    permutation seeded by ``(seed, e)``, so every image appears once per epoch. Each rank takes
    a contiguous ``B / world_size`` slice of every step, so a run on W processes sees the same
    samples per step as a run on one.
    """

    def __init__(
        self, num_images: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_step: int = 0
    ) -> None:
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} is not divisible by {world_size} processes")
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_rank = self.batch_size // self.world_size
        step = self.start_step
        while True:
            first = step * self.batch_size + self.rank * per_rank
            yield [(self.image_of(g), g) for g in range(first, first + per_rank)]
            step += 1

    def image_of(self, sample: int) -> int:
        epoch, pos = divmod(sample, self.num_images)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng((self.seed, epoch, 1)).permutation(self.num_images)
        return int(self._perm[pos])


@dataclass(frozen=True)
class ValImage:
    """A validation image: its name, LR input and HR target (cropped to ``scale`` * LR size)."""

    name: str
    lr: np.ndarray
    hr: np.ndarray


def load_validation(root: str | Path, scale: int, cache_dir: str | Path | None) -> list[ValImage]:
    """Loads a benchmark folder (``HR/`` + ``LR_bicubic/X{scale}/``, or HR-only) into memory.

    The HR image is cropped from the top-left to ``scale`` times the LR size, as the benchmark
    protocol does (docs/evaluation.md).
    """
    images = []
    for pair in find_pairs(root, scale, cache_dir):
        try:
            lr, hr = load_image(pair.lr), load_image(pair.hr)
        except ImageError as exc:
            raise DataError(str(exc)) from None
        hr = hr[: lr.shape[0] * scale, : lr.shape[1] * scale]
        images.append(ValImage(pair.hr.stem, lr, hr))
    return images
