"""The weights the package embeds: present for every scale, loadable, the paper's architecture,
and recorded with their training provenance (docs/model-card.md)."""

import numpy as np
import pytest
import torch

from lmfn_edge import create_model
from lmfn_edge.weights import default_weights_path, read_weights


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
