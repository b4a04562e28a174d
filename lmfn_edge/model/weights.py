"""Weights as safetensors, and the one way every command gets a model to work on.

Weights are data, never pickles. A weights file carries everything needed to rebuild the model
(``LMFNConfig`` as JSON under the ``lmfn_config`` key), so a file of another scale or
architecture is detected before any tensor is copied. :func:`load_model` is what every command
line and :func:`lmfn_edge.create_model` use to get a model: the weights the package embeds, a
weights file, or a seeded random init for plumbing checks, with a record of where the weights
came from for the artifact's sidecar.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError, first_line
from ..metadata import MetadataError, parse_json
from ..registry import shipped
from .lmfn import LMFN, LMFNConfig, config_for, model_name

FORMAT = "lmfn-edge-weights"
RANDOM_INIT_SEED = 0


class WeightsError(UsageError, ValueError):
    """A weights file that is missing, corrupt, or does not fit the requested model."""


def save_weights(model: LMFN, path: str | Path, extra: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict and config to ``path`` atomically."""
    from safetensors.torch import save

    from ..files import atomic_write_bytes

    meta = {"format": FORMAT, "lmfn_config": json.dumps(model.config.to_dict()), **(extra or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata=meta))


def read_safetensors(path: Path, error: type[Exception], what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a safetensors file; a missing or unreadable file raises
    ``error`` with a one-line message naming ``what`` it should have been. Nothing is unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise error(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise error(f"{path} is {size / 2**20:.0f} MB, more than any LMFN {what} (at most {MAX_FILE_BYTES >> 20} MB)")
    try:
        data = path.read_bytes()
        meta = safetensors_metadata(data, str(path))
        state = load(data)
    except (SafetensorError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not a valid safetensors {what} ({first_line(exc)})") from None
    return state, meta


def metadata_json(meta: dict[str, str], key: str, source: str, error: type[Exception], default: str | None = None,
                  max_depth: int = 8) -> Any:
    """A JSON value stored as a string in safetensors metadata, parsed with bounds."""
    text = meta.get(key, default)
    if text is None:
        raise error(f"{source} lacks {key!r} in its metadata")
    try:
        return parse_json(text, f"{source} ({key})", MAX_VALUE_BYTES, max_depth)
    except MetadataError as exc:
        raise error(str(exc)) from None


MAX_FILE_BYTES = 1 << 30  # the largest LMFNConfig allows is about 80 MB of float32 weights
MAX_HEADER_BYTES = 8 << 20  # the int8 parameters' header (2,936 tensors) is about 300 kB
MAX_VALUE_BYTES = 1 << 20  # one metadata value; the largest, train_images, lists a few hundred files


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], LMFNConfig, dict[str, str]]:
    """Read tensors, config and metadata from a weights file, with one-line errors."""
    path = Path(path)
    state, meta = read_safetensors(path, WeightsError, "weights file")
    if meta.get("format") != FORMAT or "lmfn_config" not in meta:
        raise WeightsError(f"{path} has no LMFN config in its metadata; not an lmfn-edge weights file")
    return state, lmfn_config_of(meta, str(path), WeightsError), meta


def lmfn_config_of(meta: dict[str, str], source: str, error: type[Exception]) -> LMFNConfig:
    """The validated ``LMFNConfig`` a safetensors file's metadata holds under ``lmfn_config``."""
    data = metadata_json(meta, "lmfn_config", source, error, max_depth=2)
    try:
        return LMFNConfig.from_dict(data)
    except ValueError as exc:
        raise error(f"{source} has an invalid LMFN config: {exc}") from None


def safetensors_metadata(data: bytes, source: str = "safetensors header") -> dict[str, str]:
    """The string metadata of a safetensors file's bytes, its header bounded before parsing.

    safetensors' torch loader drops the metadata; the header is a length-prefixed JSON object
    (``{name: {dtype, shape, data_offsets}, "__metadata__": {key: string}}``, 3 levels deep).
    """
    n = int.from_bytes(data[:8], "little")
    if len(data) < 8 or n > len(data) - 8:
        raise ValueError(f"header length {n} exceeds the file ({len(data)} bytes)")
    if n > MAX_HEADER_BYTES:
        raise ValueError(f"header of {n} bytes, more than the limit of {MAX_HEADER_BYTES}")
    header = parse_json(data[8 : 8 + n], source, MAX_HEADER_BYTES, max_depth=4)
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("the header's __metadata__ must map names to strings")
    return meta


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
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsError(f"{source} does not hold a state dict (names to tensors)")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"wrong shape {shapes[:3]}")
        raise WeightsError(f"{source} does not fit the model: {'; '.join(parts)}")
    check_values(own, state, source)
    model.load_state_dict(state)


def check_values(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse tensors of ``state`` (those ``own`` also has) whose dtype differs from the model's,
    which ``load_state_dict`` would cast silently (int64 "weights" would run), or that hold NaN
    or infinity.

    Raises:
        WeightsError: Naming up to three tensors.
    """
    shared = sorted(set(own) & set(state))
    dtypes = [k for k in shared if own[k].dtype != state[k].dtype]
    if dtypes:
        raise WeightsError(f"{source} does not fit the model: wrong dtype "
                           f"{[f'{k} ({state[k].dtype})' for k in dtypes[:3]]}, expected {own[dtypes[0]].dtype}")
    broken = [k for k in shared if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if broken:
        raise WeightsError(f"{source} holds non-finite values (NaN or infinity) in {broken[:3]}: corrupt weights")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class WeightsRecord:
    """Where a model's weights came from, as an artifact's sidecar records it."""

    source: str
    sha256: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"source": self.source, "sha256": self.sha256}


def load_model(
    scale: int | None = None,
    weights: str | Path | None = None,
    random_init: bool = False,
    **overrides: Any,
) -> tuple[LMFN, WeightsRecord]:
    """The model a command works on, in eval mode, and where its weights came from.

    Args:
        scale: Upscaling factor. With ``weights`` it must match the file's (``None``: take the
            file's); otherwise it picks the embedded weights or the random-init variant
            (``None``: 4).
        weights: A safetensors weights file instead of the embedded weights.
        random_init: A freshly initialised model, seeded with ``RANDOM_INIT_SEED`` so that two
            commands rebuild the same one (plumbing checks; latency does not depend on weights).
        **overrides: ``LMFNConfig`` fields (``kernel_size``, ``pattern``, ...); only with
            ``random_init``, since trained weights fix the architecture. ``None`` values are
            ignored, so command-line flags can be passed as they are.

    Raises:
        WeightsError: On contradicting arguments, or a missing, corrupt or mismatched file.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if random_init:
        if weights:
            raise WeightsError("--random-init and --weights cannot be combined")
        try:
            config = config_for(model_name(scale or 4), **overrides)
        except (ValueError, TypeError) as exc:
            raise WeightsError(f"invalid model config: {exc}") from None
        torch.manual_seed(RANDOM_INIT_SEED)
        return LMFN(config).eval(), WeightsRecord(f"random-init (seed {RANDOM_INIT_SEED})", None)
    if overrides:
        names = ", ".join("--" + k.replace("_", "-") for k in sorted(overrides))
        raise WeightsError(f"{names} only apply with --random-init; trained weights fix the architecture")
    if weights:
        path = Path(weights)
        return load_weights(path, scale=scale), WeightsRecord(str(path), sha256_file(path))
    path = shipped(scale or 4).weights_path
    return load_weights(path, scale=scale), WeightsRecord(f"embedded:{path.name}", sha256_file(path))
