"""The ``rnngraph`` command line.

Bad input prints ``FILE:LINE:COL: error: MESSAGE``, the source line and a
caret, and exits with status 2; it never shows a traceback.  So does anything
else that goes wrong for a reason outside rnngraph, with ``rnngraph: error:
MESSAGE``: a file that cannot be read or written, a standard output that
fails (a full disk); a bad option is argparse's usage error, also status 2.
A bug in rnngraph is one line too, ``rnngraph: internal error: ...``, with
status 70 (``RNNGRAPH_TRACEBACK=1`` shows the traceback instead).  What is
printed escapes control characters and undecodable bytes of file names
(:func:`rnngraph.errors.printable`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import warnings
import re
import sys

from .errors import RnnGraphError, printable
from .check.limits import CEILING, Limits, option as limit_option
from .check.model import load
from .render.style import FONTSIZES, check_font, check_fontsize

#: The exit status of a bug in rnngraph (sysexits.h EX_SOFTWARE); bad input exits with 2.
INTERNAL_ERROR = 70

_WHOLE = re.compile(r"[0-9]+")
_SIZE_DIGITS = 18                # sizes below 10**18 fit NumPy's int64 shapes


def sizes_arg(text: str) -> dict[str, int | tuple[int, int]]:
    """``x=10,h=32`` -> ``{"x": 10, "h": 32}``; a memory's rows and columns, ``M=8x16``, ->
    ``{"M": (8, 16)}``."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = (part.strip() for part in item.partition("="))
        parts = [p.strip() for p in re.split("[x\u00D7]", value)]
        numbers = [p.lstrip("0") for p in parts]
        if not eq or not name or len(parts) > 2 or not all(_WHOLE.fullmatch(p) for p in parts) \
                or not all(numbers):
            raise argparse.ArgumentTypeError(
                f"expected NAME=SIZE with a positive whole SIZE (or ROWSxCOLUMNS, as in M=8x16), "
                f"as in x=10,h=32; got {item!r}")
        if any(len(d) > _SIZE_DIGITS for d in numbers):
            raise argparse.ArgumentTypeError(f"a size has at most {_SIZE_DIGITS} digits; got {item!r}")
        out[name] = tuple(map(int, numbers)) if len(parts) == 2 else int(numbers[0])
    return out


def _limits(args) -> Limits:
    return Limits(**{k: v for given in args.limit for k, v in given.items()})


def _steps(text: str) -> int | dict:
    """A whole number of steps, or one per index, ``t=4,u=3`` (an encoder's and a decoder's);
    how many may be drawn is the limit unroll (--limit)."""
    if "=" in text:
        out = {}
        for part in text.split(","):
            index, eq, n = part.partition("=")
            index = index.strip()
            if not eq or not index.isidentifier() or index in out:
                raise argparse.ArgumentTypeError(
                    f"expected N or steps per index, as in t=4,u=3; got {text!r}")
            out[index] = _steps(n.strip())
        return out
    digits = text.lstrip("0")
    if not _WHOLE.fullmatch(text) or not digits or len(digits) > 16 or int(digits) > CEILING:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number of steps, got {text!r}")
    return int(digits)


def _fontsize(text: str) -> float:
    try:
        return check_fontsize(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in points from {FONTSIZES[0]:g} to "
                                         f"{FONTSIZES[1]:g}, got {text!r}") from None


def _font(text: str) -> str:
    try:
        return check_font(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _dpi(text: str) -> float:
    from .render.output import DPI
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not DPI[0] <= value <= DPI[1]:
        raise argparse.ArgumentTypeError(f"expected a resolution from {DPI[0]} to {DPI[1]} dpi, got {text!r}")
    return value


def _emit(data: str | bytes) -> None:
    """Write to standard output; a failure (a full disk) is an error of the run, not a traceback."""
    try:
        if sys.stdout is None:
            raise OSError("it is closed")
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        raise                         # `rnngraph check f | head`: main ends quietly
    except OSError as err:
        _silence_stdout()
        raise RnnGraphError(f"cannot write to standard output: {err.strerror or err}") from None


def _silence_stdout() -> None:
    """Point the process's standard output at /dev/null, so that Python's own flush at exit
    does not fail again with "Exception ignored ..." (Python's documented fix for EPIPE)."""
    if sys.stdout is None or sys.stdout is not sys.__stdout__:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _check(args) -> int:
    model = load(args.file, args.sizes, _limits(args))
    if args.text:
        _emit(model.to_text())
    elif args.latex:
        _emit(model.to_latex())
    else:
        _emit(printable(model.summary()) + "\n")     # it names the file
    return 0


def _draw(args) -> int:
    from pathlib import Path

    from dataclasses import fields

    from .render import drawing_of, render, Style
    from .render.output import FORMATS, format_of, write_atomic
    from .render.stats import measure, report

    if args.file == "-" and not args.output:
        raise RnnGraphError("the equations come from standard input: name the drawing with -o "
                            "(- for standard output)")
    model = load(args.file, args.sizes, _limits(args))
    if args.output == "-":
        fmt = args.format or "svg"
    elif args.output:
        fmt = args.format or format_of(args.output)
        named = Path(args.output).suffix.lower().lstrip(".")
        if named in FORMATS and named != fmt:     # a PDF named .png opens nowhere
            raise RnnGraphError(f"-o {printable(args.output)} names a .{named} file but --format "
                                f"asks for {fmt}: make them agree (or leave out --format)")
    else:
        fmt = args.format or "svg"
    style = Style.of(theme=args.theme, transparent=args.transparent, font=args.font,
                     fontsize=args.fontsize, delay_marker=args.delay_marker,
                     time_labels=args.time_labels, stubs=args.stubs, detail=args.detail,
                     fit=args.fit)
    if args.reveal and not args.unroll:
        raise RnnGraphError("--reveal shows the steps one by one: give --unroll N")
    if args.reveal and any(d.tree for d in model.program.indices):
        raise RnnGraphError(f"{model.filename}: --reveal shows the steps one by one, and a tree "
                            "is drawn level by level, whole: draw it without --reveal")
    if args.reveal and fmt != "tex" and args.output == "-":
        raise RnnGraphError("--reveal writes one file per step: name them with -o (fig.pdf gives "
                            "fig-1.pdf, fig-2.pdf, ...), or write one beamer picture with -o fig.tex")
    drawing = drawing_of(model, args.unroll, args.mode, args.chain,
                         **{f.name: getattr(style, f.name) for f in fields(style)})
    frames = args.reveal and fmt != "tex"
    data = None if frames else render(drawing, fmt, dpi=args.dpi, reveal=args.reveal)
    if args.output == "-":
        _emit(data)
    else:
        out = Path(args.output or f"{Path(args.file).stem}{'-unrolled' if args.unroll else ''}.{fmt}")
        protect = [args.file] if args.file != "-" else [fd for fd in [_stdin_fd()] if fd is not None]
        if frames:                                 # every frame made first: a failure writes none
            frames = [render(drawing, fmt, dpi=args.dpi, upto=k) for k in range(1, drawing.unroll + 1)]
            for k, frame in enumerate(frames, 1):
                _emit(printable(str(write_atomic(frame, out.with_name(f"{out.stem}-{k}{out.suffix}"),
                                                 protect))) + "\n")
        else:
            _emit(printable(str(write_atomic(data, out, protect))) + "\n")
    if args.stats:
        figures = measure(drawing, data if fmt == "svg" and data is not None else None)
        text = json.dumps(figures, indent=1) if args.json else report(figures)
        if args.output == "-":
            print(text, file=sys.stderr)
        else:
            _emit(text + "\n")
    return 0


def _gradflow(args) -> int:
    from pathlib import Path

    from .gradflow import RADII, gradient_flow, plot, pyplot

    pyplot()                         # matplotlib there, and the output nameable, before the runs
    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise RnnGraphError(f"-o {printable(args.output)}: the plot is a .png, .pdf or .svg file")
    if any(out.resolve() == Path(f).resolve() for f in args.files if f != "-"):
        raise RnnGraphError(f"-o {printable(args.output)} is an input file: name another")
    if not out.resolve().parent.is_dir():
        raise RnnGraphError(f"-o {printable(args.output)}: no folder {printable(str(out.parent))}")
    flows = {}
    for k, file in enumerate(args.files):
        model = load(file, args.sizes, _limits(args))
        name = Path(file).stem if file != "-" else "stdin"
        name = name if name not in flows else f"{name} ({k + 1})"     # a panel each
        flows[name] = gradient_flow(model, steps=args.steps, radii=args.radii or RADII,
                                    loss=args.loss, state=args.state)
    plot(flows, out, state=args.state or "h")
    _emit(printable(str(out)) + "\n")
    if args.print:
        for name, flow in flows.items():
            for label, norms in flow.items():
                shown = ", ".join(f"{norms[k - 1]:.3g}" for k in (1, 10, 20, 50, 100) if k <= len(norms))
                _emit(f"{name} {label}: at 1, 10, 20, ... steps back: {shown}\n")
    return 0


def _write_text(data: bytes, args) -> int:
    """``data`` to standard output, or written atomically to ``-o`` (never over the input)."""
    from pathlib import Path

    from .render.output import write_atomic

    if args.output in (None, "-"):
        _emit(data)
        return 0
    protect = [args.file] if args.file != "-" else []
    _emit(printable(str(write_atomic(data, Path(args.output), protect))) + "\n")
    return 0


def _derive(args) -> int:
    model = load(args.file, args.sizes, _limits(args))
    d = model.derive(wrt=args.wrt, loss=args.loss, steps=args.unroll,
                     form="matrix" if args.matrix else "paths")
    if args.check:
        # the printed terms evaluated on a seeded run, against the compiled gradient
        diff = d.check()
        print(f"checked: the printed terms, evaluated on random values, differ from "
              f"{d.against} by at most {diff:.1e} (relative)", file=sys.stderr)
    status = _write_text((d.latex() if args.latex else d.text()).encode("utf-8"), args)
    if args.check and not diff < 1e-6:     # NaN too: a check that failed fails the command
        print("rnngraph: the check failed: the printed terms are not the gradient "
              "(a bug in rnngraph: please report it with the input)", file=sys.stderr)
        return 1
    return status


def _unroll_steps(text: str) -> int | dict:
    """N, or one per index (t=3,u=2), each from 1 to 100: a derivation longer than that
    is no longer read (and the paths form refuses far sooner)."""
    if "=" in text:
        out = {}
        for part in text.split(","):
            index, _, n = part.partition("=")
            index = index.strip()
            if not index.isidentifier() or index in out:
                raise argparse.ArgumentTypeError(f"expected N or steps per index, as in t=3,u=2; "
                                                 f"got {text!r}")
            out[index] = _unroll_steps(n.strip())
        return out
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"--unroll is a whole number from 1 to 100 (or one per "
                                         f"index, t=3,u=2), not {text!r}")
    return int(text)


def _export(args) -> int:
    from .compile.jax_export import jax_source
    from .compile.torch_export import torch_source

    model = load(args.file, args.sizes, _limits(args))
    source = torch_source(model) if args.to == "torch" else jax_source(model)
    return _write_text(source.encode("utf-8"), args)


def _radii(text: str) -> tuple[float, ...]:
    try:
        radii = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"radii are numbers separated by commas, as 0.5,1,1.5; "
                                         f"not {text!r}") from None
    if not all(0 < r < 1e6 for r in radii):
        raise argparse.ArgumentTypeError(f"a spectral radius is a positive number, not {text!r}")
    return radii


def _flow_steps(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"steps is a whole number from 1 to 1000, not {text!r}")
    return int(text)


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _compile(args) -> int:
    net = load(args.file, limits=_limits(args)).compile(
        sizes=args.sizes, dtype=args.dtype, optimize=not args.plain, backend=args.backend)
    _emit(net.source)
    return 0


FILE_HELP = (f"the equation file (UTF-8, at most {Limits().max_source_bytes >> 20} MiB unless "
             "--limit source_bytes says more); - reads standard input")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("rnngraph")
    except PackageNotFoundError:           # run from a checkout that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnngraph", description="Recurrent networks written as equations: check, draw, compile.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="parse and check a file, print its symbols, states and sizes")
    check.add_argument("file", help=FILE_HELP)
    check.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                       help="give or override sizes")
    show = check.add_mutually_exclusive_group()
    show.add_argument("--text", action="store_true", help="print the canonical form instead")
    show.add_argument("--latex", action="store_true", help="print a LaTeX aligned block instead")
    check.set_defaults(run=_check)

    draw = sub.add_parser("draw", help="draw the folded or unrolled graph (svg, pdf, png, dot)")
    draw.add_argument("file", help=FILE_HELP)
    draw.add_argument("--unroll", type=_steps, metavar="N",
                      help="draw steps 1..N side by side (N at most 100 unless --limit unroll says "
                           "more); t=4,u=3 draws 4 steps of t and 3 of u (an encoder and a decoder)")
    draw.add_argument("-o", "--output", metavar="OUT",
                      help="where to write (its extension picks the format; - for stdout; a symlink "
                           "is written through, a device or FIFO written to); "
                           "default: FILE's stem in the current folder")
    draw.add_argument("--format", choices=("svg", "pdf", "png", "dot", "tex"),
                      help="the output format; tex: a TikZ picture to \\input, labels in LaTeX")
    draw.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                      help="give or override sizes")
    draw.add_argument("--detail", choices=("cells", "vars", "ops"),
                      help="a box per step's cell of a gated unit (the default unrolled, for an "
                           "LSTM or GRU), a node per variable (the default otherwise), or per operation")
    draw.add_argument("--mode", choices=("train", "test", "both"), default="train",
                      help="for a model with a 'free y -> o' line: the training graph (teacher "
                           "forcing, the default), the test graph (running free) or both side by side")
    draw.add_argument("--reveal", action="store_true",
                      help="one frame per step, steps 1..k visible, all the same size: "
                           "fig-1.pdf, fig-2.pdf, ... (with -o fig.tex: one beamer picture, \\visible<k->)")
    draw.add_argument("--chain", action="store_true",
                      help="a recursive network over a tree (tree n): the balanced tree over N "
                           "leaves beside the chain over the same inputs (depth log2 N against N)")
    draw.add_argument("--time-labels", choices=("absolute", "relative"),
                      help="steps as 1..N (default) or t-1, t, t+1")
    draw.add_argument("--stubs", action="store_true", help="draw ... at both ends of the recurrences")
    draw.add_argument("--delay-marker", choices=("square", "label"),
                      help="a black square on recurrent edges (default) or t-1 written")
    draw.add_argument("--theme", choices=("default", "mono", "dark"), help="colours")
    draw.add_argument("--transparent", action="store_true", help="no background")
    draw.add_argument("--font", type=_font, help="font family (default DejaVu Serif): letters, "
                      "digits, spaces and _ - . , : = +")
    draw.add_argument("--fontsize", type=_fontsize, metavar="PT",
                      help=f"font size in points, {FONTSIZES[0]:g} to {FONTSIZES[1]:g} (default 16)")
    draw.add_argument("--fit", choices=("beamer", "slide"),
                      help="lay out and size the drawing for a 16:9 beamer frame (11 pt text) or a "
                           "13.33 x 7.5 in slide (18 pt text), under a title: names at the body size")
    draw.add_argument("--dpi", type=_dpi, metavar="DPI", help="the PNG's resolution (default 96)")
    draw.add_argument("--stats", action="store_true",
                      help="print the quality figures: alignment, crossings, text size on a slide")
    draw.add_argument("--json", action="store_true", help="with --stats: print them as JSON")
    draw.set_defaults(run=_draw)

    comp = sub.add_parser("compile", help="print the generated NumPy forward and backward passes")
    comp.add_argument("file", help=FILE_HELP)
    comp.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                      help="give or override sizes")
    comp.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                      help="the arrays' dtype (default float64)")
    comp.add_argument("--backend", choices=("numpy", "numba"), default="numpy",
                      help="numba: also the loops Numba compiles (a few rows; more in parts on threads)")
    comp.add_argument("--plain", action="store_true",
                      help="no optimisation: every block a loop over t (for debugging)")
    comp.set_defaults(run=_compile)
    flow = sub.add_parser("gradflow", help="plot how the gradient of the last loss fades or grows "
                          "with the steps back (vanishing and exploding gradients)")
    flow.add_argument("files", nargs="+", metavar="FILE",
                      help="equation files, one panel each (an LSTM beside an Elman RNN)")
    flow.add_argument("--steps", type=_flow_steps, default=50, help="τ, the steps run (default 50)")
    flow.add_argument("-o", "--output", default="gradflow.png",
                      help="the plot (png, pdf or svg by its extension; default gradflow.png)")
    flow.add_argument("--radii", type=_radii, default=None, metavar="0.5,1,1.5",
                      help="spectral radii the recurrent matrices are scaled to, beside the "
                      "model at initialisation (default 0.5,1,1.5)")
    flow.add_argument("--loss", default=None, help="the loss followed (default: the first loss)")
    flow.add_argument("--state", default=None, help="the state h of dL(τ)/dh(t) (default h)")
    flow.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                      help="give or override sizes")
    flow.add_argument("--print", action="store_true", help="also print the norms")
    flow.set_defaults(run=_gradflow)
    der = sub.add_parser("derive", help="print the chain rule for a gradient (backpropagation "
                         "through time): a sum over the unrolled paths, or as matrices")
    der.add_argument("file", help=FILE_HELP)
    der.add_argument("--wrt", default=None, metavar="U",
                     help="differentiate with respect to a parameter (W) or a value at a step "
                     "(x(1), h(0)); with --matrix, print only that parameter's gradient")
    der.add_argument("--loss", default=None, metavar="E",
                     help="the loss: a variable (its steps summed) or one step, E(2) (default: "
                     "the model's losses)")
    der.add_argument("--unroll", type=_unroll_steps, default=2, metavar="N",
                     help="the steps unrolled (default 2), or one number per index: t=3,u=2; a "
                     "tree's is its leaves")
    der.add_argument("--matrix", action="store_true",
                     help="every gradient as vectors and matrices, the book's ∇_W L = Σ_t ...")
    der.add_argument("--latex", action="store_true",
                     help="an aligned block (amsmath) for a solution sheet")
    der.add_argument("--check", action="store_true",
                     help="evaluate the printed terms on random values and say how far they "
                     "are from the compiled gradient (on standard error)")
    der.add_argument("-o", "--output", default=None,
                     help="the file to write (default: standard output)")
    der.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                     help="give or override sizes")
    der.set_defaults(run=_derive)
    export = sub.add_parser("export", help="write the equations as a PyTorch module or JAX "
                            "functions (autograd gives the gradients): train them with the "
                            "library's optimizers")
    export.add_argument("file", help=FILE_HELP)
    export.add_argument("--to", choices=("torch", "jax"), default="torch",
                        help="the library: torch (a torch.nn.Module) or jax (pure functions "
                        "init and apply, each loop a lax.scan)")
    export.add_argument("-o", "--output", default=None,
                        help="the Python file to write (default: standard output)")
    export.add_argument("--sizes", type=sizes_arg, default=None, metavar="x=10,h=32",
                        help="give or override sizes")
    export.set_defaults(run=_export)
    for command in (check, draw, comp, flow, der, export):
        command.add_argument("--limit", type=limit_option, action="append", default=[],
                             metavar="NAME=N", help="raise a limit, as in delay=5000 (repeatable): "
                             "source_bytes, equations, delay, size, parameter_elements, unroll, "
                             "drawn_nodes, edge_labels; see README")
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):   # a name or text the terminal cannot encode: escaped
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _warn
            return args.run(args)
    except RnnGraphError as err:
        _say("\n".join(d.render_one() if d.location else f"rnngraph: {d.render_one()}"
                       for d in err.diagnostics))
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        _say("rnngraph: interrupted")             # outputs are as they were: writes are atomic
        return 130
    except Exception as err:                     # noqa: BLE001 - a bug, shown as one line
        if os.environ.get("RNNGRAPH_TRACEBACK"):
            raise
        text = printable(str(err), keep="")
        _say(f"rnngraph: internal error: {type(err).__name__}: {text[:300]}{'...' if len(text) > 300 else ''} "
             "(a bug in rnngraph: please report it with the input; RNNGRAPH_TRACEBACK=1 shows where)")
        return INTERNAL_ERROR


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``rnngraph: warning: ...``, never with Python's source line."""
    _say(f"rnngraph: warning: {printable(str(message), keep='')}")


def _say(text: str) -> None:
    try:
        print(text, file=sys.stderr)
    except (AttributeError, OSError):
        pass                                      # no stderr to tell it on: the status still does


if __name__ == "__main__":
    sys.exit(main())
