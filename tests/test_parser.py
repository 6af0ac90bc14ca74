"""The language: what it accepts (and how it reads it), what it rejects (and where)."""
import re

import pytest

import rnngraph
from rnngraph import RnnGraphError
from rnngraph.lang.parser import MAX_DEPTH

# (source, canonical text of its equations): the canonical text shows how the
# parser read the source, its precedence and its normalisation of notation.
ACCEPTED = [
    ("h(t) = tanh(W h(t-1) + U x(t) + b)", "h(t) = tanh(W h(t-1) + U x(t) + b)"),
    # unicode: σ, ⊙, ∘, the minus sign U+2212, · for the product
    ("c(t) = f(t) ⊙ c(t−1) + σ(a(t)) ∘ b(t)", "c(t) = f(t) * c(t-1) + sigmoid(a(t)) * b(t)"),
    ("h(t) = sigma(W · h(t - 1))", "h(t) = sigmoid(W h(t-1))"),
    ("h(t) = tanh(W @ h(t-1))", "h(t) = tanh(W h(t-1))"),
    # the matrix product binds tighter than *, which binds tighter than + and -
    ("y(t) = a(t) + W x(t) * b(t)", "y(t) = a(t) + W x(t) * b(t)"),
    ("y(t) = (a(t) + W x(t)) * b(t)", "y(t) = (a(t) + W x(t)) * b(t)"),
    ("y(t) = W (a(t) + b(t))", "y(t) = W (a(t) + b(t))"),
    ("y(t) = A B x(t)", "y(t) = A B x(t)"),                       # A (B x): right associative
    ("y(t) = (A B) x(t)", "y(t) = (A B) x(t)"),
    ("y(t) = a(t) - b(t) - c(t)", "y(t) = a(t) - b(t) - c(t)"),
    ("y(t) = a(t) - (b(t) - c(t))", "y(t) = a(t) - (b(t) - c(t))"),
    ("y(t) = a(t) / b(t) / 2", "y(t) = a(t) / b(t) / 2"),
    ("y(t) = -W x(t) + -a(t)", "y(t) = -W x(t) + -a(t)"),
    ("y(t) = -(a(t) * b(t))", "y(t) = -(a(t) * b(t))"),
    ("y(t) = 0.5 x(t) + 1e-3 * a(t)", "y(t) = 0.5 * x(t) + 0.001 * a(t)"),
    ("h(t) = (1 - z(t)) * n(t) + z(t) * h(t-1)", "h(t) = (1 - z(t)) * n(t) + z(t) * h(t-1)"),
    # transpose in three spellings; concatenation with ; or ,
    ("x_hat = W1^T h + b2", "x_hat = W1^T h + b2"),
    ("x_hat = W1.T h", "x_hat = W1^T h"),
    ("x_hat = W1ᵀ h", "x_hat = W1^T h"),
    ("f(t) = W_f [h(t-1); x(t)]", "f(t) = W_f [h(t-1); x(t)]"),
    ("f(t) = W_f [h(t-1), x(t)]", "f(t) = W_f [h(t-1); x(t)]"),
    # time indices
    ("g(t) = tanh(W g(t+1) + x(t))", "g(t) = tanh(W g(t+1) + x(t))"),
    ("y(t) = K x(t - 2)", "y(t) = K x(t-2)"),
    ("h(t) = W h(t-1) + x(t)\nh(0) = h0", "h(t) = W h(t-1) + x(t)\nh(0) = h0"),
    # names: digits, underscores, Greek; T is a matrix, only t is time
    ("h(t) = α * h(t-1) + T x(t)", "h(t) = α * h(t-1) + T x(t)"),
    ("ŷ(t) = x(t)".replace("ŷ", "y_hat"), "y_hat(t) = x(t)"),
    # comments, blank lines, continuation while a bracket is open
    ("# a comment\n\nh(t) = tanh(W h(t-1)   # inside\n       + U x(t))\n", "h(t) = tanh(W h(t-1) + U x(t))"),
    ("h(t) = W [h(t-1);\n          x(t)]", "h(t) = W [h(t-1); x(t)]"),
    # sizes
    ("x: 10, h: 32\nh(t) = W h(t-1) + U x(t)", "x: 10, h: 32\nh(t) = W h(t-1) + U x(t)"),
    # Windows line ends and a byte-order mark
    ("\ufeffh(t) = W h(t-1)\r\n+ x(t)".replace("\r\n+", " +"), "h(t) = W h(t-1) + x(t)"),
    ("L(t) = cross_entropy(softmax(V h(t)), target(t))\nh(t) = W h(t-1) + x(t)",
     "L(t) = cross_entropy(softmax(V h(t)), target(t))\nh(t) = W h(t-1) + x(t)"),
]


@pytest.mark.parametrize("source, canonical", ACCEPTED)
def test_accepted(source, canonical):
    model = rnngraph.parse(source)
    assert model.to_text() == canonical + "\n"
    assert rnngraph.parse(model.to_text()) == model


# (source, line, column, exact message)
REJECTED = [
    ("h(t) = tanhh(W h(t-1) + U x(t))", 1, 8, "unknown function 'tanhh'; did you mean 'tanh'?"),
    ("h(t) = sigmod(x(t))", 1, 8, "unknown function 'sigmod'; did you mean 'sigmoid'?"),
    ("h(t) = foo(W x(t))", 1, 8, "unknown function 'foo'"),
    ("h(t) = tanh(x(t), y(t))", 1, 8, "tanh takes 1 argument, not 2"),
    ("L(t) = cross_entropy(y(t))", 1, 8, "cross_entropy takes 2 arguments, not 1"),
    ("h(t) = tanh", 1, 8, "'tanh' is a function, not a variable: call it as tanh(...)"),
    ("tanh = W x", 1, 1, "'tanh' is a function, not a variable: call it as tanh(...)"),
    ("sigmoid(t) = W x(t)", 1, 1, "'sigmoid' is a function and cannot be defined"),
    ("h(t) = W x(t)\nh(t) = U x(t)", 2, 1, "'h' is defined twice (first at line 1)"),
    ("h = W x\nh(t) = U x(t)", 2, 1, "'h' is defined twice (first at line 1)"),
    ("h(t-1) = W x(t)", 1, 1, "a left side is name(t), name or name(0), not h(t-1)"),
    ("U x = b", 1, 1, "a left side is name(t), name or name(0), not U x"),
    ("h(1) = h0", 1, 1, "h(1) is a fixed step, read from a sequence defined as h(t); only an initial "
                        "value h(0) is defined at a step"),
    ("h(t) = W h(t-1.5)", 1, 12, "a time index is t plus or minus an integer, as in h(t-1); not h(t - 1.5)"),
    ("h(t) = W h(s) + x(t)", 1, 10, "h(s): 's' is not an index (declare it on a line of its own: "
                                    "index s) and 'h' is not a function"),
    ("h(t) = W h(t-k)", 1, 12, "a time index is t plus or minus an integer, as in h(t-1); not h(t - k)"),
    ("h(t) = W h(3)", 1, 10, "h(t) reads h(3), but h is computed from itself: h(3) is known only "
                             "after every step of h has run"),
    # a time index is t, t-k or t+k: nothing else computes one
    ("h(t) = W x(t+t)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(t + t)"),
    ("h(t) = W x(t*2)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(t * 2)"),
    ("h(t) = W x(2 t)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(2 * t)"),
    ("h(t) = W x(-t)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(-t)"),
    ("h(t) = W x(t-1-1)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(t - 1 - 1)"),
    ("h(t) = W x(1+t)", 1, 12, "a time index is t plus or minus an integer, as in x(t-1); not x(1 + t)"),
    ("h(t) = W x(t-" + "-".join(["1"] * 30) + ")", 1, 12,
     "a time index is t plus or minus an integer, as in x(t-1); not x(t - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 - 1...)"),
    # numbers are float64: one that overflows is refused, not read as inf
    ("o = 1e999", 1, 5, "the number 1e999 is too large: numbers are 64-bit floats, at most 1.7976931348623157e+308"),
    ("y(t) = 1e999*x(t) + inf", 1, 8,
     "the number 1e999 is too large: numbers are 64-bit floats, at most 1.7976931348623157e+308"),
    ("h(t) = W h(t-1e999)", 1, 14,
     "the number 1e999 is too large: numbers are 64-bit floats, at most 1.7976931348623157e+308"),
    ("y = 2.5e308 * x", 1, 5,
     "the number 2.5e308 is too large: numbers are 64-bit floats, at most 1.7976931348623157e+308"),
    ("h = W x + t", 1, 11, "'t' is the step number: 'h' has no time index, so it has none"),
    ("t(t) = x(t)", 1, 1, "'t' is the time index, not a function or a variable"),
    ("a(t) = W b(t)\nb(t) = V a(t)", 1, 1,
     "algebraic loop: a(t) -> b(t) -> a(t) (each needs the other at the same step; read one of them at t-1)"),
    ("h(t) = tanh(h(t) + x(t))", 1, 1,
     "algebraic loop: h(t) -> h(t) (each needs the other at the same step; read one of them at t-1)"),
    ("a = W b\nb = V a", 1, 1,
     "algebraic loop: a -> b -> a (each needs the other at the same step; read one of them at t-1)"),
    ("h(t) = W h(t-1) + V h(t+1) + x(t)", 1, 21,
     "'h' reads itself both from the past (h(t-1)) and from the future (h(t+1)); "
     "split it into a forward and a backward state"),
    ("a(t) = W b(t+1) + x(t)\nb(t) = V a(t-1)", 2, 10,
     "'a' and 'b' form a loop that reads both from the past (a(t-1)) and from the future (b(t+1)); "
     "split it into a forward and a backward state"),
    ("", 1, 1, "no equations: write one per line, as in h(t) = tanh(W h(t-1) + U x(t))"),
    ("# nothing but a comment\n\n", 1, 1, "no equations: write one per line, as in h(t) = tanh(W h(t-1) + U x(t))"),
    ("h(t) = tanh(W h(t-1) + U x(t)", 1, 12, "'(' is never closed: a ')' is missing"),
    ("h(t) = W [h(t-1); x(t)\ny(t) = h(t)", 1, 10, "'[' is never closed: a ']' is missing"),
    ("h(t) = tanh(x(t)))", 1, 18, "unmatched ')'"),
    ("h(t) tanh(x(t))", 1, 16, "expected '=': each line is an equation, LHS = RHS"),
    ("h(t) = = x(t)", 1, 8, "unexpected '=': an equation has exactly one '='"),
    ("h(t) = x(t) +", 1, 14, "unexpected end of line; expected an expression"),
    ("h(t) = W x(t) $ 2", 1, 15, "unexpected character '$'"),
    ("h(t) = W x(t)^2", 1, 14, "'^' only writes a transpose, as in W^T"),
    ("é(t) = x(t)", 1, 1, "unexpected character 'é': names use ASCII or Greek letters, digits and underscores"),
    ("h(0) = h0", 1, 1, "h(0) gives an initial value, but 'h' is not defined as a sequence"),
    ("h(t) = W x(t)\nh(0) = h0", 2, 1, "h(0) gives an initial value, but 'h' is never read at an earlier step"),
    ("g(t) = W g(t+1) + x(t)\ng(0) = g0", 2, 1,
     "'g' runs backward (reads g(t+k)): it starts after the last step, so g(0) is never read"),
    ("h(t) = W h(t-1) + x(t)\nq = h(0)", 2, 5,
     "h(0) can only be defined (as a left side), not read; read h(t-1) in the recurrence instead"),
    ("h(t) = x(t) + h", 1, 15, "'h' is a sequence (defined as h(t)): read it as h(t) or h(t-1)"),
    ("h = W x\ny(t) = h(t) + x(t)", 2, 8, "'h' has no time index (defined as h = ...): read it as h"),
    ("h = x(t)", 1, 5, "'h' has no time index, so it cannot read x(t); it may read x(end), the last step"),
    ("h(t) = tanh(x(t)) + tanh(x)", 1, 26, "'x' is read both as x(t) (line 1) and as x"),
    ("y = W1 x\nz = x W2", 2, 5, "'x' is used both as a matrix and as the vector a matrix multiplies"),
    # sizes
    ("x: 0\nh(t) = W x(t)", 1, 4, "a size is a positive whole number, not 0"),
    ("x: 2.5\nh(t) = W x(t)", 1, 4, "a size is a positive whole number, not 2.5"),
    ("x: 10\nh(t) = W x(t)\nx: 12", 3, 1,
     "size conflict: 'x' is declared with size 12, but 'x' has size 10 (from 'x: 10', line 1)"),
    ("h(t) = W x(t) + b\nx: 3, h: 4\nb: 5", 1, 8,
     "size conflict in W x(t) + b: 'h' has size 4 (from 'h: 4', line 2), "
     "but 'W' has 5 rows (from 'b: 5', line 3)"),
    ("h(t) = W x(t)\nW: 3", 2, 1, "'W' is a matrix: declare the sizes of the vectors it maps between"),
    ("h(t) = W x(t)\nz: 3", 2, 1, "size declared for 'z', which no equation uses"),
    ("h(t) = W x(t)\nhh: 3", 2, 1, "size declared for 'hh', which no equation uses; did you mean 'h'?"),
    ("h(t) = W x(t) + W", 1, 8, "'+' needs two vectors or two matrices: W x(t) is a vector and W is a matrix"),
    ("h(t) = x(t) W", 1, 8, "the left side of a matrix product must be a matrix; x(t) is a vector"),
    ("h(t) = W x(t)\nh(t-0) = 1", 2, 1, "'h' is defined twice (first at line 1)"),
    ("h(t) = W [x(t); z(t)] + b\nx: 3, z: 4, b: 5\ny(t) = W q(t)\nq: 6", 1, 10,
     "size conflict in [x(t); z(t)]: its parts add up to 3 + 4 = 7, but it must have size 6"),
    ("h(t) = W x(t) * U z(t)\nx: 3, z: 4, h: 2\ny(t) = W z(t)", 3, 8,
     "size conflict in W z(t): 'W' has 3 columns (from 'x: 3', line 2), "
     "but 'z' has size 4 (from 'z: 4', line 2)"),
    ("L(t) = cross_entropy(y(t), c(t)) + y(t)\ny(t) = W x(t)\nx: 2, y: 3", 1, 8,
     "size conflict in cross_entropy(y(t), c(t)) + y(t): a loss has size 1, "
     "but 'y' has size 3 (from 'y: 3', line 3)"),
    ("h(t) = x(t)^T", 1, 8, "only a matrix can be transposed, or a vector in a dot product u^T v "
                            "or an outer product u v^T; x(t) is not a matrix"),
    ("h(t) = tanh(A) B x(t)", 1, 8, "the left side of a matrix product must be a matrix; tanh(A) is a vector"),
]


@pytest.mark.parametrize("source, line, column, message", REJECTED)
def test_rejected(source, line, column, message):
    head = f"bad.rnn:{line}:{column}: error: {message}"
    with pytest.raises(RnnGraphError, match="^" + re.escape(head) + "\n") as info:
        rnngraph.parse(source, "bad.rnn")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.filename, err.line, err.column) == ("bad.rnn", line, column)
    # The rendered error: location, message, the source line and a caret under the column.
    assert err.message == message
    shown, caret = str(err).split("\n")[1:3]
    assert shown.strip() == source.replace("\r\n", "\n").split("\n")[line - 1].strip()
    assert caret.index("^") - 4 == column - 1


def test_deep_nesting_of_brackets_is_answered():
    # 10,000 nested parentheses: parsed (brackets leave no depth in the AST).
    source = "h(t) = " + "(" * 10_000 + "W x(t)" + ")" * 10_000
    assert rnngraph.parse(source).to_text() == "h(t) = W x(t)\n"


DEEP = f"expression nested more than {MAX_DEPTH} deep; split it with an intermediate variable"


# Each way of nesting, as (source at depth d, the column its error points at): the
# expression starts there.  Every later stage walks expressions recursively (the
# printers, size inference, the compiler), so the parser refuses more than MAX_DEPTH.
NESTINGS = {
    "unary minus": (lambda d: "y(t) = " + "-" * (d - 1) + "x(t)", 8),
    "sum": (lambda d: "y(t) = " + " + ".join(["x(t)"] * d), 8),
    "product": (lambda d: "y(t) = " + " * ".join(["x(t)"] * d), 8),
    "concatenation": (lambda d: "y(t) = W " + "[" * (d - 2) + "x(t)" + "]" * (d - 2), 8),
    "calls": (lambda d: "y(t) = " + "tanh(" * (d - 1) + "x(t)" + ")" * (d - 1), 8),
    "matrix chain": (lambda d: "y(t) = " + "A " * (d - 1) + "x(t)", 8),
    "transposes": (lambda d: "y(t) = A" + "^T" * (d - 2) + " x(t)", 8),
}


@pytest.mark.parametrize("kind", NESTINGS)
def test_nesting_up_to_the_limit_is_read_and_printed(kind):
    make, _ = NESTINGS[kind]
    model = rnngraph.parse(make(MAX_DEPTH) + "\nx: 3, y: 3")
    text = model.to_text()
    assert rnngraph.parse(text) == model
    assert model.to_latex().count("x^{(t)}") == text.count("x(t)") >= 1
    assert model.sizes == {"y": 3, "x": 3}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 491, 10_000])
@pytest.mark.parametrize("kind", [*NESTINGS, "left side"])
def test_nesting_beyond_the_limit_is_a_located_error(kind, depth):
    make, column = NESTINGS.get(kind, (lambda d: "-" * (d - 1) + "x = y", 1))
    with pytest.raises(RnnGraphError, match=f"^<string>:1:{column}: error: {re.escape(DEEP)}\n"):
        rnngraph.parse(make(depth))


@pytest.mark.parametrize("source, column", [
    # the reproducers of the issue: each was a RecursionError
    ("[" * 400 + "x" + "]" * 400 + " = y", 1),
    ("-" * 491 + "x = y", 1),
    ("h(t) = x(" + "+".join(["t"] * 491) + ")", 10),
    ("h(t) = W x(t" + "-1" * 491 + ")", 12),
    ("h(t) = tanh(W h(t-1) + U x(" + "t+" * 300 + "t))", 28),
])
def test_deep_left_sides_and_time_indices_are_located_errors(source, column):
    with pytest.raises(RnnGraphError, match=f"^<string>:1:{column}: error: {re.escape(DEEP)}\n"):
        rnngraph.parse(source)


def test_unclosed_bracket_in_a_long_file_points_at_the_opener():
    source = "h(t) = tanh(W h(t-1)\n" + "y(t) = V h(t)\n" * 1000
    with pytest.raises(RnnGraphError, match=r"^<string>:1:12: error: '\(' is never closed") as info:
        rnngraph.parse(source)
    assert (info.value.line, info.value.column) == (1, 12)


def test_a_megabyte_file_parses_with_the_limits_raised():
    rows = [f"h{i}(t) = tanh(W{i} h{i}(t-1) + U{i} x(t) + b{i})" for i in range(22_000)]
    source = "\n".join(rows) + "\n"
    assert len(source.encode()) > 1_000_000
    model = rnngraph.parse(source, limits=rnngraph.Limits(max_source_bytes=2 << 20, max_equations=22_000))
    assert len(model.role("state")) == 22_000


def test_several_size_conflicts_are_reported_together():
    source = "h(t) = W x(t) + b\ny(t) = V h(t) + c\nx: 3, h: 4, y: 2\nb: 5\nc: 7"
    with pytest.raises(RnnGraphError) as info:
        rnngraph.parse(source, "s.rnn")
    assert [d.line for d in info.value.diagnostics] == [1, 2]
    assert str(info.value).count("error: size conflict") == 2


def test_a_number_before_a_name_with_digits_is_a_product():
    """2 x1(t) is 2 times x1(t), as before sizes of rows x columns (M: 8x16) were read: only
    after a size declaration's colon is 8x16 a size."""
    from rnngraph.lang.parser import parse_program
    from rnngraph.lang.printing import program_text
    prog = parse_program("h(t) = tanh(2 x1(t) + 3x2(t))\nM: 8x16, N:2 x 3")
    assert "h(t) = tanh(2 * x1(t) + 3 * x2(t))" in program_text(prog)
    assert [d.size for d in prog.sizes] == [(8, 16), (2, 3)]
