"""The compiled backward passes are the derivatives of the forward passes.

The autograd way: for every model in examples/ (and a table of harder ones),
central finite differences in float64 along random directions in the space of
all parameters, inputs and initial values, against the pullback's gradients
contracted with the same direction; relative error at most 1e-6.  Seeded.
Then the Deep Learning book's BPTT formulas for the Elman RNN, written out by
hand, against the compiled gradients.
"""
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph.lang import ast

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.rnn"))
TOLERANCE = 1e-6


def random_problem(net, model, rng, T=5, B=3, batched=True):
    """Parameters in the nonlinear range, inputs, initial values and cotangents: all random."""
    params = {k: 2 * v for k, v in net.init_params(seed=int(rng.integers(1 << 30))).items()}

    def lead(timed):
        return ((T, B) if batched else (T,)) if timed else ((B,) if batched else ())

    inputs = {}
    for n in net.inputs:
        sym = model.symbols[n]
        a = rng.normal(size=lead(sym.timed) + (model.sizes[n],))
        inputs[n] = np.abs(a) if sym.target else a          # a target: soft class weights
    initial = {k: rng.normal(size=lead(False) + (model.sizes[k.split("(")[0]],)) for k in net.initial_values}
    outs = net.forward(params, inputs, initial)
    cotangents = {k: rng.normal(size=v.shape) for k, v in outs.items()}
    return params, inputs, initial, cotangents


def worst_directional_error(net, model, seed, directions=3, **shape):
    rng = np.random.default_rng(seed)
    params, inputs, initial, cot = random_problem(net, model, rng, **shape)
    point = {("params", k): v for k, v in params.items()}
    point |= {("inputs", k): v for k, v in inputs.items()}
    point |= {("initial", k): v for k, v in initial.items()}

    def f(step, direction):
        moved = {"params": {}, "inputs": {}, "initial": {}}
        for (kind, k), v in point.items():
            moved[kind][k] = v + step * direction[kind, k]
        outs = net.forward(moved["params"], moved["inputs"], moved["initial"])
        return sum(float((cot[k] * outs[k]).sum()) for k in cot)

    _, pullback = net.vjp(params, inputs, initial)
    grads = pullback(cot)
    assert set(grads) == {k for _, k in point}
    worst = 0.0
    for _ in range(directions):
        direction = {key: rng.normal(size=np.shape(v)) for key, v in point.items()}
        eps = 1e-6
        numeric = (f(eps, direction) - f(-eps, direction)) / (2 * eps)
        analytic = sum(float((grads[k] * direction[kind, k]).sum()) for kind, k in point)
        worst = max(worst, abs(numeric - analytic) / max(abs(numeric), abs(analytic)))
    return worst


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("batched", [True, False], ids=["batch", "no-batch"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_matches_finite_differences(path, batched, optimize):
    model = rnngraph.load(path)
    net = model.compile(optimize=optimize)
    assert worst_directional_error(net, model, seed=7, batched=batched) <= TOLERANCE


def test_the_examples_cover_every_feature_the_gradients_must_handle():
    programs = {p.stem: rnngraph.load(p) for p in EXAMPLES}
    ops = {name: {g.nodes[n]["op"] for g in [m.op_graph()] for n in g if g.nodes[n]["kind"] == "op"}
           for name, m in programs.items()}
    directions = {name: {s.direction for s in m.symbols.values()} for name, m in programs.items()}
    reads = {name: {r.offset for e in m.equations for r in ast.walk(e.rhs) if isinstance(r, ast.Ref)}
             for name, m in programs.items()}
    assert any(m.symbols[n].role == "state" and m.symbols[n].output
               for m in programs.values() for n in m.symbols)          # output feedback
    assert any("backward" in d for d in directions.values())            # bidirectional
    assert any("concat" in o for o in ops.values())
    assert any("transpose" in o for o in ops.values())
    assert any(-2 in r for r in reads.values())                        # time delays
    assert any("cross_entropy" in o for o in ops.values())              # the loss


HARDER = {
    "greek names": "h(t) = tanh(α h(t-1) + λ x(t) + β)\nx: 3, h: 4",
    "keyword names": "el(t) = tanh(lambda el(t-1) + in x(t) + ef)\nx: 3, el: 4",
    "learned initial value": "h(0) = tanh(h0)\nh(t) = tanh(W h(t-1) + U x(t))\nx: 3, h: 4",
    "time-free input and value": "v = tanh(A z + a)\nh(0) = v\n"
                                 "h(t) = tanh(W h(t-1) + U x(t) + V v)\nx: 3, h: 4, z: 2",
    "input from the future": "y(t) = tanh(A x(t+1) + B x(t) + C x(t-1))\nx: 3, y: 4",
    "backward state, delay 2": "g(t) = tanh(W g(t+2) + U x(t))\no(t) = V g(t-1) + V2 g(t+1)\n"
                               "x: 3, g: 4, o: 2",
    "forward state, delay 2": "h(t) = tanh(W h(t-2) + U x(t) + b)\nx: 3, h: 4",
    "matrix expressions": "h(t) = tanh((W + M) h(t-1) + 0.5 U x(t) - (W2 * M2) x(t) / 2)\nx: 3, h: 3",
    "exp log relu div": "a(t) = exp(0.1 * W x(t)) / (1 + relu(V x(t)))\n"
                        "b(t) = log(1 + a(t) * a(t)) - a(t-1)\nx: 3, a: 4",
    "cross-entropy of a sigmoid": "p(t) = sigmoid(W x(t))\nL(t) = cross_entropy(p(t), k(t))\nx: 3, p: 4",
    "loss before the state it reads": "L(t) = cross_entropy(softmax(W h(t)), k(t))\n"
                                      "h(t) = tanh(U x(t) + R h(t-1))\nx: 3, h: 4, k: 5",
    "loss on fed-back output": "h(t) = tanh(W h(t-1) + U x(t) + T y(t-1))\ny(t) = softmax(V h(t))\n"
                               "L(t) = cross_entropy(y(t), k(t))\nx: 3, h: 4, y: 5",
    "concatenation with a time-free input": "h(t) = tanh(W [h(t-1); x(t); z] + b)\nx: 3, h: 4, z: 2",
    "transposes": "h(t) = tanh(W^T h(t-1) + (U^T)^T x(t))\no(t) = W^T h(t)\nx: 3, h: 4",
    "negation and copy": "h(t) = -tanh(-W h(t-1) + x(t))\ny(t) = h(t-1)\nx: 3",
}


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("text", HARDER.values(), ids=HARDER.keys())
def test_harder_models_match_finite_differences(text, optimize):
    model = rnngraph.parse(text)
    net = model.compile(optimize=optimize)
    assert worst_directional_error(net, model, seed=3) <= TOLERANCE


def test_class_index_targets_give_the_gradient_of_one_hot_targets():
    model = rnngraph.load(EXAMPLES[0].parent / "elman.rnn")
    net = model.compile()
    rng = np.random.default_rng(0)
    params = net.init_params(seed=0)
    x = rng.normal(size=(6, 2, 4))
    k = rng.integers(0, 5, size=(6, 2))
    cot = {"L": rng.normal(size=(6, 2, 1))}
    _, by_index = net.vjp(params, {"x": x, "target": k})
    _, by_vector = net.vjp(params, {"x": x, "target": np.eye(5)[k]})
    g_index, g_vector = by_index(cot), by_vector(cot)
    assert "target" not in g_index                  # no gradient for integers
    for name in net.param_shapes:
        np.testing.assert_allclose(g_index[name], g_vector[name], rtol=1e-13)


def test_the_deep_learning_book_bptt_formulas_for_elman():
    # Goodfellow, Bengio & Courville (2016), equations 10.18-10.28, for
    # L = sum_t L(t), L(t) = -log yhat(t)[y(t)], with batches summed over.
    model = rnngraph.load(EXAMPLES[0].parent / "elman.rnn")
    net = model.compile()
    rng = np.random.default_rng(5)
    T, B = 8, 3
    p = {k: 2 * v for k, v in net.init_params(seed=5).items()}
    W, U, V = p["W"], p["U"], p["V"]
    x = rng.normal(size=(T, B, 4))
    y = rng.integers(0, 5, size=(T, B))
    outs, pullback = net.vjp(p, {"x": x, "target": y})
    grads = pullback({"L": np.ones((T, B, 1))})
    h, yhat = outs["h"], outs["y"]
    h_prev = np.concatenate([np.zeros((1, B, 8)), h[:-1]])

    grad_o = yhat - np.eye(5)[y]                                     # (10.18)
    grad_h = np.zeros((T, B, 8))
    grad_h[T - 1] = grad_o[T - 1] @ V                                # (10.19): V^T grad_o(tau)
    for t in range(T - 2, -1, -1):                                   # (10.20-10.21)
        grad_h[t] = (grad_h[t + 1] * (1 - h[t + 1] ** 2)) @ W + grad_o[t] @ V
    da = grad_h * (1 - h ** 2)                                       # diag(1 - h(t)^2) grad_h(t)

    def outer(a, b):
        return np.einsum("tbi,tbj->ij", a, b)
    expected = {
        "c": grad_o.sum((0, 1)),                                     # (10.22)
        "b": da.sum((0, 1)),                                         # (10.23)
        "V": outer(grad_o, h),                                       # (10.24)
        "W": outer(da, h_prev),                                      # (10.25-10.26)
        "U": outer(da, x),                                           # (10.27-10.28)
        "h(0)": da[0] @ W,
        "x": da @ U,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
