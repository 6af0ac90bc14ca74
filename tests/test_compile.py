"""Model.compile: the API, the semantics of time, numerics, bad input, the source.

Expected values come from small hand-written NumPy loops that follow the
equations as the textbook writes them, never from the compiler's own output.
"""
import ast
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.runtime import ops
from rnngraph.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name, **kw):
    return rnngraph.load(EXAMPLES / f"{name}.rnn").compile(**kw)


def tanh_rnn_step(W, U, b, h, x):
    return np.tanh(h @ W.T + x @ U.T + b)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# -- the API -------------------------------------------------------------------

def test_param_shapes_are_result_by_operand_as_in_pytorch():
    net = load("exercise")
    assert net.param_shapes["T"] == (8, 3)         # T y(t-1) in h2's equation: |h2| x |y|
    assert net.param_shapes["U"] == (8, 4)
    assert net.param_shapes["b"] == (8,)
    assert list(net.param_shapes) == ["U", "V", "W", "b", "R", "S", "T", "c", "P", "Q", "d"]


def test_init_params_is_seeded_and_uniform_within_one_over_sqrt_rows():
    net = load("exercise", dtype="float32")
    a, b, c = net.init_params(seed=0), net.init_params(seed=0), net.init_params(seed=1)
    for name, shape in net.param_shapes.items():
        assert a[name].shape == shape and a[name].dtype == np.float32
        assert np.abs(a[name]).max() <= 1 / np.sqrt(shape[0])
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])
    big = rnngraph.parse("h(t) = W x(t)\nx: 400, h: 400").compile().init_params()["W"]
    assert abs(big.std() - 1 / np.sqrt(400) / np.sqrt(3)) < 1e-3


def test_unknown_sizes_are_each_named():
    model = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))")
    with pytest.raises(RnnGraphError, match="size of 'h' is unknown") as err:
        model.compile()
    assert "size of 'x' is unknown" in str(err.value)
    assert model.compile(sizes={"x": 3, "h": 2}).param_shapes == {"W": (2, 2), "U": (2, 3)}


def test_every_sequence_comes_out_batched_as_given(rng):
    net = load("elman")
    x, k = rng.normal(size=(6, 2, 4)), rng.integers(0, 5, (6, 2))
    outs, pullback = net.vjp(net.init_params(), {"x": x, "target": k})
    assert {n: v.shape for n, v in outs.items()} == {
        "a": (6, 2, 8), "h": (6, 2, 8), "o": (6, 2, 5), "y": (6, 2, 5), "L": (6, 2, 1)}
    grads = pullback({"L": np.ones((6, 2, 1))})
    assert grads["x"].shape == (6, 2, 4) and grads["h(0)"].shape == (2, 8)
    assert set(grads) == set(net.param_shapes) | {"x", "h(0)"}


def test_without_a_batch_axis_everything_is_the_batch_of_one(rng):
    net = load("exercise")
    p = net.init_params()
    x, h0 = rng.normal(size=(5, 4)), rng.normal(size=8)
    cot = {"y": rng.normal(size=(5, 3))}
    outs, pullback = net.vjp(p, {"x": x}, {"h1(0)": h0})
    grads = pullback(cot)
    outs1, pullback1 = net.vjp(p, {"x": x[:, None]}, {"h1(0)": h0[None]})
    grads1 = pullback1({"y": cot["y"][:, None]})
    for n in outs:
        np.testing.assert_array_equal(outs[n], outs1[n][:, 0])
    assert grads["x"].shape == (5, 4) and grads["h1(0)"].shape == (8,) and grads["h2(0)"].shape == (8,)
    np.testing.assert_allclose(grads["x"], grads1["x"][:, 0], rtol=1e-14)
    np.testing.assert_allclose(grads["h1(0)"], grads1["h1(0)"][0], rtol=1e-14)


def test_a_shared_initial_value_gets_the_gradient_summed_over_the_batch(rng):
    net = load("torch_rnn")
    p, x = net.init_params(), rng.normal(size=(4, 3, 4))
    h0 = rng.normal(size=8)
    _, pull_shared = net.vjp(p, {"x": x}, {"h(0)": h0})
    _, pull_each = net.vjp(p, {"x": x}, {"h(0)": np.tile(h0, (3, 1))})
    cot = {"h": rng.normal(size=(4, 3, 8))}
    np.testing.assert_allclose(pull_shared(cot)["h(0)"], pull_each(cot)["h(0)"].sum(0), rtol=1e-13)


def test_time_free_models_take_inputs_without_a_time_axis(rng):
    net = load("autoencoder")
    p = net.init_params()
    x = rng.normal(size=(5, 6))
    outs = net.forward(p, {"x": x})
    h = np.maximum(x @ p["W1"].T + p["b1"], 0)
    np.testing.assert_allclose(outs["h"], h, rtol=1e-14)
    np.testing.assert_allclose(outs["x_hat"], h @ p["W1"] + p["b2"], rtol=1e-14)
    single = net.forward(p, {"x": x[0]})
    assert single["x_hat"].shape == (6,)
    np.testing.assert_allclose(single["x_hat"], outs["x_hat"][0], rtol=1e-14)


def test_outputs_are_read_only_so_the_backward_pass_stays_right(rng):
    net = load("torch_rnn")
    outs = net.forward(net.init_params(), {"x": rng.normal(size=(3, 4))})
    with pytest.raises(ValueError, match="read-only"):
        outs["h"][0] = 0


# -- the semantics of time -----------------------------------------------------

def test_elman_as_the_book_writes_it(rng):
    net = load("elman")
    p = net.init_params(seed=2)
    T, B = 6, 2
    x, k = rng.normal(size=(T, B, 4)), rng.integers(0, 5, (T, B))
    outs = net.forward(p, {"x": x, "target": k})
    h = np.zeros((B, 8))                                     # h(0) = 0 unless given
    for t in range(T):
        h = np.tanh(p["b"] + h @ p["W"].T + x[t] @ p["U"].T)
        o = p["c"] + h @ p["V"].T
        y = softmax(o)
        np.testing.assert_allclose(outs["h"][t], h, rtol=1e-13)
        np.testing.assert_allclose(outs["y"][t], y, rtol=1e-13)
        np.testing.assert_allclose(outs["L"][t, :, 0], -np.log(y[np.arange(B), k[t]]), rtol=1e-13)


def test_output_feedback_reads_the_previous_output(rng):
    net = load("exercise")
    p = net.init_params(seed=3)
    T = 5
    x = rng.normal(size=(T, 4))
    init = {"h1(0)": rng.normal(size=8), "h2(0)": rng.normal(size=8), "y(0)": softmax(rng.normal(size=3))}
    outs = net.forward(p, {"x": x}, init)
    h1, h2, y = init["h1(0)"], init["h2(0)"], init["y(0)"]
    for t in range(T):
        h1 = np.tanh(p["U"] @ x[t] + p["V"] @ h1 + p["W"] @ h2 + p["b"])
        h2 = np.tanh(p["R"] @ h1 + p["S"] @ h2 + p["T"] @ y + p["c"])
        y = softmax(p["P"] @ x[t] + p["Q"] @ h2 + p["d"])
        np.testing.assert_allclose(outs["y"][t], y, rtol=1e-13)


def test_bidirectional_runs_g_backward_from_zero_after_the_last_step(rng):
    net = load("bidirectional")
    p = net.init_params(seed=4)
    T = 5
    x = rng.normal(size=(T, 4))
    outs = net.forward(p, {"x": x})
    h, g = np.zeros((T + 1, 8)), np.zeros((T + 2, 8))
    for t in range(1, T + 1):
        h[t] = np.tanh(p["W_h"] @ h[t - 1] + p["U_h"] @ x[t - 1] + p["b_h"])
    for t in range(T, 0, -1):
        g[t] = np.tanh(p["W_g"] @ g[t + 1] + p["U_g"] @ x[t - 1] + p["b_g"])
    o = h[1:] @ p["V_h"].T + g[1:T + 1] @ p["V_g"].T + p["c"]
    np.testing.assert_allclose(outs["g"], g[1:T + 1], rtol=1e-13)
    np.testing.assert_allclose(outs["o"], o, rtol=1e-13)


def test_time_delay_net_reads_zero_before_the_first_step(rng):
    net = load("tdnn")
    p = net.init_params(seed=5)
    x = rng.normal(size=(4, 4))
    padded = np.concatenate([np.zeros((2, 4)), x])
    y = np.tanh(padded[2:] @ p["K0"].T + padded[1:-1] @ p["K1"].T + padded[:-2] @ p["K2"].T + p["b"])
    np.testing.assert_allclose(net.forward(p, {"x": x})["y"], y, rtol=1e-13)


@pytest.mark.parametrize("optimize", [True, False])
def test_each_initial_slot_of_a_long_delay_is_the_value_the_unrolled_drawing_shows(rng, optimize):
    """The drawing shows h(0), h(-1), h(-2) as separate nodes feeding the first steps;
    the compiled code takes each as its own initial value, computes what the unrolled
    graph's edges say, and gives each its own gradient."""
    model = rnngraph.parse("h(t) = tanh(W1 h(t-1) + W2 h(t-2) + W3 h(t-3) + U x(t) + b)\n"
                           "x: 2, h: 3")
    net = model.compile(optimize=optimize)
    T = 4
    graph = model.unroll(T)
    shown = sorted(f"h({t})" for (n, t), d in graph.nodes(data=True) if d["role"] == "initial")
    assert sorted(net.initial_values) == shown == ["h(-1)", "h(-2)", "h(0)"]
    p = net.init_params(seed=6)
    x = rng.normal(size=(T, 2))
    initial = {k: rng.normal(size=3) for k in shown}
    value = {("h", int(k[2:-1])): v for k, v in initial.items()}
    value.update({("x", t): x[t - 1] for t in range(1, T + 1)})
    for t in range(1, T + 1):                  # the sums the unrolled graph's edges draw
        z = sum(p[d["weight"]] @ value[u] for u, _, d in graph.in_edges(("h", t), data=True))
        value["h", t] = np.tanh(z + p["b"])
    outs, pullback = net.vjp(p, {"x": x}, initial)
    np.testing.assert_allclose(outs["h"], np.array([value["h", t] for t in range(1, T + 1)]),
                               rtol=1e-13)
    grads = pullback({"h": np.ones((T, 3))})
    eps = 1e-6
    for k in shown:                            # each slot's gradient, by central differences
        for i in range(3):
            bump = np.zeros(3)
            bump[i] = eps
            up = net.forward(p, {"x": x}, {**initial, k: initial[k] + bump})["h"].sum()
            down = net.forward(p, {"x": x}, {**initial, k: initial[k] - bump})["h"].sum()
            assert abs((up - down) / (2 * eps) - grads[k][i]) < 1e-7


def test_a_learned_initial_value_gets_the_gradient_instead_of_h0(rng):
    net = rnngraph.parse("h(0) = h0\nh(t) = tanh(W h(t-1) + U x(t))\nx: 2, h: 3").compile()
    assert net.initial_values == []
    p = net.init_params()
    x = rng.normal(size=(4, 2))
    outs, pullback = net.vjp(p, {"x": x})
    ref = rnngraph.parse("h(t) = tanh(W h(t-1) + U x(t))\nx: 2, h: 3").compile()
    ref_outs, ref_pullback = ref.vjp({"W": p["W"], "U": p["U"]}, {"x": x}, {"h(0)": p["h0"]})
    np.testing.assert_allclose(outs["h"], ref_outs["h"], rtol=1e-14)
    cot = {"h": rng.normal(size=(4, 3))}
    grads = pullback(cot)
    assert "h(0)" not in grads
    np.testing.assert_allclose(grads["h0"], ref_pullback(cot)["h(0)"], rtol=1e-13)


def test_a_model_without_input_sequences_runs_for_the_steps_given():
    net = rnngraph.parse("h(t) = tanh(W h(t-1) + b)\nh: 3").compile()
    p = {"W": np.eye(3), "b": np.ones(3)}
    outs = net.forward(p, {}, steps=3)
    np.testing.assert_allclose(outs["h"][2], np.tanh(np.tanh(np.tanh(1) + 1) + 1) * np.ones(3))
    with pytest.raises(RnnGraphError, match=r"^error: this model reads no input sequence: give the "
                                            r"number of steps, forward\(params, inputs, steps=T\)$"):
        net.forward(p, {})


def test_class_indices_and_one_hot_targets_give_the_same_loss(rng):
    net = load("elman")
    p, x = net.init_params(), rng.normal(size=(4, 2, 4))
    k = rng.integers(0, 5, (4, 2))
    by_index = net.forward(p, {"x": x, "target": k})["L"]
    np.testing.assert_allclose(by_index, net.forward(p, {"x": x, "target": np.eye(5)[k]})["L"])
    np.testing.assert_allclose(net.forward(p, {"x": x[:, 0], "target": k[:, 0]})["L"], by_index[:, 0])


def test_a_hundred_thousand_steps_run_without_recursion(rng):
    net = load("elman")
    p = net.init_params()
    T = 100_000
    x, k = rng.normal(size=(T, 4)), rng.integers(0, 5, T)
    outs, pullback = net.vjp(p, {"x": x, "target": k})
    grads = pullback({"L": np.ones((T, 1))})
    short = net.forward(p, {"x": x[:10], "target": k[:10]})
    np.testing.assert_allclose(outs["L"][:10], short["L"], rtol=1e-14)
    assert grads["x"].shape == (T, 4)
    assert all(np.isfinite(g).all() for g in grads.values())


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.rnn")))
def test_the_plain_path_agrees_with_the_optimized_one(name, rng):
    fast, plain = load(name), load(name, optimize=False)
    model = rnngraph.load(EXAMPLES / f"{name}.rnn")
    p = fast.init_params()
    inputs = {n: np.abs(rng.normal(size=((4, 2) if model.symbols[n].timed else (2,)) + (model.sizes[n],)))
              for n in fast.inputs}
    outs, pull = fast.vjp(p, inputs)
    outs2, pull2 = plain.vjp(p, inputs)
    cot = {n: rng.normal(size=v.shape) for n, v in outs.items()}
    for n in outs:
        np.testing.assert_allclose(outs[n], outs2[n], rtol=1e-13, atol=1e-15)
    g, g2 = pull(cot), pull2(cot)
    for n in g:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-12, atol=1e-14)


# -- numerics ------------------------------------------------------------------

def test_sigmoid_softmax_and_cross_entropy_stay_right_at_a_thousand():
    net = rnngraph.parse("p(t) = sigmoid(W x(t))\ny(t) = softmax(W x(t))\n"
                         "L(t) = cross_entropy(y(t), k(t))\nx: 1, p: 2").compile()
    W = np.array([[1000.0], [-1000.0]])
    x = np.ones((1, 1))
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        outs, pullback = net.vjp({"W": W}, {"x": x, "k": np.array([1])})
        grads = pullback({"L": np.ones((1, 1))})
    np.testing.assert_array_equal(outs["p"], [[1.0, 0.0]])
    np.testing.assert_array_equal(outs["y"], [[1.0, 0.0]])
    assert outs["L"][0, 0] == 2000.0                   # -log softmax: 2000, not inf
    np.testing.assert_array_equal(grads["W"], [[1.0], [-1.0]])   # (y - onehot) x^T


def test_float32_runs_in_float32_and_agrees_with_float64(rng):
    net32, net64 = load("torch_lstm", dtype="float32"), load("torch_lstm")
    p = net64.init_params()
    x = rng.normal(size=(5, 2, 4))
    outs32, pull32 = net32.vjp(p, {"x": x})
    outs64, pull64 = net64.vjp(p, {"x": x})
    cot = {"h": rng.normal(size=(5, 2, 8))}
    g32, g64 = pull32(cot), pull64(cot)
    assert all(v.dtype == np.float32 for v in [*outs32.values(), *g32.values()])
    np.testing.assert_allclose(outs32["h"], outs64["h"], rtol=1e-5, atol=1e-6)
    for n in g64:
        np.testing.assert_allclose(g32[n], g64[n], rtol=1e-4, atol=1e-5)


# -- bad input -----------------------------------------------------------------

def _elman_call(params=None, x=None, target=None, initial=None):
    net = load("elman")
    p = net.init_params() if params is None else params
    inputs = {"x": np.zeros((5, 2, 4)) if x is None else x,
              "target": np.zeros((5, 2), int) if target is None else target}
    return net.forward(p, inputs, initial)


NAN_X = np.zeros((5, 2, 4))
NAN_X[2, 1, 0] = np.nan
PARAMS = load("elman").init_params()
INF_W = PARAMS["W"].copy()
INF_W[3, 5] = -np.inf

BAD = {
    "input shape": (dict(x=np.zeros((5, 3, 7))), "input 'x' has shape (5, 3, 7); expected (T, B, 4) or (T, 4)"),
    "a second input's shape": (dict(target=np.zeros((6, 2, 5))),
                               "input 'target' has shape (6, 2, 5); expected (5, 2, 5) "
                               "(T = 5, B = 2, from input 'x')"),
    "class out of range": (dict(target=np.full((5, 2), 5)),
                           "input 'target' holds class 5; the classes are 0 to 4"),
    "NaN in an input": (dict(x=NAN_X), "input 'x' contains NaN or Inf (first at index (2, 1, 0)); "
                                       "compile with check_finite=False to let it through"),
    "not numbers": (dict(x=[["a"]]), "input 'x' is not an array of numbers (its dtype is <U1)"),
    "-inf in a parameter": (dict(params={**PARAMS, "W": INF_W}),
                            "parameter 'W' contains NaN or Inf (first at index (3, 5)); "
                            "compile with check_finite=False to let it through"),
    "a parameter as a list": (dict(params={**PARAMS, "b": [[1.0] * 8]}),
                              "parameter 'b' has shape (1, 8); expected (8,)"),
    "missing parameter": (dict(params={k: v for k, v in PARAMS.items() if k != "W"}),
                          "missing parameter 'W': expected an array of shape (8, 8)"),
    "parameter shape": (dict(params={**PARAMS, "U": np.zeros((4, 8))}),
                        "parameter 'U' has shape (4, 8); expected (8, 4)"),
    "unknown parameter": (dict(params={**PARAMS, "Wx": 1}),
                          "unknown parameter 'Wx'; did you mean 'W'? (the parameters are: b, W, U, c, V)"),
    "initial shape": (dict(initial={"h(0)": np.zeros((3, 8))}),
                      "initial value 'h(0)' has shape (3, 8); expected (8,) or (2, 8)"),
}


@pytest.mark.parametrize("kwargs, message", BAD.values(), ids=BAD.keys())
def test_bad_input_is_named_with_the_shape_expected(kwargs, message):
    with pytest.raises(RnnGraphError) as err:
        _elman_call(**kwargs)
    assert str(err.value) == "error: " + message


def test_missing_and_unknown_inputs_and_initial_values_are_named():
    with pytest.raises(RnnGraphError, match=r"^error: missing input 'x': expected an array "
                                            r"\(T, B, 4\) or \(T, 4\)$"):
        load("elman").forward(PARAMS, {"target": np.zeros((5, 2), int)})
    net = load("bidirectional")
    p, x = net.init_params(), np.zeros((3, 4))
    with pytest.raises(RnnGraphError, match=r"^error: unknown input 'xx'; did you mean 'x'\? "
                                            r"\(the inputs are: x\)$"):
        net.forward(p, {"x": x, "xx": x})
    with pytest.raises(RnnGraphError, match="^error: 'g' runs backward in time: it starts from zero "
                                            "after the last step and takes no initial value$"):
        net.forward(p, {"x": x}, {"g(0)": np.zeros(8)})
    with pytest.raises(RnnGraphError, match=r"^error: unknown initial value 'q\(0\)'; did you mean "
                                            r"'h\(0\)'\? \(the initial values are: h\(0\)\)$"):
        net.forward(p, {"x": x}, {"q(0)": np.zeros(8)})
    defined = rnngraph.parse("h(0) = h0\nh(t) = tanh(W h(t-1) + U x(t))\nx: 2, h: 3").compile()
    with pytest.raises(RnnGraphError, match=r"^error: h\(0\) is defined in the model; "
                                            r"it cannot also be given in initial$"):
        defined.forward(defined.init_params(), {"x": np.zeros((3, 2))}, {"h(0)": np.zeros(3)})


def test_inputs_of_a_layout_seen_before_are_checked_all_the_same():
    """A call whose inputs have the names, shapes and dtypes of an earlier call's skips the
    layout checks (Compiled._inputs): the values are checked still, a new shape gets every
    check, and class indices, whose values decide, are never taken as seen."""
    net = load("elman")
    x, target = np.zeros((5, 2, 4)), np.zeros((5, 2, 5))
    first = net.forward(PARAMS, {"x": x, "target": target})["h"].copy()
    assert (net.forward(PARAMS, {"x": x, "target": target})["h"] == first).all()
    with pytest.raises(RnnGraphError, match=r"^error: input 'x' contains NaN or Inf \(first at "
                                            r"index \(2, 1, 0\)\)"):
        net.forward(PARAMS, {"x": NAN_X, "target": target})
    with pytest.raises(RnnGraphError, match=r"^error: input 'target' has shape \(6, 2, 5\); "
                                            r"expected \(5, 2, 5\) \(T = 5, B = 2, from input 'x'\)$"):
        net.forward(PARAMS, {"x": x, "target": np.zeros((6, 2, 5))})
    assert net.forward(PARAMS, {"x": x[:, 0], "target": target[:, 0]})["h"].shape == (5, 8)
    classes = np.zeros((5, 2), int)
    net.forward(PARAMS, {"x": x, "target": classes})
    with pytest.raises(RnnGraphError, match=r"^error: input 'target' holds class 5; "):
        net.forward(PARAMS, {"x": x, "target": np.full((5, 2), 5)})


def test_initial_values_left_out_start_at_zero_on_every_call(rng):
    """The zeros standing in for initial values not given are made once per batch size
    (Compiled._initial); a call that gives one does not change them for the next."""
    net = load("torch_lstm")
    p, x = net.init_params(), rng.normal(size=(4, 3, 4))
    zero = {"h(0)": np.zeros((3, 8)), "c(0)": np.zeros((3, 8))}
    expected = net.forward(p, {"x": x}, zero)["h"].copy()
    assert (net.forward(p, {"x": x})["h"] == expected).all()
    outs, pullback = net.vjp(p, {"x": x}, {"h(0)": np.ones(8)})
    assert not np.allclose(outs["h"], expected)
    grads = pullback({"h": np.ones((4, 3, 8))})
    assert grads["h(0)"].shape == (8,) and grads["c(0)"].shape == (3, 8)
    assert (net.forward(p, {"x": x})["h"] == expected).all()
    assert net.vjp(p, {"x": x[:, 0]})[1]({"h": np.ones((4, 8))})["c(0)"].shape == (8,)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_finite_values_pass_the_nan_check(dtype):
    """Values near the dtype's largest are finite all the same: not refused, and no overflow
    warning from the check (nor an inf after them missed)."""
    net = load("torch_rnn", dtype=dtype)
    x = np.full((3, 4), 1e30 if dtype == "float32" else 1e300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # and the check warns of no overflow
        assert np.isfinite(net.forward(net.init_params(), {"x": x})["h"]).all()
    x[2, 3] = np.inf
    with pytest.raises(RnnGraphError, match=r"input 'x' contains NaN or Inf \(first at index "
                                            r"\(2, 3\)\)"):
        net.forward(net.init_params(), {"x": x})


def test_nan_checks_can_be_switched_off():
    net = load("torch_rnn", check_finite=False)
    x = np.zeros((3, 4))
    x[1, 2] = np.nan
    assert np.isnan(net.forward(net.init_params(), {"x": x})["h"][1:]).all()


def test_cotangents_must_name_an_output_and_match_its_shape():
    net = load("torch_rnn")
    _, pullback = net.vjp(net.init_params(), {"x": np.zeros((5, 2, 4))})
    with pytest.raises(RnnGraphError, match=r"^error: the cotangent for 'h' has shape \(5, 8\); "
                                            r"expected \(5, 2, 8\), the shape of outputs\['h'\]$"):
        pullback({"h": np.zeros((5, 8))})
    with pytest.raises(RnnGraphError, match=r"^error: unknown output 'q' \(the outputs are: h\)$"):
        pullback({"q": np.zeros((5, 8))})


def test_only_float32_and_float64():
    with pytest.raises(RnnGraphError, match="^error: dtype must be float32 or float64, not 'float16'$"):
        load("elman", dtype="float16")


def test_an_op_without_a_vjp_is_named(monkeypatch):
    from rnngraph.compile import optable
    monkeypatch.setitem(optable.OPS, "tanh", replace(optable.OPS["tanh"], vjp=None))
    with pytest.raises(RnnGraphError, match="no vector-Jacobian product for 'tanh'"):
        load("torch_rnn")


# -- the generated source --------------------------------------------------------

def test_the_source_is_numpy_code_that_runs_on_its_own(rng):
    net = load("lstm_unicode")
    namespace = {}
    exec(net.source, namespace)           # imports numpy, rnngraph.runtime.ops and rnngraph.runtime.workspace only
    imported = {node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                for node in ast.parse(net.source).body
                if isinstance(node, (ast.Import, ast.ImportFrom))}
    assert imported == {"numpy", "rnngraph.runtime.ops", "rnngraph.runtime.workspace"}
    p = net.init_params()
    x = rng.normal(size=(4, 2, 4))
    zeros = {"h(0)": np.zeros((2, 8)), "c(0)": np.zeros((2, 8))}
    outs, _ = namespace["forward"](p, {"x": x}, zeros, 4, 2)
    np.testing.assert_array_equal(outs["h"], net.forward(p, {"x": x})["h"])


def test_the_source_says_which_equation_each_part_implements():
    model = rnngraph.load(EXAMPLES / "lstm_unicode.rnn")
    source = model.compile().source
    for line in model.to_text().splitlines()[1:]:
        assert f"# {line}" in source
    assert source.count(") in steps:") == 3     # forward, back through time (two ways)
    plain = model.compile(optimize=False).source
    assert "for t in range(1, T + 1):" in plain and "for t in range(T, 0, -1):" in plain


def test_greek_and_keyword_names_become_python_names():
    source = rnngraph.parse("λ(t) = tanh(lambda λ(t-1) + in x(t))\nx: 2, λ: 3").compile().source
    compile(source, "<test>", "exec")                 # a keyword left as a name: SyntaxError
    assert "# λ(t) = tanh(lambda λ(t-1) + in x(t))" in source
    assert '"λ": lambda_[1:T + 1]' in source and "np.tanh(" in source and "in_.T" in source
    assert "alpha" in rnngraph.parse("h(t) = α x(t)\nx: 2, h: 2").compile().source


def test_cli_prints_the_source(capsys):
    assert main(["compile", str(EXAMPLES / "torch_rnn.rnn"), "--sizes", "x=10,h=32"]) == 0
    expected = rnngraph.load(EXAMPLES / "torch_rnn.rnn").compile(sizes={"x": 10, "h": 32}).source
    assert capsys.readouterr().out == expected


def test_cli_names_unknown_sizes_with_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "bare.rnn"
    path.write_text("h(t) = tanh(W h(t-1) + U x(t))\n")
    assert main(["compile", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1:1: error: size of 'h' is unknown" in err
    assert f"{path}:1:26: error: size of 'x' is unknown" in err
    assert "Traceback" not in err


def test_the_readme_runs_the_exercise_forward_and_backward(monkeypatch, capsys):
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Compiling"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.chdir(EXAMPLES.parent)
    namespace = {}
    exec(code, namespace)
    grads, net = namespace["grads"], namespace["net"]
    assert set(grads) == set(net.param_shapes) | {"x", "h1(0)", "h2(0)", "y(0)"}
    assert "def backward(params, tape, cotangents" in capsys.readouterr().out
