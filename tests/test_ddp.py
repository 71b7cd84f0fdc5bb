"""Data-parallel training through torchrun: 2 CPU processes with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from ganforge.train.checkpoint import checkpoint_steps


def test_two_processes_hold_identical_weights_and_only_rank0_writes(tmp_path: Path,
                                                                    shapes16) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(worker), str(tmp_path), str(shapes16[0]), str(shapes16[1])],
        capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in ("networks",):
        for name, tensor in rank0[key].items():
            assert torch.equal(tensor, rank1[key][name]), f"{name} differs between ranks"
    for net, state in rank0["ema"].items():
        assert all(torch.equal(v, rank1["ema"][net][k]) for k, v in state.items())
    # each process saw its own half of the data
    assert not set(rank0["first_batch_order"]) & set(rank1["first_batch_order"])
    run = tmp_path / "run"
    assert [s for s, _ in checkpoint_steps(run / "checkpoints")] == [2, 4]
    ckpt = torch.load(run / "checkpoints" / "step_0000004.pt", weights_only=True)
    assert len(ckpt["ranks"]) == 2  # RNG and image pools of both processes are kept
    assert len(list((run / "samples").glob("*.png"))) == 2
