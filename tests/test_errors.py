"""Error messages: what reaches the terminal is escaped, and the caret stays under its column."""
import pytest

from rnngraph import RnnGraphError, parse
from rnngraph.errors import Location, printable


@pytest.mark.parametrize("line, column, shown, caret", [
    # ESC (a colour code), NUL, BEL and DEL from the input: escaped, the caret still under the '+'
    ("h(t) = W \x1b[31mh(t-1) +", 22, "h(t) = W \\x1b[31mh(t-1) +", 24),
    ("a\x00b + c", 5, "a\\x00b + c", 7),
    ("a\x07\x7fb +", 6, "a\\x07\\x7fb +", 11),
    # a right-to-left override (Trojan Source) and a line separator: escaped as \uXXXX
    ("x\u202eab +", 6, "x\\u202eab +", 10),
    ("x\u2028y +", 5, "x\\u2028y +", 9),
    # a tab is one column, as the parser counts it; wide characters take two cells, accents none
    ("\tx +", 4, " x +", 3),
    ("# 漢字 x +", 8, "# 漢字 x +", 9),
    ("c\u0303(t) +", 7, "c\u0303(t) +", 5),
])
def test_source_line_escaped_caret_under_its_column(line, column, shown, caret):
    text = Location("f.rnn", 1, column, line).render("unexpected '+'")
    head, source, mark = text.split("\n")
    assert head == f"f.rnn:1:{column}: error: unexpected '+'"
    assert source == "    " + shown
    assert mark == " " * 4 + " " * caret + "^"


def test_undecodable_file_name_and_control_characters_in_the_message():
    # os.fsdecode turns the byte 0xff of a file name into the lone surrogate U+DCFF, which no
    # terminal encoding can print; it is shown as \xff, as ls -b does.
    err = RnnGraphError("bad \x1b]0;title\x07 'x'", Location("caf\udcff\n.rnn", 2, 1, "x"))
    assert str(err).split("\n")[0] == "caf\\xff\\x0a.rnn:2:1: error: bad \\x1b]0;title\\x07 'x'"
    assert str(RnnGraphError("cannot read caf\udcff.rnn: \x1b[2J")) == \
        "error: cannot read caf\\xff.rnn: \\x1b[2J"
    str(err).encode("ascii")                     # prints on any terminal


def test_a_parse_error_on_an_escape_character_is_escaped():
    with pytest.raises(RnnGraphError) as info:
        parse("h(t) = tanh(W h(t-1) \x1b[31m+ U x(t))", "esc.rnn")
    assert str(info.value) == ("esc.rnn:1:22: error: unexpected character '\\x1b'\n"
                               "    h(t) = tanh(W h(t-1) \\x1b[31m+ U x(t))\n"
                               "                         ^")


@pytest.mark.parametrize("column, starts, ends", [
    (5, "    xxxxy", "x..."),                    # near the start: the start, cut at the end
    (150, "    ...x", "x..."),                   # in the middle: the 120 characters around it
    (300, "    ...x", "xy"),                     # at the end: the end
])
def test_a_long_line_is_shown_around_its_column(column, starts, ends):
    line = "x" * (column - 1) + "y" + "x" * (300 - column)
    source, mark = Location("f", 1, column, line).render("m").split("\n")[1:]
    assert len(source) == 4 + 120 and source.startswith(starts) and source.endswith(ends)
    assert source[mark.index("^")] == "y" and mark.strip() == "^"


@pytest.mark.parametrize("text, shown", [
    ("plain h(t) α ⊙", "plain h(t) α ⊙"),
    ("two\nlines", "two\nlines"),
    ("\udc80\udcff", "\\x80\\xff"),
    ("\ufeff\u200b", "\\ufeff\\u200b"),
])
def test_printable(text, shown):
    assert printable(text) == shown
