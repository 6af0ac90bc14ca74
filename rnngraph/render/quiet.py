"""Graphviz's messages on stderr, without the fontconfig noise.

The Graphviz inside pygraphviz's wheel carries its own fontconfig, older
than many systems' configuration files, and prints at the first text it
measures::

    Fontconfig warning: "/usr/share/fontconfig/conf.avail/05-reset-dirs-sample.conf", line 6: unknown element "reset-dirs"

Graphviz runs in-process and writes to file descriptor 2, out of Python's
reach, so :func:`graphviz_stderr` points fd 2 at a temporary file around a
Graphviz call and writes back every line but those (:func:`drop_noise`):
Graphviz's own warnings and errors still reach the user.

Examples
--------
>>> drop_noise(b'Fontconfig warning: "/etc/a.conf", line 6: unknown element "reset-dirs"\\n'
...            b'Warning: nocolor is not a known color.\\n')
b'Warning: nocolor is not a known color.\\n'
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

#: A line of a configuration newer than the bundled fontconfig: harmless, and not the user's.
NOISE = re.compile(rb'^Fontconfig (?:warning|error): .*unknown element "[^"]*"\s*$')


def drop_noise(data: bytes) -> bytes:
    """``data`` without the lines matching :data:`NOISE`."""
    return b"".join(line for line in data.splitlines(keepends=True) if not NOISE.match(line))


@contextmanager
def graphviz_stderr():
    """Run the body with fd 2 captured, then write back what is not noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):       # no fd 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = drop_noise(tmp.read())
            while kept:
                kept = kept[os.write(2, kept):]
