"""The persistent compilation cache: a second process loads the training program instead of compiling it,
and ``--no-cache`` writes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepens import cache


def _table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    rows = ["a,b,c,y"] + [f"{a:.4f},{b:.4f},{c:.4f},{a - b + 0.1 * c:.4f}" for a, b, c in x]
    path.write_text("\n".join(rows) + "\n")
    return path


def _train(data: Path, out: Path, env: dict[str, str], *extra: str) -> tuple[float, str]:
    """Run ``deepens train`` in a fresh process; returns the compile seconds it reports and its stderr
    (where ``JAX_LOG_COMPILES=1`` makes JAX name every persistent-cache hit)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepens.cli",
            *extra,
            "train",
            str(data),
            "--target",
            "y",
            "-o",
            str(out),
            "--members",
            "2",
            "--hidden",
            "4",
            "--epochs",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return float(re.search(r"compiling ([0-9.]+) s", done.stdout).group(1)), done.stderr


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_second_process_hits_the_cache_and_no_cache_writes_nothing(tmp_path: Path) -> None:
    data = _table(tmp_path / "t.csv")
    env = {k: v for k, v in os.environ.items() if k != cache.NO_CACHE_ENV}
    env[cache.CACHE_DIR_ENV] = str(tmp_path / "cache")
    env["JAX_LOG_COMPILES"] = "1"
    hit = "Persistent compilation cache hit for 'jit_run_epochs'"
    first, log = _train(data, tmp_path / "m1", env)
    assert hit not in log
    written = _entries(tmp_path / "cache")
    assert any(name.startswith("jit_run_epochs-") for name in written), written  # the AOT program is cached
    second, log = _train(data, tmp_path / "m2", env)
    assert hit in log  # the second process loaded the training program instead of compiling it
    assert _entries(tmp_path / "cache") == written
    assert second <= first

    env[cache.CACHE_DIR_ENV] = str(tmp_path / "off")
    _train(data, tmp_path / "m3", env, "--no-cache")
    assert not _entries(tmp_path / "off")
    env[cache.NO_CACHE_ENV] = "1"
    _train(data, tmp_path / "m4", env)
    assert not _entries(tmp_path / "off")


def test_enable_respects_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.NO_CACHE_ENV, "1")
    assert cache.enable_compilation_cache(tmp_path / "x") is None
    assert not (tmp_path / "x").exists()
    monkeypatch.delenv(cache.NO_CACHE_ENV)
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "here"))
    assert cache.default_cache_dir() == tmp_path / "here"
