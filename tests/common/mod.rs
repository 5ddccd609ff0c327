//! Helpers shared by the test files (each says `mod common;` and uses a part of them): small
//! rate networks, seeded random matrices, the coupled system of a batch, solver options,
//! Newton-polished equilibria, tolerance checks and the `lcsim` binary.
#![allow(dead_code)] // every test file is its own crate and uses only some of these

use std::path::Path;
use std::process::{Command, Output};

use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::numerics::activation::Activation;
use lcsim::numerics::rng::Rng;
use lcsim::solve::{newton_polish, solve_batch, SolverMethod, SolverSettings, VectorField};
use lcsim::system::loss::{one_hot, Loss};
use lcsim::system::rate::{RateNetwork, Topology};
use nalgebra::DMatrix;

// ---------------------------------------------------------------------------------------
// Networks and data
// ---------------------------------------------------------------------------------------

/// The coupled system of the rate network.
pub type Sys<'a> = CoupledSystem<'a, RateNetwork>;

/// A recurrent rate network n_x -> n_h -> n_y with PyTorch-style initialisation from `seed`.
pub fn rnn(n_x: usize, n_h: usize, n_y: usize, act: Activation, seed: u64) -> RateNetwork {
    RateNetwork::new(n_x, Topology::Recurrent { hidden: n_h }, n_y, act, seed).unwrap()
}

/// A small recurrent net used by most tests: 3 inputs, 5 hidden, 2 outputs, tanh.
pub fn tiny_rnn() -> RateNetwork {
    rnn(3, 5, 2, Activation::Tanh, 11)
}

/// The layered net 3 -> [4, 3] -> 2 with tanh.
pub fn tiny_layered() -> RateNetwork {
    let topology = Topology::Layered { layers: vec![4, 3] };
    RateNetwork::new(3, topology, 2, Activation::Tanh, 5).unwrap()
}

/// Uniform entries in [lo, hi) from a seeded generator (filled column by column).
pub fn random_matrix(rows: usize, cols: usize, seed: u64, lo: f64, hi: f64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(lo, hi))
}

/// Inputs in [0, 1), n_x x batch.
pub fn inputs(n_x: usize, batch: usize, seed: u64) -> DMatrix<f64> {
    random_matrix(n_x, batch, seed, 0.0, 1.0)
}

/// One-hot labels j % n_y for sample j.
pub fn labels(n_y: usize, batch: usize) -> DMatrix<f64> {
    one_hot(&(0..batch).map(|j| j % n_y).collect::<Vec<_>>(), n_y)
}

// ---------------------------------------------------------------------------------------
// The coupled system and its equilibria
// ---------------------------------------------------------------------------------------

/// The default controller with gains alpha, k_i, k_p.
pub fn controller(alpha: f64, k_i: f64, k_p: f64) -> ControllerSettings {
    ControllerSettings {
        alpha,
        k_i,
        k_p,
        ..ControllerSettings::default()
    }
}

/// The system of the batch (x, t) with tau_v = 1: free if `ctrl` is None, else controlled.
pub fn system<'a>(
    net: &'a RateNetwork,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    loss: Loss,
    scale: LossScale,
    ctrl: Option<ControllerSettings>,
) -> Sys<'a> {
    let objective = Objective::new(loss, scale, x.ncols());
    CoupledSystem::new(net, x.clone(), t.clone(), objective.clone(), 1.0, ctrl).unwrap()
}

/// Solver options with an absolute-only stopping rule `max |r| <= atol`.
pub fn opts(method: SolverMethod, atol: f64) -> SolverSettings {
    {
        let mut o = SolverSettings {
            method,
            ..SolverSettings::default()
        };
        o.stop.atol = atol;
        o.stop.rtol = 0.0;
        o
    }
}

/// Solves every sample of `field` from `z0` to `max |r| <= 1e-8` (asserting convergence),
/// then refines each column by Newton's method to machine precision.
pub fn polished<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    method: SolverMethod,
) -> DMatrix<f64> {
    let solve = solve_batch(field, z0, &opts(method, 1e-8));
    assert_eq!(
        solve.fraction_converged(),
        1.0,
        "{method:?} did not converge"
    );
    let mut z = solve.states.clone();
    for j in 0..z.ncols() {
        let one = field.select_samples(&[j]);
        let col = newton_polish(&one, &z.columns(j, 1).into_owned(), 30);
        let r = one.residual(&col).amax();
        assert!(r <= 1e-12, "Newton left residual {r:e} in sample {j}");
        z.set_column(j, &col.column(0));
    }
    z
}

/// The equilibrium of every sample from rest: Tsit45, then Newton to machine precision.
pub fn equilibrium(sys: &Sys<'_>) -> DMatrix<f64> {
    polished(sys, &sys.initial_state(), SolverMethod::Tsit45)
}

// ---------------------------------------------------------------------------------------
// Tolerances
// ---------------------------------------------------------------------------------------

/// `max |a - b|` over the entries (the shapes must agree).
pub fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    (a - b).amax()
}

/// `|a - b| / max(|a|, |b|)` in the Frobenius norm (0 when both are zero).
pub fn rel_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    let den = a.norm().max(b.norm());
    if den == 0.0 {
        0.0
    } else {
        (a - b).norm() / den
    }
}

/// Asserts `|a - b| <= rel_tol * max(|a|, |b|)`.
pub fn assert_close(a: f64, b: f64, rel_tol: f64, what: &str) {
    let den = a.abs().max(b.abs());
    assert!(
        (a - b).abs() <= rel_tol * den,
        "{what}: {a:e} vs {b:e} (rel. error {:e} > {rel_tol:e})",
        (a - b).abs() / den
    );
}

/// Asserts `rel_diff(a, b) <= rel_tol`.
pub fn assert_matrix_close(a: &DMatrix<f64>, b: &DMatrix<f64>, rel_tol: f64, what: &str) {
    let e = rel_diff(a, b);
    assert!(
        e <= rel_tol,
        "{what}: rel. error {e:e} > {rel_tol:e}\n{a}\n{b}"
    );
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// Runs `lcsim args` in the current directory.
pub fn lcsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(args)
        .output()
        .expect("lcsim runs")
}

/// Runs `lcsim args` in `dir`, outside any Slurm array (no SLURM_ARRAY_TASK_ID).
pub fn lcsim_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .expect("lcsim runs")
}

/// What the binary wrote to stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------
// Command lines and files
// ---------------------------------------------------------------------------------------

/// `--set` flags of a tiny, fast training run (xor, one hidden layer of 4, no figures).
pub const TINY: [&str; 8] = [
    "--set",
    "data.source=\"xor\"",
    "--set",
    "model.hidden=[4]",
    "--set",
    "data.synthetic_samples=40",
    "--set",
    "output.figures=false",
];

/// An IDX file of unsigned bytes: magic, big-endian dimensions, data.
pub fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
