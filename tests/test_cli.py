"""`rnngraph check`: the summary, the canonical forms, and errors with exit status 2."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "expected NAME=SIZE with a positive whole SIZE, as in x=10,h=32; got 'x=ten'" in capsys.readouterr().err


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
