"""Int8 quantization: QAT steps -> convert -> XNNPACK .pte in one subgraph matching the q/dq
model, fixed parameters and frozen observers, exact resume, PTQ, Core ML W8A8 conversion, and
one-line errors. A tiny model on synthetic images, one CPU thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import bent_model
from lmfn_edge.deployment import QuantizedProgramError, load_quantized
from lmfn_edge.deployment.goldens import output_step
from lmfn_edge.deployment.pt2e import capture, fixed_parameter_names, prepare
from lmfn_edge.export import main as export_main
from lmfn_edge.io import save_image
from lmfn_edge.manifest import read_manifest
from lmfn_edge.metrics import psnr, tensor_to_uint8
from lmfn_edge.model.deploy import to_deploy
from lmfn_edge.model.weights import save_weights
from quantization import qat as qat_cli
from quantization.config import ConfigError, QATConfig, load_qat_config
from quantization.numerics import synthetic_image
from quantization.ptq import calibration_crops, ptq
from quantization.ptq import main as ptq_main
from training.checkpoint import CHECKPOINT_NAME, load_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "quantization" / "configs"
TINY = dict(channels=8, num_blocks=1, pattern="M", kernel_size=3)  # LayerNorm, DSConvs, every q/dq kind
TILE = 24


# Module scope: it must also cover the module-scoped QAT runs, or the "straight" run (two
# threads) and the resumed run (one thread) differ in the last bit.
pytestmark = pytest.mark.usefixtures("one_thread_module")


def tiny_model():
    model = bent_model(2, **TINY)
    with torch.no_grad():
        model.upsample.bias += 0.5
    return model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Float weights, 4 HR-only training images and one validation image."""
    root = tmp_path_factory.mktemp("qat")
    for i in range(4):
        (root / "train").mkdir(exist_ok=True)
        save_image(root / "train" / f"{i}.png", synthetic_image(i, 64))
    (root / "val").mkdir()
    save_image(root / "val" / "v.png", synthetic_image(9, 40))
    save_weights(tiny_model(), root / "w.safetensors")
    return root


def config(root: Path, **changes) -> QATConfig:
    fields = dict(scale=2, weights=str(root / "w.safetensors"), data_roots=[str(root / "train")],
                  val_root=str(root / "val"), cache_dir=str(root / "cache"), patch_size=16, batch_size=4,
                  iterations=4, learning_rate=1e-3, ema_decay=0.5, freeze_observers_at=2, tile=TILE, val_every=2,
                  ckpt_every=2, log_every=1, device="cpu")
    return QATConfig(**{**fields, **changes})


@pytest.fixture(scope="module")
def straight(workspace, one_thread_module) -> Path:
    """Four QAT steps in one go (observers frozen after two); the program and checkpoint."""
    run = workspace / "straight"
    qat_cli.qat(config(workspace), run, progress=False)
    return run


# --- QAT ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_pte(straight, workspace) -> Path:
    """The QAT program lowered by the export command, as a user does it."""
    out = workspace / "cli_int8.pte"
    assert export_main(["--scale", "2", "--quantized", str(straight / "lmfn_x2_qat_int8.pt2"), "--output", str(out),
                        "--overlap", "8"]) == 0
    return out


@pytest.mark.slow  # lowers the QAT program (~75 s on a 2-core AVX2 machine); CI runs -m slow after the suite
def test_qat_int8_pte_is_one_xnnpack_subgraph_matching_the_qdq_model(straight, int8_pte):
    from executorch.runtime import Runtime

    program, info = load_quantized(straight / "lmfn_x2_qat_int8.pt2")
    assert info.method == "qat" and info.tile == TILE and info.details["steps"] == 4
    assert info.lmfn_config == tiny_model().config
    manifest = read_manifest(int8_pte)
    d = manifest.delegation
    assert d["subgraphs"] == 1 and d["non_delegated_compute_ops"] == {}, d
    assert manifest.shape.to_dict() == {"dynamic": False, "height": TILE, "width": TILE}
    assert (manifest.precision, manifest.overlap) == ("int8", 8)

    method = Runtime.get().load_program(str(int8_pte)).load_method("forward")
    x = torch.rand(1, 3, TILE, TILE)
    out = method.execute([x])[0]
    with torch.no_grad():
        ref = program.module()(x)
    # Both compute every op on the same int8 grids, but XNNPACK accumulates in int32 and
    # requantizes with its own rounding and its own fp32 GELU/tanh/rsqrt, so some intermediate
    # values land one step apart; the last conv sums many of them, and its output moves to the
    # neighbouring step of its grid where the sum sits near a rounding boundary. Measured here:
    # at most 1 output step, 0.19 steps on average (a 300K model in deployment-facts.md: 0.026
    # to 0.034 max). Two steps, and half a step on average, leave room for other CPUs' kernels
    # while any real mismatch (a wrong scale, a fp32 fallback) is many steps.
    step = output_step(program)
    err = (out - ref).abs()
    assert err.max().item() <= 2 * step + 1e-6, (err.max().item(), step)
    assert err.mean().item() <= 0.5 * step, (err.mean().item(), step)


@pytest.mark.slow  # shares the lowered program above
def test_export_cli_sidecar_traces_int8_program_to_float_weights(straight, workspace, int8_pte):
    from lmfn_edge.model.weights import sha256_file

    pt2 = straight / "lmfn_x2_qat_int8.pt2"
    weights = read_manifest(int8_pte).weights
    _, info = load_quantized(pt2)
    assert weights["source"] == str(pt2) and weights["sha256"] == sha256_file(pt2)
    assert weights["quantization"] == {"method": "qat", "weights": info.weights, "details": info.details}
    assert info.weights["sha256"] == sha256_file(workspace / "w.safetensors")


def test_qat_trains_learned_parameters_only_and_freezes_observers(straight, workspace):
    ckpt = load_checkpoint(straight / CHECKPOINT_NAME)
    assert ckpt["kind"] == "qat" and ckpt["step"] == 4
    start = dict(capture(tiny_model()).named_parameters())
    fixed = fixed_parameter_names(to_deploy(tiny_model()))
    assert fixed <= set(start) and any(".mean." in n for n in fixed) and any(".pair_conv." in n for n in fixed)
    moved = {n for n, p in start.items() if not torch.equal(ckpt["model"][n], p)}
    assert moved and not moved & fixed
    assert moved == set(start) - fixed  # every learned tensor took Adan steps
    flags = [v for k, v in ckpt["model"].items() if k.endswith("observer_enabled")]
    assert flags and all(int(f[0]) == 0 for f in flags)  # frozen at step 2


@pytest.mark.slow  # two short QAT runs (about 1 min); CI runs -m slow after the suite
def test_qat_resume_is_exact(straight, workspace):
    split = workspace / "split"
    qat_cli.qat(config(workspace, iterations=2), split, progress=False)
    qat_cli.qat(config(workspace), split, resume=True, progress=False)
    a, b = load_checkpoint(straight / CHECKPOINT_NAME), load_checkpoint(split / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 4
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=0, msg=f"{part} {k}")
    for k, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(value, b["optimizer"]["state"][k][name], rtol=0, atol=0)


def test_qat_releases_ema_or_raw_weights_from_the_checkpoint(straight, workspace):
    import shutil

    from lmfn_edge.deployment.int8 import read_int8_params

    ckpt = load_checkpoint(straight / CHECKPOINT_NAME)
    learned = [n for n, p in capture(tiny_model()).named_parameters() if p.requires_grad]
    assert any(not torch.equal(ckpt["model"][n], ckpt["ema"][n]) for n in learned)  # the two differ
    state, info = read_int8_params(straight / "lmfn_x2_int8.safetensors")
    assert info.details["released"] == "ema"
    assert all(torch.equal(state[n], ckpt["ema"][n]) for n in learned)
    # A finished run resumed with release=raw writes the live weights again, taking no step.
    raw = workspace / "raw"
    shutil.copytree(straight, raw)
    summary = qat_cli.qat(config(workspace, release="raw"), raw, resume=True, progress=False)
    assert summary["step"] == 4
    state, info = read_int8_params(raw / "lmfn_x2_int8.safetensors")
    assert info.details["released"] == "raw"
    assert all(torch.equal(state[n], ckpt["model"][n]) for n in learned)
    with pytest.raises(ConfigError, match="release must be one of ema, raw"):
        config(workspace, release="best")


@pytest.mark.slow  # a QAT run with the float teacher (about 30 s)
def test_qat_distills_from_the_float_model_with_target_float(straight, workspace):
    import json

    from lmfn_edge.deployment.int8 import read_int8_params
    from lmfn_edge.model.weights import load_model
    from training.loop import LOG_NAME

    trainer = qat_cli.QATTrainer(config(workspace, target="float"), workspace / "unused", progress=False)
    lr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 32, 32)
    teacher, _ = load_model(2, workspace / "w.safetensors")  # the weights file, loaded independently
    with torch.no_grad():
        torch.testing.assert_close(trainer.target(lr, hr), teacher(lr), rtol=0, atol=0)
    assert qat_cli.QATTrainer(config(workspace), workspace / "unused", progress=False).target(lr, hr) is hr
    # The loss a run logs is then the fake-quant model's distance to the float model, far below
    # its distance to the HR patches (the tiny float model is untrained): same data, same steps.
    run = workspace / "target_float"
    qat_cli.qat(config(workspace, target="float", iterations=2), run, progress=False)
    assert read_int8_params(run / "lmfn_x2_int8.safetensors")[1].details["target"] == "float"
    assert read_int8_params(straight / "lmfn_x2_int8.safetensors")[1].details["target"] == "hr"

    def losses(folder):
        records = [json.loads(line) for line in (folder / LOG_NAME).read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r and r["step"] <= 2]

    distilled, from_hr = losses(run), losses(straight)
    assert len(distilled) == len(from_hr) == 2
    assert all(d < 0.5 * h for d, h in zip(distilled, from_hr)), (distilled, from_hr)
    with pytest.raises(ConfigError, match="target must be one of hr, float"):
        config(workspace, target="lr")


def test_qat_refuses_to_overwrite_and_reports_bad_weights(straight, workspace, capsys):
    def cli(weights: str, output_dir: Path, scale: int = 2) -> int:
        return qat_cli.main(["--weights", weights, "--data-root", str(workspace / "train"), "--output-dir",
                             str(output_dir), "--set", f"scale={scale}", "--set", "patch_size=16", "--no-progress"])

    weights = str(workspace / "w.safetensors")
    assert cli(weights, straight) == 2
    assert "exists; pass --resume" in capsys.readouterr().err
    assert cli(str(workspace / "missing.safetensors"), workspace / "other") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: weights file not found") and err.count("\n") == 1
    assert cli(weights, workspace / "x3", scale=3) == 2
    assert "holds x2 weights, but x3 was requested" in capsys.readouterr().err


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("qat", [True, False])
def test_layernorm_statistics_stay_float(qat):
    # LayerNorm's variance spans flat regions (~0) and edges: in int8 flat pixels round to 0 and
    # rsqrt gives inf, which broke the first QAT step of the trained x4 weights. The quantizer
    # must leave the variance and rsqrt unobserved.
    prepared = prepare(tiny_model(), qat=qat)

    def observed(node: torch.fx.Node) -> bool:
        return node.op == "call_module" and node.target.startswith("activation_post_process")

    rsqrts = [n for n in prepared.graph.nodes if n.op == "call_function" and n.target == torch.ops.aten.rsqrt.default]
    assert rsqrts, "no LayerNorm found"
    for node in rsqrts:
        variance = node.args[0]
        assert not observed(variance) and not any(observed(u) for u in node.users), node
        assert not any(observed(u) for u in variance.users)


def test_shipped_qat_configs_load():
    for scale in (2, 3, 4):
        c = load_qat_config(CONFIGS / f"qat_x{scale}.toml")
        assert c.scale == scale and c.learning_rate < 5e-3 and 0 < c.freeze_observers_at < c.iterations
        assert c.tile % 8 == 0 and c.patch_size % 8 == 0


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lr=1"], "unknown config key 'lr'"),
        (["patch_size=20"], "patch_size must be a multiple of 8"),
        (["tile=12"], "tile must be a multiple of 8"),
        (["freeze_observers_at=0"], "freeze_observers_at must be >= 1"),
        (["learning_rate=fast"], "learning_rate must be a number"),
    ],
)
def test_config_errors_are_one_line(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_qat_config(None, sets)


# --- PTQ ------------------------------------------------------------------------------------


def test_ptq_program_carries_config_and_tracks_float(workspace, capsys):
    out = workspace / "ptq.pt2"
    assert ptq_main(["--weights", str(workspace / "w.safetensors"), "--data-root", str(workspace / "train"),
                     "--output", str(out), "--tile", str(TILE), "--no-progress"]) == 0
    program, info = load_quantized(out)
    assert info.method == "ptq" and info.details["calibration_crops"] == 4 and info.tile == TILE
    assert len(info.weights["sha256"]) == 64
    x = torch.from_numpy(synthetic_image(5, TILE).transpose(2, 0, 1).copy())[None].float() / 255
    with torch.no_grad():
        q, f = program.module()(x), tiny_model()(x)
    assert psnr(tensor_to_uint8(q), tensor_to_uint8(f)) > 40  # int8 grids are fine for this model


def test_calibration_crops_are_centred_multiples_of_8():
    img = np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3)
    (crop,) = calibration_crops([img, np.zeros((10, 40, 3), np.uint8)], size=32)
    assert crop.shape == (1, 3, 24, 32)  # 30 -> 24, 50 -> 32; the 10-row image is too small
    torch.testing.assert_close(crop[0, :, 0, 0], torch.from_numpy(img[3, 9]).float() / 255)


def test_quantized_program_errors(tmp_path):
    with pytest.raises(QuantizedProgramError, match="quantized program not found"):
        load_quantized(tmp_path / "none.pt2")
    (tmp_path / "bad.pt2").write_bytes(b"not a zip")
    with pytest.raises(QuantizedProgramError, match="not a .pt2 program archive"):
        load_quantized(tmp_path / "bad.pt2")
    with pytest.raises(QuantizedProgramError, match="tile must be a multiple of 8"):
        ptq(tiny_model(), [torch.rand(1, 3, 16, 16)], tile=20)


# --- Core ML W8A8 ---------------------------------------------------------------------------


def test_qat_program_converts_to_coreml_w8a8_that_computes_the_qdq_model(straight):
    from lmfn_edge.deployment.coreml_eval import MILEvaluator
    from lmfn_edge.deployment.lowering import convert_coreml

    program, _ = load_quantized(straight / "lmfn_x2_qat_int8.pt2")
    ml = convert_coreml(program, "fp32")  # iOS 17: the first target with int8 quantize ops
    evaluator = MILEvaluator(ml)  # numpy interpreter of the ML program: numerics on Linux
    ops = evaluator.op_counts
    assert ops["quantize"] > 0 and ops["dequantize"] > 0 and ops["constexpr_affine_dequantize"] > 0, ops
    x = torch.rand(1, 3, TILE, TILE)
    out = torch.from_numpy(evaluator.predict({"lr": x.numpy()})["sr"])
    with torch.no_grad():
        ref = program.module()(x)
    # The program keeps every q/dq of the PT2E model; measured identical here.
    assert (out - ref).abs().max().item() <= output_step(program) + 1e-6


# --- int8 parameters -------------------------------------------------------------------------


def test_qat_writes_int8_parameters_that_rebuild_its_program_at_any_shape(straight, workspace):
    from lmfn_edge.deployment.int8 import int8_program, read_int8_params
    from lmfn_edge.manifest import ShapeSpec
    from lmfn_edge.model.weights import sha256_file

    params = straight / "lmfn_x2_int8.safetensors"
    state, info = read_int8_params(params)
    assert info.method == "qat" and info.details["steps"] == 4
    assert info.weights["sha256"] == sha256_file(workspace / "w.safetensors")
    assert params.stat().st_size < 2 * (straight / "lmfn_x2_qat_int8.pt2").stat().st_size
    pt2, _ = load_quantized(straight / "lmfn_x2_qat_int8.pt2")
    rebuilt, _ = int8_program(params, ShapeSpec(TILE, TILE))
    x = torch.rand(1, 3, TILE, TILE)
    with torch.no_grad():
        assert torch.equal(rebuilt.module()(x), pt2.module()(x))  # the same int8 function, from data alone
    wide, _ = int8_program(params, ShapeSpec(16, 40))
    with torch.no_grad():
        assert wide.module()(torch.rand(1, 3, 16, 40)).shape == (1, 3, 32, 80)


@pytest.mark.slow  # lowers an int8 program (~50 s); the refusals below run in the suite
def test_export_builds_int8_programs_from_parameters(straight, workspace, capsys):
    from executorch.runtime import Runtime

    from lmfn_edge.deployment.int8 import int8_program
    from lmfn_edge.manifest import ShapeSpec

    params = straight / "lmfn_x2_int8.safetensors"
    out = workspace / "params_int8.pte"
    assert export_main(["--precision", "int8", "--quantized", str(params), "--shape", "16x24", "--overlap", "4",
                        "--output", str(out)]) == 0
    manifest = read_manifest(out)
    assert (manifest.precision, manifest.shape.to_dict()) == ("int8", {"dynamic": False, "height": 16, "width": 24})
    assert manifest.weights["source"] == str(params) and manifest.weights["quantization"]["method"] == "qat"
    assert manifest.delegation["subgraphs"] == 1 and manifest.delegation["non_delegated_compute_ops"] == {}
    program, _ = int8_program(params, ShapeSpec(16, 24))
    x = torch.rand(1, 3, 16, 24)
    out_pte = Runtime.get().load_program(str(out)).load_method("forward").execute([x])[0]
    with torch.no_grad():
        ref = program.module()(x)
    step = output_step(program)
    assert (out_pte - ref).abs().max().item() <= 2 * step + 1e-6


def test_int8_export_from_parameters_refuses_bad_shapes_and_float_flags(straight, workspace, capsys):
    params = straight / "lmfn_x2_int8.safetensors"
    for argv, message in [(["--precision", "int8", "--quantized", str(params), "--shape", "16:64"], "fixed --shape"),
                          (["--precision", "int8", "--quantized", str(params), "--shape", "0x20"], "invalid --shape"),
                          (["--precision", "int8", "--weights", str(workspace / "w.safetensors")], "drop --weights")]:
        assert export_main(argv + ["--output", str(workspace / "x.pte")]) == 2
        assert message in capsys.readouterr().err
    assert not (workspace / "x.pte").exists()


def test_int8_parameters_of_another_graph_are_refused(straight, tmp_path):
    from safetensors.torch import load_file, save_file

    from lmfn_edge.deployment.int8 import Int8ParamsError, load_int8_params

    params = straight / "lmfn_x2_int8.safetensors"
    state = load_file(params)
    from safetensors import safe_open

    with safe_open(params, "pt") as f:
        meta = f.metadata()
    state.pop(sorted(state)[0])
    save_file(state, tmp_path / "p.safetensors", metadata=meta)
    with pytest.raises(Int8ParamsError, match="does not fit this SDK's int8 graph"):
        load_int8_params(tmp_path / "p.safetensors")
    save_file(load_file(params), tmp_path / "q.safetensors", metadata={**meta, "format": "other"})
    with pytest.raises(Int8ParamsError, match="is not lmfn-edge int8 parameters"):
        load_int8_params(tmp_path / "q.safetensors")


@pytest.mark.slow  # a Core ML conversion and its verification (about 40 s)
def test_core_ml_w8a8_from_int8_parameters_is_verified(straight, workspace):
    from lmfn_edge.deployment import export_quantized
    from lmfn_edge.deployment.int8 import int8_program
    from lmfn_edge.manifest import ShapeSpec

    program, info = int8_program(straight / "lmfn_x2_int8.safetensors", ShapeSpec(TILE, TILE))
    result = export_quantized(program, info, "coreml", workspace / "w8a8.mlpackage", overlap=8, verify=True)
    assert result.manifest.precision == "int8" and result.verification.passed, result.verification.summary()
