"""Golden files: the generated source of every example, so that any change to it shows in a diff.

tests/golden/<example>.plain.py is ``rnngraph compile examples/<example>.rnn --plain
--dtype float32``, <example>.fast.py the optimized path (the default), and
<example>.numba.py the module of ``backend="numba"``, the optimized one with its loops also
as functions for Numba (printed without Numba installed).  A change to the compiler that changes generated code fails here until the
files are regenerated, by

    python tests/test_golden.py

and the diff is read, like any other change, before it is committed.
"""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import rnngraph  # noqa: E402

EXAMPLES = sorted((HERE.parent / "examples").glob("*.rnn"))
GOLDEN = HERE / "golden"


PATHS = ("plain", "fast", "numba")


def generated(path: Path, kind: str) -> str:
    """The source the compiler generates for ``path`` in float32 on the path ``kind``, with
    the file named as from the repository's root, wherever it runs."""
    from rnngraph.compile import Numba, Optimized, Plain
    model = rnngraph.parse(path.read_text(encoding="utf-8"), f"examples/{path.name}")
    printer = {"plain": Plain, "fast": Optimized, "numba": Numba}[kind]
    return printer(model.require_sizes(), "float32").source


@pytest.mark.parametrize("kind", PATHS)
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_generated_source_is_the_golden_file(path, kind):
    golden = GOLDEN / f"{path.stem}.{kind}.py"
    assert golden.exists(), f"no golden file for {path.name}: run python tests/test_golden.py"
    assert generated(path, kind) == golden.read_text(encoding="utf-8"), \
        f"the generated source of {path.name} changed: run python tests/test_golden.py, read the diff"


def test_every_golden_file_has_its_example():
    assert sorted(p.name for p in GOLDEN.glob("*.py")) == \
        sorted(f"{p.stem}.{kind}.py" for p in EXAMPLES for kind in PATHS)


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for old in GOLDEN.glob("*.py"):
        old.unlink()
    for path in EXAMPLES:
        for kind in PATHS:
            (GOLDEN / f"{path.stem}.{kind}.py").write_text(generated(path, kind), encoding="utf-8")
    print(f"wrote {len(EXAMPLES) * len(PATHS)} golden files to {GOLDEN}")
