#!/usr/bin/env python3
"""scipy's LSODA on the trajectory that `lcsim simulate` integrates (issue 16 item 5).

An independent implementation (numpy + scipy, no lcsim code) of one LCP-DI switch-on trajectory of
the rate net (README "lcsim simulate", spec 3.1), all time constants 1:

    0 <= t < t_on:      dv/dt = -v + W s(v) + E x + b + c,   dy/dt = -y + D s(v) + d,   (v, y)(0) = 0
    t_on <= t <= t_end: dv/dt = ... + e,   dy/dt = ... + u,   u = k_i u_i - k_p g,  g = scale (softmax(y) - t)
                        du_i/dt = -g - alpha u_i,   de/dt = -e + s'(v) * (W^T e + D^T u)
                        (u_i, e)(t_on) = 0

s = tanh, scale = 1 / training.batch_size (loss_scale = "batch-mean"). Both segments are integrated
with solve_ivp(method="LSODA") at --rtol/--atol, recorded at the output grid of `lcsim simulate`
(--points uniform times on [0, t_end], plus t_on). Prints ms per sample (median over --repeats
runs of every sample), the RHS evaluations, and, with --compare SIMDIR (a folder written by
`lcsim simulate` with the same params, samples and times), the largest absolute difference of v, y,
u_i and e at the shared output times. Needs numpy and scipy (`pip install scipy numpy`); the CI does
not run it.

    python3 benches/lsoda_reference.py --params P.npz --mnist-dir ../shared/data/mnist10k \
        --samples 0-15 --compare runs/simulate-NAME
"""

import os

# One BLAS thread, as lcsim is measured on one thread (before numpy loads OpenBLAS).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402


def parse_samples(text):
    """'0-15' or '0,3,7' -> list of indices."""
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist_test(mnist_dir):
    """Test images as rows of 784 pixels in [0, 1] (row-major, /255) and labels."""
    def find(base):
        for name in (base + ".gz", base):
            p = os.path.join(mnist_dir, name)
            if os.path.isfile(p):
                return p
        raise SystemExit(f"{base}(.gz) not found in {mnist_dir}")

    images = read_idx(find("t10k-images-idx3-ubyte")).astype(np.float64) / 255.0
    labels = read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64)
    return images.reshape(images.shape[0], -1), labels


def output_times(t_on, t_end, points):
    """lcsim's grid: `points` uniform times on [0, t_end], t_on snapped onto it or inserted."""
    times = [t_end * k / (points - 1) for k in range(points)]
    times[-1] = t_end
    tol = 1e-9 * abs(t_end)
    for k, t in enumerate(times):
        if abs(t - t_on) <= tol and (k > 0 or t_on == 0.0):
            times[k] = t_on
            return np.array(times)
    k = sum(1 for t in times if t < t_on)
    times.insert(k, t_on)
    return np.array(times)


class Trajectory:
    def __init__(self, p, x, label, a):
        self.W, self.D = p["W"], p["D"]
        self.WT, self.DT = np.ascontiguousarray(p["W"].T), np.ascontiguousarray(p["D"].T)
        self.drive_v = p["E"] @ x + p["b"] + p["c"]
        self.drive_y = p["d"].copy()
        self.n_h, self.n_y = self.W.shape[0], self.D.shape[0]
        self.target = np.zeros(self.n_y)
        self.target[label] = 1.0
        self.a = a

    def free(self, _t, z):
        n_h = self.n_h
        v, y = z[:n_h], z[n_h:]
        s = np.tanh(v)
        return np.concatenate((-v + self.W @ s + self.drive_v, -y + self.D @ s + self.drive_y))

    def controlled(self, _t, z):
        a, n_h, n_y = self.a, self.n_h, self.n_y
        v, y = z[:n_h], z[n_h : n_h + n_y]
        u_i, e = z[n_h + n_y : n_h + 2 * n_y], z[n_h + 2 * n_y :]
        s = np.tanh(v)
        sm = np.exp(y - y.max())
        g = a.scale * (sm / sm.sum() - self.target)
        u = a.k_i * u_i - a.k_p * g
        dv = -v + self.W @ s + self.drive_v + e
        dy = -y + self.D @ s + self.drive_y + u
        du_i = (-g - a.alpha * u_i) / a.tau_u
        de = (-e + (1.0 - s * s) * (self.WT @ e + self.DT @ u)) / a.tau_e
        return np.concatenate(((dv) / a.tau_v, dy / a.tau_v, du_i, de))

    def run(self, times, t_on, rtol, atol):
        """States at `times` (rows: v, y, u_i, e; columns: times) and RHS evaluations."""
        n_h, n_y = self.n_h, self.n_y
        k_on = int(np.searchsorted(times, t_on, side="left"))
        out = np.zeros((n_h + 2 * n_y + n_h, len(times)))
        nfev = 0
        phi = np.zeros(n_h + n_y)
        if t_on > 0:
            free_times = np.append(times[:k_on], t_on)
            sol = solve_ivp(self.free, (0.0, t_on), phi, method="LSODA", t_eval=free_times,
                            rtol=rtol, atol=atol)
            if not sol.success:
                raise SystemExit(f"LSODA failed on the free segment: {sol.message}")
            out[: n_h + n_y, :k_on] = sol.y[:, :k_on]
            phi = sol.y[:, -1]
            nfev += sol.nfev
        z0 = np.concatenate((phi, np.zeros(n_y + n_h)))
        ctrl_times = times[k_on:]
        sol = solve_ivp(self.controlled, (t_on, times[-1]), z0, method="LSODA",
                        t_eval=ctrl_times, rtol=rtol, atol=atol)
        if not sol.success:
            raise SystemExit(f"LSODA failed on the controlled segment: {sol.message}")
        out[:, k_on:] = sol.y
        nfev += sol.nfev
        return out, nfev


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True, help=".npz with W, b, E, c, D, d (rows = postsynaptic)")
    ap.add_argument("--mnist-dir", default="../shared/data/mnist10k")
    ap.add_argument("--samples", default="0", help="test-split indices: 0-15 or 0,3,7")
    ap.add_argument("--t-on", type=float, default=50.0)
    ap.add_argument("--t-end", type=float, default=150.0)
    ap.add_argument("--points", type=int, default=301)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--k-i", type=float, default=1.0)
    ap.add_argument("--k-p", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, default=64, help="training.batch_size: scale = 1/B")
    ap.add_argument("--tau-v", type=float, default=1.0)
    ap.add_argument("--tau-u", type=float, default=1.0)
    ap.add_argument("--tau-e", type=float, default=1.0)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of every sample")
    ap.add_argument("--compare", help="a `lcsim simulate` folder (v.npy, y.npy, u_i.npy, e.npy, times.npy)")
    ap.add_argument("--json", help="write the summary here")
    a = ap.parse_args()
    a.scale = 1.0 / a.batch_size

    npz = np.load(a.params)
    p = {k: np.asarray(npz[k], dtype=np.float64) for k in ("W", "b", "E", "c", "D", "d")}
    for k in ("b", "c", "d"):
        p[k] = p[k].reshape(-1)
    images, labels = mnist_test(a.mnist_dir)
    samples = parse_samples(a.samples)
    times = output_times(a.t_on, a.t_end, a.points)

    per_sample_ms, nfevs, states = [], [], []
    for j in samples:
        traj = Trajectory(p, images[j], labels[j], a)
        runs = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out, nfev = traj.run(times, a.t_on, a.rtol, a.atol)
            runs.append(time.perf_counter() - t0)
        per_sample_ms.append(1e3 * statistics.median(runs))
        nfevs.append(nfev)
        states.append(out)
    summary = {
        "samples": samples,
        "rtol": a.rtol,
        "atol": a.atol,
        "t_on": a.t_on,
        "t_end": a.t_end,
        "points": len(times),
        "ms_per_sample_median": statistics.median(per_sample_ms),
        "ms_per_sample_mean": statistics.fmean(per_sample_ms),
        "ms_per_sample": per_sample_ms,
        "rhs_evals_mean": statistics.fmean(nfevs),
        "numpy": np.__version__,
    }
    print(f"LSODA rtol {a.rtol:g} atol {a.atol:g}, {len(samples)} samples x {a.repeats} runs: "
          f"median {summary['ms_per_sample_median']:.2f} ms per sample "
          f"(range {min(per_sample_ms):.2f}-{max(per_sample_ms):.2f}), "
          f"{summary['rhs_evals_mean']:.0f} RHS evaluations per sample")

    if a.compare:
        sim_times = np.load(os.path.join(a.compare, "times.npy"))
        if sim_times.shape != times.shape or np.max(np.abs(sim_times - times)) > 1e-12:
            raise SystemExit("--compare: the simulation's times differ from this grid (same --t-on/--t-end/--points?)")
        sim_samples = np.load(os.path.join(a.compare, "samples.npy")).astype(int).tolist()
        cols = [sim_samples.index(j) for j in samples]
        n_h, n_y = p["W"].shape[0], p["D"].shape[0]
        parts = {"v": slice(0, n_h), "y": slice(n_h, n_h + n_y),
                 "u_i": slice(n_h + n_y, n_h + 2 * n_y), "e": slice(n_h + 2 * n_y, None)}
        worst = {}
        for name, rows in parts.items():
            arr = np.load(os.path.join(a.compare, f"{name}.npy"))  # (S, T, n)
            diffs = [np.max(np.abs(arr[c].T - st[rows])) for c, st in zip(cols, states)]
            scale = max(np.max(np.abs(st[rows])) for st in states)
            worst[name] = {"max_abs_diff": float(max(diffs)), "max_abs_value": float(scale)}
            print(f"  {name:4s} max |lcsim - LSODA| = {max(diffs):.3e}  (max |{name}| = {scale:.3e})")
        summary["agreement"] = worst
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
