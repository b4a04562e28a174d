"""PSNR/SSIM of every LMFN runtime on benchmark folders (``python -m lmfn_edge.evaluate``).

The protocol of the SR literature, as BasicSR scores it (docs/evaluation.md): LR images made by
MATLAB-style bicubic downscaling (given in ``LR_bicubic/X{scale}/`` or made here with
:func:`~lmfn_edge.imresize.bicubic_downscale`), PSNR and SSIM on the BT.601 Y channel of uint8
outputs with ``scale`` pixels cropped from every border. Methods:

* ``bicubic``: MATLAB bicubic upscaling, the baseline row of every SR table;
* ``eager`` / ``deploy``: the float model in its training / deploy form, on whole images;
* ``pte:PATH``: an ExecuTorch program (fp32 or int8), tiled exactly as on a phone;
* ``coreml:PATH``: a Core ML package (prediction needs macOS; skipped with a note elsewhere);
* ``qdq:VARIANT``: the q/dq program of an int8 variant of the shipped model (``int8``,
  ``int8-mixed``, ``int8-dynamic``) in PyTorch, at the default tile and overlap: what its .pte
  computes within rounding (the tests compare the two), without minutes of lowering.

Every method goes through :class:`~lmfn_edge.runtime.Upscaler`, so all share one uint8
conversion. The table's delta column is each method's PSNR minus the float model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .. import datasets
from ..checks import check_integer
from ..errors import UsageError
from ..imresize import bicubic_downscale, bicubic_upscale
from ..io import load_image, save_image
from ..manifest import package_versions, read_manifest
from ..metrics import psnr, ssim
from ..runtime import BackendError, Upscaler, eager_backend, load_backend

__all__ = ["EvalError", "EvalImage", "Method", "Report", "evaluate", "load_dataset", "parse_methods"]

KINDS = ("bicubic", "eager", "deploy", "pte", "coreml", "qdq")
FLOAT_KINDS = ("eager", "deploy")  # the reference for the delta column, first one present
CROP_SIDE = 96  # HR pixels of the side-by-side crops


class EvalError(UsageError, ValueError):
    """An evaluation that cannot run as asked; the message is one line."""


@dataclass(frozen=True)
class Method:
    """One row of the table: ``kind`` plus the artifact for ``pte``/``coreml``."""

    kind: str
    path: Path | None = None
    variant: str | None = None  # qdq: the int8 variant

    @property
    def label(self) -> str:
        if self.variant:
            return f"{self.kind}:{self.variant}"
        return f"{self.kind}:{self.path.name}" if self.path else self.kind


@dataclass(frozen=True)
class EvalImage:
    name: str
    lr: np.ndarray
    hr: np.ndarray


@dataclass
class Report:
    """Scores per method label and dataset: ``{"psnr", "ssim", "images": {name: {...}}}``."""

    scale: int
    crop: int
    datasets: dict[str, str]
    methods: list[Method]
    results: dict[str, dict[str, dict]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str | None:
        return next((m.label for m in self.methods if m.kind in FLOAT_KINDS and m.label in self.results), None)

    def delta(self, label: str, dataset: str) -> float | None:
        ref = self.reference
        if ref is None or label not in self.results:
            return None
        return self.results[label][dataset]["psnr"] - self.results[ref][dataset]["psnr"]

    def to_dict(self) -> dict:
        results = {
            label: {ds: {**scores, "delta_psnr": self.delta(label, ds)} for ds, scores in per.items()}
            for label, per in self.results.items()
        }
        return {
            "protocol": {"channel": "Y (BT.601, MATLAB rgb2ycbcr)", "crop_border": self.crop,
                         "lr": "MATLAB bicubic", "output": "uint8"},
            "scale": self.scale,
            "datasets": self.datasets,
            "methods": [{"label": m.label, "kind": m.kind, "path": str(m.path) if m.path else None} for m in self.methods],
            "reference": self.reference,
            "results": results,
            "skipped": self.skipped,
            "packages": package_versions(),
        }

    def markdown(self) -> str:
        """Rows = methods, per dataset PSNR (dB), SSIM and the PSNR delta to the float model."""
        ref = self.reference
        head = ["method"]
        for ds in self.datasets:
            head += [f"{ds} PSNR", f"{ds} SSIM"] + ([f"{ds} Δ dB"] if ref else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.methods:
            if m.label in self.skipped:
                continue
            row = [m.label]
            for ds in self.datasets:
                s = self.results[m.label][ds]
                row += [f"{s['psnr']:.2f}", f"{s['ssim']:.4f}"]
                if ref:
                    row.append("-" if m.label == ref else f"{self.delta(m.label, ds):+.2f}")
            lines.append("| " + " | ".join(row) + " |")
        notes = [f"\n{label}: skipped ({why})" for label, why in self.skipped.items()]
        return "\n".join(lines) + "".join(notes)


def parse_methods(text: str) -> list[Method]:
    """``bicubic,eager,deploy,pte:PATH,coreml:PATH`` (any subset, in table order).

    ``eager:W.safetensors`` (and ``deploy:W``) run other float weights than the default, so two
    sets of weights can stand in one table.
    """
    methods = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, path = item.partition(":")
        if kind not in KINDS:
            raise EvalError(f"unknown method {item!r}; use {', '.join(KINDS[:3])}, pte:PATH, coreml:PATH or "
                            "qdq:VARIANT")
        if kind in ("pte", "coreml") and not path:
            raise EvalError(f"method {item!r}: {kind} needs a path ({kind}:PATH)")
        if kind == "qdq":
            from ..deployment.variants import VARIANTS

            if path not in VARIANTS:
                raise EvalError(f"method {item!r}: qdq needs an int8 variant, one of {', '.join(VARIANTS)}")
            method = Method(kind, variant=path)
            if method in methods:
                raise EvalError(f"method {item!r} is listed twice")
            methods.append(method)
            continue
        if kind == "bicubic" and path:
            raise EvalError(f"method {item!r}: bicubic takes no path")
        method = Method(kind, Path(path) if path else None)
        if method in methods:
            raise EvalError(f"method {item!r} is listed twice")
        methods.append(method)
    if not methods:
        raise EvalError("no methods given")
    return methods


def load_dataset(folder: str | Path, scale: int) -> list[EvalImage]:
    """A benchmark folder: ``HR/`` with ``LR_bicubic/X{scale}/``, or HR images only.

    LR files are named like their HR image, optionally with an ``x{scale}`` suffix (Set5's
    ``babyx2.png``). HR images are cropped from the top-left to ``scale`` times the LR size;
    without LR images, the LR is made by MATLAB bicubic from the modcropped HR.
    """
    hr_dir, lr_dir = datasets.layout(folder, scale, EvalError)
    hr_paths = datasets.images(hr_dir, EvalError)
    if lr_dir is None:
        loaded = []
        for p in hr_paths:
            hr = load_image(p)
            if min(hr.shape[:2]) < scale:
                raise EvalError(f"{p} is {hr.shape[1]}x{hr.shape[0]}, smaller than the scale x{scale}: no LR image")
            lr = bicubic_downscale(hr, scale)
            loaded.append(EvalImage(p.stem, lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]))
        return loaded
    loaded = []
    for hr_path, lr_path in datasets.matched_pairs(hr_paths, lr_dir, scale, EvalError):
        hr, lr = load_image(hr_path), load_image(lr_path)
        if lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
            raise EvalError(f"{lr_path} is {lr.shape[1]}x{lr.shape[0]}, but x{scale} LR of {hr_path.name} "
                            f"({hr.shape[1]}x{hr.shape[0]}) must be {hr.shape[1] // scale}x{hr.shape[0] // scale}")
        loaded.append(EvalImage(hr_path.stem, lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]))
    return loaded


def _runner(method: Method, scale: int, model) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A short title for the crop panels and the function from LR to SR uint8 images."""
    if method.kind == "bicubic":
        return "bicubic", lambda lr: bicubic_upscale(lr, scale)
    if method.kind in FLOAT_KINDS:
        from ..model.deploy import to_deploy
        from ..model.weights import load_model

        if method.path is not None:
            model = load_model(scale, method.path)[0]
        net = model if method.kind == "eager" else to_deploy(model)
        return method.kind, Upscaler(eager_backend(net), tile=0).upscale
    if method.kind == "qdq":
        import torch

        from ..deployment.int8 import variant_program
        from ..manifest import DEFAULT_OVERLAP, DEFAULT_TILE, ShapeSpec
        from ..runtime.backends import Backend

        module = variant_program(method.variant, scale, ShapeSpec(DEFAULT_TILE, DEFAULT_TILE))[0].module()

        @torch.no_grad()
        def run(x: np.ndarray) -> np.ndarray:
            return module(torch.from_numpy(x)).numpy()

        backend = Backend(run, scale, f"qdq {method.variant}", tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP)
        return f"qdq {method.variant}", Upscaler(backend).upscale
    manifest = read_manifest(method.path)
    upscaler = Upscaler(load_backend(method.path, scale))  # tiles with the sidecar's overlap, as on device
    return f"{method.kind} {manifest.precision}", upscaler.upscale


def _check_artifact(method: Method, scale: int) -> None:
    """Fail before any work on a missing artifact or one of another scale."""
    if method.kind == "qdq":
        from ..registry import shipped

        shipped(scale).int8_path  # the shipped model of this scale has int8 parameters
        return
    if method.kind in FLOAT_KINDS:
        from ..model.weights import read_weights

        config = read_weights(method.path)[1]
        if config.scale != scale:
            raise EvalError(f"{method.path.name} holds x{config.scale} weights, but --scale {scale} was given")
        return
    if not method.path.exists():
        raise EvalError(f"{method.kind} artifact not found: {method.path}")
    manifest = read_manifest(method.path)
    if manifest.scale != scale:
        raise EvalError(f"{method.path.name} upscales x{manifest.scale}, but --scale {scale} was given")


def evaluate(
    data: list[str | Path],
    scale: int,
    methods: list[Method],
    model=None,
    crop: int | None = None,
    crops_dir: str | Path | None = None,
    progress: bool = True,
    weights: str | Path | None = None,
) -> Report:
    """Score ``methods`` on each folder of ``data``.

    Args:
        data: Benchmark folders (see :func:`load_dataset`).
        scale: Upscaling factor; artifacts of another scale are an error.
        methods: Rows, from :func:`parse_methods`.
        model: Float LMFN (training form) for ``eager``/``deploy``; when ``None`` and a float
            method is listed, ``weights`` (default: the embedded weights) is loaded.
        crop: Border pixels excluded from the metrics (default ``scale``).
        crops_dir: Where to save side-by-side crops, one PNG per image.
        progress: Show a progress bar.
        weights: Float weights to load when ``model`` is ``None``.
    """
    if scale not in (2, 3, 4):
        raise EvalError(f"scale must be 2, 3 or 4, got {scale}")
    crop = scale if crop is None else crop
    check_integer(crop, "--crop", 0, error=EvalError)
    if not methods:
        raise EvalError("no methods given")
    if any(m.kind in FLOAT_KINDS and m.path is None for m in methods) and model is None:
        from ..model.weights import load_model

        model = load_model(scale, weights)[0]
    if model is not None and model.config.scale != scale:
        raise EvalError(f"the float model upscales x{model.config.scale}, but --scale {scale} was given")
    for m in methods:
        if m.path is not None or m.kind == "qdq":
            _check_artifact(m, scale)
    names = [Path(d).name or str(d) for d in data]
    names = names if len(set(names)) == len(names) else [str(d) for d in data]
    sets = {name: load_dataset(d, scale) for name, d in zip(names, data)}
    for name, images in sets.items():
        small = next((im for im in images if min(im.hr.shape[:2]) <= 2 * crop), None)
        if small is not None:
            raise EvalError(f"{name}/{small.name} is {small.hr.shape[1]}x{small.hr.shape[0]}: nothing is left to score "
                            f"after cropping {crop} pixels from each border")
    report = Report(scale, crop, {n: str(d) for n, d in zip(names, data)}, methods)
    runners, titles = {}, {}
    for m in methods:
        try:
            titles[m.label], runners[m.label] = _runner(m, scale, model)
        except BackendError as exc:
            if m.kind != "coreml":
                raise
            report.skipped[m.label] = str(exc)
    shared = {t for t in titles.values() if list(titles.values()).count(t) > 1}
    for m in methods:  # two int8 programs (QAT, PTQ) or two weights need their file names
        if titles.get(m.label) in shared:
            titles[m.label] = m.path.stem if m.path else m.kind
    total = sum(len(images) for images in sets.values()) * len(runners)
    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True)
    for ds, images in sets.items():
        per = {label: {} for label in runners}
        for img in images:
            outputs = {}
            for label, run in runners.items():
                bar.set_description(f"{ds} {label}")
                sr = run(img.lr)
                per[label][img.name] = {"psnr": psnr(sr, img.hr, crop), "ssim": ssim(sr, img.hr, crop)}
                outputs[label] = sr
                bar.update()
            if crops_dir is not None:
                (Path(crops_dir) / ds).mkdir(parents=True, exist_ok=True)
                panels = {titles[label]: out for label, out in outputs.items()}
                if "bicubic" not in panels:
                    panels["bicubic"] = bicubic_upscale(img.lr, scale)
                save_image(Path(crops_dir) / ds / f"{img.name}.png", side_by_side(panels, img.hr))
        for label, scores in per.items():
            report.results.setdefault(label, {})[ds] = {
                "psnr": float(np.mean([s["psnr"] for s in scores.values()])),
                "ssim": float(np.mean([s["ssim"] for s in scores.values()])),
                "images": scores,
            }
    bar.close()
    return report


def side_by_side(outputs: dict[str, np.ndarray], hr: np.ndarray, side: int = CROP_SIDE) -> np.ndarray:
    """The same centre window of bicubic, every other output and the ground truth, titled."""
    from PIL import Image, ImageDraw

    outputs = {"bicubic": outputs["bicubic"], **outputs}  # bicubic first, the rest in table order
    h, w = hr.shape[:2]
    ch, cw = min(side, h), min(side, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    panels = [(title, out[y : y + ch, x : x + cw]) for title, out in outputs.items()] + [("HR", hr[y : y + ch, x : x + cw])]
    label_h, gap = 14, 4
    panel_w = max([cw] + [6 * len(title) + 4 for title, _ in panels])  # PIL's default font: 6 px a character
    canvas = Image.new("RGB", (len(panels) * (panel_w + gap) - gap, ch + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (title, pixels) in enumerate(panels):
        left = i * (panel_w + gap)
        canvas.paste(Image.fromarray(np.ascontiguousarray(pixels)), (left, label_h))
        draw.text((left + 2, 1), title, fill="black")
    return np.asarray(canvas)
