"""The optimized path (rnngraph/compile/: passes, layout, memory) computes what the plain one does.

Speed is measured in bench/, never here.  Here: on models built to reach the
corners of the rewrites (products shared by gates and by two loops, lanes of
which some gates never use, outputs given cotangents, states read one and two
steps away, a state another block reads), the optimized forward and backward
agree with optimize=False to rounding in float64, and pass finite differences;
and the structure the speed comes from is there, found from the IR whatever the
names: one product per operand and step, the input projections out of the loop.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from hypothesis import HealthCheck, given, settings

import rnngraph
from rnngraph.lang.printing import program_text
from test_gradients import TOLERANCE, worst_directional_error
from test_properties import models as random_programs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CORNERS = {
    # four gates in a shuffled order with arbitrary names, biases on both sides
    "shuffled LSTM": "c(t) = sigmoid(Bf x(t) + Cf y(t-1) + bf) * c(t-1) "
                     "+ sigmoid(Bi x(t) + Ci y(t-1)) * tanh(Bz x(t) + Cz y(t-1) + bz)\n"
                     "y(t) = sigmoid(Bo x(t) + Co y(t-1) + bo) * tanh(c(t))\nx: 3, y: 4, c: 4",
    # one input product reused by two loops (CSE across blocks), a lane nobody reads back
    "shared projection": "h(t) = tanh(W h(t-1) + U x(t))\ng(t) = tanh(V g(t+1) + U x(t))\n"
                         "k(t) = sigmoid(A x(t) + B h(t-1)) * h(t)\nx: 3, h: 4, g: 4, k: 4",
    # gates of different sizes sharing an operand, and a subtraction in the sum
    "uneven gates": "a(t) = tanh(P x(t) - Q a(t-1) + R b(t-1))\nb(t) = sigmoid(S x(t) + R2 b(t-1))\n"
                    "x: 3, a: 2, b: 5",
    # GRU-like: a gate's product inside a product, and the state read by a later block
    "GRU and a readout": "r(t) = sigmoid(Wr x(t) + Ur h(t-1))\nz(t) = sigmoid(Wz x(t) + Uz h(t-1))\n"
                         "n(t) = tanh(Wn x(t) + r(t) * (Un h(t-1) + bn))\n"
                         "h(t) = (1 - z(t)) * n(t) + z(t) * h(t-1)\no(t) = V h(t) + c\n"
                         "x: 3, h: 4, o: 2",
    "delays one and two": "h(t) = tanh(W h(t-1) + W2 h(t-2) + U x(t))\nx: 3, h: 4",
    # (1 - z) a + z b as a + z (b - a) (reassociate.interpolations), the operands in
    # other orders; a size-1 parameter as z; and a 1 - z read twice, which stays as it is
    "interpolation reversed": "z(t) = sigmoid(A x(t) + B h(t-1))\n"
                              "h(t) = z(t) * h(t-1) + tanh(C x(t)) * (1 - z(t))\nx: 3, h: 4",
    "leaky integrator": "h(t) = (1 - α) * h(t-1) + α * tanh(W h(t-1) + U x(t))\nα: 1, x: 3, h: 4",
    "one minus z twice": "z(t) = sigmoid(A x(t) + B h(t-1))\n"
                         "h(t) = (1 - z(t)) * tanh(C x(t)) + z(t) * h(t-1)\n"
                         "k(t) = (1 - z(t)) * h(t)\nx: 3, h: 4, k: 4",
    # y's gradient is also the every-step sigmoid's (y = s + h): not one buffer carried
    "state with an every-step part": "h(t) = W y(t-1)\ny(t) = sigmoid(U x(t)) + h(t)\n"
                                     "x: 3, h: 3, y: 3",
}


def models():
    out = {p.stem: rnngraph.load(p) for p in sorted(EXAMPLES.glob("*.rnn"))}
    out.update({k: rnngraph.parse(v) for k, v in CORNERS.items()})
    return out


def problem(net, model, rng, T=6, B=3):
    params = {k: 2 * v for k, v in net.init_params(seed=1).items()}
    inputs = {n: np.abs(rng.normal(size=((T, B) if model.symbols[n].timed else (B,))
                                   + (model.sizes[n],))) for n in net.inputs}
    initial = {k: rng.normal(size=(B, model.sizes[k.split("(")[0]])) for k in net.initial_values}
    return params, inputs, initial


def per_step(net, threshold):
    """Where the backward computes tanh's and sigmoid's derivatives: in the loop (threshold 0,
    ``backward_large``) or for every step before it (a huge threshold); B * n decides
    otherwise (Compiled.per_step)."""
    net.per_step = threshold
    return net


@pytest.mark.parametrize("threshold", [0, 10 ** 9], ids=["derivatives in the loop", "before it"])
@pytest.mark.parametrize("name", sorted(models()))
def test_optimized_and_plain_agree_to_rounding_with_every_cotangent(name, threshold):
    model = models()[name]
    fast, plain = per_step(model.compile(), threshold), model.compile(optimize=False)
    rng = np.random.default_rng(0)
    agree_to_rounding(fast, plain, problem(fast, model, rng), rng)


def agree_to_rounding(net, ref, args, rng):
    """net and ref give the same outputs, and the same gradients for random cotangents of
    every output and of the last alone, to rounding in float64; args: (params, inputs,
    initial)."""
    outs, pull = net.vjp(*args)
    outs2, pull2 = ref.vjp(*args)
    for subset in (list(outs), list(outs)[-1:]):         # all outputs, then one alone
        cot = {n: rng.normal(size=outs[n].shape) for n in subset}
        g, g2 = pull(cot), pull2(cot)
        assert set(g) == set(g2)
        for n in g:
            np.testing.assert_allclose(g[n], g2[n], rtol=1e-11, atol=1e-13, err_msg=n)
    for n in outs:
        np.testing.assert_allclose(outs[n], outs2[n], rtol=1e-12, atol=1e-14, err_msg=n)


@pytest.mark.parametrize("name", ["WORK", "Workspace", "PER_STEP", "TAPE", "ONE", "DTYPE", "np",
                                  "prepare", "prepared"])
def test_model_names_equal_to_the_generated_modules_own_are_renamed(name):
    """A variable may be called what the generated module calls its globals."""
    model = rnngraph.parse(f"h(t) = tanh(W h(t-1) + U x(t) + {name}(t-1))\n"
                           f"{name}(t) = 0.5 * h(t)\nx: 3, h: 4, {name}: 4")
    fast, plain = model.compile(), model.compile(optimize=False)
    p, x = fast.init_params(seed=1), {"x": np.ones((5, 2, 3))}
    (outs, pull), (outs2, pull2) = fast.vjp(p, x), plain.vjp(p, x)
    g, g2 = pull({name: np.ones((5, 2, 4))}), pull2({name: np.ones((5, 2, 4))})
    np.testing.assert_allclose(outs[name], outs2[name], rtol=1e-12)
    for n in g:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-10, atol=1e-12, err_msg=n)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_programs())
def test_random_models_optimized_and_plain_agree(program):
    """Every rewrite, on models nobody wrote by hand: the optimized forward and backward
    give the plain one's outputs and gradients (random cotangents for every output), and
    prepared parameters give the optimized path's bit for bit."""
    body = program_text(program)
    sizes = ", ".join(f"{n}: 3" for n in ("x", "v0", "v1", "v2", "v3") if f"{n}(" in body)
    try:
        model = rnngraph.parse(f"{body}\n{sizes}\n")
        fast, plain = model.compile(), model.compile(optimize=False)
    except rnngraph.RnnGraphError:
        return             # an initial value nothing reads, a size nothing determines
    rng = np.random.default_rng(0)
    p = fast.init_params(seed=1)
    inputs = {n: rng.uniform(0.1, 0.5, size=(5, 2, 3)) for n in fast.inputs}
    with np.errstate(all="ignore"):                  # log, exp and / of random models
        outs, pull = fast.vjp(p, inputs, steps=5)
        outs2, pull2 = plain.vjp(p, inputs, steps=5)
        cot = {n: rng.normal(size=v.shape) for n, v in outs.items()}
        g, g2 = pull(cot), pull2(cot)
        outs3, pull3 = fast.vjp(fast.prepare(p), inputs, steps=5)
        g3 = pull3(cot)
    for n in outs:
        np.testing.assert_allclose(outs[n], outs2[n], rtol=1e-10, atol=1e-12, err_msg=n)
        np.testing.assert_array_equal(outs[n], outs3[n], err_msg=n)
    for n in g:
        np.testing.assert_array_equal(g[n], g3[n], err_msg=n)
    assert set(g) == set(g2)
    for n in g:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-7, atol=1e-9, err_msg=n)


@pytest.mark.parametrize("threshold", [0, 10 ** 9], ids=["derivatives in the loop", "before it"])
@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner_models_match_finite_differences(name, threshold):
    model = rnngraph.parse(CORNERS[name])
    net = per_step(model.compile(), threshold)
    assert worst_directional_error(net, model, seed=5) <= TOLERANCE


def loop_bodies(source: str) -> list[str]:
    """The bodies of the ``for`` loops over steps, forward function first."""
    bodies = re.findall(r"\n( +)for \(?[^\n]*\n((?:\1    [^\n]*\n)+)", source)
    return ["".join(line for line in body.splitlines(True) if not line.lstrip().startswith("#"))
            for _, body in bodies]


@pytest.mark.parametrize("name", ["torch_lstm", "lstm_unicode", "lstm_dlbook", "lstm_concat",
                                  "torch_gru", "shuffled LSTM"])
def test_each_loop_step_multiplies_each_operand_once(name):
    source = models()[name].compile(sizes={"x": 5, "h": 6} if name.startswith("torch") else None
                                    ).source
    forward, backward, large = loop_bodies(source)
    assert forward.count("np.dot(") == 1 and "@" not in forward       # one stacked product
    assert backward.count("np.dot(") == 1 == large.count("np.dot(")   # and its transpose
    assert "np.concatenate((" in source                                # the stacked matrices


def test_input_projections_leave_the_loop_and_parameters_get_one_gemm_each():
    source = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile().source
    forward, backward, large = loop_bodies(source)
    assert "x_t" not in forward + backward + large                     # x is not read per step
    before_loop = source[:source.index("steps = zip(")]
    assert "np.dot(x[now].reshape(-1, 4)" in before_loop               # all steps, one GEMM
    params = set(rnngraph.load(EXAMPLES / "torch_lstm.rnn").param_shapes)
    for body in (forward, backward, large):                            # no parameter per step:
        assert not params & set(re.findall(r"\w+", body))             # their stacks only
    assert "zeros" not in forward + backward + large and "empty" not in forward + backward


def test_optimize_false_keeps_the_plain_loops():
    source = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(optimize=False).source
    assert "for t in range(1, T + 1):" in source and "np.concatenate((" not in source


def test_gru_backward_loop_writes_what_it_alone_fills():
    source = rnngraph.load(EXAMPLES / "torch_gru.rnn").compile().source
    _, backward, _ = loop_bodies(source)
    # the gradients of the gates live in one step's buffer, not zeroed arrays over the
    # steps: made empty, each step's first write assigns (np.copyto(dh, ...),
    # np.multiply(..., out=dz)), and only a given cotangent is added to them
    head = source[source.index("def backward"):source.index("back through time")]
    assert "drz = np.empty((B, 16), DTYPE)" in source and "dn = np.empty((B, 8), DTYPE)" in source
    assert "dh = np.zeros((B, 8), DTYPE)" in source          # carried: nothing after step T
    assert not re.search(r"\bd(r|z|n|rz)\b = WORK", head)
    lines = backward.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*d(r|z|n)\b \+=", line):
            assert lines[i - 1].strip().startswith("if cot_"), line
    # h = n + z (h(t-1) - n): dn = dh - z dh in one call, and dh(t-1)'s first write is the
    # product (np.dot(..., out=dh)), to which z dh is added (layout.carried_products_first)
    assert re.search(r"np\.subtract\(dh, (\w+), out=dn\)", backward)
    assert re.search(r"np\.dot\(\w+, \w+, out=dh\)\n\s+dh \+= \w+\n?$", backward)
    assert "np.concatenate" not in backward


def test_gradients_a_stacked_product_reads_together_are_written_side_by_side():
    """Cho's GRU: the loop backward in time writes the update and reset gates' gradient and
    the candidate's into lanes of one array over the steps, which the stacked input weights'
    gradient and x's read whole (layout._concat_arrays): no concatenation of 3n lanes a
    call, and the gradients the same as the plain path's."""
    net = rnngraph.load(EXAMPLES / "gru_cho.rnn").compile()
    backward = net.source[net.source.index("def backward"):]
    assert "np.concatenate" not in backward
    assert re.search(r"cat_\w+ = WORK\.empty\(\(T \+ 1, B, 24\)", backward)
    model = rnngraph.load(EXAMPLES / "gru_cho.rnn")
    plain = model.compile(optimize=False)
    rng = np.random.default_rng(3)
    agree_to_rounding(net, plain, problem(plain, model, rng, T=5, B=2), rng)


#: The peephole LSTM without one gate's input product: the input weights' gradient reads
#: the other gates' lanes alone, the first three (q's left out) or the last three (f's)
LEFT_OUT = {"no_input_to_q": ("sigmoid(b_o + U_o x(t) + ", "sigmoid(b_o + ", "0:24"),
            "no_input_to_f": ("sigmoid(b_f + U_f x(t) + ", "sigmoid(b_f + ", "8:32")}


@pytest.mark.parametrize("example", ["lstm_peephole", "lstm_dlbook", *LEFT_OUT])
def test_gradients_already_side_by_side_are_read_in_place(example):
    """The peephole LSTM and the Deep Learning book's: the loop writes the gates' gradients
    into lanes of one array, which the recurrent weights' gradient reads whole; the input
    weights' gradient and x's read the same lanes, not a concatenation of them made again
    every call (layout._lanes_in_order).  A peephole weight's gradient, the sum over steps
    and batch of dz(t) * s(t-1), is one einsum with no (T, B, n) product
    (layout.sums_of_products).  Gradients as the plain path's, at a batch of one too
    (where einsum's "..." had failed), by both backward functions.  Without U_o x(t) (or
    U_f x(t)) the input weights' gradient and x's read the other gates' lanes alone
    (LEFT_OUT)."""
    if example in LEFT_OUT:
        text = (EXAMPLES / "lstm_peephole.rnn").read_text()
        model = rnngraph.parse(text.replace(*LEFT_OUT[example][:2]))
    else:
        model = rnngraph.load(EXAMPLES / f"{example}.rnn")
    net, plain = model.compile(), model.compile(optimize=False)
    backward = net.source[net.source.index("def backward"):]
    assert "np.concatenate" not in backward
    if example in LEFT_OUT:
        lanes = re.search(rf"(\w+) = (cat_\w+)\[\.\.\., {LEFT_OUT[example][2]}\]\n", backward)
        assert lanes and f"{lanes.group(1)}[now].reshape(-1, 24)" in backward   # read there
    if example != "lstm_dlbook":
        for p in ("p_f", "p_g", "p_o"):
            assert re.search(rf'd{p} = np\.einsum\("tuj,tuj->j", ', backward), p
    rng = np.random.default_rng(4)
    for threshold in (0, 10 ** 9):             # backward_large, backward
        per_step(net, threshold)
        for B in (1, 2):
            agree_to_rounding(net, plain, problem(plain, model, rng, T=5, B=B), rng)


def test_a_product_read_by_two_gradients_is_not_moved_into_one():
    """Found by the random-model test: v2(t-1) gets the gradient of the sum through W0 and
    v1(t)'s; the earlier generator's text peephole once wrote W0's product into dv2 alone, leaving x's and v1's
    share to read an uninitialised buffer (gradients off by up to 1.9)."""
    model = rnngraph.parse("v0(t) = W0 (v1(t-1) + v2(t-1) + x(t))\nv1(t) = v2(t-1)\n"
                           "v2(t) = v0(t-1)\nx: 3, v0: 3, v1: 3, v2: 3\n")
    fast, plain = model.compile(), model.compile(optimize=False)
    rng = np.random.default_rng(0)
    p, x = fast.init_params(seed=0), rng.normal(size=(4, 2, 3))
    outs, pull = fast.vjp(p, {"x": x})
    cot = {n: rng.normal(size=v.shape) for n, v in outs.items()}
    g, g2 = pull(cot), plain.vjp(p, {"x": x})[1](cot)
    for n in g2:
        np.testing.assert_allclose(g[n], g2[n], rtol=1e-10, atol=1e-12, err_msg=n)


@pytest.mark.parametrize("name", sorted(models()))
def test_no_two_gradients_share_memory(name):
    """Parameters' gradients may be views of one stacked gradient (the rows of d_W2), as in
    hand-written code, but a user who scales one in place (clipping) must not change another:
    b_ih and b_hh, which get the same sum, are two arrays."""
    model = models()[name]
    net = model.compile()
    p, inputs, initial = problem(net, model, np.random.default_rng(0))
    outs, pull = net.vjp(p, inputs, initial)
    grads = pull({n: np.ones_like(v) for n, v in outs.items()})
    names = sorted(grads)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not np.shares_memory(grads[a], grads[b]), (a, b)


def test_lstm_parameter_gradients_are_written_by_their_gemms():
    source = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile().source
    backward = source[source.index("def backward"):]
    after = backward[backward.rindex(" in steps:"):]
    after = after[after.index("\n    #"):].splitlines()          # what follows the loop
    assert not [line for line in after if "+=" in line and ("@" in line or "np.dot" in line)]
    assert "zeros_like" not in backward                          # bound where written
    assert re.search(r"dW_h_ifog = dz_\w+\[now\]", backward)     # bound where made, no alias
    assert re.search(r"\bdW_hi = dW_h_ifog\[0:8\]", backward)     # a view of the stacked one
    # b_ii and b_hi get the same lanes: one is a view, the other a copy of its own
    assert re.search(r"\bdb_hi = (\w+)\[\.\.\., 0:8\]\n", backward)
    assert re.search(r"\bdb_ii = (\w+)\[\.\.\., 0:8\]\.copy\(\)", backward)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "plain"])
@pytest.mark.parametrize("name", sorted(models()))
def test_prepared_parameters_give_what_the_dict_gives_and_keep_it(name, optimize):
    """net.prepare(params) in place of params: the same outputs and gradients, bit for bit;
    still the same after calls with other parameters (whose stacked matrices come from the
    same workspace) and after the arrays it was made from changed."""
    model = models()[name]
    net = model.compile(dtype="float64", optimize=optimize)
    params, inputs, initial = problem(net, model, np.random.default_rng(3))
    cot = {n: np.random.default_rng(4).normal(size=v.shape)
           for n, v in net.forward(params, inputs, initial).items()}

    def run(p):
        outs, pullback = net.vjp(p, inputs, initial)
        return {n: v.copy() for n, v in outs.items()}, pullback(cot)

    want = run(params)
    ready = net.prepare(params)
    other = {k: 0.5 * v for k, v in params.items()}
    for p in (ready, other, ready):
        got = run(p)
        if p is ready:
            for a, b in zip(want, got):
                assert a.keys() == b.keys()
                for n in a:
                    np.testing.assert_array_equal(a[n], b[n], err_msg=n)
    for v in params.values():
        v *= 3                             # the caller updates its arrays in place
    got = run(ready)
    for n in want[1]:
        np.testing.assert_array_equal(want[1][n], got[1][n], err_msg=n)


def test_prepare_checks_once_and_belongs_to_its_model():
    net = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(sizes={"x": 3, "h": 4})
    params = net.init_params(seed=0)
    ready = net.prepare(params)
    assert not ready.params["W_hi"].flags.writeable
    assert net.prepare(ready) is ready
    x = np.ones((5, 2, 3))
    other = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(sizes={"x": 3, "h": 4})
    with pytest.raises(rnngraph.RnnGraphError, match="prepared by another compiled model"):
        other.forward(ready, {"x": x})
    params["b_hf"][1] = np.nan
    with pytest.raises(rnngraph.RnnGraphError, match="parameter 'b_hf' contains NaN"):
        net.prepare(params)
    stacked = re.search(r"def prepare\(params\):(.*?)\n\n", net.source, re.S).group(1)
    assert "np.concatenate((W_hi," in stacked and "transposed(W_h_ifog)" in stacked


@pytest.mark.parametrize("name", ["torch_lstm", "torch_gru"])
def test_prepared_matrices_big_enough_for_the_workspace_are_not_handed_out_again(name):
    """Prepared parameters (stacked matrices, their transposes) are arrays of their own,
    never the workspace's: calls with other parameters must not change them."""
    net = rnngraph.load(EXAMPLES / f"{name}.rnn").compile(sizes={"x": 64, "h": 128})
    stacked = re.search(r"def prepare\(params\):(.*?)\n\n", net.source, re.S).group(1)
    assert "np.concatenate((" in stacked and "WORK" not in stacked
    params = net.init_params(seed=0)
    x = np.random.default_rng(0).normal(size=(3, 2, 64))
    ready = net.prepare(params)
    want = net.forward(params, {"x": x})["h"].copy()
    for scale in (0.5, 2.0):
        net.forward({k: scale * v for k, v in params.items()}, {"x": x})
        np.testing.assert_array_equal(net.forward(ready, {"x": x})["h"], want)


def test_sum_rows_gives_the_sums_of_every_layout_it_may_get(monkeypatch):
    """sum_rows (a bias's gradient after the loop) is a gemv with a vector of ones where
    the leading axes fold into one; lanes of a wider array, a strided out and another dtype
    take np.sum.  The vector of ones grows and is sliced: short after long stays right."""
    from rnngraph.runtime.ops import sum_rows
    monkeypatch.setattr(rnngraph.runtime.ops, "_ONES", {})      # as in a fresh process
    rng = np.random.default_rng(0)
    g = rng.normal(size=(7, 3, 8))
    cases = [(g, (0, 1), np.empty(8)), (g[..., 2:5], (0, 1), np.empty(3)),
             (g.reshape(21, 8), 0, np.empty(8)), (g, (0, 1), np.empty(16)[::2]),
             (g[:2], (0, 1), np.empty(8)), (g.astype(np.float32), (0, 1), np.empty(8)),
             (g.astype(np.float32), (0, 1), np.empty(8, np.float32))]
    for a, axes, out in cases:
        sum_rows(a, axes, out)
        np.testing.assert_allclose(out.reshape(-1), a.sum(axes).reshape(-1), rtol=1e-6)
    with pytest.raises(ValueError):                # an out that does not fit, as np.sum
        sum_rows(g, 0, np.empty(24))
    big = rng.normal(size=(20000, 4)).astype(np.float32)
    out = np.empty(4, np.float32)
    sum_rows(big, 0, out)
    exact = big.astype(np.float64).sum(0)
    assert np.abs(out - exact).max() <= np.abs(big.sum(0) - exact).max() * 1.5 + 1e-3
