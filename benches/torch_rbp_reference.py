#!/usr/bin/env python3
"""A PyTorch RBP on the reference's RNN, timed beside `lcsim throughput` (not run by the CI).

Not the authors' code (it is not on this machine): the same algorithm as their RBP (spec 4 and 5),
written here as a PyTorch user would, to give lcsim's RBP a same-run anchor:

    free:     v <- W s(v) + E x + b,  y <- D s(v) + d            (forward Euler, dt = tau = 1, from 0)
    adjoint:  g <- s'(v0) * (W^T g + D^T grad_y L)                (from 0)
    both stop when every sample's relative L2 change of the state is below `tol` (1e-4), or after
    `cap` (200) iterations; gradients dW = g s(v0)^T, dE = g x^T, db = g, dD = grad_y s(v0)^T,
    dd = grad_y with L the batch-mean cross-entropy; Adam lr 1e-3, gradient norm clipped at 10.

mnist10k (the first 8,000 training digits, pixels in [0, 1]), RNN 784-256-10, tanh, batch 64, the
first `--batches` batches of epoch 1, on `--threads` threads (default 1); prints samples/s and
torch's dgemm rate (2048^3) measured in the same run.

    pip install torch numpy
    python3 benches/torch_rbp_reference.py --dtype float64
    python3 benches/torch_rbp_reference.py --dtype float32
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
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--cap", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
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
    print(f"RBP 784-256-10, batch 64, {a.batches} batches x {a.rounds} rounds: samples/s "
          f"{' '.join(f'{r:.0f}' for r in rates)} (median {statistics.median(rates):.0f}); "
          f"iterations per batch: free {free_steps:.1f}, adjoint {adj_steps:.1f}")


if __name__ == "__main__":
    main()
