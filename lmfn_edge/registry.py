"""The shipped models: one table (``lmfn_edge/data/models.json``) that names each model the
package embeds, its scale, its float weights and int8 parameters files with their SHA-256, the
licence they ship under and a fingerprint of the images they were trained on.

Every place that needs a shipped model's name or files reads it here: :func:`model_name` is the
one spelling of ``lmfn_x{scale}``, :func:`shipped` (and :func:`models`) gives a model's record and the paths of its
files. ``tests/test_default_weights.py`` checks the table against the files (their SHA-256 and
the ``train_images`` in the weights' metadata); ``python -m quantization.int8_release`` updates
the int8 entry when it ships new parameters.

A leaf: the standard library only (the sidecar contract and the config validator use it
without torch). The table is package data, written by this project, not a user's file.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import UsageError

__all__ = ["REGISTRY_PATH", "SCALES", "WEIGHTS_DIR", "ShippedModel", "ShippedFileError", "model_name",
           "images_fingerprint", "int8_params_name", "models", "scale_of", "shipped"]

SCALES = (2, 3, 4)
PACKAGE = Path(str(resources.files("lmfn_edge")))
REGISTRY_PATH = PACKAGE / "data" / "models.json"
WEIGHTS_DIR = PACKAGE / "weights"


class ShippedFileError(UsageError, ValueError):
    """A shipped model's file is missing from this installation."""


def model_name(scale: int) -> str:
    """The shipped model of ``scale``: ``lmfn_x{scale}``."""
    return f"lmfn_x{scale}"


def int8_params_name(scale: int) -> str:
    """The file name of int8 parameters for ``scale`` (what QAT writes and the package ships)."""
    return f"{model_name(scale)}_int8.safetensors"


def scale_of(name: str) -> int:
    """The scale of a model name (``lmfn_x4`` -> 4); ``ValueError`` for a name that is none."""
    for scale in SCALES:
        if name == model_name(scale):
            return scale
    raise ValueError(f"unknown model {name!r}; available: {', '.join(model_name(s) for s in SCALES)}")


@dataclass(frozen=True)
class ShippedModel:
    """One row of the table. ``int8_file`` is ``None`` for a model without int8 parameters."""

    name: str
    scale: int
    weights_file: str
    weights_sha256: str
    int8_file: str | None
    int8_sha256: str | None
    licence: str
    training_images: int  # how many images the weights' train_images lists
    training_images_sha256: str  # images_fingerprint of that list

    @property
    def weights_path(self) -> Path:
        return self._path(self.weights_file, "weights")

    @property
    def int8_path(self) -> Path:
        if self.int8_file is None:
            raise ShippedFileError(f"{self.name} ships no int8 parameters")
        return self._path(self.int8_file, "int8 parameters")

    def _path(self, file: str, what: str) -> Path:
        path = WEIGHTS_DIR / file
        if not path.is_file():
            raise ShippedFileError(f"no embedded {what} for {self.name} (expected {path})")
        return path


def images_fingerprint(train_images: list[dict]) -> str:
    """SHA-256 of the sorted ``(file, sha256)`` pairs of a weights file's ``train_images``: one
    value that changes when any training image does."""
    pairs = sorted((str(e["file"]), str(e["sha256"])) for e in train_images)
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


@functools.cache
def models() -> dict[str, ShippedModel]:
    """Every shipped model by name, as the table lists them."""
    data = json.loads(REGISTRY_PATH.read_text())
    models = {}
    for name, row in data["models"].items():
        model = ShippedModel(name=name, **row)
        if model.name != model_name(model.scale):
            raise ValueError(f"{REGISTRY_PATH}: {name} is listed with scale {model.scale}")
        models[name] = model
    return models


def shipped(scale: int) -> ShippedModel:
    """The shipped model of ``scale``."""
    name, table = model_name(scale), models()
    if name not in table:
        raise ShippedFileError(f"no shipped model {name}; the package ships {', '.join(table)}")
    return table[name]
