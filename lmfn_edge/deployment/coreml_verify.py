"""Checking a Core ML program against the eager model, on Linux too (``python -m lmfn_edge.verify_coreml``).

The converted program is evaluated op by op with numpy (:mod:`lmfn_edge.deployment.coreml_eval`) on real
images and compared with the eager PyTorch model in its training form (the grid_sample DSConv, not
the deploy form the converter saw), so one check covers the deploy rewrite, the conversion and
the weights. On macOS, Core ML's own ``predict()`` is compared with the evaluator as well.

Tolerances are data, with the measurements behind them in docs/coreml-verification.md:

* fp32 programs: max abs error <= 1e-4 on the raw outputs (measured <= 1.1e-6 full-size).
* fp16 programs: PSNR >= 50 dB on the raw outputs with peak 1, i.e. an RMS error of 0.8 of an
  8-bit level. The fp16 deploy form run by PyTorch scores ~75 dB against fp32, and so does the
  evaluator on the fp16 programs; a shifted pad or a wrong weight drops it below 40 dB. Errors
  smaller than fp16 noise (a pooling window, a dilation in a random-init model) pass this bound,
  so structure is proven on an fp32 export of the same weights.
* int8 (W8A8) programs: the same PSNR bound, against the q/dq program they were converted from
  (``export --target coreml --precision int8 --verify``): both compute on the same int8 grids,
  and only requantization rounding can move a value by one step.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import UsageError
from ..manifest import (
    DYNAMIC_MULTIPLE,
    MIN_DYNAMIC,
    Manifest,
    read_manifest,
    sidecar_path,
)
from ..metrics import hwc_uint8_to_chw_float, psnr_float
from ..model.weights import load_model, sha256_file
from ..registry import shipped
from .coreml_eval import MILEvaluator

FP32_MAX_ABS = 1e-4
FP16_MIN_PSNR = 50.0
DEFAULT_SIZE = 64  # LR side for flexible programs: big enough for MSM's 8x pooling, quick to evaluate
DEFAULT_PHOTOS = ("astronaut", "chelsea", "coffee")  # scikit-image photos held out from training


class VerificationError(UsageError, ValueError):
    """The check could not be run as asked (no usable image, mismatched model); one line."""


@dataclass
class ImageCheck:
    """One image: the evaluator against the eager model (and Core ML, on macOS)."""

    image: str
    lr_size: tuple[int, int]
    max_abs: float
    psnr: float
    psnr_y: float
    passed: bool
    coreml_max_abs: float | None = None
    coreml_psnr: float | None = None


@dataclass
class VerifyReport:
    model: str
    precision: str
    scale: int
    tolerance: str
    op_counts: dict[str, int]
    images: list[ImageCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.images) and all(c.passed for c in self.images)

    def to_dict(self) -> dict:
        """JSON-ready; an infinite PSNR (identical outputs) becomes ``null``."""
        d = dict(asdict(self), passed=self.passed)
        for c in d["images"]:
            c.update({k: None for k, v in c.items() if isinstance(v, float) and not math.isfinite(v)})
        return d

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.op_counts.items(), key=lambda kv: -kv[1]))
        lines = [
            f"{self.model}: x{self.scale} {self.precision} program; tolerance {self.tolerance}",
            f"  ops: {ops}",
        ]
        for c in self.images:
            line = (
                f"  {c.image}: {c.lr_size[0]}x{c.lr_size[1]}  max abs {c.max_abs:.2e}  "
                f"PSNR {c.psnr:.1f} dB  PSNR-Y(uint8) {c.psnr_y:.1f} dB"
            )
            if c.coreml_max_abs is not None:
                line += f"  | Core ML: max abs {c.coreml_max_abs:.2e}, PSNR {c.coreml_psnr:.1f} dB"
            lines.append(line + ("  ok" if c.passed else "  FAIL"))
        lines.append("PASS" if self.passed else "FAIL")
        return "\n".join(lines)


def within_tolerance(precision: str, max_abs: float, psnr: float) -> bool:
    """fp32: ``max_abs`` bound; fp16 and int8 (W8A8, against the q/dq program): PSNR bound."""
    return max_abs <= FP32_MAX_ABS if precision == "fp32" else psnr >= FP16_MIN_PSNR


def lr_size(evaluator: MILEvaluator, image_hw: tuple[int, int], size: int | None = None) -> tuple[int, int]:
    """The LR crop for an image: the program's fixed shape, or for a flexible program the largest
    multiple of 8 (export's grid) up to ``size`` that fits both the image and the range."""
    (spec,) = evaluator.input_specs.values()
    if spec.fixed is not None:
        return spec.fixed[2], spec.fixed[3]
    if spec.enumerated:
        fitting = [s for s in spec.enumerated if s[2] <= image_hw[0] and s[3] <= image_hw[1]]
        if not fitting:
            raise VerificationError(f"no enumerated shape of the program fits a {image_hw[0]}x{image_hw[1]} image")
        return max(fitting, key=lambda s: s[2] * s[3])[2:]
    out = []
    for dim, (lo, hi) in zip(image_hw, spec.bounds[2:]):
        top = min(size or DEFAULT_SIZE, dim, hi if hi is not None else dim)
        side = top - top % DYNAMIC_MULTIPLE
        if side < lo:
            raise VerificationError(
                f"a {image_hw[0]}x{image_hw[1]} image cannot give a crop in the program's range {spec.describe()}"
            )
        out.append(side)
    return out[0], out[1]


def _coreml_predictor(model: Any, precision: str):
    """Core ML's ``predict`` on macOS (CPU only for fp32, all units for fp16); ``None`` elsewhere."""
    if platform.system() != "Darwin":
        return None
    import coremltools as ct

    path = model if isinstance(model, (str, Path)) else getattr(model, "package_path", None)
    if path is None:  # a bare MIL program cannot be loaded by Core ML
        return None
    units = ct.ComputeUnit.CPU_ONLY if precision == "fp32" else ct.ComputeUnit.ALL
    return ct.models.MLModel(str(path), compute_units=units).predict


def verify(
    model: Any,
    reference: torch.nn.Module,
    images: Sequence[np.ndarray | str | Path],
    size: int | None = None,
    names: Sequence[str] | None = None,
) -> VerifyReport:
    """Compare a Core ML program with ``reference`` on ``images``.

    Args:
        model: The converted ``MLModel``, a path to an .mlpackage, or a MIL ``Program``.
        reference: The eager LMFN (training form) the program was exported from.
        images: HxWx3 uint8 RGB arrays or image paths; each is centre-cropped to the LR size
            (:func:`lr_size`).
        size: LR side for flexible programs (default 64, capped by the range and the image).
        names: Labels for array images in the report.

    Returns:
        The report; ``report.passed`` tells whether every image met the tolerance.
    """
    from ..io import load_image
    from ..metrics import psnr, tensor_to_uint8

    evaluator = MILEvaluator(model)
    if len(evaluator.input_specs) != 1 or len(evaluator.output_names) != 1:
        raise VerificationError("expected a program with one input and one output (an LMFN export)")
    (input_name,), (output_name,) = evaluator.input_specs, evaluator.output_names
    precision = evaluator.compute_precision
    scale = reference.config.scale
    tolerance = f"max abs <= {FP32_MAX_ABS:g}" if precision == "fp32" else f"PSNR >= {FP16_MIN_PSNR:g} dB"
    label = str(model) if isinstance(model, (str, Path)) else type(model).__name__
    report = VerifyReport(label, precision, scale, tolerance, dict(evaluator.op_counts))
    predict = _coreml_predictor(model, precision)
    if not images:
        raise VerificationError("no images to verify on")
    for i, item in enumerate(images):
        img = load_image(item) if isinstance(item, (str, Path)) else np.asarray(item)
        name = Path(item).name if isinstance(item, (str, Path)) else (names[i] if names else f"image {i}")
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise VerificationError(f"{name}: expected an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
        h, w = lr_size(evaluator, img.shape[:2], size)
        if h > img.shape[0] or w > img.shape[1]:
            raise VerificationError(f"{name} is {img.shape[0]}x{img.shape[1]}, smaller than the program's {h}x{w} input")
        top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        crop = img[top : top + h, left : left + w]
        x = hwc_uint8_to_chw_float(crop)[None]
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
        out = evaluator.predict({input_name: x})[output_name].astype(np.float32)
        if out.shape != ref.shape:
            raise VerificationError(
                f"the program maps {x.shape} to {out.shape} but the reference (x{scale}) gives {ref.shape}"
            )
        max_abs, psnr_raw = float(np.abs(out - ref).max()), psnr_float(out, ref)
        psnr_y = psnr(tensor_to_uint8(torch.from_numpy(out)), tensor_to_uint8(torch.from_numpy(ref)))
        check = ImageCheck(name, (h, w), max_abs, psnr_raw, psnr_y, within_tolerance(precision, max_abs, psnr_raw))
        if predict is not None:
            coreml = np.asarray(predict({input_name: x})[output_name], np.float32)
            check.coreml_max_abs = float(np.abs(coreml - out).max())
            check.coreml_psnr = psnr_float(coreml, out)
            check.passed &= within_tolerance(precision, check.coreml_max_abs, check.coreml_psnr)
        report.images.append(check)
    return report


def default_photos() -> tuple[list[np.ndarray], list[str]]:
    """scikit-image's held-out colour photos (see training/skimage_split.json)."""
    try:
        import skimage.data
    except ImportError:
        raise VerificationError("no --images given and scikit-image is not installed; pass --images PATHS") from None
    return [np.asarray(getattr(skimage.data, n)()) for n in DEFAULT_PHOTOS], list(DEFAULT_PHOTOS)


def reference_model(
    manifest: Manifest | None,
    weights: str | None = None,
    random_init: bool = False,
    scale: int | None = None,
    **overrides,
) -> torch.nn.Module:
    """The eager model a package is checked against.

    ``weights`` or ``random_init`` (rebuilt exactly as ``export --random-init`` built it: seed 0
    and the sidecar's architecture) when given; else the weights the sidecar records, if they
    are the embedded weights or a file whose SHA-256 still matches.
    """
    if random_init and weights:
        raise VerificationError("--random-init and --weights cannot be combined")
    if manifest is not None:
        if scale is not None and scale != manifest.scale:
            raise VerificationError(f"the package upscales x{manifest.scale}, but --scale {scale} was given")
        scale = manifest.scale
    if random_init:
        if manifest is not None:
            overrides = {**{k: v for k, v in manifest.config.items() if k != "scale"},
                         **{k: v for k, v in overrides.items() if v is not None}}
        elif scale is None:
            raise VerificationError("--random-init needs --scale (or the package's sidecar)")
        return load_model(scale, None, True, **overrides)[0]
    if not weights and manifest is not None:
        weights = _recorded_weights(manifest)
    if not weights:
        raise VerificationError("pass --weights W.safetensors (the exported weights) or --random-init")
    return load_model(scale, weights, False, **overrides)[0]


def _recorded_weights(manifest: Manifest) -> str | None:
    """The weights file a sidecar names, if it is still there with the same SHA-256."""
    source, sha = manifest.weights.get("source", ""), manifest.weights.get("sha256")
    if source.startswith("embedded:"):
        path = shipped(manifest.scale).weights_path
    elif source and Path(source).is_file():
        path = Path(source)
    else:
        return None
    return str(path) if sha and sha256_file(path) == sha else None


def verify_package(
    path: str | Path,
    weights: str | None = None,
    random_init: bool = False,
    scale: int | None = None,
    images: Sequence[str | Path] | None = None,
    size: int | None = None,
    **overrides,
) -> VerifyReport:
    """``python -m lmfn_edge.verify_coreml``: check an .mlpackage against its eager model.

    Args:
        path: The package; its sidecar (if any) is validated and gives the scale, the
            architecture and, by default, the weights.
        weights, random_init, scale, overrides: The reference model (:func:`reference_model`).
        images: Image files to check on (default: scikit-image's held-out photos).
        size: LR side for flexible-shape programs.
    """
    path = Path(path)
    if not path.exists():
        raise VerificationError(f"model not found: {path}")
    if size is not None and (size < MIN_DYNAMIC or size % DYNAMIC_MULTIPLE):
        raise VerificationError(f"--size must be a multiple of {DYNAMIC_MULTIPLE} and >= {MIN_DYNAMIC}, got {size}")
    manifest = read_manifest(path) if sidecar_path(path).exists() else None
    if manifest is not None and manifest.target != "coreml":
        raise VerificationError(f"{path} is a {manifest.target} artifact; verify_coreml checks Core ML packages")
    reference = reference_model(manifest, weights, random_init, scale, **overrides)
    if images:  # read now: an unreadable image is refused before the program is
        from ..io import load_image

        photos, names = [load_image(p) for p in images], [Path(p).name for p in images]
    else:
        photos, names = default_photos()
    return verify(path, reference, photos, size, names)
