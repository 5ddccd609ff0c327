//! Batched Krylov methods on a Jacobian action: every column of the operand is its own
//! problem with its own Krylov space, and the operator is applied to all columns at once
//! (one batched product per iteration).

use nalgebra::{DMatrix, DVector};

/// One Arnoldi step for every column j with `!done[j]`: `w = A v_i` (one call of `apply` on
/// the last basis block), orthogonalised against column j of every basis block (modified
/// Gram-Schmidt) and normalised into the next block, which is pushed. Returns column j's
/// Hessenberg entries `h[0..=i+1]` (None for the columns that are done).
fn arnoldi_step(
    apply: &impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
    basis: &mut Vec<DMatrix<f64>>,
    done: &[bool],
    passes: usize,
) -> Vec<Option<Vec<f64>>> {
    let i = basis.len() - 1;
    let mut w = apply(&basis[i]);
    let mut next = DMatrix::zeros(w.nrows(), w.ncols());
    let columns = (0..w.ncols())
        .map(|j| {
            if done[j] {
                return None;
            }
            let mut h = vec![0.0; i + 2];
            for _ in 0..passes {
                for (q, v) in basis.iter().enumerate() {
                    let c = v.column(j).dot(&w.column(j));
                    w.column_mut(j).axpy(-c, &v.column(j), 1.0);
                    h[q] += c;
                }
            }
            h[i + 1] = w.column(j).norm();
            if h[i + 1] > 0.0 {
                next.column_mut(j).copy_from(&(w.column(j) / h[i + 1]));
            }
            Some(h)
        })
        .collect();
    basis.push(next);
    columns
}

/// GMRES without restart from x = 0 for every column of `A x = b`, with `apply(V) = A V` on
/// whole n x p blocks: column j stops once `|A x_j - b_j| <= tol[j]` (Givens rotations give
/// that residual at every iteration), all stop after `max_dim` iterations. Returns x and the
/// number of calls of `apply`.
pub(super) fn gmres(
    apply: impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
    b: &DMatrix<f64>,
    tol: &[f64],
    max_dim: usize,
) -> (DMatrix<f64>, usize) {
    let (n, p) = b.shape();
    let beta: Vec<f64> = (0..p).map(|j| b.column(j).norm()).collect();
    let mut v0 = b.clone();
    for (j, &bj) in beta.iter().enumerate() {
        if bj > 0.0 {
            v0.column_mut(j).unscale_mut(bj);
        }
    }
    let mut basis = vec![v0];
    // Per column: the rotated Hessenberg matrix R, the rotated right-hand side g, rotations.
    let mut r = vec![DMatrix::<f64>::zeros(max_dim, max_dim); p];
    let mut g: Vec<DVector<f64>> = beta
        .iter()
        .map(|&bj| {
            let mut g = DVector::zeros(max_dim + 1);
            g[0] = bj;
            g
        })
        .collect();
    let mut rotations: Vec<Vec<(f64, f64)>> = vec![Vec::new(); p];
    let mut size = vec![0usize; p];
    let mut done: Vec<bool> = beta.iter().zip(tol).map(|(bj, t)| bj <= t).collect();
    let mut applications = 0;
    for i in 0..max_dim {
        if done.iter().all(|&d| d) {
            break;
        }
        let step = arnoldi_step(&apply, &mut basis, &done, 1);
        applications += 1;
        for (j, h) in step.into_iter().enumerate() {
            let Some(mut h) = h else { continue };
            for (q, &(c, s)) in rotations[j].iter().enumerate() {
                let (a, d) = (h[q], h[q + 1]);
                h[q] = c * a + s * d;
                h[q + 1] = -s * a + c * d;
            }
            let rho = h[i].hypot(h[i + 1]);
            let (c, s) = if rho == 0.0 {
                (1.0, 0.0)
            } else {
                (h[i] / rho, h[i + 1] / rho)
            };
            h[i] = rho;
            rotations[j].push((c, s));
            let gi = g[j][i];
            g[j][i] = c * gi;
            g[j][i + 1] = -s * gi;
            for (q, &hq) in h.iter().enumerate().take(i + 1) {
                r[j][(q, i)] = hq;
            }
            size[j] = i + 1;
            // Converged, or the Krylov space is invariant (the solution is in it).
            if g[j][i + 1].abs() <= tol[j] || h[i + 1] == 0.0 {
                done[j] = true;
            }
        }
    }
    let mut x = DMatrix::zeros(n, p);
    for j in 0..p {
        let m = size[j];
        let mut y = vec![0.0; m];
        for q in (0..m).rev() {
            let acc = g[j][q] - (q + 1..m).map(|t| r[j][(q, t)] * y[t]).sum::<f64>();
            y[q] = if r[j][(q, q)] != 0.0 {
                acc / r[j][(q, q)]
            } else {
                0.0
            };
        }
        for (q, &yq) in y.iter().enumerate() {
            x.column_mut(j).axpy(yq, &basis[q].column(j), 1.0);
        }
    }
    (x, applications)
}

/// For every column j of an operator `apply(V) = A_j v_j` (n x p blocks), the largest real
/// part among the Ritz values of A_j: `dim` Arnoldi steps from a fixed start vector, then the
/// eigenvalues of the dim x dim Hessenberg matrix. The rightmost eigenvalues of A are
/// exterior and are found first; a positive value means an unstable direction (for a
/// non-normal A a Ritz value may also stray right of the spectrum, never missing an
/// eigenvalue that is far in the right half-plane). NaN when the eigenvalue iteration fails.
/// Returns the values and the number of calls of `apply`.
pub fn rightmost_ritz_values(
    apply: impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
    n: usize,
    p: usize,
    dim: usize,
) -> (Vec<f64>, usize) {
    let dim = dim.min(n);
    // A fixed, non-special start vector (no sample-dependent randomness).
    let start = DVector::from_fn(n, |i, _| 1.0 + 0.5 * (1.3 * i as f64).sin()).normalize();
    let mut basis = vec![DMatrix::from_fn(n, p, |i, _| start[i])];
    let mut hess = vec![DMatrix::<f64>::zeros(dim + 1, dim); p];
    let mut size = vec![dim; p];
    let mut done = vec![false; p];
    let mut applications = 0;
    for i in 0..dim {
        if done.iter().all(|&d| d) {
            break;
        }
        // Two Gram-Schmidt passes ("twice is enough"): once a Ritz pair has converged, a
        // single pass loses orthogonality and the Hessenberg matrix gains spurious values.
        let step = arnoldi_step(&apply, &mut basis, &done, 2);
        applications += 1;
        for (j, h) in step.into_iter().enumerate() {
            let Some(h) = h else { continue };
            for (q, &hq) in h.iter().enumerate() {
                hess[j][(q, i)] = hq;
            }
            let scale = h.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            if h[i + 1] <= 1e-12 * scale {
                // Invariant subspace: its Ritz values are eigenvalues.
                size[j] = i + 1;
                done[j] = true;
            }
        }
    }
    let values = (0..p)
        .map(|j| {
            let m = size[j];
            spectral_abscissa(hess[j].view((0, 0), (m, m)).into_owned())
        })
        .collect();
    (values, applications)
}

/// The spectral abscissa `max Re lambda(m)` of a square matrix, from faer's eigenvalues
/// (Hessenberg QR with deflation and an iteration cap); NaN when an entry is not finite or
/// the iteration fails. nalgebra's Schur iteration failed on the free Jacobians of trained
/// networks, `-I + W diag(s'(v))` with saturated units (s' spread over many decades), and
/// made every such sample's abscissa NaN (tests/diagnostics.rs).
pub fn spectral_abscissa(m: DMatrix<f64>) -> f64 {
    if !m.iter().all(|v| v.is_finite()) {
        return f64::NAN;
    }
    let (r, c) = m.shape();
    match faer::MatRef::from_column_major_slice(m.as_slice(), r, c).eigenvalues() {
        Ok(values) => values
            .iter()
            .map(|l| l.re)
            .fold(f64::NEG_INFINITY, f64::max),
        Err(_) => f64::NAN,
    }
}
