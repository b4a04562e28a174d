"""``python -m lmfn_edge.export``: LMFN to artifacts a phone runs, each with a JSON sidecar.

Targets:

==================  ===============================================  ==================
target              artifact                                         precisions
==================  ===============================================  ==================
xnnpack             ExecuTorch .pte, XNNPACK delegate (Android CPU)  fp32, int8 (QAT)
portable            ExecuTorch .pte, portable kernels only           fp32
coreml              Core ML .mlpackage (ML program, iOS 17+)         fp16 (default), fp32
executorch-coreml   ExecuTorch .pte with the Core ML delegate        fp16
torchscript         lite-interpreter .ptl (deprecated upstream)      fp32
==================  ===============================================  ==================

Every target exports the deploy form (:func:`lmfn_edge.deploy.to_deploy`). Shapes are either a
fixed tile (``--shape 128x128``; the runtime and the Android app tile larger images) or a
dynamic range (``--shape 16:512``) whose H and W are multiples of 8: MSM pools by up to 8, and
with sizes that are multiples of 8 no shape-dependent padding is traced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import atomic_write_bytes, atomic_write_text
from .lowering import Delegation, ExportError, convert_coreml, lower_to_executorch

TARGETS = ("xnnpack", "portable", "coreml", "executorch-coreml", "torchscript")
PRECISIONS = {
    "xnnpack": ("fp32", "int8"),
    "portable": ("fp32",),
    "coreml": ("fp16", "fp32"),
    "executorch-coreml": ("fp16",),
    "torchscript": ("fp32",),
}
SUFFIX = {"coreml": ".mlpackage", "torchscript": ".ptl"}
DEFAULT_TILE = 128
DEFAULT_OVERLAP = 16  # LR pixels; a multiple of 8 keeps MSM's pooling grid aligned across tiles
DYNAMIC_MULTIPLE = 8
MANIFEST_FORMAT = "lmfn-edge-manifest"
MANIFEST_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "lr", "sr"


@dataclass(frozen=True)
class ShapeSpec:
    """A fixed ``height x width`` input, or a dynamic range ``min_size..max_size`` for H and W."""

    height: int | None = None
    width: int | None = None
    min_size: int | None = None
    max_size: int | None = None

    @property
    def dynamic(self) -> bool:
        return self.min_size is not None

    @property
    def example(self) -> tuple[int, int]:
        return (self.min_size, self.min_size) if self.dynamic else (self.height, self.width)

    @classmethod
    def parse(cls, text: str) -> "ShapeSpec":
        """``128x128`` (fixed) or ``16:512`` (dynamic H and W, multiples of 8)."""
        try:
            if ":" in text:
                lo, hi = (int(v) for v in text.split(":"))
                if lo < 16 or hi < lo or lo % DYNAMIC_MULTIPLE or hi % DYNAMIC_MULTIPLE:
                    raise ValueError
                return cls(min_size=lo, max_size=hi)
            h, w = (int(v) for v in text.lower().split("x"))
            if h < 1 or w < 1:
                raise ValueError
            return cls(height=h, width=w)
        except ValueError:
            raise ValueError(
                f"invalid --shape {text!r}: use HxW for a fixed tile (e.g. 128x128) or MIN:MAX for a "
                f"dynamic range with multiples of {DYNAMIC_MULTIPLE}, MIN >= 16 (e.g. 16:512)"
            ) from None

    def dynamic_shapes(self) -> dict | None:
        if not self.dynamic:
            return None
        lo, hi = self.min_size // DYNAMIC_MULTIPLE, self.max_size // DYNAMIC_MULTIPLE
        dim_h = torch.export.Dim("h8", min=lo, max=hi)
        dim_w = torch.export.Dim("w8", min=lo, max=hi)
        return {"x": {2: DYNAMIC_MULTIPLE * dim_h, 3: DYNAMIC_MULTIPLE * dim_w}}

    def to_dict(self) -> dict:
        if self.dynamic:
            return {"dynamic": True, "min": self.min_size, "max": self.max_size, "multiple": DYNAMIC_MULTIPLE}
        return {"dynamic": False, "height": self.height, "width": self.width}


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    manifest_path: Path
    seconds: float


def artifact_name(model: str, target: str, precision: str) -> str:
    """``{model}_{backend}_{precision}.pte`` as in ExecuTorch's examples."""
    return f"{model}_{target.replace('-', '_')}_{precision}{SUFFIX.get(target, '.pte')}"


def package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("lmfn-edge", "torch", "executorch", "coremltools", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def export_program(model: torch.nn.Module, shape: ShapeSpec) -> torch.export.ExportedProgram:
    """``torch.export`` of the deploy form at ``shape`` (batch 1, NCHW float32 in [0, 1])."""
    from .deploy import to_deploy

    deployed = to_deploy(model)
    x = torch.rand(1, 3, *shape.example)
    return torch.export.export(deployed, (x,), dynamic_shapes=shape.dynamic_shapes())


def _write_dir_atomically(build, path: Path) -> None:
    """Build a directory artifact (an .mlpackage) beside ``path`` and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        staged = tmp / path.name
        build(staged)
        if path.exists():
            old = tmp / "previous"
            os.replace(path, old)
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export(
    model: torch.nn.Module,
    target: str,
    output: str | Path,
    shape: ShapeSpec | None = None,
    precision: str | None = None,
    quantized: torch.export.ExportedProgram | None = None,
    weights_info: dict | None = None,
    overlap: int = DEFAULT_OVERLAP,
) -> ExportResult:
    """Export ``model`` (an LMFN; ignored for int8, where ``quantized`` is lowered instead).

    Args:
        model: Trained LMFN in its training form.
        target: One of :data:`TARGETS`.
        output: Artifact path (.pte / .mlpackage / .ptl); the sidecar goes to ``<output>.json``.
        shape: Input shape; defaults to a fixed 128x128 tile.
        precision: Defaults to fp16 for Core ML and fp32 elsewhere; int8 needs ``quantized``.
        quantized: A quantized program (``torch.export.load`` of the QAT/PTQ output).
        weights_info: ``{"source": ..., "sha256": ...}`` recorded in the sidecar.
        overlap: Tile overlap the runtime should use with a fixed-shape artifact.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    shape = shape or ShapeSpec(DEFAULT_TILE, DEFAULT_TILE)
    precision = precision or PRECISIONS[target][0]
    if precision not in PRECISIONS[target]:
        raise ExportError(
            f"{target} does not support {precision}; supported: {', '.join(PRECISIONS[target])}"
            + (" (fp16 GELU is not delegated by XNNPACK)" if target == "xnnpack" and precision == "fp16" else "")
        )
    if (precision == "int8") != (quantized is not None):
        raise ExportError("int8 export needs a quantized program (--quantized PATH.pt2 from quantization/)")
    output = Path(output)
    config = model.config
    start = time.perf_counter()
    delegation: Delegation | None = None

    if precision == "int8":
        ep = quantized
        example = ep.example_inputs[0][0] if ep.example_inputs else None
        if example is not None:
            shape = ShapeSpec(int(example.shape[2]), int(example.shape[3]))
    else:
        ep = export_program(model, shape)

    if target in ("xnnpack", "portable", "executorch-coreml"):
        backend = {"xnnpack": "xnnpack", "portable": "portable", "executorch-coreml": "coreml"}[target]
        program, delegation = lower_to_executorch(ep, backend)
        atomic_write_bytes(output, program.buffer)
    elif target == "coreml":
        mlmodel = convert_coreml(ep, precision, INPUT_NAME, OUTPUT_NAME)
        mlmodel.short_description = f"LMFN x{config.scale} super-resolution (lmfn-edge)"
        _write_dir_atomically(lambda p: mlmodel.save(str(p)), output)
    else:  # torchscript
        print("warning: TorchScript and the lite interpreter are deprecated upstream; prefer "
              "--target xnnpack (ExecuTorch)", file=sys.stderr)
        from .deploy import to_deploy

        traced = torch.jit.trace(to_deploy(model), torch.rand(1, 3, *shape.example), check_trace=False)
        with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as tmp:
            tmp_path = Path(tmp) / output.name
            traced._save_for_lite_interpreter(str(tmp_path))
            atomic_write_bytes(output, tmp_path.read_bytes())

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "model": f"lmfn_x{config.scale}",
        "scale": config.scale,
        "config": config.to_dict(),
        "target": target,
        "precision": precision,
        "artifact": output.name,
        "layout": "NCHW",
        "input": {"name": INPUT_NAME, "dtype": "float32", "channels": "RGB"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "channels": "RGB"},
        "input_range": [0.0, 1.0],
        "output_range": "unclamped; clamp to [0, 1], then round(x * 255)",
        "shape": shape.to_dict(),
        "tile": shape.height if not shape.dynamic and shape.height == shape.width else None,
        "overlap": overlap,
        "weights": weights_info or {"source": "in-memory model", "sha256": None},
        "packages": package_versions(),
        "delegation": delegation.to_dict() if delegation else None,
        "export_seconds": round(time.perf_counter() - start, 1),
    }
    manifest_path = output.with_name(output.name + ".json")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return ExportResult(output, manifest, manifest_path, time.perf_counter() - start)


def install_android(result: ExportResult, app_dir: str | Path) -> Path:
    """Copy a fixed-tile .pte and its manifest into the Android demo's assets (git-ignored)."""
    if result.manifest["target"] not in ("xnnpack", "portable") or result.manifest["tile"] is None:
        raise ExportError("--android needs --target xnnpack (or portable) with a square fixed --shape")
    assets = Path(app_dir) / "app" / "src" / "main" / "assets"
    if not (Path(app_dir) / "app").is_dir():
        raise ExportError(f"{app_dir} is not the Android demo project (no app/ folder)")
    assets.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(assets / "lmfn.pte", result.path.read_bytes())
    manifest = dict(result.manifest, artifact="lmfn.pte")
    atomic_write_text(assets / "lmfn.json", json.dumps(manifest, indent=2) + "\n")
    return assets


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lmfn_edge.export",
        description="Export LMFN to ExecuTorch (.pte), Core ML (.mlpackage) or TorchScript, with a JSON sidecar.",
    )
    p.add_argument("--target", default="xnnpack", help=f"one of: {', '.join(TARGETS)} (default xnnpack)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4), help="upscaling factor (default 4)")
    p.add_argument("--weights", help="safetensors weights (default: the weights the package embeds)")
    p.add_argument("--random-init", action="store_true", help="export an untrained model (for plumbing tests)")
    p.add_argument("--precision", help="fp32, fp16 or int8 (default: fp16 for coreml, fp32 otherwise)")
    p.add_argument("--quantized", help="quantized program (.pt2) from quantization/, for --precision int8")
    p.add_argument("--shape", default=f"{DEFAULT_TILE}x{DEFAULT_TILE}", help="HxW fixed tile or MIN:MAX dynamic (default 128x128)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile overlap recorded for runtimes (default 16)")
    p.add_argument("--output", help="artifact path (default artifacts/{model}_{target}_{precision}.pte|.mlpackage)")
    p.add_argument("--android", metavar="APP_DIR", help="also install the .pte + manifest into this Android demo's assets")
    p.add_argument("--verify", action="store_true",
                   help="coreml: evaluate the written .mlpackage with numpy and compare it with the eager model "
                        "on real photos (docs/coreml-verification.md); exit 1 if it fails")
    # Model config overrides, for exporting small or ablation variants.
    p.add_argument("--kernel-size", type=int, help="DSConv taps (random-init only)")
    p.add_argument("--pattern", help="cell pattern, e.g. LLLLLLLL (random-init only)")
    return p


def load_model_for_export(scale: int, weights: str | None, random_init: bool, **overrides):
    """The model and the weights record for the sidecar; raises WeightsError / ValueError."""
    from . import create_model, model_name
    from .weights import default_weights_path, sha256_file

    name = model_name(scale)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if random_init:
        if weights:
            raise ValueError("--random-init and --weights are mutually exclusive")
        torch.manual_seed(0)
        return create_model(name, **overrides).eval(), {"source": "random-init (seed 0)", "sha256": None}
    if overrides:
        raise ValueError("--kernel-size/--pattern only apply with --random-init; trained weights fix the architecture")
    path = Path(weights) if weights else default_weights_path(name)
    model = create_model(name, weights=str(path))
    source = str(path) if weights else f"embedded:{path.name}"
    return model, {"source": source, "sha256": sha256_file(path)}


def load_quantized_program(path: str | Path):
    """A quantized program written by ``quantization/``, its LMFN config, and what it records
    of its making (method, float weights, details), as a dict."""
    from .model import LMFNConfig

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"quantized program not found: {path}")
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the q/dq ops it uses)

    extra = {"lmfn_config.json": ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
        info = json.loads(extra["lmfn_config.json"])
        config = LMFNConfig.from_dict(info["config"])
    except Exception as exc:  # torch raises many types for a bad archive
        raise ExportError(f"cannot load quantized program {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    return program, config, info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .weights import WeightsError, sha256_file

    try:
        if args.target not in TARGETS:
            raise ExportError(f"unknown target {args.target!r}; choose one of: {', '.join(TARGETS)}")
        shape = ShapeSpec.parse(args.shape)
        quantized, quantized_config, quantized_info = None, None, {}
        if args.quantized:
            quantized, quantized_config, quantized_info = load_quantized_program(args.quantized)
            if quantized_config.scale != args.scale:
                raise ExportError(f"{args.quantized} is an x{quantized_config.scale} program, but --scale is {args.scale}")
        if quantized_config is not None:
            from .model import LMFN

            # The program carries its weights; the model only supplies the config for the sidecar.
            # The sidecar traces the int8 weights back to the float weights they came from.
            model = LMFN(quantized_config).eval()
            weights_info = {
                "source": str(args.quantized),
                "sha256": sha256_file(args.quantized),
                "quantization": {k: quantized_info.get(k) for k in ("method", "weights", "details")},
            }
        else:
            model, weights_info = load_model_for_export(
                args.scale, args.weights, args.random_init, kernel_size=args.kernel_size, pattern=args.pattern
            )
        precision = args.precision or ("int8" if quantized is not None else None)
        name = f"lmfn_x{args.scale}"
        output = Path(args.output) if args.output else Path("artifacts") / artifact_name(
            name, args.target, precision or PRECISIONS[args.target][0]
        )
        print(f"exporting {name} to {args.target} ({shape.to_dict()}) ...", file=sys.stderr)
        result = export(model, args.target, output, shape, precision, quantized, weights_info, args.overlap)
        if args.android:
            assets = install_android(result, args.android)
            print(f"installed lmfn.pte and lmfn.json into {assets}", file=sys.stderr)
        if args.verify:
            if args.target != "coreml":
                raise ExportError("--verify applies to --target coreml")
            from .verify_coreml import default_photos, verify

            images, names = default_photos()
            report = verify(result.path, model, images, names=names)
            print(report.summary(), file=sys.stderr)
            result.manifest["verification"] = report.to_dict()
            atomic_write_text(result.manifest_path, json.dumps(result.manifest, indent=2) + "\n")
            if not report.passed:
                print(f"error: {result.path} failed Core ML verification", file=sys.stderr)
                return 1
    except (ExportError, WeightsError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = result.manifest["delegation"]
    summary = f"; {d['subgraphs']} delegated subgraph(s), non-delegated compute ops: {d['non_delegated_compute_ops'] or 'none'}" if d else ""
    print(f"wrote {result.path} and {result.manifest_path.name} in {result.seconds:.0f} s{summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
