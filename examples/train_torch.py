"""A character-level language model written as equations, exported to PyTorch, trained with Adam.

The model is an LSTM in PyTorch's notation (examples/torch_lstm.rnn) with a softmax output
and a cross-entropy loss at every step, written out below as a file of equations; rnngraph
exports it to a torch.nn.Module (``Model.to_torch``) and torch's autograd, Adam and a plain
training loop do the rest.  The text is made here (a few sentences of the Deep Learning
book's chapter 10 summary, repeated), so nothing is downloaded.

    python examples/train_torch.py [--seconds 60] [--steps N] [--jax]

It prints the mean loss per character as it falls (from log(vocabulary) = 3.3 nats at the
start) and a sample generated from the trained model.  With ``--jax`` the same model goes to
JAX instead (``Model.to_jax``: pure init and apply, each loop a lax.scan), trained with
optax's Adam under jax.jit(jax.value_and_grad(...)): it needs jax and optax.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

import rnngraph

TEXT = ("recurrent neural networks process sequences. they share parameters across time. "
        "the gradient flows back through the steps and may vanish or explode. gated units "
        "such as the lstm and the gru keep it alive over many steps. ") * 20

EQUATIONS = """
i(t) = sigmoid(W_ii x(t) + b_ii + W_hi h(t-1) + b_hi)
f(t) = sigmoid(W_if x(t) + b_if + W_hf h(t-1) + b_hf)
g(t) = tanh(W_ig x(t) + b_ig + W_hg h(t-1) + b_hg)
o(t) = sigmoid(W_io x(t) + b_io + W_ho h(t-1) + b_ho)
c(t) = f(t) * c(t-1) + i(t) * g(t)
h(t) = o(t) * tanh(c(t))
y(t) = softmax(V h(t) + d)
L(t) = cross_entropy(y(t), k(t))
"""


def batches(codes: torch.Tensor, vocab: int, length: int, batch: int, gen: torch.Generator):
    """One batch of windows: the characters one-hot (T, B, vocab) and the next ones."""
    starts = torch.randint(0, len(codes) - length - 1, (batch,), generator=gen)
    window = torch.stack([codes[s:s + length + 1] for s in starts.tolist()], 1)   # (T+1, B)
    eye = torch.eye(vocab)
    return eye[window[:-1]], eye[window[1:]]


def sample(net, chars: list[str], start: str, n: int) -> str:
    """n characters generated from the model, fed its own most likely next character."""
    eye = torch.eye(len(chars))
    text = start
    with torch.no_grad():
        for _ in range(n):
            x = eye[[chars.index(ch) for ch in text[-40:]]][:, None]
            k = torch.zeros_like(x)
            y = net({"x": x, "k": k})["y"][-1, 0]
            text += chars[int(y.argmax())]
    return text


def train_jax(model, codes, chars, args) -> list[float]:
    """The same training with JAX and optax: jit of the loss's value and gradient."""
    import jax
    import jax.numpy as jnp
    import optax

    init, apply = model.to_jax()
    params = init(jax.random.PRNGKey(0))
    opt = optax.adam(0.01)
    state = opt.init(params)

    @jax.jit
    def update(params, state, x, k):
        loss, grads = jax.value_and_grad(lambda p: apply(p, {"x": x, "k": k})["L"].mean())(params)
        changes, state = opt.update(grads, state)
        return optax.apply_updates(params, changes), state, loss

    gen = torch.Generator().manual_seed(0)
    losses, start, step = [], time.time(), 0
    while (args.steps is None and time.time() - start < args.seconds) or \
            (args.steps is not None and step < args.steps):
        x, k = (jnp.asarray(a.numpy()) for a in batches(codes, len(chars), 40, 16, gen))
        params, state, loss = update(params, state, x, k)
        losses.append(float(loss))
        step += 1
        if step % 25 == 0:
            print(f"step {step:4d}  loss {sum(losses[-25:]) / 25:.3f} nats a character "
                  f"(uniform: {math.log(len(chars)):.2f}; JAX)")
    return losses


def main(argv=None) -> list[float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="train this long (default 60)")
    ap.add_argument("--steps", type=int, default=None, help="or this many Adam steps")
    ap.add_argument("--jax", action="store_true", help="export to JAX and train with optax")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    chars = sorted(set(TEXT))
    codes = torch.tensor([chars.index(ch) for ch in TEXT])
    model = rnngraph.parse(EQUATIONS, "char_lstm.rnn", sizes={"x": len(chars), "h": 64, "y": len(chars)})
    if args.jax:
        return train_jax(model, codes, chars, args)
    net = model.to_torch()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(0)
    losses, start, step = [], time.time(), 0
    while (args.steps is None and time.time() - start < args.seconds) or \
            (args.steps is not None and step < args.steps):
        x, k = batches(codes, len(chars), 40, 16, gen)
        loss = net({"x": x, "k": k})["L"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 25 == 0:
            print(f"step {step:4d}  loss {sum(losses[-25:]) / 25:.3f} nats a character "
                  f"(uniform: {math.log(len(chars)):.2f})")
    print("sample:", sample(net, chars, "the gradient ", 40))
    return losses


if __name__ == "__main__":
    main()
