"""LMFN Edge: the LMFN super-resolution network from training to phones.

``import lmfn_edge`` stays cheap: executorch, coremltools and torchao are imported only inside
the functions that need them. The package is layered (docs/architecture.md, enforced by the
import-linter contracts in pyproject.toml): leaves (``errors``, ``manifest``, ``io``,
``metrics``, ``imresize``, over ``architecture``, ``metadata``, ``interrupts``, over
``registry``, the shipped models) <- ``model`` <- ``runtime`` | ``deployment`` <- ``evaluation``
<- ``cli`` <- the command lines (``export``, ``upscale``, ``evaluate``, ``bench``,
``verify_coreml``, ``info``, ``arm``).
"""

from __future__ import annotations

from . import interrupts

# First, before torch is imported: a Ctrl-C while `python -m lmfn_edge.<command>` (or training.*,
# quantization.*) starts up is recorded and honoured by the command, not a traceback.
interrupts.arm_if_command()

from .model import LMFN, LMFNConfig, config_for, model_name
from .model.weights import WeightsRecord, load_model

__all__ = ["LMFN", "LMFNConfig", "WeightsRecord", "create_model", "load_model", "model_name"]
__version__ = "0.1.0"


def create_model(name: str, pretrained: bool = False, weights: str | None = None, **overrides) -> LMFN:
    """Create ``lmfn_x2``, ``lmfn_x3`` or ``lmfn_x4`` (timm's entry point).

    Args:
        name: Model name.
        pretrained: Load the weights embedded in the package (trained by this project; see
            docs/model-card.md). Overrides are not allowed then, since they change the network.
        weights: Path of a safetensors weights file to load instead; its scale must match.
        **overrides: ``LMFNConfig`` fields (e.g. ``channels=16, num_blocks=2, pattern="LM"``).

    Returns:
        The model, in eval mode when weights were loaded, else freshly initialised (in training
        mode, with torch's current random state; :func:`load_model` seeds a random init).
    """
    config = config_for(name, **overrides)
    if pretrained or weights:
        if overrides:
            raise ValueError("config overrides cannot be combined with loaded weights (they fix the architecture)")
        return load_model(config.scale, weights=weights)[0]
    return LMFN(config)
