"""The op table: one row per IR op, holding everything the compiler knows of it.

A row says how the op's result :class:`~rnngraph.compile.program.Type` follows
from its arguments', how NumPy prints it, its vector-Jacobian product as IR
(``vjp(b, e, g)`` builds the cotangent of each argument with the builder ``b``,
from the equation ``e`` and the result's cotangent ``g``; autodiff sums each down
to its argument's type), whether it works lane by lane, its NumPy ufunc (the
in-place ``out=`` form) and the Numba kernel of rnngraph/runtime/jitops.py that computes
it.  Adding an op is one row here (and, for a function of the language, one in
rnngraph/lang/functions.py) and its tests.

Printing: a row's ``py(args, types, attrs)`` gets its arguments already printed,
as :class:`Text` (source and precedence), and returns the result's ``Text``;
``Text.at(p)`` brackets an argument that binds looser than position ``p`` needs,
so no printed expression depends on how its arguments were written.

Examples
--------
>>> from rnngraph.compile.program import Type
>>> OPS["matvec"].type((Type(0, (4, 3)), Type(1, (3,))), ())
Type(lead=1, shape=(4,))
>>> OPS["mul"].py((Text("a + b", ADD), Text("c", ATOM)), None, ()).text
'(a + b) * c'
>>> lookup("tanhh")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
rnngraph.errors.RnnGraphError: error: the compiler has no op 'tanhh': add a row to ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import RnnGraphError
from .program import Type

# Python's precedence, loosest first, as far as the printed code needs it.
CMP, ADD, MUL, UNARY, POW, ATOM = 10, 20, 30, 40, 50, 60


@dataclass(frozen=True)
class Text:
    """Printed source and the precedence of its outermost operator."""

    text: str
    prec: int

    def at(self, least: int) -> str:
        return self.text if self.prec >= least else f"({self.text})"


@dataclass(frozen=True)
class Op:
    name: str
    type: Callable            # (arg types, attrs) -> Type
    py: Callable              # (arg Texts, arg types, attrs) -> Text
    vjp: Callable | None      # (builder, eqn, g) -> one cotangent atom (or None) per argument
    lanewise: bool = False    # out[..., i] depends on args[..., i] alone
    ufunc: str | None = None  # NumPy's in-place form: np.<ufunc>(..., out=)
    kernel: str | None = None  # rnngraph/runtime/jitops.py's kernel for Numba loops: kernel(*args, out)
    # An op with no kernel in a Numba loop: its expression there, (arg Texts, arg types,
    # attrs) -> Text (None where it cannot be in one: that loop runs in NumPy)
    nopython: Callable | None = None


OPS: dict[str, Op] = {}


def lookup(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise RnnGraphError(f"the compiler has no op '{name}': add a row to the op table "
                            "in rnngraph/compile/optable.py") from None


def _row(name, type, py, vjp, **more):
    OPS[name] = Op(name, _carry_over(type), py, vjp, **more)


def _carry_over(type):
    """``type`` with the result keeping a whole sequence's leading axis (Type.over) where an
    argument with as many leading axes has one: attention's scores over every t, computed
    at one step of u, stay over t through tanh, products and sums."""
    def typed(types, attrs):
        t = type(types, attrs)
        if t.over is None and t.lead >= 2:
            over = next((x.over for x in types if x.over and x.lead == t.lead), None)
            if over is not None:
                return Type(t.lead, t.shape, over)
        return t
    typed.__doc__ = type.__doc__
    return typed


# -- types ------------------------------------------------------------------------

def _broadcast(types, attrs=()) -> Type:
    """Elementwise: the most leading axes, and NumPy's broadcast of the shapes."""
    lead = max(t.lead for t in types)
    shapes = [t.shape for t in types if t.shape]
    shape = max(shapes, key=lambda s: (len(s), s != (1,), s != (1, 1)), default=())
    return Type(lead, shape)


def _same(types, attrs=()) -> Type:
    return types[0]


def _one(types, attrs=()) -> Type:
    return Type(max(t.lead for t in types), (1,))


# -- printing ------------------------------------------------------------------------

def _binary(symbol, prec):
    def py(a, types, attrs):
        return Text(f"{a[0].at(prec)} {symbol} {a[1].at(prec + 1)}", prec)
    return py


def _call(fn):
    def py(a, types, attrs):
        return Text(f"{fn}({', '.join(x.text for x in a)})", ATOM)
    return py


# ============================================================================
# Elementwise
# ============================================================================

def _lanewise(name, py, vjp, ufunc=None, kernel=None, type=_broadcast):
    _row(name, type, py, vjp, lanewise=True, ufunc=ufunc, kernel=kernel)


#         name       printer                    VJP: cotangent of each argument
_lanewise("add",     _binary("+", ADD),         lambda b, e, g: (g, g),
          "add", "add")
_lanewise("sub",     _binary("-", ADD),         lambda b, e, g: (g, b.neg(g)),
          "subtract", "subtract")
_lanewise("mul",     _binary("*", MUL),         lambda b, e, g: (b.mul(g, e.args[1]), b.mul(e.args[0], g)),
          "multiply", "multiply")
_lanewise("div",     _binary("/", MUL),         lambda b, e, g: (b.div(g, e.args[1]),
                                                                 b.neg(b.div(b.mul(g, e.out), e.args[1]))),
          "divide", "divide")
# No ufunc: NumPy 2.4's float32 np.negative(a, out=b) is wrong when a and b are both
# strided columns of width 1 (lanes of packed gates); numpy_fast prints a * -1 instead.
_lanewise("neg",     lambda a, t, at: Text(f"-{a[0].at(UNARY)}", UNARY),
          lambda b, e, g: (b.neg(g),), kernel="negative")
_lanewise("copy",    lambda a, t, at: a[0], lambda b, e, g: (g,), type=_same)
_lanewise("tanh",    _call("np.tanh"),          lambda b, e, g: (b.mul(g, b.sub(1, b.mul(e.out, e.out))),),
          "tanh", "tanh")
_lanewise("sigmoid", _call("sigmoid"),          lambda b, e, g: (b.mul(g, b.mul(e.out, b.sub(1, e.out))),),
          kernel="sigmoid")
_lanewise("relu",    lambda a, t, at: Text(f"np.maximum({a[0].text}, 0)", ATOM),
          lambda b, e, g: (b.mul(g, b.op("positive", e.out)),), kernel="maximum")
_lanewise("exp",     _call("np.exp"),           lambda b, e, g: (b.mul(g, e.out),), "exp", "exp")
_lanewise("log",     _call("np.log"),           lambda b, e, g: (b.div(g, e.args[0]),), "log", "log")
# softplus(x) = log(1 + e^x), as logaddexp(0, x): no overflow for large x, exact for small.
_lanewise("softplus", lambda a, t, at: Text(f"np.logaddexp(0, {a[0].text})", ATOM),
          lambda b, e, g: (b.mul(g, b.op("sigmoid", e.args[0])),), kernel="softplus")
_lanewise("sqrt",    _call("np.sqrt"),          lambda b, e, g: (b.div(g, b.mul(2, e.out)),),
          "sqrt", "sqrt")
# Only in gradients: 1 where x > 0, else 0 (relu's derivative).
_row("positive", _broadcast, lambda a, t, at: Text(f"({a[0].text} > 0)", ATOM), None,
     lanewise=True, nopython=_call("jitops.positive"))


# ============================================================================
# Over the last axis
# ============================================================================

def _softmax_vjp(b, e, g):
    y = e.out
    return (b.mul(y, b.sub(g, b.op("rowsum", b.mul(g, y)))),)


_row("softmax",     _same, _call("softmax"), _softmax_vjp, kernel="softmax")
_row("log_softmax", _same, _call("log_softmax"),
     lambda b, e, g: (b.sub(g, b.mul(b.op("softmax", e.args[0]), b.op("rowsum", g))),))
# Only in gradients: the sum over the last axis, kept as an axis of size 1.
_row("rowsum", _one, lambda a, t, at: Text(f"{a[0].at(ATOM)}.sum(-1, keepdims=True)", ATOM), None,
     nopython=_call("jitops.rowsum"))
# Across the steps of a sequence read whole (attention's a(u, t) = softmax_t(e(u, t)) over
# every t at one u): the axis before the batch's, -3 of (..., T, B, n), so that it is the same
# axis whatever leading axes come before it.
_row("softmax_steps", _same, lambda a, t, at: Text(f"softmax({a[0].text}, -3)", ATOM),
     lambda b, e, g: (b.op("softmax_steps_grad", e.out, g),))
# Only in gradients: y (g - sum over the steps of g y), softmax_steps's VJP at its output y.
_row("softmax_steps_grad", lambda t, at: t[1], lambda a, t, at: Text(
    f"{a[0].at(MUL)} * ({a[1].at(ADD)} - ({a[1].at(MUL)} * {a[0].at(MUL + 1)}).sum(-3, "
    "keepdims=True))", MUL), None)
# u^T v of two vectors, a dot product (Luong's score s^T h): one number a row
_row("dot", lambda t, at: Type(max(x.lead for x in t), (1,)),
     lambda a, t, at: Text(f"({a[0].at(MUL)} * {a[1].at(MUL + 1)}).sum(-1, keepdims=True)", ATOM),
     lambda b, e, g: (b.mul(g, e.args[1]), b.mul(e.args[0], g)),
     nopython=lambda a, t, at: Text(f"jitops.rowsum({a[0].at(MUL)} * {a[1].at(MUL + 1)})", ATOM))


def _concat_type(types, attrs):
    return Type(max(t.lead for t in types), (sum(t.shape[-1] for t in types),))


def _concat_py(a, types, attrs):
    lead = max(t.lead for t in types)
    ref = next(x for x, t in zip(a, types) if t.lead == lead)
    items = [x.text if t.lead == lead else
             f"np.broadcast_to({x.text}, {ref.at(ATOM)}.shape[:-1] + ({t.shape[-1]},))"
             for x, t in zip(a, types)]
    comma = "," if len(items) == 1 else ""
    return Text(f"np.concatenate(({', '.join(items)}{comma}), -1)", ATOM)


def _concat_vjp(b, e, g):
    out, lo = [], 0
    for arg in e.args:
        n = b.type(arg).shape[-1]
        out.append(b.op("slice", g, attrs=(lo, lo + n)))
        lo += n
    return tuple(out)


_row("concat", _concat_type, _concat_py, _concat_vjp, nopython=_concat_py)
def _slice_py(a, t, at):
    return Text(f"{a[0].at(ATOM)}[..., {at[0]}:{at[1]}]", ATOM)


_row("slice", lambda t, at: Type(t[0].lead, (at[1] - at[0],)), _slice_py, None, nopython=_slice_py)


# ============================================================================
# Linear algebra.  Vectors are rows: W x is x @ W.T, W (size of result, size of x)
# as PyTorch's weights.
# ============================================================================

def _matvec_vjp(b, e, g):
    A, v = e.args
    return (b.outer(g, v), b.op("vecmat", g, A))


def _lead_sum(x: Text, axes: int) -> Text:
    if axes <= 0:
        return x
    return Text(f"{x.at(ATOM)}.sum({0 if axes == 1 else tuple(range(axes))})", ATOM)


def _outer_py(a, types, attrs):
    """The operand with more leading axes summed down to the other's, then one product:
    np.outer, a GEMM over the batch, or one over every step's rows."""
    lead = min(t.lead for t in types)
    g, v = (_lead_sum(x, t.lead - lead) for x, t in zip(a, types))
    if lead == 0:
        return Text(f"np.outer({g.text}, {v.text})", ATOM)
    if lead == 1:
        return Text(f"{g.at(ATOM)}.T @ {v.at(MUL + 1)}", MUL)
    rows = [f"{x.at(ATOM)}.reshape(-1, {n})" for x, n in zip((g, v), (types[0].shape[0],
                                                                      types[1].shape[0]))]
    return Text(f"{rows[0]}.T @ {rows[1]}", MUL)


_row("matvec", lambda t, at: Type(t[1].lead, t[0].shape[:1]),
     lambda a, t, at: Text(f"{a[1].at(MUL)} @ {a[0].at(ATOM)}.T", MUL), _matvec_vjp)
_row("matmat", lambda t, at: Type(max(x.lead for x in t), (t[0].shape[0], t[1].shape[1])),
     _binary("@", MUL),
     lambda b, e, g: (b.op("matmat", g, b.op("transpose", e.args[1])),
                      b.op("matmat", b.op("transpose", e.args[0]), g)))
def _transpose_py(a, t, at):
    if t[0].lead:                       # each example's matrix (a memory): its last two axes
        return Text(f"np.swapaxes({a[0].text}, -1, -2)", ATOM)
    return Text(f"{a[0].at(ATOM)}.T", ATOM)


_row("transpose", lambda t, at: Type(t[0].lead, t[0].shape[::-1]), _transpose_py,
     lambda b, e, g: (b.op("transpose", g),), nopython=_transpose_py)
# Made by layout.transposed_in_loops for a product in a loop: A^T as a C-ordered copy
# (rnngraph/runtime/ops.py's transposed), made once, which BLAS multiplies 25-35% faster
# than the strided view A.T (float32, 2 threads, (32, 256) @ (256, 256): 37.5 us
# against 47.6).
_row("transposed", lambda t, at: Type(0, t[0].shape[::-1]),
     lambda a, t, at: Text(f"transposed({a[0].text})", ATOM),
     lambda b, e, g: (b.op("transpose", g),))
# Only in gradients: g @ A (the cotangent of the vector of a matvec) and the sum over
# rows of g_row^T v_row (of its matrix; the builder sums both to the same leading axes).
_row("vecmat", lambda t, at: Type(t[0].lead, t[1].shape[1:]), _binary("@", MUL), None)
_row("outer", lambda t, at: Type(0, (t[0].shape[0], t[1].shape[0])), _outer_py, None,
     nopython=lambda a, t, at: _outer_py(a, t, at) if max(x.lead for x in t) < 2 else None)


# ============================================================================
# Matrix-valued variables (a memory M(t), N x W at each step for each example: Type(1,
# (N, W)), issue 18).  One product per example, batched by NumPy's matmul.
# ============================================================================

def _bouter_py(a, t, at):
    return Text(f"{a[0].at(ATOM)}[..., :, None] * {a[1].at(ATOM)}[..., None, :]", MUL)


# u v^T for each example (a memory's write w(t) e(t)^T): du = g v, dv = g^T u
_row("bouter", lambda t, at: Type(max(x.lead for x in t), (t[0].shape[0], t[1].shape[0])),
     _bouter_py, lambda b, e, g: (b.op("bmatvec", g, e.args[1]), b.op("bmatTvec", g, e.args[0])))
# M v for each example's M (a read by content: the scores of every row): dM = g v^T, dv = M^T g
_row("bmatvec", lambda t, at: Type(max(x.lead for x in t), t[0].shape[:1]),
     lambda a, t, at: Text(f"({a[0].at(MUL)} @ {a[1].at(ATOM)}[..., None])[..., 0]", ATOM),
     lambda b, e, g: (b.op("bouter", g, e.args[1]), b.op("bmatTvec", e.args[0], g)))
# M^T v for each example's M (the NTM's read r = M^T w): dM = v g^T, dv = M g
_row("bmatTvec", lambda t, at: Type(max(x.lead for x in t), t[0].shape[1:]),
     lambda a, t, at: Text(f"({a[1].at(ATOM)}[..., None, :] @ {a[0].at(MUL + 1)})[..., 0, :]", ATOM),
     lambda b, e, g: (b.op("bouter", e.args[1], g), b.op("bmatvec", e.args[0], g)))


def _norm_type(t, at):
    """A vector's norm is one number (size 1); a matrix's, one for each row."""
    return Type(t[0].lead, (1,) if len(t[0].shape) == 1 else t[0].shape[:1])


def _norm_py(a, t, at):
    keep = ", keepdims=True" if len(t[0].shape) == 1 else ""
    return Text(f"np.sqrt(({a[0].at(MUL)} * {a[0].at(MUL + 1)}).sum(-1{keep}))", ATOM)


def _norm_grad_py(a, t, at):
    """x / max(|x|, tiny) * g: the norm's VJP, 0 (not NaN) where x = 0, where it has none.
    x / tiny comes first, so that a large g cannot overflow where x is 0."""
    rows = "[..., None]" if len(t[0].shape) == 2 else ""
    scale = f"np.maximum({a[1].text}, np.finfo(DTYPE).tiny)"
    g = a[2].at(ATOM) + rows if rows else a[2].at(MUL + 1)
    return Text(f"{a[0].at(MUL)} / {scale}{rows} * {g}", MUL)


# A size-1 value as a 1 x 1 matrix, which broadcasts over a matrix's entries (g(t) * M(t-1));
# its VJP the sum over the entries, which autodiff makes (sum_to), then the axis dropped
_row("unsqueeze", lambda t, at: Type(t[0].lead, (1, 1)),
     lambda a, t, at: Text(f"{a[0].at(ATOM)}[..., None]", ATOM),
     lambda b, e, g: (b.op("squeeze", b.sum_to(g, Type(b.type(g).lead, (1, 1)))),))
# Only in gradients: a 1 x 1 matrix's cotangent as the size-1 value's
_row("squeeze", lambda t, at: Type(t[0].lead, (1,)),
     lambda a, t, at: Text(f"{a[0].at(ATOM)}[..., 0]", ATOM), None)
# |x| = sqrt(sum of x^2) over the last axis (cosine's lengths)
_row("norm", _norm_type, _norm_py, lambda b, e, g: (b.op("norm_grad", e.args[0], e.out, g),))
# Only in gradients: the norm's VJP at x with norm y and cotangent g
_row("norm_grad", lambda t, at: Type(max(x.lead for x in t), t[0].shape), _norm_grad_py, None)


# Made by rnngraph/compile/passes.py's stack_products: matrices that multiply the same
# vector, stacked by rows, so that one product serves them all; each member's result
# is then a slice of the wide one (a view), and in the backward pass the members'
# cotangents are concatenated (autodiff gathers slices) to flow back through one product.
def _stack_vjp(b, e, g):
    out, lo = [], 0
    for arg in e.args:
        rows = b.type(arg).shape[0]
        out.append(b.op("rowslice", g, attrs=(lo, lo + rows)))
        lo += rows
    return tuple(out)


_row("stack", lambda t, at: Type(0, (sum(x.shape[0] for x in t), t[0].shape[1])),
     lambda a, t, at: Text(f"np.concatenate(({', '.join(x.text for x in a)}), 0)", ATOM), _stack_vjp)
def _rowslice_py(a, t, at):
    return Text(f"{a[0].at(ATOM)}[{at[0]}:{at[1]}]", ATOM)


_row("rowslice", lambda t, at: Type(0, (at[1] - at[0], t[0].shape[1])), _rowslice_py, None,
     nopython=_rowslice_py)
# Only in gradients: zeros for the lanes of a slice nothing flowed back to.
_row("zeros", lambda t, at: Type(t[0].lead, (at[0],)),
     lambda a, t, at: Text(f"np.zeros({a[0].at(ATOM)}.shape[:-1] + ({at[0]},), DTYPE)", ATOM), None)


def _sum_to_py(a, types, attrs, keep: str = "keepdims"):
    """Sum over the leading axes the target lacks and over a size-1 target's lanes (``keep``:
    the keyword that keeps an axis, PyTorch's keepdim for rnngraph/compile/torch_export.py)."""
    (lead, shape), (have,) = attrs, types
    text, prec = a[0].text, a[0].prec
    axes = have.lead - lead
    if axes:
        text, prec = f"{a[0].at(ATOM)}.sum({0 if axes == 1 else tuple(range(axes))})", ATOM
    if shape == (1,) and have.shape != (1,):
        text, prec = f"{Text(text, prec).at(ATOM)}.sum(-1, {keep}=True)", ATOM
    if shape == (1, 1) and have.shape != (1, 1):       # over a matrix's entries
        text, prec = f"{Text(text, prec).at(ATOM)}.sum((-2, -1), {keep}=True)", ATOM
    return Text(text, prec)


def _sum_to_nopython(a, types, attrs):
    """sum_to in a Numba loop: the batch summed by ``.sum(0)``, lanes by jitops.rowsum
    (Numba's sum has no keepdims); None for more leading axes."""
    (lead, shape), (have,) = attrs, types
    if have.lead - lead > 1 or len(shape) == 2:
        return None
    text = a[0]
    if shape == (1,) and have.shape != (1,):
        text = Text(f"jitops.rowsum({text.text})", ATOM)
    if have.lead > lead:
        text = Text(f"{text.at(ATOM)}.sum(0)", ATOM)
    return text


# its VJP (forward, in a sum over the steps: J = sum_t(f)) spreads g back over what it summed
_row("sum_to", lambda t, at: Type(at[0], at[1]), _sum_to_py,
     lambda b, e, g: (b.op("spread", g, e.args[0]),), nopython=_sum_to_nopython)
# Only in gradients, made by layout.sums_of_products: sum_to(a * b) over every leading axis,
# a and b of one type, in one pass with no (T, B, n) product between (a peephole weight's
# gradient, the sum over steps and batch of dz(t) * s(t-1))
def _sum_products_py(a, t, at):
    # the leading axes by letters of their own: NumPy 2.4's einsum("...j,...j->j") fails
    # when one of the axes "..." stands for has size 1 (a batch of one)
    lanes = "ij"[2 - len(t[0].shape):]
    spec = "tuvw"[:t[0].lead] + lanes
    return Text(f'np.einsum("{spec},{spec}->{lanes}", {a[0].text}, {a[1].text})', ATOM)


_row("sum_products", lambda t, at: Type(0, t[0].shape), _sum_products_py, None)
# g broadcast to the shape of ``like`` (a copy: what reads it may write it in place)
_row("spread", lambda t, at: t[1],
     lambda a, t, at: Text(f"np.broadcast_to({a[0].text}, {a[1].at(ATOM)}.shape).copy()", ATOM), None)


# ============================================================================
# Losses (a size-1 result per step)
# ============================================================================
_row("cross_entropy", _one, _call("cross_entropy"),
     lambda b, e, g: (b.neg(b.div(b.mul(g, e.args[1]), e.args[0])),
                      b.neg(b.mul(g, b.op("log", e.args[0])))))
# cross_entropy(softmax(z), target), made by the compiler (rnngraph/compile/lower.py):
# stable, and its gradient never divides by a probability that underflowed.
_row("softmax_cross_entropy", _one, _call("softmax_cross_entropy"),
     lambda b, e, g: (b.mul(g, b.sub(b.mul(b.op("softmax", e.args[0]), b.op("rowsum", e.args[1])),
                                     e.args[1])),
                      b.neg(b.mul(g, b.op("log_softmax", e.args[0])))))

# -(d log p + (1 - d) log(1 - p)): dp = (p - d) / (p (1 - p)), dd = log(1 - p) - log p
_row("binary_cross_entropy", _one, _call("binary_cross_entropy"),
     lambda b, e, g: (b.mul(g, b.div(b.sub(e.args[0], e.args[1]),
                                     b.mul(e.args[0], b.sub(1, e.args[0])))),
                      b.mul(g, b.sub(b.op("log", b.sub(1, e.args[0])), b.op("log", e.args[0])))))
# binary_cross_entropy(sigmoid(z), d) = softplus(z) - d z, made by the compiler (lower.py):
# dz = sigmoid(z) - d, dd = -z
_row("sigmoid_binary_cross_entropy", _one, _call("sigmoid_binary_cross_entropy"),
     lambda b, e, g: (b.mul(g, b.sub(b.op("sigmoid", e.args[0]), e.args[1])),
                      b.neg(b.mul(g, e.args[0]))))

#: What generated code imports from rnngraph/runtime/ops.py.
RUNTIME = ("sigmoid", "softmax", "log_softmax", "cross_entropy", "softmax_cross_entropy",
           "binary_cross_entropy", "sigmoid_binary_cross_entropy", "transposed", "add_at")
