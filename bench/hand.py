"""The best NumPy we can write by hand: torch.nn.RNN, LSTM and GRU, forward and BPTT.

What rnngraph's compiled code must match.  Every trick a careful researcher
would use: the gates' matrices stacked (sigmoid gates next to each other, so
one call serves them all), the input projections of every step in one GEMM
before the loop, the biases folded into it, buffers allocated once and every
ufunc writing in place (``out=``), the derivatives of the activations computed
for all steps at once, and the parameter gradients as one GEMM over stacked
time after the reverse loop.

Each model is built from the parameters under rnngraph's (PyTorch's) names;
stacking happens in the constructor, outside the timing, so the hand code
starts from its favourite layout.  ``run(x, dh)`` takes the input (T, B, m)
and the cotangent of every h(t) (T, B, n), and returns (h, grads): the hidden
states (T, B, n) and the gradient of every parameter, of x and of the initial
states (all zero), named as rnngraph names them.
"""
import numpy as np


def _sigmoid_(a, one):
    """The logistic function in place: exp of -a may overflow to inf, giving 0, no NaN.
    ``one`` is a 0-d array of a's dtype (adding a Python 1 costs a conversion per call)."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += one
    np.reciprocal(a, out=a)


class RNN:
    """h(t) = tanh(W_ih x(t) + b_ih + W_hh h(t-1) + b_hh)."""

    def __init__(self, p, dtype):
        self.Wx, self.Wh = p["W_ih"].astype(dtype), p["W_hh"].astype(dtype)
        self.b = (p["b_ih"] + p["b_hh"]).astype(dtype)
        self.dtype = dtype

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[0]
        H = np.empty((T + 1, B, n), self.dtype)
        H[0] = 0
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=H[1:].reshape(T * B, n))
        H[1:] += self.b
        WhT, tmp = np.ascontiguousarray(self.Wh.T), np.empty((B, n), self.dtype)
        for h_prev, h in zip(H[:-1], H[1:]):
            np.dot(h_prev, WhT, out=tmp)
            h += tmp
            np.tanh(h, out=h)
        # backward: 1 - h^2 for every step at once, then the loop
        D = np.multiply(H[1:], H[1:])
        np.subtract(1, D, out=D)
        dZ = np.empty((T, B, n), self.dtype)
        dh = np.zeros((B, n), self.dtype)
        for dh_out, d, dz in zip(dH[::-1], D[::-1], dZ[::-1]):
            dh += dh_out
            np.multiply(dh, d, out=dz)
            np.dot(dz, self.Wh, out=dh)
        G = dZ.reshape(T * B, n)
        dWh = G.T @ H[:T].reshape(T * B, n)
        dWx = G.T @ x.reshape(T * B, m)
        db = G.sum(0)
        dx = (G @ self.Wx).reshape(T, B, m)
        return H[1:], {"W_ih": dWx, "W_hh": dWh, "b_ih": db, "b_hh": db.copy(), "x": dx,
                       "h(0)": dh}


class LSTM:
    """torch.nn.LSTM, gates stacked i, f, o, g: the three sigmoids in one call."""

    ORDER = "ifog"

    def __init__(self, p, dtype):
        self.Wx = np.concatenate([p[f"W_i{k}"] for k in self.ORDER]).astype(dtype)
        self.Wh = np.concatenate([p[f"W_h{k}"] for k in self.ORDER]).astype(dtype)
        self.b = np.concatenate([p[f"b_i{k}"] + p[f"b_h{k}"] for k in self.ORDER]).astype(dtype)
        self.dtype = dtype

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[1]
        n3, n4, dt = 3 * n, 4 * n, self.dtype
        # forward: A holds the pre-activations, then (in place) the gates
        A = np.empty((T, B, n4), dt)
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=A.reshape(T * B, n4))
        A += self.b
        I, F, O, G, S = A[..., :n], A[..., n:2 * n], A[..., 2 * n:n3], A[..., n3:], A[..., :n3]
        H, C = np.empty((T + 1, B, n), dt), np.empty((T + 1, B, n), dt)
        H[0], C[0] = 0, 0
        TC = np.empty((T, B, n), dt)
        WhT, tmp = np.ascontiguousarray(self.Wh.T), np.empty((B, n4), dt)
        tmp_n = tmp[:, :n]
        one = np.ones((), dt)
        with np.errstate(over="ignore"):
            for a, s, i, f, o, g, tc, c_prev, c, h_prev, h in zip(
                    A, S, I, F, O, G, TC, C[:-1], C[1:], H[:-1], H[1:]):
                np.dot(h_prev, WhT, out=tmp)
                a += tmp
                _sigmoid_(s, one)
                np.tanh(g, out=g)
                np.multiply(f, c_prev, out=c)
                np.multiply(i, g, out=tmp_n)
                c += tmp_n
                np.tanh(c, out=tc)
                np.multiply(o, tc, out=h)
        # backward: the activations' derivatives for every step at once
        D = np.empty((T, B, n4), dt)
        np.subtract(1, S, out=D[..., :n3])
        D[..., :n3] *= S
        np.multiply(G, G, out=D[..., n3:])
        np.subtract(1, D[..., n3:], out=D[..., n3:])
        DTC = np.multiply(TC, TC)
        np.subtract(1, DTC, out=DTC)
        dZ = np.empty((T, B, n4), dt)
        dI, dF, dO, dG = dZ[..., :n], dZ[..., n:2 * n], dZ[..., 2 * n:n3], dZ[..., n3:]
        dh, dc = np.zeros((B, n), dt), np.zeros((B, n), dt)
        r = slice(None, None, -1)                    # backwards in time
        for dh_out, tc, dtc, o, g, c_prev, i, f, d, dz, di, df, do, dg in zip(
                dH[r], TC[r], DTC[r], O[r], G[r], C[:-1][r], I[r], F[r], D[r], dZ[r],
                dI[r], dF[r], dO[r], dG[r]):
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
        dWh = Gr.T @ H[:T].reshape(T * B, n)
        dWx = Gr.T @ x.reshape(T * B, m)
        db = Gr.sum(0)
        dx = (Gr @ self.Wx).reshape(T, B, m)
        grads = {"x": dx, "h(0)": dh, "c(0)": dc}
        for k, gate in enumerate(self.ORDER):
            rows = slice(k * n, (k + 1) * n)
            grads.update({f"W_i{gate}": dWx[rows], f"W_h{gate}": dWh[rows],
                          f"b_i{gate}": db[rows], f"b_h{gate}": db[rows].copy()})
        return H[1:], grads


class GRU:
    """torch.nn.GRU, gates stacked r, z, n; b_hn stays inside r * (W_hn h + b_hn)."""

    ORDER = "rzn"

    def __init__(self, p, dtype):
        self.Wx = np.concatenate([p[f"W_i{k}"] for k in self.ORDER]).astype(dtype)
        self.Wh = np.concatenate([p[f"W_h{k}"] for k in self.ORDER]).astype(dtype)
        self.b = np.concatenate([p["b_ir"] + p["b_hr"], p["b_iz"] + p["b_hz"],
                                 p["b_in"]]).astype(dtype)
        self.b_hn = p["b_hn"].astype(dtype)
        self.dtype = dtype

    def run(self, x, dH):
        T, B, m = x.shape
        n = self.Wh.shape[1]
        n2, n3, dt = 2 * n, 3 * n, self.dtype
        A = np.empty((T, B, n3), dt)      # pre-activations, then gates r, z, n in place
        np.matmul(x.reshape(T * B, m), self.Wx.T, out=A.reshape(T * B, n3))
        A += self.b
        RZ, R, Z, N = A[..., :n2], A[..., :n], A[..., n:n2], A[..., n2:]
        HP = np.empty((T, B, n3), dt)     # W_h h(t-1), with b_hn on its n part
        HN = HP[..., n2:]
        H = np.empty((T + 1, B, n), dt)
        H[0] = 0
        WhT, tmp = np.ascontiguousarray(self.Wh.T), np.empty((B, n), dt)
        one = np.ones((), dt)
        with np.errstate(over="ignore"):
            for hp, hp_rz, hn, rz, r, z, nn, h_prev, h in zip(
                    HP, HP[..., :n2], HN, RZ, R, Z, N, H[:-1], H[1:]):
                np.dot(h_prev, WhT, out=hp)
                hn += self.b_hn
                rz += hp_rz
                _sigmoid_(rz, one)
                np.multiply(r, hn, out=tmp)
                nn += tmp
                np.tanh(nn, out=nn)
                np.subtract(h_prev, nn, out=h)    # h = n + z (h(t-1) - n)
                h *= z
                h += nn
        D = np.empty((T, B, n3), dt)
        np.subtract(1, RZ, out=D[..., :n2])
        D[..., :n2] *= RZ
        np.multiply(N, N, out=D[..., n2:])
        np.subtract(1, D[..., n2:], out=D[..., n2:])
        dA = np.empty((T, B, n3), dt)         # gradients of the pre-activations
        dHP = np.empty((T, B, n3), dt)        # of W_h h(t-1) (+ b_hn)
        dR, dZ, dN = dA[..., :n], dA[..., n:n2], dA[..., n2:]
        dh, dhz = np.zeros((B, n), dt), np.empty((B, n), dt)
        q = slice(None, None, -1)                    # backwards in time
        for (dh_out, h_prev, nn, z, r, hn, dz, dn, dr, da_zn, d_zn, d_r, da_rz, dhp, dhp_rz,
             dhp_n) in zip(dH[q], H[:-1][q], N[q], Z[q], R[q], HN[q], dZ[q], dN[q], dR[q],
                           dA[..., n:][q], D[..., n:][q], D[..., :n][q], dA[..., :n2][q],
                           dHP[q], dHP[..., :n2][q], dHP[..., n2:][q]):
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
        dWh = Gh.T @ H[:T].reshape(T * B, n)
        dWx = Ga.T @ x.reshape(T * B, m)
        dba, dbh = Ga.sum(0), Gh.sum(0)
        dx = (Ga @ self.Wx).reshape(T, B, m)
        grads = {"x": dx, "h(0)": dh}
        for k, gate in enumerate(self.ORDER):
            rows = slice(k * n, (k + 1) * n)
            grads.update({f"W_i{gate}": dWx[rows], f"W_h{gate}": dWh[rows],
                          f"b_i{gate}": dba[rows], f"b_h{gate}": dbh[rows]})
        return H[1:], grads


MODELS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
