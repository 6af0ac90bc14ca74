"""The reproducers of the correctness issue (wrong numbers, crashes), each answered.

Each model here once gave a wrong number or a crash after ``check`` and ``draw``
had accepted it.  Now each computes what hand-written NumPy computes, in float64
and within float32's rounding, and its gradients match central differences.
"""
import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main

from conftest import ROOT
from test_random_models import PATHS, compiled, worst_directional_error

RNG = np.random.default_rng(0)
T, B = 4, 2


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def run(text, reference, optimize):
    """Compile ``text``; its outputs equal ``reference(params, inputs)``'s (a dict of
    arrays (T, B, n)) in float64, float32 is within its rounding, and the gradients
    pass central differences."""
    model = rnngraph.parse(text)
    net = compiled(model, optimize, "float64")
    params = {k: 2 * v for k, v in net.init_params(seed=3).items()}
    inputs = {n: RNG.normal(size=(T, B, model.sizes[n])) for n in net.inputs}
    outs = net.forward(params, inputs)
    for name, want in reference(params, inputs).items():
        np.testing.assert_allclose(outs[name], want, rtol=1e-12, atol=1e-14)
    net32 = compiled(model, optimize, "float32")
    outs32 = net32.forward({k: v.astype(np.float32) for k, v in params.items()},
                           {k: v.astype(np.float32) for k, v in inputs.items()})
    for name in outs:
        np.testing.assert_allclose(outs32[name], outs[name], rtol=1e-5, atol=1e-5)
    cot = {k: RNG.normal(size=v.shape) for k, v in outs.items()}
    initial = {k: RNG.normal(size=(B, model.sizes[k.split("(")[0]])) for k in net.initial_values}
    assert worst_directional_error(net, (params, inputs, initial), cot, seed=1) <= 1e-6


def loop(step, h0):
    """Run ``h(t) = step(t, h(t-1))`` for t = 1..T from h0; the stacked h(1..T)."""
    out, h = [], h0
    for t in range(T):
        h = step(t, h)
        out.append(h)
    return np.array(out)


# ---- item 7: a product with a parameter vector, a time-free value, a size-1 value ----------
ELEMENTWISE = {
    "peephole": ("x: 3, c: 4\nc(t) = tanh(W x(t) + p_f * c(t-1))",
                 lambda p, i: {"c": loop(lambda t, c: np.tanh(i["x"][t] @ p["W"].T + p["p_f"] * c),
                                         np.zeros((B, 4)))}),
    "IndRNN": ("x: 3, h: 4\nh(t) = relu(W x(t) + u * h(t-1) + b)",
               lambda p, i: {"h": loop(lambda t, h: np.maximum(i["x"][t] @ p["W"].T + p["u"] * h
                                                               + p["b"], 0), np.zeros((B, 4)))}),
    "leaky, a vector α": (
        "x: 3, h: 4\nh(t) = (1 - α) * h(t-1) + α * tanh(W x(t) + U h(t-1))",
        lambda p, i: {"h": loop(lambda t, h: (1 - p["α"]) * h + p["α"] * np.tanh(
            i["x"][t] @ p["W"].T + h @ p["U"].T), np.zeros((B, 4)))}),
    "leaky, α of size 1 broadcast": (
        "x: 3, h: 4, α: 1\nh(t) = (1 - α) * h(t-1) + α * tanh(W x(t) + U h(t-1))",
        lambda p, i: {"h": loop(lambda t, h: (1 - p["α"]) * h + p["α"] * np.tanh(
            i["x"][t] @ p["W"].T + h @ p["U"].T), np.zeros((B, 4)))}),
    "b * x(t)": ("x: 3\nh(t) = b * x(t)", lambda p, i: {"h": p["b"] * i["x"]}),
    "x(t) / b": ("x: 3\nh(t) = x(t) / b", lambda p, i: {"h": i["x"] / p["b"]}),
    # ---- item 8: numbers in every position ----
    "-1 + x(t)": ("x: 3\nh(t) = -1 + x(t)", lambda p, i: {"h": -1 + i["x"]}),
    "x(t) * -1": ("x: 3\nh(t) = x(t) * -1", lambda p, i: {"h": -i["x"]}),
    "-((1-x(t))*(c*0.5))": ("x: 3\nh(t) = -((1-x(t))*(c*0.5))",
                            lambda p, i: {"h": -((1 - i["x"]) * (p["c"] * 0.5))}),
    "tanh(c*2*(W x(t))) + V h(t-1)": (
        "x: 3, h: 4\nh(t) = tanh(c*2*(W x(t))) + V h(t-1)",
        lambda p, i: {"h": loop(lambda t, h: np.tanh(p["c"] * 2 * (i["x"][t] @ p["W"].T))
                                + h @ p["V"].T, np.zeros((B, 4)))}),
    "a variable named __debug__": (
        "x: 3, __debug__: 4\n__debug__(t) = tanh(W __debug__(t-1) + U x(t))",
        lambda p, i: {"__debug__": loop(lambda t, h: np.tanh(h @ p["W"].T + i["x"][t] @ p["U"].T),
                                        np.zeros((B, 4)))}),
    # ---- item 3: names the generator used for its own temporaries ----
    "a variable named _1": (
        "x: 3, _1: 4\n_1(t) = tanh(W _1(t-1) + U x(t))",
        lambda p, i: {"_1": loop(lambda t, h: np.tanh(h @ p["W"].T + i["x"][t] @ p["U"].T),
                                 np.zeros((B, 4)))}),
    # ---- packed gates: one product over stacked rows, stacked again with a third matrix
    # (a slice of a slice, whose gradient was once lost), sigmoid and tanh lanes ----
    "gates of one form, two activations": (
        "x: 3, h: 2, g: 2, k: 2\ng(t) = sigmoid(A h(t-1) + U x(t))\n"
        "k(t) = tanh(C h(t-1) + R x(t))\nh(t) = g(t) * k(t) + V h(t-1)",
        lambda p, i: {"h": loop(lambda t, h: sigmoid(h @ p["A"].T + i["x"][t] @ p["U"].T)
                                * np.tanh(h @ p["C"].T + i["x"][t] @ p["R"].T)
                                + h @ p["V"].T, np.zeros((B, 2)))}),
    # ---- a gate of size 1 packed with others: its sigmoid computed -z with NumPy 2.4's
    # float32 np.negative, wrong when input and output are both strided columns ----
    "a gate of size 1 among others, float32": (
        "x1: 1, h7: 3, g9: 3, g12: 1\ng9(t) = tanh(W10 h7(t-1) + W11 x1(t-2))\n"
        "g12(t) = sigmoid(W13 h7(t-1) + W14 x1(t-2))\n"
        "h7(t) = W8 x1(t-2) + W15 g9(t) + W16 g12(t) + W17 h7(t-1)", None),
    # ---- item 5: float32 on the optimized path was off by 0.055 ----
    "float32 within rounding": (
        "e: 1, f: 3, p: 1\nf(t) = V1 p(t-1) + M2 e(t)\np(t) = σ(V4 p(t-1) + Θ5 e(t) + Θ6 f(t-1))",
        None),
}


@pytest.mark.parametrize("optimize", PATHS, ids=lambda o: {False: "plain", True: "optimized", "large": "large steps"}[o])
@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_model_computes_what_numpy_by_hand_computes(name, optimize):
    text, reference = ELEMENTWISE[name]
    run(text, reference or (lambda p, i: {}), optimize)


@pytest.mark.parametrize("optimize", PATHS, ids=lambda o: {False: "plain", True: "optimized", "large": "large steps"}[o])
def test_a_variable_renamed_to_a_generated_name_changes_nothing(optimize):
    """torch_gru with b_in renamed _2 (item 3) computes what torch_gru computes."""
    text = (ROOT / "examples/torch_gru.rnn").read_text(encoding="utf-8")
    original, renamed = rnngraph.parse(text), rnngraph.parse(text.replace("b_in", "_2"))
    a, b = compiled(original, optimize, "float64"), compiled(renamed, optimize, "float64")
    p = a.init_params(seed=2)
    q = {("_2" if k == "b_in" else k): v for k, v in p.items()}
    x = {"x": RNG.normal(size=(T, B, original.sizes["x"]))}
    np.testing.assert_array_equal(a.forward(p, x)["h"], b.forward(q, x)["h"])


def test_ops_view_of_a_model_with_a_generated_name_draws(capsys, tmp_path):
    path = tmp_path / "m.rnn"
    path.write_text("x: 3, _1: 4\n_1(t) = tanh(W _1(t-1) + U x(t))\n", encoding="utf-8")
    assert main(["draw", str(path), "--detail", "ops", "-o", str(tmp_path / "m.svg")]) == 0
    assert (tmp_path / "m.svg").read_bytes().startswith(b"<?xml")


# ---- item 1: the target of a loss is data -----------------------------------------------
def test_a_time_free_loss_target_is_an_input_not_a_parameter():
    model = rnngraph.parse("h = tanh(W x + b)\no = softmax(V h + c)\nL = cross_entropy(o, y)\n"
                           "x: 3, h: 4, o: 2")
    assert model.symbols["y"].role == "input" and model.symbols["y"].target
    net = model.compile()
    assert "y" not in net.param_shapes and "y" not in net.init_params()
    p = net.init_params()
    x, y = RNG.normal(size=(5, 3)), np.eye(2)[[0, 1, 1, 0, 1]]
    out = net.forward(p, {"x": x, "y": y})
    o = out["o"]
    np.testing.assert_allclose(out["L"][:, 0], -np.log((o * y).sum(-1)), rtol=1e-12)
    assert (out["L"] > 0).all()
    np.testing.assert_allclose(net.forward(p, {"x": x, "y": np.array([0, 1, 1, 0, 1])})["L"],
                               out["L"], rtol=1e-12)      # class indices alike


# ---- item 6: booleans are not class indices; NaN cotangents are refused --------------------
def test_boolean_class_indices_are_refused_and_boolean_one_hot_targets_are_numbers():
    net = rnngraph.load(ROOT / "examples/elman.rnn").compile()
    model = net.model
    target = next(n for n in net.inputs if model.symbols[n].target)
    n = model.sizes[target]
    p = net.init_params()
    inputs = {k: RNG.normal(size=(T, model.sizes[k])) for k in net.inputs if k != target}
    with pytest.raises(RnnGraphError, match=f"input '{target}' holds booleans of shape \\(4,\\): "
                                            "class indices are integers"):
        net.forward(p, {**inputs, target: np.array([True, False, True, True])})
    classes = np.array([1, 0, 1, 1]) % n
    one_hot = np.eye(n, dtype=bool)[classes]
    np.testing.assert_allclose(net.forward(p, {**inputs, target: one_hot})["L"],
                               net.forward(p, {**inputs, target: classes})["L"], rtol=1e-12)


def test_a_nan_cotangent_is_refused():
    net = rnngraph.load(ROOT / "examples/torch_rnn.rnn").compile()
    p = net.init_params()
    outs, pullback = net.vjp(p, {"x": RNG.normal(size=(T, 4))})
    cot = np.ones_like(outs["h"])
    cot[2, 1] = np.nan
    with pytest.raises(RnnGraphError, match=r"the cotangent for 'h' contains NaN or Inf "
                                            r"\(first at index \(2, 1\)\)"):
        pullback({"h": cot})


def test_a_file_declares_the_roles_use_does_not_say():
    """``s`` added to a sum would be a learned bias; ``input s`` makes it data, and
    ``parameter x`` makes a learned vector of what a matrix multiplies."""
    text = "h = tanh(W x + b + s)\ninput s\nparameter x\nx: 3, h: 4\n"
    model = rnngraph.parse(text)
    assert (model.symbols["s"].role, model.symbols["x"].role) == ("input", "parameter")
    assert rnngraph.parse(model.to_text()) == model and "input s\nparameter x\n" in model.to_text()
    net = model.compile()
    assert set(net.inputs) == {"s"} and set(net.param_shapes) == {"W", "x", "b"}
    p = net.init_params()
    s = RNG.normal(size=(2, 4))
    np.testing.assert_allclose(net.forward(p, {"s": s})["h"],
                               np.tanh(p["x"] @ p["W"].T + p["b"] + s), rtol=1e-12)
    assert rnngraph.parse("input(t) = tanh(W input(t-1))\ninput: 2").role("state") == ["input"]


@pytest.mark.parametrize("text, line, column, message", [
    ("h = tanh(W x)\ninput h", 2, 7,
     "'h' is defined (line 1): only a name no equation defines is an input or a parameter"),
    ("h = tanh(W x)\ninput q", 2, 7, "'q' is declared an input, but no equation reads it"),
    ("h(t) = tanh(W x(t))\nparameter x", 1, 15,
     "'x' is declared a parameter, but read as x(t): a parameter has no time index"),
    ("h = tanh(W x)\ninput x\nparameter x", 3, 11, "'x' is declared both an input and a parameter"),
    ("h = tanh(W x)\ninput tanh", 2, 7, "'tanh' is a function, not a variable"),
])
def test_a_role_declaration_that_cannot_hold_is_a_located_error(text, line, column, message):
    with pytest.raises(RnnGraphError) as err:
        rnngraph.parse(text)
    assert (err.value.line, err.value.column, err.value.message) == (line, column, message)


# ---- issue 16: a new op is one row (and its function one row): softplus and sqrt --------
@pytest.mark.parametrize("optimize", PATHS, ids=lambda o: {False: "plain", True: "optimized", "large": "large steps"}[o])
def test_softplus_and_sqrt_compute_what_numpy_computes(optimize):
    run("x: 3, h: 4\nh(t) = sqrt(1 + softplus(W x(t) + U h(t-1)))",
        lambda p, i: {"h": loop(lambda t, h: np.sqrt(1 + np.logaddexp(0, i["x"][t] @ p["W"].T
                                                                        + h @ p["U"].T)),
                                np.zeros((B, 4)))}, optimize)


def test_softplus_and_sqrt_print_as_latex_and_text():
    model = rnngraph.parse("h(t) = sqrt(1 + softplus(W x(t)))")
    assert "\\sqrt{1 + \\operatorname{softplus}\\left(W x^{(t)}\\right)}" in model.to_latex()
    assert rnngraph.parse(model.to_text()) == model
    assert rnngraph.parse("h(t) = softplus(1000 * x(t))\nx: 1").compile().forward(
        {}, {"x": np.array([[1.0]])})["h"][0, 0] == 1000.0          # no overflow
