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
  over integer shifts ``t`` on a replicate-padded map (``hat(u) = max(0, 1 - |u|)``). Per
  pixel, that sum for all taps is one small matrix product (features at the shifts times hat
  weights), so the deploy form is convs, two batched matmuls and a few reshapes, which XNNPACK
  and Core ML take without fallbacks.
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
        # A NaN displacement (NaN features, or huge ones that overflow in offset_conv) must not
        # reach grid_sample: its CPU backward turns a NaN coordinate into the index INT_MIN and,
        # with border padding, adds the gradient there unchecked, far outside the buffer
        # (pytorch/pytorch#24823). Such taps sample without displacement and their output pixels
        # are set to NaN afterwards, as DSConvDeploy gives them; finite displacements pass
        # through untouched, so every finite result and gradient stays bit-identical.
        broken = disp.isnan().any(dim=1, keepdim=True)
        disp = disp.nan_to_num(nan=0.0)
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
        return self.line_conv(sampled).masked_fill(broken, math.nan)

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

    Works on a grid extended by ``K - 1`` along the tap axis, where tap ``k`` of output pixel
    ``p`` sits at ``q = p + k`` (so the feature read by every tap at ``q`` is the same):

    1. ``pair_conv`` (fixed weights) turns the ``tanh`` offsets into each tap's displacement
       ``d_k`` at ``q``: the snake accumulation, the scope and the move to ``q`` in one conv;
       the hat weights of all (shift, tap) pairs are ``relu(1 - |d_k - t|)``, shape (P, T, K)
       for the P pixels of the extended grid.
    2. A channel-repeating 1x1 conv and a one-hot depthwise conv unfold the replicate-padded
       input along the moving axis (``T = 2R + 1`` shifts): per pixel a (C, T) matrix, already
       in the order a batched matmul reads from the channels-last layout.
    3. One batched matmul (P, C, T) @ (P, T, K) gives every tap's bilinear sample at ``q``.
    4. Back on the image grid, a one-hot depthwise conv along the tap axis (``skew``) moves
       tap k's sample from ``q = p + k`` to ``p``, and the line kernel becomes a 1x1 conv over
       the (C, K) channels.

    24 graph nodes, all delegated by XNNPACK for static shapes and converted by Core ML.
    ``pair_conv`` keeps its name: it is the fixed conv that quantization-aware fine-tuning
    leaves untouched; ``line`` holds the trained line kernel.
    """

    def __init__(self, ds: DSConv) -> None:
        super().__init__()
        k, s = ds.kernel_size, ds.extend_scope
        cin, cout = ds.in_channels, ds.out_channels
        self.kernel_size, self.morph, self.in_channels, self.out_channels = k, ds.morph, cin, cout
        self.radius = r = max(tap_reach(k, s))
        shifts = 2 * r + 1
        self.offset_conv = nn.Conv2d(cin, k, 3, padding=1)
        self.offset_conv.load_state_dict(ds.offset_conv.state_dict())
        # d_k(q) = s * sum_j M[k, j] o_j(q - k): a (1, K) / (K, 1) conv whose output channel k
        # reads only kernel position K - 1 - k, zero-padded by K - 1 to the extended grid.
        along_tap = (1, k) if ds.morph == 0 else (k, 1)
        self.pair_conv = nn.Conv2d(k, k, along_tap, padding=tuple(v - 1 for v in along_tap), bias=False)
        weight = torch.zeros(k, k, k)
        for tap, row in enumerate(snake_matrix(k) * s):
            weight[tap, :, k - 1 - tap] = row
        self.pair_conv.weight.data = weight.view(k, k, *along_tap)
        self.register_buffer("shifts", torch.arange(-r, r + 1, dtype=torch.float32).view(shifts, 1))
        # Unfold = a 1x1 conv repeating each channel T times, then a one-hot depthwise conv
        # shifting copy t by t. (One depthwise conv with channel multiplier T computes the same,
        # but XNNPACK runs it as a grouped GEMM, three times slower at 180x320.)
        along_move = (shifts, 1) if ds.morph == 0 else (1, shifts)
        repeat = torch.eye(cin).repeat_interleave(shifts, dim=0)
        self.register_buffer("repeat_weight", repeat.view(cin * shifts, cin, 1, 1))
        unfold = torch.zeros(cin, shifts, shifts)
        unfold[:, torch.arange(shifts), torch.arange(shifts)] = 1.0
        self.register_buffer("unfold_weight", unfold.view(cin * shifts, 1, *along_move))
        skew = torch.zeros(cin, k, k)
        skew[:, torch.arange(k), torch.arange(k)] = 1.0
        self.register_buffer("skew_weight", skew.view(cin * k, 1, *along_tap))
        # The line kernel over the (C, K) channels of the skewed samples: a 1x1 conv.
        self.line = nn.Conv2d(cin * k, cout, 1)
        self.line.weight.data = ds.line_conv.weight.data.reshape(cout, cin * k, 1, 1).clone()
        self.line.bias.data = ds.line_conv.bias.data.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, c, r = self.kernel_size, self.kernel_size // 2, self.radius
        cin, b, shifts = self.in_channels, x.shape[0], 2 * self.radius + 1
        move_dim, tap_dim = (2, 3) if self.morph == 0 else (3, 2)
        disp = self.pair_conv(torch.tanh(self.offset_conv(x)))  # (B, K, He, We), extended grid
        he, we = disp.shape[2], disp.shape[3]
        pixels = b * he * we
        disp = disp.permute(0, 2, 3, 1).reshape(pixels, 1, k)
        hat = torch.relu(1.0 - torch.abs(disp - self.shifts))  # (P, T, K)
        padded = replicate_pad(replicate_pad(x, move_dim, r, r), tap_dim, c, c)
        cols = F.conv2d(F.conv2d(padded, self.repeat_weight), self.unfold_weight, groups=cin * shifts)
        cols = cols.permute(0, 2, 3, 1).reshape(pixels, cin, shifts)
        samples = torch.bmm(cols, hat)  # (P, C, K): tap k of the pixel k steps back
        samples = samples.reshape(b, he, we, cin * k).permute(0, 3, 1, 2)
        # "valid" along the tap axis: the extended grid shrinks back to H x W.
        return self.line(F.conv2d(samples, self.skew_weight, groups=cin * k))
