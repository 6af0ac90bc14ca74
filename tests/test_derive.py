"""rnngraph derive: the chain rule printed as a sum over paths and as the book's matrices, each
printed term evaluated and compared with the compiled model's gradient."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import rnngraph
from rnngraph.cli import main
from rnngraph.derive import Node, Paths, derive
from rnngraph.derive.calculus import Unsupported

from test_random_models import random_models

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Not covered yet, each refused with a located message: none of the examples
NOT_YET: dict[str, str] = {}


def _loss(model) -> str | None:
    """The model's losses, or (a model without one) its last equation's variable."""
    return None if any(s.loss for s in model.symbols.values()) else model.equations[-1].name


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.rnn")), ids=lambda p: p.stem)
def test_every_example_derives_and_the_printed_terms_are_the_gradient(path):
    """Every parameter's expansion over 2 steps and the whole model's matrices over 3, each
    evaluated on random values, equal the compiled gradient to rounding; or, for what is not
    covered yet, a located error that says what."""
    model = rnngraph.load(path)
    if path.stem in NOT_YET:
        with pytest.raises(Unsupported, match=NOT_YET[path.stem].replace("(", r"\(").replace(")", r"\)")) as err:
            model.derive(wrt=next(iter(model.param_shapes)), loss=_loss(model))
        assert err.value.filename == str(path) and err.value.line >= 1
        return
    loss = _loss(model)
    for w in model.param_shapes:
        d = model.derive(wrt=w, loss=loss, steps=2)
        assert d.terms >= 1
        assert d.check() < 1e-10, w
    assert model.derive(loss=loss, steps=3, form="matrix").check() < 1e-10


def test_the_matrix_form_is_the_books():
    """Elman (the book's 10.8-10.11): the lines of its section 10.2.2, in the file's names."""
    text = rnngraph.load(EXAMPLES / "elman.rnn").derive(form="matrix").text()
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "L = Σ_t L(t); a term of an equation at a step outside 1..τ is zero"
    for line in ["∇_o(t) L = (diag(y(t)) - y(t) y(t)^T) ∇_y(t) L",
                 "∇_h(t) L = W^T ∇_a(t+1) L + V^T ∇_o(t) L",
                 "∇_a(t) L = diag(1 - h(t)^2) ∇_h(t) L",
                 "∇_W L = Σ_t (∇_a(t) L) h(t-1)^T",
                 "∇_U L = Σ_t (∇_a(t) L) x(t)^T",
                 "∇_c L = Σ_t ∇_o(t) L",
                 "∇_V L = Σ_t (∇_o(t) L) h(t)^T"]:
        assert line in lines, line


def test_attention_couples_every_step_through_softmax_t():
    """Bahdanau's attention over 2 encoder steps, 1 decoder step: v reaches L(1) through each
    score e(1, t') and, softmax_t coupling the steps, each weight a(1, t) reads every score:
    2 x 2 paths.  The matrix form is softmax's Jacobian across the steps, and the encoder
    states take the contexts' gradient weighted by a(u, t)."""
    m = rnngraph.load(EXAMPLES / "attention.rnn")
    d = m.derive(wrt="v", loss="L(1)", steps={"t": 2, "u": 1})
    assert d.terms == 4
    assert "∂a(1, 2)/∂e(1, 1) ∂e(1, 1)/∂v" in d.text()
    assert d.check() < 1e-12
    matrix = m.derive(form="matrix", steps={"t": 4, "u": 3})
    lines = [line.strip() for line in matrix.text().splitlines()]
    assert lines[0] == "L = Σ_u L(u); a term of an equation at a step outside t = 1..4, u = 1..3 is zero"
    assert "∇_e(u, t) L = a(u, t) (∇_a(u, t) L - Σ_t' a(u, t') ∇_a(u, t') L)" in lines
    h = next(line for line in lines if line.startswith("∇_h(t) L"))
    assert "[t = τ] W_s^T diag(1 - s(0)^2) ∇_s(0) L" in h and "Σ_u a(u, t) ∇_c(u) L" in h
    assert matrix.check() < 1e-12


def test_a_tree_node_takes_its_gradient_from_its_parent():
    """The recursive net (the book's figure 10.14): over 4 leaves h(5) = f(h(1), h(2)),
    h(6) = f(h(3), h(4)), h(7) the root; W_l reaches the loss through each inner node and its
    left children's, as printed; the matrix form sends a node's gradient down from its parent."""
    m = rnngraph.load(EXAMPLES / "tree.rnn")
    d = m.derive(wrt="W_l", steps=4)
    first, *rest = d.text().splitlines()
    assert "5: (1, 2), 6: (3, 4), 7: (5, 6); 7 the root" in first
    assert d.terms == 7 and d.check() < 1e-12      # W_l used at 7 nodes, each one path up
    assert "+ ∂L/∂o ∂o/∂h(7) ∂h(7)/∂h(6) ∂h(6)/∂h(3) ∂h(3)/∂W_l" in d.text()
    matrix = m.derive(form="matrix", steps=4)
    assert "∇_h(n) L = Σ_{p: left(p) = n} W_l^T diag(1 - h(p)^2) ∇_h(p) L + Σ_{p: right(p) = n} " \
        "W_r^T diag(1 - h(p)^2) ∇_h(p) L + [n = root] V^T (diag(o) - o o^T) ∇_o L" in matrix.text()
    assert matrix.check() < 1e-12


def test_a_memory_s_gradient_is_a_matrix():
    """The NTM: ∇_M(t) L through the next write (erased entry by entry), the next read's columns
    and the next addressing's cosine; checked against the compiled gradient and, for M(1)
    inside the run, against central differences."""
    m = rnngraph.load(EXAMPLES / "ntm.rnn")
    matrix = m.derive(form="matrix", loss="y", steps=3)
    line = next(x for x in matrix.text().splitlines() if x.startswith("∇_M(t) L"))
    assert "(1 - w(t+1) e(t+1)^T) ⊙ ∇_M(t+1) L" in line and "w(t+1) (∇_r(t+1) L)^T" in line
    assert matrix.check() < 1e-12
    d = m.derive(wrt="M(1)", loss="y(2)", steps=2)
    assert d.check() < 1e-7 and d.against.startswith("central differences")


def test_the_exercise_expands_over_every_path_of_the_unrolled_drawing():
    """∂y(2)/∂U for the course's exercise: one term per path of the drawn unrolled graph from
    a use of U (h1(1), h1(2)) to y(2), printed as the sheets print them."""
    model = rnngraph.load(EXAMPLES / "exercise.rnn")
    d = model.derive(wrt="U", loss="y(2)", steps=2)
    g = model.unroll(2)
    drawn = sum(len(list(nx.all_simple_paths(g, ("h1", s), ("y", 2)))) for s in (1, 2))
    assert d.terms == drawn == 5
    assert d.text().splitlines()[0] == "∂y(2)/∂U = ∂y(2)/∂h2(2) ∂h2(2)/∂h1(2) ∂h1(2)/∂U"
    assert "+ ∂y(2)/∂h2(2) ∂h2(2)/∂y(1) ∂y(1)/∂h2(1) ∂h2(1)/∂h1(1) ∂h1(1)/∂U" in d.text()
    assert d.check() < 1e-12


def test_a_missing_path_is_caught_by_the_check():
    """The check is a real one: leave out one printed term and the sum is no longer the gradient."""
    d = rnngraph.load(EXAMPLES / "elman.rnn").derive(wrt="W", steps=3)
    assert d.check() < 1e-12
    group = d.groups[Node("L", 3)]
    group.pop()
    assert d.check() > 1e-3


def test_grouped_by_loss_term_in_latex():
    """The sum over the steps of the loss first, then one group a step, as an aligned block."""
    d = rnngraph.load(EXAMPLES / "elman.rnn").derive(wrt="W", steps=2)
    tex = d.latex()
    assert tex.startswith("\\begin{aligned}\n\\frac{\\partial L}{\\partial W} &= "
                          "\\frac{\\partial L^{(1)}}{\\partial W} + \\frac{\\partial L^{(2)}}{\\partial W}")
    assert tex.count("&\\quad + ") == 1 and tex.rstrip().endswith("\\end{aligned}")
    assert [len(p) for p in d.groups.values()] == [1, 2]


@pytest.mark.parametrize("wrt, against, within", [
    ("x(1)", "the compiled gradient", 1e-12), ("h(0)", "the compiled gradient", 1e-12),
    ("h(1)", "central differences of the equations run again from h(1)", 1e-7)])
def test_with_respect_to_a_value_at_a_step(wrt, against, within):
    """An input at a step and the initial value against the compiled gradient; a state inside
    the run, which the compiled model has no gradient for, against central differences of the
    equations evaluated again from it (apart from the derivation's rules)."""
    d = rnngraph.load(EXAMPLES / "elman.rnn").derive(wrt=wrt, steps=3)
    assert d.check() < within and d.against == against


DELAYED = "h(t) = tanh(W h(t-2) + U x(t))\ng(t) = tanh(V g(t+1) + U x(t))\nL(t) = v^T h(t) + v^T g(t)\n" \
          "x: 2, h: 3, g: 3, L: 1\n"


def test_initial_values_back_to_the_longest_delay():
    m = rnngraph.parse(DELAYED)
    assert m.derive(wrt="h(-1)", loss="L", steps=3).check() < 1e-12
    with pytest.raises(rnngraph.RnnGraphError, match=r"the step is outside 1\.\.3"):
        m.derive(wrt="g(0)", loss="L", steps=3)  # a backward state has no h(0)


@pytest.mark.parametrize("text, wrt", [
    ("h(t) = tanh(outer(a, b) h(t-1) + U x(t))\nx: 2, h: 3, a: 3, b: 3\n", "a"),
    ("h(t) = tanh((h(t-1) x(t)^T) x(t) + U x(t))\nx: 3, h: 3\n", "U"),
    ("M(t) = M(t-1) * sigmoid(P) + tanh(U x(t)) x(t)^T\nh(t) = tanh(M(t)^T q + cosine(M(t), x(t)))\n"
     "M: 3x3, x: 3, P: 3x3, q: 3\n", "P"),
])
def test_matrices_with_a_value_per_example(text, wrt):
    """Products with a matrix the steps compute (an outer product, a memory's rows and
    columns, its cosine with a key): the printed forms evaluate to the compiled gradient."""
    m = rnngraph.parse(text, "m.rnn")
    assert m.derive(wrt=wrt, loss="h(2)", steps=2).check() < 1e-10
    assert m.derive(loss="h", steps=3, form="matrix").check() < 1e-10


@pytest.mark.parametrize("text, message, at", [
    ("index u\nh(t) = tanh(W h(t-1) + U x(t))\ne(u, t) = s(u-1)^T h(t)\n"
     "a(u, t) = exp(e(u, t)) / sum_t(exp(e(u, t)))\ns(u) = tanh(A s(u-1) + sum_t(a(u, t) * h(t)))\n"
     "L(u) = cross_entropy(softmax(V s(u)), y(u))\nx: 2, h: 2, s: 2, y: 2, e: 1\n",
     r"sum_t\(\) inside an equation over t \(write softmax_t", (4, 26)),
    ("index u\nh(t) = tanh(W h(t-1) + U x(t))\ns(u) = tanh(A s(u-1) + B y(u-1))\n"
     "J = sum_u(sum_t(s(u)^T tanh(G h(t))))\nx: 2, h: 2, s: 2, y: 2, J: 1\n",
     "a sum over the steps inside another", (4, 5)),
])
def test_what_is_not_covered_is_a_located_error(text, message, at):
    """A sum over the index of its own equation, and a sum inside another: refused where they
    are written, in both forms, not derived wrong."""
    m = rnngraph.parse(text, "m.rnn")
    for form in ("paths", "matrix"):
        with pytest.raises(Unsupported, match=message) as err:
            m.derive(wrt="W", loss="J" if "J =" in text else "L", form=form,
                     steps={"t": 3, "u": 2})
        assert (err.value.line, err.value.column) == at


def test_end_is_the_last_step_of_its_own_index():
    """end in an equation over u is u's last step, also inside sum_t; in LaTeX τ_u (and
    s(end) of a decoder state s^(τ_u)), τ for t's."""
    m = rnngraph.parse("index u\nh(t) = tanh(W h(t-1) + U x(t))\n"
                       "s(u) = tanh(A s(u-1) + D h(end) + r * (end - u) + sum_t(tanh(R h(t)) * (end - u)))\n"
                       "o = softmax(V s(end))\nJ = cross_entropy(o, y)\nx: 3, h: 4, s: 4, y: 2, r: 1\n")
    steps = {"t": 3, "u": 2}
    matrix = m.derive(form="matrix", steps=steps)
    assert matrix.check() < 1e-12
    assert m.derive(wrt="R", steps=steps).check() < 1e-12
    latex = matrix.latex()
    assert r"\tau_{u} - u" in latex and r"s^{(\tau_{u})\top}" in latex and r"h^{(\tau)\top}" in latex


def test_a_gate_times_a_memory_and_a_loss_over_pairs():
    """A number an example times a matrix, along a path; a loss at values over two indices
    (the weights a(u, t), whose sum over t is 1: every gradient zero, and so printed)."""
    gm = rnngraph.parse("M: 3x3\nx: 3, h: 3, g: 1\ng(t) = sigmoid(W_g x(t))\n"
                        "M(t) = g(t) * M(t-1) + x(t) x(t)^T\nh(t) = tanh(M(t) x(t))\n")
    assert gm.derive(wrt="W_g", loss="h(2)", steps=2).check() < 1e-12
    att = rnngraph.load(EXAMPLES / "attention.rnn")
    d = att.derive(wrt="v", loss="a", steps={"t": 2, "u": 1})
    assert d.terms == 4 and d.check() < 1e-6
    assert att.derive(wrt="v", loss="e(1, 2)", steps={"t": 2, "u": 1}).check() < 1e-12


def test_a_size_one_value_spread_over_a_vector():
    """p = exp(cosine(h, x)) with p of size 3: exp's derivative is of the number, not of p."""
    m = rnngraph.parse("x: 3, p: 3\nh(t) = tanh(W h(t-1) + U x(t))\np(t) = exp(cosine(h(t), x(t)))\n")
    assert m.derive(form="matrix", loss="p", steps=3).check() < 1e-12
    assert m.derive(wrt="W", loss="p(2)").check() < 1e-12


def test_a_nan_gradient_fails_the_check():
    """NaN (the square root of a negative number) in the gradients must not pass as agreement."""
    m = rnngraph.parse("h(t) = tanh((t * W) h(t-1) + U x(t))\nL(t) = sqrt(-1 - h(t)^T h(t))\n"
                       "x: 2, h: 3, L: 1\n")
    with np.errstate(all="ignore"):
        assert m.derive(form="matrix", loss="L").check() == float("inf")
    ok = rnngraph.parse("h(t) = tanh((t * W) h(t-1) + U x(t))\nL(t) = v^T h(t)\nx: 2, h: 3, L: 1\n")
    assert ok.derive(form="matrix", loss="L", steps=4).check() < 1e-12   # t in the matrix


def test_matrix_expressions_with_transposes():
    m = rnngraph.parse("h(t) = tanh((W1 W1^T) h(t-1) + W1 z(t))\nL(t) = v^T h(t)\nz: 1, h: 3, L: 1\n")
    d = m.derive(form="matrix", loss="L")
    assert "(W1 W1^T)^T" in d.text() and d.check() < 1e-12


def test_long_unrolls_do_not_recurse():
    """80 steps of a GRU in matrix form, and the paths counted through 12 layers over 60 steps."""
    gru = rnngraph.load(EXAMPLES / "torch_gru.rnn")
    assert gru.derive(loss="h", form="matrix", steps=80).check() < 1e-10
    layers = "\n".join(f"h{k}(t) = tanh(W{k} h{k}(t-1) + U{k} h{k - 1}(t))" for k in range(1, 13))
    deep = rnngraph.parse(layers.replace("h0(t)", "x(t)") + "\nL(t) = v^T h12(t)\n",
                          sizes={"x": 2, "L": 1, **{f"h{k}": 2 for k in range(1, 13)}})
    with pytest.raises(rnngraph.RnnGraphError, match="too many to print"):
        deep.derive(wrt="x(1)", loss="L(60)", steps=60)


@pytest.mark.parametrize("loss, message", [
    ("x", "x is an input; name a variable an equation computes"),
    ("W", "W is a parameter"),
    ("h(0)", "a loss is at a step 1..2"),
])
def test_a_loss_is_computed_at_a_step_of_the_run(loss, message):
    with pytest.raises(rnngraph.RnnGraphError, match=message):
        rnngraph.load(EXAMPLES / "elman.rnn").derive(wrt="W", loss=loss)


def test_the_matrix_form_takes_a_loss_at_every_step_and_a_parameter():
    m = rnngraph.load(EXAMPLES / "elman.rnn")
    with pytest.raises(rnngraph.RnnGraphError, match="the matrix form is for a loss at every step"):
        m.derive(form="matrix", loss="L(2)")
    with pytest.raises(rnngraph.RnnGraphError, match="name a parameter"):
        m.derive(form="matrix", wrt="x(1)")
    text = m.derive(form="matrix", wrt="W").text()
    assert "∇_a(t) L = diag(1 - h(t)^2) ∇_h(t) L" in text and "∇_U L" not in text


def test_printed_forms_of_sums_means_and_the_loss_itself():
    halting = rnngraph.load(EXAMPLES / "halting.rnn").derive(wrt="w")
    assert halting.text().startswith("∂(L + L_halt)/∂w = ")
    mean = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nC = mean_t(v^T h(t))\nx: 2, h: 3, C: 1\n")
    d = mean.derive(form="matrix", loss="C")
    assert "Σ_t h(t) (1 / τ)^T" in d.text() and d.check() < 1e-12
    assert rnngraph.load(EXAMPLES / "elman.rnn").derive(wrt="L(1)", loss="L(1)").text() == \
        "∂L(1)/∂L(1) = 1\n"


def test_a_zero_gradient_is_no_false_alarm():
    """b enters a softmax as the same number in every entry: its gradient is zero, rounding
    alone; compared with the other gradients' size, not its own."""
    m = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nS = sum_t(b + V h(t))\ny = softmax(S)\n"
                       "L = cross_entropy(y, d)\nx: 2, h: 3, b: 1, S: 3\n")
    assert m.derive(form="matrix").check() < 1e-10


def test_a_backward_state_and_the_last_step():
    """Bidirectional (g reads g(t+1)): a path runs back from the end; sequence_summary reads h(end)."""
    bi = rnngraph.load(EXAMPLES / "bidirectional.rnn").derive(wrt="W_g", loss="o(1)", steps=3)
    assert "∂g(1)/∂g(2) ∂g(2)/∂W_g" in bi.text() and bi.check() < 1e-12
    summary = rnngraph.load(EXAMPLES / "sequence_summary.rnn").derive(form="matrix")
    assert "[t = τ] V^T ∇_o L" in summary.text() and summary.check() < 1e-12


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(random_models(), st.data())
def test_random_models_derive_to_their_gradient(text, data):
    """The tests' random models (every operand position, delays, backward states, sums over
    the steps, reads of a fixed step): both forms equal the compiled gradient."""
    model = rnngraph.parse(text, "random.rnn").require_sizes()
    loss = _loss(model)
    try:
        matrix = model.derive(loss=loss, steps=3, form="matrix")
    except Unsupported:
        assume(False)
    with np.errstate(all="ignore"):
        err = matrix.check()
    assume(np.isfinite(err))                 # a random model whose values overflow
    assert err < 1e-8, text
    if model.param_shapes:
        w = data.draw(st.sampled_from(sorted(model.param_shapes)))
        last = matrix.losses[-1]
        try:
            paths = model.derive(wrt=w, loss=f"{last.name}(2)" if last.step else last.name, steps=2)
        except rnngraph.RnnGraphError as e:
            assume("unroll at least" not in str(e) and "too many" not in str(e))
            raise
        with np.errstate(all="ignore"):
            assert paths.check() < 1e-8, (w, text)


def test_the_cli(tmp_path, capsys):
    assert main(["derive", str(EXAMPLES / "seq2seq.rnn"), "--wrt", "W_c", "--unroll", "t=3,u=2"]) == 0
    assert "∂L(2)/∂W_c = ∂L(2)/∂o(2) ∂o(2)/∂s(2) ∂s(2)/∂s(1) ∂s(1)/∂s(0) ∂s(0)/∂W_c" in \
        capsys.readouterr().out
    ex = str(EXAMPLES / "exercise.rnn")
    assert main(["derive", ex, "--wrt", "U", "--loss", "y(2)", "--check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("∂y(2)/∂U = ∂y(2)/∂h2(2)") and out.count("\n") == 5
    assert err.startswith("checked: the printed terms") and "e-1" in err
    target = tmp_path / "bptt.tex"
    assert main(["derive", ex, "--matrix", "--loss", "y", "--latex", "-o", str(target)]) == 0
    assert target.read_text().startswith("\\begin{aligned}\nL &= ")
    before = Path(ex).read_bytes()
    assert main(["derive", ex, "--wrt", "U", "--loss", "y", "-o", ex]) == 2
    assert Path(ex).read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["attention.rnn", "--wrt", "v", "--unroll", "t=2,w=2"], "'w' is not an index of this model (its indices: t, u)"),
    (["attention.rnn", "--wrt", "e(1)"], "e is e(u, t): give two steps, as e(1, 2)"),
    (["exercise.rnn", "--wrt", "Z", "--loss", "y"], "--wrt 'Z': not a name of the model"),
    (["exercise.rnn", "--wrt", "x", "--loss", "y"], "give a step, as --wrt x(1)"),
    (["exercise.rnn", "--wrt", "U"], "the model has no loss"),
    (["exercise.rnn", "--wrt", "x(7)", "--loss", "y"], "the step is outside 1..2"),
    (["lstm_peephole.rnn", "--wrt", "W_f", "--loss", "h", "--unroll", "5"], "too many to print (at most 256)"),
])
def test_the_cli_refuses_with_a_message(args, message, capsys):
    assert main(["derive", str(EXAMPLES / args[0]), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex is not installed")
def test_the_latex_compiles(tmp_path):
    """Every covered example's matrix form and a path form, as printed, in a document with
    amsmath: pdflatex accepts them (accented names transposed, parts of concatenations)."""
    blocks = []
    for path in sorted(EXAMPLES.glob("*.rnn")):
        if path.stem not in NOT_YET:
            model = rnngraph.load(path)
            blocks.append(model.derive(form="matrix", loss=_loss(model)))
    blocks.append(rnngraph.load(EXAMPLES / "lstm_dlbook.rnn").derive(wrt="U_f", loss="h(2)"))
    body = "\n".join(f"\\[\n{d.latex()}\\]" for d in blocks)
    (tmp_path / "d.tex").write_text("\\documentclass{article}\n\\usepackage{amsmath}\n"
                                    "\\begin{document}\n" + body + "\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]


def test_the_api_is_the_same_as_the_function():
    m = rnngraph.load(EXAMPLES / "elman.rnn")
    assert m.derive(wrt="W").text() == derive(m, wrt="W").text()
    assert isinstance(m.derive(wrt="W"), Paths)


def test_the_readme_prints_what_the_command_prints(capsys, monkeypatch):
    """Each `$ rnngraph derive ...` block of the README is the command's output, as is."""
    import shlex
    root = EXAMPLES.parent
    monkeypatch.chdir(root)
    blocks = (root / "README.md").read_text(encoding="utf-8").split("\n    $ rnngraph derive ")[1:]
    assert len(blocks) == 3
    for block in blocks:
        lines = block.split("\n\n")[0].split("\n")
        assert main(["derive", *shlex.split(lines[0])]) == 0
        assert capsys.readouterr().out == "".join(line[4:] + "\n" for line in lines[1:])
