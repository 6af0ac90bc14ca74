"""The trees a recursive network runs over (``tree n``, issue 18; the book's figure 10.14).

A tree's nodes are numbered leaves first, in the order of the inputs (x(1..tau) sit at
leaves 1..tau), then the inner nodes level by level (a node's level is one more than its
children's highest; a leaf's is 0), the root last: the order of the outputs over the tree,
and why ``h(root)`` is the last node, as ``h(end)`` is the last step.  The generated code
runs one level at a time, every node of a level in one product: it gets the slots of each
level's nodes, every slot's children's slots and the leaves' (:func:`structure`).

A tree is given as nested tuples of the leaves' positions (from 0: ``((0, 1), (2, 3))``), or
as a parent array, a list or a NumPy array (``parents[k]`` the parent of node k, the leaves
0..tau-1 first, -1 at the root; a node's left child is the one over the earlier inputs, and
the inner nodes are numbered anew, as below), or left out: the balanced binary tree over the inputs, of depth ceil(log2 tau), adjacent
nodes paired level by level (an odd one carried up).  Every example of a batch has one tree.

Examples
--------
>>> t = Tree.balanced(5)
>>> t.children
((-1, -1), (-1, -1), (-1, -1), (-1, -1), (-1, -1), (0, 1), (2, 3), (5, 6), (7, 4))
>>> t.levels
((0, 1, 2, 3, 4), (5, 6), (7,), (8,))
>>> Tree.of(((0, 1), 2)).children[3:]
((0, 1), (3, 2))
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import RnnGraphError


@dataclass(frozen=True)
class Tree:
    """A binary tree over ``leaves`` leaves: each node's (left, right) children, -1 for
    none (a leaf's; an inner node may have one child), nodes numbered as the module says."""

    leaves: int
    children: tuple

    @property
    def nodes(self) -> int:
        return len(self.children)

    @property
    def levels(self) -> tuple:
        """The nodes of each level, from the leaves' (0) up to the root's."""
        level: list[int] = []
        for left, right in self.children:
            level.append(1 + max(level[c] for c in (left, right) if c >= 0)
                         if max(left, right) >= 0 else 0)
        return tuple(tuple(k for k, lv in enumerate(level) if lv == d)
                     for d in range(max(level, default=-1) + 1))

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    @staticmethod
    def balanced(leaves: int) -> "Tree":
        """The balanced binary tree over ``leaves`` leaves: adjacent nodes paired, level by
        level, an odd one out carried to the next; depth ceil(log2 leaves)."""
        if leaves < 1:
            raise RnnGraphError("a tree has at least one leaf: give at least one input step")
        children = [(-1, -1)] * leaves
        frontier = list(range(leaves))
        while len(frontier) > 1:
            up = []
            for k in range(0, len(frontier) - 1, 2):
                children.append((frontier[k], frontier[k + 1]))
                up.append(len(children) - 1)
            if len(frontier) % 2:
                up.append(frontier[-1])
            frontier = up
        return Tree(leaves, tuple(children))

    @staticmethod
    def chain(leaves: int) -> "Tree":
        """The chain over ``leaves`` leaves, a recurrent network's order as a tree: each inner
        node combines the one before and the next leaf, ((x1, x2), x3), ...; depth leaves - 1."""
        children = [(-1, -1)] * leaves
        last = 0
        for k in range(1, leaves):
            children.append((last, k))
            last = len(children) - 1
        return Tree(leaves, tuple(children))

    @staticmethod
    def of(tree, leaves: int | None = None) -> "Tree":
        """A tree from nested tuples of leaf positions or a parent array (see the module)."""
        if isinstance(tree, Tree):
            found = tree
        elif isinstance(tree, (list, np.ndarray)) and all(_is_int(p) for p in tree):
            found = _from_parents([int(p) for p in tree])      # a list: a parent array
        elif isinstance(tree, tuple) or _is_int(tree):
            found = _from_nested(tree)                         # tuples: the nesting
        else:
            raise RnnGraphError(f"a tree is nested tuples of leaf positions, ((0, 1), 2), or a "
                                f"parent array (a list), [3, 3, 4, 4, -1]; not {tree!r}")
        if leaves is not None and found.leaves != leaves:
            raise RnnGraphError(f"the tree has {found.leaves} leaves, but the inputs over it have "
                                f"{leaves} steps: one leaf a step")
        return found


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _from_nested(tree) -> Tree:
    """A tree from nested tuples, walked with a stack (a tree thousands deep is no error)."""
    kids: dict[int, list] = {}          # an inner node's id -> its children's keys
    seen: list[int] = []
    root_key = None
    stack = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        if _is_int(node):
            key = ("leaf", int(node))
            seen.append(int(node))
        elif isinstance(node, tuple) and 1 <= len(node) <= 2:
            key = ("inner", len(kids))
            kids[key[1]] = [None] * len(node)
            stack.extend((c, (key[1], k)) for k, c in reversed(list(enumerate(node))))
        else:
            raise RnnGraphError(f"a node of a tree is a leaf's position or a pair of nodes (one "
                                f"child at most is missing); not {node!r}")
        if parent is None:
            root_key = key
        else:
            kids[parent[0]][parent[1]] = key
    leaves = len(seen)
    if sorted(seen) != list(range(leaves)):
        raise RnnGraphError(f"the leaves of a tree are the positions 0..{leaves - 1} of the "
                            f"inputs, each once; this tree has {sorted(seen)}")
    return _numbered(leaves, kids, root_key)


def _numbered(leaves: int, kids: dict, root_key) -> Tree:
    """The tree with its nodes numbered as the module says: leaves in the inputs' order, then
    the inner nodes level by level (in the order they were found), the root last."""
    if root_key[0] == "leaf":
        return Tree(1, ((-1, -1),))
    height: dict[int, int] = {}
    order = sorted(kids)
    for i in sorted(kids, reverse=True):            # children were found after their parents
        height[i] = 1 + max(0 if k[0] == "leaf" else height[k[1]] for k in kids[i])
    order = sorted(kids, key=lambda i: (height[i], i))
    number = {i: leaves + r for r, i in enumerate(order)}
    key = lambda k: k[1] if k[0] == "leaf" else number[k[1]]  # noqa: E731
    children = [(-1, -1)] * leaves
    for i in order:
        ks = [key(k) for k in kids[i]]
        children.append((ks[0], ks[1] if len(ks) > 1 else -1))
    return Tree(leaves, tuple(children))


def _from_parents(parents: list[int]) -> Tree:
    """A tree from a parent array.  A node's children are ordered by the inputs they cover:
    the left child is the one whose leftmost leaf comes first, so that any binary tree over
    the sequence can be said, whatever the numbering of its inner nodes."""
    n = len(parents)
    roots = [k for k, p in enumerate(parents) if p < 0]
    if len(roots) != 1:
        raise RnnGraphError(f"a parent array has one root (parent -1); this one has {len(roots)}")
    kids: list[list[int]] = [[] for _ in range(n)]
    for k, p in enumerate(parents):
        if p >= n or p == k:
            raise RnnGraphError(f"node {k} has parent {p}, which is not another node of the tree")
        if p >= 0:
            kids[p].append(k)
    if any(len(c) > 2 for c in kids):
        k = next(k for k, c in enumerate(kids) if len(c) > 2)
        raise RnnGraphError(f"node {k} has {len(kids[k])} children; a node of a binary tree has "
                            "two at most")
    leaves = sum(1 for c in kids if not c)
    if any(kids[k] for k in range(leaves)) or any(not kids[k] for k in range(leaves, n)):
        raise RnnGraphError("a parent array numbers the leaves first (0..tau-1, the inputs' "
                            "order), then the inner nodes")
    order, seen, stack = [], set(), [roots[0]]
    while stack:                        # every node under the root, parents before children
        k = stack.pop()
        if k in seen:
            raise RnnGraphError("a parent array is a tree: no node is its own ancestor")
        seen.add(k)
        order.append(k)
        stack.extend(kids[k])
    if len(seen) != n:
        raise RnnGraphError("a parent array is a tree: every node leads up to the root")
    first = list(range(n))              # each node's leftmost leaf, children before parents
    for k in reversed(order):
        if kids[k]:
            first[k] = min(first[c] for c in kids[k])
    for k in range(n):                  # left to right: by the inputs each child covers
        kids[k].sort(key=first.__getitem__)
    found, stack = [], [roots[0]]       # inner nodes found left to right, parents first
    while stack:
        k = stack.pop()
        if kids[k]:
            found.append(k)
            stack.extend(reversed(kids[k]))
    ids = {k: i for i, k in enumerate(found)}
    inner = {ids[k]: [("leaf", c) if not kids[c] else ("inner", ids[c]) for c in kids[k]]
             for k in found}
    root = ("leaf", roots[0]) if not kids[roots[0]] else ("inner", ids[roots[0]])
    return _numbered(leaves, inner, root)


def structure(tree: Tree, before: int, after: int) -> tuple:
    """What the generated code reads of ``tree``: (the slots of each level's nodes, every
    slot's left and right children's slots, the leaves' slots), for arrays with ``before``
    slots before node 0 (its initial values, at slot before - 1: what a leaf reads as its
    children) and ``after`` after the last node."""
    size = before + tree.nodes + after
    left = np.full(size, before - 1, dtype=np.intp)
    right = np.full(size, before - 1, dtype=np.intp)
    for k, (a, b) in enumerate(tree.children):
        if a >= 0:
            left[before + k] = before + a
        if b >= 0:
            right[before + k] = before + b
    levels = [np.asarray(level, dtype=np.intp) + before for level in tree.levels]
    leaves = np.arange(tree.leaves, dtype=np.intp) + before
    for a in (left, right, leaves, *levels):
        a.flags.writeable = False
    return levels, left, right, leaves


def trees_of(tree, indices: list[str]) -> dict:
    """``tree=`` of forward and vjp, as {index: tree or None}: one tree (for a model over
    one tree's index) or a dict by index."""
    if tree is None:
        return {}
    if isinstance(tree, Mapping):
        for i in tree:
            if i not in indices:
                raise RnnGraphError(f"'{i}' is not a tree's index of this model (its trees: "
                                    f"{', '.join(indices) or 'none'})")
        return dict(tree)
    if len(indices) != 1:
        raise RnnGraphError("this model has " + ("no tree" if not indices else
                                                 f"trees over {', '.join(indices)}: give "
                                                 "tree={index: tree}"))
    return {indices[0]: tree}
