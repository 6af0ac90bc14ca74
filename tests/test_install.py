"""A fresh venv with only ``pip install .`` draws every format: no dot binary, no apt.

Slow (about a minute: a venv, and the dependencies' wheels from the package
index or pip's cache), and part of the default ``pytest`` run that CI makes.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.egg-info", "build", "dist",
                              ".pytest_cache", ".hypothesis", "docs")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The bin folder of a new venv holding a (non-editable) install of a copy of this tree."""
    base = tmp_path_factory.mktemp("fresh")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    run = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", str(src)],
                         capture_output=True, timeout=900, cwd=base)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    return bin_dir


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["svg", "pdf", "png", "dot"])
def test_fresh_venv_draws_every_format_without_dot(installed, tmp_path, fmt):
    # PATH holds only the new venv's bin: no system Graphviz, no dot to be found.
    env = {"PATH": str(installed), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("dot", path=str(installed)) is None
    out = tmp_path / f"exercise.{fmt}"
    run = subprocess.run([str(installed / "rnngraph"), "draw", str(ROOT / "examples" / "exercise.rnn"),
                          "--unroll", "3", "-o", str(out)],
                         env=env, capture_output=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stderr == b""                         # no fontconfig noise either
    assert run.stdout.decode().strip() == str(out)
    data = out.read_bytes()
    if fmt == "svg":
        # the package's own code drew it: textbook labels, no baseline-shift
        assert data.startswith(b"<?xml") and b">U</text>" in data and b"baseline-shift" not in data
    elif fmt == "pdf":
        assert data.startswith(b"%PDF") and b"/CreationDate (D:20000101000000Z)" in data
    elif fmt == "png":
        width, height = _png_size(data)
        assert data.startswith(b"\x89PNG") and width > 400 and height > 150
    else:
        assert data.startswith(b"digraph") and "pos=" in data.decode()
    # The installed package is the copy, not this checkout.
    where = subprocess.run([str(installed / "python"), "-c", "import rnngraph; print(rnngraph.__file__)"],
                           env=env, capture_output=True, timeout=60, cwd=tmp_path)
    assert "site-packages" in where.stdout.decode() and str(ROOT) not in where.stdout.decode()
