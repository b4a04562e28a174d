"""Where a dataset's images lie: the benchmark-folder layout that training, validation and
``evaluate`` read, and how an LR file is paired with its HR image.

Layouts (docs/evaluation.md): ``Set5/HR/baby.png`` with ``Set5/LR_bicubic/X4/babyx4.png`` (or
``baby.png``); DIV2K's ``DIV2K_train_HR/0001.png`` beside ``DIV2K_train_LR_bicubic/X4/0001x4.png``
(the root may be the folder holding both, or the HR folder); or a folder of HR images only, whose
LR images the caller makes with MATLAB bicubic.
"""

from __future__ import annotations

from pathlib import Path

from .io import IMAGE_EXTENSIONS, ImageError, list_images

__all__ = ["images", "layout", "matched_pairs", "pair_lr_images"]


def layout(root: str | Path, scale: int, error: type[Exception]) -> tuple[Path, Path | None]:
    """``(HR folder, LR folder or None)`` of a dataset root at ``scale``; ``error`` on a missing
    root, a root with several ``*_HR`` folders, or one with no images at all."""
    root = Path(root)
    if not root.is_dir():
        raise error(f"data folder not found: {root}")
    if (root / "HR").is_dir():
        hr_dir, lr_base = root / "HR", root / "LR_bicubic"
    else:
        named = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("_HR"))
        if len(named) > 1:
            raise error(f"{root} holds several HR folders ({', '.join(p.name for p in named)}); pass one")
        if named:
            hr_dir = named[0]
        elif images(root, error, must_exist=False):
            hr_dir = root
        else:
            raise error(f"{root} holds no images, no HR/ folder and no *_HR folder")
        # DIV2K_train_HR -> DIV2K_train_LR_bicubic; Set5/HR -> Set5/LR_bicubic
        if not hr_dir.name.endswith("HR"):
            return hr_dir, None
        lr_base = hr_dir.parent / (hr_dir.name[: -len("HR")] + "LR_bicubic")
    lr_dir = lr_base / f"X{scale}"
    return hr_dir, (lr_dir if lr_dir.is_dir() else None)


def images(folder: Path, error: type[Exception], must_exist: bool = True) -> list[Path]:
    """The images in ``folder``, sorted; ``error`` if it is not a folder or (``must_exist``) has none."""
    try:
        paths = list_images(folder)
    except ImageError as exc:
        raise error(str(exc)) from None
    if must_exist and not paths:
        raise error(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return paths


def matched_pairs(hr_paths: list[Path], lr_dir: Path, scale: int, error: type[Exception]) -> list[tuple[Path, Path]]:
    """Every HR image with its LR file in ``lr_dir``; ``error`` on an HR image without one or an
    LR file without its HR image."""
    pairs, missing, extra = pair_lr_images(hr_paths, images(lr_dir, error), scale)
    if missing:
        raise error(f"no LR image for {missing[0].name} in {lr_dir} (expected {missing[0].stem}x{scale}.png)")
    if extra:
        raise error(f"{len(extra)} LR image(s) in {lr_dir} have no HR image, e.g. {extra[0].name}")
    return pairs


def pair_lr_images(hr_paths: list[Path], lr_paths: list[Path], scale: int) -> tuple[list[tuple[Path, Path]], list[Path],
                                                                                    list[Path]]:
    """Match LR files to HR files by name, as DIV2K (``0001x4.png``) and benchmark copies
    (``baby.png`` or ``babyx4.png``) name them.

    Returns:
        ``(pairs, hr_without_lr, lr_without_hr)``; pairs follow ``hr_paths``' order.
    """
    by_stem = {p.stem: p for p in lr_paths}
    pairs, missing, used = [], [], set()
    for hr in hr_paths:
        stem = next((s for s in (f"{hr.stem}x{scale}", hr.stem) if s in by_stem), None)
        if stem is None:
            missing.append(hr)
            continue
        used.add(stem)
        pairs.append((hr, by_stem[stem]))
    return pairs, missing, [by_stem[s] for s in sorted(set(by_stem) - used)]
