"""The training recipe: data layouts and errors, reproducible sampling, learning, exact resume,
config errors, release and throughput. Tiny models on synthetic images, one CPU thread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lmfn_edge.imresize import bicubic_downscale
from lmfn_edge.io import save_image
from lmfn_edge.model.weights import read_weights
from training import release as release_cli
from training import throughput, train
from training.checkpoint import (
    CHECKPOINT_NAME,
    init_from,
    load_checkpoint,
    read_init_state,
    rng_state,
    set_rng_state,
)
from training.config import ConfigError, TrainConfig, load_config
from training.data import (
    DataError,
    StepSampler,
    TrainPatches,
    dihedral,
    find_pairs,
    load_validation,
)
from training.plot import plot_log
from training.skimage_photos import pixel_sha256

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


pytestmark = pytest.mark.usefixtures("one_thread")


def grating(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of three coloured sinusoidal gratings below the LR Nyquist frequency at x2.

    Bicubic down-then-up attenuates these frequencies and a small network learns to restore
    them within a few hundred steps, so "beats bicubic" is a quick, reliable signal.
    """
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.full((h, w, 3), 0.5)
    for _ in range(3):
        f, theta, phase = rng.uniform(0.05, 0.18), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        g = np.sin(2 * np.pi * f * (x * np.cos(theta) + y * np.sin(theta)) + phase)
        img += 0.13 * g[..., None] * rng.uniform(0.5, 1.0, 3)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_images(folder: Path, count: int, size: int = 64, seed: int = 0, names: str = "{:04d}.png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [folder / names.format(i) for i in range(count)]
    for p in paths:
        save_image(p, grating(size, size, rng))
    return paths


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    """HR-only training folder (8 images) and a held-out validation folder (1 image)."""
    write_images(tmp_path / "train", 8, seed=0)
    write_images(tmp_path / "val", 1, seed=1)
    return tmp_path / "train", tmp_path / "val"


def tiny(data_root: Path, cache: Path, **changes) -> TrainConfig:
    fields = dict(
        model="lmfn_x2",
        model_overrides={"channels": 8, "num_blocks": 2, "pattern": "LM"},
        data_roots=[str(data_root)],
        cache_dir=str(cache),
        patch_size=12,
        batch_size=4,
        iterations=6,
        ema_decay=0.9,
        val_every=0,
        ckpt_every=0,
        log_every=1,
        num_workers=0,
        device="cpu",
    )
    return TrainConfig(**{**fields, **changes})


# --- data -----------------------------------------------------------------------------------


def test_div2k_layout_pairs_by_name(tmp_path):
    hr = write_images(tmp_path / "DIV2K" / "DIV2K_train_HR", 3, size=40)
    lr_dir = tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X2"
    lr_dir.mkdir(parents=True)
    for p in hr:
        save_image(lr_dir / f"{p.stem}x2.png", bicubic_downscale(np.asarray(Image.open(p)), 2))
    for root in (tmp_path / "DIV2K", tmp_path / "DIV2K" / "DIV2K_train_HR"):
        pairs = find_pairs(root, 2, cache_dir=None, min_lr_size=16)
        assert [(p.hr.name, p.lr.name) for p in pairs] == [("0000.png", "0000x2.png"), ("0001.png", "0001x2.png"),
                                                           ("0002.png", "0002x2.png")]


def test_hr_only_lr_is_cached_bicubic(tmp_path):
    (hr,) = write_images(tmp_path / "photos", 1, size=42)
    (pair,) = find_pairs(tmp_path / "photos", 4, tmp_path / "cache")
    assert pair.lr.parent == tmp_path / "cache" / "X4"
    np.testing.assert_array_equal(np.asarray(Image.open(pair.lr)), bicubic_downscale(np.asarray(Image.open(hr)), 4))
    mtime = pair.lr.stat().st_mtime_ns
    assert find_pairs(tmp_path / "photos", 4, tmp_path / "cache")[0].lr.stat().st_mtime_ns == mtime  # reused
    assert not list((tmp_path / "cache" / "X4").glob(".*.tmp"))


def test_validation_set5_layout_crops_hr_to_lr_times_scale(tmp_path):
    (hr,) = write_images(tmp_path / "Set5" / "HR", 1, size=43, names="baby.png")
    (tmp_path / "Set5" / "LR_bicubic" / "X3").mkdir(parents=True)
    save_image(tmp_path / "Set5" / "LR_bicubic" / "X3" / "babyx3.png", bicubic_downscale(np.asarray(Image.open(hr)), 3))
    (img,) = load_validation(tmp_path / "Set5", 3, cache_dir=None)
    assert img.name == "baby" and img.lr.shape == (14, 14, 3) and img.hr.shape == (42, 42, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: None, "data folder not found"),
        (lambda d: (d / "empty").mkdir(), "no images, no HR/ folder"),
        (lambda d: write_images(d / "empty", 1, size=20), "smaller than the 12px LR patch"),
        (lambda d: (write_images(d / "empty" / "HR", 2, size=40), (d / "empty" / "LR_bicubic" / "X2").mkdir(parents=True),
                    save_image(d / "empty" / "LR_bicubic" / "X2" / "0000x2.png", np.zeros((20, 20, 3), np.uint8))),
         "no LR image for"),
        (lambda d: (write_images(d / "empty" / "HR", 1, size=40), (d / "empty" / "LR_bicubic" / "X2").mkdir(parents=True),
                    save_image(d / "empty" / "LR_bicubic" / "X2" / "0000x2.png", np.zeros((20, 20, 3), np.uint8)),
                    save_image(d / "empty" / "LR_bicubic" / "X2" / "0009x2.png", np.zeros((20, 20, 3), np.uint8))),
         "have no HR image"),
        (lambda d: (write_images(d / "empty" / "HR", 1, size=40), (d / "empty" / "LR_bicubic" / "X2").mkdir(parents=True),
                    save_image(d / "empty" / "LR_bicubic" / "X2" / "0000x2.png", np.zeros((19, 20, 3), np.uint8))),
         "must be 20x20"),
        (lambda d: ((d / "empty" / "A_HR").mkdir(parents=True), (d / "empty" / "B_HR").mkdir()), "several HR folders"),
    ],
)
def test_data_errors_are_one_line(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        find_pairs(tmp_path / "empty", 2, tmp_path / "cache", min_lr_size=12)
    assert "\n" not in str(info.value)


def test_patches_are_aligned_under_all_8_transforms(tmp_path):
    # HR made of 2x2 blocks of the LR pixels: an aligned HR patch subsampled is the LR patch.
    rng = np.random.default_rng(3)
    lr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    write = lambda p, a: (p.parent.mkdir(parents=True, exist_ok=True), save_image(p, a))  # noqa: E731
    write(tmp_path / "d" / "HR" / "a.png", np.kron(lr, np.ones((2, 2, 1), np.uint8)))
    write(tmp_path / "d" / "LR_bicubic" / "X2" / "ax2.png", lr)
    dataset = TrainPatches(find_pairs(tmp_path / "d", 2, None), 2, 8, seed=0)
    seen = set()
    for sample in range(64):
        lr_patch, hr_patch = dataset[(0, sample)]
        assert lr_patch.shape == (3, 8, 8) and hr_patch.shape == (3, 16, 16)
        torch.testing.assert_close(hr_patch[:, ::2, ::2], lr_patch, rtol=0, atol=0)
        seen.add(hr_patch.numpy().tobytes())
    assert len({dihedral(lr, k).tobytes() for k in range(8)}) == 8
    assert len(seen) > 32  # crops and transforms vary


def test_sampler_is_independent_of_world_size_and_covers_each_epoch():
    single = iter(StepSampler(5, 4, seed=7, start_step=0))
    ranks = [iter(StepSampler(5, 4, seed=7, rank=r, world_size=2, start_step=0)) for r in range(2)]
    batches = [next(single) for _ in range(5)]
    for batch in batches:
        assert batch == next(ranks[0]) + next(ranks[1])
    flat = [image for batch in batches for image, _ in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))
    assert next(iter(StepSampler(5, 4, seed=7, start_step=3))) == batches[3]  # resume needs only the step
    assert [s for b in batches for _, s in b] == list(range(20))
    with pytest.raises(DataError, match="not divisible"):
        StepSampler(5, 5, seed=0, world_size=2)


def test_decoded_cache_gives_the_same_patches(data, tmp_path):
    pairs = find_pairs(data[0], 2, tmp_path / "cache")
    plain = TrainPatches(pairs, 2, 12, seed=1)
    fast = TrainPatches(pairs, 2, 12, seed=1, decoded_dir=tmp_path / "decoded")
    for key in [(0, 0), (3, 17), (3, 17)]:
        for a, b in zip(plain[key], fast[key]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(list((tmp_path / "decoded").glob("*.npy"))) == 4


# --- config ---------------------------------------------------------------------------------


def test_set_values_are_parsed_and_typed():
    config = load_config(CONFIGS / "smoke_cpu.toml", [
        "learning_rate=1e-3", "amp_bf16=true", "betas=[0.9, 0.95, 0]", "model=lmfn_x3", "model_overrides.channels=24",
        "data_roots=some/dir", "iterations=2_000",
    ])
    assert config.learning_rate == 1e-3 and config.amp_bf16 is True and config.betas == (0.9, 0.95, 0.0)
    assert config.model == "lmfn_x3" and config.model_config().scale == 3
    assert config.model_overrides == {"channels": 24, "num_blocks": 2, "pattern": "LM"}
    assert config.data_roots == ["some/dir"] and config.iterations == 2000


@pytest.mark.parametrize(
    "toml, sets, message",
    [
        ("learning_rat = 1e-3\n", [], "unknown config key 'learning_rat' (did you mean 'learning_rate'?)"),
        ("lr = 1e-3\n", [], "unknown config key 'lr'"),
        ('learning_rate = "fast"\n', [], "learning_rate must be a number, got 'fast' (str)"),
        ("", ["learning_rate=nan"], "learning_rate must be > 0"),
        ("", ["betas=[0.9, 1.5, 0.9]"], "betas must each be in [0, 1)"),
        ("", ["batch_size=abc"], "batch_size must be an integer, got 'abc'"),
        ("", ["betas=[0.9, 0.9]"], "betas must be a list of 3 numbers"),
        ("", ["model_overrides.chanels=8"], "unknown model override 'chanels'"),
        ("", ["model=lmfn_x5"], "unknown model 'lmfn_x5'"),
        ("", ["ema_decay=1.5"], "ema_decay must be in [0, 1)"),
        ("", ["compile_mode=fast"], "compile_mode must be one of default, reduce-overhead"),
        ("", ["learning_rate"], "--set expects key=value"),
        ("[oops\n", [], "is not valid TOML"),
    ],
)
def test_config_errors_are_one_line_with_nonzero_exit(tmp_path, capsys, toml, sets, message):
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, sets)
    assert message in str(info.value)
    argv = ["--config", str(path), "--data-root", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert train.main(argv + [a for s in sets for a in ("--set", s)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("roots, message", [([], "no training data: pass --data-root or set data_roots"),
                                            (["--data-root", "nowhere"], "data folder not found: nowhere")])
def test_missing_data_root_is_one_line(tmp_path, capsys, roots, message):
    argv = ["--config", str(CONFIGS / "smoke_cpu.toml"), "--output-dir", str(tmp_path / "out"), *roots]
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


def test_all_shipped_configs_load():
    for path in CONFIGS.glob("*.toml"):
        config = load_config(path)
        assert config.model_config().scale == int(config.model[-1])
    recipe = load_config(CONFIGS / "lmfn_x4.toml")
    assert (recipe.patch_size, recipe.batch_size, recipe.iterations, recipe.learning_rate) == (48, 64, 2_000_000, 5e-3)
    assert (recipe.betas, recipe.weight_decay, recipe.ema_decay) == ((0.98, 0.92, 0.99), 0.0, 0.999)


# --- training -------------------------------------------------------------------------------


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_lowers_loss_and_beats_bicubic_on_held_out_image(data, tmp_path):
    config = tiny(data[0], tmp_path / "cache", val_root=str(data[1]), model_overrides={"channels": 16, "num_blocks": 2,
                  "pattern": "LM"}, patch_size=16, batch_size=8, iterations=250, learning_rate=1e-2, val_every=125,
                  ckpt_every=125, log_every=25)
    summary = train.train(config, tmp_path / "run", progress=False)
    losses = [r["loss"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert len(losses) == 10 and losses[-1] < 0.5 * losses[0]
    assert summary["val_psnr_y"] > summary["bicubic_psnr_y"] + 1.0, summary
    assert summary["val_psnr_y_raw"] > summary["bicubic_psnr_y"] + 1.0, summary
    with Image.open(tmp_path / "run" / "curves.png") as img:
        assert img.size == (640, 440)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["ckpt.pt", "curves.png", "log.jsonl"]


def states(run: Path) -> dict:
    return torch.load(run / CHECKPOINT_NAME, map_location="cpu", weights_only=True)  # plain data only


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_is_exact(data, tmp_path, workers):
    config = tiny(data[0], tmp_path / "cache", val_root=str(data[1]), val_every=2, num_workers=workers)
    train.train(config.__class__(**{**config.to_dict(), "iterations": 12}), tmp_path / "straight", progress=False)
    train.train(config, tmp_path / "split", progress=False)  # 6 iterations, then stop
    assert load_checkpoint(tmp_path / "split" / CHECKPOINT_NAME)["step"] == 6
    resumed = TrainConfig(**{**config.to_dict(), "iterations": 12})
    train.train(resumed, tmp_path / "split", resume=True, progress=False)

    a, b = states(tmp_path / "straight"), states(tmp_path / "split")
    assert a["step"] == b["step"] == 12
    for part in ("model", "ema"):
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=0, atol=1e-6)
    for k, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(value, b["optimizer"]["state"][k][name], rtol=0, atol=1e-6)
    def curve(run: Path) -> list[tuple]:
        return [(r["step"], r.get("loss"), r.get("val_psnr_y")) for r in read_log(run)]

    assert curve(tmp_path / "straight") == curve(tmp_path / "split")


def test_resume_drops_log_records_after_the_checkpoint(data, tmp_path):
    config = tiny(data[0], tmp_path / "cache", iterations=4, ckpt_every=2)
    train.train(config, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    ckpt["step"] = 2  # as if the run died after its step-2 checkpoint
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT_NAME)
    train.train(TrainConfig(**{**config.to_dict(), "iterations": 2}), tmp_path / "run", resume=True, progress=False)
    assert [r["step"] for r in read_log(tmp_path / "run")] == [1, 2]


def test_time_limit_stops_at_a_log_boundary_with_a_checkpoint(data, tmp_path, capsys):
    # A limit already passed after the first step: the run stops at the first log boundary
    # (step 3), saves, and resuming without the limit finishes the remaining steps.
    config = tiny(data[0], tmp_path / "cache", iterations=9, log_every=3, time_limit=1e-9)
    summary = train.train(config, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["step"] == 3
    assert "time_limit of 1e-09 s reached at step 3" in capsys.readouterr().err
    train.train(TrainConfig(**{**config.to_dict(), "time_limit": 0.0}), tmp_path / "run", resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["step"] == 9
    with pytest.raises(ConfigError, match="time_limit must be >= 0"):
        TrainConfig(time_limit=-1)


def test_run_refuses_to_overwrite_and_to_resume_nothing(data, tmp_path, capsys):
    args = ["--config", str(CONFIGS / "smoke_cpu.toml"), "--data-root", str(data[0]), "--no-progress",
            "--set", "iterations=1", "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "patch_size=12"]
    assert train.main(args + ["--output-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert train.main(args + ["--output-dir", str(tmp_path / "run")]) == 0
    assert train.main(args + ["--output-dir", str(tmp_path / "run")]) == 2
    assert "pass --resume" in capsys.readouterr().err
    # On resume without --config, the checkpoint's config is the base; --set extends the run.
    assert train.main(["--output-dir", str(tmp_path / "run"), "--resume", "--no-progress", "--set", "iterations=2"]) == 0
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["step"] == 2
    assert train.main(["--output-dir", str(tmp_path / "run"), "--resume", "--set", "model_overrides.channels=8"]) == 2
    assert "the checkpoint holds" in capsys.readouterr().err


def test_checkpoint_rng_round_trip():
    import random

    state = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# --- release, init_from, throughput, plot ---------------------------------------------------


def test_release_writes_ema_weights_that_start_another_scale(data, tmp_path, capsys):
    train.train(tiny(data[0], tmp_path / "cache", iterations=2), tmp_path / "run", progress=False)
    out = tmp_path / "x2.safetensors"
    assert release_cli.main([str(tmp_path / "run" / CHECKPOINT_NAME), "--output", str(out)]) == 0
    state, config, meta = read_weights(out)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    for k, v in ckpt["ema"].items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert meta["training_steps"] == "2" and meta["weights"] == "ema" and config.channels == 8
    assert json.loads(meta["train_config"])["model"] == "lmfn_x2"
    # The training images' fingerprint: every image of the data root, hashed over its pixels.
    fingerprint = json.loads(meta["train_images"])
    assert sorted(e["file"] for e in fingerprint) == sorted(p.name for p in data[0].iterdir())
    for entry in fingerprint:
        with Image.open(data[0] / entry["file"]) as img:
            pixels = np.asarray(img.convert("RGB"))
        assert entry["sha256"] == pixel_sha256(pixels) and entry["root"] == str(data[0])
    out2 = tmp_path / "x2b.safetensors"
    assert release_cli.main([str(tmp_path / "run" / CHECKPOINT_NAME), "--output", str(out2), "--no-fingerprint"]) == 0
    assert read_weights(out2)[2]["train_images"] == "unavailable"

    from lmfn_edge import create_model

    x4 = create_model("lmfn_x4", channels=8, num_blocks=2, pattern="LM")
    copied, left = init_from(x4, read_init_state(out), str(out))
    assert left == ["upsample.bias", "upsample.weight"] and copied == len(state) - 2
    capsys.readouterr()
    assert release_cli.main([str(tmp_path / "missing.pt"), "--output", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: checkpoint not found")


def test_throughput_reports_rates(capsys):
    assert throughput.main(["--device", "cpu", "--batch-size", "1", "--patch-size", "8", "--iterations", "1",
                            "--warmup", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "lmfn_x2" and result["iterations_per_s"] > 0
    assert result["hours_for_recipe"] == pytest.approx(result["seconds_per_iteration"] * 2_000_000 / 3600)


def test_plot_draws_loss_and_psnr(tmp_path):
    records = [{"step": 0, "bicubic_psnr_y": 30.0}] + [{"step": s, "loss": 1.0 / s} for s in range(1, 50)]
    records += [{"step": 25, "val_psnr_y": 28.0, "val_psnr_y_raw": 29.0}, {"step": 49, "val_psnr_y": 31.0, "val_psnr_y_raw": 31.5}]
    plot_log(records, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as img:
        pixels = np.asarray(img.convert("RGB"))
    assert (np.abs(pixels.astype(int) - [31, 119, 180]).sum(-1) == 0).any()  # loss curve drawn
    assert (np.abs(pixels.astype(int) - [214, 39, 40]).sum(-1) == 0).any()  # EMA PSNR curve drawn
    assert (np.abs(pixels.astype(int) - [255, 160, 60]).sum(-1) == 0).any()  # raw PSNR curve drawn


def test_cosine_schedule_decays_the_learning_rate_to_its_end_point(data, tmp_path):
    config = tiny(data[0], tmp_path / "cache", learning_rate=1e-3, schedule="cosine", decay_start=2,
                  final_lr_ratio=0.1, iterations=6)
    rates = [config.learning_rate_at(step) for step in range(6)]
    assert rates[:3] == [1e-3, 1e-3, 1e-3] and all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert config.learning_rate_at(6) == pytest.approx(1e-4)  # half a cosine: the end point at iterations
    assert tiny(data[0], tmp_path / "cache").learning_rate_at(5) == tiny(data[0], tmp_path / "cache").learning_rate
    train.train(config, tmp_path / "run", progress=False)
    logged = [r["learning_rate"] for r in read_log(tmp_path / "run") if "loss" in r]
    assert logged == pytest.approx(rates)  # the optimizer ran each step at the scheduled rate
    with pytest.raises(ConfigError, match="decay_start must be in"):
        tiny(data[0], tmp_path / "cache", schedule="cosine", decay_start=6, iterations=6)
    with pytest.raises(ConfigError, match="schedule must be constant or cosine"):
        tiny(data[0], tmp_path / "cache", schedule="step")


# --- loop speed -----------------------------------------------------------------------------


def test_loop_speed_times_each_variant_of_the_real_loop(data, tmp_path, capsys):
    from training import loop_speed

    config = tmp_path / "run.toml"
    config.write_text(f'model = "lmfn_x2"\ndata_roots = ["{data[0]}"]\nval_root = "{data[1]}"\n'
                      f'cache_dir = "{tmp_path / "cache"}"\npatch_size = 12\nbatch_size = 2\nval_every = 4\n'
                      'ckpt_every = 2\nlog_every = 2\nnum_workers = 0\ndevice = "cpu"\n'
                      '[model_overrides]\nchannels = 8\nnum_blocks = 2\npattern = "LM"\n')
    out = tmp_path / "speed.json"
    code = loop_speed.main(["--config", str(config), "--steps", "2", "--warmup", "1", "--rounds", "2",
                            "--threads", "1", "--variants", "v2,subimage", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(out.read_text())
    assert [row["variant"] for row in report["rows"]] == ["v2", "subimage"]
    assert report["cpu"]["model"] and report["threads"] == 1
    for row in report["rows"]:
        assert len(row["rounds"]) == 2 and all(s > 0 for s in row["rounds"])
        split = row["seconds_per_step"]
        # One validation and one checkpoint ran in every window; they come back amortised.
        assert split["step"] > 0 and split["validation"] > 0 and split["checkpoint"] > 0
        assert row["steps_per_s"] == pytest.approx(1 / sum(split.values()), rel=0.5)
    table = [line for line in captured.out.splitlines() if line.startswith("| ")]
    assert len(table) == 3 and "1.00x" in table[1]
    assert captured.out.startswith("CPU: ")
    # The run's own lines stay hidden without --verbose.
    assert "init_from" not in captured.err and "val PSNR-Y" not in captured.out


def test_loop_speed_v2_variant_trains_the_dilated_conv_as_v2_did():
    from lmfn_edge.model import lmfn
    from training.loop_speed import _dilated_conv

    conv = torch.nn.Conv2d(4, 4, 5, padding=6, dilation=3, groups=4)
    x = torch.randn(1, 4, 9, 9)
    calls = []
    original = torch.nn.functional.pixel_unshuffle
    try:
        torch.nn.functional.pixel_unshuffle = lambda *a: calls.append(a) or original(*a)
        lmfn.dilated_depthwise(conv, x)
        with _dilated_conv(False):
            lmfn.dilated_depthwise(conv, x)
    finally:
        torch.nn.functional.pixel_unshuffle = original
    assert len(calls) == 1  # the sub-image form only outside the "v2" variant
    assert lmfn.dilated_depthwise.__name__ == "dilated_depthwise"  # restored


def test_cpu_info_names_the_int8_and_bf16_extensions(tmp_path):
    from lmfn_edge.hardware import cpu_info

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                   "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16\n\n"
                   "processor\t: 1\nmodel name\t: ignored\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm bf16\nCPU part\t: 0xd0c\n")
    info = cpu_info(x86)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["features"] == ["AVX2", "AVX512F", "AVX512-VNNI", "AVX512-BF16", "AMX-INT8", "AMX-BF16"]
    assert cpu_info(arm)["features"] == ["dotprod", "i8mm", "bf16"]
    assert cpu_info(tmp_path / "missing")["features"] == []
