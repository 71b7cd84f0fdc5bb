"""The Makefile says what it is doing: `pip -q` keeps set-up silent for minutes otherwise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_set_up_and_demo_step_is_announced(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    plan = subprocess.run([make, "-n", "demo", "demo-cyclegan", f"VENV={tmp_path / 'venv'}"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lines = plan.splitlines()
    steps = [i for i, line in enumerate(lines)
             if "pip install" in line or " -m venv " in line or "/bin/ganforge " in line]
    assert len(steps) == 6, plan  # venv, 3 installs, 2 demos
    for i in steps:
        assert i > 0 and lines[i - 1].startswith("echo "), f"no message before: {lines[i]}"


def test_the_cyclegan_demo_is_not_sold_as_a_minute() -> None:
    for name in ("README.md", "Makefile"):
        text = (ROOT / name).read_text()
        assert "about a minute" not in text, name
