"""The compiled models agree with torch.nn.RNN, LSTM and GRU, outputs and gradients.

examples/torch_rnn.rnn, torch_lstm.rnn and torch_gru.rnn write PyTorch's
documented equations with its weight names; here the weights are copied out
of the torch modules (``weight_ih_l0`` stacks the gates' input matrices in the
order i, f, g, o for the LSTM and r, z, n for the GRU), both sides run the same
inputs and initial states, and the outputs and every gradient (weights,
biases, inputs, initial states) must agree: within 1e-10 relative in float64,
1e-5 in float32.  Relative error is max |ours - torch| / max |torch|.

The same for backend="numba" (skipped without numba and scipy).  torch is a
test-only reference (torch==2.13.0, the CPU build; .ci/run installs it); without
it these tests skip, saying so.
"""
from pathlib import Path

import numpy as np
import pytest

import rnngraph

torch = pytest.importorskip(
    "torch", reason="PyTorch is the parity reference: pip install torch==2.13.0 (CPU build)")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
T, B, N_IN, N_H = 7, 3, 5, 6
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}

# torch stacks the gates' matrices and biases in these orders; our names are the
# stem below followed by the gate (for the RNN, "h": W_ih, W_hh, b_ih, b_hh).
GATES = {"RNN": ["h"], "LSTM": ["i", "f", "g", "o"], "GRU": ["r", "z", "n"]}
STEMS = {"weight_ih_l0": "W_i", "weight_hh_l0": "W_h", "bias_ih_l0": "b_i", "bias_hh_l0": "b_h"}


def relative_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def unstack(module, kind, grad=False):
    """{our name: array} from the module's stacked weights (or their gradients)."""
    out = {}
    for attr, stem in STEMS.items():
        tensor = getattr(module, attr)
        stacked = (tensor.grad if grad else tensor).detach().numpy()
        for gate, chunk in zip(GATES[kind], np.split(stacked, len(GATES[kind]))):
            out[stem + gate] = chunk
    return out


def run_both(kind, dtype, backend="numpy"):
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(N_IN, N_H).to(tdtype)
    net = rnngraph.load(EXAMPLES / f"torch_{kind.lower()}.rnn").compile(
        sizes={"x": N_IN, "h": N_H}, dtype=dtype, backend=backend)
    params = unstack(module, kind)
    assert set(params) == set(net.param_shapes)
    assert all(params[k].shape == s for k, s in net.param_shapes.items())

    rng = np.random.default_rng(1)
    b = 1 if backend == "numba" else B           # Numba runs the loops of a batch of one
    x = rng.normal(size=(T, b, N_IN)).astype(dtype)
    h0 = rng.normal(size=(b, N_H)).astype(dtype)
    c0 = rng.normal(size=(b, N_H)).astype(dtype)
    cot_h = rng.normal(size=(T, b, N_H)).astype(dtype)
    cot_c = rng.normal(size=(T, b, N_H)).astype(dtype)

    initial = {"h(0)": h0, "c(0)": c0} if kind == "LSTM" else {"h(0)": h0}
    outs, pullback = net.vjp(params, {"x": x}, initial)
    cot = {"h": cot_h, "c": cot_c} if kind == "LSTM" else {"h": cot_h}
    grads = pullback(cot)

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0[None], requires_grad=True)
    if kind == "LSTM":
        tc0 = torch.tensor(c0[None], requires_grad=True)
        # torch returns only the last c; run step by step to see every c(t), as our outputs do.
        h, c, hs, cs = th0, tc0, [], []
        for t in range(T):
            out, (h, c) = module(tx[t:t + 1], (h, c))
            hs.append(out[0])
            cs.append(c[0])
        th, tc = torch.stack(hs), torch.stack(cs)
        loss = (th * torch.tensor(cot_h)).sum() + (tc * torch.tensor(cot_c)).sum()
        ref_outs = {"h": th, "c": tc}
        ref_initial = {"h(0)": th0, "c(0)": tc0}
    else:
        th, _ = module(tx, th0)
        loss = (th * torch.tensor(cot_h)).sum()
        ref_outs = {"h": th}
        ref_initial = {"h(0)": th0}
    loss.backward()
    ref_grads = unstack(module, kind, grad=True)
    ref_grads["x"] = tx.grad.numpy()
    ref_grads.update({k: v.grad.numpy()[0] for k, v in ref_initial.items()})
    return outs, grads, {k: v.detach().numpy() for k, v in ref_outs.items()}, ref_grads


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_outputs_and_every_gradient_match_torch(kind, dtype, backend):
    if backend == "numba":
        pytest.importorskip("numba", reason="backend='numba': pip install 'rnngraph[numba]'")
        pytest.importorskip("scipy", reason="backend='numba': pip install 'rnngraph[numba]'")
    outs, grads, ref_outs, ref_grads = run_both(kind, dtype, backend)
    tol = TOLERANCE[dtype]
    for name, ref in ref_outs.items():
        assert outs[name].dtype == np.dtype(dtype)
        assert relative_error(outs[name], ref) <= tol, name
    assert set(grads) == set(ref_grads)
    for name, ref in ref_grads.items():
        assert grads[name].dtype == np.dtype(dtype), name
        assert relative_error(grads[name], ref) <= tol, name


def test_init_params_draws_from_torchs_range():
    # torch.nn.LSTM draws every weight and bias from U(-1/sqrt(hidden), 1/sqrt(hidden)).
    torch.manual_seed(0)
    module = torch.nn.LSTM(N_IN, 100)
    bound = 1 / np.sqrt(100)
    net = rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(sizes={"x": N_IN, "h": 100})
    ours = np.concatenate([p.ravel() for p in net.init_params(seed=0).values()])
    theirs = np.concatenate([p.detach().numpy().ravel() for p in module.parameters()])
    assert abs(ours).max() <= bound and abs(theirs).max() <= bound
    assert abs(ours).max() > 0.99 * bound and abs(theirs).max() > 0.99 * bound
    assert abs(ours.std() - theirs.std()) < 0.05 * theirs.std()      # both uniform: bound / sqrt(3)
