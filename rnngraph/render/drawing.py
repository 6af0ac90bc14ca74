"""What every layout makes: a :class:`Drawing`, its nodes' ids, its graph, its step labels.

Shared by layout.py (the variables' view) and opview.py (the operations' view).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pygraphviz as pgv

from .fonts import family
from .labels import time_text
from .style import Style

POINTS = 72.0                  # Graphviz sizes are in inches; positions in points


@dataclass
class Drawing:
    """A laid-out drawing: the Graphviz graph with positions, and what each node shows.

    Attributes
    ----------
    agraph : pygraphviz.AGraph
        Every node and edge has ``pos`` (and edges with a label ``lp``), in points.
    nodes : dict of str to dict
        For each node id: ``name``, ``t`` (None when folded or time-free), ``kind``,
        ``col`` and ``row`` (unrolled view), ``marker`` (a delay marker, not a variable).
    edges : list of dict
        ``tail``, ``head``, ``delay``, ``weight``, ``key`` (the Graphviz edge key).
    unroll : int or None
    style : Style
    """

    agraph: pgv.AGraph
    nodes: dict[str, dict] = field(default_factory=dict)
    edges: list[dict] = field(default_factory=list)
    unroll: int | None = None
    style: Style = field(default_factory=Style)
    spacing: tuple[float, float] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    label_sizes: dict[str, tuple] = field(default_factory=dict)
    size: tuple[float, float] | None = None       # natural size, margin included (output.natural_size)


def node_id(name: str, t: int | None) -> str:
    """``h1`` folded or time-free, ``h1.3`` at step 3, ``h1.0`` for its initial value."""
    return name if t is None else f"{name}.{t}"


def new_graph(style: Style, name: str) -> pgv.AGraph:
    """An empty Graphviz graph in ``style``."""
    A = pgv.AGraph(directed=True, strict=False, name=name)
    A.graph_attr.update(style.graph_attrs())
    A.node_attr.update(fontname=family(style.font), fontsize=str(style.fontsize), margin="0.05,0.03",
                       height="0.42", width="0.42")
    A.edge_attr.update(style.edge_attrs())
    return A


def step_text(style: Style, t: int | None, steps: int | None) -> str | None:
    """The step a node shows: ``(t)`` folded, ``(t-1)`` or ``(2)`` unrolled (style.time_labels)."""
    if t is None:
        return None
    if steps is None:
        return "(t)"
    if style.time_labels == "absolute":
        return f"({time_text(t, absolute=True)})"
    return f"({time_text(t - (steps + 1) // 2)})"
