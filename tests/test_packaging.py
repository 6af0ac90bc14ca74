"""What `pip install .` ships: every subpackage and the grammar."""
import re

import pytest

from conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")


def test_every_subpackage_is_listed_in_pyproject():
    # The package list is explicit (the grammar is mapped in from grammars/), so a new
    # subpackage must be added by hand; an editable install would hide the omission.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rnngraph").rglob("__init__.py")}
    assert on_disk <= listed
    assert config["tool"]["setuptools"]["package-dir"]["rnngraph.grammars"] == "grammars"
    assert (ROOT / "grammars" / "rnn.lark").is_file()


def test_torch_is_never_an_unpinned_dependency():
    # An unpinned torch pulls gigabytes of CUDA packages; only torch==2.13.0 (CPU) is allowed.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements]
    assert [r for r, n in zip(requirements, names) if n == "torch" and r != "torch==2.13.0"] == []
