"""Shared fixtures: a tiny run built once per session, and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qreport.cli import main

TESTS = Path(__file__).resolve().parent
TOY = TESTS / "toy_models.py"
ROOT = TESTS.parent


def toy(factory: str) -> str:
    """A --model spec for a factory in tests/toy_models.py."""
    return f"{TOY}:{factory}"


def tiny_args(out, factory: str = "tiny_cnn", *extra: str) -> list[str]:
    """`qreport build` arguments for a fast toy build."""
    return ["build", "--model", toy(factory), "--out", str(out), "--batch-size", "4",
            "--calib-batches", "2", "--eval-batches", "2", "-q", *extra]


def run_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m qreport`` in a subprocess (real exit codes, real stderr)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "qreport", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=900)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run of the tiny CNN (built in-process, once)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(tiny_args(out)) == 0
    return out
