"""QAT's control over fake-quant observers: freeze scales and zero points, pause them for validation."""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from lmfn_edge.deployment.pt2e import pt2e_modules

__all__ = ["disable_observers", "observers_frozen", "observers_paused"]


def _fake_quants(model: nn.Module):
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase

    return [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]


def disable_observers(model: nn.Module) -> None:
    """Freeze every fake-quant's scale and zero point (QAT's second phase)."""
    _, pt2e, _ = pt2e_modules()
    model.apply(pt2e.disable_observer)


def observers_frozen(model: nn.Module) -> bool:
    fqs = _fake_quants(model)
    return bool(fqs) and all(not bool(fq.observer_enabled[0]) for fq in fqs)


@contextmanager
def observers_paused(model: nn.Module):
    """Run ``model`` without updating its QAT observers (validation must not move qparams)."""
    fqs = _fake_quants(model)
    before = [fq.observer_enabled.clone() for fq in fqs]
    for fq in fqs:
        fq.observer_enabled[0] = 0
    try:
        yield model
    finally:
        for fq, flag in zip(fqs, before):
            fq.observer_enabled.copy_(flag)
