"""rnngraph export --to torch, Model.to_torch(): the equations as a torch.nn.Module.

Every example that exports gives the NumPy compile's outputs and, through torch's
autograd, its gradients (parameters, inputs, initial values) within 1e-10 in float64; the
exported RNN, LSTM and GRU equal torch.nn.RNN, LSTM and GRU with copied weights.  What does
not export yet (attention) is one message naming it.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph.cli import main

torch = pytest.importorskip("torch", reason="PyTorch is the export's target: pip install torch==2.13.0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_random_models as R  # noqa: E402
from test_torch_parity import GATES, STEMS  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPORTED = sorted(p.stem for p in EXAMPLES.glob("*.rnn"))


@pytest.mark.parametrize("name", EXPORTED)
def test_the_exported_module_computes_what_the_numpy_compile_does(name):
    m, point, steps, outs, cot, grads = R.example_problem(EXAMPLES / f"{name}.rnn")
    module = m.to_torch(dtype="float64")
    with torch.no_grad():
        for k, v in point[0].items():
            module.params[k].copy_(torch.from_numpy(v))
    inputs = {k: torch.tensor(v, requires_grad=True) for k, v in point[1].items()}
    initial = {k: torch.tensor(v, requires_grad=True) for k, v in point[2].items()}
    got = module(inputs, initial, steps=steps)
    assert set(got) == set(outs)
    for k in outs:
        assert np.allclose(got[k].detach().numpy(), outs[k], rtol=1e-10, atol=1e-12), k
    sum((got[k] * torch.from_numpy(cot[k])).sum() for k in cot).backward()
    theirs = {k: p.grad for k, p in module.params.items()}
    theirs.update((k, t.grad) for k, t in {**inputs, **initial}.items())
    for k, want in grads.items():
        have = theirs[k].numpy() if theirs[k] is not None else np.zeros_like(want)
        assert np.allclose(have, want, rtol=1e-10, atol=1e-12), k


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_the_exported_cells_equal_torch_nn(kind):
    torch.manual_seed(0)
    ref = getattr(torch.nn, kind)(5, 6, dtype=torch.float64)
    module = rnngraph.load(EXAMPLES / f"torch_{kind.lower()}.rnn").to_torch(
        sizes={"x": 5, "h": 6}, dtype="float64")
    with torch.no_grad():
        for attr, stem in STEMS.items():
            for gate, chunk in zip(GATES[kind], getattr(ref, attr).chunk(len(GATES[kind]))):
                module.params[stem + gate].copy_(chunk)
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    h, _ = ref(x)
    assert torch.allclose(module({"x": x})["h"], h, rtol=1e-10, atol=1e-12)


def test_the_cli_writes_a_module_that_trains(tmp_path, capsys):
    out = tmp_path / "elman_torch.py"
    assert main(["export", str(EXAMPLES / "elman.rnn"), "--to", "torch", "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("elman_torch", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    source = out.read_text()
    assert "# h(t) = tanh(" in source and "def forward(params, inputs, initial" in source
    torch.manual_seed(0)
    model = mod.Model()
    m = rnngraph.load(EXAMPLES / "elman.rnn")
    target = next(n for n, s in m.symbols.items() if s.target)
    x = torch.randn(12, 4, m.sizes["x"])
    y = torch.eye(m.sizes[target])[torch.randint(0, m.sizes[target], (12, 4))]
    loss_name = next(n for n, s in m.symbols.items() if s.loss)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = model({"x": x, target: y})[loss_name].mean()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]          # it learns the random labels of 48 steps


def test_a_given_tree():
    """A recursive net over a tree given as nested tuples, and as a parent array: the NumPy
    compile's outputs and, through autograd, its gradients."""
    m = rnngraph.load(EXAMPLES / "tree.rnn").require_sizes()
    net = m.compile()
    module = m.to_torch(dtype="float64")
    rng = np.random.default_rng(0)
    params = net.init_params(seed=1)
    with torch.no_grad():
        for k, v in params.items():
            module.params[k].copy_(torch.from_numpy(v))
    x, y = rng.normal(size=(6, 2, m.sizes["x"])), rng.dirichlet(np.ones(m.sizes["y"]), 2)
    for tree in (((0, (1, 2)), ((3, 4), 5)), [6, 6, 9, 8, 7, 7, 10, 8, 9, 10, -1]):
        outs, pullback = net.vjp(params, {"x": x, "y": y}, tree=tree)
        grads = pullback({"L": np.ones_like(outs["L"])})
        module.zero_grad()
        got = module({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tree=tree)
        assert np.allclose(got["h"].detach().numpy(), outs["h"], rtol=1e-12)
        got["L"].sum().backward()
        for k, p in module.params.items():
            assert np.allclose(p.grad.numpy(), grads[k], rtol=1e-10, atol=1e-12), (tree, k)


def test_the_training_example_runs_and_learns():
    """examples/train_torch.py: a character LSTM written as equations, exported, trained with
    Adam; its loss per character falls well below the uniform log(vocabulary)."""
    spec = importlib.util.spec_from_file_location("train_torch", EXAMPLES / "train_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    losses = mod.main(["--steps", "80"])
    assert sum(losses[:5]) / 5 > 3.0 and sum(losses[-10:]) / 10 < 1.5


def test_the_module_follows_its_parameters_dtype():
    """net.to(torch.float64): the zeros it makes and its outputs are float64 too."""
    net = rnngraph.load(EXAMPLES / "torch_gru.rnn").to_torch(sizes={"x": 3, "h": 4})
    net.to(torch.float64)
    out = net({"x": torch.randn(5, 2, 3, dtype=torch.float64)})
    assert out["h"].dtype == torch.float64 and out["h"].shape == (5, 2, 4)


@pytest.mark.parametrize("name", sorted(R.REVIEWED))
@pytest.mark.parametrize("batch", [3, 5])
def test_reviewed_models_export_exactly(name, batch, tmp_path):
    path = tmp_path / f"{name}.rnn"
    path.write_text(R.REVIEWED[name])
    m = rnngraph.load(path).require_sizes()
    net = m.compile()
    rng = np.random.default_rng(batch)
    params = net.init_params(seed=2)
    inputs = {"x": rng.normal(size=(5, batch, 3))}
    if "d" in m.symbols:
        inputs["d"] = rng.integers(0, 2, size=(5, batch, 4)).astype(float)   # exactly 0 and 1
    outs, pullback = net.vjp(params, inputs)
    grads = pullback({k: np.ones_like(v) for k, v in outs.items()})
    module = m.to_torch(dtype="float64")
    with torch.no_grad():
        for k, v in params.items():
            module.params[k].copy_(torch.from_numpy(v))
    got = module({k: torch.from_numpy(v) for k, v in inputs.items()})
    for k in outs:
        assert np.allclose(got[k].detach().numpy(), outs[k], rtol=1e-10, atol=1e-12), k
    if name == "bce":       # its gradient at a probability of exactly 0 is not a number
        return
    sum(v.sum() for v in got.values()).backward()
    for k, p in module.params.items():
        assert np.allclose(p.grad.numpy(), grads[k], rtol=1e-10, atol=1e-12), k


@pytest.mark.parametrize("inputs, message", [
    ({"x": torch.ones(6, 5)}, r"input 'x': \(T, B, n\) numbers"),
    ({"x": torch.ones(6, 2, 5), "target": torch.zeros(6, 2, dtype=torch.long)}, "not class indices"),
    ({"target": torch.ones(6, 2, 3)}, "no input 'x'"),
])
def test_the_module_refuses_what_it_cannot_take(inputs, message):
    net = rnngraph.load(EXAMPLES / "elman.rnn").to_torch(sizes={"x": 5, "h": 4, "o": 3})
    inputs = {"target": torch.ones(6, 2, 3), **inputs}
    with pytest.raises(ValueError, match=message):
        net(inputs)
    good = {"x": torch.ones(6, 2, 5), "target": torch.ones(6, 2, 3)}
    with pytest.raises(ValueError, match="no initial value 'h\\(1\\)'"):
        net(good, {"h(1)": torch.ones(2, 4)})
    with pytest.raises(ValueError, match="has 6 steps, but t has 3"):
        net(good, steps=3)
