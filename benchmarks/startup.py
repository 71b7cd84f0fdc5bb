"""Start-up time of CLI commands that do little work, and whether they import torch.

Each command runs in a fresh interpreter (median of ``--repeat`` runs, after one warm-up run
that fills the OS file cache); ``--baseline DIR`` also runs them from another checkout (e.g.
a ``git worktree`` of an older commit) for a before/after table.

    python benchmarks/startup.py --image some.png [--baseline /tmp/old-checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNNER = ("import sys, json\nfrom ganforge.cli import main\ntry:\n    main({argv!r})\n"
          "except SystemExit:\n    pass\nprint('@@' + json.dumps('torch' in sys.modules), "
          "file=sys.stderr)")


def measure(argv: list[str], pythonpath: str | None, repeat: int) -> tuple[float, bool]:
    """(median seconds, whether torch was imported) of ``ganforge ARGV``."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=pythonpath or str(Path(__file__).resolve().parents[1]))
    times, torch_loaded = [], False
    for attempt in range(repeat + 1):
        start = time.perf_counter()
        # run from a neutral folder: '' on sys.path must not pick this checkout over PYTHONPATH
        done = subprocess.run([sys.executable, "-c", RUNNER.format(argv=argv)], env=env,
                              capture_output=True, text=True, check=True,
                              cwd=tempfile.gettempdir())
        if attempt:  # the first run only warms the file cache
            times.append(time.perf_counter() - start)
        torch_loaded = json.loads(done.stderr.rsplit("@@", 1)[1])
    return statistics.median(times), torch_loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", required=True, help="a PNG to verify")
    parser.add_argument("--baseline", help="another checkout to compare with (PYTHONPATH)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    commands = [["--help"], ["verify", "--no-detector", args.image], ["verify", args.image]]
    start = time.perf_counter()
    for _ in range(args.repeat):
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = (time.perf_counter() - start) / args.repeat
    print(f"`python -c 'import torch'`: {torch_import:.2f} s\n")
    print("| command | " + ("before | " if args.baseline else "") + "now | torch imported |")
    print("|---|" + ("---|" if args.baseline else "") + "---|---|")
    for argv in commands:
        now, loaded = measure(argv, None, args.repeat)
        before = (f"{measure(argv, args.baseline, args.repeat)[0]:.2f} s | "
                  if args.baseline else "")
        shown = " ".join(a if not a.endswith(".png") else "one.png" for a in argv)
        print(f"| `ganforge {shown}` | {before}{now:.2f} s | {'yes' if loaded else 'no'} |")


if __name__ == "__main__":
    main()
