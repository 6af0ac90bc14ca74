"""Recursive networks over trees (issue 18; the book's section 10.6 and figure 10.14).

examples/tree.rnn: ``tree n``, a node's children ``h(left(n))``, ``h(right(n))``, the inputs
at the leaves ``x(n)``, the root ``h(root)``: the language and its located errors, the trees
(balanced by default, nested tuples or a parent array at run time), the compiled model
against a recursion written by hand in NumPy, level by level, and central differences on
both paths; the drawing (figure 10.14's layout) against the tree the code runs.  The random
models (tests/test_random_models.py) draw trees with one or two sequences over the nodes.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.render import drawing_of
from rnngraph.graphs.trees import Tree, structure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_random_models import worst_directional_error  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TREE = EXAMPLES / "tree.rnn"


def test_the_language_of_trees():
    m = rnngraph.load(TREE)
    h = m.symbols["h"]
    assert (h.role, h.index, h.delay, h.direction) == ("state", "n", 1, "forward")
    assert m.symbols["x"].index == "n" and m.symbols["o"].role == "value"
    text = m.to_text()
    assert text.startswith("tree n\n")
    assert "h(n) = tanh(W_l h(left(n)) + W_r h(right(n)) + U x(n) + b)\n" in text
    assert "o = softmax(V h(root) + c)\n" in text
    assert rnngraph.parse(text) == m
    latex = m.to_latex()
    assert r"h^{(n)} &= \tanh\left(W_{l} h^{(\operatorname{left}(n))} + W_{r} " \
        r"h^{(\operatorname{right}(n))} + U x^{(n)} + b\right)" in latex
    assert r"V h^{(\operatorname{root})}" in latex


@pytest.mark.parametrize("text,message,at", [
    ("h(t) = tanh(W h(left(t)))", "h(left(t)) reads a child of a node, but 't' is not a tree's "
     "index: declare it on a line of its own, tree t", (1, 15)),
    ("tree n\nh(n) = tanh(W h(n-1) + x(n))", "'n' counts the nodes of a tree, which come one "
     "level after another, not one after another: read h(n), or a child", (2, 15)),
    ("tree n\nh(n) = tanh(W h(left(n)) + V x(left(n)))", "'x' is an input: it sits at the "
     "leaves of the tree and is read at the node, x(n)", (2, 30)),
    ("tree n\nh(n) = tanh(W h(left(n)) + x(n))\no = h(left(n))", "h(left(n)) is a child of "
     "the node an equation over n computes", (3, 5)),
    ("h(t) = tanh(W h(t-1) + x(t))\no = V h(root)", "h(root) is the root of a sequence over a "
     "tree's nodes; 'h' is not one: its last step is h(end)", (2, 7)),
    ("tree n\nh(n) = tanh(W h(left(n)) + x(n))\no = V h(2)", "h is over the nodes of a tree: "
     "read its root, h(root), not a node by number", (3, 7)),
])
def test_what_trees_refuse_is_located(text, message, at):
    with pytest.raises(RnnGraphError) as err:
        rnngraph.parse(text, "tree.rnn")
    assert message in err.value.message
    assert (err.value.line, err.value.column) == at


def test_the_balanced_tree_has_depth_log2_of_its_leaves():
    for leaves in range(1, 40):
        t = Tree.balanced(leaves)
        assert t.leaves == leaves and t.nodes == 2 * leaves - 1
        assert t.depth == math.ceil(math.log2(leaves))
        assert t.levels[0] == tuple(range(leaves)) and t.levels[-1] == (t.nodes - 1,)
    # nested tuples and a parent array say the same tree; the leaves keep the inputs' order
    nested = Tree.of(((0, (1, 2)), 3))
    assert nested.children[4:] == ((1, 2), (0, 4), (5, 3))
    # a parent array's left child is the one over the earlier inputs, whatever the numbers
    assert Tree.of([4, 4, 5, 5, 6, 6, -1]) == Tree.of(((0, 1), (2, 3)))
    assert Tree.of(np.array([5, 4, 4, 6, 5, 6, -1])) == nested
    assert Tree.of([3, 3, 4, 4, -1]) == Tree.of(((0, 1), 2)) == Tree.balanced(3)
    # thousands of levels deep (a chain, left-branching): no recursion limit
    chain = 0
    for k in range(1, 1500):
        chain = (chain, k)
    assert Tree.of(chain).depth == 1499
    levels, left, right, leaves = structure(nested, 1, 0)
    assert [list(v) for v in levels] == [[1, 2, 3, 4], [5], [6], [7]]
    assert (left[7], right[7], left[1]) == (6, 4, 0)        # a leaf's children: slot 0, h(0)
    assert list(leaves) == [1, 2, 3, 4]


@pytest.mark.parametrize("tree,message", [
    (((0, 1, 2), 3), "a node of a tree is a leaf's position or a pair of nodes"),
    (((0, 2), 3), "the leaves of a tree are the positions 0..2 of the inputs, each once"),
    ([3, 3, 3, -1], "node 3 has 3 children; a node of a binary tree has two at most"),
    ([2, 2, -1, -1], "a parent array has one root (parent -1); this one has 2"),
    (((0, 1), (2, 3), 4), "a node of a tree is a leaf's position or a pair of nodes"),
    ("((0, 1), 2)", "a tree is nested tuples of leaf positions"),
])
def test_a_bad_tree_says_what_is_wrong(tree, message):
    with pytest.raises(RnnGraphError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Tree.of(tree)


def _by_hand(params, x, tree, y):
    """The recursion of tree.rnn written by hand: each node from its children's states."""
    tanh = np.tanh

    def state(node):
        if isinstance(node, int):
            return tanh(x[node] @ params["U"].T + params["b"])
        left, right = (state(c) for c in node)
        return tanh(left @ params["W_l"].T + right @ params["W_r"].T + params["b"])
    root = state(tree)
    z = root @ params["V"].T + params["c"]
    o = np.exp(z - z.max(-1, keepdims=True))
    o /= o.sum(-1, keepdims=True)
    return root, o, -(y * np.log(o)).sum(-1, keepdims=True)


@pytest.mark.parametrize("optimize", [False, True])
@pytest.mark.parametrize("tree", [None, ((0, (1, 2)), ((3, 4), 5)), (((0, 1), 2), 3)])
def test_the_tree_computes_the_recursion(optimize, tree):
    m = rnngraph.load(TREE)
    net = m.compile(dtype="float64", optimize=optimize)
    leaves = 6 if tree is None or len(tree) == 2 and not isinstance(tree[1], int) else 4
    rng = np.random.default_rng(0)
    params = net.init_params(seed=0)
    x = rng.normal(size=(leaves, 3, 8))
    y = np.eye(4)[rng.integers(0, 4, 3)]
    out = net.forward(params, {"x": x, "y": y}, tree=tree)
    shape = Tree.of(tree) if tree is not None else Tree.balanced(leaves)
    nested = tree if tree is not None else (((0, 1), (2, 3)), (4, 5))
    root, o, L = _by_hand(params, x, nested, y)
    assert out["h"].shape == (shape.nodes, 3, 16)        # a row per node, the root last
    np.testing.assert_allclose(out["h"][-1], root, rtol=1e-12)
    np.testing.assert_allclose(out["o"], o, rtol=1e-12)
    np.testing.assert_allclose(out["L"], L, rtol=1e-12)
    # the leaves first, in the inputs' order: each the state of its input alone
    np.testing.assert_allclose(out["h"][:leaves], np.tanh(x @ params["U"].T + params["b"]),
                               rtol=1e-12)


def test_a_level_is_one_product():
    """The generated code walks the levels, each level's nodes gathered in one product:
    16 leaves run in 5 passes of the loop, not 31."""
    m = rnngraph.load(TREE)
    for optimize in (False, True):
        source = m.compile(optimize=optimize).source
        assert "for at in levels_n:" in source and "for at in reversed(levels_n):" in source
        assert "h[left_n[at]] @ W_l" in source.replace("W_l.T", "W_l").replace("W_l_T", "W_l")
    assert len(Tree.balanced(16).levels) == 5


@pytest.mark.parametrize("optimize", [False, True])
def test_tree_gradients_match_central_differences(optimize):
    m = rnngraph.load(TREE, sizes={"h": 5, "x": 3})
    net = m.compile(dtype="float64", optimize=optimize)
    rng = np.random.default_rng(1)
    point = (net.init_params(seed=1), {"x": rng.normal(size=(5, 2, 3)), "y": np.abs(
        rng.normal(size=(2, 4)))}, {"h(0)": rng.normal(size=(2, 5))})
    for tree in (None, ((0, (1, 2)), (3, 4)), [5, 5, 6, 7, 8, 6, 7, 8, -1]):
        outs, _ = net.vjp(*point, tree=tree)
        cot = {k: rng.normal(size=v.shape) for k, v in outs.items()}

        class Given:                     # the harness's net, with the tree given
            def vjp(self, *a, steps=None):
                return net.vjp(*a, tree=tree)

            def forward(self, *a, steps=None):
                return net.forward(*a, tree=tree)
        assert worst_directional_error(Given(), point, cot, seed=2) < 1e-6


def test_a_tree_must_fit_its_inputs():
    m = rnngraph.load(TREE)
    net = m.compile()
    params = net.init_params()
    with pytest.raises(RnnGraphError, match="the tree has 4 leaves, but the inputs over it have 5 "
                                            "steps: one leaf a step"):
        net.forward(params, {"x": np.ones((5, 8)), "y": np.ones(4)}, tree=((0, 1), (2, 3)))
    one = net.forward(params, {"x": np.ones((1, 8)), "y": np.ones(4)})       # a tree of one leaf
    assert one["h"].shape == (1, 16)
    torch = pytest.importorskip("torch")             # the export says the same
    with pytest.raises(RnnGraphError, match="the tree has 4 leaves, but the inputs over it have 5"):
        m.to_torch()({"x": torch.ones(5, 1, 8), "y": torch.ones(1, 4)}, tree=((0, 1), (2, 3)))


def test_the_drawing_is_the_tree_the_code_runs(tmp_path):
    """Figure 10.14: the inputs in the bottom row in order, the leaves above them, a row per
    level, each inner node over its children, W_l from the left child and W_r from the
    right, as the compiled code reads them."""
    m = rnngraph.load(TREE)
    d = drawing_of(m, unroll=8)
    pos = {nid: tuple(map(float, d.agraph.get_node(nid).attr["pos"].split(","))) for nid in d.nodes}
    t = Tree.balanced(8)
    for k, (left, right) in enumerate(t.children):
        node = f"h.{k + 1}"
        if left < 0:
            assert pos[f"x.{k + 1}"][0] == pos[node][0] and pos[f"x.{k + 1}"][1] < pos[node][1]
            continue
        into = {e["tail"]: e["weight"] for e in d.edges if e["head"] == node}
        assert into == {f"h.{left + 1}": "W_l", f"h.{right + 1}": "W_r"}
        assert pos[node][0] == pytest.approx((pos[f"h.{left + 1}"][0] + pos[f"h.{right + 1}"][0]) / 2)
    for lv, nodes in enumerate(t.levels):
        ys = {pos[f"h.{k + 1}"][1] for k in nodes}
        assert len(ys) == 1                                  # one row per level
    xs = [pos[f"h.{k}"][0] for k in range(1, 9)]
    assert xs == sorted(xs)                                  # the leaves in the inputs' order
    assert pos["o"][1] > pos["h.15"][1]                      # the output above the root
    assert main(["draw", str(TREE), "--unroll", "8", "-o", str(tmp_path / "tree.svg")]) == 0


@pytest.mark.parametrize("text,message", [
    ("tree n\nh(n) = tanh(W h(left(left(n))) + x(n))", "a node's child is read one level down"),
    ("tree n\nh(n) = tanh(W h(parent(n)) + x(n))", "a node's parent is not read"),
    ("tree n\nh(n) = tanh(W h(left(n)) + x(n))\nJ = sum_n(h(n))",
     "sum_n(...) over the nodes of a tree is not supported yet"),
    ("tree n\nh(n) = tanh(W h(left(n)) + x(n))\no = x(end) + V h(root)",
     "'x' is an input at the leaves of a tree: read it at the node, x(n)"),
    ("tree n\nindex u\nh(n) = tanh(A h(left(n)) + U x(n))\ns(0) = h(root)\n"
     "e(u, n) = v^T tanh(W s(u-1) + V h(n))\ns(u) = tanh(S s(u-1) + sum_n(e(u, n) * h(n)))",
     "a value over a tree's nodes and another index (attention over a tree's nodes) is not "
     "supported yet"),
])
def test_what_trees_do_not_take_yet_says_so(text, message):
    with pytest.raises(RnnGraphError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*")):
        rnngraph.parse(text, "tree.rnn")


def test_a_given_tree_holds_everywhere():
    """The tree given is the one run: with no input over it (its leaves say how many), and
    running free (mode="free") as when training."""
    net = rnngraph.parse("tree n\nh: 4\nh(n) = tanh(A h(left(n)) + B h(right(n)) + b)").compile()
    params = net.init_params()
    assert net.forward(params, {}, tree=((0, 1), 2))["h"].shape == (5, 4)
    m = rnngraph.parse("tree n\nx: 3, h: 4, s: 4, y: 3\nh(n) = tanh(A h(left(n)) + B "
                       "h(right(n)) + U x(n))\nC = h(root)\ns(t) = tanh(S s(t-1) + R y(t-1) + C)\n"
                       "o(t) = softmax(V s(t))\nL(t) = cross_entropy(o(t), y(t))\nfree y -> o\no: 3")
    net = m.compile(dtype="float64")
    params = net.init_params(seed=2)
    x = np.random.default_rng(3).normal(size=(4, 2, 3))
    y = np.eye(3)[np.random.default_rng(4).integers(0, 3, (4, 2))]
    given = (0, (1, (2, 3)))
    trained = net.forward(params, {"x": x, "y": y}, tree=given)["C"]
    free = net.forward(params, {"x": x}, tree=given, mode="free", steps={"t": 4})["C"]
    balanced = net.forward(params, {"x": x, "y": y})["C"]
    assert np.array_equal(free, trained) and not np.allclose(free, balanced)


def test_the_tree_beside_the_chain(tmp_path):
    """--chain: the balanced tree over 8 leaves (depth 3) beside the chain over the same
    inputs (depth 7), each titled with its depth, as section 10.6 compares them."""
    m = rnngraph.load(TREE)
    assert Tree.chain(8).depth == 7 and Tree.chain(8).children[8:10] == ((0, 1), (8, 2))
    d = drawing_of(m, 8, chain=True)
    titles = [i["label"] for i in d.nodes.values() if i["kind"] == "title"]
    assert titles == ["a balanced tree: depth 3", "the chain: depth 7"]
    parts = {p: [n for n, i in d.nodes.items() if i.get("part") == p and i.get("name") == "h"]
             for p in (0, 1)}
    assert [len(v) for v in parts.values()] == [15, 15]
    ys = {p: {float(d.agraph.get_node(n).attr["pos"].split(",")[1]) for n in v}
          for p, v in parts.items()}
    assert (len(ys[0]), len(ys[1])) == (4, 8)                  # rows: its levels
    assert main(["draw", str(TREE), "--unroll", "8", "--chain", "-o", str(tmp_path / "c.svg")]) == 0
    with pytest.raises(RnnGraphError, match="--chain draws a recursive network over a tree"):
        drawing_of(rnngraph.load(EXAMPLES / "elman.rnn"), 3, chain=True)
