//! Tsitouras 5(4) over a batch of samples: each sample (column) keeps its own time, step size,
//! error test and stopping test, and every stage evaluates the residual of all running samples
//! in one batched call (one matrix product per stage for the chunk, not one per sample). The
//! field is autonomous, so samples at different times share a stage evaluation. The tableau,
//! its error estimate and its dense output are diffsol's `Tableau::tsit45` (Tsitouras 2011);
//! the results agree with diffsol's per-sample Tsit45 within the tolerances, not bit for bit.
//!
//! ```text
//! k_s = r(z + h sum_l a_sl k_l) / tau,   z_new = z + h sum_l b_l k_l   (k_7 = f(z_new): FSAL)
//! err = |h sum_l d_l k_l / (atol + rtol max(|z|, |z_new|))|_rms,   accepted when err <= 1
//! z(t + theta h) = z + h sum_l b_l(theta) k_l                     (4th-order dense output)
//! ```

use super::{diverged, residual_size, AdaptiveSettings, SteadyState, Termination, Trajectory};
use super::{SolverMethod, StopCriterion, VectorField};
use nalgebra::DMatrix;

const STAGES: usize = 7;
const C: [f64; STAGES] = [0.0, 0.161, 0.327, 0.9, 0.980_025_540_904_509_7, 1.0, 1.0];
const B: [f64; STAGES] = [
    0.096_460_766_818_065_23,
    0.01,
    0.479_889_650_414_499_6,
    1.379_008_574_103_742,
    -3.290_069_515_436_081,
    2.324_710_524_099_774,
    0.0,
];
/// `b - b_hat`: the local error estimate's weights.
const D: [f64; STAGES] = [
    -0.001_780_011_052_225_777,
    -0.000_816_434_459_656_746_9,
    0.007_880_878_010_261_995,
    -0.144_711_007_173_262_9,
    0.582_357_165_452_555_2,
    -0.458_082_105_929_186_97,
    0.015_151_515_151_515_152,
];
/// Off-diagonal a_sl for l >= 1 (a_s0 = c_s - sum of the others).
const A_REST: [[f64; 5]; STAGES] = [
    [0.0; 5],
    [0.0; 5],
    [0.335_480_655_492_357, 0.0, 0.0, 0.0, 0.0],
    [-6.359_448_489_975_075, 4.362_295_432_869_581, 0.0, 0.0, 0.0],
    [
        -11.748_883_564_062_83,
        7.495_539_342_889_836,
        -0.092_495_066_361_755_25,
        0.0,
        0.0,
    ],
    [
        -12.920_969_317_847_11,
        8.159_367_898_576_159,
        -0.071_584_973_281_401,
        -0.028_269_050_394_068_38,
        0.0,
    ],
    [0.0; 5],
];
/// Dense output: `b_l(theta) = sum_p R[l][p] theta^(p+1)`.
const R: [[f64; 4]; STAGES] = [
    [
        1.0,
        -2.763_706_197_274_826,
        2.913_255_461_821_912_6,
        -1.053_088_497_729_021_6,
    ],
    [0.0, 0.131_7, -0.223_4, 0.101_7],
    [
        0.0,
        3.930_296_236_894_751_6,
        -5.941_033_872_131_505,
        2.490_627_285_651_253,
    ],
    [
        0.0,
        -12.411_077_166_933_676,
        30.338_188_630_282_32,
        -16.548_102_889_244_902,
    ],
    [
        0.0,
        37.509_313_416_511_04,
        -88.178_904_894_766_4,
        47.379_521_962_819_28,
    ],
    [
        0.0,
        -27.896_526_289_197_286,
        65.091_894_674_793_66,
        -34.870_657_861_496_61,
    ],
    [0.0, 1.5, -4.0, 2.5],
];

/// The full Butcher matrix a (row s: the weights of k_0..k_{s-1} in stage s; row 6 = b).
fn butcher() -> [[f64; STAGES]; STAGES] {
    let mut a = [[0.0; STAGES]; STAGES];
    for s in 1..STAGES {
        if s == STAGES - 1 {
            a[s] = B;
            continue;
        }
        let rest: f64 = A_REST[s][..s - 1].iter().sum();
        a[s][0] = C[s] - rest;
        a[s][1..s].copy_from_slice(&A_REST[s][..s - 1]);
    }
    a
}

/// Largest step growth and reduction per attempt, and the safety factor.
const MAX_GROW: f64 = 10.0;
const MIN_SHRINK: f64 = 0.2;
const SAFETY: f64 = 0.9;

/// `(field, z, out, work)`: `out = r(z) / tau` (`work`: room for r).
type Evaluate<'a, F> = dyn Fn(&F, &DMatrix<f64>, &mut DMatrix<f64>, &mut DMatrix<f64>) + 'a;

/// One sample's integration.
struct Lane {
    t: f64,
    h: f64,
    steps: usize,
    evals: usize,
    /// Recorded states at the output times reached (dim each, concatenated).
    recorded: Vec<f64>,
    done: Option<(Termination, f64, f64)>,
    /// The last step was rejected (no growth on the next attempt).
    rejected: bool,
}

/// Integrates `tau dz/dt = r(z)` for every sample (column) of `z0` from t = 0 with Tsit45, each
/// until `|r_i| <= stop.atol + stop.rtol |z_i|` for all i after its last output time,
/// `stop.max_time` (reached exactly) or `stop.max_steps` accepted steps, recording
/// `output_times` (increasing, >= 0) by the dense output; the stopping rules and records are
/// those of the per-sample integrators ([`super::solve_steady_state`]).
pub(crate) fn solve<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    stop: &StopCriterion,
    settings: &AdaptiveSettings,
    output_times: &[f64],
) -> Vec<SteadyState> {
    let (n, b) = (field.dim(), z0.ncols());
    let inv_tau: Vec<f64> = field.time_constants().iter().map(|t| 1.0 / t).collect();
    let a = butcher();
    let mut lanes: Vec<Lane> = (0..b)
        .map(|_| Lane {
            t: 0.0,
            h: settings.initial_step,
            steps: 0,
            evals: 0,
            recorded: Vec::new(),
            done: None,
            rejected: false,
        })
        .collect();
    let mut z_all = z0.clone();
    // Output times at t = 0.
    let at_zero = output_times.iter().take_while(|&&t| t <= 0.0).count();
    for (j, lane) in lanes.iter_mut().enumerate() {
        for _ in 0..at_zero {
            lane.recorded.extend_from_slice(z0.column(j).as_slice());
        }
    }
    // The running samples, their field, state, stages and work space.
    let mut active: Vec<usize> = (0..b).collect();
    let mut sub = field.select_samples(&active);
    let mut z = z_all.select_columns(&active);
    let mut k: Vec<DMatrix<f64>> = vec![DMatrix::zeros(n, b); STAGES];
    let mut stage = DMatrix::zeros(n, b);
    let mut z_new = DMatrix::zeros(n, b);
    let mut r = DMatrix::zeros(n, b);
    let eval = |sub: &F, zs: &DMatrix<f64>, out: &mut DMatrix<f64>, r: &mut DMatrix<f64>| {
        sub.residual_into(zs, r);
        for (o, (ri, ti)) in out
            .as_mut_slice()
            .iter_mut()
            .zip(r.as_slice().iter().zip(inv_tau.iter().cycle()))
        {
            *o = ri * ti;
        }
    };
    eval(&sub, &z, &mut k[0], &mut r);
    for lane in &mut lanes {
        lane.evals += 1;
    }
    if settings.initial_step <= 0.0 {
        initial_steps(&sub, &z, &mut lanes, &active, &k[0], stop, settings, &eval);
    }
    if stop.max_time <= 0.0 {
        for (c, lane) in lanes.iter_mut().enumerate() {
            let r0: Vec<f64> = k[0]
                .column(c)
                .iter()
                .zip(&inv_tau)
                .map(|(f, it)| f / it)
                .collect();
            let (abs, scaled) = residual_size(z.column(c).as_slice(), &r0, stop);
            lane.done = Some((Termination::MaxTime, abs, scaled));
        }
        active.clear();
    }
    // Work space of the rounds (no allocation per step).
    let (mut r_new, mut scratch) = (vec![0.0; n], vec![0.0; n]);
    let (mut h, mut accepted): (Vec<f64>, Vec<bool>) =
        (Vec::with_capacity(b), Vec::with_capacity(b));
    while !active.is_empty() {
        let m = active.len();
        // Steps of this round, clipped to land on max_time.
        h.clear();
        h.extend(
            active
                .iter()
                .map(|&j| lanes[j].h.min(stop.max_time - lanes[j].t)),
        );
        for s in 1..STAGES {
            let (done, rest) = k.split_at_mut(s);
            let (zs, out) = (z.as_slice(), stage.as_mut_slice());
            for (c, &hc) in h.iter().enumerate() {
                let col = c * n..(c + 1) * n;
                let o = &mut out[col.clone()];
                o.copy_from_slice(&zs[col.clone()]);
                for (l, &w) in a[s][..s].iter().enumerate() {
                    if w != 0.0 {
                        let hw = hc * w;
                        for (oi, ki) in o.iter_mut().zip(&done[l].as_slice()[col.clone()]) {
                            *oi += hw * ki;
                        }
                    }
                }
            }
            if s == STAGES - 1 {
                z_new.copy_from(&stage);
            }
            eval(&sub, &stage, &mut rest[0], &mut r);
        }
        // Error test, outputs, stopping test, next step.
        let mut finished = false;
        accepted.clear();
        accepted.resize(m, false);
        for (c, &j) in active.iter().enumerate() {
            let lane = &mut lanes[j];
            lane.evals += STAGES - 1;
            let col = c * n..(c + 1) * n;
            let (zc, zn) = (&z.as_slice()[col.clone()], &z_new.as_slice()[col.clone()]);
            // The local error h sum_l d_l k_l, accumulated stage by stage (vectorised).
            scratch.fill(0.0);
            for (kl, &dl) in k.iter().zip(&D) {
                for (e, ki) in scratch.iter_mut().zip(&kl.as_slice()[col.clone()]) {
                    *e += dl * ki;
                }
            }
            let mut sum = 0.0;
            for ((e, a), b) in scratch.iter().zip(zc).zip(zn) {
                let q = h[c] * e / (settings.atol + settings.rtol * a.abs().max(b.abs()));
                sum += q * q;
            }
            let err = (sum / n as f64).sqrt();
            // Accepted only for a finite err <= 1 (a NaN error rejects the step).
            let rejected = err.is_nan() || err > 1.0;
            if rejected {
                // Rejected (or a non-finite error): shrink and retry from the same state.
                let factor = if err.is_finite() {
                    (SAFETY * err.powf(-0.2)).max(MIN_SHRINK)
                } else {
                    MIN_SHRINK
                };
                lane.h = h[c] * factor;
                lane.rejected = true;
                if lane.h.is_nan() || lane.h <= 1e-14 * lane.t.abs().max(1.0) {
                    let message = format!("step size too small at t = {}", lane.t);
                    lane.done = Some((Termination::SolverError(message), f64::NAN, f64::NAN));
                    finished = true;
                }
                continue;
            }
            accepted[c] = true;
            let t0 = lane.t;
            let t1 = if h[c] == stop.max_time - t0 {
                stop.max_time
            } else {
                t0 + h[c]
            };
            while let Some(&to) = output_times.get(lane.recorded.len() / n) {
                if to > t1 {
                    break;
                }
                let theta = ((to - t0) / h[c]).clamp(0.0, 1.0);
                let mut w = [0.0; STAGES];
                for (wl, p) in w.iter_mut().zip(&R) {
                    *wl = h[c] * theta * (p[0] + theta * (p[1] + theta * (p[2] + theta * p[3])));
                }
                let at = lane.recorded.len();
                lane.recorded.extend_from_slice(zc);
                let out = &mut lane.recorded[at..];
                for (kl, &wl) in k.iter().zip(&w) {
                    for (o, ki) in out.iter_mut().zip(&kl.as_slice()[col.clone()]) {
                        *o += wl * ki;
                    }
                }
            }
            lane.t = t1;
            lane.steps += 1;
            // r = tau f(z_new), from the last stage (FSAL).
            let last = &k[STAGES - 1].as_slice()[col.clone()];
            for ((ri, f), it) in r_new.iter_mut().zip(last).zip(&inv_tau) {
                *ri = f / it;
            }
            let (abs, scaled) = residual_size(zn, &r_new, stop);
            let outputs_done = lane.recorded.len() / n >= output_times.len();
            let stop_now = if diverged(zn, abs, stop) {
                Some(Termination::Diverged)
            } else if scaled <= 1.0 && outputs_done {
                Some(Termination::Converged)
            } else if t1 >= stop.max_time {
                Some(Termination::MaxTime)
            } else if lane.steps >= stop.max_steps {
                Some(Termination::MaxSteps)
            } else {
                None
            };
            let grow = if lane.rejected { 1.0 } else { MAX_GROW };
            let factor = if err > 0.0 {
                (SAFETY * err.powf(-0.2)).clamp(MIN_SHRINK, grow)
            } else {
                grow
            };
            lane.h = h[c] * factor;
            lane.rejected = false;
            if let Some(term) = stop_now {
                lane.done = Some((term, abs, scaled));
                finished = true;
            }
        }
        // Accepted samples move on: z <- z_new, k_0 <- k_6 (FSAL).
        for c in (0..m).filter(|&c| accepted[c]) {
            z.column_mut(c).copy_from(&z_new.column(c));
            let (first, last) = k.split_at_mut(STAGES - 1);
            first[0].column_mut(c).copy_from(&last[0].column(c));
        }
        if finished {
            for (c, &j) in active.iter().enumerate() {
                z_all.column_mut(j).copy_from(&z.column(c));
            }
            let keep: Vec<usize> = (0..m)
                .filter(|&c| lanes[active[c]].done.is_none())
                .collect();
            active = keep.iter().map(|&c| active[c]).collect();
            if !active.is_empty() {
                sub = field.select_samples(&active);
                z = z.select_columns(&keep);
                let k0 = k[0].select_columns(&keep);
                let m = active.len();
                k = vec![DMatrix::zeros(n, m); STAGES];
                k[0] = k0;
                stage = DMatrix::zeros(n, m);
                z_new = DMatrix::zeros(n, m);
                r = DMatrix::zeros(n, m);
            }
        }
    }
    lanes
        .into_iter()
        .enumerate()
        .map(|(j, lane)| {
            let (termination, residual, scaled_residual) = lane.done.expect("every sample stops");
            let recorded = lane.recorded.len() / n.max(1);
            SteadyState {
                state: z_all.columns(j, 1).into_owned(),
                termination,
                residual,
                scaled_residual,
                time: lane.t,
                steps: lane.steps,
                rhs_evals: lane.evals,
                jvp_evals: 0,
                solver: SolverMethod::Tsit45,
                fallback_from: None,
                flow_certified: None,
                trajectory: (!output_times.is_empty()).then(|| Trajectory {
                    times: output_times[..recorded].to_vec(),
                    states: DMatrix::from_vec(n, recorded, lane.recorded),
                }),
            }
        })
        .collect()
}

/// Hairer's starting step per sample (Solving ODEs I, II.4): `h0 = 0.01 |z| / |f|` (1e-6
/// when either is tiny), an Euler step to estimate the second derivative, then
/// `h = min(100 h0, (0.01 / max(|f|, |f'| ))^(1/5))`, norms weighted by `atol + rtol |z|`.
#[allow(clippy::too_many_arguments)]
fn initial_steps<F: VectorField>(
    sub: &F,
    z: &DMatrix<f64>,
    lanes: &mut [Lane],
    active: &[usize],
    f0: &DMatrix<f64>,
    stop: &StopCriterion,
    settings: &AdaptiveSettings,
    eval: &Evaluate<'_, F>,
) {
    let (n, m) = (z.nrows(), z.ncols());
    let rms = |v: &dyn Fn(usize) -> f64, c: usize| -> f64 {
        let s: f64 = (0..n)
            .map(|i| {
                let q = v(i) / (settings.atol + settings.rtol * z[(i, c)].abs());
                q * q
            })
            .sum();
        (s / n as f64).sqrt()
    };
    let mut h0 = vec![0.0; m];
    let mut z1 = z.clone();
    for c in 0..m {
        let d0 = rms(&|i| z[(i, c)], c);
        let d1 = rms(&|i| f0[(i, c)], c);
        h0[c] = if d0 < 1e-5 || d1 < 1e-5 {
            1e-6
        } else {
            0.01 * d0 / d1
        };
        h0[c] = h0[c].min(stop.max_time);
        z1.column_mut(c).axpy(h0[c], &f0.column(c), 1.0);
    }
    let mut f1 = DMatrix::zeros(n, m);
    let mut r = DMatrix::zeros(n, m);
    eval(sub, &z1, &mut f1, &mut r);
    for (c, &j) in active.iter().enumerate() {
        lanes[j].evals += 1;
        let d1 = rms(&|i| f0[(i, c)], c);
        let d2 = rms(&|i| f1[(i, c)] - f0[(i, c)], c) / h0[c];
        let big = d1.max(d2);
        let h1 = if big <= 1e-15 {
            (h0[c] * 1e-3).max(1e-6)
        } else {
            (0.01 / big).powf(0.2)
        };
        lanes[j].h = (100.0 * h0[c]).min(h1);
    }
}
