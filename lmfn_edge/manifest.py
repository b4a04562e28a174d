"""The artifact contract: the JSON sidecar every exported program carries, and its shape spec.

``python -m lmfn_edge.export`` writes ``<artifact>.json`` next to each .pte / .mlpackage / .ptl;
the Python runtime, ``evaluate``, ``verify_coreml``, ``bench`` and the Android app
(``android_demo/imagecore``'s ``Manifest``) read it. Writer and readers go through the same
typed dataclass, so a sidecar is validated identically wherever it is read: a list instead of
an object, a missing key, a tile that disagrees with the shape, an overlap of at least the tile
are each one clear :class:`ManifestError`. The Java reader is pinned to this schema by golden
files written from this module (``lmfn_edge.android_golden``).

This module is a leaf: it imports nothing heavier than the standard library, so every layer
(and a phone-side tool) can depend on it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .architecture import SCALES, LMFNConfig
from .checks import check_integer
from .errors import UsageError
from .metadata import MetadataError, read_json_file
from .registry import model_name

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "DYNAMIC_MULTIPLE",
    "FORMAT",
    "INPUT_NAME",
    "MAX_SIDE",
    "MIN_DYNAMIC",
    "Manifest",
    "ManifestError",
    "OUTPUT_NAME",
    "PRECISIONS",
    "SCALES",
    "ShapeSpec",
    "TARGETS",
    "VERSION",
    "artifact_name",
    "package_versions",
    "padded_side",
    "read_manifest",
    "sidecar_path",
]

FORMAT = "lmfn-edge-manifest"
VERSION = 1
LAYOUT = "NCHW"
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
INPUT_RANGE = [0.0, 1.0]
OUTPUT_RANGE = "unclamped; clamp to [0, 1], then round(x * 255)"

DEFAULT_TILE = 128
DEFAULT_OVERLAP = 16  # LR pixels; a multiple of 8 keeps MSM's pooling grid aligned across tiles
# MSM pools by up to 8: dynamic programs take H and W on this grid, so no shape-dependent
# padding is traced, and QAT patches and int8 tiles follow the same grid.
DYNAMIC_MULTIPLE = 8
MIN_DYNAMIC = 16
# The largest LR side of a program's input: a 4K frame at x2 is 1920x1080 LR pixels. Lowering
# plans every intermediate at full size, so a larger --shape would end in the allocator;
# docs/deployment.md ("Shapes").
MAX_SIDE = 2048


def padded_side(side: int, multiple: int = DYNAMIC_MULTIPLE, minimum: int = MIN_DYNAMIC) -> int:
    """The side a program on the ``multiple`` grid (at least ``minimum``) runs an LR ``side`` at:
    the next multiple, at least the minimum. The input is edge-padded up to it and the output
    cropped back, by the tiler, QAT and the int8 programs built off the grid."""
    return max(minimum, side + (-side) % multiple)

TARGETS = ("xnnpack", "portable", "coreml", "executorch-coreml", "torchscript")
PRECISIONS = {  # the first one is the target's default
    # int8 variants: docs/quantization.md "Int8 variants" (int8-mixed is scanned, not yet exported:
    # its fp32 islands lower to two XNNPACK subgraphs)
    "xnnpack": ("fp32", "int8", "int8-dynamic"),
    "portable": ("fp32",),
    "coreml": ("fp16", "fp32", "int8"),
    "executorch-coreml": ("fp16",),
    "torchscript": ("fp32",),
}
SUFFIX = {"coreml": ".mlpackage", "torchscript": ".ptl"}  # .pte otherwise


class ManifestError(UsageError):
    """A sidecar that is missing, malformed, or disagrees with itself or its program."""


def _fail(source: str, problem: str) -> ManifestError:
    return ManifestError(f"{source}: {problem}")


def _int(value: Any, name: str, source: str, minimum: int | None = None) -> int:
    return check_integer(value, name, minimum, error=lambda problem: _fail(source, problem))


@dataclass(frozen=True)
class ShapeSpec:
    """A fixed ``height x width`` input, or a dynamic range ``min_size..max_size`` for H and W.

    Dynamic sizes are multiples of :data:`DYNAMIC_MULTIPLE`, at least :data:`MIN_DYNAMIC`.
    """

    height: int | None = None
    width: int | None = None
    min_size: int | None = None
    max_size: int | None = None

    def __post_init__(self) -> None:
        source = "shape"
        if self.min_size is not None or self.max_size is not None:
            if self.height is not None or self.width is not None:
                raise _fail(source, "give either height x width or a min:max range, not both")
            lo = _int(self.min_size, "min", source, MIN_DYNAMIC)
            hi = _int(self.max_size, "max", source, lo)
            if lo % DYNAMIC_MULTIPLE or hi % DYNAMIC_MULTIPLE:
                raise _fail(source, f"a dynamic range needs multiples of {DYNAMIC_MULTIPLE}, got {lo}:{hi}")
            sides = {"max": hi}
        else:
            sides = {"height": _int(self.height, "height", source, 1), "width": _int(self.width, "width", source, 1)}
        for name, side in sides.items():
            if side > MAX_SIDE:
                raise _fail(source, f"{name} {side} is larger than the largest program input side, {MAX_SIDE}")

    @property
    def dynamic(self) -> bool:
        return self.min_size is not None

    @property
    def example(self) -> tuple[int, int]:
        """The (H, W) a program of this shape is traced at."""
        return (self.min_size, self.min_size) if self.dynamic else (self.height, self.width)

    @property
    def tile(self) -> int | None:
        """The side of a square fixed shape (what tilers cut), else ``None``."""
        return self.height if not self.dynamic and self.height == self.width else None

    @property
    def largest_tile(self) -> int:
        """The largest square tile a program of this shape accepts."""
        return self.max_size if self.dynamic else min(self.height, self.width)

    def __str__(self) -> str:
        return f"{self.min_size}:{self.max_size}" if self.dynamic else f"{self.height}x{self.width}"

    @classmethod
    def parse(cls, text: str) -> "ShapeSpec":
        """``128x128`` (fixed) or ``16:512`` (dynamic H and W, multiples of 8), sides at most
        :data:`MAX_SIDE`."""
        try:
            if ":" in text:
                lo, hi = (int(v) for v in text.split(":"))
                return cls(min_size=lo, max_size=hi)
            h, w = (int(v) for v in text.lower().split("x"))
            return cls(height=h, width=w)
        except (ValueError, ManifestError):
            raise UsageError(
                f"invalid --shape {text!r}: use HxW for a fixed tile (e.g. 128x128) or MIN:MAX for a "
                f"dynamic range with multiples of {DYNAMIC_MULTIPLE}, MIN >= {MIN_DYNAMIC} (e.g. 16:512); sides up to "
                f"{MAX_SIDE}"
            ) from None

    def dynamic_shapes(self) -> dict | None:
        """``torch.export`` dynamic shapes for an input named ``x`` (``None`` when fixed)."""
        if not self.dynamic:
            return None
        import torch

        lo, hi = self.min_size // DYNAMIC_MULTIPLE, self.max_size // DYNAMIC_MULTIPLE
        dim_h = torch.export.Dim("h8", min=lo, max=hi)
        dim_w = torch.export.Dim("w8", min=lo, max=hi)
        return {"x": {2: DYNAMIC_MULTIPLE * dim_h, 3: DYNAMIC_MULTIPLE * dim_w}}

    def to_dict(self) -> dict[str, Any]:
        if self.dynamic:
            return {"dynamic": True, "min": self.min_size, "max": self.max_size, "multiple": DYNAMIC_MULTIPLE}
        return {"dynamic": False, "height": self.height, "width": self.width}

    @classmethod
    def from_dict(cls, data: Any, source: str = "shape") -> "ShapeSpec":
        if not isinstance(data, dict) or not isinstance(data.get("dynamic"), bool):
            raise _fail(source, f"shape must be an object with a boolean 'dynamic', got {data!r}")
        try:
            if data["dynamic"]:
                if data.get("multiple") != DYNAMIC_MULTIPLE:
                    raise _fail(source, f"shape.multiple must be {DYNAMIC_MULTIPLE}, got {data.get('multiple')!r}")
                return cls(min_size=data.get("min"), max_size=data.get("max"))
            return cls(height=data.get("height"), width=data.get("width"))
        except ManifestError as exc:
            raise _fail(source, str(exc).removeprefix("shape: ")) from None


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages an artifact depends on, as recorded in sidecars."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("lmfn-edge", "torch", "executorch", "coremltools", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def artifact_name(model: str, target: str, precision: str) -> str:
    """``{model}_{backend}_{precision}.pte`` as in ExecuTorch's examples."""
    return f"{model}_{target.replace('-', '_')}_{precision}{SUFFIX.get(target, '.pte')}"


def sidecar_path(artifact: str | Path) -> Path:
    """Where the sidecar of ``artifact`` lives: ``<artifact>.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


@dataclass(frozen=True)
class Manifest:
    """The sidecar of one exported program (format ``lmfn-edge-manifest``, version 1).

    Attributes:
        model: ``lmfn_x{scale}``.
        scale: Upscaling factor.
        config: The ``LMFNConfig`` the program was exported from, as a dict.
        target: One of :data:`TARGETS`.
        precision: One of the target's :data:`PRECISIONS`.
        artifact: File name of the program.
        shape: Input shape (fixed tile or dynamic range).
        overlap: LR pixels neighbouring tiles share when a runtime tiles an image.
        weights: Where the weights came from: ``source``, ``sha256`` (and, for int8 programs,
            ``quantization``: method, float weights, details).
        packages: Package versions that produced the program.
        delegation: Delegation summary of an ExecuTorch program (subgraphs, ops left outside).
        export_seconds: Wall time of the export.
        artifact_sha256: SHA-256 of a single-file program, so a sidecar paired with another
            program is detected; ``None`` for folder artifacts (.mlpackage).
        verification: The Core ML numeric check, when ``export --verify`` ran it.

    The fixed parts of the contract (``layout`` NCHW, float32 RGB ``input`` named ``lr`` in
    [0, 1], ``output`` named ``sr``, unclamped) are written to every sidecar and checked on read.
    """

    model: str
    scale: int
    config: dict[str, Any]
    target: str
    precision: str
    artifact: str
    shape: ShapeSpec
    overlap: int
    weights: dict[str, Any]
    packages: dict[str, str] = field(default_factory=package_versions)
    delegation: dict[str, Any] | None = None
    export_seconds: float | None = None
    artifact_sha256: str | None = None
    verification: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.validate("sidecar")

    def validate(self, source: str) -> None:
        """Raise :class:`ManifestError` (naming ``source``) if any field is unusable."""
        scale = _int(self.scale, "scale", source)
        if scale not in SCALES:
            raise _fail(source, f"scale must be one of {', '.join(map(str, SCALES))}, got {scale}")
        if self.model != model_name(scale):
            raise _fail(source, f"model {self.model!r} does not match scale {scale} (expected {model_name(scale)!r})")
        try:
            config = LMFNConfig.from_dict(self.config)
        except ValueError as exc:
            raise _fail(source, f"invalid LMFN config: {exc}") from None
        if config.scale != scale:
            raise _fail(source, f"config has scale {config.scale}, but the sidecar says scale {scale}")
        if self.target not in TARGETS:
            raise _fail(source, f"unknown target {self.target!r}; one of {', '.join(TARGETS)}")
        if self.precision not in PRECISIONS[self.target]:
            raise _fail(source, f"{self.target} has no precision {self.precision!r}; one of "
                                f"{', '.join(PRECISIONS[self.target])}")
        if not isinstance(self.artifact, str) or not self.artifact or "/" in self.artifact:
            raise _fail(source, f"artifact must be a file name, got {self.artifact!r}")
        if not isinstance(self.shape, ShapeSpec):
            raise _fail(source, f"shape must be a ShapeSpec, got {self.shape!r}")
        overlap = _int(self.overlap, "overlap", source, 0)
        if overlap >= self.shape.largest_tile:
            raise _fail(source, f"overlap must be smaller than the tile: overlap {overlap} with shape {self.shape}")
        if not isinstance(self.weights, dict) or not isinstance(self.weights.get("source"), str):
            raise _fail(source, f"weights must be an object with a 'source' string, got {self.weights!r}")
        sha = self.weights.get("sha256")
        if sha is not None and not _is_sha256(sha):
            raise _fail(source, f"weights.sha256 must be a hex SHA-256 or null, got {sha!r}")
        if self.artifact_sha256 is not None and not _is_sha256(self.artifact_sha256):
            raise _fail(source, f"artifact_sha256 must be a hex SHA-256 or null, got {self.artifact_sha256!r}")
        if not isinstance(self.packages, dict):
            raise _fail(source, f"packages must be an object, got {self.packages!r}")
        for name in ("delegation", "verification"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise _fail(source, f"{name} must be an object or null, got {value!r}")
        if self.export_seconds is not None and (
            isinstance(self.export_seconds, bool)
            or not isinstance(self.export_seconds, (int, float))
            or not math.isfinite(self.export_seconds)
        ):
            raise _fail(source, f"export_seconds must be a number, got {self.export_seconds!r}")

    @property
    def tile(self) -> int | None:
        return self.shape.tile

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "scale": self.scale,
            "config": self.config,
            "target": self.target,
            "precision": self.precision,
            "artifact": self.artifact,
            "layout": LAYOUT,
            "input": {"name": INPUT_NAME, "dtype": "float32", "channels": "RGB"},
            "output": {"name": OUTPUT_NAME, "dtype": "float32", "channels": "RGB"},
            "input_range": INPUT_RANGE,
            "output_range": OUTPUT_RANGE,
            "shape": self.shape.to_dict(),
            "tile": self.tile,
            "overlap": self.overlap,
            "weights": self.weights,
            "packages": self.packages,
            "delegation": self.delegation,
            "export_seconds": self.export_seconds,
            "artifact_sha256": self.artifact_sha256,
        }
        if self.verification is not None:
            out["verification"] = self.verification
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "sidecar") -> "Manifest":
        """Validate a parsed sidecar; unknown keys are allowed (newer writers add fields)."""
        if not isinstance(data, dict):
            raise _fail(source, f"a sidecar must be a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise _fail(source, f"not an lmfn-edge sidecar (format {data.get('format')!r}, expected {FORMAT!r})")
        if data.get("version") != VERSION:
            raise _fail(source, f"unsupported sidecar version {data.get('version')!r}; this SDK reads version "
                                f"{VERSION} (re-export the model)")
        required = ("model", "scale", "config", "target", "precision", "artifact", "shape", "overlap", "weights",
                    "layout", "input", "output", "input_range")
        missing = [k for k in required if k not in data]
        if missing:
            raise _fail(source, f"missing {', '.join(repr(k) for k in missing)}")
        if data["layout"] != LAYOUT:
            raise _fail(source, f"layout must be {LAYOUT!r}, got {data['layout']!r}")
        if data["input_range"] != INPUT_RANGE:
            raise _fail(source, f"input_range must be [0, 1], got {data['input_range']!r}")
        for key, name in (("input", INPUT_NAME), ("output", OUTPUT_NAME)):
            if not isinstance(data[key], dict) or data[key].get("name") != name:
                raise _fail(source, f"{key} must be an object named {name!r}, got {data[key]!r}")
        shape = ShapeSpec.from_dict(data["shape"], source)
        if data.get("tile") != shape.tile:
            raise _fail(source, f"tile {data.get('tile')!r} disagrees with shape {shape} (expected {shape.tile!r})")
        try:
            manifest = cls(
                **{f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name not in ("shape", "packages")},
                shape=shape,
                packages=data.get("packages") or {},
            )
        except ManifestError as exc:
            raise _fail(source, str(exc).removeprefix("sidecar: ")) from None
        return manifest


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def read_manifest(artifact: str | Path) -> Manifest:
    """The validated sidecar of ``artifact`` (``<artifact>.json``)."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ManifestError(f"{artifact} has no sidecar {path.name}; re-export it with python -m lmfn_edge.export")
    try:
        data = read_json_file(path, MAX_SIDECAR_BYTES)
    except MetadataError as exc:
        raise ManifestError(str(exc)) from None
    return Manifest.from_dict(data, str(path))


MAX_SIDECAR_BYTES = 256 * 1024  # 2-3 kB; 10 kB with a Core ML report, 16-18 kB with a module map
