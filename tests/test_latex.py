r"""LaTeX input (issue 20): the equations as exercise sheets print them give the model the
plain notation gives; to_latex() output parses back to the same equations; errors point
at the LaTeX source.  The grammar is grammars/latex.lark, its reading rnngraph/lang/latex.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.lang.printing import program_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.stem for p in EXAMPLES.glob("*.rnn"))

#: The exercise as the sheet prints it (issue 20's example): bold names, subscripts,
#: superscripted steps, thin spaces, an aligned block, a full stop.
EXERCISE = r"""
The network of the exercise:
\[
\begin{aligned}
\boldsymbol{h}_{1}^{(t)} &= \tanh\left(\boldsymbol{U}\,\boldsymbol{x}^{(t)} +
    \boldsymbol{V}\,\boldsymbol{h}_{1}^{(t-1)} + \boldsymbol{W}\,\boldsymbol{h}_{2}^{(t-1)}
    + \boldsymbol{b}\right) \\
\boldsymbol{h}_{2}^{(t)} &= \tanh\left(\boldsymbol{R}\,\boldsymbol{h}_{1}^{(t)} +
    \boldsymbol{S}\,\boldsymbol{h}_{2}^{(t-1)} + \boldsymbol{T}\,\boldsymbol{y}^{(t-1)}
    + \boldsymbol{c}\right) \\
\boldsymbol{y}^{(t)} &= \operatorname{softmax}\left(\boldsymbol{P}\,\boldsymbol{x}^{(t)}
    + \boldsymbol{Q}\,\boldsymbol{h}_{2}^{(t)} + \boldsymbol{d}\right).
\end{aligned}
\]
where $\boldsymbol{x}^{(t)}$ is the input.
"""


def _equations(program) -> list[str]:
    return [line for line in program_text(program).splitlines() if "=" in line]


def test_the_exercise_sheet_gives_the_exercise(tmp_path):
    plain = rnngraph.load(EXAMPLES / "exercise.rnn")
    sizes = {n: v for n, v in plain.sizes.items() if plain.symbols[n].role != "parameter"}
    latex = rnngraph.parse(EXERCISE, "exercise.tex", sizes=sizes)
    assert _equations(latex.program) == _equations(plain.program)
    assert latex.param_shapes == plain.param_shapes
    # chosen by the extension, from the command line too
    path = tmp_path / "exercise.tex"
    path.write_text(EXERCISE)
    assert main(["draw", str(path), "--unroll", "4", "--sizes", "x=3,h1=4,h2=4,y=2",
                 "-o", str(tmp_path / "ex.svg")]) == 0
    # and it computes what the plain file computes
    a = plain.compile(dtype="float64")
    b = latex.compile(dtype="float64")
    params = a.init_params(seed=0)
    x = {"x": np.random.default_rng(0).normal(size=(3, 2, plain.sizes["x"]))}
    assert np.array_equal(a.forward(params, x)["y"], b.forward(params, x)["y"])


@pytest.mark.parametrize("name", ALL)
def test_to_latex_parses_back_to_the_same_equations(name):
    m = rnngraph.load(EXAMPLES / f"{name}.rnn")
    back = rnngraph.parse(m.to_latex(), f"{name}.tex",     # (sizes are not written in LaTeX)
                          sizes={d.name: d.size for d in m.program.sizes})
    assert _equations(back.program) == _equations(m.program)
    assert [d.name for d in back.program.indices] == [d.name for d in m.program.indices]


@pytest.mark.parametrize("latex,plain", [
    (r"$h_t = \tanh(W h_{t-1} + U x_t)$", "h(t) = tanh(W h(t-1) + U x(t))"),
    (r"$$\mathbf{h}^{(t)} = \sigma(\bm{W}^{(f)} \mathbf{h}^{(t-1)} + b^{(f)}),$$",
     "h(t) = sigmoid(W_f h(t-1) + b_f)"),
    (r"\tilde{c}^{(t)} = \tanh(W_{c} x^{(t)}) \odot g^{(t)}",
     "c_tilde(t) = tanh(W_c x(t)) * g(t)"),
    ("h^{(t)} = \\tanh(W h^{(t-1)} + U x^{(t)})\ny^{(t)} = \\operatorname{softmax}(V h^{(t)})",
     "h(t) = tanh(W h(t-1) + U x(t))\ny(t) = softmax(V h(t))"),
    (r"h^{(t)} = \tanh\left(W \begin{bmatrix} h^{(t-1)} \\ x^{(t)} \end{bmatrix}\right)",
     "h(t) = tanh(W [h(t-1); x(t)])"),
    (r"L = \frac{1}{\tau} \sum_{t} \operatorname{CE}(y^{(t)}, k^{(t)})",
     "L = mean_t(cross_entropy(y(t), k(t)))"),
    (r"J = \sum_{t=1}^{\tau} L^{(t)}", "J = sum_t(L(t))"),
    (r"J = \sum_{t} W h^{(t)}", "J = sum_t(W h(t))"),
    (r"o = V h^{(\tau)} + \frac{a}{2}", "o = V h(end) + a / 2"),
    (r"n^{(t)} = \left\lVert h^{(t)} \right\rVert \odot (q^{\top} \cdot h^{(t)})",
     "n(t) = norm(h(t)) * q^T h(t)"),
    (r"h^{(t)} = \tanh(W h^{(t-1)} + r (\tau - t)) % the steps left",
     "h(t) = tanh(W h(t-1) + r * (end - t))"),
    (r"s^{(u)} = \tanh(W s^{(u-1)} + C h^{(\tau)}) \\ h^{(t)} = \tanh(U x^{(t)})",
     "index u\ns(u) = tanh(W s(u-1) + C h(end))\nh(t) = tanh(U x(t))"),
    (r"h^{(n)} = \tanh(W_{l} h^{(\operatorname{left}(n))} + W_{r} h^{(\operatorname{right}(n))}"
     r" + U x^{(n)}) \\ o = V h^{(\operatorname{root})}",
     "tree n\nh(n) = tanh(W_l h(left(n)) + W_r h(right(n)) + U x(n))\no = V h(root)"),
    (r"\alpha^{(t)} = \operatorname{ReLU}(\beta \, x^{(t)})", "α(t) = relu(β x(t))"),
])
def test_latex_spellings(latex, plain):
    assert program_text(rnngraph.parse(latex, "eq.tex").program).strip() == \
        program_text(rnngraph.parse(plain, "eq.rnn").program).strip()


@pytest.mark.parametrize("latex,message,at", [
    (r"$$h^{(t)} = \tanh(W h^{(t-1)} + \foo x^{(t)})$$", r"unknown command \foo", (1, 33)),
    (r"h^{(t)} = \operatorname{squash}(W h^{(t-1)})", "unknown function 'squash'", (1, 11)),
    ("\n\n  h^{(t)} = \\tanh(W h^{(t-1)} + V z^{(t+1)}) \\\\\n  z^{(t)} = \\tanh(A z^{(t-1)} + h^{(t)})",
     "'h' and 'z' form a loop that reads both from the past", (3, 35)),
    (r"h^{(t)} = \tanh(W h^{(t-1)} +", "the equation is not finished", (1, 30)),
    (r"h^{(t)} = \tanh(W h^{(t+1/2)})", "a step is t, t-1, t+1, 0, a whole number or \\tau",
     (1, 19)),
    (r"Some text, and no equation.", "no equations", (1, 1)),
])
def test_latex_errors_point_at_the_latex(latex, message, at):
    with pytest.raises(RnnGraphError) as err:
        rnngraph.parse(latex, "sheet.tex")
    assert message in err.value.message
    assert (err.value.line, err.value.column) == at


def test_the_format_is_chosen_or_given():
    text = r"h^{(t)} = \tanh(W h^{(t-1)} + U x^{(t)})"
    assert rnngraph.parse(text, format="latex").role("state") == ["h"]
    with pytest.raises(RnnGraphError, match="format is 'plain' or 'latex', not 'tex'"):
        rnngraph.parse(text, format="tex")
    with pytest.raises(RnnGraphError):         # a .rnn file is the plain notation
        rnngraph.parse(text, "eq.rnn")
