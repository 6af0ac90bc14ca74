"""rnngraph export --to jax, Model.to_jax(): the equations as JAX's pure (init, apply).

Every example that exports gives the NumPy compile's outputs and, through jax.grad, its
gradients (parameters, inputs, initial values) within 1e-10 in float64; the functions run
under jit, grad and vmap, each loop a lax.scan.  JAX is optional for users: these tests skip
without it (CI installs a pinned CPU build).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph.cli import main

jax = pytest.importorskip("jax", reason="JAX is the export's target: pip install jax==0.10.2")
jnp = pytest.importorskip("jax.numpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_random_models as R  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPORTED = sorted(p.stem for p in EXAMPLES.glob("*.rnn"))


@pytest.fixture(autouse=True)
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("name", EXPORTED)
def test_the_exported_functions_compute_what_the_numpy_compile_does(name):
    m, point, steps, outs, cot, grads = R.example_problem(EXAMPLES / f"{name}.rnn")
    init, apply = m.to_jax()
    params, inputs, initial = ({k: jnp.asarray(v) for k, v in d.items()} for d in point)
    got = apply(params, inputs, initial, steps=steps)
    assert set(got) == set(outs)
    for k in outs:
        assert np.allclose(np.asarray(got[k]), outs[k], rtol=1e-10, atol=1e-12), k

    def total(p, i, ini):
        o = apply(p, i, ini, steps=steps)
        return sum((o[k] * cot[k]).sum() for k in cot)
    theirs = {}
    for d in jax.grad(total, argnums=(0, 1, 2))(params, inputs, initial):
        theirs.update(d)
    for k, want in grads.items():
        assert np.allclose(np.asarray(theirs[k]), want, rtol=1e-10, atol=1e-12), k


def test_jit_grad_and_vmap_take_the_functions():
    """An LSTM: jit(grad) equals grad; vmap over a stack of parameter sets equals one call
    each; the loops are scans (the backward state of a bidirectional RNN scans in reverse)."""
    m = rnngraph.load(EXAMPLES / "lstm_dlbook.rnn")
    init, apply = m.to_jax()
    assert apply.source.count("lax.scan(") >= 1
    assert "reverse=True" in rnngraph.load(EXAMPLES / "bidirectional.rnn").to_jax()[1].source
    params = init(jax.random.PRNGKey(0), jnp.float64)
    x = jax.random.normal(jax.random.PRNGKey(1), (9, 3, m.sizes["x"]), jnp.float64)

    def loss(p, x):
        return (apply(p, {"x": x})["h"] ** 2).sum()
    g = jax.grad(loss)(params, x)
    gj = jax.jit(jax.grad(loss))(params, x)
    for k in g:
        assert np.allclose(g[k], gj[k], rtol=1e-12, atol=1e-14), k
    stack = jax.tree_util.tree_map(lambda *a: jnp.stack(a), params,
                                   init(jax.random.PRNGKey(2), jnp.float64))
    many = jax.vmap(loss, in_axes=(0, None))(stack, x)
    assert np.allclose(many, [loss(params, x), loss(init(jax.random.PRNGKey(2), jnp.float64), x)])


def test_init_draws_as_init_params():
    """Uniform in +-1/sqrt(rows), every parameter of its shape."""
    m = rnngraph.load(EXAMPLES / "torch_gru.rnn")
    init, _ = m.to_jax()
    params = init(jax.random.PRNGKey(0), jnp.float64)
    assert {k: v.shape for k, v in params.items()} == m.compile().param_shapes
    for k, v in params.items():
        bound = 1 / v.shape[0] ** 0.5
        assert float(jnp.abs(v).max()) <= bound and float(jnp.abs(v).max()) > 0.5 * bound, k


def test_the_cli_writes_a_module(tmp_path):
    out = tmp_path / "elman_jax.py"
    assert main(["export", str(EXAMPLES / "elman.rnn"), "--to", "jax", "-o", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("elman_jax", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    source = out.read_text()
    assert "# h(t) = tanh(" in source and "lax.scan(" in source
    params = mod.init(jax.random.PRNGKey(0))
    outs = mod.apply(params, {"x": jnp.ones((5, 2, 4)), "target": jnp.ones((5, 2, 5)) / 5})
    assert outs["y"].shape == (5, 2, 5) and np.allclose(outs["y"].sum(-1), 1, atol=1e-6)


def test_a_given_tree_under_jit():
    """A recursive net over a tree given as nested tuples, and as a parent array: the NumPy
    compile's outputs and gradients, with the tree fixed when jit traces."""
    m = rnngraph.load(EXAMPLES / "tree.rnn").require_sizes()
    net = m.compile()
    init, apply = m.to_jax()
    rng = np.random.default_rng(0)
    params = net.init_params(seed=1)
    x, y = rng.normal(size=(6, 2, m.sizes["x"])), rng.dirichlet(np.ones(m.sizes["y"]), 2)
    for tree in (((0, (1, 2)), ((3, 4), 5)), [6, 6, 9, 8, 7, 7, 10, 8, 9, 10, -1]):
        outs, pullback = net.vjp(params, {"x": x, "y": y}, tree=tree)
        grads = pullback({"L": np.ones_like(outs["L"])})
        loss = jax.jit(lambda p, x: apply(p, {"x": x, "y": y}, tree=tree)["L"].sum())
        assert np.isclose(float(loss(params, x)), outs["L"].sum(), rtol=1e-12)
        g = jax.grad(loss)(params, x)
        for k in params:
            assert np.allclose(g[k], grads[k], rtol=1e-10, atol=1e-12), (tree, k)


def test_the_training_example_learns_with_jax_and_optax():
    """examples/train_torch.py --jax: the character LSTM exported to JAX, trained with optax's
    Adam under jit; its loss per character falls from about log(vocabulary) = 3.3 nats."""
    pytest.importorskip("optax", reason="the example trains with optax: pip install optax")
    jax.config.update("jax_enable_x64", False)
    spec = importlib.util.spec_from_file_location("train_torch", EXAMPLES / "train_torch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    losses = mod.main(["--steps", "80", "--jax"])
    assert sum(losses[:5]) / 5 > 3.0 and sum(losses[-10:]) / 10 < 1.5


def test_the_readme_snippets_run(monkeypatch):
    """The Scaling out section's two Python blocks: the PyTorch one gives gradients for every
    parameter, the JAX one jit(grad)'s for every parameter, shaped as the file says."""
    jax.config.update("jax_enable_x64", False)
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Scaling out"):readme.index("## Gradient flow")]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    assert len(blocks) == 2
    monkeypatch.chdir(EXAMPLES.parent)
    ns = {}
    exec(blocks[0], ns)
    assert all(p.grad is not None for p in ns["net"].parameters())
    ns = {}
    exec(blocks[1], ns)
    assert {k: v.shape for k, v in ns["grads"].items()} == {k: v.shape for k, v in ns["params"].items()}
    assert float(sum(abs(g).sum() for g in ns["grads"].values())) > 0


@pytest.mark.parametrize("name", sorted(R.REVIEWED))
def test_reviewed_models_export_exactly(name, tmp_path):
    """The models a review found the PyTorch export got wrong, in JAX (outputs, and gradients
    where they are numbers)."""
    path = tmp_path / f"{name}.rnn"
    path.write_text(R.REVIEWED[name])
    m = rnngraph.load(path).require_sizes()
    net = m.compile()
    rng = np.random.default_rng(3)
    params = net.init_params(seed=2)
    inputs = {"x": rng.normal(size=(5, 3, 3))}
    if "d" in m.symbols:
        inputs["d"] = rng.integers(0, 2, size=(5, 3, 4)).astype(float)
    outs, pullback = net.vjp(params, inputs)
    grads = pullback({k: np.ones_like(v) for k, v in outs.items()})
    _, apply = m.to_jax()
    got = apply(params, inputs)
    for k in outs:
        assert np.allclose(np.asarray(got[k]), outs[k], rtol=1e-10, atol=1e-12), k
    if name != "bce":
        g = jax.grad(lambda p: sum(v.sum() for v in apply(p, inputs).values()))(params)
        for k in params:
            assert np.allclose(np.asarray(g[k]), grads[k], rtol=1e-10, atol=1e-12), k
