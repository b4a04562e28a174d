"""Resume checkpoints: everything needed to continue a run bit for bit, as plain tensors.

A checkpoint holds the model, its EMA, the optimizer, every rank's python/numpy/torch RNG
states, the data sampler position, the step, and the ``TrainConfig`` and ``LMFNConfig`` as
dicts. It contains only tensors, dicts, lists, numbers and strings, so it loads with
``torch.load(weights_only=True)``, which executes no pickled code. Checkpoints are for resuming;
release weights are safetensors written by ``python -m training.release``.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmfn_edge.errors import UsageError
from lmfn_edge.io import atomic_write
from lmfn_edge.model.weights import WeightsError, read_weights

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "rng_state",
    "set_rng_state",
    "init_from",
]

CHECKPOINT_NAME = "ckpt.pt"
FORMAT = "lmfn-edge-train-checkpoint"


class CheckpointError(UsageError, ValueError):
    """A checkpoint that is missing, corrupt, or does not fit the run; one-line message."""


# What :class:`training.loop.Trainer` writes; a checkpoint without one of these cannot resume.
REQUIRED = ("kind", "step", "model", "ema", "optimizer", "rng", "sampler", "config", "model_config")


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Writes ``checkpoint`` atomically: a crash leaves the previous checkpoint intact."""
    with atomic_write(path, "wb") as f:
        torch.save({"format": FORMAT, **checkpoint}, f)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint onto the CPU without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # weights_only: torch's restricted unpickler, which builds tensors and plain containers
        # and refuses any other global, so a crafted file cannot run code.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeDecodeError, ModuleNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lmfn-edge training checkpoint")
    _upgrade(ckpt)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete checkpoint")
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["model_config"], dict) \
            or not isinstance(ckpt["sampler"], dict) or not isinstance(ckpt["rng"], list):
        raise CheckpointError(f"{path} has malformed config, sampler or RNG entries")
    return ckpt


def _upgrade(ckpt: dict[str, Any]) -> None:
    """Read checkpoints written before training and QAT shared one engine (``train_config`` /
    ``qat_config``, ``lr``, a single-process QAT RNG state without a sampler entry)."""
    for old, kind in (("train_config", "train"), ("qat_config", "qat")):
        if old in ckpt and "config" not in ckpt:
            ckpt["config"] = ckpt.pop(old)
            ckpt.setdefault("kind", kind)
    config = ckpt.get("config")
    if isinstance(config, dict) and "lr" in config:
        config["learning_rate"] = config.pop("lr")
    if isinstance(ckpt.get("rng"), dict):
        ckpt["rng"] = [ckpt["rng"]]
    if "sampler" not in ckpt and isinstance(ckpt.get("step"), int):
        ckpt["sampler"] = {"next_step": ckpt["step"], "num_images": None}


def rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch (CPU and CUDA) RNG states, as tensors and ints."""
    version, mt, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what ``rng_state`` captured."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def init_from(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Copies the tensors of a weights file or checkpoint (its EMA) that fit ``model``.

    Tensors are matched by name and shape, so an x2 model can start x3/x4 training: all but the
    upsampler's conv carry over.

    Returns:
        The number of tensors copied and the names of the model's tensors left as initialised.

    Raises:
        CheckpointError: If the file cannot be read or nothing in it fits the model.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state = read_weights(path)[0]
        except WeightsError as exc:
            raise CheckpointError(str(exc)) from None
    else:
        state = load_checkpoint(path)["ema"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: its EMA is not a state dict")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise CheckpointError(f"{path}: no tensor fits the model (another architecture?)")
    model.load_state_dict(fits, strict=False)
    return len(fits), sorted(set(own) - set(fits))
