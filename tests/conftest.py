from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.rnn"))

EXERCISE = """\
h1(t) = tanh(U x(t) + V h1(t-1) + W h2(t-1) + b)
h2(t) = tanh(R h1(t) + S h2(t-1) + T y(t-1) + c)
y(t)  = softmax(P x(t) + Q h2(t) + d)
"""


@pytest.fixture
def exercise():
    import rnngraph
    return rnngraph.parse(EXERCISE, "exercise.rnn")
