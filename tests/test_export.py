"""Export: delegation, parity of .pte programs with eager, Core ML program inspection, sidecars,
and one-line errors for bad requests. Tiny configs keep lowering to seconds."""

import json

import numpy as np
import pytest
import torch

from lmfn_edge import create_model
from lmfn_edge.dsconv import DSConv
from lmfn_edge.export import ShapeSpec, export, install_android, main
from lmfn_edge.weights import save_weights

TINY = dict(channels=16, num_blocks=3, pattern="LMI", kernel_size=5)


def tiny_model(scale=2, seed=0):
    torch.manual_seed(seed)
    model = create_model(f"lmfn_x{scale}", **TINY).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DSConv):
                torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
    return model


def run_pte(path, x):
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return method.execute([x])[0]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_xnnpack_fixed_shape_one_subgraph_and_parity(tmp_path, scale):
    model = tiny_model(scale)
    result = export(model, "xnnpack", tmp_path / "m.pte", ShapeSpec(24, 24))
    d = result.manifest["delegation"]
    assert d["subgraphs"] == 1
    assert d["non_delegated_compute_ops"] == {}, d
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        ref = model(x)
    # fp32 XNNPACK kernels reassociate sums differently from ATen: ~1e-6 here.
    assert (run_pte(result.path, x) - ref).abs().max().item() <= 1e-4


def test_one_level_provenance_lowers_the_same_program(tmp_path, monkeypatch):
    from torch.fx.traceback import NodeSource

    from lmfn_edge.lowering import one_level_provenance

    original_init = NodeSource.__init__
    with one_level_provenance():  # torch 2.13's NodeSource: the lean version is in place
        assert NodeSource.__init__ is not original_init
    model = tiny_model(2)
    lean = export(model, "xnnpack", tmp_path / "lean.pte", ShapeSpec(24, 24))
    assert NodeSource.__init__ is original_init  # restored after lowering
    monkeypatch.setenv("LMFN_EDGE_FULL_PROVENANCE", "1")
    full = export(model, "xnnpack", tmp_path / "full.pte", ShapeSpec(24, 24))
    assert lean.manifest["delegation"] == full.manifest["delegation"]
    x = torch.rand(1, 3, 24, 24)
    assert torch.equal(run_pte(lean.path, x), run_pte(full.path, x))


def test_xnnpack_dynamic_shape_runs_any_multiple_of_8(tmp_path):
    model = tiny_model(2)
    result = export(model, "xnnpack", tmp_path / "dyn.pte", ShapeSpec.parse("16:48"))
    assert result.manifest["shape"] == {"dynamic": True, "min": 16, "max": 48, "multiple": 8}
    assert result.manifest["tile"] is None
    for h, w in [(16, 16), (24, 40), (48, 32)]:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            ref = model(x)
        assert (run_pte(result.path, x) - ref).abs().max().item() <= 1e-4


def test_portable_target_matches_eager(tmp_path):
    model = tiny_model(3)
    result = export(model, "portable", tmp_path / "p.pte", ShapeSpec(16, 16))
    assert result.manifest["delegation"]["subgraphs"] == 0
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (run_pte(result.path, x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("precision,shape", [("fp16", "32x32"), ("fp32", "16:64")])
def test_coreml_program_inspection(tmp_path, precision, shape):
    import coremltools as ct

    result = export(tiny_model(4), "coreml", tmp_path / "m.mlpackage", ShapeSpec.parse(shape), precision)
    ml = ct.models.MLModel(str(result.path), skip_model_load=True)
    spec = ml.get_spec()
    (inp,), (out,) = spec.description.input, spec.description.output
    assert (inp.name, out.name) == ("lr", "sr")
    assert out.type.multiArrayType.dataType == ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    if precision == "fp32":
        ranges = inp.type.multiArrayType.shapeRange.sizeRanges
        assert [(r.lowerBound, r.upperBound) for r in ranges][2:] == [(16, 64), (16, 64)]
    else:
        assert list(inp.type.multiArrayType.shape) == [1, 3, 32, 32]
    blocks = spec.mlProgram.functions["main"].block_specializations.values()
    ops = {op.type for block in blocks for op in block.operations}
    # fp16 compute shows up as casts around the body; fp32 programs have none.
    assert ("cast" in ops) == (precision == "fp16")
    # matmul and relu come from DSConv's deploy form (its per-pixel bilinear matmul).
    assert ops <= {"abs", "add", "cast", "clip", "concat", "const", "conv", "conv_transpose", "gelu",
                   "matmul", "max_pool", "mul", "relu", "reshape", "rsqrt", "shape", "gather",
                   "slice_by_index", "sub", "tanh", "transpose"}, sorted(ops)
    assert result.manifest["precision"] == precision


def test_sidecar_and_android_install(tmp_path):
    result = export(tiny_model(2), "xnnpack", tmp_path / "a.pte", ShapeSpec(32, 32), overlap=8)
    sidecar = json.loads((tmp_path / "a.pte.json").read_text())
    assert sidecar["format"] == "lmfn-edge-manifest" and sidecar["version"] == 1
    assert (sidecar["model"], sidecar["scale"], sidecar["tile"], sidecar["overlap"]) == ("lmfn_x2", 2, 32, 8)
    assert sidecar["input_range"] == [0.0, 1.0] and sidecar["layout"] == "NCHW"
    assert "torch" in sidecar["packages"] and "executorch" in sidecar["packages"]
    app = tmp_path / "android_demo"
    (app / "app").mkdir(parents=True)
    assets = install_android(result, app)
    assert (assets / "lmfn.pte").read_bytes() == result.path.read_bytes()
    assert json.loads((assets / "lmfn.json").read_text())["artifact"] == "lmfn.pte"


def _cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_cli_errors_are_one_line(tmp_path, capsys):
    code, err = _cli(capsys, "--target", "tflite", "--random-init")
    assert code == 2 and err.startswith("error: unknown target 'tflite'")
    code, err = _cli(capsys, "--target", "xnnpack", "--weights", str(tmp_path / "missing.safetensors"))
    assert code == 2 and "weights file not found" in err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, err = _cli(capsys, "--weights", str(corrupt))
    assert code == 2 and "not a valid safetensors" in err
    x2 = tmp_path / "x2.safetensors"
    save_weights(tiny_model(2), x2)
    code, err = _cli(capsys, "--scale", "4", "--weights", str(x2))
    assert code == 2 and "x2 weights, but x4 was requested" in err
    code, err = _cli(capsys, "--random-init", "--shape", "13:40")
    assert code == 2 and "invalid --shape" in err
    code, err = _cli(capsys, "--random-init", "--precision", "fp16")
    assert code == 2 and "xnnpack does not support fp16" in err
    assert not list(tmp_path.glob("*.pte")) and not (tmp_path / "artifacts").exists()


def test_shape_spec_parsing():
    assert ShapeSpec.parse("128x96") == ShapeSpec(128, 96)
    assert ShapeSpec.parse("16:512").dynamic
    for bad in ("0x5", "12:24", "32:16", "abc", "8:64"):
        with pytest.raises(ValueError):
            ShapeSpec.parse(bad)


def test_int8_requires_a_quantized_program(tmp_path):
    from lmfn_edge.lowering import ExportError

    with pytest.raises(ExportError, match="quantized program"):
        export(tiny_model(2), "xnnpack", tmp_path / "q.pte", precision="int8")
    assert not (tmp_path / "q.pte").exists()
