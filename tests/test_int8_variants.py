"""Int8 variants (docs/quantization.md "Int8 variants"): fp32 islands in the static graph, the
dynamic-range graph, their export, and the commands that take them. Tiny configs throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import TINY_L, run_pte, tiny_model
from lmfn_edge.deployment.int8 import Int8Info, dynamic_program, save_int8_params
from lmfn_edge.deployment.pt2e import convert, export_converted, prepare
from lmfn_edge.manifest import padded_side
from lmfn_edge.deployment.variants import (
    VariantError,
    convert_islands,
    dynamic_converted,
    groups,
    node_group,
    variant_groups,
)
from lmfn_edge.export import main as export_main
from lmfn_edge.manifest import ShapeSpec, read_manifest
from lmfn_edge.model.deploy import to_deploy
from lmfn_edge.model.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread_module")
SIDE = 24


def photo_like(seed: int, side: int = SIDE, width: int | None = None) -> torch.Tensor:
    """Smooth gradients plus edges in [0, 1]: activations in the ranges real photos give."""
    width = side if width is None else width
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(3 * x + c) * torch.cos(2 * y - c) for c in range(3)])
    return (base + 0.1 * (torch.rand(3, side, width, generator=g) > 0.8)).clamp(0, 1)[None]


@pytest.fixture(scope="module")
def model():
    return tiny_model(2, **TINY_L)


@pytest.fixture(scope="module")
def calibrated(model):
    """The static (PTQ-observed) graph of the tiny model."""
    prepared = prepare(model, qat=False)
    prepared.eval()
    with torch.no_grad():
        for seed in range(3):
            prepared(photo_like(seed))
    return prepared


def qdq_inputs(graph, node) -> list:
    return [a for a in node.all_input_nodes if "dequantize" in str(a.target)]


def test_groups_cover_every_compute_node(model, calibrated):
    names = set(groups(model.config))
    found = {node_group(n) for n in convert(calibrated).graph.nodes} - {None}
    assert found <= names and {"head", "blocks.0", "fuse", "tail", "upsample", "trunk"} <= found, found


def test_every_group_fp32_is_the_float_model(model, calibrated):
    # Independent reference: the deploy form in eager PyTorch. PTQ observers leave the weights as
    # they are, so with every group an island nothing may be quantized and the output is float.
    graph = convert_islands(calibrated, groups(model.config))
    assert not any("quantize" in str(n.target) for n in graph.graph.nodes)
    x = photo_like(7)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), to_deploy(model)(x), atol=1e-5, rtol=0)


def test_an_island_has_no_qdq_and_the_rest_is_unchanged(model, calibrated):
    whole, mixed = convert(calibrated), convert_islands(calibrated, ["head", "upsample", "shuffle"])

    def quantized_ops(gm):
        return {n.name: node_group(n) for n in gm.graph.nodes if node_group(n) and qdq_inputs(gm, n)}

    islands = {"head", "upsample", "shuffle"}
    before, after = quantized_ops(whole), quantized_ops(mixed)
    assert not set(after.values()) & islands and {"head", "upsample"} <= set(before.values())
    # Every op outside the islands keeps its quantized inputs (values leaving an island included).
    assert {n for n, g in before.items() if g not in islands} <= set(after)
    x = photo_like(8)
    with torch.no_grad():
        ref = to_deploy(model)(x)
        err_whole, err_mixed = (whole(x) - ref).abs().mean(), (mixed(x) - ref).abs().mean()
    assert err_mixed < err_whole, (err_mixed, err_whole)


def test_dynamic_with_every_group_fp32_is_the_float_model(model):
    graph = dynamic_converted(model, groups(model.config))
    assert not any("quantize" in str(n.target) for n in graph.graph.nodes)
    x = photo_like(3)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), to_deploy(model)(x), atol=1e-5, rtol=0)


def test_dynamic_graph_quantizes_regular_convs_from_their_own_range(model):
    graph = dynamic_converted(model)
    targets = [str(n.target) for n in graph.graph.nodes]
    assert any("choose_qparams" in t for t in targets) and any("dequantize_per_channel" in t for t in targets)
    assert not any("quantize_per_tensor.default" in t for t in targets)  # no fixed activation grid
    with pytest.raises(VariantError, match="unknown group"):
        dynamic_converted(model, ["blocks.9"])


def test_off_grid_shapes_pad_and_crop_the_graph(model, calibrated):
    # A 720p x4 frame is 180x320 LR pixels, off the captured graph's grid of multiples of 8.
    # Independent reference: the eager deploy form on the input replicate-padded to the grid,
    # cropped; with every group fp32 nothing is quantized, so the two agree to fp32 rounding.
    h, w = 19, 30
    x = photo_like(5, h, w)
    program = export_converted(dynamic_converted(model, groups(model.config)), h, w)
    padded = torch.cat([x, x[:, :, -1:].expand(-1, -1, padded_side(h) - h, -1)], 2)
    padded = torch.cat([padded, padded[..., -1:].expand(-1, -1, -1, padded_side(w) - w)], 3)
    with torch.no_grad():
        out = program.module()(x)
        torch.testing.assert_close(out, to_deploy(model)(padded)[:, :, : 2 * h, : 2 * w], atol=1e-5, rtol=0)
    # The static int8 graph takes the same shapes, and a 1x1 image (padded to 16x16).
    with torch.no_grad():
        assert export_converted(convert(calibrated), 1, 1).module()(x[:, :, :1, :1]).shape == (1, 3, 2, 2)
        on_grid = export_converted(convert(calibrated), padded_side(h), padded_side(w)).module()(padded)
        torch.testing.assert_close(export_converted(convert(calibrated), h, w).module()(x), on_grid[:, :, : 2 * h, : 2 * w],
                                   atol=0, rtol=0)


def test_variant_groups_are_validated(model, tmp_path):
    table = tmp_path / "v.json"
    table.write_text('{"scales": {"2": {"int8-mixed": {"fp32_groups": ["head", "nope"]}}}}')
    with pytest.raises(VariantError, match="unknown group"):
        variant_groups("int8-mixed", model.config, table)
    table.write_text('{"scales": {"2": {"int8-mixed": {"fp32_groups": "head"}}}}')
    with pytest.raises(VariantError, match="list of group names"):
        variant_groups("int8-mixed", model.config, table)
    table.write_text('{"scales": {"2": {"int8-mixed": {"fp32_groups": ["head", "blocks.7"]}}}}')
    # The table names the shipped (8-block) LMFN's groups; a 1-block LMFN keeps those it has.
    assert variant_groups("int8-mixed", model.config, table) == ("head",)
    table.write_text('{"scales": {"2": {"int8-mixed": {"fp32_groups": ["blocks.8"]}}}}')
    with pytest.raises(VariantError, match="unknown group"):
        variant_groups("int8-mixed", model.config, table)
    assert variant_groups("int8", model.config, table) == ()
    table.write_text("[")
    with pytest.raises(VariantError, match="cannot read"):
        variant_groups("int8-mixed", model.config, table)


# --- export ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(model, calibrated, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("variants")
    save_weights(model, root / "w.safetensors")
    qat = prepare(model, qat=True)
    with torch.no_grad():
        for seed in range(2):
            qat(photo_like(seed))
    save_int8_params(qat, root / "p.safetensors", Int8Info(config=model.config.to_dict()))
    return root


def test_export_refuses_contradicting_variant_flags(files, capsys):
    for argv, message in [
        (["--precision", "int8-dynamic", "--quantized", str(files / "p.safetensors")], "contradicts"),
        (["--precision", "int8-dynamic", "--shape", "16:64", "--weights", str(files / "w.safetensors")],
         "fixed --shape"),
        (["--precision", "int8-dynamic", "--target", "coreml"], "does not support int8-dynamic"),
    ]:
        assert export_main([*argv, "--output", str(files / "never.pte")]) != 0, argv
        assert message in capsys.readouterr().err, argv
        assert not (files / "never.pte").exists()


@pytest.mark.slow  # lowers a tiny program (about 2 min on 2 cores); CI runs -m slow after the suite
def test_dynamic_pte_is_one_delegate_and_matches_its_qdq_program(files, model, monkeypatch, tmp_path):
    import lmfn_edge.deployment.variants as variants

    table = tmp_path / "v.json"
    table.write_text('{"scales": {"2": {"int8-dynamic": {"fp32_groups": ["upsample"]}}}}')
    monkeypatch.setattr(variants, "VARIANTS_PATH", table)
    monkeypatch.setattr(variant_groups, "__defaults__", (table,))
    out = tmp_path / "v.pte"
    h, w = 20, SIDE + 3  # off the int8 graph's grid: the pad and the crop must be delegated too
    assert export_main(["--precision", "int8-dynamic", "--weights", str(files / "w.safetensors"), "--shape",
                        f"{h}x{w}", "--output", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.precision == "int8-dynamic"
    assert manifest.weights["quantization"]["details"]["fp32_groups"] == ["upsample"]
    d = manifest.delegation
    # One XNNPACK delegate and no compute op outside it. (XNNPACK's partitioner alone cuts this
    # graph in two interleaved partitions; lowering merges partitions that cover the graph.)
    assert d["subgraphs"] == 1 and d["non_delegated_compute_ops"] == {}, d
    program = dynamic_program(model, ShapeSpec(h, w))[0]
    x = photo_like(11, h, w)
    with torch.no_grad():
        ref = program.module()(x)
    err = (run_pte(out, x) - ref).abs()
    # XNNPACK and the reference pick each conv input's scale from the same min/max, but may
    # round a value to the neighbouring int8 step, and XNNPACK sums in int32 with its own fp32
    # GELU; the fp32 outputs then differ by what a step in a few inputs moves a conv. A wrong
    # scale or a missing quantization moves outputs by tenths of the [0, 1] range.
    assert err.max().item() <= 0.01, err.max().item()


def test_release_pins_only_float_built_variants_and_keeps_every_record(tmp_path, capsys):
    import json

    from quantization import int8_release

    for argv in (["--pin", "int8"], ["--pin", "int8-dynamic", "--check"], []):
        assert int8_release.main(argv) == 2, argv
        assert capsys.readouterr().err.startswith("error: "), argv
    from lmfn_edge.deployment.goldens import ARM_GOLDEN, store_golden

    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({"scales": {"2": {"static": 1}}}))
    store_golden(3, {"dynamic": 1}, "int8-dynamic", path=golden)
    store_golden(4, {"static": 2}, path=golden)
    store_golden(4, {"arm": 3}, ARM_GOLDEN, path=golden)
    data = json.loads(golden.read_text())
    assert data["scales"] == {"2": {"static": 1}, "4": {"static": 2}}
    assert data["variants"] == {"int8-dynamic": {"3": {"dynamic": 1}}}
    assert data["arm"] == {"4": {"arm": 3}}
