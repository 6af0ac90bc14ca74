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


def _sigmoid_(a):
    """The logistic function in place: exp of -a may overflow to inf, giving 0, no NaN."""
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
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
        for t in range(T):
            h = H[t + 1]
            np.dot(H[t], WhT, out=tmp)
            h += tmp
            np.tanh(h, out=h)
        # backward: 1 - h^2 for every step at once, then the loop
        D = np.multiply(H[1:], H[1:])
        np.subtract(1, D, out=D)
        dZ = np.empty((T, B, n), self.dtype)
        dh = np.zeros((B, n), self.dtype)
        for t in range(T - 1, -1, -1):
            dh += dH[t]
            dz = dZ[t]
            np.multiply(dh, D[t], out=dz)
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
        with np.errstate(over="ignore"):
            for t in range(T):
                a = A[t]
                np.dot(H[t], WhT, out=tmp)
                a += tmp
                _sigmoid_(S[t])
                np.tanh(G[t], out=G[t])
                c = C[t + 1]
                np.multiply(F[t], C[t], out=c)
                np.multiply(I[t], G[t], out=tmp_n)
                c += tmp_n
                np.tanh(c, out=TC[t])
                np.multiply(O[t], TC[t], out=H[t + 1])
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
        for t in range(T - 1, -1, -1):
            dh += dH[t]
            np.multiply(dh, TC[t], out=dO[t])
            np.multiply(dh, O[t], out=tmp_n)
            tmp_n *= DTC[t]
            dc += tmp_n
            np.multiply(dc, G[t], out=dI[t])
            np.multiply(dc, C[t], out=dF[t])
            np.multiply(dc, I[t], out=dG[t])
            dc *= F[t]
            dz = dZ[t]
            dz *= D[t]
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
        with np.errstate(over="ignore"):
            for t in range(T):
                hp = HP[t]
                np.dot(H[t], WhT, out=hp)
                HN[t] += self.b_hn
                rz = RZ[t]
                rz += hp[:, :n2]
                _sigmoid_(rz)
                np.multiply(R[t], HN[t], out=tmp)
                N[t] += tmp
                np.tanh(N[t], out=N[t])
                h = H[t + 1]                      # h = n + z (h(t-1) - n)
                np.subtract(H[t], N[t], out=h)
                h *= Z[t]
                h += N[t]
        D = np.empty((T, B, n3), dt)
        np.subtract(1, RZ, out=D[..., :n2])
        D[..., :n2] *= RZ
        np.multiply(N, N, out=D[..., n2:])
        np.subtract(1, D[..., n2:], out=D[..., n2:])
        dA = np.empty((T, B, n3), dt)         # gradients of the pre-activations
        dHP = np.empty((T, B, n3), dt)        # of W_h h(t-1) (+ b_hn)
        dR, dZ, dN = dA[..., :n], dA[..., n:n2], dA[..., n2:]
        dh, dhz = np.zeros((B, n), dt), np.empty((B, n), dt)
        for t in range(T - 1, -1, -1):
            dh += dH[t]
            np.subtract(H[t], N[t], out=dZ[t])       # dz = dh (h(t-1) - n)
            dZ[t] *= dh
            np.multiply(dh, Z[t], out=dhz)           # dh(t-1), directly
            np.subtract(dh, dhz, out=dN[t])          # dn = dh (1 - z)
            da = dA[t]
            da[:, n:] *= D[t, :, n:]                 # through sigmoid (z) and tanh (n)
            np.multiply(dN[t], HN[t], out=dR[t])     # dr = dn_pre * hn
            dR[t] *= D[t, :, :n]
            dhp = dHP[t]
            dhp[:, :n2] = da[:, :n2]
            np.multiply(dN[t], R[t], out=dhp[:, n2:])
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
