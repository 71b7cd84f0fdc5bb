"""Run by test_ddp.py under torchrun: train a tiny CycleGAN, save this rank's weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ganforge.config import RunConfig
from ganforge.train.loop import Trainer

TINY_MODEL = {"generator_blocks": 1, "generator_channels": 8, "discriminator_channels": 8,
              "discriminator_layers": 2, "pool_size": 4}


def main() -> None:
    out, domain_a, domain_b = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    config = RunConfig(family="cyclegan", model=TINY_MODEL,
                       data={"domain_a": domain_a, "domain_b": domain_b, "size": 16},
                       train={"steps": 4, "batch_size": 2, "checkpoint_every": 2,
                              "sample_every": 2, "progress": False, "device": "cpu"})
    trainer = Trainer(config, out / "run")
    trainer.fit()
    rank = int(os.environ["RANK"])
    torch.save({"networks": trainer.family.networks.state_dict(),
                "ema": {n: e.state_dict() for n, e in trainer.ema.items()},
                "first_batch_order": list(iter(trainer.sampler))},
               out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
