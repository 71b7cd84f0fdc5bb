"""The GPU suite's dry run: every section runs on the CPU at tiny sizes and reports numbers, so
the one prepared GPU call cannot rot while no GPU is lent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
SECTIONS = ("environment", "text2image", "maskgit", "upscale", "cyclegan", "training")
#: a figure per section that must be a measured number
MEASURED = {"environment": "matmul_bf16_tflops", "text2image": "batched_img_per_s_best",
            "maskgit": "img_per_s_best", "upscale": "tiles_per_s_best",
            "cyclegan": "fast_vs_reference", "training": "r_precision_val_last"}


def run_suite(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SUITE), "--out", str(out), *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu-suite")
    done = run_suite(out, "--dry-run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_the_dry_run_measures_every_section(dry_run: Path) -> None:
    report = json.loads((dry_run / "gpu_suite.json").read_text())
    assert report["suite"]["dry_run"] and report["suite"]["device"] == "cpu"
    assert list(report["sections"]) == list(SECTIONS)
    for name, record in report["sections"].items():
        assert record["status"] == "ok", (name, record.get("error"), record.get("traceback"))
        numbers = [v for v in record["figures"].values()
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        assert numbers, name
        value = record["figures"][MEASURED[name]]
        assert isinstance(value, int | float) and value > 0, (name, value)
    training = report["sections"]["training"]["figures"]
    assert training["train_finished"] and training["steps_done"] == 2
    assert [row["step"] for row in training["quality_curve"]] == [1, 2]
    assert {"l1", "retrieval"} <= set(training["quality_curve"][0])
    assert [row["step"] for row in training["r_precision_curve"]] == [1, 2]
    assert report["suite"]["wall_s"] < 60


def test_the_markdown_table_holds_every_section(dry_run: Path) -> None:
    text = (dry_run / "gpu_suite.md").read_text()
    assert "| section | figure | value |" in text
    for name in SECTIONS:
        assert re.search(rf"^\| {name} \| status \| ok ", text, re.M), name
    assert "## training: r_precision_curve" in text
    assert (dry_run / "t2i_scalars.jsonl").is_file() and (dry_run / "t2i_samples.png").is_file()


def test_without_data_the_training_section_is_skipped(tmp_path: Path) -> None:
    done = run_suite(tmp_path, "--device", "cpu", "--sections", "training",
                     "--data", str(tmp_path / "absent"))
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "gpu_suite.json").read_text())["sections"]["training"]
    assert record["status"].startswith("skipped: no data"), record


def test_a_failing_or_slow_section_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    gpu_suite = load_benchmark("gpu_suite")
    report: dict = {"suite": {"dry_run": True, "device": "cpu", "started": "now",
                              "budgets_s": {}, "total_s": 10}, "sections": {}}
    suite = gpu_suite.Suite(out=tmp_path, dry_run=True, device=torch.device("cpu"),
                            data=tmp_path, text_table=tmp_path / "t", work=tmp_path,
                            report=report)

    def fails(suite: object, fig: dict) -> None:
        fig["first"] = 1.5
        raise RuntimeError("broken here")

    def sleeps(suite: object, fig: dict) -> None:
        fig["before"] = 2
        time.sleep(5)
        fig["after"] = 3

    def works(suite: object, fig: dict) -> None:
        fig["value"] = 4

    end = time.monotonic() + 60
    for name, section, budget in (("a", fails, 5), ("b", sleeps, 1), ("c", works, 5)):
        gpu_suite.run_section(suite, name, section, budget, end)
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())["sections"]
    assert saved["a"]["status"] == "error" and "broken here" in saved["a"]["error"]
    assert saved["a"]["figures"] == {"first": 1.5}
    assert saved["b"]["status"].startswith("timed out") and saved["b"]["figures"] == {"before": 2}
    assert saved["b"]["seconds"] < 3
    assert saved["c"]["status"] == "ok" and saved["c"]["figures"] == {"value": 4}
    assert "broken here" in (tmp_path / "gpu_suite.md").read_text()


def test_the_suite_trains_the_makefile_recipe() -> None:
    recipe = load_benchmark("gpu_suite").RECIPE_ARGS
    makefile = (ROOT / "Makefile").read_text()
    block = makefile[makefile.index("default-text2image: setup"):]
    block = block[:block.index("\n\n")]
    for flag, value in zip(recipe[::2], recipe[1::2], strict=True):
        assert re.search(rf"{re.escape(flag)} {re.escape(value)}(\s|$)", block), (flag, value)
