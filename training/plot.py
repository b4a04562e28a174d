"""A PNG of the training curves (loss, validation PSNR) drawn with Pillow alone.

Matplotlib is not a dependency of the package; two line charts do not justify one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from lmfn_edge.files import atomic_write

__all__ = ["plot_log"]

_W, _H, _PAD = 640, 220, 48
_BLUE, _RED, _ORANGE = (31, 119, 180), (214, 39, 40), (255, 160, 60)


def plot_log(records: list[dict[str, Any]], path: str | Path) -> None:
    """Draws training loss (log scale) and validation PSNR-Y against step into one PNG."""
    loss = [(r["step"], math.log10(r["loss"])) for r in records if "loss" in r and r["loss"] > 0]
    ema = [(r["step"], r["val_psnr_y"]) for r in records if "val_psnr_y" in r]
    raw = [(r["step"], r["val_psnr_y_raw"]) for r in records if "val_psnr_y_raw" in r]
    bicubic = next((r["bicubic_psnr_y"] for r in records if "bicubic_psnr_y" in r), None)
    img = Image.new("RGB", (_W, 2 * _H), "white")
    draw = ImageDraw.Draw(img)
    _panel(draw, 0, [(loss, _BLUE)], "train L1 loss (log10)")
    _panel(draw, _H, [(raw, _ORANGE), (ema, _RED)], "val PSNR-Y (dB): EMA red, raw orange", hline=bicubic)
    with atomic_write(path, "wb") as f:
        img.save(f, format="PNG")


def _panel(draw: ImageDraw.ImageDraw, top: int, series, title: str, hline: float | None = None) -> None:
    x0, y0, x1, y1 = _PAD, top + 24, _W - 16, top + _H - 28
    draw.rectangle((x0, y0, x1, y1), outline=(128, 128, 128))
    draw.text((x0, top + 6), title, fill="black")
    if hline is not None:
        draw.text((x1 - 150, top + 6), f"bicubic {hline:.2f} dB (grey)", fill=(100, 100, 100))
    points = [p for line, _ in series for p in line]
    if not points:
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points] + ([hline] if hline is not None else [])
    xlo, xhi = min(xs), max(max(xs), min(xs) + 1)
    ylo, yhi = min(ys), max(ys)
    if yhi - ylo < 1e-9:
        ylo, yhi = ylo - 0.5, yhi + 0.5

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + (x - xlo) / (xhi - xlo) * (x1 - x0), y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)

    if hline is not None:
        draw.line([at(xlo, hline), at(xhi, hline)], fill=(160, 160, 160))
    for line, color in series:
        if len(line) > 1:
            draw.line([at(x, y) for x, y in line], fill=color, width=2)
        for x, y in line[-1:]:
            px, py = at(x, y)
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=color)
    draw.text((4, y0), f"{yhi:.3g}", fill="black")
    draw.text((4, y1 - 10), f"{ylo:.3g}", fill="black")
    draw.text((x0, y1 + 6), f"{xlo}", fill="black")
    draw.text((x1 - 60, y1 + 6), f"step {xhi}", fill="black")
