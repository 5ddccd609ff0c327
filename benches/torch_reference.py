#!/usr/bin/env python3
"""PyTorch RBP and LCP-DI on the reference's RNN, timed beside `lcsim throughput` (not run by the CI).

Not the authors' code (it is not on this machine): the same algorithms as their RBP and LCP-DI
(spec 3.1, 4 and 5), written here as a PyTorch user would, to give lcsim a same-run anchor. Forward
Euler with dt = tau = 1; every relaxation starts at zero and stops when every sample's relative L2
change of the state is below `--tol` or after `--cap` iterations (the whole batch iterates until its
last sample stops); L is the batch-mean cross-entropy; Adam lr 1e-3, gradient norm clipped at 10.

    rbp (tol 1e-4, cap 200):
      free:     v <- W s(v) + E x + b,  y <- D s(v) + d
      adjoint:  g <- s'(v0) * (W^T g + D^T grad_y L)
      gradient: dW = g s(v0)^T, dE = g x^T, db = g, dD = grad_y s(v0)^T, dd = grad_y
    lcp-di (tol 1e-6, cap 800; alpha 0.1, k_i 1, the reference's start at zero, no free phase):
      v <- W s(v) + E x + b + e,  y <- D s(v) + d + u,  u_i <- u_i - grad_y L(y) - alpha u_i,
      u = k_i u_i,  e <- s'(v) * (W^T e + D^T u)
      update (as a gradient for Adam): dW = -e s(v)^T, dE = -e x^T, db = -e, dD = -u s(v)^T, dd = -u

mnist10k (the first 8,000 training digits, pixels in [0, 1]), RNN 784-256-10, tanh, batch 64, the
first `--batches` batches of epoch 1, on `--threads` threads (default 1); prints samples/s and
torch's dgemm rate (2048^3) measured in the same run.

    pip install torch numpy
    python3 benches/torch_reference.py --method rbp --dtype float64
    python3 benches/torch_reference.py --method rbp --dtype float32
    python3 benches/torch_reference.py --method lcp-di --dtype float64
"""

import argparse
import gzip
import pathlib
import statistics
import time

import numpy as np
import torch


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def dgemm_gflops(dtype, n=2048, repeats=3):
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def relax(step, state, tol, cap):
    """Iterates `state <- step(state)` until every column's relative L2 change < tol."""
    for k in range(1, cap + 1):
        new = step(state)
        change = (new - state).norm(dim=0) / state.norm(dim=0).clamp_min(1e-30)
        state = new
        if bool((change < tol).all()):
            return state, k
    return state, cap


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mnist", default="../shared/data/mnist10k")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--method", default="rbp", choices=["rbp", "lcp-di"])
    p.add_argument("--tol", type=float, help="default: 1e-4 (rbp), 1e-6 (lcp-di)")
    p.add_argument("--cap", type=int, help="default: 200 (rbp), 800 (lcp-di)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    lcp = a.method == "lcp-di"
    a.tol = a.tol if a.tol is not None else (1e-6 if lcp else 1e-4)
    a.cap = a.cap if a.cap is not None else (800 if lcp else 200)
    alpha, k_i = 0.1, 1.0
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    d = pathlib.Path(a.mnist)
    x_all = torch.tensor(idx(d / "train-images-idx3-ubyte.gz")[:8000].reshape(8000, -1) / 255.0, dtype=dtype).T
    labels = torch.tensor(idx(d / "train-labels-idx1-ubyte.gz")[:8000].astype(np.int64))
    n_x, n_h, n_y, batch = 784, 256, 10, 64

    def init():
        g = torch.Generator().manual_seed(0)
        u = lambda *s, fan: (torch.rand(*s, generator=g, dtype=dtype) * 2 - 1) / fan**0.5
        return [u(n_h, n_h, fan=n_h), u(n_h, n_x, fan=n_x), torch.zeros(n_h, 1, dtype=dtype),
                u(n_y, n_h, fan=n_h), torch.zeros(n_y, 1, dtype=dtype)]

    def train(batches):
        W, E, b, D, dd = params = init()
        opt = torch.optim.Adam(params, lr=1e-3)
        steps = []
        for i in range(batches):
            x = x_all[:, i * batch : (i + 1) * batch]
            t = torch.nn.functional.one_hot(labels[i * batch : (i + 1) * batch], n_y).T.to(dtype)
            with torch.no_grad():
                drive = E @ x + b
                if lcp:
                    def controlled(z):
                        v, y, ui, e = z[:n_h], z[n_h : n_h + n_y], z[n_h + n_y : n_h + 2 * n_y], z[n_h + 2 * n_y :]
                        s, u = torch.tanh(v), k_i * ui
                        grad_y = (torch.softmax(y, dim=0) - t) / batch
                        return torch.cat([W @ s + drive + e, D @ s + dd + u, ui - grad_y - alpha * ui,
                                          (1 - s * s) * (W.T @ e + D.T @ u)])
                    z0 = torch.zeros(2 * (n_h + n_y), batch, dtype=dtype)
                    z, k_free = relax(controlled, z0, a.tol, a.cap)
                    k_adj = 0
                    s = torch.tanh(z[:n_h])
                    e, u = z[n_h + 2 * n_y :], k_i * z[n_h + n_y : n_h + 2 * n_y]
                    W.grad, E.grad, b.grad = -e @ s.T, -e @ x.T, -e.sum(1, keepdim=True)
                    D.grad, dd.grad = -u @ s.T, -u.sum(1, keepdim=True)
                else:
                    z0 = torch.zeros(n_h + n_y, batch, dtype=dtype)
                    free = lambda z: torch.cat([W @ torch.tanh(z[:n_h]) + drive, D @ torch.tanh(z[:n_h]) + dd])
                    z, k_free = relax(free, z0, a.tol, a.cap)
                    v, y = z[:n_h], z[n_h:]
                    s = torch.tanh(v)
                    slope = 1 - s * s
                    grad_y = (torch.softmax(y, dim=0) - t) / batch
                    back = D.T @ grad_y
                    g, k_adj = relax(lambda g: slope * (W.T @ g + back), torch.zeros(n_h, batch, dtype=dtype), a.tol, a.cap)
                    W.grad, E.grad, b.grad = g @ s.T, g @ x.T, g.sum(1, keepdim=True)
                    D.grad, dd.grad = grad_y @ s.T, grad_y.sum(1, keepdim=True)
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            steps.append((k_free, k_adj))
        return steps

    train(2)  # warm-up
    rates = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        steps = train(a.batches)
        rates.append(a.batches * batch / (time.perf_counter() - t0))
    free_steps = statistics.mean(s[0] for s in steps)
    adj_steps = statistics.mean(s[1] for s in steps)
    print(f"torch {torch.__version__} {a.dtype}, {a.threads} thread(s), dgemm 2048^3 {dgemm_gflops(dtype):.1f} GFLOP/s")
    what = "controlled" if lcp else "free"
    print(f"{a.method} 784-256-10, batch 64, tol {a.tol:g}, cap {a.cap}, {a.batches} batches x {a.rounds} rounds: "
          f"samples/s {' '.join(f'{r:.0f}' for r in rates)} (median {statistics.median(rates):.0f}); "
          f"iterations per batch: {what} {free_steps:.1f}" + ("" if lcp else f", adjoint {adj_steps:.1f}"))


if __name__ == "__main__":
    main()
