"""The pieces of one training iteration, shared by the training loop and the throughput command.

Loss, optimizer and EMA follow LKDN's official BasicSR configs (docs/training.md, "The recipe"):
mean L1, Adan with betas (0.98, 0.92, 0.99) (``pytorch_optimizer.Adan``), and
``ema <- decay * ema + (1 - decay) * weights`` after every step, on parameters only (the model
has no buffers that training changes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmfn_edge.imresize import bicubic_upscale
from lmfn_edge.metrics import hwc_uint8_to_chw_float, psnr, tensor_to_uint8

from .config import TrainConfig
from .data import ValImage

__all__ = ["build_optimizer", "ema_update", "train_step", "validate", "bicubic_psnr"]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adan over all parameters with the config's lr, betas and weight decay."""
    from pytorch_optimizer import Adan

    return Adan(model.parameters(), lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Moves every EMA parameter ``1 - decay`` of the way towards the model's."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_batch: torch.Tensor,
    hr_batch: torch.Tensor,
    amp_bf16: bool = False,
) -> torch.Tensor:
    """One L1 step; returns the loss as a detached tensor (no host sync)."""
    with torch.autocast(lr_batch.device.type, dtype=torch.bfloat16, enabled=amp_bf16):
        sr = model(lr_batch)
    # The loss is taken in float32 so bf16 rounding of the output does not bias small errors.
    loss = F.l1_loss(sr.float(), hr_batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _to_batch(img: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(hwc_uint8_to_chw_float(img))[None].to(device)


@torch.no_grad()
def validate(model: nn.Module, images: list[ValImage], scale: int, device: torch.device) -> float:
    """Mean PSNR-Y over whole images, border ``scale``, on uint8-quantised output (BasicSR)."""
    model.eval()
    scores = [psnr(tensor_to_uint8(model(_to_batch(im.lr, device))), im.hr, crop_border=scale) for im in images]
    return float(np.mean(scores))


def bicubic_psnr(images: list[ValImage], scale: int) -> float:
    """The bicubic baseline on the same images and protocol."""
    return float(np.mean([psnr(bicubic_upscale(im.lr, scale), im.hr, crop_border=scale) for im in images]))
