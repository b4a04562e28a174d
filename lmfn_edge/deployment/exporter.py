"""LMFN to artifacts a phone runs, each with a JSON sidecar (:mod:`lmfn_edge.manifest`).

Targets:

==================  ===============================================  ==================
target              artifact                                         precisions
==================  ===============================================  ==================
xnnpack             ExecuTorch .pte, XNNPACK delegate (Android CPU)  fp32, int8 (QAT), int8-dynamic
portable            ExecuTorch .pte, portable kernels only           fp32
coreml              Core ML .mlpackage (ML program, iOS 17+)         fp16 (default), fp32
executorch-coreml   ExecuTorch .pte with the Core ML delegate        fp16
torchscript         lite-interpreter .ptl (deprecated upstream)      fp32
==================  ===============================================  ==================

Every target exports the deploy form (:func:`lmfn_edge.model.deploy.to_deploy`). Shapes are
either a fixed tile (``128x128``; the runtime and the Android app tile larger images) or a
dynamic range (``16:512``) whose H and W are multiples of 8.

Three entry points: :func:`export` (a float model), :func:`export_quantized` (an int8 program
from ``quantization/``) and :class:`ExportRequest` (the command line's options as values:
checked as a whole before any work, then run). All write through :func:`_write`: the artifact
and its sidecar are built next to their final paths and replace what is there only when both
are complete (and, with ``verify``, checked), so a failing export leaves existing files as they
were.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checks import check_integer
from ..errors import LmfnEdgeError
from ..files import atomic_write_text, check_output, staged
from ..manifest import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    PRECISIONS,
    SUFFIX,
    TARGETS,
    Manifest,
    ShapeSpec,
    artifact_name,
    sidecar_path,
)
from ..model.weights import load_model, sha256_file
from ..registry import model_name, shipped
from .lowering import Delegation, ExportError, convert_coreml, lower_to_executorch
from .variants import ANDROID_DEFAULT, DYNAMIC, VARIANTS

__all__ = ["ExportRequest", "ExportResult", "VerificationFailed", "export", "export_program", "export_quantized"]

Log = Callable[[str], None]


class VerificationFailed(LmfnEdgeError):
    """``verify`` found the Core ML program outside its tolerance; nothing was replaced."""


@dataclass
class ExportResult:
    """An artifact that was written, its sidecar, and the Core ML check when one ran."""

    path: Path
    manifest: Manifest
    manifest_path: Path
    seconds: float
    verification: Any = None  # lmfn_edge.deployment.coreml_verify.VerifyReport

    def summary(self) -> str:
        d = self.manifest.delegation
        text = f"wrote {self.path} and {self.manifest_path.name} in {self.seconds:.0f} s"
        if d:
            text += (f"; {d['subgraphs']} delegated subgraph(s), non-delegated compute ops: "
                     f"{d['non_delegated_compute_ops'] or 'none'}")
        return text


def export_program(model: torch.nn.Module, shape: ShapeSpec) -> torch.export.ExportedProgram:
    """``torch.export`` of the deploy form at ``shape`` (batch 1, NCHW float32 in [0, 1])."""
    from ..model.deploy import to_deploy

    x = torch.rand(1, 3, *shape.example)
    return torch.export.export(to_deploy(model), (x,), dynamic_shapes=shape.dynamic_shapes())


def check_target(target: str, precision: str | None) -> str:
    """The precision to use (the target's default when ``None``); refuses unknown combinations."""
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    precision = precision or PRECISIONS[target][0]
    if precision not in PRECISIONS[target]:
        why = " (XNNPACK does not delegate fp16 GELU)" if target == "xnnpack" and precision == "fp16" else ""
        raise ExportError(f"{target} does not support {precision}{why}; supported: {', '.join(PRECISIONS[target])}")
    return precision


def check_overlap(overlap: int, shape: ShapeSpec) -> int:
    check_integer(overlap, "--overlap", 0, error=ExportError)
    if overlap >= shape.largest_tile:
        raise ExportError(f"--overlap {overlap} must be smaller than the tile ({shape}); pass a smaller --overlap "
                          "or a larger --shape")
    return overlap


def export(
    model: torch.nn.Module,
    target: str,
    output: str | Path,
    shape: ShapeSpec | None = None,
    precision: str | None = None,
    overlap: int = DEFAULT_OVERLAP,
    weights: Any = None,
    verify: bool = False,
    log: Log | None = None,
) -> ExportResult:
    """Export a float LMFN (training form) to ``target``.

    Args:
        model: Trained LMFN.
        target: One of :data:`~lmfn_edge.manifest.TARGETS`.
        output: Artifact path (.pte / .mlpackage / .ptl); the sidecar goes to ``<output>.json``.
        shape: Input shape; defaults to a fixed 128x128 tile.
        precision: Defaults to fp16 for Core ML and fp32 elsewhere; int8 programs go through
            :func:`export_quantized`.
        overlap: Tile overlap the runtime should use with the artifact.
        weights: Where the weights came from (a ``WeightsRecord`` or a dict), for the sidecar.
        verify: Core ML only: evaluate the program with numpy on held-out photos against
            ``model`` and replace nothing unless it passes (docs/coreml-verification.md).
        log: Receives progress and report lines (e.g. ``print``); silent when ``None``.

    Raises:
        ExportError: An unsupported target/precision/shape combination (before any work).
        VerificationFailed: ``verify`` found the program outside its tolerance.
    """
    shape = shape or ShapeSpec(DEFAULT_TILE, DEFAULT_TILE)
    precision = check_target(target, precision)
    if precision.startswith("int8"):
        raise ExportError("int8 programs are built first (int8_program, dynamic_program or quantization/); "
                          "lower them with export_quantized")
    check_overlap(overlap, shape)
    if verify and target != "coreml":
        raise ExportError("--verify applies to --target coreml")
    start = time.perf_counter()
    say = log or (lambda line: None)
    if target == "torchscript":
        say("warning: TorchScript and the lite interpreter are deprecated upstream; prefer --target xnnpack")
        build = _torchscript_builder(model, shape)
    else:
        say(f"torch.export of the deploy form at {shape} ...")
        build = _builder(export_program(model, shape), target, precision, model.config.scale, say)
    return _write(build, model.config, target, precision, Path(output), shape, overlap, _record(weights), start,
                  say, model if verify else None)


def export_quantized(
    program: torch.export.ExportedProgram,
    info: Any,
    target: str,
    output: str | Path,
    overlap: int = DEFAULT_OVERLAP,
    source: dict | None = None,
    log: Log | None = None,
    verify: bool = False,
    precision: str = "int8",
) -> ExportResult:
    """Lower an int8 program: from :func:`~lmfn_edge.deployment.quantized.load_quantized` (a
    .pt2) or :func:`~lmfn_edge.deployment.int8.int8_program` (int8 parameters).

    The program fixes its own input (its example input's shape, batch 1) and carries its
    weights; the sidecar traces it to the float weights it came from.

    Args:
        program: The converted q/dq program.
        info: Its ``QuantizedInfo`` or ``Int8Info``.
        target: ``xnnpack`` (an int8 .pte) or ``coreml`` (a W8A8 ML program, iOS 17+).
        output: The artifact path; the sidecar goes to ``<output>.json``.
        overlap: Tile overlap the runtime should use.
        source: ``{"source", "sha256"}`` of the program file, for the sidecar.
        log: Receives progress lines.
        verify: Core ML only: evaluate the package with numpy against the q/dq program itself.
        precision: The int8 variant the program is (docs/quantization.md "Int8 variants").
    """
    if not precision.startswith("int8"):
        raise ExportError(f"export_quantized lowers int8 programs, not {precision}")
    precision = check_target(target, precision)
    (example,) = program.example_inputs[0]
    shape = ShapeSpec(int(example.shape[2]), int(example.shape[3]))
    check_overlap(overlap, shape)
    if verify and target != "coreml":
        raise ExportError("--verify applies to --target coreml")
    weights = {**(source or {"source": "in-memory program", "sha256": None}),
               "quantization": {"method": info.method, "weights": info.weights, "details": info.details}}
    say = log or (lambda line: None)
    config = info.lmfn_config
    build = _builder(program, target, precision, config.scale, say)
    reference = _QdqReference(program, config) if verify else None
    return _write(build, config, target, precision, Path(output), shape, overlap, weights, time.perf_counter(), say,
                  reference)


class _QdqReference(torch.nn.Module):
    """What a W8A8 Core ML package is checked against: the q/dq program it was converted from."""

    def __init__(self, program: torch.export.ExportedProgram, config) -> None:
        super().__init__()
        self.module, self.config = program.module(), config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _record(weights: Any) -> dict:
    if weights is None:
        return {"source": "in-memory model", "sha256": None}
    return weights.to_dict() if hasattr(weights, "to_dict") else dict(weights)


Builder = Callable[[Path], "Delegation | None"]


def _builder(ep: torch.export.ExportedProgram, target: str, precision: str, scale: int, say: Log) -> Builder:
    """Writes ``ep`` lowered to ``target`` at a path; returns the delegation summary (.pte)."""

    def build(path: Path) -> Delegation | None:
        if target == "coreml":
            say(f"converting to Core ML ({'W8A8' if precision == 'int8' else precision}) ...")
            mlmodel = convert_coreml(ep, precision)
            mlmodel.short_description = f"LMFN x{scale} super-resolution (lmfn-edge)"
            mlmodel.save(str(path))
            return None
        backend = {"xnnpack": "xnnpack", "portable": "portable", "executorch-coreml": "coreml"}[target]
        say(f"lowering to {backend} and writing the ExecuTorch program ...")
        program, delegation = lower_to_executorch(ep, backend)
        path.write_bytes(program.buffer)
        return delegation

    return build


def _torchscript_builder(model: torch.nn.Module, shape: ShapeSpec) -> Builder:
    def build(path: Path) -> None:
        from ..model.deploy import to_deploy

        traced = torch.jit.trace(to_deploy(model), torch.rand(1, 3, *shape.example), check_trace=False)
        traced._save_for_lite_interpreter(str(path))

    return build


def _write(build: Builder, config, target: str, precision: str, output: Path, shape: ShapeSpec, overlap: int,
           weights: dict, start: float, say: Log, reference) -> ExportResult:
    """Build the artifact and its sidecar beside ``output``; replace the old ones when both are done."""
    verification = None
    with ExitStack() as stack:
        staging = stack.enter_context(staged(output))
        staging_sidecar = stack.enter_context(staged(sidecar_path(output)))
        delegation = build(staging)
        if reference is not None:
            verification = _verify(staging, reference, say)
        manifest = Manifest(
            model=model_name(config.scale),
            scale=config.scale,
            config=config.to_dict(),
            target=target,
            precision=precision,
            artifact=output.name,
            shape=shape,
            overlap=overlap,
            weights=weights,
            delegation=delegation.to_dict() if delegation else None,
            export_seconds=round(time.perf_counter() - start, 1),
            artifact_sha256=sha256_file(staging) if staging.is_file() else None,
            verification=verification.to_dict() if verification is not None else None,
        )
        atomic_write_text(staging_sidecar, manifest.to_json())
    return ExportResult(output, manifest, sidecar_path(output), time.perf_counter() - start, verification)


def _verify(path: Path, reference: torch.nn.Module, say: Log):
    from .coreml_verify import default_photos, verify

    say("verifying the Core ML program with numpy on held-out photos ...")
    images, names = default_photos()
    report = verify(path, reference, images, names=names)
    for line in report.summary().splitlines():
        say(line)
    if not report.passed:
        raise VerificationFailed(f"the Core ML program failed verification ({report.tolerance}); "
                                 "nothing was written")
    return report


@dataclass(frozen=True)
class ExportRequest:
    """``python -m lmfn_edge.export``'s options as values; :meth:`run` does what the command does.

    Every combination is checked by :meth:`check` before any work (a bad flag never costs a
    minute of lowering, and never replaces an existing artifact). Fields mirror the flags.
    """

    target: str = "xnnpack"
    scale: int | None = None
    weights: str | None = None
    random_init: bool = False
    precision: str | None = None
    quantized: str | None = None
    shape: str | None = None
    overlap: int | None = None
    output: str | None = None
    android: str | None = None
    verify: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self) -> tuple[ShapeSpec, str]:
        """The shape and precision the export will use; raises ``ExportError`` (or another
        one-line usage error) for any combination of options that cannot be done as asked.
        What depends on the inputs (their scale, a program's tile, the output path) is checked
        by :meth:`run` once they are read, still before any lowering."""
        quantized = self.quantized is not None
        # --android ships the int8 variant docs/quantization.md chose, when it can be built from
        # what was given: a variant made from the embedded int8 parameters has none for float
        # weights of the user's own (--weights, --random-init, overrides), which then get fp32.
        floats = self.weights or self.random_init or any(self.overrides.values())
        android = self.android is not None and self.target == "xnnpack"
        android_default = ANDROID_DEFAULT if ANDROID_DEFAULT and (not floats or not VARIANTS[ANDROID_DEFAULT][1]) else None
        default = "int8" if quantized else (android_default if android else None)
        precision = check_target(self.target, self.precision or default)
        if precision in VARIANTS and VARIANTS[precision][1]:
            clashes = [f for f, on in (("--weights", self.weights), ("--random-init", self.random_init),
                                       *((f"--{k.replace('_', '-')}", v) for k, v in self.overrides.items())) if on]
            if clashes:
                raise ExportError(f"{precision} programs are built from int8 parameters (the embedded ones, or "
                                  f"--quantized from quantization/), which fix the weights and architecture; drop "
                                  f"{', '.join(clashes)} (or quantize them first: python -m quantization.qat, or "
                                  f"use --precision {DYNAMIC}, built from float weights)")
            if precision != "int8" and self._from_program():
                raise ExportError(f"--quantized {self.quantized} is a finished int8 program; {precision} is built "
                                  "from int8 parameters (.safetensors)")
        elif quantized:
            raise ExportError(f"--quantized gives an int8 program from int8 parameters; --precision {precision} "
                              "contradicts it")
        if self.verify and self.target != "coreml":
            raise ExportError(f"--verify checks Core ML programs; it does not apply to --target {self.target}")
        shape = ShapeSpec.parse(self.shape) if self.shape is not None else ShapeSpec(DEFAULT_TILE, DEFAULT_TILE)
        if self.android is not None:
            if self.target not in ("xnnpack", "portable") or shape.tile is None:
                raise ExportError("--android needs --target xnnpack (or portable) with a square fixed --shape")
            if not (Path(self.android) / "app").is_dir():
                raise ExportError(f"{self.android} is not the Android demo project (no app/ folder)")
        if precision in VARIANTS and not self._from_program():
            from .int8 import check_int8_shape

            check_int8_shape(shape)
        if not self._from_program():  # a .pt2's tile is checked against --shape once it is read
            check_overlap(DEFAULT_OVERLAP if self.overlap is None else self.overlap, shape)
        suffix = SUFFIX.get(self.target, ".pte")
        if self.output is not None and Path(self.output).suffix.lower() != suffix:
            raise ExportError(f"--output {self.output} must end in {suffix} for --target {self.target}")
        return shape, precision

    def _from_program(self) -> bool:
        """``--quantized`` names a fixed-shape program (.pt2) rather than int8 parameters."""
        return self.quantized is not None and Path(self.quantized).suffix.lower() == ".pt2"

    def output_path(self, scale: int, precision: str) -> Path:
        """``--output``, or ``artifacts/{model}_{target}_{precision}{suffix}``; refused if it is a
        folder, one of the inputs, or not writable."""
        output = Path(self.output) if self.output else Path("artifacts") / artifact_name(
            model_name(scale), self.target, precision)
        check_output(output, inputs=(self.weights, self.quantized), flag="--output")
        check_output(sidecar_path(output), inputs=(self.weights, self.quantized), flag="the sidecar")
        return output

    def run(self, log: Log | None = None) -> ExportResult:
        """Check, load the model (or the int8 program or parameters), export, install into the app."""
        shape, precision = self.check()
        say = log or (lambda line: None)
        overlap = DEFAULT_OVERLAP if self.overlap is None else self.overlap
        if precision in VARIANTS:
            program, info, source = self._int8(shape, say, precision)
            (example,) = program.example_inputs[0]
            overlap = check_overlap(overlap, ShapeSpec(int(example.shape[2]), int(example.shape[3])))
            output = self.output_path(info.lmfn_config.scale, precision)
            say(f"exporting the {precision} program ({info.method}) to {self.target} ...")
            result = export_quantized(program, info, self.target, output, overlap, source, say, self.verify, precision)
        else:
            model, weights = load_model(self.scale, self.weights, self.random_init, **self.overrides)
            output = self.output_path(model.config.scale, precision)
            if self.verify:
                from .coreml_verify import default_photos

                default_photos()  # fails now, not after the conversion, without scikit-image
            say(f"exporting {model_name(model.config.scale)} ({weights.source}) to {self.target} {precision} ...")
            result = export(model, self.target, output, shape, precision, overlap, weights, self.verify, say)
        if self.android is not None:
            from .android import install_android

            assets = install_android(result, self.android)
            say(f"installed lmfn.pte and lmfn.json into {assets}")
        return result

    def _check_scale(self, scale: int, what: str) -> None:
        if self.scale is not None and scale != self.scale:
            raise ExportError(f"{what.format(scale)}, but --scale is {self.scale}")

    def _int8(self, shape: ShapeSpec, say: Log, precision: str = "int8"):
        """``(program, info, source record)`` of the int8 program to lower: a .pt2 as it is, one
        built at ``shape`` from int8 parameters (``--quantized P.safetensors``, or the parameters
        the package embeds for ``--scale``), or, for ``int8-dynamic``, from float weights."""
        if precision == DYNAMIC:
            from .int8 import dynamic_program

            model, weights = load_model(self.scale, self.weights, self.random_init, **self.overrides)
            say(f"building the {DYNAMIC} program at {shape} from {weights.source} ...")
            program, info = dynamic_program(model, shape, weights.to_dict())
            return program, info, weights.to_dict()
        if self._from_program():
            from .quantized import QuantizedProgramError, load_quantized

            program, info = load_quantized(self.quantized)
            self._check_scale(info.lmfn_config.scale, f"{self.quantized} is an x{{}} program")
            if self.shape is not None and shape != ShapeSpec(info.tile, info.tile):
                raise QuantizedProgramError(f"{self.quantized} was exported at a {info.tile}x{info.tile} tile; "
                                            f"--shape {self.shape} cannot change it (drop --shape)")
            return program, info, {"source": str(self.quantized), "sha256": sha256_file(self.quantized)}
        from .int8 import int8_program, read_int8_params

        if self.quantized is not None:
            path, source = Path(self.quantized), str(self.quantized)
            if not path.is_file():
                raise ExportError(f"--quantized {path}: not found (int8 parameters .safetensors, or a .pt2 program)")
            _, info = read_int8_params(path)  # the metadata: fails before the program is built
            self._check_scale(info.lmfn_config.scale, f"{path} holds x{{}} int8 parameters")
        else:
            path = shipped(self.scale or 4).int8_path
            source = f"embedded:{path.name}"
        say(f"building the {precision} program at {shape} from {source} ...")
        program, info = int8_program(path, shape, precision)
        return program, info, {"source": source, "sha256": sha256_file(path)}
