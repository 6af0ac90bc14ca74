"""The command line on mutated example files: exit 0 or 2, never a traceback.

A seeded generator (:func:`mutants`) takes the files in ``examples/`` apart and
puts them together wrong: characters and tokens deleted, inserted, duplicated and
replaced, lines of two files spliced, control bytes and bytes that are not UTF-8,
huge and odd numbers, long lines, deep nesting.  Each mutant goes through
``rnngraph check`` and ``rnngraph draw`` in-process (:func:`rnngraph.cli.main`),
a few through a real ``python -m rnngraph``; every run must end with status 0,
or 2 and located (``FILE:LINE:COL: error:``) or unlocated (``rnngraph: error:``)
messages, with no exception escaping and no ``Traceback`` on stderr.

A bug that escapes as an exception is caught by ``main`` and printed as one
``rnngraph: internal error:`` line with status 70: here, a failure.  The three
this generator found outside the command line (a size of 5000 digits, a left
side nested 1000 deep, a delay of 10^7 drawn unrolled) each have a test below.
"""
from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rnngraph.cli import main

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {p.name: p.read_bytes() for p in sorted((ROOT / "examples").glob("*.rnn"))}

_TOKEN = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|\s+|#[^\n]*|.", re.S)
TOKENS = [b"tanh", b"sigmoid", b"softmax", b"cross_entropy", b"relu", b"exp", b"log", b"t", b"t-1",
          b"t+1", b"t-2", b"(t)", b"(t-1)", b"(t+1)", b"h", b"x", b"W", b"b", b"0", b"1", b"0.5", b"-",
          b"+", b"*", b"/", b"@", b"=", b":", b",", b";", b"(", b")", b"[", b"]", b"^", b"'", b"T", b"\n",
          b"x(t)", b"h(t-1)", b"W h(t-1)", b"h(0) = 0", b"x: 3", b"h: 4", b"y(t) =", b"\xce\xb1",
          b"\xce\xa3", b"sum", b"mean", b"c_tilde", b"W_hh", b"h1", b"hat", b"transpose"]
NUMBERS = [b"0", b"00", b"1e999", b"1e-999", b"9" * 30, b"9" * 5000, b"1" + b"0" * 400, b"4294967297",
           b"18446744073709551617", b"0.0000001", b"1.", b".5", b"1e", b"2.5", b"-1", b"3e2"]
CONTROLS = [b"\x00", b"\x1b", b"\x1b[31m", b"\x07", b"\x7f", b"\r", b"\r\n", b"\t", b"\x0b", b"\x0c",
            b"\xef\xbb\xbf", b"\xe2\x80\xae", b"\xe2\x80\xa8", b"\xc2\x85", b"\xff", b"\xc3", b"\xed\xa0\x80",
            b"\xf0\x9f\x98\x80", b"\xe6\xbc\xa2"]


def _tokens(data: bytes) -> list[bytes]:
    return _TOKEN.findall(data)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits of ``data``."""
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(12)
        i = rng.randrange(len(data) + 1)
        j = min(len(data), i + rng.randint(0, 12))
        if kind == 0:                                      # delete characters
            data = data[:i] + data[j:]
        elif kind == 1:                                    # insert a character
            data = data[:i] + bytes([rng.randrange(32, 127)]) + data[i:]
        elif kind == 2:                                    # duplicate a stretch
            data = data[:j] + data[i:j] * rng.randint(1, 3) + data[j:]
        elif kind == 3:                                    # replace a character
            data = data[:i] + bytes([rng.randrange(32, 127)]) + data[i + 1:]
        elif kind == 4:                                    # a control byte, a bad or odd UTF-8 sequence
            data = data[:i] + rng.choice(CONTROLS) + data[i:]
        elif kind == 5:                                    # a huge or odd number
            data = data[:i] + rng.choice(NUMBERS) + data[i:]
        elif kind in (6, 7, 8):                            # tokens: delete, replace, insert, duplicate
            toks = _tokens(data)
            if not toks:
                continue
            k = rng.randrange(len(toks))
            op = rng.randrange(4)
            if op == 0:
                del toks[k]
            elif op == 1:
                toks[k] = rng.choice(TOKENS + NUMBERS)
            elif op == 2:
                toks.insert(k, rng.choice(TOKENS) + b" ")
            else:
                toks.insert(k, toks[k])
            data = b"".join(toks)
        elif kind == 9:                                    # lines of two files spliced
            other = rng.choice(list(SOURCES.values())).split(b"\n")
            lines = data.split(b"\n")
            at = rng.randrange(len(lines) + 1)
            start = rng.randrange(len(other))
            data = b"\n".join(lines[:at] + other[start:start + rng.randint(1, 4)] + lines[at:])
        elif kind == 10:                                   # a line swapped, dropped or repeated
            lines = data.split(b"\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            choice = rng.randrange(3)
            if choice == 0:
                lines[a], lines[b] = lines[b], lines[a]
            elif choice == 1:
                del lines[a]
            else:
                lines.insert(a, lines[b])
            data = b"\n".join(lines)
        else:                                              # something long or deep
            what = rng.choice([b"(" * 3000 + b"x(t)" + b")" * 3000, b"tanh(" * 600 + b"x(t)" + b")" * 600,
                               b"a" * 5000, b" + x(t)" * 2000, b"#" * 20000, b"\n" * 5000])
            data = data[:i] + what + data[i:]
    return data


def mutants(seed: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` mutants, the same for the same seed: (a name saying where from, the bytes)."""
    rng = random.Random(seed)
    names = sorted(SOURCES)
    out = []
    for n in range(count):
        name = rng.choice(names)
        out.append((f"{seed}-{n}-{name}", mutate(rng, SOURCES[name])))
    return out


#: No single run may take longer (seconds): a hang fails the test instead of stalling it.
RUN_LIMIT = 60

_LOCATED = re.compile(r"^\S.*:\d+:\d+: error: ")


class TooSlow(BaseException):
    pass


def _too_slow(*_):
    raise TooSlow


def run_main(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    """``main(argv)``: its status and stderr, or the exception that escaped it."""
    err = io.StringIO()
    code, escaped = None, None
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(RUN_LIMIT)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:                        # argparse: not expected here
            code = exit_.code
        except BaseException as exc:                       # noqa: BLE001 - what the test looks for
            escaped = exc
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    return code, err.getvalue(), escaped


def check_runs(tmp_path: Path, cases: list[tuple[str, bytes]], commands) -> dict:
    """Run every case through every command; return the tally, assert on the first wrong run."""
    tally = {"runs": 0, "exit 0": 0, "exit 2": 0}
    for name, data in cases:
        src = tmp_path / "in.rnn"
        src.write_bytes(data)
        for command in commands:
            out = tmp_path / "out.svg"
            out.write_bytes(b"earlier")
            argv = [c.replace("SRC", str(src)).replace("OUT", str(out)) for c in command]
            code, err, exc = run_main(argv)
            tally["runs"] += 1
            where = f"{name} through {command[0]}: {data[:300]!r}"
            assert exc is None, f"{where}\nraised {type(exc).__name__}: {str(exc)[:500]}"
            assert code in (0, 2), f"{where}\nexit {code}\n{err}"
            assert "Traceback" not in err, f"{where}\n{err}"
            tally[f"exit {code}"] += 1
            if code == 2:
                first = err.splitlines()[0] if err else ""
                assert _LOCATED.match(first) or first.startswith("rnngraph: error: "), f"{where}\n{err}"
                assert out.read_bytes() == b"earlier", f"{where}: a failed run changed the output"
            elif command[0] == "draw":
                assert out.read_bytes().startswith(b"<?xml"), where
            assert sorted(p.name for p in tmp_path.iterdir()) == ["in.rnn", "out.svg"], where
    return tally


CHECK = ["check", "SRC"]
DRAW = ["draw", "SRC", "-o", "OUT"]
DRAW_UNROLLED = ["draw", "SRC", "-o", "OUT", "--unroll", "2"]


def test_mutated_examples_through_check_and_draw(tmp_path):
    # 1000 mutants through check, 200 of them through draw folded and unrolled: about 10 s.
    cases = mutants(seed=1, count=1000)
    tally = check_runs(tmp_path, cases, [CHECK])
    tally2 = check_runs(tmp_path, cases[:200], [DRAW, DRAW_UNROLLED])
    assert tally["exit 2"] > 300 and tally2["exit 0"] > 50    # the generator makes both kinds


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_more_mutated_examples(tmp_path, seed):
    # Each: 5000 mutants through check, 400 through draw (folded, unrolled, ops): about 25 s.
    cases = mutants(seed=seed, count=5000)
    check_runs(tmp_path, cases, [CHECK])
    check_runs(tmp_path, cases[:400], [DRAW, DRAW_UNROLLED, ["draw", "SRC", "-o", "OUT", "--detail", "ops"]])


def test_mutated_examples_in_a_real_process(tmp_path):
    # The console entry as users run it: what Python prints at exit (a flush that fails,
    # "Exception ignored") is only seen here.
    for name, data in mutants(seed=4, count=4):
        src = tmp_path / "in.rnn"
        src.write_bytes(data)
        for command in (["check", str(src)], ["draw", str(src), "-o", str(tmp_path / "o.svg")]):
            run = subprocess.run([sys.executable, "-m", "rnngraph", *command], capture_output=True,
                                 text=True, timeout=120)
            assert run.returncode in (0, 2), f"{name}: {data[:300]!r}\n{run.stderr}"
            assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr


# -- the bugs the generator found, each on its own ---------------------------------------------
def test_a_size_of_5000_digits_is_a_located_error():
    import rnngraph
    with pytest.raises(rnngraph.RnnGraphError, match="a size"):
        rnngraph.parse("x: " + "9" * 5000 + "\nh(t) = tanh(W h(t-1) + U x(t))")


def test_a_deeply_nested_left_side_is_a_located_error():
    import rnngraph
    with pytest.raises(rnngraph.RnnGraphError, match="^<string>:1:1: error: "):
        rnngraph.parse("a(t) " + "tanh(" * 1000 + "x(t)" + ")" * 1000 + " = x(t)")


def test_a_huge_delay_is_drawn_or_refused_at_once(tmp_path):
    src = tmp_path / "d.rnn"
    src.write_text("h(t) = tanh(W h(t-10000000) + U x(t))\n")
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(3)                                      # delay 10**6 took 8 s; this would take 80
    try:
        assert main(["draw", str(src), "--unroll", "2", "-o", str(tmp_path / "d.svg")]) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
