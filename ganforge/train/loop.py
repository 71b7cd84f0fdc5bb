"""The one training loop. It knows nothing about any family beyond ``models.base.Family``.

It owns: devices, bf16 autocast, channels_last, torch.compile, gradient accumulation,
data-parallel processes (torchrun), learning-rate schedules, EMA, seeds, progress, logs,
sample grids, checkpoints (atomic) and exact resume.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

import ganforge
from ganforge.config import RunConfig, TrainConfig, from_dict
from ganforge.core.device import cpu_has_avx512, native_bf16, resolve_device
from ganforge.core.seeding import rng_state, seed_everything, set_rng_state
from ganforge.data.datasets import TrainData
from ganforge.data.images import image_grid
from ganforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    TrainingDiverged,
    WrongFamilyCheckpoint,
)
from ganforge.models import get_family
from ganforge.models.base import Family
from ganforge.nn.ema import EMA
from ganforge.train import distributed as dist_utils
from ganforge.train.checkpoint import (
    checkpoint_steps,
    load_checkpoint,
    save_checkpoint,
)


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run reports."""

    run_dir: Path
    step: int
    seconds: float
    images_per_second: float
    losses: dict[str, float]


def lr_factor(step: int, total: int, decay_start: float) -> float:
    """Constant learning rate, then a linear fall to zero over the last part of the run."""
    start = int(total * decay_start)
    if step < start or total <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / (total - start))


def split_batch(value: Any, parts: int) -> list[Any]:
    """Split a batch entry (a tensor or a list such as captions) into ``parts`` micro-batches."""
    if isinstance(value, torch.Tensor):
        return list(value.chunk(parts))
    size = len(value) // parts
    return [value[i * size:(i + 1) * size] for i in range(parts)]


class LoopOptimization:
    """The loop's side of ``models.base.Optimization``."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], group: dist_utils.ProcessGroup,
                 device: torch.device, bf16: bool, accum: int):
        self.optimizers, self.group, self.device = optimizers, group, device
        self.parameters = {name: [p for g in opt.param_groups for p in g["params"]
                                  if p.requires_grad]
                           for name, opt in optimizers.items()}
        self.bf16, self.accum = bf16, accum
        self.last_micro = True
        self.nonfinite = {name: torch.zeros((), dtype=torch.bool, device=device)
                          for name in optimizers}

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def minimize(self, optimizer: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[optimizer]
        self.nonfinite[optimizer] |= ~torch.isfinite(loss.detach())
        # gradients flow into this optimiser's parameters only: the other networks (a critic
        # during the generator's update) get none and compute none, without the recipe
        # switching requires_grad back and forth
        params = self.parameters[optimizer]
        torch.autograd.backward(loss / self.accum, inputs=params)
        if self.last_micro:
            dist_utils.average_gradients(params, self.group)
            opt.step()
            opt.zero_grad(set_to_none=True)

    def diverged(self) -> list[str]:
        """Names of optimisers whose loss was NaN or infinite since the last check."""
        return [name for name, flag in self.nonfinite.items() if bool(flag)]


class Trainer:
    """Trains one family into a run folder; ``fit()`` runs to ``train.steps``."""

    def __init__(self, run_config: RunConfig, run_dir: str | Path, resume: bool = False):
        self.run_config = run_config
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.train_config: TrainConfig = from_dict(TrainConfig, run_config.train,
                                                   where="train config").validate()
        self.family_cls: type[Family] = get_family(run_config.family)
        self.model_config = from_dict(self.family_cls.ModelConfig, run_config.model,
                                      where="model config").validate()
        self.data_config = from_dict(self.family_cls.DataConfig, run_config.data,
                                     where="data config").validate()
        self.checkpoint_dir = self.run_dir / "checkpoints"

    # ----------------------------------------------------------------- set-up
    def _check_run_dir(self) -> None:
        has_run = (self.run_dir / "config.json").exists() or checkpoint_steps(self.checkpoint_dir)
        if has_run and not self.resume:
            raise ConfigError(f"run folder {self.run_dir} already holds a run; continue it with "
                              f"--resume {self.run_dir} or choose another --out")

    def setup(self) -> None:
        tc = self.train_config
        probe = resolve_device(tc.device)
        self.group = dist_utils.init_from_env(probe.type)
        self.device = resolve_device(tc.device, self.group.local_rank)
        cuda = self.device.type == "cuda"
        self.bf16 = tc.precision == "bf16" or (tc.precision == "auto"
                                                and native_bf16(self.device))
        self.channels_last = tc.channels_last == "on" or (tc.channels_last == "auto" and (
            cuda or (self.family_cls.channels_last_on_avx512 and cpu_has_avx512())))
        if self.group.is_main:
            self._check_run_dir()

        seed_everything(tc.seed)  # identical initial weights on every process
        self.family = self.family_cls(self.model_config)
        nets = self.family.networks.to(self.device)
        if self.channels_last:
            nets.to(memory_format=torch.channels_last)
        dist_utils.broadcast_parameters(nets.values(), self.group)
        self.ema = {name: EMA(nets[name], tc.ema_decay) for name in self.family_cls.ema_networks
                    if name in nets}
        self.optimizers = self.family.optimizers()
        self.schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: lr_factor(s, tc.steps, tc.lr_decay_start))
            for name, opt in self.optimizers.items()}
        compiled = self.family_cls.compile_networks
        self.step_nets = {n: torch.compile(m) if tc.compile and (compiled is None or n in compiled)
                          else m for n, m in nets.items()}
        self.opt = LoopOptimization(self.optimizers, self.group, self.device, self.bf16,
                                 tc.grad_accum)

        self.data: TrainData = self.family.load_data(self.data_config, tc.seed)
        self.sampler = DistributedSampler(range(len(self.data)), num_replicas=self.group.world,
                                          rank=self.group.rank, shuffle=True, seed=tc.seed,
                                          drop_last=True)
        self.batches_per_epoch = len(self.sampler) // tc.batch_size
        if self.batches_per_epoch == 0:
            raise DataError(f"the dataset has {len(self.data)} samples, fewer than --batch-size "
                            f"{tc.batch_size} x {self.group.world} process(es)")
        self.preview = {k: self._to_device(v)
                        for k, v in self.data.preview(tc.num_samples).items()}
        self.eval_batch = {k: self._to_device(v)
                           for k, v in self.data.preview(tc.eval_images).items()} \
            if tc.eval_every else {}

        self.step = 0
        if self.resume:
            self._restore()
        else:
            seed_everything(tc.seed + 1 + self.group.rank)  # per-process augmentation
        if self.group.is_main:
            self._open_logs()

    def _to_device(self, tensor: Any) -> Any:
        """Tensors move to the device (channels_last for images); other values (captions)
        pass through."""
        if not isinstance(tensor, torch.Tensor):
            return tensor
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.ndim == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _open_logs(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoint_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write
        self.run_config.ganforge_version = ganforge.__version__
        self.run_config.save(self.run_dir / "config.json")
        self.writer = SummaryWriter(str(self.run_dir / "logs"))
        self.scalars = open(self.run_dir / "logs" / "scalars.jsonl", "a")  # noqa: SIM115

    def _restore(self) -> None:
        candidates = checkpoint_steps(self.checkpoint_dir)
        if not candidates:
            raise CheckpointError(f"nothing to resume in {self.run_dir}: no checkpoint in "
                                  f"{self.checkpoint_dir}")
        state = None
        for _, path in reversed(candidates):
            try:
                state = load_checkpoint(path, family=self.family_cls.name)
                break
            except WrongFamilyCheckpoint:
                raise
            except CheckpointError as exc:
                warnings.warn(f"{exc}; trying an older checkpoint", stacklevel=2)
        if state is None:
            raise CheckpointError(f"no readable checkpoint in {self.checkpoint_dir}")
        try:
            self.family.networks.load_state_dict(state["networks"])
            for name, ema in self.ema.items():
                ema.load_state_dict(state["ema"][name])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"checkpoint of {self.run_dir} does not fit this model's "
                                  f"config: {str(exc).splitlines()[0][:300]}") from None
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][name])
        self.step = int(state["step"])
        ranks = state["ranks"]
        mine = ranks[self.group.rank] if len(ranks) == self.group.world else ranks[0]
        if len(ranks) != self.group.world:
            warnings.warn(f"checkpoint was written by {len(ranks)} process(es), resuming with "
                          f"{self.group.world}: data order and RNG will differ", stacklevel=2)
        self.family.load_state_dict(mine["family"])
        set_rng_state(mine["rng"])

    # --------------------------------------------------------------- the loop
    def batches(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Batches from ``self.step`` on; the order depends only on seed, epoch and step."""
        bs, epoch_seen, order = self.train_config.batch_size, -1, torch.empty(0)
        step = self.step
        while True:
            epoch, pos = divmod(step, self.batches_per_epoch)
            if epoch != epoch_seen:
                self.sampler.set_epoch(epoch)
                order, epoch_seen = torch.tensor(list(iter(self.sampler))), epoch
            batch = self.data.batch(order[pos * bs:(pos + 1) * bs], epoch)
            yield step, {k: self._to_device(v) for k, v in batch.items()}
            step += 1

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        accum = self.train_config.grad_accum
        micro = [dict(zip(batch, parts, strict=True))
                 for parts in zip(*(split_batch(v, accum) for v in batch.values()), strict=True)]
        totals: dict[str, torch.Tensor] = {}
        for i, mb in enumerate(micro):
            self.opt.last_micro = i == len(micro) - 1
            for name, value in self.family.step(self.step_nets, mb, self.opt).items():
                totals[name] = totals.get(name, 0) + value.float() / len(micro)
        for sched in self.schedulers.values():
            sched.step()
        for name, ema in self.ema.items():
            ema.update(self.family.networks[name])
        return totals

    def _check_finite(self, step: int) -> None:
        bad = self.opt.diverged()
        if dist_utils.any_true(bool(bad), self.group, self.device):
            last = checkpoint_steps(self.checkpoint_dir)
            kept = f"the last good checkpoint {last[-1][1]} is kept" if last else \
                "no checkpoint was written yet"
            raise TrainingDiverged(
                f"training diverged: the {', '.join(bad) or 'other process'} loss became NaN or "
                f"infinite by step {step}; {kept}; try a lower --lr or --precision fp32")

    def fit(self, until: int | None = None) -> TrainResult:
        """Train until ``train.steps`` (or stop early after step ``until``, as an interrupted
        run would); returns the final step, time and throughput."""
        self.setup()
        tc = self.train_config
        try:
            return self._fit(tc, min(until or tc.steps, tc.steps))
        finally:
            if self.group.is_main and hasattr(self, "writer"):
                self.writer.close()
                self.scalars.close()
            dist_utils.shutdown(self.group)

    def _fit(self, tc: TrainConfig, until: int) -> TrainResult:
        bar = tqdm(total=tc.steps, initial=self.step, disable=not (tc.progress and
                                                                  self.group.is_main),
                   desc=f"{self.family_cls.name}", unit="step", dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 30.0)
        images_per_step = tc.batch_size * self.group.world
        start_time, start_step = time.perf_counter(), self.step
        window_time, window_step = start_time, self.step
        losses: dict[str, float] = {}
        if self.step >= until:
            bar.close()
            return TrainResult(self.run_dir, self.step, 0.0, 0.0, losses)
        for step, batch in self.batches():
            loss_tensors = self.train_step(batch)
            self.step = done = step + 1
            bar.update(1)
            if done % tc.log_every == 0 or done == tc.steps:
                self._check_finite(done)
                now = time.perf_counter()
                rate = images_per_step * (done - window_step) / max(now - window_time, 1e-9)
                window_time, window_step = now, done
                losses = {k: float(v) for k, v in loss_tensors.items()}
                bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()},
                                 "img/s": f"{rate:.1f}"}, refresh=False)
                self._log_scalars(done, losses, rate)
            if done % tc.sample_every == 0 or done == tc.steps:
                self._write_samples(done)
            if tc.eval_every and (done % tc.eval_every == 0 or done == tc.steps):
                self._log_quality(done)
            if done % tc.checkpoint_every == 0 or done == tc.steps:
                self._check_finite(done)
                self._save(done)
            if done >= until:
                break
        bar.close()
        seconds = time.perf_counter() - start_time
        return TrainResult(self.run_dir, self.step, seconds,
                           images_per_step * (self.step - start_step) / max(seconds, 1e-9),
                           losses)

    # ---------------------------------------------------------------- outputs
    def _log_scalars(self, step: int, losses: dict[str, float], rate: float) -> None:
        if not self.group.is_main:
            return
        lrs = {f"lr/{n}": o.param_groups[0]["lr"] for n, o in self.optimizers.items()}
        values = {**{f"loss/{k}": v for k, v in losses.items()}, **lrs, "img_per_s": rate}
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.scalars.write(json.dumps({"step": step, **values}) + "\n")
        self.scalars.flush()

    def _log_quality(self, step: int) -> None:
        if not self.group.is_main:
            return
        shadows = {name: ema.shadow for name, ema in self.ema.items()}
        with self.opt.autocast():
            figures = self.family.quality(shadows, self.eval_batch)
        values = {f"quality/{k}": float(v) for k, v in figures.items()}
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        if values:
            self.scalars.write(json.dumps({"step": step, **values}) + "\n")
            self.scalars.flush()

    def _write_samples(self, step: int) -> None:
        if not self.group.is_main:
            return
        shadows = {name: ema.shadow for name, ema in self.ema.items()}
        with torch.no_grad(), self.opt.autocast():
            rows = self.family.sample_rows(shadows, self.preview)
        grid = image_grid(rows)
        path = self.run_dir / "samples" / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        self.writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")

    def _save(self, step: int) -> None:
        for name, param in self.family.networks.named_parameters():
            if not torch.isfinite(param).all():
                raise TrainingDiverged(f"training diverged: weight {name} is NaN or infinite at "
                                       f"step {step}; the last good checkpoint is kept")
        rank_state = {"rng": rng_state(), "family": self.family.state_dict()}
        ranks = dist_utils.gather_objects(rank_state, self.group)
        if not self.group.is_main:
            return
        state = {
            "family": self.family_cls.name, "step": step,
            "networks": self.family.networks.state_dict(),
            "ema": {name: ema.state_dict() for name, ema in self.ema.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "ranks": ranks, "config": json.dumps(self.run_config.__dict__),
        }
        save_checkpoint(self.checkpoint_dir, step, state, self.train_config.keep_checkpoints)
        # EMA copies where the family keeps them, else the networks as trained
        nets = {**dict(self.family.networks.items()),
                **{name: ema.shadow for name, ema in self.ema.items()}}
        exported = self.family.export(nets, self.data_config, step)
        exported.save_pretrained(self.run_dir / "model")


def train(run_config: RunConfig, run_dir: str | Path, resume: bool = False,
          until: int | None = None) -> TrainResult:
    """Train ``run_config`` into ``run_dir`` (or continue it with ``resume=True``)."""
    return Trainer(run_config, run_dir, resume).fit(until)
