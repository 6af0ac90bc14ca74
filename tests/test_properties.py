"""Properties of the language, checked on generated input (hypothesis).

- A random valid model, printed by the canonical printer, parses back to the
  same AST, and ``parse(m.to_text()) == m``.
- Random text, and random mutations of the example files, give a model or an
  RnnGraphError: never another exception, never a traceback for the user.
- Every number the parser accepts prints (as text and as LaTeX) to exactly itself.
"""
import re
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.lang import ast
from rnngraph.lang import printing
from rnngraph.lang.printing import program_text

from conftest import EXAMPLES

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def models(draw):
    """A valid program: variables v0..vn, each reading inputs, earlier variables at t,
    and any variable at t-1 (so no algebraic loop), through fresh matrices and biases."""
    n_vars = draw(st.integers(1, 4))
    names = [f"v{i}" for i in range(n_vars)]
    fresh = iter(range(10_000))
    equations = []
    for i, name in enumerate(names):
        def vector_leaf():
            choices = [ast.Ref("x", -draw(st.integers(0, 2))), ast.Ref(draw(st.sampled_from(names)), -1)]
            choices += [ast.Ref(n, 0) for n in names[:i]]
            return draw(st.sampled_from(choices))

        def expr(depth):
            kind = draw(st.sampled_from(["leaf", "leaf", "add", "mul", "matmul", "call", "neg",
                                         "concat", "bias", "scale", "transpose"])) if depth else "leaf"
            if kind == "leaf":
                return vector_leaf()
            if kind in ("add", "mul"):
                op = draw(st.sampled_from("+-" if kind == "add" else "*/"))
                return ast.Binary(op, expr(depth - 1), expr(depth - 1))
            if kind == "matmul":
                return ast.Binary("@", ast.Ref(f"W{next(fresh)}"), expr(depth - 1))
            if kind == "transpose":
                return ast.Binary("@", ast.Transpose(ast.Ref(f"W{next(fresh)}")), expr(depth - 1))
            if kind == "call":
                func = draw(st.sampled_from(["tanh", "sigmoid", "relu", "softmax", "exp", "log"]))
                return ast.Call(func, (expr(depth - 1),))
            if kind == "neg":
                return ast.Neg(expr(depth - 1))
            if kind == "concat":
                items = tuple(expr(depth - 1) for _ in range(draw(st.integers(2, 3))))
                return ast.Binary("@", ast.Ref(f"W{next(fresh)}"), ast.Concat(items))
            if kind == "bias":
                return ast.Binary("+", expr(depth - 1), ast.Ref(f"b{next(fresh)}"))
            value = draw(st.sampled_from([0.5, 2.0, 3.0, 1e-3, 0.25]))
            return ast.Binary("*", ast.Num(value), expr(depth - 1))

        equations.append(ast.Equation(name, "seq", expr(draw(st.integers(0, 4)))))
    if draw(st.booleans()):
        equations.append(ast.Equation("v0", "init", ast.Ref("h0")))
    return ast.Program(tuple(equations))


@SETTINGS
@given(models())
def test_random_models_round_trip_through_the_canonical_text(program):
    text = program_text(program)
    try:
        model = rnngraph.parse(text)
    except RnnGraphError as err:
        # h0 as v0's initial value is invalid when nothing reads v0 at an earlier step
        assert err.message.startswith("v0(0) gives an initial value") or \
            err.message.startswith("'v0' has no time index"), (text, err)
        return
    assert model.program == program
    again = rnngraph.parse(model.to_text())
    assert again == model and again.to_text() == text


ALPHABET = string.ascii_letters[:12] + "tTxhW01 ()[];,=+-*/@^.:#\n" + "σ⊙−ᵀα·"


@SETTINGS
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_random_text_gives_a_model_or_a_located_error(text):
    _model_or_error(text)


@SETTINGS
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_examples_give_a_model_or_a_located_error(path, data):
    text = path.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = data.draw(st.text(alphabet=ALPHABET, min_size=1, max_size=3))
        if action == "delete":
            text = text[:i] + text[i + len(piece):]
        elif action == "insert":
            text = text[:i] + piece + text[i:]
        elif action == "replace":
            text = text[:i] + piece + text[i + len(piece):]
        else:
            j = data.draw(st.integers(0, len(text)))
            text = text[:i] + text[min(i, j):max(i, j)] + text[i:]
    _model_or_error(text)


def _model_or_error(text):
    try:
        model = rnngraph.parse(text, "fuzz.rnn")
    except RnnGraphError as err:
        assert err.filename == "fuzz.rnn" and err.line >= 1 and err.column >= 1
        lines = str(err).split("\n")
        assert lines[0].startswith(f"fuzz.rnn:{err.line}:{err.column}: error: ")
        assert lines[2].strip() == "^"
        return
    # What parses is usable: every view works and the canonical text round-trips.
    assert rnngraph.parse(model.to_text()) == model
    model.graph()
    model.unroll(2)
    model.op_graph()
    if not model.unknown_sizes:
        model.ir().check()
    model.to_latex()
    model.summary()


# -- numbers: any float64 the parser accepts prints back to exactly itself ---------------
def _latex_number(text):
    """The float a LaTeX number of the printer stands for: 0.5, 10^{22}, 2.5 \\cdot 10^{-320}."""
    # as LaTeX typesets it: 1e+22 would read as "1e + 22"
    assert re.fullmatch(r"\d+(\.\d+)?|10\^\{-?\d+\}|\d(\.\d+)? \\cdot 10\^\{-?\d+\}", text), text
    mantissa, _, power = text.rpartition("10^{")
    if not _:
        return float(text)
    mantissa = mantissa.replace(r"\cdot", "").strip() or "1"
    return float(f"{mantissa}e{power.rstrip('}')}")


@SETTINGS
@given(st.one_of(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
                 st.sampled_from([1e-320, 5e-324, 1e308, 1.7976931348623157e308, 0.1, 1e22, 1e15,
                                  1e15 - 1, 2.0 ** 53 + 2, 123456789.125])))
def test_numbers_round_trip_through_the_text_and_the_latex(value):
    value = abs(value)
    model = rnngraph.parse(f"y(t) = {printing.number_text(value)} * x(t)")
    assert model.equations[0].rhs.left.value == value
    assert rnngraph.parse(model.to_text()) == model
    latex = model.to_latex().split("&= ")[1].split(" x^{(t)}")[0]
    assert _latex_number(latex) == value


@pytest.mark.parametrize("name", ["inf", "nan", "Infinity", "NaN", "e", "E1", "inf_"])
def test_names_that_look_like_numbers_are_names(name):
    model = rnngraph.parse(f"y(t) = {name} * x(t) + {name}")
    assert model.symbols[name].role == "parameter"
    assert model.to_text() == f"y(t) = {name} * x(t) + {name}\n"
    assert rnngraph.parse(model.to_text()) == model
