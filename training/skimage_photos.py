"""The project's offline training/evaluation photos: scikit-image's bundled images, split once.

No data set can be downloaded here, so the embedded default weights are trained on the photos
that ship inside scikit-image. The split lives in ``skimage_split.json`` beside this file:
``train`` images feed training only, ``heldout`` colour photographs are only ever evaluated.
The two motorcycle views are nearly the same scene, so both sit on the training side.

``python -m training.skimage_photos OUTPUT_DIR`` writes ``OUTPUT_DIR/train/*.png`` and
``OUTPUT_DIR/heldout/*.png`` (RGB; grayscale photos replicated to three channels) and checks
every file against the SHA-256 recorded in the manifest, so a changed scikit-image release is
caught instead of silently training on different pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from lmfn_edge import cli
from lmfn_edge.errors import LmfnEdgeError, UsageError
from lmfn_edge.files import check_output

MANIFEST = Path(__file__).with_name("skimage_split.json")


def load_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text())


def photo(name: str) -> np.ndarray:
    """An image from ``skimage.data`` as HxWx3 uint8 RGB."""
    import skimage.data

    if name.startswith("stereo_motorcycle_"):  # one call returns (left, right, disparity)
        img = np.asarray(skimage.data.stereo_motorcycle()[0 if name.endswith("left") else 1])
    else:
        img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.dtype != np.uint8:
        raise ValueError(f"skimage.data.{name} is {img.dtype}, expected uint8")
    return np.ascontiguousarray(img)


def pixel_sha256(img: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr(img.shape).encode())
    h.update(img.tobytes())
    return h.hexdigest()


class PhotoMismatch(LmfnEdgeError):
    """A bundled photo whose pixels differ from the manifest (another scikit-image release)."""


def write_split(output: Path, manifest: dict | None = None) -> dict[str, list[Path]]:
    """Write the split as PNGs; raises PhotoMismatch if a photo's pixels differ from the manifest."""
    from lmfn_edge.io import save_image

    manifest = manifest or load_manifest()
    written: dict[str, list[Path]] = {}
    for side in ("train", "heldout"):
        folder = output / side
        folder.mkdir(parents=True, exist_ok=True)
        written[side] = []
        for entry in manifest[side]:
            img = photo(entry["name"])
            digest = pixel_sha256(img)
            if digest != entry["sha256"]:
                raise PhotoMismatch(f"skimage.data.{entry['name']} differs from the manifest (sha256 {digest[:12]})")
            path = folder / f"{entry['name']}.png"
            save_image(path, img)
            written[side].append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.skimage_photos", "Write scikit-image's bundled photos as the fixed train/heldout split.")
    p.add_argument("output", type=Path, help="folder to write train/ and heldout/ into")
    return p


def write_and_report(write, output: Path) -> int:
    """Run ``write()`` (it writes ``train/`` and ``heldout/`` under ``output`` and returns the
    paths per side) and print a line per side; without scikit-image, a one-line error."""
    try:
        written = write()
    except ImportError as exc:
        raise UsageError(f"scikit-image is required ({exc}); pip install scikit-image") from None
    for side, paths in written.items():
        print(f"{side}: {len(paths)} images in {output / side}")
    return 0


def _run(args: argparse.Namespace) -> int:
    check_output(args.output, folder=True, flag="OUTPUT")
    return write_and_report(lambda: write_split(args.output), args.output)


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
