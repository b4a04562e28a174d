"""Dynamic snake convolution (DSConv) and its exportable reformulation.

Follows Qi et al., "Dynamic Snake Convolution based on Topological Geometric Constraints for
Tubular Structure Segmentation" (ICCV 2023), with the semantics of the authors' later
``DSConv_pro``: cumulative offsets including the end taps, border-clamped bilinear sampling,
correct for any batch size. Project deviations (see docs/architecture.md): no normalisation of
offsets or outputs (GroupNorm over H, W would make every output pixel depend on the whole image
and break tiled inference) and only the ``K`` offsets of the used axis are predicted.

Two forward paths share one set of parameters:

* :class:`DSConv` (training) samples with ``grid_sample``; it is the reference.
* :class:`DSConvDeploy` (export) never gathers. The displaced coordinate is ``p + d`` with ``p``
  an integer and ``|d| < reach``, so bilinear sampling equals ``sum_t hat(d - t) * f(p + t)``
  over integer shifts ``t`` on a replicate-padded map (``hat(u) = max(0, 1 - |u|)``). The
  hat weights of all (shift, tap) pairs come from one 1x1 conv (snake accumulation, scope and
  shift folded into its weights); tap copies are stacked on the batch axis so every term is a
  per-pixel scalar times a feature map; one 1x1 conv applies the line kernel at the end.
  Everything is conv, slice, cat, reshape and elementwise ops, which XNNPACK and Core ML take
  without fallbacks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def snake_matrix(kernel_size: int) -> torch.Tensor:
    """Matrix ``M`` with ``d = M @ o``: the snake accumulation of per-tap offsets.

    Displacements grow outwards from the centre tap ``c``: ``d[c] = 0``,
    ``d[c + j] = d[c + j - 1] + o[c + j]`` and ``d[c - j] = d[c - j + 1] + o[c - j]``.
    The centre offset ``o[c]`` therefore never moves anything (as in DSCNet).
    """
    c = kernel_size // 2
    m = torch.zeros(kernel_size, kernel_size)
    for k in range(kernel_size):
        lo, hi = (c + 1, k) if k > c else (k, c - 1)
        m[k, lo : hi + 1] = 1.0
    return m


def tap_reach(kernel_size: int, extend_scope: float) -> list[int]:
    """Largest integer shift with a non-zero bilinear weight, per tap.

    ``|d_k| < |k - c| * extend_scope`` (each ``tanh`` offset is in (-1, 1)), so the two
    integer neighbours of ``d_k`` lie within ``ceil(|k - c| * extend_scope)``.
    """
    c = kernel_size // 2
    return [math.ceil(abs(k - c) * extend_scope) for k in range(kernel_size)]


class DSConv(nn.Module):
    """Dynamic snake convolution with a ``kernel_size``-tap line kernel.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Taps of the snake kernel (odd).
        extend_scope: Scale applied to the accumulated offsets.
        morph: 0 for a kernel along the width whose taps move vertically, 1 for a kernel along
            the height whose taps move horizontally.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 9,
        extend_scope: float = 1.0,
        morph: int = 0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if morph not in (0, 1):
            raise ValueError(f"morph must be 0 or 1, got {morph}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.extend_scope = float(extend_scope)
        self.morph = morph
        self.offset_conv = nn.Conv2d(in_channels, kernel_size, 3, padding=1)
        # Zero init: an untrained DSConv is a straight line kernel, which keeps early training
        # stable and makes the module start as an ordinary (K,1)/(1,K) convolution.
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)
        line = (kernel_size, 1) if morph == 0 else (1, kernel_size)
        self.line_conv = nn.Conv2d(in_channels, out_channels, line, stride=line)
        self.register_buffer("snake", snake_matrix(kernel_size), persistent=False)

    def displacement(self, x: torch.Tensor) -> torch.Tensor:
        """Per-tap displacements along the moving axis, shape (B, K, H, W)."""
        offsets = torch.tanh(self.offset_conv(x))
        return self.extend_scope * torch.einsum("kj,bjhw->bkhw", self.snake, offsets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        k, c = self.kernel_size, self.kernel_size // 2
        disp = self.displacement(x)
        taps = torch.arange(k, device=x.device, dtype=x.dtype) - c
        rows = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w)
        if self.morph == 0:
            y = rows + disp  # (B, K, H, W)
            xs = (cols + taps.view(1, k, 1, 1)).expand(b, k, h, w)
        else:
            y = (rows + taps.view(1, k, 1, 1)).expand(b, k, h, w)
            xs = cols + disp
        # Clamp before normalising: border replication everywhere, also for integer taps that
        # fall outside the image.
        y = y.clamp(0, h - 1)
        xs = xs.clamp(0, w - 1)
        gy = 2 * y / (h - 1) - 1 if h > 1 else torch.zeros_like(y)
        gx = 2 * xs / (w - 1) - 1 if w > 1 else torch.zeros_like(xs)
        grid = torch.stack([gx, gy], dim=-1)  # (B, K, H, W, 2)
        if self.morph == 0:
            # Stack taps along the height: row index h * K + k, then a (K,1) stride-(K,1) conv.
            grid = grid.permute(0, 2, 1, 3, 4).reshape(b, h * k, w, 2)
        else:
            # Stack taps along the width: column index w * K + k, then a (1,K) stride-(1,K) conv.
            grid = grid.permute(0, 2, 3, 1, 4).reshape(b, h, w * k, 2)
        sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return self.line_conv(sampled)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"extend_scope={self.extend_scope}, morph={self.morph}"
        )


def replicate_pad(x: torch.Tensor, dim: int, before: int, after: int) -> torch.Tensor:
    """Replicate-pad ``x`` along ``dim`` with slices and one concat (delegates everywhere)."""
    if before == 0 and after == 0:
        return x
    size = x.shape[dim]
    first = x.narrow(dim, 0, 1)
    last = x.narrow(dim, size - 1, 1)
    return torch.cat([first] * before + [x] + [last] * after, dim=dim)


class DSConvDeploy(nn.Module):
    """Gather-free DSConv with the same outputs as a trained :class:`DSConv`.

    Layout: the ``K`` tap-shifted copies of the replicate-padded input are stacked along the
    batch axis, so each bilinear term ``hat_t * f(p + t)`` is a per-pixel scalar broadcast over
    channels (the innermost axis of XNNPACK's NHWC layout), and shifting by ``t`` is a
    contiguous slice. The sum over shifts is a short chain of mul/add; taps move back to the
    channel axis for one 1x1 conv that applies the line kernel. Static shapes lower to a single
    XNNPACK subgraph; with symbolic H/W the slices and reshapes run on portable kernels.
    """

    def __init__(self, ds: DSConv) -> None:
        super().__init__()
        k, s = ds.kernel_size, ds.extend_scope
        cin, cout = ds.in_channels, ds.out_channels
        self.kernel_size, self.morph, self.in_channels = k, ds.morph, cin
        self.radius = max(tap_reach(k, s))
        shifts = 2 * self.radius + 1
        self.offset_conv = nn.Conv2d(cin, k, 3, padding=1)
        self.offset_conv.load_state_dict(ds.offset_conv.state_dict())
        # a[t, k] = d_k - t for every shift t and tap k, channel index t * K + k (shift-major, so
        # the shift-t maps of all taps are one contiguous batch slice after the reshape below).
        self.pair_conv = nn.Conv2d(k, shifts * k, 1)
        self.pair_conv.weight.data = (snake_matrix(k) * s).repeat(shifts, 1).view(shifts * k, k, 1, 1)
        self.pair_conv.bias.data = -torch.arange(-self.radius, self.radius + 1, dtype=torch.float32).repeat_interleave(k)
        # The line conv on taps stacked along channels (tap-major), i.e. W[o, c, k] at (k, c).
        line_w = ds.line_conv.weight.data.reshape(cout, cin, k)
        self.line_conv = nn.Conv2d(k * cin, cout, 1)
        self.line_conv.weight.data = line_w.permute(0, 2, 1).reshape(cout, k * cin, 1, 1).clone()
        self.line_conv.bias.data = ds.line_conv.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c, r, cin = self.kernel_size, self.kernel_size // 2, self.radius, self.in_channels
        # Moving axis: rows for morph 0, columns for morph 1.
        move_dim, tap_dim = (2, 3) if self.morph == 0 else (3, 2)
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        single = isinstance(b, int) and b == 1  # batch 1 needs no permutes, only reshapes
        size, taps_len = (h, w) if self.morph == 0 else (w, h)
        hat = 1.0 - torch.clamp(torch.abs(self.pair_conv(torch.tanh(self.offset_conv(x)))), 0.0, 1.0)
        # (B, T*K, H, W) -> (T*K*B, 1, H, W): batch index (t, k, b), matching the taps below.
        if not single:
            hat = hat.reshape(b, (2 * r + 1) * k, h, w).transpose(0, 1)
        hat = hat.reshape((2 * r + 1) * k * b, 1, h, w)
        padded = replicate_pad(replicate_pad(x, move_dim, r, r), tap_dim, c, c)
        taps = torch.cat([padded.narrow(tap_dim, j, taps_len) for j in range(k)], dim=0) if k > 1 else padded
        acc = None
        for i in range(2 * r + 1):
            shifted = taps.narrow(move_dim, i, size) if r else taps
            term = shifted * hat.narrow(0, i * k * b, k * b)
            acc = term if acc is None else acc + term
        # (K*B, C, H, W), batch index (k, b) -> (B, K*C, H, W), channel index (k, c).
        if not single:
            acc = acc.reshape(k, b, cin, h, w).transpose(0, 1)
        return self.line_conv(acc.reshape(b, k * cin, h, w))
