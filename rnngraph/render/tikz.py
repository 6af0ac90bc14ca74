"""A drawing as a TikZ picture: Graphviz's positions, every label real LaTeX math.

``rnngraph draw eqs.rnn --unroll 3 -o fig.tex`` writes a ``tikzpicture`` to
``\\input`` in a beamer frame or an article, so the figure is set in the
document's own font and size: names as ``$h_{1}^{(2)}$``, weights as
``$W_{hh}^\\top$``.  Positions, node sizes and edge curves are Graphviz's
layout (the same as the svg/pdf/png output), scaled for the target of
``--fit`` (the beamer frame unless another is given), where the document's
body text is what the drawing's names were measured at.

With ``reveal=True`` every element of step k is wrapped in beamer's
``\\visible<k->{...}``: one picture whose steps appear one slide after
another, each slide the same size, nothing moving.

The preamble needs ``\\usepackage{tikz}``, ``\\usepackage{amsmath}`` (beamer
loads it) and ``\\usetikzlibrary{shapes.geometric,arrows.meta}``.

Examples
--------
>>> from rnngraph import parse
>>> from rnngraph.render import layout
>>> tex = tikz(layout(parse("h(t) = tanh(W h(t-1) + U x(t))"), unroll=2))
>>> tex.splitlines()[3]
'\\\\begin{tikzpicture}[x=1bp, y=1bp, >={Stealth[length=4.5bp, width=3.5bp]}]'
>>> "{$h^{(2)}$}" in tex and "{$W$}" in tex
True
"""
from __future__ import annotations

import re

import pygraphviz as pgv

from ..lang.names import latex_name
from .cells import CELL
from .drawing import POINTS, Drawing, step_text
from .geometry import parse_pos
from .metrics import TARGETS, fit_scale
from .labels import split_block
from .output import edge_step, step_of
from .quiet import graphviz_stderr

_SHAPES = {"ellipse": "ellipse", "box": "rectangle", "circle": "circle", "square": "rectangle",
           "plaintext": "rectangle", "none": "rectangle", "point": "circle"}


def _color(value: str | None) -> str | None:
    """A Graphviz colour as TikZ: ``#d9ecff`` -> ``{rgb,255:red,217;green,236;blue,255}``."""
    if not value or value in ("none", "transparent"):
        return None
    m = re.fullmatch(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})", value)
    if m:
        r, g, b = (int(x, 16) for x in m.groups())
        return f"{{rgb,255:red,{r};green,{g};blue,{b}}}"
    return value


def _math_time(text: str | None) -> str | None:
    """``(t−1)``, ``(τ)``, ``→(0)`` as LaTeX: the Unicode minus as ``-``, τ and → as
    commands (pdflatex reads no Unicode in math)."""
    if text is None:
        return None
    return text.replace("−", "-").replace("τ", r"\tau ").replace("→", r"\to ").replace(" )", ")")


def _node_text(info: dict) -> str:
    if info.get("marker"):
        return ""
    if info["kind"] == "stub":
        return r"$\cdots$"
    if info.get("tex") is not None:              # the op view's ops, weights and reads
        return "$" + info["tex"] + "$"
    shown = _math_time(info.get("shown"))
    name = "cell" if info["name"] == CELL else info["name"]
    return "$" + latex_name(name, shown) + "$"


def _edge_text(edge: dict, steps: int | None, style, nodes: dict) -> str:
    if edge.get("carried"):
        t = nodes[edge["tail"]]["t"]
        return "$" + latex_name(edge["carried"], _math_time(step_text(style, t, steps))) + "$"
    if edge.get("over"):
        return (r"$\frac{1}{\tau}" if edge.get("mean") else "$") + r"\sum_{" + edge["over"] + "}$"
    if edge.get("attend"):                       # attention's weight a(u, t) of h(t)
        name, u, t = edge["attend"]
        step = r"\cdot" if t == "·" else str(t)
        return "$" + latex_name(name, f"({u},{step})") + "$"
    parts = []
    weight = edge.get("weight")
    block = split_block(weight)
    if block:
        part = latex_name(block[1]) if block[1] != "·" else r"\cdot"
        parts.append(latex_name(block[0], r"\top" if edge.get("transpose") else None)
                     + r"{\scriptstyle[" + part + "]}")
    elif weight is not None:
        unit = re.fullmatch(r"diag\(([^\W\d]\w*)\)|([^\W\d]\w*)⊙", weight)
        if unit and unit.group(1):
            parts.append(r"\operatorname{diag}(" + latex_name(unit.group(1)) + ")")
        elif unit:
            parts.append(latex_name(unit.group(2)) + r" \odot")
        elif re.fullmatch(r"[^\W\d]\w*", weight):
            parts.append(latex_name(weight, r"\top" if edge.get("transpose") else None))
        else:
            parts.append(r"\mathrm{" + weight.replace("_", r"\_") + "}")
    if edge.get("extra"):
        parts.append(r"{\scriptstyle " + _math_time(edge["extra"]) + "}")
    return "$" + r"\,".join(parts) + "$" if parts else ""


def tikz(drawing: Drawing, reveal: bool = False) -> str:
    """``drawing`` as the text of a ``tikzpicture``."""
    style = drawing.style
    with graphviz_stderr():
        out = pgv.AGraph(string=drawing.agraph.draw(format="dot", prog="nop2").decode("utf-8"))
    x0, y0, x1, y1 = map(float, out.graph_attr["bb"].split(","))
    target = TARGETS[style.fit or "beamer"]
    s = fit_scale(x1 - x0, y1 - y0, style.fontsize, target)
    at = lambda x, y: f"({(x - x0) * s:.2f},{(y - y0) * s:.2f})"
    lines = [f"% rnngraph: {drawing.agraph.name} view"
             + (f", steps 1..{drawing.unroll}" if drawing.unroll else "")
             + f"; laid out for {target.what} (names at {style.fontsize * s:.3g} pt).",
             r"% Needs \usepackage{tikz,amsmath} and \usetikzlibrary{shapes.geometric,arrows.meta}"
             + (r"; \visible<k->: beamer." if reveal else "."),
             "% Made by rnngraph: edit the equations and draw again rather than this file.",
             r"\begin{tikzpicture}[x=1bp, y=1bp, >={Stealth[length=4.5bp, width=3.5bp]}"
             + _shrunk(style.fontsize * s, target.body) + "]"]
    if not style.transparent:                  # the background the other formats have
        lines.append(f"\\fill[fill={_color(style.colors['background'])}] {at(x0, y0)} rectangle {at(x1, y1)};")
    for sub in _clusters(out):                 # the op view's frames round each step
        bx0, by0, bx1, by1 = map(float, sub.graph_attr["bb"].split(","))
        fill = _color(sub.graph_attr.get("fillcolor"))
        line = _color(sub.graph_attr.get("color"))
        frame = f"\\draw[rounded corners=4bp{', fill=' + fill if fill else ''}{', draw=' + line if line else ''}] " \
            f"{at(bx0, by0)} rectangle {at(bx1, by1)};"
        label = re.sub(r"<[^>]*>", "", sub.graph_attr.get("label") or "").strip("<> ")
        if label and sub.graph_attr.get("lp"):
            lx, ly = map(float, sub.graph_attr["lp"].split(","))
            frame += f" \\node[text={line or 'gray'}] at {at(lx, ly)} {{${_math_time(label)}$}};"
        lines.append(frame)
    ids = {}

    def wrap(step: int, text: str) -> str:
        return text if not reveal or step <= 1 else f"\\visible<{step}->{{{text}}}"

    for k, n in enumerate(out.nodes()):
        nid = str(n)
        info = drawing.nodes.get(nid, {"kind": "sequence", "t": None, "name": None})
        a = drawing.agraph.get_node(nid).attr
        if "invis" in (n.attr.get("style") or ""):
            continue
        ids[nid] = f"n{k}"
        x, y = map(float, n.attr["pos"].split(","))
        w, h = float(n.attr["width"]) * POINTS * s, float(n.attr["height"]) * POINTS * s
        shape = a.get("shape") or "ellipse"
        opts = [_SHAPES.get(shape, "ellipse"), f"minimum width={w:.2f}bp", f"minimum height={h:.2f}bp",
                "inner sep=0pt"]
        styles = (a.get("style") or "").split(",")
        line, fill = _color(a.get("color")), _color(a.get("fillcolor")) if "filled" in styles else None
        if line and float(a.get("penwidth") or 1) > 0:
            opts.append(f"draw={line}")
            opts.append(f"line width={float(a.get('penwidth') or 1) * s:.2f}bp")
        if fill:
            opts.append(f"fill={fill}")
        if "dashed" in styles:
            opts.append("dashed")
        if "rounded" in styles:
            opts.append("rounded corners=6bp")
        text_color = _color(a.get("fontcolor"))
        if text_color and text_color != "black":
            opts.append(f"text={text_color}")
        text = _node_text(info)
        lines.append(wrap(step_of(info), f"\\node[{', '.join(opts)}] ({ids[nid]}) at {at(x, y)} {{{text}}};"))
    keyed = {e["key"]: e for e in drawing.edges}
    for u, v, key in out.edges(keys=True):
        e = out.get_edge(u, v, key)
        edge = keyed.get(str(key), {})
        if "invis" in (e.attr.get("style") or ""):    # a layout hint, not part of the picture
            continue
        a = drawing.agraph.get_edge(u, v, key).attr
        pts, start, end = parse_pos(e.attr["pos"])
        path = (f"{at(*start)} -- " if start is not None else "") + at(*pts[0])
        for i in range(1, len(pts) - 2, 3):
            path += f" .. controls {at(*pts[i])} and {at(*pts[i + 1])} .. {at(*pts[i + 2])}"
        if end is not None:
            path += f" -- {at(*end)}"
        tips = ("<" if start is not None else "") + "-" + (">" if end is not None else "")
        color = _color(a.get("color")) or _color(drawing.agraph.edge_attr.get("color"))
        width = float(drawing.agraph.edge_attr.get("penwidth") or 1.2) * s
        opts = [f"line width={width:.2f}bp"] + ([tips] if tips != "-" else []) \
            + ([f"draw={color}"] if color else [])
        step = edge_step(drawing, str(u), str(v))
        body = f"\\draw[{', '.join(opts)}] {path};"
        text = _edge_text(edge, drawing.unroll, style, drawing.nodes) if e.attr.get("label") else ""
        if text and e.attr.get("lp"):
            fc = _color(a.get("fontcolor")) or _color(drawing.agraph.edge_attr.get("fontcolor"))
            body += f" \\node[inner sep=0pt{', text=' + fc if fc else ''}] at {at(*map(float, e.attr['lp'].split(',')))} {{{text}}};"
        lines.append(wrap(step, body))
    lines.append(r"\end{tikzpicture}")
    # words upright in the text's own face (\mathrm is serif inside beamer's sans slides)
    return "\n".join(lines).replace(r"\mathrm{", r"\text{") + "\n"


def _shrunk(names_pt: float, body: float) -> str:
    """The picture's text size where the drawing had to be made smaller than the body text to fit
    (two graphs side by side): the document's own text would overrun the nodes.  Else nothing."""
    if names_pt >= body - 0.05:
        return ""
    return (", every node/.append style={font=\\fontsize{" + f"{names_pt:.2f}" + "}{"
            + f"{1.2 * names_pt:.2f}" + "}\\selectfont}")


def _clusters(graph):
    """The clusters of ``graph`` (an AGraph read back from Graphviz), at any depth, with a frame."""
    for sub in graph.subgraphs():
        if sub.name.startswith("cluster") and sub.graph_attr.get("peripheries") != "0":
            yield sub
        yield from _clusters(sub)
