"""Distributed training on CPU with gloo: torchrun runs of the CLI and DDP gradient averaging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lmfn_edge.io import save_image
from lmfn_edge.model import LMFN
from training import train
from training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from training.config import load_config
from training.data import StepSampler, TrainPatches, find_pairs

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("one_thread")]

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "training" / "configs" / "smoke_cpu.toml"
SETS = ["iterations=3", "patch_size=12", "batch_size=4", "ckpt_every=1", "log_every=1", "val_every=2",
        "model_overrides.channels=8"]


@pytest.fixture
def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "train").mkdir()
    for i in range(4):
        save_image(tmp_path / "train" / f"{i}.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return tmp_path / "train"


def test_torchrun_two_processes_train_like_one_and_write_one_checkpoint(data, tmp_path):
    sets = SETS + [f"cache_dir={tmp_path / 'cache'}"]
    args = ["--config", str(SMOKE), "--data-root", str(data), "--val-root", str(data), "--no-progress"]
    args += [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.train", "--output-dir", str(tmp_path / "ddp"), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Rank 0 alone writes: one checkpoint (replaced atomically each step), one log, one plot.
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["ckpt.pt", "curves.png", "log.jsonl"]
    assert proc.stdout.count('"step": 3') == 1  # one summary line, from rank 0

    config = load_config(SMOKE, sets + [f"data_roots={data}", f"val_root={data}"])
    train.train(config, tmp_path / "single", progress=False)
    ddp, single = (load_checkpoint(tmp_path / run / CHECKPOINT_NAME) for run in ("ddp", "single"))
    assert ddp["step"] == single["step"] == 3 and ddp["world_size"] == 2 and len(ddp["rng"]) == 2
    # Same global batches and averaged gradients: the weights agree up to reduction order.
    for part in ("model", "ema"):
        for k, v in single[part].items():
            torch.testing.assert_close(ddp[part][k], v, rtol=1e-4, atol=1e-5)


def _ddp_gradients(rank: int, world_size: int, init_file: str, data: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    model, batch = _model_and_batch(data, rank, world_size)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    F.l1_loss(ddp(batch[0]), batch[1]).backward()
    torch.save({k: p.grad for k, p in model.named_parameters()}, f"{out}/grads{rank}.pt")
    dist.destroy_process_group()


def _model_and_batch(data: str, rank: int, world_size: int):
    config = load_config(SMOKE, SETS)
    torch.manual_seed(config.seed)
    model = LMFN(config.model_config())
    pairs = find_pairs(data, 2, Path(data).parent / "cache", config.patch_size)
    dataset = TrainPatches(pairs, 2, config.patch_size, config.seed)
    keys = next(iter(StepSampler(len(pairs), config.batch_size, config.seed, rank, world_size)))
    lr, hr = zip(*(dataset[k] for k in keys))
    return model, (torch.stack(lr), torch.stack(hr))


def test_ddp_gradients_are_the_mean_over_the_global_batch(data, tmp_path):
    mp.spawn(_ddp_gradients, args=(2, str(tmp_path / "store"), str(data), str(tmp_path)), nprocs=2, join=True)
    model, (lr, hr) = _model_and_batch(str(data), 0, 1)
    F.l1_loss(model(lr), hr).backward()
    for rank in range(2):
        grads = torch.load(tmp_path / f"grads{rank}.pt", weights_only=True)
        for k, p in model.named_parameters():
            # A sum over ranks would be twice this; no sync would differ per rank.
            torch.testing.assert_close(grads[k], p.grad, rtol=1e-4, atol=1e-6)
