"""The best NumPy we can write by hand: torch.nn.RNN, LSTM and GRU, forward and BPTT.

What rnngraph's compiled code must match.  Every trick a careful researcher
would use: the gates' matrices stacked (sigmoid gates next to each other, so
one call serves them all), the input projections of every step in one GEMM
before the loop, the biases folded into it, every ufunc writing in place
(``out=``), the activations' derivatives computed inside the backward loop
when a step is big (``PER_STEP``) and for every step at once before it when
not, and the parameter gradients as one GEMM over stacked time after the
reverse loop.

A hand-written baseline for a benchmark loop, so its arrays are kept from
call to call: each model allocates every array ``run`` needs (the hidden
states, the gates, the gradients, the temporaries) once per shape (T, B) and
reuses them on the next call, which saves the first touch of tens of MB of
fresh pages each call.  The arrays ``run`` returns (in a new dict each call)
are those buffers: the next call overwrites them, so a caller copies what it
keeps.  Not thread-safe.

Each model is built from the parameters under rnngraph's (PyTorch's) names;
stacking (and W_h's transpose for the forward loop) happens in the constructor,
outside the timing, so the hand code starts from its favourite layout.
``run(x, dh)`` takes the input (T, B, m) and the cotangent of every h(t)
(T, B, n), and returns (h, grads): the hidden states (T, B, n) and the
gradient of every parameter, of x and of the initial states (all zero), named
as rnngraph names them.
"""
import numpy as np

#: A backward loop's activation derivative (a factor of width w) is computed
#: inside the loop, one step at a time while that step's values are in cache,
#: when B * w >= PER_STEP; below that the two extra calls per step cost more
#: than a pass over every step at once before the loop.
PER_STEP = 4096


def _sigmoid_(a, one):
    """The logistic function in place: exp of -a may overflow to inf, giving 0, no NaN.
    ``one`` is a 0-d array of a's dtype (adding a Python 1 costs a conversion per call).
    1 / a by np.divide: NumPy vectorises it for float32, not np.reciprocal (same bits)."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += one
    np.divide(one, a, out=a)


def _fill(y_sig, y_tanh, d_sig, d_tanh, one):
    """d_sig = sigmoid's derivative at its outputs y_sig, y (1 - y); d_tanh = tanh's at
    its outputs y_tanh, 1 - y^2.  Either pair may have no columns."""
    if d_sig.shape[-1]:
        np.subtract(one, y_sig, out=d_sig)
        d_sig *= y_sig
    if d_tanh.shape[-1]:
        np.multiply(y_tanh, y_tanh, out=d_tanh)
        np.subtract(one, d_tanh, out=d_tanh)


_ONES = {}


def _column_sums(G, out):
    """out = the sum of G's rows (a bias gradient), as one gemv with a vector of ones:
    np.sum over axis 0 adds row after row, 2.5x slower at A and less accurate."""
    ones = _ONES.get((len(G), G.dtype))
    if ones is None:
        ones = _ONES[len(G), G.dtype] = np.ones(len(G), G.dtype)
    np.dot(ones, G, out=out)


def _factor_buffer(T, B, w, dt):
    """The buffer of a derivative factor of width w: one step's, or every step's."""
    return np.empty((B, w) if B * w >= PER_STEP else (T, B, w), dt)


def _factors(Y, D, k, one):
    """For the backward loop: the derivative of the activations whose outputs are Y
    (T, B, w) at every step, newest first; sigmoids in the first k columns, tanh in the
    others.  D from _factor_buffer: every step's, filled here at once; or one step's,
    filled for each step as the loop asks for it (a generator)."""
    if D.ndim == 3:
        _fill(Y[..., :k], Y[..., k:], D[..., :k], D[..., k:], one)
        return D[::-1]
    return _each_step(Y[::-1, :, :k], Y[::-1, :, k:], D, D[:, :k], D[:, k:], one)


def _each_step(Y_sig, Y_tanh, D, d_sig, d_tanh, one):
    """_factors' generator: the slices taken once, two calls per activation and step."""
    for y_sig, y_tanh in zip(Y_sig, Y_tanh):
        _fill(y_sig, y_tanh, d_sig, d_tanh, one)
        yield D


class _Kept:
    """The arrays of ``run``, kept from call to call: allocated by ``_allocate(T, B)``
    the first time, and again only when (T, B) changes."""

    _shape = None

    def _buffers(self, T, B):
        if self._shape != (T, B):
            self._shape, self._kept = (T, B), self._allocate(T, B)
        return self._kept


class RNN(_Kept):
    """h(t) = tanh(W_ih x(t) + b_ih + W_hh h(t-1) + b_hh)."""

    def __init__(self, p, dtype):
        self.Wx, self.Wh = p["W_ih"].astype(dtype), p["W_hh"].astype(dtype)
        self.WhT = np.ascontiguousarray(self.Wh.T)
        self.b = (p["b_ih"] + p["b_hh"]).astype(dtype)
        self.dtype, self.one = dtype, np.ones((), dtype)

    def _allocate(self, T, B):
        (n, m), dt = self.Wx.shape, self.dtype
        H, dZ = np.empty((T + 1, B, n), dt), np.empty((T, B, n), dt)
        D, tmp, dh = _factor_buffer(T, B, n, dt), np.empty((B, n), dt), np.empty((B, n), dt)
        dWx, dWh, dbx, dbh = (np.empty((n, m), dt), np.empty((n, n), dt), np.empty(n, dt),
                              np.empty(n, dt))
        dx = np.empty((T, B, m), dt)
        grads = {"W_ih": dWx, "W_hh": dWh, "b_ih": dbx, "b_hh": dbh, "x": dx, "h(0)": dh}
        return H, dZ, D, tmp, grads

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[0]
        H, dZ, D, tmp, grads = self._buffers(T, B)
        dh = grads["h(0)"]
        H[0] = 0
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=H[1:].reshape(T * B, n))
        H[1:] += self.b
        for h_prev, h in zip(H[:-1], H[1:]):
            np.dot(h_prev, self.WhT, out=tmp)
            h += tmp
            np.tanh(h, out=h)
        # backward: 1 - h^2 in the loop or before it (_factors)
        dh.fill(0)
        for dh_out, d, dz in zip(dH[::-1], _factors(H[1:], D, 0, self.one), dZ[::-1]):
            dh += dh_out
            np.multiply(dh, d, out=dz)
            np.dot(dz, self.Wh, out=dh)
        G = dZ.reshape(T * B, n)
        np.matmul(G.T, H[:T].reshape(T * B, n), out=grads["W_hh"])
        np.matmul(G.T, x.reshape(T * B, m), out=grads["W_ih"])
        _column_sums(G, grads["b_ih"])
        np.copyto(grads["b_hh"], grads["b_ih"])
        np.matmul(G, self.Wx, out=grads["x"].reshape(T * B, m))
        return H[1:], dict(grads)


class LSTM(_Kept):
    """torch.nn.LSTM, gates stacked i, f, o, g: the three sigmoids in one call."""

    ORDER = "ifog"

    def __init__(self, p, dtype):
        self.Wx = np.concatenate([p[f"W_i{k}"] for k in self.ORDER]).astype(dtype)
        self.Wh = np.concatenate([p[f"W_h{k}"] for k in self.ORDER]).astype(dtype)
        self.WhT = np.ascontiguousarray(self.Wh.T)
        self.b = np.concatenate([p[f"b_i{k}"] + p[f"b_h{k}"] for k in self.ORDER]).astype(dtype)
        self.dtype, self.one = dtype, np.ones((), dtype)

    def _allocate(self, T, B):
        (n4, m), n, dt = self.Wx.shape, self.Wh.shape[1], self.dtype
        A, dZ = np.empty((T, B, n4), dt), np.empty((T, B, n4), dt)
        H, C = np.empty((T + 1, B, n), dt), np.empty((T + 1, B, n), dt)
        TC = np.empty((T, B, n), dt)     # tanh(c)
        D, DTC = _factor_buffer(T, B, n4, dt), _factor_buffer(T, B, n, dt)
        tmp, dh, dc = np.empty((B, n4), dt), np.empty((B, n), dt), np.empty((B, n), dt)
        dWx, dWh, db, dbh = (np.empty((n4, m), dt), np.empty((n4, n), dt), np.empty(n4, dt),
                             np.empty(n4, dt))
        dx = np.empty((T, B, m), dt)
        grads = {"x": dx, "h(0)": dh, "c(0)": dc}
        for k, gate in enumerate(self.ORDER):
            rows = slice(k * n, (k + 1) * n)
            grads.update({f"W_i{gate}": dWx[rows], f"W_h{gate}": dWh[rows],
                          f"b_i{gate}": db[rows], f"b_h{gate}": dbh[rows]})
        return A, H, C, TC, D, DTC, dZ, tmp, dWx, dWh, db, dbh, grads

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[1]
        n3, n4, one = 3 * n, 4 * n, self.one
        A, H, C, TC, D, DTC, dZ, tmp, dWx, dWh, db, dbh, grads = self._buffers(T, B)
        dx, dh, dc = grads["x"], grads["h(0)"], grads["c(0)"]
        # forward: A holds the pre-activations, then (in place) the gates
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=A.reshape(T * B, n4))
        A += self.b
        I, F, O, G, S = A[..., :n], A[..., n:2 * n], A[..., 2 * n:n3], A[..., n3:], A[..., :n3]
        H[0], C[0] = 0, 0
        tmp_n = tmp[:, :n]
        with np.errstate(over="ignore"):
            for a, s, i, f, o, g, tc, c_prev, c, h_prev, h in zip(
                    A, S, I, F, O, G, TC, C[:-1], C[1:], H[:-1], H[1:]):
                np.dot(h_prev, self.WhT, out=tmp)
                a += tmp
                _sigmoid_(s, one)
                np.tanh(g, out=g)
                np.multiply(f, c_prev, out=c)
                np.multiply(i, g, out=tmp_n)
                c += tmp_n
                np.tanh(c, out=tc)
                np.multiply(o, tc, out=h)
        # backward: the gates' derivatives and tanh(c)'s in the loop or before it (_factors)
        dI, dF, dO, dG = dZ[..., :n], dZ[..., n:2 * n], dZ[..., 2 * n:n3], dZ[..., n3:]
        dh.fill(0)
        dc.fill(0)
        r = slice(None, None, -1)                    # backwards in time
        for dh_out, tc, dtc, o, g, c_prev, i, f, d, dz, di, df, do, dg in zip(
                dH[r], TC[r], _factors(TC, DTC, 0, one), O[r], G[r], C[:-1][r], I[r], F[r],
                _factors(A, D, n3, one), dZ[r], dI[r], dF[r], dO[r], dG[r]):
            dh += dh_out
            np.multiply(dh, tc, out=do)
            np.multiply(dh, o, out=tmp_n)
            tmp_n *= dtc
            dc += tmp_n
            np.multiply(dc, g, out=di)
            np.multiply(dc, c_prev, out=df)
            np.multiply(dc, i, out=dg)
            dc *= f
            dz *= d
            np.dot(dz, self.Wh, out=dh)
        Gr = dZ.reshape(T * B, n4)
        np.matmul(Gr.T, H[:T].reshape(T * B, n), out=dWh)
        np.matmul(Gr.T, x.reshape(T * B, m), out=dWx)
        _column_sums(Gr, db)
        np.copyto(dbh, db)
        np.matmul(Gr, self.Wx, out=dx.reshape(T * B, m))
        return H[1:], dict(grads)


class GRU(_Kept):
    """torch.nn.GRU, gates stacked r, z, n; b_hn stays inside r * (W_hn h + b_hn)."""

    ORDER = "rzn"

    def __init__(self, p, dtype):
        self.Wx = np.concatenate([p[f"W_i{k}"] for k in self.ORDER]).astype(dtype)
        self.Wh = np.concatenate([p[f"W_h{k}"] for k in self.ORDER]).astype(dtype)
        self.WhT = np.ascontiguousarray(self.Wh.T)
        self.b = np.concatenate([p["b_ir"] + p["b_hr"], p["b_iz"] + p["b_hz"],
                                 p["b_in"]]).astype(dtype)
        self.b_hn = p["b_hn"].astype(dtype)
        self.dtype, self.one = dtype, np.ones((), dtype)

    def _allocate(self, T, B):
        (n3, m), n, dt = self.Wx.shape, self.Wh.shape[1], self.dtype
        A = np.empty((T, B, n3), dt)      # pre-activations, then gates r, z, n in place
        HP = np.empty((T, B, n3), dt)     # W_h h(t-1), with b_hn on its n part
        H = np.empty((T + 1, B, n), dt)
        dA = np.empty((T, B, n3), dt)     # gradients of the pre-activations
        dHP = np.empty((T, B, n3), dt)    # of W_h h(t-1) (+ b_hn)
        D_r, D_zn = _factor_buffer(T, B, n, dt), _factor_buffer(T, B, 2 * n, dt)
        tmp, dh, dhz = np.empty((B, n), dt), np.empty((B, n), dt), np.empty((B, n), dt)
        dWx, dWh, dba, dbh = (np.empty((n3, m), dt), np.empty((n3, n), dt), np.empty(n3, dt),
                              np.empty(n3, dt))
        dx = np.empty((T, B, m), dt)
        grads = {"x": dx, "h(0)": dh}
        for k, gate in enumerate(self.ORDER):
            rows = slice(k * n, (k + 1) * n)
            grads.update({f"W_i{gate}": dWx[rows], f"W_h{gate}": dWh[rows],
                          f"b_i{gate}": dba[rows], f"b_h{gate}": dbh[rows]})
        return A, HP, H, dA, dHP, D_r, D_zn, tmp, dhz, dWx, dWh, dba, dbh, grads

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[1]
        n2, n3, one = 2 * n, 3 * n, self.one
        A, HP, H, dA, dHP, D_r, D_zn, tmp, dhz, dWx, dWh, dba, dbh, grads = self._buffers(T, B)
        dx, dh = grads["x"], grads["h(0)"]
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=A.reshape(T * B, n3))
        A += self.b
        RZ, R, Z, N = A[..., :n2], A[..., :n], A[..., n:n2], A[..., n2:]
        HN = HP[..., n2:]
        H[0] = 0
        with np.errstate(over="ignore"):
            for hp, hp_rz, hn, rz, r, z, nn, h_prev, h in zip(
                    HP, HP[..., :n2], HN, RZ, R, Z, N, H[:-1], H[1:]):
                np.dot(h_prev, self.WhT, out=hp)
                hn += self.b_hn
                rz += hp_rz
                _sigmoid_(rz, one)
                np.multiply(r, hn, out=tmp)
                nn += tmp
                np.tanh(nn, out=nn)
                np.subtract(h_prev, nn, out=h)    # h = n + z (h(t-1) - n)
                h *= z
                h += nn
        # backward: sigmoid's (r; z) and tanh's (n) derivatives in the loop or before it
        dR, dZ, dN = dA[..., :n], dA[..., n:n2], dA[..., n2:]
        dh.fill(0)
        q = slice(None, None, -1)                    # backwards in time
        for (dh_out, h_prev, nn, z, r, hn, dz, dn, dr, da_zn, d_zn, d_r, da_rz, dhp, dhp_rz,
             dhp_n) in zip(dH[q], H[:-1][q], N[q], Z[q], R[q], HN[q], dZ[q], dN[q], dR[q],
                           dA[..., n:][q], _factors(A[..., n:], D_zn, n, one),
                           _factors(R, D_r, n, one), dA[..., :n2][q], dHP[q],
                           dHP[..., :n2][q], dHP[..., n2:][q]):
            dh += dh_out
            np.subtract(h_prev, nn, out=dz)          # dz = dh (h(t-1) - n)
            dz *= dh
            np.multiply(dh, z, out=dhz)              # dh(t-1), directly
            np.subtract(dh, dhz, out=dn)             # dn = dh (1 - z)
            da_zn *= d_zn                            # through sigmoid (z) and tanh (n)
            np.multiply(dn, hn, out=dr)              # dr = dn_pre * hn
            dr *= d_r
            np.copyto(dhp_rz, da_rz)
            np.multiply(dn, r, out=dhp_n)
            np.dot(dhp, self.Wh, out=dh)
            dh += dhz
        Ga, Gh = dA.reshape(T * B, n3), dHP.reshape(T * B, n3)
        np.matmul(Gh.T, H[:T].reshape(T * B, n), out=dWh)
        np.matmul(Ga.T, x.reshape(T * B, m), out=dWx)
        _column_sums(Ga, dba)
        np.copyto(dbh[:n2], dba[:n2])                # r and z: the same sums
        _column_sums(Gh[:, n2:], dbh[n2:])
        np.matmul(Ga, self.Wx, out=dx.reshape(T * B, m))
        return H[1:], dict(grads)


MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
