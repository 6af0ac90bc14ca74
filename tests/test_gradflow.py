"""rnngraph gradflow: ||dL(τ)/dh(t)|| against τ - t (the book's section 10.7), measured on the
compiled model and plotted; checked against the derivative of a NumPy Elman written by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph.cli import main
from rnngraph.gradflow import back_through_steps, gradient_flow, recurrent_matrices

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ELMAN = "h(t) = tanh(W h(t-1) + U x(t) + b)\no(t) = V h(t)\nx: 3, h: 4, o: 2\n"


def test_the_gradient_back_through_the_steps_is_the_derivative():
    """dL(τ)/dh(t) from the runs that start at t equals central differences of a NumPy
    Elman written from the equations, perturbing h(t) and running it on to τ."""
    m = rnngraph.parse(ELMAN)
    net = m.compile()
    p = net.init_params(seed=3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2, 3))
    grads = back_through_steps(net, p, {"x": x}, "o", "h", 6)

    def run(h, start):                        # steps start+1 .. τ from h = h(start); sum of o(τ)
        for t in range(start, 6):
            h = np.tanh(h @ p["W"].T + x[t] @ p["U"].T + p["b"])
        return (h @ p["V"].T).sum(-1)
    hs = [np.zeros((2, 4))]
    for t in range(6):
        hs.append(np.tanh(hs[-1] @ p["W"].T + x[t] @ p["U"].T + p["b"]))
    for k, g in enumerate(grads, 1):
        t = 6 - k
        fd = np.zeros((2, 4))
        for i in range(4):
            e = np.zeros(4)
            e[i] = 1e-6
            fd[:, i] = (run(hs[t] + e, t) - run(hs[t] - e, t)) / 2e-6
        assert np.allclose(g, fd, rtol=1e-6, atol=1e-9), k


def test_a_spectral_radius_below_one_makes_the_gradient_vanish():
    """The Elman RNN's flow falls off geometrically below radius 1 (0.5: by 1e-6 in 20 steps)
    and much less at 1.5; the LSTM's four recurrent matrices are the ones scaled."""
    flow = gradient_flow(rnngraph.load(EXAMPLES / "elman.rnn"), steps=30)
    assert set(flow) == {"at initialisation", "ρ = 0.5", "ρ = 1", "ρ = 1.5"}
    low, one, high = flow["ρ = 0.5"], flow["ρ = 1"], flow["ρ = 1.5"]
    assert low[19] < 1e-6 * low[0]
    assert low[19] < one[19] < high[19]
    assert recurrent_matrices(rnngraph.load(EXAMPLES / "torch_lstm.rnn")) == \
        ["W_hi", "W_hf", "W_hg", "W_ho"]


def test_the_cli_plots_models_side_by_side(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "flow.png"
    args = ["gradflow", str(EXAMPLES / "elman.rnn"), str(EXAMPLES / "torch_lstm.rnn"),
            "--steps", "12", "-o", str(out), "--print"]
    assert main(args) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "elman ρ = 0.5: at 1, 10, 20, ... steps back:" in printed and "torch_lstm" in printed
    assert main(args) == 0 and out.read_bytes() == data          # the same bytes again


@pytest.mark.parametrize("text,args,message", [
    ("o(t) = V x(t)\nx: 3, o: 2\n", [], "no state runs forward in time"),
    (ELMAN, ["--state", "o"], "'o' is not a state running forward in time"),
    # (a review's: the run from each step would freeze h(t) as an initial value, or read zeros)
    ((EXAMPLES / "torch_lstm.rnn").read_text(), ["--state", "c"], "c(t) feeds h(t) at the same step"),
    ((EXAMPLES / "teacher_forcing.rnn").read_text(), [], "reads y(t-1), an input at an earlier step"),
    ("h(t) = tanh(W h(t-1) + U x(t) + r * t)\nx: 3, h: 4\n", [], "reads the step number t itself"),
    (ELMAN, ["--loss", "q"], "'q' is not a sequence the model computes over t"),
    (ELMAN, ["--loss", "x"], "'x' is not a sequence the model computes over t"),
    (ELMAN, ["-o-flow.txt"], "the plot is a .png, .pdf or .svg file"),
    ("h(t) = tanh(W h(t-1) + U x(t))\nh(0) = b\nx: 3, h: 4\n", [], "h(0) = ... fixes the initial"),
    (ELMAN, ["--radii", "0.5,x"], None),
    (ELMAN, ["--steps", "0"], None),
])
def test_bad_gradflow_requests_get_one_message(tmp_path, capsys, text, args, message):
    src = tmp_path / "m.rnn"
    src.write_text(text)
    out = tmp_path / "flow.png"
    out.write_bytes(b"earlier")
    try:
        code = main(["gradflow", str(src), "-o", str(out), *args])
    except SystemExit as exit_:                 # argparse's own refusal of an option value
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    if message:
        assert message in err, err
    assert out.read_bytes() == b"earlier"       # a failed run leaves earlier output alone
