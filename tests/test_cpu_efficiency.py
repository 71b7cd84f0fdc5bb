"""The CPU efficiency benchmark (issue 15): its smoke run measures every figure of its table,
and its choice of variants is the one documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import load_benchmark

from ganforge.core.device import native_bf16

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "cpu_efficiency.py"


def table_rows(markdown: str, family: str, role: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith(f"| {family} | {role} |")]


def test_quick_run_reports_flops_rate_and_share_of_peak(tmp_path: Path) -> None:
    out = tmp_path / "cpu_efficiency.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--tiny", "--families", "cyclegan,dfgan",
         "--ab-rounds", "2", "--json", str(out), "--work", str(tmp_path / "work")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert wall < 60, wall

    report = json.loads(out.read_text())
    assert set(report["peaks_gflops"]) == {"fp32"} and report["peaks_gflops"]["fp32"]["1"] > 0
    rows = {(r["family"], r["role"]): r for r in report["rows"]
            if not r["role"].startswith("ab-")}
    assert set(rows) == {("cyclegan", "reference"), ("cyclegan", "default"),
                         ("dfgan", "default")}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row.get("traceback"))
        # the default step takes the loop's precision "auto": bf16 where the CPU has it
        bf16 = key[1] == "default" and native_bf16(torch.device("cpu"))
        assert (row["batch"], row["threads"], row["bf16"], row["compile"]) == (1, 1, bf16,
                                                                             False), key
        assert row["gflop_per_image"] > 0 and row["img_per_s"] > 0, key
        assert 0 < row["share_fp32_peak"] < 1.5, key
    assert report["reference"]["default_vs_reference"] > 0
    assert set(report["best"]) == {"cyclegan", "dfgan"}
    # the interleaved rounds: each of reference, default and best timed twice, in turn
    ab = report["reference"]["ab"]
    roles = [r["role"] for r in report["rows"] if r["role"].startswith("ab-")]
    assert roles == ["ab-reference", "ab-default", "ab-best"] * 2
    for role in ("reference", "default", "best"):
        assert len(ab[role]["all"]) == 2
        assert ab[role]["min"] <= ab[role]["median"] <= ab[role]["max"]
    assert ab["default"]["vs_reference"] == ab["default"]["median"] / ab["reference"]["median"]
    assert "Interleaved, 2 rounds" in done.stdout

    for family, role in rows:  # the printed table: GFLOP/img, img/s, GFLOP/s, % of peak
        (cells,) = table_rows(done.stdout, family, role)
        flops, rate, achieved = (float(c) for c in cells[3:6])
        share = float(cells[6].rstrip("%")) / 100
        assert flops > 0 and rate > 0 and achieved > 0 and 0 < share < 1.5, cells


def test_variants_change_one_setting_at_a_time_then_combine_the_best() -> None:
    bench = load_benchmark("cpu_efficiency")
    Variant = bench.Variant
    default = Variant(batch=1, threads=2, channels_last=False, compile=False, bf16=False)
    args = bench.parse_args(["--batches", "1,8", "--threads", "2,1",
                             "--vary", "batch,threads,channels_last"])
    values = bench.axis_values(args, default)
    assert values == {"batch": [1, 8], "threads": [2, 1], "channels_last": [False, True],
                      "bf16": [False], "compile": [False]}
    alone = bench.one_at_a_time(default, values)
    assert alone == [Variant(8, 2, False, False, False), Variant(1, 1, False, False, False),
                     Variant(1, 2, True, False, False)]
    assert len(bench.every_combination(default, values)) == 2 * 2 * 2 - 1
    rates = {default: 1.0, alone[0]: 3.0, alone[1]: 0.5, alone[2]: 1.2}
    assert bench.best_of_each_axis(default, rates) == Variant(8, 2, True, False, False)
