"""The weights the package embeds: present for every scale, loadable, the paper's architecture,
and recorded with their training provenance (docs/model-card.md)."""

import json

import numpy as np
import pytest
import torch

from lmfn_edge import create_model
from lmfn_edge.imresize import bicubic_downscale, bicubic_upscale
from lmfn_edge.metrics import psnr, tensor_to_uint8
from lmfn_edge.model.weights import default_weights_path, read_weights


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_load_with_paper_config(scale):
    path = default_weights_path(f"lmfn_x{scale}")
    assert path.stat().st_size < 2 * 1024 * 1024
    _, config, meta = read_weights(path)
    assert (config.scale, config.channels, config.num_blocks, config.pattern, config.kernel_size) == (
        scale, 56, 8, "LMILMILM", 9)
    assert int(meta["training_steps"]) > 0 and "skimage" in meta["train_config"]
    model = create_model(f"lmfn_x{scale}", pretrained=True)
    assert not model.training
    from skimage.data import astronaut

    lr = torch.from_numpy(np.ascontiguousarray(astronaut()[:40, :48])).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sr = model(lr)
    assert sr.shape == (1, 3, 40 * scale, 48 * scale) and torch.isfinite(sr).all()


def test_pretrained_refuses_overrides():
    with pytest.raises(ValueError, match="overrides"):
        create_model("lmfn_x2", pretrained=True, channels=16)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_trained_on_the_training_split_only(scale):
    from training.skimage_photos import load_manifest

    _, _, meta = read_weights(default_weights_path(f"lmfn_x{scale}"))
    trained = {e["sha256"] for e in json.loads(meta["train_images"])}
    manifest = load_manifest()
    assert trained == {e["sha256"] for e in manifest["train"]}
    assert not trained & {e["sha256"] for e in manifest["heldout"]}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_beat_bicubic_on_a_held_out_photo(scale):
    # chelsea is held out (training/skimage_split.json). A 192 px crop (divisible by 2, 3 and 4)
    # of the cat's face and fur, downscaled with the MATLAB bicubic the benchmarks use.
    from skimage.data import chelsea

    hr = np.ascontiguousarray(chelsea()[60:252, 120:312])
    lr = bicubic_downscale(hr, scale)
    model = create_model(f"lmfn_x{scale}", pretrained=True)
    with torch.no_grad():
        sr = tensor_to_uint8(model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255))
    gain = psnr(sr, hr, crop_border=scale) - psnr(bicubic_upscale(lr, scale), hr, crop_border=scale)
    assert gain > 0.3, f"x{scale}: {gain:+.2f} dB over bicubic"
