"""Resume checkpoints: everything needed to continue a run bit for bit, as plain tensors.

A checkpoint holds the model, its EMA, the optimizer, every rank's python/numpy/torch RNG
states, the data sampler position, the step, and the ``TrainConfig`` and ``LMFNConfig`` as
dicts. It contains only tensors, dicts, lists, numbers and strings, so it loads with
``torch.load(weights_only=True)``, which executes no pickled code. What it holds is then
checked entry by entry (:func:`check_structure`: types, the RNG states restored on scratch
generators, the architecture through ``LMFNConfig``), so a damaged or crafted file is one
``CheckpointError`` naming the entry, before any of it is used. Checkpoints are for resuming;
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

from lmfn_edge.architecture import LMFNConfig
from lmfn_edge.checks import is_integer
from lmfn_edge.errors import UsageError, first_line
from lmfn_edge.files import atomic_write
from lmfn_edge.model.weights import WeightsError, check_values, read_weights

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "rng_state",
    "set_rng_state",
    "init_from",
    "read_init_state",
]

CHECKPOINT_NAME = "ckpt.pt"
# Model, EMA and Adan's three moments of the largest LMFNConfig (about 20M parameters) are
# about 500 MB; the paper's model's checkpoint is 9 MB.
MAX_BYTES = 2 << 30
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
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise CheckpointError(f"{path} is {size / 2**20:.0f} MB, more than any LMFN checkpoint (at most "
                              f"{MAX_BYTES >> 20} MB)")
    try:
        # weights_only: torch's restricted unpickler, which builds tensors and plain containers
        # and refuses any other global, so a crafted file cannot run code.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError,
            KeyError, IndexError, UnicodeDecodeError, ModuleNotFoundError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an lmfn-edge training checkpoint")
    _upgrade(ckpt)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete checkpoint")
    check_structure(ckpt, str(path))
    return ckpt


def check_structure(ckpt: dict[str, Any], source: str) -> None:
    """Refuse a checkpoint whose entries do not have the types and shapes the engine writes.

    The configs' contents are checked where they are used (``TrainConfig.from_dict``, the QAT
    config); the architecture is checked here, since every reader builds a model from it.

    Raises:
        CheckpointError: Naming the first entry that is wrong.
    """
    def wrong(entry: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{source}: its {entry} is not {expected}; the checkpoint is damaged")

    if ckpt["kind"] not in ("train", "qat"):
        raise wrong("kind", "'train' or 'qat'")
    if not is_integer(ckpt["step"]) or ckpt["step"] < 0:
        raise wrong("step", "an integer >= 0")
    for key in ("model", "ema"):
        state = ckpt[key]
        if not isinstance(state, dict) or not state or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
            raise wrong(key, "a state dict (names to tensors)")
    optimizer = ckpt["optimizer"]
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("state"), dict) \
            or not isinstance(optimizer.get("param_groups"), list) or not optimizer["param_groups"] \
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in optimizer["param_groups"]):
        raise wrong("optimizer", "an optimizer state dict")
    rngs = ckpt["rng"]
    if not isinstance(rngs, list) or not rngs or not all(_restorable(r) for r in rngs):
        raise wrong("rng", "a list of python/numpy/torch RNG states")
    sampler = ckpt["sampler"]
    if not isinstance(sampler, dict) or not is_integer(sampler.get("next_step")) \
            or not (sampler.get("num_images") is None or is_integer(sampler["num_images"]) and sampler["num_images"] > 0):
        raise wrong("sampler", "a sampler position (next_step, num_images)")
    for key in ("config", "model_config"):
        if not isinstance(ckpt[key], dict):
            raise wrong(key, "an object")
    try:
        LMFNConfig.from_dict(ckpt["model_config"])
    except ValueError as exc:
        raise CheckpointError(f"{source}: its model_config is invalid ({exc})") from None
    if "world_size" in ckpt and (not is_integer(ckpt["world_size"]) or ckpt["world_size"] < 1):
        raise wrong("world_size", "an integer >= 1")


def _restorable(state: Any) -> bool:
    """Whether ``set_rng_state`` can restore ``state``: tried on scratch generators, so the
    process's own RNG streams are untouched."""
    try:
        py, npy = state["python"], state["numpy"]
        random.Random().setstate((py["version"], tuple(py["mt"].tolist()), py["gauss"]))
        np.random.RandomState().set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                                           npy["has_gauss"], npy["cached"]))
        generator = torch.Generator()
        generator.set_state(state["torch"])
        cuda = state.get("cuda", [])
        return isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RuntimeError):
        return False


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


def read_init_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors ``init_from`` copies: a weights file's, or a checkpoint's EMA (validated).

    Raises:
        CheckpointError: If the file cannot be read.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return read_weights(path)[0]
        except WeightsError as exc:
            raise CheckpointError(str(exc)) from None
    return load_checkpoint(path)["ema"]  # a state dict: load_checkpoint checks its structure


def init_from(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> tuple[int, list[str]]:
    """Copies the tensors of ``state`` (from :func:`read_init_state`) that fit ``model``.

    Tensors are matched by name and shape, so an x2 model can start x3/x4 training: all but the
    upsampler's conv carry over.

    Returns:
        The number of tensors copied and the names of the model's tensors left as initialised.

    Raises:
        CheckpointError: If nothing in ``state`` fits the model, or a tensor that fits holds
            another dtype or non-finite values.
    """
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise CheckpointError(f"{source}: no tensor fits the model (another architecture?)")
    try:
        check_values(own, fits, source)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    model.load_state_dict(fits, strict=False)
    return len(fits), sorted(set(own) - set(fits))
