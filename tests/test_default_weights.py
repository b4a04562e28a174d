"""The weights the package embeds: present for every scale, loadable, the paper's architecture,
and recorded with their training provenance (docs/model-card.md)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmfn_edge import create_model
from lmfn_edge.imresize import bicubic_downscale, bicubic_upscale
from lmfn_edge.metrics import psnr, tensor_to_uint8
from lmfn_edge.model.weights import read_weights
from lmfn_edge.registry import model_name, shipped


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_load_with_paper_config(scale):
    path = shipped(scale).weights_path
    assert path.stat().st_size < 2 * 1024 * 1024
    _, config, meta = read_weights(path)
    assert (config.scale, config.channels, config.num_blocks, config.pattern, config.kernel_size) == (
        scale, 56, 8, "LMILMILM", 9)
    assert int(meta["training_steps"]) > 0 and json.loads(meta["train_config"])["data_roots"]
    model = create_model(model_name(scale), pretrained=True)
    assert not model.training
    from skimage.data import astronaut

    lr = torch.from_numpy(np.ascontiguousarray(astronaut()[:40, :48])).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sr = model(lr)
    assert sr.shape == (1, 3, 40 * scale, 48 * scale) and torch.isfinite(sr).all()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_registry_describes_the_files_it_names(scale):
    # The table is written when a model ships (int8_release updates the int8 row); every row must
    # still name the files the package holds, byte for byte, and the images they were trained on.
    from lmfn_edge.model.weights import sha256_file
    from lmfn_edge.registry import images_fingerprint, models

    model = shipped(scale)
    assert model.name == model_name(scale) and list(models()) == [model_name(s) for s in (2, 3, 4)]
    assert sha256_file(model.weights_path) == model.weights_sha256
    assert sha256_file(model.int8_path) == model.int8_sha256
    _, config, meta = read_weights(model.weights_path)
    train_images = json.loads(meta["train_images"])
    assert config.scale == scale and meta["model_name"] == model.name
    assert (len(train_images), images_fingerprint(train_images)) == (model.training_images,
                                                                      model.training_images_sha256)


def test_pretrained_refuses_overrides():
    with pytest.raises(ValueError, match="overrides"):
        create_model("lmfn_x2", pretrained=True, channels=16)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_trained_on_the_training_split_only(scale):
    # Every file carries the SHA-256 of the images it was trained on (training.release): the
    # scikit-image training side, and for weights v2 the open photo corpus's (training/corpus.json).
    from training import corpus
    from training.skimage_photos import load_manifest

    _, _, meta = read_weights(shipped(scale).weights_path)
    trained = {e["sha256"] for e in json.loads(meta["train_images"])}
    skimage, photos = load_manifest(), corpus.load_manifest()["photos"]
    # earlier_sha256: the same picture as written before the resize became CPU-independent.
    def corpus(split):
        return {e[k] for e in photos if e["split"] == split for k in ("sha256", "earlier_sha256") if k in e}

    allowed = {e["sha256"] for e in skimage["train"]} | corpus("train")
    held_out = {e["sha256"] for e in skimage["heldout"]} | corpus("heldout")
    assert {e["sha256"] for e in skimage["train"]} <= trained <= allowed
    assert not trained & held_out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_weights_beat_bicubic_on_a_held_out_photo(scale):
    # chelsea is held out (training/skimage_split.json). A 192 px crop (divisible by 2, 3 and 4)
    # of the cat's face and fur, downscaled with the MATLAB bicubic the benchmarks use.
    from skimage.data import chelsea

    hr = np.ascontiguousarray(chelsea()[60:252, 120:312])
    lr = bicubic_downscale(hr, scale)
    model = create_model(model_name(scale), pretrained=True)
    with torch.no_grad():
        sr = tensor_to_uint8(model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255))
    gain = psnr(sr, hr, crop_border=scale) - psnr(bicubic_upscale(lr, scale), hr, crop_border=scale)
    assert gain > 0.3, f"x{scale}: {gain:+.2f} dB over bicubic"


# --- shipped int8 parameters (docs/quantization.md, "Shipped int8 parameters") ---------------


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_int8_parameters_come_from_the_embedded_float_weights(scale):
    from lmfn_edge.deployment.int8 import read_int8_params
    from lmfn_edge.model.weights import sha256_file

    path = shipped(scale).int8_path
    assert path.stat().st_size <= 2_300_000
    _, info = read_int8_params(path)
    assert info.method == "qat" and info.details["steps"] > 0
    assert info.lmfn_config.scale == scale
    # Regenerated whenever the float weights change (python -m quantization.int8_release refuses otherwise).
    assert info.weights["sha256"] == sha256_file(shipped(scale).weights_path)


# About 50 s a scale (capture, prepare, convert, export): all three run with -m slow, which CI
# runs after the suite (.ci/run); python -m quantization.int8_release --check rebuilds them too.
@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_embedded_int8_parameters_rebuild_their_golden_program(scale):
    # A regression pin: the program the shipped parameters build today is the one they built when
    # they were shipped (its fingerprint: graph, int8 weights, scales, exactly, whatever the CPU),
    # and computes what it computed then, within the spread that other CPUs' fp32 kernels give
    # (GOLDEN_CODES_RMS; the codes were written on another machine). That the int8 function is
    # *right* is checked elsewhere: against the float model on held-out photos
    # (docs/quantization.md) and the .pte against the q/dq program (test_quantization.py).
    from lmfn_edge.deployment.goldens import golden_input, golden_problems, output_codes, read_golden
    from lmfn_edge.deployment.int8 import int8_program
    from lmfn_edge.manifest import ShapeSpec
    from lmfn_edge.model.weights import sha256_file

    entry = read_golden()[scale]
    params = shipped(scale).int8_path
    assert entry["params_sha256"] == sha256_file(params), "regenerate with python -m quantization.int8_release"
    program, _ = int8_program(params, ShapeSpec(entry["side"], entry["side"]))
    codes, step = output_codes(program, golden_input(entry["side"]))
    assert step == pytest.approx(entry["step"], rel=1e-6)
    assert tuple(codes.shape) == (1, 3, entry["side"] * scale, entry["side"] * scale)
    assert golden_problems(program, entry, codes.numpy()) == []


# About 30 s a scale (capture, dynamic prepare, convert, export at 16x16).
@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_dynamic_variant_rebuilds_its_golden_program(scale):
    # The same kind of pin for int8-dynamic, built from the shipped float weights and the fp32
    # groups of int8_variants.json: the fingerprint exactly, the fp32 output within a tolerance
    # measured against other kernels (lmfn_edge.deployment.int8.dynamic_golden_problems).
    from lmfn_edge.deployment.goldens import dynamic_golden_problems, read_golden
    from lmfn_edge.deployment.variants import DYNAMIC, variant_groups
    from lmfn_edge.model import LMFNConfig

    entry = read_golden(precision=DYNAMIC)[scale]
    assert entry["fp32_groups"] == list(variant_groups(DYNAMIC, LMFNConfig(scale=scale)))
    assert dynamic_golden_problems(scale, entry) == []


@pytest.mark.slow
def test_embedded_int8_export_runs_the_golden_program(tmp_path):
    # The one-flag int8 export of a fresh clone, lowered and run through ExecuTorch (~3 min).
    from executorch.runtime import Runtime

    from lmfn_edge import load_model
    from lmfn_edge.deployment.goldens import golden_codes, golden_input, read_golden
    from lmfn_edge.export import main as export_main
    from lmfn_edge.manifest import read_manifest

    entry = read_golden()[2]
    out = tmp_path / "x2_int8.pte"
    assert export_main(["--target", "xnnpack", "--precision", "int8", "--scale", "2", "--shape",
                        f"{entry['side']}x{entry['side']}", "--overlap", "4", "--output", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest.weights["source"] == "embedded:lmfn_x2_int8.safetensors"
    assert manifest.delegation["subgraphs"] == 1 and manifest.delegation["non_delegated_compute_ops"] == {}
    x = golden_input(entry["side"])
    y = Runtime.get().load_program(str(out)).load_method("forward").execute([x])[0]
    # XNNPACK's int8 kernels requantize each layer their own way, so the .pte and the q/dq
    # program (the golden codes) differ by steps that spread through the layers: within 2 steps
    # on an AVX512-VNNI machine, up to 8 (mean 1.6) on an AVX2 one. What must hold everywhere is
    # that the .pte is as close to the float model as the q/dq program: measured 40.39 dB
    # against 40.19 dB on the AVX2 machine. A lowering that drops or mis-scales a layer loses
    # several dB.
    with torch.no_grad():
        reference = load_model(2)[0](x)

    def psnr_to_float(out: torch.Tensor) -> float:
        return psnr(tensor_to_uint8(out[0]), tensor_to_uint8(reference[0]))

    golden = torch.from_numpy(golden_codes(entry).astype(np.float32)) * entry["step"]
    assert psnr_to_float(y) >= psnr_to_float(golden) - 0.5, (psnr_to_float(y), psnr_to_float(golden))


# --- the shipped numerics (lmfn_edge/data/shipped_numerics.json) ------------------------------


def _shipped_numerics() -> dict:
    from quantization.shipped_numerics import NUMERICS_PATH

    return json.loads(NUMERICS_PATH.read_text())


def test_readme_and_model_card_quote_the_shipped_numerics():
    # The prose numbers are the data's: eager over bicubic on the held-out photos, per scale.
    rows = {s: v["rows"] for s, v in _shipped_numerics()["scales"].items()}
    gains = [rows[s]["eager"]["psnr"] - rows[s]["bicubic"]["psnr"] for s in ("2", "3", "4")]
    quoted = " / ".join(f"+{g:.2f}" for g in gains)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    card = (Path(__file__).resolve().parents[1] / "docs" / "model-card.md").read_text()
    assert f"by {quoted} dB PSNR-Y at x2 / x3 / x4" in " ".join(readme.split()), quoted
    losses = [rows[s]["eager"]["psnr"] - rows[s]["qdq:int8"]["psnr"] for s in ("2", "3", "4")]
    assert f"Static int8 loses {min(losses):.2f}-{max(losses):.2f} dB on scikit-image's held-out photos" in \
        " ".join(readme.split()), losses
    assert all(f"+{g:.2f} dB (x{s})" in " ".join(card.split()) for g, s in zip(gains, (2, 3, 4))), gains
    tiled = [rows[s]["pte:fp32"]["psnr"] - rows[s]["eager"]["psnr"] for s in ("2", "3", "4")]
    assert f"scores {min(tiled):+.3f} to {max(tiled):+.3f} dB over eager" in " ".join(readme.split()), tiled


# Four held-out photos x 3 scales x (bicubic, eager, the fp32 .pte, two q/dq int8 programs), and
# three fp32 lowerings: about 7 minutes on an idle 2-core machine.
@pytest.mark.slow
def test_shipped_numerics_are_the_stored_ones():
    from quantization.shipped_numerics import compare, compute

    stored = _shipped_numerics()
    assert set(stored["scales"]) == {"2", "3", "4"}
    actual = compute()
    for scale, got in actual["scales"].items():  # what the weights are for, whatever was stored
        assert got["rows"]["eager"]["psnr"] > got["rows"]["bicubic"]["psnr"], scale
    assert compare(stored, actual) == []
