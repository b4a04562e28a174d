"""LMFN: Long-range Multi-scale Fusion Network (ICASSP 2025).

The backbone is LKDN (Xie et al., CVPRW 2023): a repeated input, a BSConvU head, building modules
in series whose outputs are fused by a 1x1 conv, and a pixel-shuffle upsampler. Each building
module is LKDN's distillation block with a placeholder cell, filled by one of

* ``L``: LKA, large kernel attention (paper eq. 1) -> LKA-M,
* ``M``: MSM, multi-scale modulation with dynamic snake convs (eqs. 2-5) -> MSM-M,
* ``I``: IFM, interactive fusion modulation built on IFF's merge-and-run (eqs. 6-10) -> IFM-M.

Choices where the paper is silent are listed, with reasons, in docs/architecture.md. Every module
here has a training form; `lmfn_edge.model.deploy.to_deploy` swaps in exact re-expressions that
lower to XNNPACK and Core ML, swapping child modules only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import CELLS, LMFNConfig, config_for, model_name
from .dsconv import DSConv

__all__ = ["CELLS", "LMFN", "LMFNConfig", "config_for", "model_name"]

# --- layers ---------------------------------------------------------------------------------


class BSConvU(nn.Module):
    """Blueprint separable conv: 1x1 pointwise (no bias) then a depthwise kxk conv (bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.dw = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


class RepeatedInputHead(BSConvU):
    """LKDN's head: the RGB input repeated ``num_in`` times along channels, then a BSConvU.

    Its deploy twin (:class:`lmfn_edge.model.deploy.HeadDeploy`) folds the repeat into the
    1x1 weights, since ``repeat`` falls out of the XNNPACK delegate.
    """

    def __init__(self, num_in: int, out_channels: int) -> None:
        super().__init__(3 * num_in, out_channels)
        self.num_in = num_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.repeat(1, self.num_in, 1, 1))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW map (LKDN applies nn.LayerNorm channels-last)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def split_channels(x: torch.Tensor, parts: int) -> list[torch.Tensor]:
    """Equal channel split by narrowing: slices delegate where split_with_sizes does not."""
    n = x.shape[1] // parts
    return [x.narrow(1, i * n, n) for i in range(parts)]


# --- cells ----------------------------------------------------------------------------------


class LKA(nn.Module):
    """LKDN's large kernel attention: u * DWDConv(DWConv(PWConv(u))) (paper eq. 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pw = nn.Conv2d(channels, channels, 1)
        self.dw = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.dwd = nn.Conv2d(channels, channels, 5, padding=6, dilation=3, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.pw(x))
        return x * (dilated_depthwise(self.dwd, y) if self.training else self.dwd(y))


def dilated_depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a depthwise conv with dilation d and 'same' padding, computed as a dense
    conv on the d x d interleaved sub-images of ``x`` when its sides are multiples of d.

    A dilated tap steps d pixels, so output pixel (d*i + a, d*j + b) only reads sub-image (a, b)
    (``pixel_unshuffle``), where the kernel is dense: the same products and sums, in the same
    order on channels-last maps. oneDNN's CPU kernels for dilated depthwise convs are slow; this
    form trains LKDN's 5x5 dilation-3 conv about 3x faster (docs/training.md, "Loop speed").
    Other shapes, and other convs, take ``conv`` itself.
    """
    d, (kh, kw) = conv.dilation[0], conv.kernel_size
    same = conv.padding == (d * (kh // 2), d * (kw // 2)) and conv.dilation == (d, d) and kh % 2 == kw % 2 == 1
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    if d == 1 or not (same and depthwise) or x.shape[-2] % d or x.shape[-1] % d:
        return conv(x)
    subs = d * d
    bias = conv.bias.repeat_interleave(subs) if conv.bias is not None else None
    y = F.conv2d(F.pixel_unshuffle(x, d), conv.weight.repeat_interleave(subs, 0), bias,
                 padding=(kh // 2, kw // 2), groups=conv.in_channels * subs)
    return F.pixel_shuffle(y, d)


class PoolDSConv(nn.Module):
    """One MSM level: max-pool by ``factor``, DSConv, nearest upsample back to the input size.

    Pooling windows are aligned to the top-left corner; a partial last window pools what it
    covers (ceil mode), so any size works, 1x1 included, and the result is cropped back.
    """

    def __init__(self, channels: int, factor: int, kernel_size: int, extend_scope: float, morph: int) -> None:
        super().__init__()
        self.factor = factor
        self.dsconv = DSConv(channels, channels, kernel_size, extend_scope, morph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        if f == 1:
            return self.dsconv(x)
        h, w = x.shape[2:]
        y = F.max_pool2d(x, f, f, ceil_mode=True)
        y = self.dsconv(y)
        y = y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
        return y[:, :, :h, :w]


class MSM(nn.Module):
    """Multi-scale modulation (paper eqs. 2-5): SAFMN's SAFM with per-level DSConvs.

    Level i works on the i-th quarter of the channels at 1/2^i resolution; level i uses DSConv
    morph ``i % 2`` so both orientations appear.
    """

    levels = 4

    def __init__(self, channels: int, kernel_size: int = 9, extend_scope: float = 1.0) -> None:
        super().__init__()
        part = channels // self.levels
        self.branches = nn.ModuleList(
            PoolDSConv(part, 2**i, kernel_size, extend_scope, i % 2) for i in range(self.levels)
        )
        self.fuse = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = split_channels(x, self.levels)
        y = torch.cat([b(p) for b, p in zip(self.branches, parts)], dim=1)
        return F.gelu(self.fuse(y)) * x


class IFF(nn.Module):
    """Interactive feature fusion (paper eqs. 6-8): two branches with merge-and-run mappings.

    Stage 1 runs LKA per branch, stage 2 MSM per branch; after each stage both branches add the
    average of the two stage inputs (Zhao et al.'s merge-and-run).
    """

    def __init__(self, channels: int, kernel_size: int = 9, extend_scope: float = 1.0) -> None:
        super().__init__()
        half = channels // 2
        self.lka_l, self.lka_m = LKA(half), LKA(half)
        self.msm_l = MSM(half, kernel_size, extend_scope)
        self.msm_m = MSM(half, kernel_size, extend_scope)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xl, xm = split_channels(x, 2)
        avg = (xl + xm) * 0.5
        zl, zm = self.lka_l(xl) + avg, self.lka_m(xm) + avg
        avg = (zl + zm) * 0.5
        yl, ym = self.msm_l(zl) + avg, self.msm_m(zm) + avg
        return self.proj(torch.cat([yl, ym], dim=1)) + x


class IFM(nn.Module):
    """Interactive fusion modulation (paper eqs. 9-10): gated IFF on a normalised input."""

    def __init__(self, channels: int, kernel_size: int = 9, extend_scope: float = 1.0) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.expand = nn.Conv2d(channels, channels * 2, 1)
        self.iff = IFF(channels, kernel_size, extend_scope)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = split_channels(self.expand(self.norm(x)), 2)
        return self.proj(x1 * self.iff(x2)) + x


def make_cell(kind: str, channels: int, config: LMFNConfig) -> nn.Module:
    if kind == "L":
        return LKA(channels)
    if kind == "M":
        return MSM(channels, config.kernel_size, config.extend_scope)
    if kind == "I":
        return IFM(channels, config.kernel_size, config.extend_scope)
    raise ValueError(f"unknown cell {kind!r}; expected one of {CELLS!r}")


# --- blocks ---------------------------------------------------------------------------------


class BuildingModule(nn.Module):
    """LKDN's distillation block (LKDB) with its attention replaced by ``cell`` (Fig. 2b)."""

    def __init__(self, channels: int, cell: nn.Module) -> None:
        super().__init__()
        dc = channels // 2
        self.c1_d = nn.Conv2d(channels, dc, 1)
        self.c1_r = BSConvU(channels, channels)
        self.c2_d = nn.Conv2d(channels, dc, 1)
        self.c2_r = BSConvU(channels, channels)
        self.c3_d = nn.Conv2d(channels, dc, 1)
        self.c3_r = BSConvU(channels, channels)
        self.c4 = BSConvU(channels, dc)
        self.c5 = nn.Conv2d(dc * 4, channels, 1)
        self.cell = cell
        self.c6 = nn.Conv2d(channels, channels, 1)
        self.norm = ChannelLayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, r1 = F.gelu(self.c1_d(x)), F.gelu(self.c1_r(x))
        d2, r2 = F.gelu(self.c2_d(r1)), F.gelu(self.c2_r(r1))
        d3, r3 = F.gelu(self.c3_d(r2)), F.gelu(self.c3_r(r2))
        r4 = F.gelu(self.c4(r3))
        t = self.c5(torch.cat([d1, d2, d3, r4], dim=1))
        t = self.norm(self.c6(self.cell(t)))
        return t + x


# --- network --------------------------------------------------------------------------------


class LMFN(nn.Module):
    """LMFN super-resolution network: RGB in [0, 1], shape (B, 3, H, W) -> (B, 3, sH, sW)."""

    def __init__(self, config: LMFNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LMFNConfig()
        ch = config.channels
        self.head = RepeatedInputHead(config.num_in, ch)
        self.blocks = nn.ModuleList(BuildingModule(ch, make_cell(kind, ch, config)) for kind in config.pattern)
        self.fuse = nn.Conv2d(ch * config.num_blocks, ch, 1)
        self.tail = BSConvU(ch, ch)
        self.upsample = nn.Conv2d(ch, 3 * config.scale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(config.scale)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        outs, y = [], feat
        for block in self.blocks:
            y = block(y)
            outs.append(y)
        # A one-input cat (num_blocks = 1) is a copy that XNNPACK refuses to delegate.
        y = self.tail(F.gelu(self.fuse(torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]))) + feat
        return self.shuffle(self.upsample(y))
