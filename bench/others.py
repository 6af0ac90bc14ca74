"""The other columns of the table: torch.nn.*, a torch Python-loop cell, JAX, HIPS autograd.

Each ``make_KIND(model, p, dtype, x, dH)`` returns a function running forward +
backward once (the gradient of sum(h * dH) with respect to every weight and
x), and a function returning (h, grads) named as rnngraph names them, for the
correctness check.  Parameters come under rnngraph's (PyTorch's) names.  The
libraries are imported inside, so a missing one costs only its column.
"""
import numpy as np

GATES = {"RNN": "h", "LSTM": "ifgo", "GRU": "rzn"}
SIZES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def stacked(p, model):
    """PyTorch's stacked weights (gate order i, f, g, o / r, z, n) from the named ones."""
    g = GATES[model]
    return [np.concatenate([p[f"{stem}{k}"] for k in g]) for stem in ("W_i", "W_h", "b_i", "b_h")]


def unstack(arrays, model):
    out = {}
    for stem, a in zip(("W_i", "W_h", "b_i", "b_h"), arrays):
        for k, chunk in zip(GATES[model], np.split(np.asarray(a), SIZES[model])):
            out[stem + k] = chunk
    return out


# -- torch ---------------------------------------------------------------------

def _torch_setup(model, p, dtype, x, dH):
    import torch
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tdH = torch.tensor(dH, dtype=tdt)
    weights = [torch.tensor(a, dtype=tdt, requires_grad=True) for a in stacked(p, model)]
    return torch, tdt, tx, tdH, weights


def _torch_result(torch, module_params, tx, h, model):
    grads = unstack([w.grad.numpy() for w in module_params], model)
    grads["x"] = tx.grad.numpy()
    return h.detach().numpy(), grads


def make_torch(model, p, dtype, x, dH):
    torch, tdt, tx, tdH, weights = _torch_setup(model, p, dtype, x, dH)
    m, n = x.shape[-1], dH.shape[-1]
    module = getattr(torch.nn, model)(m, n).to(tdt)
    with torch.no_grad():
        for w, name in zip(weights, ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")):
            getattr(module, name).copy_(w)
    params = [getattr(module, k) for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]

    def run():
        for q in params:
            q.grad = None
        tx.grad = None
        h, _ = module(tx)
        h.backward(tdH)
        return h

    return run, lambda: _torch_result(torch, params, tx, run(), model)


def make_torchcell(model, p, dtype, x, dH):
    """torch.nn.LSTMCell (GRUCell, RNNCell) called in a Python loop over t."""
    torch, tdt, tx, tdH, weights = _torch_setup(model, p, dtype, x, dH)
    m, n = x.shape[-1], dH.shape[-1]
    cell = getattr(torch.nn, f"{model}Cell")(m, n).to(tdt)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    with torch.no_grad():
        for w, name in zip(weights, names):
            getattr(cell, name).copy_(w)
    params = [getattr(cell, k) for k in names]
    T, B = x.shape[:2]

    def run():
        for q in params:
            q.grad = None
        tx.grad = None
        h = torch.zeros(B, n, dtype=tdt)
        c = torch.zeros(B, n, dtype=tdt)
        hs = []
        for t in range(T):
            if model == "LSTM":
                h, c = cell(tx[t], (h, c))
            else:
                h = cell(tx[t], h)
            hs.append(h)
        hs = torch.stack(hs)
        hs.backward(tdH)
        return hs

    return run, lambda: _torch_result(torch, params, tx, run(), model)


# -- JAX -------------------------------------------------------------------------

def _jax_cell(jnp, jax, model, n):
    def cell(W, carry, x):
        Wi, Wh, bi, bh = W
        if model == "LSTM":
            h, c = carry
            z = x @ Wi.T + bi + h @ Wh.T + bh
            i, f, g, o = jax.nn.sigmoid(z[:, :n]), jax.nn.sigmoid(z[:, n:2 * n]), \
                jnp.tanh(z[:, 2 * n:3 * n]), jax.nn.sigmoid(z[:, 3 * n:])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h
        if model == "GRU":
            h, = carry
            a, b = x @ Wi.T + bi, h @ Wh.T + bh
            r = jax.nn.sigmoid(a[:, :n] + b[:, :n])
            z = jax.nn.sigmoid(a[:, n:2 * n] + b[:, n:2 * n])
            nn = jnp.tanh(a[:, 2 * n:] + r * b[:, 2 * n:])
            h = (1 - z) * nn + z * h
            return (h,), h
        h, = carry
        h = jnp.tanh(x @ Wi.T + bi + h @ Wh.T + bh)
        return (h,), h
    return cell


def make_jax(model, p, dtype, x, dH):
    """jax.jit(jax.grad(loss)) over lax.scan of the cell, stacked weights."""
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    n = dH.shape[-1]
    B = x.shape[1]
    cell = _jax_cell(jnp, jax, model, n)
    W = tuple(jnp.asarray(a.astype(dtype)) for a in stacked(p, model))
    jx, jdH = jnp.asarray(x), jnp.asarray(dH)

    def loss(W, x):
        zeros = jnp.zeros((B, n), x.dtype)
        carry = (zeros, zeros) if model == "LSTM" else (zeros,)
        _, hs = jax.lax.scan(lambda c, xt: cell(W, c, xt), carry, x)
        return (hs * jdH).sum(), hs

    grad = jax.jit(jax.grad(lambda W, x: loss(W, x)[0], argnums=(0, 1)))
    hs_fn = jax.jit(lambda W, x: loss(W, x)[1])

    def run():
        gW, gx = grad(W, jx)
        jax.block_until_ready(gW)
        return gW, gx

    def result():
        gW, gx = run()
        grads = unstack([np.asarray(a) for a in gW], model)
        grads["x"] = np.asarray(gx)
        return np.asarray(hs_fn(W, jx)), grads

    return run, result


# -- HIPS autograd ---------------------------------------------------------------

def make_autograd(model, p, dtype, x, dH):
    """HIPS autograd: the cell in autograd.numpy, a Python loop, grad of sum(h * dH)."""
    import autograd
    import autograd.numpy as anp
    n = dH.shape[-1]
    T, B = x.shape[:2]
    W = tuple(a.astype(dtype) for a in stacked(p, model))

    def sig(z):
        return 0.5 * (anp.tanh(0.5 * z) + 1)

    def loss(W, x):
        Wi, Wh, bi, bh = W
        h = anp.zeros((B, n), dtype)
        c = anp.zeros((B, n), dtype)
        total = 0.0
        for t in range(T):
            if model == "LSTM":
                z = anp.dot(x[t], Wi.T) + bi + anp.dot(h, Wh.T) + bh
                i, f, g, o = sig(z[:, :n]), sig(z[:, n:2 * n]), anp.tanh(z[:, 2 * n:3 * n]), \
                    sig(z[:, 3 * n:])
                c = f * c + i * g
                h = o * anp.tanh(c)
            elif model == "GRU":
                a, b = anp.dot(x[t], Wi.T) + bi, anp.dot(h, Wh.T) + bh
                r, z = sig(a[:, :n] + b[:, :n]), sig(a[:, n:2 * n] + b[:, n:2 * n])
                nn = anp.tanh(a[:, 2 * n:] + r * b[:, 2 * n:])
                h = (1 - z) * nn + z * h
            else:
                h = anp.tanh(anp.dot(x[t], Wi.T) + bi + anp.dot(h, Wh.T) + bh)
            total = total + anp.sum(h * dH[t])
        return total

    grad = autograd.grad(loss, argnum=(0, 1))

    def run():
        return grad(W, x)

    def result():
        gW, gx = run()
        grads = unstack(gW, model)
        grads["x"] = gx
        return None, grads

    return run, result


MAKERS = {"torch": make_torch, "torchcell": make_torchcell, "jax": make_jax,
          "autograd": make_autograd}
MODULES = {"torch": "torch", "torchcell": "torch", "jax": "jax", "autograd": "autograd"}
