"""How fast the FID Inception network turns images into features on this CPU, and where the
time goes.

Times ``InceptionFeatures`` at each thread count and batch size, with the network and its
input in channels_last or not, checks that the features stay the same (max |difference|),
and prints the share of time per operator (torch.profiler) and the matmul peak of the same
threads for comparison. One Markdown table per run.

    python benchmarks/fid_speed.py --threads 1 2 --images 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.profiler import profile

from ganforge.metrics.fid import InceptionFeatures

INCEPTION_GFLOP = 5.71  # 2 x multiply-adds of InceptionV3 at 299 x 299 (published)


def matmul_gflops() -> float:
    """fp32 GFLOP/s of a 2048^3 matmul with the current thread count."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(4):
        a @ b
    return 4 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def rate(features: InceptionFeatures, images: torch.Tensor, batch: int) -> tuple[float,
                                                                                 np.ndarray]:
    """(images per second, features) after two warm-up batches (the TorchScript profiling
    executor optimises the graph on its first calls)."""
    for _ in range(2):
        features.features_of(images[:batch], batch_size=batch)
    start = time.perf_counter()
    out = features.features_of(images, batch_size=batch)
    return len(images) / (time.perf_counter() - start), out


def plain_layout(features: InceptionFeatures) -> InceptionFeatures:
    """The same network with weights and inputs in the default NCHW layout (InceptionFeatures
    uses channels_last on the CPU)."""
    features.channels_last = False
    features.model = features.model.to(memory_format=torch.contiguous_format)
    return features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, 64, 64)
    print(f"{args.images} random images of 64 px (resized to 299 inside)\n")
    print("| threads | layout | batch | img/s | GFLOP/s | share of matmul peak | "
          "max abs feature diff |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = matmul_gflops()
        for layout in ("NCHW", "channels_last"):
            for batch in (16, 50):
                features = InceptionFeatures.load()
                if layout == "NCHW":
                    features = plain_layout(features)
                speed, out = rate(features, images, batch)
                reference = out if reference is None else reference
                flops = speed * INCEPTION_GFLOP
                print(f"| {threads} | {layout} | {batch} | {speed:.1f} | {flops:.0f} | "
                      f"{flops / peak:.0%} of {peak:.0f} | "
                      f"{float(np.abs(out - reference).max()):.1e} |")
    features = plain_layout(InceptionFeatures.load())
    rate(features, images[:16], 16)
    with profile() as prof:
        features.features_of(images[:16], batch_size=16)
    print("\nwhere the time goes (last thread count, NCHW, batch 16):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
