"""The deploy form: an eval-mode LMFN whose every op lowers to XNNPACK and converts to Core ML.

:func:`to_deploy` returns a copy in which each training-time construct that a backend rejects is
replaced by an exact re-expression with the same parameters (parity is tested to 1e-5):

=============================  ================================================================
training form                  deploy form
=============================  ================================================================
``DSConv`` (grid_sample)       :class:`~lmfn_edge.model.dsconv.DSConvDeploy` (slices, convs, hat sum)
input ``repeat`` + 1x1 conv    one 1x1 conv on RGB (the repeated slices' weights summed)
channel ``LayerNorm``          mean 1x1 conv and subtract, variance 1x1 conv, rsqrt, dw affine
ceil-mode max-pool             replicate pad to a multiple of the window, then max_pool2d
nearest upsampling             rank-5 reshape, broadcast multiply by ones, reshape back
``PixelShuffle``               rank-5 reshape, permute, reshape
=============================  ================================================================

Export-friendliness lives here, in model code, rather than in export-time graph surgery.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .dsconv import DSConv, DSConvDeploy, replicate_pad
from .lmfn import LMFN, BSConvU, ChannelLayerNorm, PoolDSConv, RepeatedInputHead


class ChannelLayerNormDeploy(nn.Module):
    """Channel LayerNorm from 1x1 convs and elementwise ops (native_layer_norm is not delegated)."""

    def __init__(self, ln: ChannelLayerNorm) -> None:
        super().__init__()
        c = ln.weight.numel()
        # Means as C->1 convs and a broadcast subtract: a C->C centring conv would cost C^2 MACs
        # per pixel, as much as a full 1x1 layer.
        self.mean = nn.Conv2d(c, 1, 1, bias=False)
        self.mean.weight.data.fill_(1.0 / c)
        self.variance = nn.Conv2d(c, 1, 1)
        self.variance.weight.data.fill_(1.0 / c)
        self.variance.bias.data.fill_(ln.eps)  # eps rides in the bias: one node fewer
        self.affine = nn.Conv2d(c, c, 1, groups=c)
        self.affine.weight.data = ln.weight.data.clone().view(c, 1, 1, 1)
        self.affine.bias.data = ln.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.mean(x)
        return self.affine(d * torch.rsqrt(self.variance(d * d)))


class NearestUpsample(nn.Module):
    """Nearest upsampling by an integer ``factor`` as a broadcast: reshape, multiply by ones, reshape.

    XNNPACK has no nearest resize, and a depthwise ``ConvTranspose2d`` (the obvious exact
    re-expression) runs on its slow grouped-deconvolution path, several times slower than the
    broadcast (docs/architecture.md, "Deploy form"). Rank 5 keeps Core ML happy (the batch and
    channel axes are merged).
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("ones", torch.ones(1, 1, factor, 1, factor), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = self.factor
        return (x.reshape(b * c, h, 1, w, 1) * self.ones).reshape(b, c, h * f, w * f)


class PixelShuffleDeploy(nn.Module):
    """``PixelShuffle(factor)`` with rank-5 tensors (Core ML's limit; the batch and the output
    channels share one axis): reshape, one permute, reshape.

    A one-hot ``ConvTranspose2d`` computes the same, but XNNPACK runs it on its slow
    deconvolution path, about ten times slower than the permute (docs/architecture.md, "Deploy form").
    """

    def __init__(self, shuffle: nn.PixelShuffle) -> None:
        super().__init__()
        self.factor = shuffle.upscale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        r = self.factor
        y = x.reshape(b * (c // (r * r)), r, r, h, w).permute(0, 3, 1, 4, 2)
        return y.reshape(b, c // (r * r), h * r, w * r)


class PoolDSConvDeploy(nn.Module):
    """One MSM level with delegable pooling and upsampling (same result as :class:`PoolDSConv`)."""

    def __init__(self, level: PoolDSConv) -> None:
        super().__init__()
        self.factor = level.factor
        self.dsconv = DSConvDeploy(level.dsconv)
        self.up = NearestUpsample(self.factor) if self.factor > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        if f == 1:
            return self.dsconv(x)
        h, w = x.shape[2:]
        # Pad to the next multiple of f by replicating edges (this does not change a max, so it
        # equals ceil-mode pooling), pool, upsample, crop back. Slices are emitted only when
        # something is cut: a no-op slice becomes an alias node that splits the XNNPACK delegate.
        # Symbolic sizes must be multiples of 8 (lmfn_edge.manifest.DYNAMIC_MULTIPLE), so both amounts are provably 0.
        ph, pw = (-h) % f, (-w) % f
        y = replicate_pad(replicate_pad(x, 2, 0, ph), 3, 0, pw)
        y = self.up(self.dsconv(F.max_pool2d(y, f, f)))
        if ph:
            y = y.narrow(2, 0, h)
        if pw:
            y = y.narrow(3, 0, w)
        return y


class HeadDeploy(BSConvU):
    """:class:`~lmfn_edge.model.lmfn.RepeatedInputHead` without the repeat.

    ``x.repeat(1, n, 1, 1)`` followed by a 1x1 conv equals one 1x1 conv on RGB whose weight is
    the sum of the n repeated slices.
    """

    def __init__(self, head: RepeatedInputHead) -> None:
        w = head.pw.weight.data
        super().__init__(3, w.shape[0])
        self.pw.weight.data = w.view(w.shape[0], head.num_in, 3, 1, 1).sum(dim=1)
        self.dw.load_state_dict(head.dw.state_dict())


_SWAPS = {
    RepeatedInputHead: HeadDeploy,
    nn.PixelShuffle: PixelShuffleDeploy,
    PoolDSConv: PoolDSConvDeploy,
    DSConv: DSConvDeploy,
    ChannelLayerNorm: ChannelLayerNormDeploy,
}


def _swap_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        swap = _SWAPS.get(type(child))
        if swap is not None:
            setattr(module, name, swap(child))
        else:
            _swap_children(child)


def is_deployed(model: nn.Module) -> bool:
    """Whether ``model`` holds no module that :func:`to_deploy` would still swap."""
    return not any(type(m) in _SWAPS for m in model.modules())


@torch.no_grad()
def to_deploy(model: LMFN) -> LMFN:
    """Return an eval-mode deploy copy of ``model`` (the original is left untouched).

    The copy is the same :class:`~lmfn_edge.model.lmfn.LMFN` with child modules swapped for
    their deploy twins (``_SWAPS``); it computes the same function (max abs difference ~1e-6
    in fp32) with only ops that XNNPACK delegates and coremltools converts: no grid_sample,
    gather, layer_norm, adaptive or ceil-mode pooling, nearest upsampling, repeat, split or
    pixel_shuffle. Converting a deployed model again changes nothing.
    """
    if not isinstance(model, LMFN):
        raise TypeError(f"to_deploy expects an LMFN model, got {type(model).__name__}")
    deployed = copy.deepcopy(model).eval()
    _swap_children(deployed)
    for p in deployed.parameters():
        p.requires_grad_(False)
    return deployed
