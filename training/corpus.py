"""python -m training.corpus: the open photo corpus of the default weights, from Debian packages.

No data set can be downloaded where this project trains, but Debian's wallpaper packages hold
openly licensed photographs. The corpus takes four packages, and only these:

    lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, plasma-workspace-wallpapers, ukui-wallpapers

(``apt-get download`` then ``dpkg-deb -x``; no root needed), plus scikit-image's training side
(training/skimage_split.json). ``training/corpus.json`` is the manifest: for every picture in
the packages, one entry that keeps it (a photograph: ``photos``) or drops it (``dropped``, with
the reason); per kept photo the source package and file, the licence the package's copyright
file gives it, the attribution, the SHA-256 of its decoded pixels and of the PNG written, and
its side of the fixed split. ``build`` refuses a photo whose pixels differ from the manifest.

One file per picture: Plasma ships most wallpapers at several sizes (and some in a dark
variant); the largest light one is the picture, the rest are dropped as copies. Photographs are
kept, flat graphics (vector art, gradients, renders) dropped: the decision was made by looking
at every picture, and ``survey`` prints the measurement that backs it, the fraction of 16x16
luma blocks with a standard deviation above 4 (``textured``), which is high for photographs'
texture and noise and low for the flat areas of graphics. docs/model-card.md lists the corpus.

Photos are converted to RGB PNG, and those larger than DIV2K's 2040 px on their long side are
downscaled to it with the MATLAB-compatible bicubic (``lmfn_edge.imresize``): a 5 K wallpaper
is a soft, JPEG-compressed image per pixel, and at 2 K it is closer to the clean HR images the
recipe (and the benchmarks' bicubic LR) assumes.

    python -m training.corpus build data/corpus        # data/corpus/{train,heldout}/*.png
    python -m training.corpus survey data/corpus        # every picture, its texture, its fate
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmfn_edge import cli
from lmfn_edge.errors import LmfnEdgeError
from lmfn_edge.files import check_output
from lmfn_edge.io import image_size, load_image, save_image

from .skimage_photos import load_manifest as load_skimage_manifest
from .skimage_photos import photo, pixel_sha256, write_and_report

__all__ = ["MANIFEST", "PACKAGES", "CorpusError", "build", "candidates", "license_of", "load_manifest", "textured"]

PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "plasma-workspace-wallpapers", "ukui-wallpapers")
MANIFEST = Path(__file__).with_name("corpus.json")
MAX_SIDE = 2040
# Validation during training (a progress monitor, never a result): centre crops of the most
# textured training photos, so choices made on it never look at held-out pixels.
VAL_PHOTOS, VAL_CROP = 4, 384
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class CorpusError(LmfnEdgeError):
    """A package that cannot be fetched, or a picture that differs from the manifest."""


@dataclass(frozen=True)
class Candidate:
    """One image file a package ships."""

    package: str
    file: str  # path inside the package, e.g. usr/share/backgrounds/x.jpg
    width: int
    height: int

    @property
    def picture(self) -> str:
        """The picture a file shows: Plasma's wallpaper folder, else the file name."""
        parts = self.file.split("/")
        if "wallpapers" in parts and "contents" in parts:
            return parts[parts.index("contents") - 1]
        return Path(self.file).stem


def load_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def fetch(work: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Download (once) and unpack each package under ``work``; returns the unpacked roots."""
    debs, roots = work / "debs", {}
    debs.mkdir(parents=True, exist_ok=True)
    for package in packages:
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            result = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
            found = sorted(debs.glob(f"{package}_*.deb"))
            if result.returncode != 0 or not found:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise CorpusError(f"apt-get download {package} failed: {last}")
        root = work / "unpacked" / package
        if not root.is_dir():
            tmp = root.with_name(root.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            result = subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tmp)], capture_output=True, text=True)
            if result.returncode != 0:
                raise CorpusError(f"dpkg-deb -x {found[-1].name} failed: {result.stderr.strip()[:200]}")
            tmp.rename(root)
        roots[package] = root
    return roots


def candidates(package: str, root: Path) -> list[Candidate]:
    """Every image file of an unpacked package (documentation and previews included)."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()):
        width, height = image_size(path)  # the header, with every command's pixel limit
        out.append(Candidate(package, path.relative_to(root).as_posix(), width, height))
    return out


def license_of(copyright_text: str, file: str) -> tuple[str, str]:
    """(licence, copyright holders) of ``file`` by a DEP-5 copyright file: the last stanza whose
    ``Files`` patterns match the file. Patterns name upstream paths (``16.04/x.jpg``) where the
    package installs ``usr/share/backgrounds/x.jpg``, so a pattern's file name matches too."""
    found = ("", "")
    for stanza in copyright_text.split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        patterns = fields.get("Files", "").split()
        if not patterns or "License" not in fields:
            continue
        if any(p == "*" or fnmatch.fnmatch(file, "*/" + p) or Path(file).name == Path(p).name for p in patterns):
            found = (fields["License"].split()[0], fields.get("Copyright", ""))
    return found


def textured(img: np.ndarray, block: int = 16, threshold: float = 4.0) -> float:
    """Fraction of ``block``-pixel luma blocks whose standard deviation exceeds ``threshold``,
    measured at most 1024 px wide (flat graphics: low; photographs' texture and noise: high)."""
    luma = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    step = max(1, int(np.ceil(max(luma.shape) / 1024)))
    luma = luma[::step, ::step]
    h, w = (luma.shape[0] // block) * block, (luma.shape[1] // block) * block
    blocks = luma[:h, :w].reshape(h // block, block, w // block, block).std(axis=(1, 3))
    return float((blocks > threshold).mean())


def to_training_size(img: np.ndarray) -> np.ndarray:
    """A picture with its long side at most :data:`MAX_SIDE` (MATLAB bicubic, uint8)."""
    from lmfn_edge.imresize import imresize_uint8

    side = max(img.shape[:2])
    return img if side <= MAX_SIDE else imresize_uint8(img, MAX_SIDE / side)


def build(out_dir: Path, work: Path, manifest: dict | None = None, progress: bool = True,
          suffix: str = ".png") -> dict[str, list[Path]]:
    """Write ``out_dir/train`` (corpus photos and scikit-image's training side),
    ``out_dir/heldout`` (the held-out corpus photos) and ``out_dir/val`` (centre crops of the
    :data:`VAL_PHOTOS` most textured training photos, for validation during training) as RGB
    PNG (``suffix=".webp"``: lossless WebP, the same pixels in 30 % fewer bytes, for carrying
    the corpus to a leased machine); returns the paths written.

    Raises:
        CorpusError: A package cannot be fetched, a listed file is missing, or its pixels, its
            licence or the written PNG differ from the manifest.
    """
    from tqdm import tqdm

    manifest = manifest or load_manifest()
    roots = fetch(work, tuple(manifest["packages"]))
    written: dict[str, list[Path]] = {"train": [], "heldout": [], "val": []}
    monitors = {e["name"] for e in sorted((e for e in manifest["photos"] if e["split"] == "train"),
                                          key=lambda e: -e["textured"])[:VAL_PHOTOS]}
    for side in written:
        (out_dir / side).mkdir(parents=True, exist_ok=True)
    for entry in tqdm(manifest["photos"], desc="corpus photos", unit="img", disable=not progress):
        root = roots[entry["package"]]
        source = root / entry["file"]
        if not source.is_file():
            raise CorpusError(f"{entry['package']} no longer ships {entry['file']}")
        licence, _ = license_of((root / manifest["packages"][entry["package"]]["copyright"]).read_text(), entry["file"])
        if licence != entry["license"]:
            raise CorpusError(f"{entry['file']}: the package's copyright file now says {licence!r}, the manifest "
                              f"{entry['license']!r}")
        img = load_image(source)
        if pixel_sha256(img) != entry["source_sha256"]:
            raise CorpusError(f"{entry['package']}/{entry['file']}: pixels differ from the manifest (sha256 "
                              f"{pixel_sha256(img)[:12]}); refusing to train on another picture")
        out = to_training_size(img)
        if pixel_sha256(out) != entry["sha256"]:
            raise CorpusError(f"{entry['name']}: the resized picture differs from the manifest (another imresize?)")
        path = out_dir / entry["split"] / f"{entry['name']}{suffix}"
        save_image(path, out, lossless=True)
        written[entry["split"]].append(path)
        if entry["name"] in monitors:
            y, x = ((side - VAL_CROP) // 2 for side in out.shape[:2])
            path = out_dir / "val" / f"{entry['name']}{suffix}"
            save_image(path, np.ascontiguousarray(out[y : y + VAL_CROP, x : x + VAL_CROP]), lossless=True)
            written["val"].append(path)
    for entry in load_skimage_manifest()["train"]:
        img = photo(entry["name"])
        if pixel_sha256(img) != entry["sha256"]:
            raise CorpusError(f"skimage.data.{entry['name']} differs from training/skimage_split.json")
        path = out_dir / "train" / f"skimage_{entry['name']}{suffix}"
        save_image(path, img, lossless=True)
        written["train"].append(path)
    return written


def survey(work: Path, manifest: dict | None = None) -> list[dict]:
    """Every image file of the packages, its texture measure and what the manifest does with it."""
    manifest = manifest or load_manifest()
    fate = {(e["package"], e["file"]): f"kept ({e['split']})" for e in manifest["photos"]}
    fate.update({(e["package"], e["file"]): f"dropped ({e['reason']})" for e in manifest["dropped"]})
    rows = []
    for package, root in fetch(work, tuple(manifest["packages"])).items():
        for c in candidates(package, root):
            img = load_image(root / c.file)
            rows.append({"package": package, "file": c.file, "picture": c.picture, "size": f"{c.width}x{c.height}",
                         "textured": round(textured(img), 3), "fate": fate.get((package, c.file), "NOT IN MANIFEST")})
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("training.corpus", "Build the open photo corpus (Debian wallpaper packages + scikit-image).")
    p.add_argument("action", choices=("build", "survey"), help="build: write train/ and heldout/; survey: list "
                                                                "every picture with its texture and fate")
    p.add_argument("output", type=Path, help="folder for train/, heldout/ and the packages (under packages/)")
    p.add_argument("--work", type=Path, help="where packages are downloaded and unpacked (default OUTPUT/packages)")
    p.add_argument("--format", choices=("png", "webp"), default="png",
                   help="png, or lossless webp (the same pixels, 30%% smaller: for carrying the corpus to a GPU)")
    cli.add_progress(p)
    return p


def _run(args: argparse.Namespace) -> int:
    work = args.work or args.output / "packages"
    # The packages are read from WORK: the corpus may hold it (the default), not live inside it.
    check_output(args.output, inputs=(args.work,), folder=True, flag="OUTPUT", inside_inputs=False)
    if args.action == "survey":
        for row in survey(work):
            print(f"{row['textured']:.3f}  {row['size']:>9}  {row['fate']:<28} {row['package']}/{row['file']}")
        return 0
    return write_and_report(lambda: build(args.output, work, progress=not args.no_progress, suffix=f".{args.format}"),
                            args.output)


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
