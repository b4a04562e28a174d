"""The LMFN network: variants, config validation, shapes, and the LKDN special case."""

import pytest
import torch

from lmfn_edge import LMFNConfig, create_model
from lmfn_edge.model import LMFN

TINY = dict(channels=16, num_blocks=3, pattern="LMI", kernel_size=5)


@pytest.mark.parametrize("name,scale", [("lmfn_x2", 2), ("lmfn_x3", 3), ("lmfn_x4", 4)])
def test_variants_and_odd_sizes(name, scale):
    model = create_model(name, **TINY).eval()
    assert model.scale == scale
    for h, w in [(37, 51), (1, 1), (8, 3)]:
        with torch.no_grad():
            y = model(torch.rand(2, 3, h, w))
        assert y.shape == (2, 3, h * scale, w * scale)
        assert torch.isfinite(y).all()


def test_lkdn_parameter_counts():
    # "LLLLLLLL" is exactly LKDN; these totals were computed from the official LKDN code
    # (architecture-facts.md section 2.5), independently of this implementation.
    expected = {"lmfn_x2": 303_812, "lmfn_x3": 311_387, "lmfn_x4": 321_992}
    for name, n in expected.items():
        model = create_model(name, pattern="LLLLLLLL")
        assert sum(p.numel() for p in model.parameters()) == n


@pytest.mark.parametrize("pattern", ["LLLLLLLL", "MMMMMMMM", "LMLMLMLM", "IIIIIIII", "LMILMILM"])
def test_ablation_patterns_build_and_run(pattern):
    model = create_model("lmfn_x2", channels=16, pattern=pattern, kernel_size=3).eval()
    cells = {"L": "LKA", "M": "MSM", "I": "IFM"}
    assert [type(b.cell).__name__ for b in model.blocks] == [cells[c] for c in pattern]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 9, 10)).shape == (1, 3, 18, 20)


def test_default_config_is_the_paper_setting():
    cfg = create_model("lmfn_x4").config
    assert (cfg.channels, cfg.num_blocks, cfg.pattern, cfg.kernel_size, cfg.extend_scope) == (
        56, 8, "LMILMILM", 9, 1.0)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown model"):
        create_model("lmfn_x5")
    with pytest.raises(ValueError, match="scale"):
        create_model("lmfn_x2", scale=4)
    with pytest.raises(ValueError, match="pattern"):
        LMFNConfig(pattern="LMX", num_blocks=3)
    with pytest.raises(ValueError, match="divisible"):
        LMFNConfig(channels=20, pattern="LLLLLLLI")
    with pytest.raises(ValueError, match="unknown LMFNConfig"):
        LMFNConfig.from_dict({"scale": 2, "depth": 3})


def test_config_round_trip():
    cfg = LMFNConfig(scale=3, channels=16, num_blocks=2, pattern="MI", kernel_size=5)
    assert LMFNConfig.from_dict(cfg.to_dict()) == cfg
    assert LMFN(cfg).config is cfg


def test_untrained_msm_dsconv_starts_as_line_kernel():
    model = create_model("lmfn_x2", **TINY)
    offsets = [m.offset_conv for m in model.modules() if hasattr(m, "offset_conv")]
    assert offsets and all(o.weight.abs().sum() == 0 and o.bias.abs().sum() == 0 for o in offsets)
