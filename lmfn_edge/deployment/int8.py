"""Int8 parameters: an int8 LMFN as data (safetensors), from which a program of any shape is built.

A QAT run (``quantization/``) ends with a PT2E-prepared graph of the deploy form whose state is
everything int8 needs: the QAT-tuned float weights, and per fake-quant its frozen scale, zero
point and observed range. :func:`save_int8_params` writes that state as safetensors with the
LMFN config and where it came from in the metadata (format ``lmfn-edge-int8``); nothing in it
is pickled, and it is a fraction of a fixed program's size. :func:`int8_program` rebuilds the
prepared graph from the config (:func:`lmfn_edge.deployment.pt2e.prepare`), loads the state
(strictly: the same keys and shapes, so parameters made for another deploy form or another
torch release are one clear error rather than a wrong program), freezes the observers,
converts, and exports at the requested fixed shape (off the captured graph's grid of multiples
of 8, the program pads its input and crops its output). The package embeds such a file per
scale (``lmfn_edge/weights/``), so
``python -m lmfn_edge.export --precision int8`` needs no data and no QAT run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..manifest import ShapeSpec, package_versions
from ..registry import shipped
from .quantized import check_record, record_config

__all__ = ["FORMAT", "Int8Info", "Int8ParamsError", "dynamic_program", "int8_program", "load_int8_params",
           "read_int8_params", "save_int8_params", "variant_program"]

FORMAT = "lmfn-edge-int8"
VERSION = 1
METHODS = ("qat", "ptq", "dynamic")  # dynamic: built from float weights, never stored
_RESIZED_ON_LOAD = (".min_val", ".max_val")
# Not stored: what the config rebuilds (the deploy form's fixed one-hot and shift tensors) and
# what a frozen fake-quant derives from its observed range (scale, zero point, flags, eps).
# A converted program depends on the observed ranges only (``calculate_qparams``).
_FAKE_QUANT_DERIVED = (".scale", ".zero_point", ".eps", ".fake_quant_enabled", ".observer_enabled")
_DEPLOY_CONSTANTS = ("repeat_weight", "unfold_weight", "skew_weight", "shifts", "ones")


def _derived(name: str) -> bool:
    """A state entry the loader rebuilds rather than reads (see ``_FAKE_QUANT_DERIVED``)."""
    if "activation_post_process" in name:
        return name.endswith(_FAKE_QUANT_DERIVED)
    return name.rsplit(".", 1)[-1] in _DEPLOY_CONSTANTS or name.startswith("_tensor_constant")


class Int8ParamsError(UsageError):
    """Int8 parameters that are missing, malformed, or do not fit this SDK's int8 graph."""


@dataclass
class Int8Info:
    """What an int8 parameters file records besides its tensors.

    Attributes:
        config: The LMFN architecture (``LMFNConfig.to_dict()``).
        method: ``qat`` (or ``ptq``); ``dynamic`` for a program built from float weights (never a file).
        weights: ``{"source", "sha256"}`` of the float weights the parameters were tuned from.
        details: Method facts (QAT steps and schedule).
        packages: Package versions that produced the file.
    """

    config: dict
    method: str = "qat"
    weights: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    packages: dict = field(default_factory=package_versions)

    def __post_init__(self) -> None:
        check_record(self, METHODS, Int8ParamsError)

    @property
    def lmfn_config(self):
        return record_config(self, Int8ParamsError)

    def metadata(self) -> dict[str, str]:
        return {"format": FORMAT, "version": str(VERSION), "lmfn_config": json.dumps(self.config),
                "method": self.method, "weights": json.dumps(self.weights), "details": json.dumps(self.details),
                "packages": json.dumps(self.packages)}


def save_int8_params(prepared, path: str | Path, info: Int8Info) -> None:
    """Write a prepared (QAT) graph's state and ``info``, atomically."""
    from safetensors.torch import save

    from ..files import atomic_write_bytes

    state = {k: v.detach().clone().contiguous().cpu() for k, v in prepared.state_dict().items() if not _derived(k)}
    atomic_write_bytes(path, save(state, metadata=info.metadata()))


def read_int8_params(path: str | Path) -> tuple[dict, Int8Info]:
    """The tensors and the info of an int8 parameters file, with one-line errors."""
    from ..model.weights import metadata_json, read_safetensors

    path = Path(path)
    state, meta = read_safetensors(path, Int8ParamsError, "int8 parameters file")
    if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
        raise Int8ParamsError(f"{path} is not lmfn-edge int8 parameters (format {meta.get('format')!r}, version "
                              f"{meta.get('version')!r}; expected {FORMAT!r} version {VERSION})")
    if meta.get("method") == "dynamic":  # dynamic programs are built from float weights; no file holds one
        raise Int8ParamsError(f"{path}: method 'dynamic' is not stored in int8 parameters; export --precision "
                              "int8-dynamic from the float weights")
    fields = {key: metadata_json(meta, key, str(path), Int8ParamsError, default) for key, default in
              (("lmfn_config", None), ("weights", "{}"), ("details", "{}"), ("packages", "{}"))}
    try:
        info = Int8Info(config=fields["lmfn_config"], method=meta.get("method", ""), weights=fields["weights"],
                        details=fields["details"], packages=fields["packages"])
    except Int8ParamsError as exc:
        raise Int8ParamsError(f"{path}: {exc}") from None
    return state, info


def load_int8_params(path: str | Path) -> tuple[Any, Int8Info]:
    """The prepared int8 graph of a parameters file, observers frozen, in eval mode."""
    import torch

    from ..model import LMFN
    from .pt2e import prepare, pt2e_modules

    state, info = read_int8_params(path)
    state = {k: v for k, v in state.items() if not _derived(k)}  # rebuilt below, whatever a file holds
    prepared = prepare(LMFN(info.lmfn_config), qat=True)
    own = prepared.state_dict()
    missing, unexpected = sorted(k for k in set(own) - set(state) if not _derived(k)), sorted(set(state) - set(own))
    # Observer ranges and fake-quant scales start empty (per-channel) and are resized on load.
    shapes = sorted(k for k in set(own) & set(state)
                    if own[k].shape != state[k].shape and not k.endswith(_RESIZED_ON_LOAD))
    dtypes = sorted(k for k in set(own) & set(state) if own[k].dtype != state[k].dtype)
    if missing or unexpected or shapes or dtypes:
        detail = "; ".join(f"{what} {names[:2]}" for what, names in
                           (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes),
                            ("wrong dtype", dtypes)) if names)
        raise Int8ParamsError(f"{path} does not fit this SDK's int8 graph ({detail}); it was made for another deploy "
                              "form or torch release: regenerate it with python -m quantization.qat")
    with torch.no_grad():
        prepared.load_state_dict(state, strict=False)  # the derived entries keep the fresh graph's values
        _, pt2e, _ = pt2e_modules()
        prepared.apply(pt2e.disable_observer)
        for module in prepared.modules():
            if hasattr(module, "calculate_qparams") and hasattr(module, "fake_quant_enabled"):
                scale, zero_point = module.calculate_qparams()
                module.scale.resize_(scale.shape).copy_(scale)
                module.zero_point.resize_(zero_point.shape).copy_(zero_point)
                module.fake_quant_enabled[0] = 1
    prepared.eval()
    return prepared, info


def check_int8_shape(shape: ShapeSpec) -> ShapeSpec:
    """Int8 programs are built at a fixed shape (any size: off the captured graph's grid of
    multiples of 8 they pad and crop, :class:`lmfn_edge.deployment.pt2e.OnGrid`)."""
    if shape.dynamic:
        raise Int8ParamsError(f"int8 programs take a fixed --shape HxW (the int8 graph is converted at one size), "
                              f"got the range {shape}")
    return shape


def int8_program(params: str | Path, shape: ShapeSpec, precision: str = "int8"):
    """``(ExportedProgram, Int8Info)``: the converted q/dq program at ``shape`` (batch 1) of the
    static variant ``precision`` (``int8``, or ``int8-mixed`` with the package's fp32 groups;
    :mod:`lmfn_edge.deployment.variants`)."""
    from .pt2e import export_converted
    from .variants import convert_islands, variant_groups

    check_int8_shape(shape)
    prepared, info = load_int8_params(params)
    keep = variant_groups(precision, info.lmfn_config)
    info.details = {**info.details, "fp32_groups": list(keep)}
    return export_converted(convert_islands(prepared, keep), shape.height, shape.width), info


def dynamic_program(model, shape: ShapeSpec, weights: dict | None = None):
    """``(ExportedProgram, Int8Info)``: the dynamic-range int8 (``int8-dynamic``) q/dq program of
    a float LMFN at ``shape`` (batch 1), with the package's fp32 groups for its scale."""
    from .pt2e import export_converted
    from .variants import DYNAMIC, dynamic_converted, variant_groups

    check_int8_shape(shape)
    keep = variant_groups(DYNAMIC, model.config)
    info = Int8Info(config=model.config.to_dict(), method="dynamic", weights=dict(weights or {}),
                    details={"fp32_groups": list(keep)})
    return export_converted(dynamic_converted(model, keep), shape.height, shape.width), info


def variant_program(precision: str, scale: int, shape: ShapeSpec):
    """``(ExportedProgram, Int8Info)`` of the int8 variant ``precision`` of the shipped
    ``lmfn_x{scale}``: from its embedded int8 parameters, or (``int8-dynamic``) its embedded
    float weights."""
    from .variants import DYNAMIC, VARIANTS, VariantError

    if precision not in VARIANTS:
        raise VariantError(f"unknown int8 variant {precision!r}; variants are {', '.join(VARIANTS)}")
    if precision == DYNAMIC:
        from ..model.weights import load_model

        model, weights = load_model(scale)
        return dynamic_program(model, shape, weights.to_dict())
    return int8_program(shipped(scale).int8_path, shape, precision)
