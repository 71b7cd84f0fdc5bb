"""Load test of ``ganforge serve``: N concurrent clients on loopback against a real server.

For each mode (micro-batching off, then on) a server is started as a user would start it
(``ganforge serve --port 0``), warmed up, then hit by each number of concurrent clients for a
bounded time. Each client sends ``POST /api/generate`` requests back to back with prompts from
the emoji captions. Reported: throughput (requests/s, images/s), p50/p99 latency, errors by
status (503 = refused by the bounded queue, 5xx other = bugs) and the batching gain.

    python benchmarks/load_test.py --clients 1,4,16 --seconds 15
    python benchmarks/load_test.py --device cuda --clients 1,16,64 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

CAPTIONS = Path("/work/shared/data/emoji/metadata.jsonl")
FALLBACK_PROMPTS = ["red heart", "grinning face", "cat face", "blue circle", "sun", "tree"]


@dataclass
class LoadResult:
    mode: str
    clients: int
    seconds: float
    requests_ok: int
    images: int
    requests_per_s: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    mean_batch: float = 0.0


def load_prompts(limit: int = 2000) -> list[str]:
    """Captions of the emoji data set (real prompts), or a few fixed ones without it."""
    if not CAPTIONS.exists():
        return FALLBACK_PROMPTS
    prompts = []
    with CAPTIONS.open() as f:
        for line in f:
            caption = json.loads(line).get("caption")
            if caption:
                prompts.append(str(caption)[:300])
            if len(prompts) >= limit:
                break
    return prompts or FALLBACK_PROMPTS


def start_server(args: argparse.Namespace, batching: bool) -> tuple[subprocess.Popen, str]:
    """``ganforge serve`` on a free loopback port; returns the process and its base URL."""
    command = [sys.executable, "-m", "ganforge.cli", "serve", "--port", "0",
               "--device", args.device, "--queue-size", str(args.queue_size),
               "--batch-window-ms", str(args.window_ms), "--max-batch", str(args.max_batch)]
    if args.model:
        command += ["--model", args.model]
    if not batching:
        command.append("--no-batching")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    deadline, seen = time.monotonic() + 180, []
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if not line and process.poll() is not None:
            break
        seen.append(line)
        match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if match:
            return process, match.group(1)
    process.kill()
    raise SystemExit(f"server did not start:\n{''.join(seen)[-3000:]}")


async def run_clients(url: str, clients: int, seconds: float, images_per_request: int,
                      prompts: list[str], seed: int) -> tuple[list[float], Counter, int]:
    """``clients`` loops sending generate requests for ``seconds``; latencies of the 200s."""
    latencies: list[float] = []
    statuses: Counter = Counter()
    images = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal images
        rng = random.Random(seed * 1000 + index)
        while time.perf_counter() < stop:
            body = {"prompt": rng.choice(prompts), "n": images_per_request,
                    "seed": rng.randrange(2**31 - 1)}
            start = time.perf_counter()
            try:
                response = await http.post(f"{url}/api/generate", json=body)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = f"transport:{type(exc).__name__}"
                response = None
            statuses[status] += 1
            if response is not None and response.status_code == 200:
                latencies.append(time.perf_counter() - start)
                images += len(response.json()["images"])
            elif response is not None and response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*[client(i, http) for i in range(clients)])
    return latencies, statuses, images


async def warm_up(url: str) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        for n in (1, 4, 1):
            response = await http.post(f"{url}/api/generate", json={"prompt": "warm up",
                                                                      "n": n, "seed": 0})
            response.raise_for_status()


def measure(args: argparse.Namespace, batching: bool, prompts: list[str]) -> list[LoadResult]:
    process, url = start_server(args, batching)
    mode = "batching on" if batching else "batching off"
    results = []
    try:
        asyncio.run(warm_up(url))
        for clients in args.clients:
            before = httpx.get(f"{url}/api/health").json()
            begin = time.perf_counter()
            latencies, statuses, images = asyncio.run(run_clients(
                url, clients, args.seconds, args.images_per_request, prompts, args.seed))
            elapsed = time.perf_counter() - begin
            after = httpx.get(f"{url}/api/health").json()
            batches = after["generate_batches"] - before["generate_batches"]
            served = after["generate_requests"] - before["generate_requests"]
            ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
            server_errors = sum(n for s, n in statuses.items()
                                if s.isdigit() and int(s) >= 500 and s != "503")
            result = LoadResult(mode, clients, round(elapsed, 2), len(latencies), images,
                                round(len(latencies) / elapsed, 2), round(images / elapsed, 2),
                                round(float(np.percentile(ms, 50)), 1),
                                round(float(np.percentile(ms, 99)), 1), dict(statuses),
                                server_errors, round(served / max(batches, 1), 2))
            results.append(result)
            print(f"{mode:12s} clients={clients:3d}: {result.requests_per_s:7.2f} req/s "
                  f"{result.images_per_s:7.2f} img/s  p50 {result.p50_ms:7.1f} ms  "
                  f"p99 {result.p99_ms:7.1f} ms  batch {result.mean_batch:5.2f}  "
                  f"statuses {dict(statuses)}", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return results


def table(results: list[LoadResult]) -> str:
    off = {r.clients: r for r in results if r.mode == "batching off"}
    lines = ["| clients | mode | req/s | img/s | p50 ms | p99 ms | requests/batch | 503 | "
             "other 5xx | gain |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        base = off.get(r.clients)
        gain = (f"{r.images_per_s / base.images_per_s:.2f}x"
                if r.mode == "batching on" and base and base.images_per_s else "")
        lines.append(f"| {r.clients} | {r.mode} | {r.requests_per_s:.2f} | {r.images_per_s:.2f}"
                     f" | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.mean_batch:.2f} | "
                     f"{r.statuses.get('503', 0)} | "
                     f"{r.server_errors} | {gain} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="text-to-image model (default: the shipped one)")
    parser.add_argument("--clients", default="1,4,16",
                        help="comma-separated numbers of concurrent clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="per client count")
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads of the server")
    parser.add_argument("--window-ms", type=float, default=15.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-size", type=int, default=64)
    parser.add_argument("--modes", default="off,on", help="batching modes to run: off,on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    prompts = load_prompts()
    results: list[LoadResult] = []
    for mode in args.modes.split(","):
        results += measure(args, mode.strip() == "on", prompts)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
