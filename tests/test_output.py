"""Writing a drawing: atomic, never over the input, never replacing what is not a regular file.

The device-node tests make their own nodes (mknod, as root) in a temporary folder: before the
fix, ``-o /dev/null`` as root replaced the machine's /dev/null with an SVG file.
"""
import errno
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rnngraph import RnnGraphError
from rnngraph.cli import main
from rnngraph.render import output
from rnngraph.render.output import write_atomic

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "h(t) = tanh(W h(t-1) + U x(t))\n"


def error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.rstrip("\n")


def device(folder: Path, name: str, major: int, minor: int) -> Path:
    """A character device node of our own (mknod needs root), never the machine's."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    path = folder / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.close(os.open(path, os.O_WRONLY))
    except OSError as err:                       # a container without mknod, a nodev mount
        pytest.skip(f"cannot make and open a device node here: {err}")
    return path


def test_dev_null_is_written_to_not_replaced(tmp_path, capsys):
    null = device(tmp_path, "null", 1, 3)
    assert main(["draw", str(ROOT / "examples/elman.rnn"), "-o", str(null)]) == 0
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_dev_full_is_an_error_and_stays_a_device(tmp_path, capsys):
    full = device(tmp_path, "full", 1, 7)
    assert main(["draw", str(ROOT / "examples/elman.rnn"), "-o", str(full)]) == 2
    assert error(capsys) == f"rnngraph: error: cannot write {full}: No space left on device"
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_fifo_without_a_reader_is_an_error_at_once(tmp_path):
    # In a process of its own: were the open to block, the timeout ends it, not the test run.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    run = subprocess.run([sys.executable, "-m", "rnngraph", "draw", str(ROOT / "examples/elman.rnn"),
                          "-o", str(fifo)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (2, f"rnngraph: error: cannot write {fifo}: no program is "
                                                "reading from it\n")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_fifo_with_a_reader_gets_the_drawing(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    for _ in range(500):                         # until the reader has opened its end
        try:
            write_atomic(b"<svg/>", fifo)
            break
        except RnnGraphError as err:
            assert str(err) == f"error: cannot write {fifo}: no program is reading from it"
            time.sleep(0.01)
    reader.join(5)
    assert got == [b"<svg/>"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_is_written_through(tmp_path):
    target = tmp_path / "drawings" / "k.svg"
    target.parent.mkdir()
    target.write_bytes(b"earlier")
    link = tmp_path / "k.svg"
    link.symlink_to(target)
    write_atomic(b"new", link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["k.svg"]
    dangling = tmp_path / "d.svg"
    dangling.symlink_to(tmp_path / "drawings" / "d.svg")
    write_atomic(b"made", dangling)
    assert dangling.is_symlink() and (tmp_path / "drawings" / "d.svg").read_bytes() == b"made"


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hard link"])
def test_the_input_is_never_overwritten_through_a_link(tmp_path, capsys, link):
    src = tmp_path / "eqs.rnn"
    src.write_text(SOURCE)
    out = tmp_path / "out.svg"
    link(src, out)
    assert main(["draw", str(src), "-o", str(out)]) == 2
    assert error(capsys) == (f"rnngraph: error: refusing to write the drawing over the input file {src}; "
                             "choose another name with -o")
    assert src.read_text() == SOURCE


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_a_folder_that_cannot_be_written_is_an_error(tmp_path, capsys, monkeypatch, unnamed):
    # As a user, a read-only folder; simulated, since root may write anywhere.  Before, the
    # temporary file was made outside the try: a PermissionError traceback.
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR) and Path(path).parent == tmp_path or Path(path) == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args, **kw)
    monkeypatch.setattr(output, "_UNNAMED", unnamed)
    monkeypatch.setattr(output.os, "open", read_only)
    out = tmp_path / "out.svg"
    assert main(["draw", str(ROOT / "examples/elman.rnn"), "-o", str(out)]) == 2
    assert error(capsys) == f"rnngraph: error: cannot write {out}: Permission denied"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_overwrite_keeps_the_mode_and_leaves_no_temporary(tmp_path, monkeypatch, unnamed):
    monkeypatch.setattr(output, "_UNNAMED", unnamed)
    out = tmp_path / "out.svg"
    out.write_bytes(b"earlier")
    out.chmod(0o640)
    write_atomic(b"new", out)
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.svg"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_kill_during_fsync_leaves_the_earlier_output_and_no_temporary(tmp_path, unnamed):
    if unnamed and not output._UNNAMED:
        pytest.skip("no O_TMPFILE here")
    out = tmp_path / "k.svg"
    out.write_bytes(b"earlier")
    script = ("import os, sys, time\n"
              "from rnngraph.render import output\n"
              f"output._UNNAMED = {unnamed}\n"
              "def fsync(fd):\n"
              "    print('syncing', flush=True); time.sleep(60)\n"
              "output.os.fsync = fsync\n"
              f"output.write_atomic(b'x' * 100000, {str(out)!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert proc.stdout.readline() == "syncing\n"
    finally:
        proc.kill()
        proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    if unnamed:                                  # the temporary file never had a name
        assert left == ["k.svg"]
    else:                                        # it had one: the next write removes it
        assert len(left) == 2 and left[0].startswith(".k.svg.rnngraph-")
        stale = tmp_path / left[0]
        os.utime(stale, (time.time() - 120,) * 2)
        write_atomic(b"next", out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["k.svg"]
    assert out.read_bytes() in (b"earlier", b"next")


def test_only_our_own_stale_temporaries_are_removed(tmp_path):
    out = tmp_path / "k.svg"
    old = time.time() - 120
    names = {".k.svg.rnngraph-0123abcd.tmp": False,    # ours, stale: removed
             ".k.svg.rnngraph-89abcdef.tmp": True,     # ours, young: a write under way, kept
             ".k.svg.abc123_x.tmp": True,              # not our pattern: kept
             ".j.svg.rnngraph-0123abcd.tmp": True,     # another output's: kept
             "k.svg.rnngraph-0123abcd.tmp": True}
    for name in names:
        (tmp_path / name).write_bytes(b"")
        if name != ".k.svg.rnngraph-89abcdef.tmp":
            os.utime(tmp_path / name, (old, old))
    write_atomic(b"svg", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([n for n, kept in names.items() if kept]
                                                                + ["k.svg"])


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "it is a folder, not a regular file"),
    (lambda p: p.symlink_to(p), "Too many levels of symbolic links"),
])
def test_what_cannot_be_written_is_named(tmp_path, capsys, make, message):
    out = tmp_path / "out.svg"
    make(out)
    assert main(["draw", str(ROOT / "examples/elman.rnn"), "-o", str(out)]) == 2
    assert error(capsys) == f"rnngraph: error: cannot write {out}: {message}"
