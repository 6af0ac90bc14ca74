"""The ``rnngraph`` command line.

Bad input prints ``FILE:LINE:COL: error: MESSAGE``, the source line and a
caret, and exits with status 2; it never shows a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import RnnGraphError
from .limits import Limits, option as limit_option
from .model import load


def sizes_arg(text: str) -> dict[str, int]:
    """``x=10,h=32`` -> ``{"x": 10, "h": 32}``."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(
                f"expected NAME=SIZE with a positive whole SIZE, as in x=10,h=32; got {item!r}")
        out[name.strip()] = int(value)
    return out


def _limits(args) -> Limits:
    return Limits(**{k: v for given in args.limit for k, v in given.items()})


def _check(args) -> int:
    model = load(args.file, args.sizes, _limits(args))
    if args.text:
        sys.stdout.write(model.to_text())
    elif args.latex:
        sys.stdout.write(model.to_latex())
    else:
        print(model.summary())
    return 0


def _draw(args) -> int:
    from pathlib import Path

    from .render import layout, render, Style
    from .render.output import format_of, write_atomic
    from .render.stats import measure, report

    model = load(args.file, args.sizes, _limits(args))
    if args.output == "-":
        fmt = args.format or "svg"
    elif args.output:
        fmt = args.format or format_of(args.output)
    else:
        fmt = args.format or "svg"
    style = Style.of(theme=args.theme, transparent=args.transparent, font=args.font,
                     fontsize=args.fontsize, delay_marker=args.delay_marker,
                     time_labels=args.time_labels, stubs=args.stubs, detail=args.detail)
    drawing = layout(model, args.unroll, style)
    data = render(drawing, fmt)
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out = args.output or f"{Path(args.file).stem}{'-unrolled' if args.unroll else ''}.{fmt}"
        print(write_atomic(data, out, protect=[args.file]))
    if args.stats:
        figures = measure(drawing, data if fmt == "svg" else None)
        print(report(figures), file=sys.stderr if args.output == "-" else sys.stdout)
    return 0


def _compile(args) -> int:
    net = load(args.file, limits=_limits(args)).compile(
        sizes=args.sizes, dtype=args.dtype, optimize=not args.plain, backend=args.backend)
    sys.stdout.write(net.source)
    return 0


def _steps(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of steps, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnngraph", description="Recurrent networks written as equations: check, draw, compile.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="parse and check a file, print its symbols, states and sizes")
    check.add_argument("file", help="the equation file (UTF-8)")
    check.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                       help="give or override sizes")
    show = check.add_mutually_exclusive_group()
    show.add_argument("--text", action="store_true", help="print the canonical form instead")
    show.add_argument("--latex", action="store_true", help="print a LaTeX aligned block instead")
    check.set_defaults(run=_check)

    draw = sub.add_parser("draw", help="draw the folded or unrolled graph (svg, pdf, png, dot)")
    draw.add_argument("file", help="the equation file (UTF-8)")
    draw.add_argument("--unroll", type=_steps, metavar="N", help="draw steps 1..N side by side")
    draw.add_argument("-o", "--output", metavar="OUT",
                      help="where to write (its extension picks the format; - for stdout); "
                           "default: FILE's stem in the current folder")
    draw.add_argument("--format", choices=("svg", "pdf", "png", "dot"), help="the output format")
    draw.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                      help="give or override sizes")
    draw.add_argument("--detail", choices=("vars", "ops"), help="a node per variable (default) "
                      "or per operation")
    draw.add_argument("--time-labels", choices=("absolute", "relative"),
                      help="steps as 1..N (default) or t-1, t, t+1")
    draw.add_argument("--stubs", action="store_true", help="draw ... at both ends of the recurrences")
    draw.add_argument("--delay-marker", choices=("square", "label"),
                      help="a black square on recurrent edges (default) or t-1 written")
    draw.add_argument("--theme", choices=("default", "mono", "dark"), help="colours")
    draw.add_argument("--transparent", action="store_true", help="no background")
    draw.add_argument("--font", help="font family (default DejaVu Serif)")
    draw.add_argument("--fontsize", type=float, help="font size in points (default 16)")
    draw.add_argument("--stats", action="store_true",
                      help="print the quality figures: alignment, crossings, text size on a slide")
    draw.set_defaults(run=_draw)

    comp = sub.add_parser("compile", help="print the generated NumPy forward and backward passes")
    comp.add_argument("file", help="the equation file (UTF-8)")
    comp.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                      help="give or override sizes")
    comp.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                      help="the arrays' dtype (default float64)")
    comp.add_argument("--backend", choices=("numpy", "numba"), default="numpy",
                      help="numba: also the loops Numba compiles for a batch of one")
    comp.add_argument("--plain", action="store_true",
                      help="no optimisation: every block a loop over t (for debugging)")
    comp.set_defaults(run=_compile)
    for command in (check, draw, comp):
        command.add_argument("--limit", type=limit_option, action="append", default=[],
                             metavar="NAME=N", help="raise a limit, as in delay=5000 (repeatable): "
                             "source_bytes, equations, delay, size, parameter_elements, unroll, "
                             "drawn_nodes, edge_labels; see README")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except RnnGraphError as err:
        for d in err.diagnostics:
            text = d.render_one()
            print(text if d.location else f"rnngraph: {text}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
