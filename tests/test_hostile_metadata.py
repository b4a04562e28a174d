"""Hostile metadata, every command that reads it: deeply nested JSON and TOML, valid-looking
configs with invalid values, and damaged training state.

Each file below is crafted to reach a parser or a constructor that used to end in a traceback
(``RecursionError`` in ``json``/``tomllib``, ``nn.Conv2d`` with ``channels = -8``, ``KeyError``
in a resume); every command must refuse it in one line naming the file, before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_L, tiny_model
from hostile import TRAIN_SETS, no_temporaries, refused, run, safetensors_bytes, training_data
from safetensors.torch import load_file, save_file

from lmfn_edge.io import save_image
from lmfn_edge.manifest import sidecar_path
from lmfn_edge.model.weights import save_weights
from training.checkpoint import CHECKPOINT_NAME

DEEP = "[" * 100_000 + "]" * 100_000  # far past Python's recursion limit


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    """``(run folder, data folder, checkpoint)`` of a finished 2-step tiny run."""
    root = tmp_path_factory.mktemp("trained")
    data = training_data(root)
    from training.train import main

    assert main(["--output-dir", str(root / "run"), "--data-root", str(data), *TRAIN_SETS, "--no-progress"]) == 0
    return root / "run", data, torch.load(root / "run" / CHECKPOINT_NAME, weights_only=True)


@pytest.fixture
def benchmark(tmp_path) -> Path:
    folder = tmp_path / "bench"
    folder.mkdir()
    save_image(folder / "a.png", np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return folder


def _package_with_sidecar(tmp_path: Path, sidecar_text: str) -> Path:
    package = tmp_path / "m.mlpackage"
    package.mkdir(exist_ok=True)
    sidecar_path(package).write_text(sidecar_text)
    return package


def _every_sidecar_reader(capsys, tmp_path, pte: Path, photo: Path, benchmark: Path, message: str) -> None:
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", pte, message=message)
    refused(capsys, "evaluate", "--scale", "2", "--data", benchmark, "--methods", f"pte:{pte}", message=message)
    refused(capsys, "bench", "--scale", "2", "--int8-pte", "tile64", pte, message=message)
    package = _package_with_sidecar(tmp_path, sidecar_path(pte).read_text())
    refused(capsys, "verify_coreml", package, "--random-init", message=message)
    assert not (tmp_path / "o.png").exists()


def _every_weights_reader(capsys, tmp_path, bad: Path, photo: Path, benchmark: Path, message: str) -> None:
    refused(capsys, "export", "--weights", bad, "--output", tmp_path / "m.pte", message=message)
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", bad, message=message)
    refused(capsys, "evaluate", "--scale", "2", "--data", benchmark, "--methods", "eager", "--weights", bad,
            message=message)
    refused(capsys, "ptq", "--weights", bad, "--data-root", benchmark, "--output", tmp_path / "p.pt2", message=message)
    refused(capsys, "qat", "--weights", bad, "--data-root", benchmark, "--output-dir", tmp_path / "q",
            "--set", "scale=2", message=message)
    refused(capsys, "train", "--output-dir", tmp_path / "run", "--data-root", benchmark, *TRAIN_SETS,
            "--set", f"init_from={bad}", message=message)
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".pte", ".png", ".pt2") and p.parent == tmp_path]
    assert not (tmp_path / "q").exists() and not (tmp_path / "run").exists()


# --- deeply nested JSON and TOML --------------------------------------------------------------


def test_deeply_nested_sidecar(tmp_path, capsys, fixed_pte, photo, benchmark):
    _, result = fixed_pte
    pte = tmp_path / "m.pte"
    pte.write_bytes(result.path.read_bytes())
    sidecar_path(pte).write_text('{"format": "lmfn-edge-manifest", "extra": ' + DEEP + "}")
    _every_sidecar_reader(capsys, tmp_path, pte, photo, benchmark, message="nests")


@pytest.mark.parametrize("where", ["header", "lmfn_config"])
def test_deeply_nested_safetensors_metadata(tmp_path, capsys, photo, benchmark, where):
    bad = tmp_path / "deep.safetensors"
    if where == "header":
        bad.write_bytes(safetensors_bytes(('{"w": ' + DEEP + "}").encode()))
    else:
        bad.write_bytes(safetensors_bytes({"__metadata__": {"format": "lmfn-edge-weights", "lmfn_config": DEEP}}))
    _every_weights_reader(capsys, tmp_path, bad, photo, benchmark, message="nests")
    int8 = tmp_path / "deep_int8.safetensors"
    int8.write_bytes(safetensors_bytes({"__metadata__": {"format": "lmfn-edge-int8", "version": "1",
                                                         "lmfn_config": "{}", "details": DEEP}}))
    refused(capsys, "export", "--quantized", int8, "--output", tmp_path / "q.pte", message="nests")


def test_deeply_nested_training_configs(tmp_path, capsys, weights, benchmark):
    config = tmp_path / "deep.toml"
    config.write_text("seed = " + "[" * 5000 + "]" * 5000 + "\n")
    for command, extra in (("train", TRAIN_SETS), ("qat", ["--weights", str(weights)])):
        refused(capsys, command, "--config", config, "--output-dir", tmp_path / "run", "--data-root", benchmark,
                *extra, message="nests 5000 levels deep")
        refused(capsys, command, "--output-dir", tmp_path / "run", "--data-root", benchmark, *extra,
                "--set", "betas=" + "[" * 5000 + "]" * 5000, message="nests 5000 levels deep")
    assert not (tmp_path / "run").exists()


def test_deeply_nested_run_log_line_is_dropped_on_resume(tmp_path, capsys, trained):
    run_dir, data, _ = trained
    copy = tmp_path / "run"
    copy.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    with open(copy / "log.jsonl", "a") as f:
        f.write('{"step": ' + DEEP + "}\n")
    code, _, err = run(capsys, "train", "--output-dir", copy, "--resume", "--no-progress", "--set", "iterations=3")
    assert code == 0 and "dropped 1 unreadable line(s)" in err and "Traceback" not in err, err


# --- valid-looking configs with invalid values ----------------------------------------------

BAD_CONFIGS = {
    "channels=-8": ({"channels": -8}, "channels must be in [4, 256]"),
    "channels=0": ({"channels": 0}, "channels must be in [4, 256]"),
    "channels is a string": ({"channels": "56"}, "channels must be an integer"),
    "num_blocks=0": ({"num_blocks": 0, "pattern": ""}, "pattern must name at least one"),
    "num_in=0": ({"num_in": 0}, "num_in must be in [1, 16]"),
    "scale=8": ({"scale": 8}, "scale must be one of 2, 3, 4"),
    "kernel_size=1001": ({"kernel_size": 1001}, "kernel_size must be in [1, 31]"),
    "extend_scope=1e9": ({"extend_scope": 1e9}, "extend_scope must be a number in (0, 4]"),
    "a list": ([8], "must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_config_values_in_weights(tmp_path, capsys, photo, benchmark, weights, case):
    change, message = BAD_CONFIGS[case]
    good = json.loads(safetensors_header(weights)["__metadata__"]["lmfn_config"])
    config = {**good, **change} if isinstance(change, dict) else change
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(weights), bad, metadata={"format": "lmfn-edge-weights", "lmfn_config": json.dumps(config)})
    _every_weights_reader(capsys, tmp_path, bad, photo, benchmark, message=message)


def safetensors_header(path: Path) -> dict:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n])


@pytest.mark.parametrize("case", ["channels=-8", "num_blocks=0", "scale=8"])
def test_invalid_config_values_in_a_sidecar(tmp_path, capsys, fixed_pte, photo, benchmark, case):
    _, result = fixed_pte
    change, message = BAD_CONFIGS[case]
    pte = tmp_path / "m.pte"
    pte.write_bytes(result.path.read_bytes())
    sidecar = json.loads(result.manifest_path.read_text())
    sidecar["config"] = {**sidecar["config"], **change}
    sidecar_path(pte).write_text(json.dumps(sidecar))
    _every_sidecar_reader(capsys, tmp_path, pte, photo, benchmark, message=message)


def test_invalid_config_values_in_int8_parameters(tmp_path, capsys):
    from lmfn_edge.registry import shipped as shipped_model

    shipped = shipped_model(2).int8_path
    meta = safetensors_header(shipped)["__metadata__"]
    for change, message in (BAD_CONFIGS["channels=-8"], BAD_CONFIGS["scale=8"], ({"method": "magic"}, "method must")):
        bad = tmp_path / "bad_int8.safetensors"
        if "method" in change:
            new_meta = {**meta, "method": change["method"]}
        else:
            new_meta = {**meta, "lmfn_config": json.dumps({**json.loads(meta["lmfn_config"]), **change})}
        save_file(load_file(shipped), bad, metadata=new_meta)
        refused(capsys, "export", "--quantized", bad, "--output", tmp_path / "q.pte", message=message)
    assert not (tmp_path / "q.pte").exists()


def test_tensors_of_another_dtype_or_not_finite(tmp_path, capsys, photo, benchmark, weights):
    state = load_file(weights)
    meta = safetensors_header(weights)["__metadata__"]
    as_int = tmp_path / "int64.safetensors"
    save_file({k: v.round().to(torch.int64) for k, v in state.items()}, as_int, metadata=meta)
    _every_weights_reader(capsys, tmp_path, as_int, photo, benchmark, message="wrong dtype")
    nan = tmp_path / "nan.safetensors"
    first = sorted(state)[0]
    save_file({**state, first: torch.full_like(state[first], float("nan"))}, nan, metadata=meta)
    _every_weights_reader(capsys, tmp_path, nan, photo, benchmark, message="non-finite")


def test_sidecar_that_claims_another_scale_than_its_program(tmp_path, capsys, fixed_pte, photo, benchmark):
    _, result = fixed_pte  # an x2 program
    pte = tmp_path / "m.pte"
    pte.write_bytes(result.path.read_bytes())
    sidecar = json.loads(result.manifest_path.read_text())
    sidecar.update(scale=3, model="lmfn_x3", config={**sidecar["config"], "scale": 3})
    sidecar_path(pte).write_text(json.dumps(sidecar))
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", pte, message="but its sidecar says x3")
    refused(capsys, "evaluate", "--scale", "3", "--data", benchmark, "--methods", f"pte:{pte}",
            message="but its sidecar says x3")
    assert not (tmp_path / "o.png").exists()


def test_x8_weights_and_an_empty_pattern(tmp_path, capsys, photo):
    x8 = tmp_path / "x8.safetensors"
    save_weights(tiny_model(2, **TINY_L), x8)
    meta = safetensors_header(x8)["__metadata__"]
    meta["lmfn_config"] = json.dumps({**json.loads(meta["lmfn_config"]), "scale": 8})
    save_file(load_file(x8), x8, metadata=meta)
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", x8, message="scale must be one of 2, 3, 4")
    refused(capsys, "export", "--random-init", "--pattern", "", "--output", tmp_path / "m.pte",
            message="pattern must name at least one building module")
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "m.pte").exists()


# --- damaged training state -----------------------------------------------------------------

DAMAGE = {
    "step is a string": (lambda c: {**c, "step": "2"}, "its step is not an integer"),
    "negative step": (lambda c: {**c, "step": -1}, "its step is not an integer >= 0"),
    "empty sampler": (lambda c: {**c, "sampler": {}}, "its sampler is not"),
    "no RNG state": (lambda c: {**c, "rng": []}, "its rng is not"),
    "empty RNG state": (lambda c: {**c, "rng": [{}]}, "its rng is not"),
    "a torch RNG state of the wrong size": (
        lambda c: {**c, "rng": [{**c["rng"][0], "torch": torch.zeros(10, dtype=torch.uint8)}]}, "its rng is not"),
    "model state is a list": (lambda c: {**c, "model": [1, 2]}, "its model is not a state dict"),
    "EMA of strings": (lambda c: {**c, "ema": {"w": "x"}}, "its ema is not a state dict"),
    "optimizer is a list": (lambda c: {**c, "optimizer": []}, "its optimizer is not"),
    "invalid architecture": (lambda c: {**c, "model_config": {**c["model_config"], "channels": -8}},
                             "its model_config is invalid"),
    "unknown kind": (lambda c: {**c, "kind": "magic"}, "its kind is not"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_checkpoint_in_every_command_that_reads_one(tmp_path, capsys, trained, weights, case):
    _, data, ckpt = trained
    damage, message = DAMAGE[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(damage(ckpt), run_dir / CHECKPOINT_NAME)
    before = (run_dir / CHECKPOINT_NAME).read_bytes()
    refused(capsys, "train", "--output-dir", run_dir, "--resume", "--data-root", data, *TRAIN_SETS, message=message)
    refused(capsys, "train", "--output-dir", run_dir, "--resume", message=message)  # config from the checkpoint
    refused(capsys, "qat", "--output-dir", run_dir, "--resume", "--weights", weights, "--data-root", data,
            "--set", "scale=2", message=message)
    refused(capsys, "release", run_dir / CHECKPOINT_NAME, "--output", tmp_path / "w.safetensors", message=message)
    refused(capsys, "train", "--output-dir", tmp_path / "fresh", "--data-root", data, *TRAIN_SETS,
            "--set", f"init_from={run_dir / CHECKPOINT_NAME}", message=message)
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == before
    assert not (tmp_path / "w.safetensors").exists() and not (tmp_path / "fresh").exists()
    no_temporaries(tmp_path)


def test_release_of_a_checkpoint_whose_config_is_incomplete_or_wrong(tmp_path, capsys, trained):
    _, _, ckpt = trained
    for config, message in (({k: v for k, v in ckpt["config"].items() if k != "data_roots"}, "lacks data_roots"),
                            ({**ckpt["config"], "batch_size": "big"}, "batch_size must be an integer"),
                            ({**ckpt["config"], "data_roots": [["nested"]]}, "data_roots must be")):
        path = tmp_path / "ckpt.pt"
        torch.save({**ckpt, "config": config}, path)
        refused(capsys, "release", path, "--output", tmp_path / "w.safetensors", message=message)
    assert not (tmp_path / "w.safetensors").exists()


def _deep_checkpoint(path: Path, depth: int) -> Path:
    """A torch zip checkpoint whose pickle nests ``depth`` lists (written opcode by opcode:
    ``pickle.dump`` itself recurses)."""
    import io
    import struct
    import zipfile

    def text(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value.encode())) + value.encode()

    pickled = (b"\x80\x02}" + text("format") + text("lmfn-edge-train-checkpoint") + b"s" + text("config")
               + b"]" * depth + b"a" * (depth - 1) + b"s.")
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(buffer) as original, zipfile.ZipFile(path, "w") as crafted:
        for name in original.namelist():
            crafted.writestr(name, pickled if name.endswith("data.pkl") else original.read(name))
    return path


def test_deep_or_huge_checkpoints_and_weights(tmp_path, capsys, photo):
    deep = _deep_checkpoint(tmp_path / "deep.pt", 300_000)
    refused(capsys, "release", deep, "--output", tmp_path / "w.safetensors", message="not a complete checkpoint")
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:  # sparse: no disk used
        f.truncate(3 << 30)
    refused(capsys, "release", huge, "--output", tmp_path / "w.safetensors", message="more than any LMFN checkpoint")
    with open(tmp_path / "huge.safetensors", "wb") as f:
        f.truncate(3 << 30)
    refused(capsys, "upscale", photo, tmp_path / "o.png", "--model", tmp_path / "huge.safetensors",
            message="more than any LMFN weights file")
    assert not (tmp_path / "w.safetensors").exists() and not (tmp_path / "o.png").exists()

