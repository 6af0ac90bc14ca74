"""Arrays reused from call to call (rnngraph/runtime/workspace.py) never change what a caller holds.

The workspace saves the page faults of allocating tens of megabytes a call
(bench/); what a user would notice if it broke is an output or gradient of an
earlier call changing under their feet, or a pullback giving another call's
gradients.  Those are checked here, along with the reuse itself and its bounds.
"""
import threading
from pathlib import Path

import numpy as np

import rnngraph
from rnngraph.runtime.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


#: Hidden size: big enough that the stacked matrices and their gradients (256 x 64
#: float64, 128 KiB) come from the workspace too, not only the arrays proportional to T.
H = 64


def lstm():
    return rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(sizes={"x": 4, "h": H})


def inputs(seed, T=7, B=3):
    return {"x": np.random.default_rng(seed).normal(size=(T, B, 4))}


def test_outputs_and_gradients_a_caller_keeps_survive_later_calls():
    net, ref = lstm(), lstm()
    p = net.init_params(seed=0)
    outs, pull = net.vjp(p, inputs(1))
    grads = pull({"h": np.ones_like(outs["h"])})
    kept = {k: v.copy() for k, v in outs.items()}, {k: v.copy() for k, v in grads.items()}
    for seed in (2, 3, 4):                              # more calls, same shapes
        o, pb = net.vjp(p, inputs(seed))
        pb({"h": np.ones_like(o["h"])})
        del o, pb
    for k in outs:
        np.testing.assert_array_equal(outs[k], kept[0][k], err_msg=k)
    for k in grads:
        np.testing.assert_array_equal(grads[k], kept[1][k], err_msg=k)
    o_ref, pb_ref = ref.vjp(p, inputs(1))
    np.testing.assert_array_equal(outs["h"], o_ref["h"])


def test_a_pullback_kept_past_later_calls_gives_its_own_calls_gradients():
    net, ref = lstm(), lstm()
    p = net.init_params(seed=0)
    outs, pull = net.vjp(p, inputs(1))
    cot = {"h": np.random.default_rng(9).normal(size=outs["h"].shape)}
    del outs
    for seed in (2, 3):
        net.vjp(p, inputs(seed))[1](cot)
    expected = ref.vjp(p, inputs(1))[1](cot)
    got = pull(cot)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_arrays_nobody_holds_are_handed_out_again():
    net = lstm()
    p = net.init_params(seed=0)
    first = net.forward(p, inputs(1))["h"]
    address = first.__array_interface__["data"][0]
    del first                                          # the caller lets go
    again = net.forward(p, inputs(2))["h"]
    assert again.__array_interface__["data"][0] == address
    other = net.forward(p, inputs(3))["h"]             # `again` is held: a new array
    assert not np.shares_memory(again, other)


def test_a_second_call_takes_every_array_from_the_pool():
    """Arrays are pooled per role: with the first call's results dropped, the second call
    finds an array for each of its requests (five of them (T + 1, B, 64), say), so it
    allocates nothing the workspace keeps anew, and the pool holds one array a request."""
    net = lstm()
    work = net._forward.__globals__["WORK"]
    ran = net.source.split("def backward_large(")[0]    # at this batch: not the large steps' one
    requests = ran.count("WORK.empty(") + ran.count("WORK.zeros(")
    p = net.init_params(seed=0)
    o, pb = net.vjp(p, inputs(1))
    pb({"h": np.ones_like(o["h"])})
    del o, pb
    pooled = {id(a) for arrays in work._arrays.values() for a in arrays}
    o, pb = net.vjp(p, inputs(2))
    pb({"h": np.ones_like(o["h"])})
    assert {id(a) for arrays in work._arrays.values() for a in arrays} == pooled
    assert len(pooled) == requests >= 10     # at B * n < PER_STEP every request runs


def test_threads_sharing_a_compiled_model_get_their_own_arrays():
    net, ref = lstm(), lstm()
    p = net.init_params(seed=0)
    expected = {s: ref.vjp(p, inputs(s))[1]({"h": np.ones((7, 3, H))}) for s in range(4)}
    errors = []

    def work(seed):
        for _ in range(30):
            o, pb = net.vjp(p, inputs(seed))
            g = pb({"h": np.ones_like(o["h"])})
            if not all(np.array_equal(g[k], expected[seed][k]) for k in g):
                errors.append(seed)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_workspace_keeps_two_arrays_a_role_within_its_limit():
    work = Workspace(limit=10_000)
    held = [work.empty((100,), np.float64, "a") for _ in range(3)]    # 800 bytes each
    assert len(work) == 2                              # the third was allocated, not kept
    big = work.empty((2000,), np.float64, "b")          # 16,000 bytes: over the limit
    assert len(work) == 2 and big.shape == (2000,)
    del held
    work.empty((1125,), np.float64, "c")               # 9,000 bytes: the free ones make room
    assert len(work) == 1
    z = work.zeros((1125,), np.float64, "c")
    assert not z.any()


def test_a_shorter_request_takes_the_leading_part_of_a_kept_array():
    work = Workspace()
    a = work.empty((10, 3, 4), np.float32, "h")
    address = a.__array_interface__["data"][0]
    del a
    b = work.empty((7, 3, 4), np.float32, "h")          # T shorter: the first 7 rows of a
    assert b.shape == (7, 3, 4) and b.flags.c_contiguous
    assert b.__array_interface__["data"][0] == address
    c = work.empty((7, 3, 4), np.float32, "h")          # b holds a: a new array
    assert not np.shares_memory(b, c)
    del b, c
    d = work.empty((3, 3, 4), np.float32, "h")          # under half of 10 and of 7: fresh
    assert d.__array_interface__["data"][0] != address
    assert len(work) == 2                               # 10 was free and too long: replaced
    e = work.empty((12, 3, 4), np.float32, "h")         # longer than any: fresh
    assert e.shape == (12, 3, 4) and len(work) == 2


def test_calls_with_varying_length_reuse_arrays_and_stay_bounded():
    """A training loop over batches of different lengths T: each call computes what a
    fresh model computes, outputs kept from one call survive the next, and the pool
    holds at most two arrays a role."""
    net, ref = lstm(), lstm()
    work = net._forward.__globals__["WORK"]
    roles = net.source.count("WORK.empty(") + net.source.count("WORK.zeros(")
    p = net.init_params(seed=0)
    kept = None
    for T in (9, 7, 8, 5, 9, 3, 12, 6):
        o, pb = net.vjp(p, inputs(T, T=T))
        g = pb({"h": np.ones_like(o["h"])})
        o_ref, pb_ref = ref.vjp(p, inputs(T, T=T))
        g_ref = pb_ref({"h": np.ones_like(o_ref["h"])})
        np.testing.assert_array_equal(o["h"], o_ref["h"])
        for k in g_ref:
            np.testing.assert_array_equal(g[k], g_ref[k], err_msg=k)
        if kept is not None:
            np.testing.assert_array_equal(kept[0], kept[1])
        kept = (o["h"], o["h"].copy())
        del o, pb, g
    assert len(work) <= 2 * roles


def test_release_gives_the_kept_arrays_back_and_what_the_caller_holds_stays():
    net = lstm()
    work = net._forward.__globals__["WORK"]
    p = net.init_params(seed=0)
    outs, pull = net.vjp(p, inputs(1))
    kept = outs["h"].copy()
    net.vjp(p, inputs(2))[1]({"h": np.ones_like(kept)})
    assert len(work) > 0
    net.release()
    assert len(work) == 0
    net.vjp(p, inputs(3))[1]({"h": np.ones_like(kept)})   # allocates afresh, and keeps
    np.testing.assert_array_equal(outs["h"], kept)
    expected = lstm().vjp(p, inputs(1))[1]({"h": np.ones_like(kept)})
    got = pull({"h": np.ones_like(kept)})
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)
    rnngraph.load(EXAMPLES / "torch_lstm.rnn").compile(optimize=False).release()   # no pool
