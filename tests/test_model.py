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


@pytest.mark.parametrize("channels_last", [False, True])
def test_dilated_depthwise_on_sub_images_matches_the_dilated_conv(channels_last):
    # Training computes LKA's dilated conv on the 3x3 interleaved sub-images; the reference is
    # torch's own dilated conv. Same products and sums, so float32 agrees to a few ulps; the
    # gradients of input, weight and bias too. 24x30 keeps the sides multiples of 3; 25x30 is not
    # and must take the conv itself.
    from lmfn_edge.model.lmfn import dilated_depthwise

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 6, 5, padding=6, dilation=3, groups=6)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for h in (24, 25):
        x = torch.randn(2, 6, h, 30).contiguous(memory_format=fmt)
        grad = torch.randn(2, 6, h, 30)
        outs = []
        for fn in (conv, lambda t: dilated_depthwise(conv, t)):
            conv.zero_grad()
            xi = x.clone().requires_grad_()
            y = fn(xi)
            y.backward(grad)
            outs.append((y.detach(), xi.grad, conv.weight.grad.clone(), conv.bias.grad.clone()))
        for ref, got in zip(*outs):
            # The weight and bias gradients sum 2 x 24 x 30 products each, in another order on
            # each kernel (oneDNN's channels-last path on an AVX512 machine differs from AVX2's),
            # so their float32 error scales with the tensor's largest value, not each element's.
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, ref.abs().max().item()))


def test_lka_trains_with_the_sub_image_form_and_evaluates_with_the_conv():
    from lmfn_edge.model.lmfn import LKA

    torch.manual_seed(0)
    lka = LKA(8)
    x = torch.randn(1, 8, 27, 21)
    with torch.no_grad():
        trained, evaluated = lka.train()(x), lka.eval()(x)
    torch.testing.assert_close(trained, evaluated, rtol=1e-5, atol=1e-5)
