"""Release weights as safetensors: the tensors plus the model config in the file's metadata.

Weights are data, never pickles. A weights file carries everything needed to rebuild the model
(``LMFNConfig`` as JSON under the ``lmfn_config`` key), so a file of another scale or
architecture is detected before any tensor is copied.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .model import LMFN, LMFNConfig

FORMAT = "lmfn-edge-weights"


class WeightsError(ValueError):
    """A weights file that is missing, corrupt, or does not fit the requested model."""


def save_weights(model: LMFN, path: str | Path, extra: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict and config to ``path`` atomically."""
    from safetensors.torch import save

    from .io import atomic_write_bytes

    meta = {"format": FORMAT, "lmfn_config": json.dumps(model.config.to_dict()), **(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata=meta))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], LMFNConfig, dict[str, str]]:
    """Read tensors, config and metadata from a weights file, with one-line errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        data = path.read_bytes()
        state = load(data)
        meta = _metadata(data)
    except (SafetensorError, ValueError, OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors weights file ({exc})") from None
    if meta.get("format") != FORMAT or "lmfn_config" not in meta:
        raise WeightsError(f"{path} has no LMFN config in its metadata; not an lmfn-edge weights file")
    try:
        config = LMFNConfig.from_dict(json.loads(meta["lmfn_config"]))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path} has an invalid LMFN config: {exc}") from None
    return state, config, meta


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors' torch loader drops the metadata; the header is a length-prefixed JSON object.
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}


def load_weights(path: str | Path, scale: int | None = None) -> LMFN:
    """Build an LMFN from a weights file; ``scale`` (if given) must match the file's."""
    state, config, _ = read_weights(path)
    if scale is not None and config.scale != scale:
        raise WeightsError(f"{path} holds x{config.scale} weights, but x{scale} was requested")
    model = LMFN(config)
    load_state(model, state, str(path))
    return model.eval()


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``, naming missing/unexpected/mis-shaped tensors on failure."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"wrong shape {sorted(shapes)[:3]}")
        raise WeightsError(f"{source} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state)


def default_weights_path(name: str) -> Path:
    """Path of the weights the package embeds for ``name`` (e.g. ``lmfn_x4``)."""
    path = Path(str(resources.files("lmfn_edge") / "weights" / f"{name}.safetensors"))
    if not path.is_file():
        raise WeightsError(f"no embedded weights for {name} (expected {path})")
    return path


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
