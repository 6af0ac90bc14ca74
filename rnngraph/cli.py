"""The ``rnngraph`` command line.

Bad input prints ``FILE:LINE:COL: error: MESSAGE``, the source line and a
caret, and exits with status 2; it never shows a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import RnnGraphError
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


def _check(args) -> int:
    model = load(args.file, args.sizes)
    if args.text:
        sys.stdout.write(model.to_text())
    elif args.latex:
        sys.stdout.write(model.to_latex())
    else:
        print(model.summary())
    return 0


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
