"""DSConv: the gather-free deploy form against the grid_sample reference, and the reference
against plain convolution where their semantics coincide."""

import pytest
import torch
import torch.nn.functional as F

from lmfn_edge.model.dsconv import DSConv, DSConvDeploy, snake_matrix, tap_reach


def _random_dsconv(cin, cout, k, scope, morph, offset_std, seed=0):
    torch.manual_seed(seed)
    ds = DSConv(cin, cout, k, scope, morph)
    torch.nn.init.normal_(ds.offset_conv.weight, std=offset_std)
    torch.nn.init.normal_(ds.offset_conv.bias, std=offset_std)
    return ds.eval()


# fp32 rounding of a sum of ~K*C products of O(1) terms is ~1e-6; 1e-5 is the acceptance bound.
@pytest.mark.parametrize("morph", [0, 1])
@pytest.mark.parametrize("size", [(1, 12), (12, 1), (7, 33), (1, 1), (16, 16)])
@pytest.mark.parametrize("k,scope", [(9, 1.0), (5, 1.0), (3, 1.0), (9, 1.7)])
def test_deploy_matches_grid_sample(morph, size, k, scope):
    ds = _random_dsconv(6, 5, k, scope, morph, offset_std=0.5)
    x = torch.randn(3, 6, *size)
    with torch.no_grad():
        ref, dep = ds(x), DSConvDeploy(ds)(x)
    assert dep.shape == ref.shape == (3, 5, *size)
    assert (dep - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("morph", [0, 1])
def test_deploy_matches_in_tanh_saturation(morph):
    # Large offset weights drive tanh to +-1: displacements approach the reach bound, the case
    # where the hat sum must include the farthest shift.
    ds = _random_dsconv(4, 4, 9, 1.0, morph, offset_std=20.0)
    x = torch.randn(2, 4, 11, 13)
    with torch.no_grad():
        o = torch.tanh(ds.offset_conv(x))
        assert (o.abs() > 0.999).float().mean() > 0.5
        assert (DSConvDeploy(ds)(x) - ds(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("morph", [0, 1])
def test_zero_offsets_equal_plain_line_convolution(morph):
    torch.manual_seed(1)
    ds = DSConv(5, 7, 9, 1.0, morph).eval()  # offset_conv is zero-initialised
    x = torch.randn(2, 5, 10, 12)
    weight = ds.line_conv.weight  # (O, C, K, 1) for morph 0, (O, C, 1, K) for morph 1
    if morph == 0:  # taps along the width
        ref = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="replicate"), weight.reshape(7, 5, 1, 9), ds.line_conv.bias)
    else:  # taps along the height
        ref = F.conv2d(F.pad(x, (0, 0, 4, 4), mode="replicate"), weight.reshape(7, 5, 9, 1), ds.line_conv.bias)
    with torch.no_grad():
        assert (ds(x) - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("morph", [0, 1])
def test_gradients_reach_offset_channels(morph):
    ds = _random_dsconv(4, 4, 9, 1.0, morph, offset_std=0.3).train()
    x = torch.randn(2, 4, 9, 9)
    ds(x).square().sum().backward()
    per_channel = ds.offset_conv.weight.grad.abs().sum(dim=(1, 2, 3))
    centre = 9 // 2
    # Every tap's offset channel moves the output, the end taps included (DSCNet's ICCV release
    # left them un-accumulated and without gradient). The centre tap never moves: its channel is
    # unused by construction (d[c] = 0), as in DSCNet.
    assert all(per_channel[k] > 0 for k in range(9) if k != centre)
    assert per_channel[centre] == 0


def test_snake_matrix_accumulates_outwards():
    m = snake_matrix(5)
    o = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    # d[2] = 0; d[3] = o[3]; d[4] = o[3] + o[4]; d[1] = o[1]; d[0] = o[1] + o[0]
    assert m @ o == pytest.approx(torch.tensor([3.0, 2.0, 0.0, 8.0, 24.0]))
    assert tap_reach(5, 1.0) == [2, 1, 0, 1, 2]
    assert tap_reach(5, 0.5) == [1, 1, 0, 1, 1]


def test_rejects_even_kernel_and_bad_morph():
    with pytest.raises(ValueError, match="odd"):
        DSConv(4, 4, 8)
    with pytest.raises(ValueError, match="morph"):
        DSConv(4, 4, 9, morph=2)
