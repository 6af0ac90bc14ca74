"""The command line: the summary, the canonical forms; errors, bad options, stdin and stdout."""
import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rnngraph
from rnngraph.cli import main

from conftest import EXERCISE, ROOT


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_prints_roles_states_and_sizes(capsys):
    code, out, err = run(capsys, "check", str(ROOT / "examples/exercise.rnn"))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith("exercise.rnn: 3 equations, 15 symbols")
    assert "  inputs       x" in lines
    assert "  states       h1 h2 y (output)" in lines
    assert "  parameters   U V W b R S T c P Q d" in lines
    assert "  h2           forward, delay 1, initial value 0" in lines
    assert "  T: 8 x 3" in out.replace(", ", "\n  ").splitlines()


def test_check_shows_unknown_sizes_and_sizes_given_on_the_command_line(capsys, tmp_path):
    path = tmp_path / "ex.rnn"
    path.write_text(EXERCISE, encoding="utf-8")
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0
    assert "  unknown: size of 'h1' is unknown (line 1)" in out.splitlines()
    code, out, _ = run(capsys, "check", str(path), "--sizes", "x=10,h1=20,h2=30,y=5")
    assert code == 0 and "  unknown:" not in out and "U: 20 x 10" in out


def test_backward_states_are_described(capsys):
    _, out, _ = run(capsys, "check", str(ROOT / "examples/bidirectional.rnn"))
    assert "  g            backward, delay 1, value after the last step 0" in out.splitlines()


def test_check_text_and_latex(capsys):
    code, out, _ = run(capsys, "check", "--text", str(ROOT / "examples/lstm_unicode.rnn"))
    assert code == 0
    assert "c(t) = f(t) * c(t-1) + i(t) * c_tilde(t)\n" in out
    code, out, _ = run(capsys, "check", "--latex", str(ROOT / "examples/lstm_unicode.rnn"))
    assert out.startswith("\\begin{aligned}\n") and "\\odot" in out


def test_located_error_and_exit_status_2(capsys, tmp_path):
    path = tmp_path / "bad.rnn"
    path.write_text("h(t) = tanh(W h(t-1) + U x(t))\ny(t) = softmaxx(V h(t))\n", encoding="utf-8")
    code, out, err = run(capsys, "check", str(path))
    assert (code, out) == (2, "")
    assert err == (f"{path}:2:8: error: unknown function 'softmaxx'; did you mean 'softmax'?\n"
                   "    y(t) = softmaxx(V h(t))\n"
                   "           ^\n")


def test_every_diagnostic_is_printed(capsys, tmp_path):
    path = tmp_path / "sizes.rnn"
    path.write_text("h(t) = W x(t) + b\ny(t) = V h(t) + c\nx: 3, h: 4, y: 2\nb: 5\nc: 7\n")
    code, _, err = run(capsys, "check", str(path))
    assert code == 2
    assert [line.split(": error")[0] for line in err.splitlines() if ": error" in line] == \
        [f"{path}:1:8", f"{path}:2:8"]


@pytest.mark.parametrize("argv, message", [
    (["check", "missing.rnn"], "rnngraph: error: cannot read missing.rnn: No such file or directory\n"),
])
def test_errors_without_a_location(capsys, argv, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert (code, err) == (2, message)


def test_bad_sizes_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check", str(ROOT / "examples/exercise.rnn"), "--sizes", "x=ten"])
    assert info.value.code == 2
    assert "expected NAME=SIZE with a positive whole SIZE (or ROWSxCOLUMNS, as in M=8x16), as in " \
        "x=10,h=32; got 'x=ten'" in capsys.readouterr().err


BAD_FILES = {
    "syntax.rnn": "h(t) = tanh(W h(t-1) +\n",
    "latin1.rnn": "h(t) = W x(t) # caf\xe9\n",
    "loop.rnn": "a(t) = b(t)\nb(t) = a(t)\n",
    "deep.rnn": "h(t) = " + "tanh(" * 5000 + "x(t)" + ")" * 5000 + "\n",
    "empty.rnn": "",
}


# The console script of the environment running the tests (PATH may not include it).
SCRIPT = shutil.which("rnngraph", path=str(Path(sys.executable).parent)) or shutil.which("rnngraph")


@pytest.mark.skipif(SCRIPT is None, reason="the rnngraph console script is not installed")
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_console_script_never_shows_a_traceback(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name].encode("latin-1" if "latin" in name else "utf-8"))
    proc = subprocess.run([SCRIPT, "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"{path}:") and ": error: " in first
    assert proc.stderr.splitlines()[2].strip() == "^"


def test_python_dash_m_runs_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rnngraph", "check", str(ROOT / "examples/tdnn.rnn")],
                          capture_output=True, text=True)
    assert proc.returncode == 0
    assert "  sequences    y (output)" in proc.stdout.splitlines()


# -- options: a bad value is a usage error (status 2), never a traceback -------------------------
ELMAN = str(ROOT / "examples/elman.rnn")


@pytest.mark.parametrize("argv, message", [
    # before: ValueError tracebacks from Style
    (["draw", ELMAN, "--fontsize", "nan"], "argument --fontsize: expected a size in points from 4 to 96, got 'nan'"),
    (["draw", ELMAN, "--fontsize", "-5"], "argument --fontsize: expected a size in points from 4 to 96, got '-5'"),
    (["draw", ELMAN, "--fontsize", "1e9"], "argument --fontsize: expected a size in points from 4 to 96, got '1e9'"),
    (["draw", ELMAN, "--fontsize", "inf"], "argument --fontsize: expected a size in points from 4 to 96, got 'inf'"),
    (["draw", ELMAN, "--fontsize", "3.9"], "argument --fontsize: expected a size in points from 4 to 96, got '3.9'"),
    (["draw", ELMAN, "--fontsize", "twelve"],
     "argument --fontsize: expected a size in points from 4 to 96, got 'twelve'"),
    # before: the SVG had 31 onload attributes
    (["draw", ELMAN, "--font", 'Serif" onload="alert(1)'],
     "argument --font: font must be a family name of letters, digits, spaces and _ - . , : = + "
     "(at most 100), not 'Serif\" onload=\"alert(1)'"),
    (["draw", ELMAN, "--font", "Serif<script>"],
     "argument --font: font must be a family name of letters, digits, spaces and _ - . , : = + "
     "(at most 100), not 'Serif<script>'"),
    (["draw", ELMAN, "--font", "Serif\x1b[2J"],
     "argument --font: font must be a family name of letters, digits, spaces and _ - . , : = + "
     "(at most 100), not 'Serif\\x1b[2J'"),
    (["draw", ELMAN, "--font", ""],
     "argument --font: font must be a family name of letters, digits, spaces and _ - . , : = + "
     "(at most 100), not ''"),
    # before: --unroll 5000 ran for minutes (1000: 14 s)
    (["draw", ELMAN, "--unroll", "0"], "argument --unroll: expected a positive whole number of steps, got '0'"),
    (["draw", ELMAN, "--unroll", "\u00b2"],
     "argument --unroll: expected a positive whole number of steps, got '\u00b2'"),
    (["draw", ELMAN, "--unroll", "9" * 5000],
     f"argument --unroll: expected a positive whole number of steps, got '{'9' * 5000}'"),
    (["compile", ELMAN, "--sizes", "x=\u00b2"],
     "argument --sizes: expected NAME=SIZE with a positive whole SIZE (or ROWSxCOLUMNS, as in "
     "M=8x16), as in x=10,h=32; got 'x=\u00b2'"),
    (["compile", ELMAN, "--sizes", "x=0"],
     "argument --sizes: expected NAME=SIZE with a positive whole SIZE (or ROWSxCOLUMNS, as in "
     "M=8x16), as in x=10,h=32; got 'x=0'"),
    (["check", ELMAN, "--sizes", "x=" + "9" * 5000],
     f"argument --sizes: a size has at most 18 digits; got 'x={'9' * 5000}'"),
    (["compile", ELMAN, "--dtype", "float16"],
     "argument --dtype: invalid choice: 'float16' (choose from 'float64', 'float32')"),
    (["draw", ELMAN, "--theme", "neon"],
     "argument --theme: invalid choice: 'neon' (choose from 'default', 'mono', 'dark')"),
])
def test_bad_option_values_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1] == f"rnngraph {argv[0]}: error: {message}"


@pytest.mark.parametrize("argv", [
    ["--fontsize", "4"], ["--fontsize", "96"], ["--fontsize", "12.5"], ["--unroll", "40"],
    ["--unroll", "007"], ["--font", "DejaVu Sans"], ["--font", "Noto Serif CJK JP:style=Bold"],
])
def test_option_values_at_the_limits_are_accepted(tmp_path, capsys, argv):
    assert main(["draw", ELMAN, *argv, "-o", str(tmp_path / "e.svg")]) == 0


def test_the_font_reaches_the_svg_quoted():
    import rnngraph
    svg = rnngraph.draw(rnngraph.load(ELMAN), font="Noto Serif:style=Bold").decode()
    assert 'font-family="Noto Serif:style=Bold,serif"' in svg
    with pytest.raises(ValueError, match="^font must be a family name"):
        rnngraph.draw(rnngraph.load(ELMAN), font='Serif" onload="alert(1)')
    with pytest.raises(ValueError, match="^fontsize must be a number of points from 4 to 96, not nan$"):
        rnngraph.draw(rnngraph.load(ELMAN), fontsize=float("nan"))


# -- standard output and input ----------------------------------------------------------------
class FullDisk(io.TextIOWrapper):
    """A standard output on a full disk (> /dev/full): every write fails with ENOSPC."""

    def __init__(self):
        super().__init__(io.BytesIO())

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    @property
    def buffer(self):
        return self

    def flush(self):
        pass


@pytest.mark.parametrize("argv", [
    ["check", ELMAN], ["check", "--text", ELMAN], ["compile", ELMAN, "--sizes", "target=5"],
    ["draw", ELMAN, "-o", "-"], ["draw", ELMAN, "-o", "OUT"],
])
def test_a_failing_stdout_is_one_error_line(tmp_path, monkeypatch, capsys, argv):
    argv = [str(tmp_path / "e.svg") if a == "OUT" else a for a in argv]
    monkeypatch.setattr(sys, "stdout", FullDisk())
    assert main(argv) == 2
    assert capsys.readouterr().err == "rnngraph: error: cannot write to standard output: No space left on device\n"


def test_stdout_on_a_full_disk_in_a_real_process():
    # > /dev/full: the shell opens it for us; rnngraph never replaces it.
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        run = subprocess.run([sys.executable, "-m", "rnngraph", "check", ELMAN], stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (2, "rnngraph: error: cannot write to standard output: "
                                                "No space left on device\n")


def test_dash_reads_the_equations_from_stdin(tmp_path):
    source = (ROOT / "examples/elman.rnn").read_bytes()
    run = subprocess.run([sys.executable, "-m", "rnngraph", "check", "-"], input=source,
                         capture_output=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith(b"<stdin>: 5 equations, 12 symbols\n")
    run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", "-", "-o", "-"], input=source,
                         capture_output=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith(b"<?xml")
    run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", "-"], input=source,
                         capture_output=True, text=False, timeout=120, cwd=tmp_path)
    assert (run.returncode, run.stderr) == (2, b"rnngraph: error: the equations come from standard "
                                               b"input: name the drawing with -o (- for standard output)\n")
    assert list(tmp_path.iterdir()) == []


def test_the_input_read_from_stdin_is_never_overwritten(tmp_path):
    src = tmp_path / "eqs.svg"
    src.write_text("h(t) = tanh(W h(t-1) + U x(t))\n")
    with open(src) as stdin:
        run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", "-", "-o", str(src)],
                             stdin=stdin, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (2, "rnngraph: error: refusing to write the drawing over "
                                                "standard input; choose another name with -o\n")
    assert src.read_text() == "h(t) = tanh(W h(t-1) + U x(t))\n"


def test_a_file_name_with_control_characters_is_escaped_in_the_summary(tmp_path, capsys):
    path = tmp_path / "eqs\x1b]0;pwned\x07.rnn"
    path.write_text("h(t) = tanh(W h(t-1) + U x(t))\n")
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{tmp_path}/eqs\\x1b]0;pwned\\x07.rnn: 1 equation, 4 symbols"


def test_a_file_name_is_never_run_as_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNGRAPH_INJECTED", "")     # so that monkeypatch removes it afterwards
    monkeypatch.delenv("RNNGRAPH_INJECTED")
    path = tmp_path / 'x"""+__import__("os").environ.setdefault("RNNGRAPH_INJECTED", "1")+""".rnn'
    path.write_text("h(t) = tanh(W h(t-1) + U x(t))\nx: 2, h: 3\n")
    main(["compile", str(path)])
    injected = os.environ.get("RNNGRAPH_INJECTED")
    assert injected is None


def test_undecodable_file_names_print_in_a_strict_utf8_terminal(tmp_path):
    # Before: UnicodeEncodeError traceback.  The byte 0xff of the name prints as \xff.
    folder = os.fsencode(tmp_path)
    bad, good = folder + b"/bad\xff.rnn", folder + b"/ok\xff.rnn"
    with open(bad, "wb") as f:
        f.write(b"h(t) = tanhh(x(t))\n")
    with open(good, "wb") as f:
        f.write(b"h(t) = tanh(W h(t-1) + U x(t))\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run([sys.executable, "-m", "rnngraph", "check", bad], capture_output=True,
                         env=env, timeout=120)
    assert run.returncode == 2
    assert run.stderr.decode().splitlines()[0] == (f"{tmp_path}/bad\\xff.rnn:1:8: error: unknown function "
                                                   "'tanhh'; did you mean 'tanh'?")
    run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", good], capture_output=True,
                         env=env, timeout=120, cwd=tmp_path)
    assert (run.returncode, run.stdout, run.stderr) == (0, b"ok\\xff.svg\n", b"")
    assert os.path.exists(folder + b"/ok\xff.svg")


# -- a bug in rnngraph: one line and status 70, not a traceback -------------------------------
@pytest.mark.parametrize("exc, code, line", [
    (ValueError("boom \x1b[2J"), 70, "rnngraph: internal error: ValueError: boom \\x1b[2J (a bug in rnngraph: "
                                      "please report it with the input; RNNGRAPH_TRACEBACK=1 shows where)"),
    (RecursionError("maximum recursion depth exceeded"), 70,
     "rnngraph: internal error: RecursionError: maximum recursion depth exceeded (a bug in rnngraph: "
     "please report it with the input; RNNGRAPH_TRACEBACK=1 shows where)"),
    (KeyboardInterrupt(), 130, "rnngraph: interrupted"),
])
def test_an_unexpected_exception_is_one_line(monkeypatch, capsys, exc, code, line):
    import rnngraph.cli as cli

    def broken(*args, **kw):
        raise exc
    monkeypatch.delenv("RNNGRAPH_TRACEBACK", raising=False)
    monkeypatch.setattr(cli, "load", broken)
    assert main(["check", ELMAN]) == code
    assert capsys.readouterr().err == line + "\n"
    monkeypatch.setenv("RNNGRAPH_TRACEBACK", "1")
    if code == 70:
        with pytest.raises(type(exc)):
            main(["check", ELMAN])


def test_unrolling_a_model_without_time_is_refused_not_drawn_folded(capsys, tmp_path, monkeypatch):
    """The autoencoder has no name(t): --unroll 3 gave its folded picture under an
    -unrolled name, with no word.  Now: exit 2, one message, no file."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "draw", str(ROOT / "examples/autoencoder.rnn"), "--unroll", "3")
    assert code == 2 and "nothing to unroll" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(rnngraph.RnnGraphError, match="nothing to unroll"):
        rnngraph.load(ROOT / "examples/autoencoder.rnn").draw(unroll=3)


@pytest.mark.parametrize("name, fmt, ok", [("d.png", "pdf", False), ("d.svg", "png", False),
                                           ("d.pdf", "pdf", True), ("d.out", "svg", True)])
def test_format_and_file_name_must_agree(capsys, tmp_path, name, fmt, ok):
    """--format pdf -o d.png wrote a PDF named .png; a name with another extension than the
    formats' is the user's business."""
    out_path = tmp_path / name
    code, out, err = run(capsys, "draw", str(ROOT / "examples/exercise.rnn"), "--format", fmt,
                         "-o", str(out_path))
    if ok:
        assert code == 0 and out_path.exists()
    else:
        assert code == 2 and "make them agree" in err and not out_path.exists()
