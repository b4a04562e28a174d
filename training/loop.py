"""One training engine for the float recipe and for QAT: data, step, EMA, validation, checkpoint,
exact resume and the run log.

:class:`Trainer` runs the loop; ``training.train`` uses it as it is and
``quantization.qat.QATTrainer`` overrides the hooks (its model is a PT2E-prepared graph, it
freezes observers at a step, validates fake-quant weights and writes an int8 program at the
end). Under ``torchrun`` each process runs the same loop and rank 0 alone writes.

Resume is exact: the data stream is a function of (seed, step), and the checkpoint holds the
model, its EMA, the optimizer, every rank's RNG states and the step, so stopping at N and
resuming to 2N gives the weights of a run straight to 2N.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from lmfn_edge.errors import LmfnEdgeError, first_line
from lmfn_edge.metadata import MetadataError, parse_json

from . import dist
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import LoopConfig
from .data import (
    ImagePair,
    StepSampler,
    TrainPatches,
    ValImage,
    find_pairs,
    load_validation,
)
from .engine import bicubic_psnr, build_optimizer, ema_update, train_step, validate
from .plot import plot_log

__all__ = ["LOG_NAME", "PLOT_NAME", "DivergedError", "PhaseClock", "RunLog", "Trainer"]

LOG_NAME = "log.jsonl"
PLOT_NAME = "curves.png"
_MAX_RECORD_BYTES = 64 * 1024  # a record this loop writes is under 300 bytes

# Fields whose change on resume makes the run differ from an uninterrupted one.
_STREAM_FIELDS = ("seed", "batch_size", "patch_size", "data_roots", "learning_rate", "schedule", "decay_start",
                  "final_lr_ratio", "betas", "weight_decay", "ema_decay")


class RunLog:
    """Append-only JSONL log; on resume, records past the checkpoint's step are dropped.

    A line that is not a JSON record (a run killed mid-write leaves half a line) is dropped
    with a note rather than stopping the resume: the log is a record, the checkpoint the state.
    """

    def __init__(self, path: Path, enabled: bool, keep_until: int | None) -> None:
        self.path, self.enabled, self.records = path, enabled, []
        if not enabled:
            return
        if keep_until is not None and path.is_file():
            bad = 0
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        record = parse_json(line, str(path), _MAX_RECORD_BYTES, max_depth=4)
                        if isinstance(record, dict) and isinstance(record.get("step"), int):
                            if record["step"] <= keep_until:
                                self.records.append(record)
                            continue
                    except MetadataError:
                        pass
                    bad += bool(line.strip())
            if bad:
                print(f"note: dropped {bad} unreadable line(s) of {path}", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = {**record, "time": round(time.time(), 3)}
            self.records.append(record)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class DivergedError(LmfnEdgeError):
    """The loss or the weights stopped being finite; nothing non-finite was saved (exit code 1)."""


class Trainer:
    """Trains ``config`` in ``output_dir``; subclasses change what is trained through the hooks.

    Args:
        config: The run.
        output_dir: Checkpoint (``ckpt.pt``), log (``log.jsonl``) and plot (``curves.png``).
        progress: Show a progress bar (rank 0).
    """

    kind = "train"  # recorded in checkpoints; resume refuses a checkpoint of another kind

    def __init__(self, config: LoopConfig, output_dir: str | Path, progress: bool = True,
                 reads: tuple[str | Path, ...] = ()) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.progress = progress
        self.reads = tuple(reads)  # what the caller read besides the config's inputs (a TOML file)
        self.log: RunLog | None = None
        self.ctx: dist.DistContext | None = None
        self.clock: PhaseClock | None = None  # the running loop's time split

    # --- hooks ------------------------------------------------------------------------------

    @property
    def scale(self) -> int:
        return self.config.scale

    def describe(self, model: nn.Module) -> str:
        """One line about the run for the start of the log."""
        return f"{self.kind} x{self.scale}"

    def check_resume(self, ckpt: dict[str, Any]) -> None:
        """Refuse a checkpoint that does not continue this run (called before any work)."""

    def inputs(self) -> list[str | Path]:
        """Files and folders the run reads; nothing the run writes may be, or be inside, one."""
        return [*self.config.data_roots, self.config.val_root, *self.reads]

    def outputs(self) -> list[Path]:
        """Files the run writes besides its folder's checkpoint, log and plot."""
        return []

    def prepare(self, ckpt: dict[str, Any] | None) -> None:
        """Read and check what the run starts from (``ckpt`` on resume), before any data is read."""

    def build(self, ckpt: dict[str, Any] | None, device: torch.device) -> tuple[nn.Module, nn.Module]:
        """The model to train and its EMA, on ``device`` (states are loaded by the engine)."""
        raise NotImplementedError

    def wrap(self, model: nn.Module) -> nn.Module:
        """What the step calls (``torch.compile``, DDP); by default the model itself."""
        return model

    def on_start(self, summary: dict[str, Any], fresh: bool, val_images: list[ValImage]) -> None:
        """Rank 0, before the first step: baselines for the log (bicubic PSNR)."""
        if val_images:
            summary["bicubic_psnr_y"] = bicubic_psnr(val_images, self.scale)
            if fresh:
                self.log.write({"step": 0, "bicubic_psnr_y": summary["bicubic_psnr_y"]})

    def before_step(self, model: nn.Module, step: int) -> None:
        """Called before each optimizer step."""

    def target(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> torch.Tensor:
        """What the L1 loss compares the model's output with: the HR patches by default."""
        return hr_batch

    def validate(self, model: nn.Module, ema: nn.Module, val_images: list[ValImage]) -> dict[str, float]:
        """Rank 0: PSNR-Y of the EMA (what is released) and of the raw weights (early in a run
        the EMA still mostly holds the initial weights)."""
        device = self.ctx.device
        record = {"val_psnr_y": validate(ema, val_images, self.scale, device),
                  "val_psnr_y_raw": validate(model, val_images, self.scale, device)}
        model.train()
        return record

    def report(self, step: int, record: dict[str, float], summary: dict[str, Any]) -> str:
        return (f"step {step}: val PSNR-Y {record['val_psnr_y']:.2f} dB EMA, {record['val_psnr_y_raw']:.2f} raw "
                f"(bicubic {summary.get('bicubic_psnr_y', float('nan')):.2f})")

    def checkpoint_extra(self) -> dict[str, Any]:
        """Keys a subclass adds to every checkpoint."""
        return {}

    def model_config(self, model: nn.Module) -> dict[str, Any]:
        return model.config.to_dict()

    def finish(self, model: nn.Module, ema: nn.Module, summary: dict[str, Any], val_images: list[ValImage]) -> None:
        """Rank 0, after the last step of ``iterations`` (not after a time limit)."""

    # --- engine -----------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        """Trains (or resumes) to ``config.iterations``; call it the same way in every process.

        Returns:
            ``step``, the last logged ``loss``, and what validation and :meth:`finish` add.

        Raises:
            ConfigError, DataError, CheckpointError: With a one-line message, before any work.
        """
        config = self.config
        if not config.data_roots:
            from .config import ConfigError

            raise ConfigError("no training data: pass --data-root or set data_roots")
        self._check_paths()
        ckpt_path = self.output_dir / CHECKPOINT_NAME
        ckpt = None
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            if ckpt["kind"] != self.kind:
                raise CheckpointError(f"{ckpt_path} is a {ckpt['kind']} checkpoint, not a {self.kind} one")
            self.check_resume(ckpt)
            self._note_changes(ckpt)
        elif ckpt_path.exists():
            raise CheckpointError(f"{ckpt_path} exists; pass --resume to continue it, or use another output dir")
        self.prepare(ckpt)

        # Data is found (and missing LR images made) before the process group exists, so a data
        # error stops every rank the same way instead of leaving some waiting at a barrier.
        rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        cache_dir = Path(config.cache_dir).expanduser() if config.cache_dir else self.output_dir / "cache"
        pairs: list[ImagePair] = []
        for root in config.data_roots:
            pairs += find_pairs(root, self.scale, cache_dir, config.patch_size, (rank, world_size),
                                self.progress and rank == 0)
        val_images = load_validation(config.val_root, self.scale, cache_dir) if config.val_root and rank == 0 else []
        if ckpt is not None and ckpt["sampler"]["num_images"] != len(pairs) and rank == 0:
            print(f"note: the data now holds {len(pairs)} images, the checkpoint's {ckpt['sampler']['num_images']}; "
                  "resume is not exact", file=sys.stderr)

        self.ctx = dist.setup(config.device)
        try:
            return self._loop(ckpt, pairs, val_images, cache_dir)
        finally:
            dist.cleanup()

    def _check_paths(self) -> None:
        """Before any work: nothing the run writes is one of its inputs or inside a data folder."""
        from lmfn_edge.files import check_output

        inputs = tuple(p for p in self.inputs() if p)
        check_output(self.output_dir, inputs, folder=True, flag="--output-dir", inside_inputs=False)
        if self.config.cache_dir:
            check_output(Path(self.config.cache_dir).expanduser(), inputs, folder=True, flag="cache_dir",
                         inside_inputs=False)
        for path in (self.output_dir / CHECKPOINT_NAME, self.output_dir / LOG_NAME, self.output_dir / PLOT_NAME,
                     *self.outputs()):
            check_output(path, inputs, flag="output", inside_inputs=False)

    def _note_changes(self, ckpt: dict[str, Any]) -> None:
        old, new = ckpt["config"], self.config.to_dict()
        changed = [k for k in _STREAM_FIELDS if _plain(old.get(k)) != _plain(new.get(k))]
        if changed and int(os.environ.get("RANK", 0)) == 0:
            print(f"note: resuming with changed {', '.join(changed)}; the run will differ from an uninterrupted one",
                  file=sys.stderr)

    def _loop(self, ckpt, pairs: list[ImagePair], val_images: list[ValImage], cache_dir: Path) -> dict[str, Any]:
        config, ctx = self.config, self.ctx
        device = ctx.device
        if ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        model, ema = self.build(ckpt, device)
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        model.to(device, memory_format=fmt)
        ema.to(device, memory_format=fmt)
        optimizer = build_optimizer(model, config)
        step = 0
        if ckpt is not None:
            try:
                model.load_state_dict(ckpt["model"])
                ema.load_state_dict(ckpt["ema"])
                optimizer.load_state_dict(ckpt["optimizer"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CheckpointError(f"the checkpoint does not fit this run ({first_line(exc)})") from None
            step = int(ckpt["step"])
        rngs = ckpt["rng"] if ckpt is not None else []
        if len(rngs) == ctx.world_size:
            set_rng_state(rngs[ctx.rank])
        else:  # fresh run, or resumed on another number of processes
            _seed_everything(config.seed + ctx.rank)
        train_model = self.wrap(model)

        decoded_dir = cache_dir / "decoded" if config.decoded_cache else None
        sampler = StepSampler(len(pairs), config.batch_size, config.seed, ctx.rank, ctx.world_size, start_step=step)
        loader = DataLoader(
            TrainPatches(pairs, self.scale, config.patch_size, config.seed, decoded_dir),
            batch_sampler=sampler,
            num_workers=config.num_workers,
            pin_memory=device.type == "cuda",
            # Worker seeds would otherwise be drawn from the global torch RNG; the samples do not
            # need them (each draws from (seed, sample)), but the global stream must stay untouched.
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.log = RunLog(self.output_dir / LOG_NAME, ctx.is_main, keep_until=step if ckpt is not None else None)
        summary: dict[str, Any] = {"step": step}
        if ctx.is_main:
            print(f"{self.describe(model)}; {len(pairs)} training images; {ctx.world_size} process(es) on {device}; "
                  f"step {step} of {config.iterations}", file=sys.stderr)
            self.on_start(summary, ckpt is None, val_images)

        model.train()
        bar = tqdm(total=config.iterations, initial=step, unit="it", disable=not (ctx.is_main and self.progress),
                   dynamic_ncols=True)
        loss_sum, count, tick = torch.zeros((), device=device), 0, time.perf_counter()
        clock = self.clock = PhaseClock()
        batches = iter(loader)
        started = time.monotonic()
        last = step >= config.iterations
        checked = step  # the last step whose loss and weights are known to be finite
        saved = step if ckpt is not None else None  # the step ckpt.pt holds
        while not last:
            self.before_step(model, step)
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate_at(step)
            with clock("data"):
                lr_batch, hr_batch = next(batches)
                lr_batch = lr_batch.to(device, non_blocking=True).contiguous(memory_format=fmt)
                hr_batch = hr_batch.to(device, non_blocking=True)
            with clock("step"):
                loss_sum += train_step(train_model, optimizer, lr_batch, self.target(lr_batch, hr_batch),
                                       config.amp_bf16)
            with clock("ema"):
                ema_update(ema, model, config.ema_decay)
            step, count = step + 1, count + 1
            bar.update()
            last = step >= config.iterations or (
                config.time_limit > 0
                and step % config.log_every == 0
                and dist.time_is_up(ctx, time.monotonic() - started, config.time_limit)
            )
            logging = step % config.log_every == 0 or last
            # From the config, not from val_images (rank 0's only): every rank must check at the same steps.
            validating = bool(config.val_root) and ((config.val_every and step % config.val_every == 0) or last)
            saving = (config.ckpt_every and step % config.ckpt_every == 0) or last
            if logging or validating or saving:
                # Checked only where the loss is read or the weights are used, so that no step waits for
                # the device; a non-finite value in between costs a few steps, not a crash.
                with clock("checks"):
                    loss_bad, weights_bad = _not_finite(ctx, loss_sum, _state_tensors(model, ema, optimizer))
                if loss_bad or weights_bad:
                    bar.close()
                    self.log.write({"step": step, "event": "diverged"})
                    raise _diverged(config, checked, step, loss_bad, weights_bad, saved)
                checked = step
            if logging:
                elapsed = time.perf_counter() - tick
                loss = dist.mean_over_ranks(ctx, loss_sum / count)
                self.log.write({"step": step, "loss": loss, "learning_rate": config.learning_rate_at(step - 1),
                                "it_per_s": count / elapsed, "images_per_s": count * config.batch_size / elapsed})
                bar.set_postfix(loss=f"{loss:.4f}")
                summary.update(step=step, loss=loss)
                loss_sum.zero_()
                count, tick = 0, time.perf_counter()
            if validating and val_images:
                with clock("validation"):
                    record = self.validate(model, ema, val_images)
                summary.update(record)
                self.log.write({"step": step, **record})
                bar.write(self.report(step, record, summary))
            if saving:
                with clock("checkpoint"):
                    self._save(model, ema, optimizer, step, len(pairs))
                saved = step
                if ctx.is_main:
                    with clock("plot"):
                        plot_log(self.log.records, self.output_dir / PLOT_NAME)
        bar.close()
        del batches  # stops the DataLoader workers
        summary["step"] = step
        summary["phase_seconds"] = clock.seconds()
        if ctx.is_main:
            print(f"time in the loop: {clock.shares()}", file=sys.stderr)
        if step < config.iterations:
            if ctx.is_main:
                print(f"time_limit of {config.time_limit:g} s reached at step {step}; --resume continues",
                      file=sys.stderr)
        elif ctx.is_main:
            self.finish(model, ema, summary, val_images)
        return summary

    def _save(self, model, ema, optimizer, step: int, num_images: int) -> None:
        ctx, config = self.ctx, self.config
        rngs = dist.gather_objects(ctx, rng_state())  # a collective: every rank takes part
        if not ctx.is_main:
            return
        save_checkpoint(self.output_dir / CHECKPOINT_NAME, {
            "kind": self.kind,
            "step": step,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rngs,
            "sampler": {"next_step": step, "num_images": num_images, "seed": config.seed,
                        "batch_size": config.batch_size},
            "config": config.to_dict(),
            "model_config": self.model_config(model),
            "world_size": ctx.world_size,
            **self.checkpoint_extra(),
        })


class PhaseClock:
    """Host seconds spent in each phase of the loop (``with clock("data"): ...``).

    On the CPU the step is synchronous, so the split is where the time goes; on a GPU the step
    only queues kernels and its time shows up in the next phase that waits for the device.
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[phase] = self._seconds.get(phase, 0.0) + time.perf_counter() - start

    def reset(self) -> None:
        self._seconds.clear()

    def seconds(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self._seconds.items()}

    def shares(self) -> str:
        """``step 93.1 %, data 2.0 %, ...`` (largest first) of the total."""
        total = sum(self._seconds.values()) or 1.0
        ranked = sorted(self._seconds.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in ranked) + f" of {total:.0f} s"


def copy_for_ema(model: nn.Module) -> nn.Module:
    """An EMA copy of a plain module: no gradients, eval mode."""
    return copy.deepcopy(model).requires_grad_(False).eval()


def _state_tensors(model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """What a checkpoint keeps that training changes: the parameters, their EMA, the optimizer state."""
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.is_floating_point()]
    return [*model.parameters(), *ema.parameters(), *state]


@torch.no_grad()
def _not_finite(ctx: dist.DistContext, loss_sum: torch.Tensor, tensors: list[torch.Tensor]) -> tuple[bool, bool]:
    """Whether, on any rank, the accumulated loss / any of ``tensors`` holds a NaN or an inf (one host sync).

    A tensor's L1 norm is finite exactly when its values are (short of a sum above 3e38, a run
    long diverged), and one fused ``_foreach_norm`` costs far less than a reduction per tensor.
    """
    finite = torch.stack(torch._foreach_norm(tensors, 1)).isfinite().all()
    loss_bad, weights_bad = dist.on_any_rank(ctx, torch.stack([~loss_sum.isfinite(), ~finite]))
    return loss_bad, weights_bad


def _diverged(config: LoopConfig, checked: int, step: int, loss_bad: bool, weights_bad: bool,
              saved: int | None) -> DivergedError:
    """The one-line error for a run whose loss or weights became non-finite after step ``checked``."""
    when = f"at step {step}" if step == checked + 1 else f"between steps {checked + 1} and {step}"
    what = " and ".join(name for name, bad in (("the loss", loss_bad), ("the weights", weights_bad)) if bad)
    # The last checkpoint may already hold weights on their way out; then only a fresh start helps.
    then = (f"--resume from the checkpoint of step {saved} or start again in another --output-dir"
            if saved is not None else "start again (no checkpoint was written)")
    return DivergedError(f"training diverged {when}: {what} stopped being finite; lower learning_rate "
                         f"({config.learning_rate:g} now), e.g. --set learning_rate={config.learning_rate / 10:g}, "
                         f"and {then}")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value
