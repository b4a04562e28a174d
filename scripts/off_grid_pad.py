"""What an int8 program's pad-and-crop changes off the int8 grid, measured in float.

    python scripts/off_grid_pad.py [--scale 4] [--shape 180x320] [photos ...]

An int8 program at a side that is not a multiple of 8 replicate-pads its input up to the grid
and crops its output (``lmfn_edge.deployment.pt2e.OnGrid``). This script runs the embedded
float model both ways on the top-left ``--shape`` crop of each photo (default: the held-out
photos) and prints PSNR-Y between the two saved (uint8) outputs, over the whole output and over
its last 16 HR rows, and the first HR row where any Y value differs by more than one level.
docs/quantization.md "Int8 shapes" quotes it.
"""

from __future__ import annotations

import argparse
import glob

import torch

from lmfn_edge.manifest import padded_side
from lmfn_edge.io import load_image
from lmfn_edge.metrics import psnr, rgb_to_y, tensor_to_uint8
from lmfn_edge.model.dsconv import replicate_pad
from lmfn_edge.model.weights import load_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--shape", default="180x320", help="LR HxW (default 180x320, a 720p x4 frame)")
    p.add_argument("photos", nargs="*", help="default: data/skimage/heldout/*.png data/corpus/heldout/*.png")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.shape.split("x"))
    photos = args.photos or sorted(glob.glob("data/skimage/heldout/*.png") + glob.glob("data/corpus/heldout/*.png"))
    model, _ = load_model(args.scale)
    s = args.scale
    print("| photo | PSNR-Y whole | PSNR-Y last 16 rows | first row with |dY| > 1 |\n|---|---:|---:|---:|")
    for path in photos:
        image = load_image(path)
        if image.shape[0] < h or image.shape[1] < w:
            continue
        x = torch.from_numpy(image[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255
        padded = replicate_pad(replicate_pad(x, 2, 0, padded_side(h) - h), 3, 0, padded_side(w) - w)
        with torch.no_grad():
            direct = tensor_to_uint8(model(x))
            on_grid = tensor_to_uint8(model(padded)[:, :, : s * h, : s * w])
        dy = abs(rgb_to_y(direct) - rgb_to_y(on_grid)).max(axis=1)
        first = next((i for i, d in enumerate(dy) if d > 1), "-")
        print(f"| {path.rsplit('/', 1)[-1]} | {psnr(direct, on_grid):.1f} | {psnr(direct[-16:], on_grid[-16:]):.1f} | "
              f"{first} of {s * h} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
