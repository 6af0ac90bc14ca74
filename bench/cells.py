"""Cells no library ships, written by hand in PyTorch and JAX: the columns issue 22 compares
rnngraph with for a cell a user invents.

- PEEPHOLE: examples/lstm_peephole.rnn, the Deep Learning book's LSTM with peepholes (one
  weight per unit from the cell state s into each gate; torch.nn.LSTM has none);
- GRUCHO: examples/gru_cho.rnn, the GRU of Cho et al. (2014), whose reset gate multiplies
  h(t-1) before the product with W (torch.nn.GRU resets after it).

Each ``make_KIND(model, p, dtype, x, dH)`` returns (run, result) as bench/others.py's do:
run() is forward + backward of sum(h * dH) once, result() gives (h, grads) under rnngraph's
names.  Written as a user who knows the library would: the parameters are leaves under
their own names and are stacked inside the differentiated function (one input product
for the whole sequence, one recurrent product a step, as torch.nn.LSTM does), the cell a
Python loop over t (torch: "torch cell loop") or lax.scan under jax.jit(jax.grad(...)).
"""
import numpy as np

#: The models of this file, by the example that writes them.
EXAMPLES = {"PEEPHOLE": "lstm_peephole", "GRUCHO": "gru_cho"}
#: Their parameters' stacks: the input products', the recurrent products', the biases'.
STACKS = {
    "PEEPHOLE": (("U_f", "U_g", "U", "U_o"), ("W_f", "W_g", "W", "W_o"), ("b_f", "b_g", "b", "b_o")),
    "GRUCHO": (("U_u", "U_r", "U"), ("W_u", "W_r"), ("b_u", "b_r", "b")),
}


def _step(lib, model, n, P, Wh, xp, carry):
    """One step of ``model`` in ``lib`` (torch or jax.numpy, with .sigmoid/.tanh given as
    lib.sig, lib.tanh): xp the step's input product plus biases, Wh the stacked recurrent
    weights (transposed), carry the state(s); returns the new carry."""
    if model == "PEEPHOLE":
        h, s = carry
        z = xp + h @ Wh
        f = lib.sig(z[:, :n] + P["p_f"] * s)
        g = lib.sig(z[:, n:2 * n] + P["p_g"] * s)
        s = f * s + g * lib.sig(z[:, 2 * n:3 * n])
        q = lib.sig(z[:, 3 * n:] + P["p_o"] * s)
        return lib.tanh(s) * q, s
    h, = carry
    z = xp[:, :2 * n] + h @ Wh
    u, r = lib.sig(z[:, :n]), lib.sig(z[:, n:])
    c = lib.tanh(xp[:, 2 * n:] + (r * h) @ P["W"].T)
    return (u * h + (1 - u) * c,)


def _carry(model, zeros):
    return (zeros(), zeros()) if model == "PEEPHOLE" else (zeros(),)


def make_torchcell(model, p, dtype, x, dH):
    """The cell in torch, a Python loop over t, autograd's backward."""
    import torch
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    P = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in p.items()}
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    tdH = torch.tensor(dH, dtype=tdt)
    ins, recs, biases = STACKS[model]
    T, B = x.shape[:2]
    n = dH.shape[-1]

    class lib:
        sig, tanh = staticmethod(torch.sigmoid), staticmethod(torch.tanh)

    def forward():
        Ui, Wh = torch.cat([P[k] for k in ins]), torch.cat([P[k] for k in recs])
        bias = torch.cat([P[k] for k in biases])
        xp = torch.addmm(bias, tx.reshape(T * B, -1), Ui.T).reshape(T, B, -1)
        WhT = Wh.T
        carry = _carry(model, lambda: torch.zeros(B, n, dtype=tdt))
        hs = []
        for t in range(T):
            carry = _step(lib, model, n, P, WhT, xp[t], carry)
            hs.append(carry[0])
        return torch.stack(hs)

    def run():
        for q in (*P.values(), tx):
            q.grad = None
        hs = forward()
        hs.backward(tdH)
        return hs

    def result():
        hs = run()
        grads = {k: v.grad.numpy() for k, v in P.items()}
        grads["x"] = tx.grad.numpy()
        return hs.detach().numpy(), grads

    return run, result


def make_jax(model, p, dtype, x, dH):
    """jax.jit(jax.grad(...)) of the loss over lax.scan of the cell."""
    import jax
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    ins, recs, biases = STACKS[model]
    T, B = x.shape[:2]
    n = dH.shape[-1]
    P = {k: jnp.asarray(v.astype(dtype)) for k, v in p.items()}
    jx, jdH = jnp.asarray(x), jnp.asarray(dH)

    class lib:
        sig, tanh = staticmethod(jax.nn.sigmoid), staticmethod(jnp.tanh)

    def hs_of(P, x):
        Ui, Wh = jnp.concatenate([P[k] for k in ins]), jnp.concatenate([P[k] for k in recs])
        bias = jnp.concatenate([P[k] for k in biases])
        xp = (x.reshape(T * B, -1) @ Ui.T + bias).reshape(T, B, -1)
        WhT = Wh.T

        def body(carry, xpt):
            carry = _step(lib, model, n, P, WhT, xpt, carry)
            return carry, carry[0]

        _, hs = jax.lax.scan(body, _carry(model, lambda: jnp.zeros((B, n), x.dtype)), xp)
        return hs

    grad = jax.jit(jax.grad(lambda P, x: (hs_of(P, x) * jdH).sum(), argnums=(0, 1)))
    hs_fn = jax.jit(hs_of)

    def run():
        gP, gx = grad(P, jx)
        jax.block_until_ready(gP)
        return gP, gx

    def result():
        gP, gx = run()
        grads = {k: np.asarray(v) for k, v in gP.items()}
        grads["x"] = np.asarray(gx)
        return np.asarray(hs_fn(P, jx)), grads

    return run, result


MAKERS = {"torchcell": make_torchcell, "jax": make_jax}
