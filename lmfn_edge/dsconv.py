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
  over integer shifts ``t`` on a replicate-padded map (``hat(u) = max(0, 1 - |u|)``). Shifted
  copies come from a handful of slices, hat weights are computed on one channel per
  (tap, shift) pair and broadcast with a grouped 1x1 conv, and the line convolution plus the sum
  over shifts collapse into one 1x1 conv. Everything is conv, slice, cat and elementwise ops,
  which XNNPACK and Core ML take without fallbacks.
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

    Build it with :meth:`from_dsconv`. Shapes: taps are ordered by reach (farthest first) so that,
    for each shift ``t``, the taps that can reach it are a prefix of the channel axis and one
    slice selects them; unreachable (tap, shift) pairs are never computed.
    """

    def __init__(self, ds: DSConv) -> None:
        super().__init__()
        k, c, s = ds.kernel_size, ds.kernel_size // 2, ds.extend_scope
        cin, cout = ds.in_channels, ds.out_channels
        self.kernel_size, self.morph, self.in_channels = k, ds.morph, cin
        reach = tap_reach(k, s)
        order = sorted(range(k), key=lambda i: -reach[i])  # farthest taps first (stable)
        self.radius = max(reach)
        # (shift, number of taps reaching it) blocks, and the tap of every pair in block order.
        self.blocks: list[tuple[int, int]] = []
        pair_taps: list[int] = []
        pair_shifts: list[int] = []
        for t in range(-self.radius, self.radius + 1):
            taps = [i for i in order if reach[i] >= abs(t)]
            self.blocks.append((t, len(taps)))
            pair_taps += taps
            pair_shifts += [t] * len(taps)
        pairs = len(pair_taps)

        self.offset_conv = nn.Conv2d(cin, k, 3, padding=1)
        self.offset_conv.load_state_dict(ds.offset_conv.state_dict())
        # a[p] = d[tap(p)] - shift(p): snake accumulation, scope and shift in one 1x1 conv.
        self.pair_conv = nn.Conv2d(k, pairs, 1)
        snake = snake_matrix(k) * s
        self.pair_conv.weight.data = snake[pair_taps].view(pairs, k, 1, 1).clone()
        self.pair_conv.bias.data = -torch.tensor(pair_shifts, dtype=torch.float32)
        # hat = 1 - min(|a|, 1), broadcast to the channels of each pair: the affine part lives
        # in this grouped conv so the graph needs only abs and clamp before it.
        self.expand_conv = nn.Conv2d(pairs, pairs * cin, 1, groups=pairs)
        self.expand_conv.weight.data.fill_(-1.0)
        self.expand_conv.bias.data.fill_(1.0)
        # Tap shifts along the fixed axis: a 1x1 conv makes K copies of the input (a concat of
        # one tensor with itself is not delegated), then a one-hot depthwise conv moves copy i
        # (the i-th tap in reach order) by order[i] - c.
        self.copy_conv = nn.Conv2d(cin, k * cin, 1, bias=False)
        self.copy_conv.weight.data = torch.eye(cin).repeat(k, 1).view(k * cin, cin, 1, 1)
        tap_kernel = (1, k) if ds.morph == 0 else (k, 1)
        self.tap_conv = nn.Conv2d(k * cin, k * cin, tap_kernel, groups=k * cin, bias=False)
        self.tap_conv.weight.data.zero_()
        for i, tap in enumerate(order):
            self.tap_conv.weight.data[i * cin : (i + 1) * cin].view(cin, k)[:, tap] = 1.0
        # Line conv and the sum over (tap, shift) pairs: W[o, ci, tap(p)] for channel (p, ci).
        line_w = ds.line_conv.weight.data.reshape(cout, cin, k)
        self.out_conv = nn.Conv2d(pairs * cin, cout, 1)
        self.out_conv.weight.data = (
            line_w[:, :, pair_taps].permute(0, 2, 1).reshape(cout, pairs * cin, 1, 1).clone()
        )
        self.out_conv.bias.data = ds.line_conv.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c, r, cin = self.kernel_size, self.kernel_size // 2, self.radius, self.in_channels
        # Moving axis: rows for morph 0, columns for morph 1.
        move_dim, tap_dim = (2, 3) if self.morph == 0 else (3, 2)
        size = x.shape[move_dim]
        hat = self.expand_conv(torch.clamp(torch.abs(self.pair_conv(torch.tanh(self.offset_conv(x)))), max=1.0))
        padded = replicate_pad(replicate_pad(x, move_dim, r, r), tap_dim, c, c)
        taps = self.tap_conv(self.copy_conv(padded)) if k > 1 else padded
        pieces = []
        for t, n in self.blocks:
            piece = taps if n == k else taps.narrow(1, 0, n * cin)
            pieces.append(piece.narrow(move_dim, r + t, size) if r else piece)
        samples = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
        return self.out_conv(samples * hat)
