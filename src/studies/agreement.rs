//! `lcsim agree`: does the solver return the controlled equilibrium its definition means
//! (spec 2.2)? On the networks of trained runs and one fixed batch, each definition's
//! equilibrium as the config's solver finds it is compared with that definition's reference:
//!
//! ```text
//! flow     the Tsit45 flow of the coupled system from (phi0, u, e) as the config starts it,
//!          to the config's stop test, local tolerances solver.ode_rtol / solver.ode_atol
//! branch   a fine continuation: first step 1/64, smallest step 2^-16, largest correction 0.05
//!          (BranchSettings), corrected by Newton-Krylov as the config's branch
//! d_j      = max_i |z_i - zref_i| / (1 + |zref_i|)        (the flow certificate's distance)
//! agrees   both solves converged and d_j <= tolerance (default solver.certify_tolerance)
//! ```
//!
//! A sample where they differ is *flagged* when the solver reported it (did not converge:
//! unstable, a fold, max iterations, ...; training then handles it as
//! `method.on_unconverged` says) and *silent* when the solver called it converged: an
//! uncertified third equilibrium, the failure this study exists to find (the command exits
//! non-zero on any). Samples whose free solve or reference did not converge are counted
//! apart. The flow and branch references are also compared with each other: where they
//! differ the two definitions disagree (multistability, spec 2.2).

use crate::config::{Config, Method};
use crate::control::branch::{BranchSettings, EquilibriumDefinition};
use crate::control::{free_equilibrium, CoupledSystem};
use crate::error::{invalid, LcsimError, Result};
use crate::io::csv_text::csv_text;
use crate::learn::variant::{ControlledEquilibrium, VariantSettings};
use crate::run::{create_out_dir, write_atomic, write_json, RunDir, TrainedRun};
use crate::solve::{BatchSteadyState, SolverMethod, SolverSettings, SteadyState};
use crate::studies::alignment::validate_alphas;
use crate::studies::alignment_study::least_control_run;
use crate::studies::progress;
use crate::studies::simulate::SplitChoice;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::train::load_split;
use nalgebra::DMatrix;
use serde::Serialize;
use std::path::PathBuf;

/// The study as asked for.
#[derive(Clone, Debug)]
pub struct AgreementJob {
    /// Data, loss, controller gains, `method.equilibrium`'s branch keys and the solver.
    pub config: Config,
    /// Finished (or checkpointed) runs of least-control methods whose weights are measured.
    pub runs: Vec<PathBuf>,
    /// Controller leaks (each > 0); empty: `controller.alpha` of `config`.
    pub alphas: Vec<f64>,
    /// The definitions measured (flow, branch or both).
    pub definitions: Vec<EquilibriumDefinition>,
    /// The batch: the first `samples` of `split` (>= 1).
    pub samples: usize,
    pub split: SplitChoice,
    /// Largest distance d_j of an agreeing sample (> 0); None: `solver.certify_tolerance`.
    pub tolerance: Option<f64>,
    /// Output folder of agreement.csv and agreement.json (default `output.dir/agreement`).
    pub out: Option<PathBuf>,
    /// The command line, recorded in agreement.json.
    pub command: String,
}

/// How one sample's equilibrium compares with its definition's reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Both converged, within the tolerance.
    Agrees,
    /// The solver reported the sample (not converged); the reference converged.
    Flagged,
    /// The solver called it converged, but it is not the reference's equilibrium.
    Silent,
    /// The free solve or the reference did not converge: nothing to compare with.
    NoReference,
}

impl Verdict {
    /// Name as in agreement.csv.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Agrees => "agrees",
            Verdict::Flagged => "flagged",
            Verdict::Silent => "silent",
            Verdict::NoReference => "no-reference",
        }
    }
}

/// Columns of agreement.csv, one row per [`SampleAgreement`].
pub const CSV_COLUMNS: [&str; 10] = [
    "run",
    "alpha",
    "definition",
    "sample",
    "verdict",
    "distance",
    "solver_termination",
    "solver_method",
    "reference_termination",
    "certificate_rejected",
];

/// One sample of one (run, alpha, definition).
#[derive(Clone, Debug, Serialize)]
pub struct SampleAgreement {
    pub run: String,
    pub alpha: f64,
    pub definition: &'static str,
    pub sample: usize,
    pub verdict: Verdict,
    /// d_j (infinite when either solve diverged).
    pub distance: f64,
    pub solver_termination: &'static str,
    /// The method that produced the solver's state (the fallback's after a rejection).
    pub solver_method: &'static str,
    pub reference_termination: &'static str,
    /// An accelerated solver's candidate that the flow certificate rejected (then the
    /// state is the fallback's flow).
    pub certificate_rejected: bool,
}

/// The counts of one (run, alpha, definition).
#[derive(Clone, Debug, Serialize)]
pub struct AgreementRow {
    pub run: String,
    pub alpha: f64,
    pub definition: &'static str,
    pub samples: usize,
    pub agrees: usize,
    pub flagged: usize,
    pub silent: usize,
    pub no_reference: usize,
    /// Of `no_reference`, those the solver did not settle either (e.g. the branch folds in
    /// both the solver's and the fine continuation: no branch equilibrium at full strength).
    pub no_reference_and_flagged: usize,
    /// agrees / (samples - no_reference); NaN when nothing could be compared.
    pub fraction_agrees: f64,
    /// Largest d_j over the agreeing samples.
    pub max_agreeing_distance: f64,
    /// Candidates the flow certificate rejected (each then integrated by the fallback).
    pub certificate_rejections: usize,
}

/// Per (run, alpha): where the flow and branch references differ.
#[derive(Clone, Debug, Serialize)]
pub struct DefinitionsRow {
    pub run: String,
    pub alpha: f64,
    /// Samples where both references converged.
    pub compared: usize,
    /// Of those, how many have distance > tolerance between the flow's and the branch's.
    pub differ: usize,
}

/// What [`agreement`] measured and wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub tolerance: f64,
    pub solver: &'static str,
    pub rows: Vec<AgreementRow>,
    pub definitions: Vec<DefinitionsRow>,
    #[serde(skip)]
    pub samples: Vec<SampleAgreement>,
    pub csv: PathBuf,
    pub json: PathBuf,
}

impl Agreement {
    /// Silent disagreements over every row (the command fails when > 0).
    pub fn silent(&self) -> usize {
        self.rows.iter().map(|r| r.silent).sum()
    }
}

/// The reference of a definition: the Tsit45 flow, or a fine continuation.
pub fn reference_settings(
    solver: &SolverSettings,
    branch: &BranchSettings,
) -> (SolverSettings, BranchSettings) {
    let flow = solver.with_method(SolverMethod::Tsit45);
    let fine = BranchSettings {
        initial_step: 1.0 / 64.0,
        min_step: 1.0 / 65536.0,
        corrector_iterations: branch.corrector_iterations.max(8),
        max_correction: 0.05,
    };
    (flow, fine)
}

/// `max_i |a_i - b_i| / (1 + |b_i|)`; infinite when an entry is not finite.
pub fn relative_distance(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    a.iter().zip(b.iter()).fold(0.0f64, |d, (x, y)| {
        let e = (x - y).abs() / (1.0 + y.abs());
        if e.is_finite() {
            d.max(e)
        } else {
            f64::INFINITY
        }
    })
}

/// The verdict of a solver's record against the reference's.
pub fn verdict(
    free_ok: bool,
    solver: &SteadyState,
    reference: &SteadyState,
    tolerance: f64,
) -> (Verdict, f64) {
    let distance = relative_distance(&solver.state, &reference.state);
    let v = if !free_ok || !reference.converged() {
        Verdict::NoReference
    } else if !solver.converged() {
        Verdict::Flagged
    } else if distance <= tolerance {
        Verdict::Agrees
    } else {
        Verdict::Silent
    };
    (v, distance)
}

/// The controlled equilibria of one batch under `settings` (solver and branch as given).
#[allow(clippy::too_many_arguments)]
fn solve_definition(
    base: &VariantSettings<'_>,
    definition: EquilibriumDefinition,
    solver: &SolverSettings,
    branch: &BranchSettings,
    feedback: Option<&Params>,
    free: &CoupledSystem<'_, RateNetwork>,
    phi0: &DMatrix<f64>,
) -> Result<BatchSteadyState> {
    let settings = VariantSettings {
        equilibrium: definition,
        branch: branch.clone(),
        solver,
        method: base.method,
        controller: base.controller,
        start: base.start,
        ebd: base.ebd.clone(),
    };
    Ok(ControlledEquilibrium::find(&settings, feedback, free, phi0)?.solve)
}

/// Runs the study; hands each line of the report to `say` as soon as it is known.
pub fn agreement(job: &AgreementJob, mut say: impl FnMut(String)) -> Result<Agreement> {
    let config = &job.config;
    if job.samples == 0 {
        return Err(invalid("--samples", 0, "an integer >= 1"));
    }
    if job.runs.is_empty() {
        return Err(invalid(
            "--run",
            "none",
            "at least one run folder of a least-control method",
        ));
    }
    if job.definitions.is_empty() {
        return Err(invalid("--definitions", "none", "flow, branch or both"));
    }
    let tolerance = job
        .tolerance
        .unwrap_or(config.solver.accelerated.certify.tolerance);
    if !(tolerance > 0.0 && tolerance.is_finite()) {
        return Err(invalid("--tolerance", tolerance, "a finite number > 0"));
    }
    let alphas = if job.alphas.is_empty() {
        vec![config.controller.alpha]
    } else {
        validate_alphas("--alphas", &job.alphas)?
    };
    let mut trained = Vec::new();
    for dir in &job.runs {
        let (run, run_config) = RunDir::open(dir)?;
        let method = least_control_run(dir, run_config.method.name)?;
        if method == Method::LcpEbd && job.definitions.contains(&EquilibriumDefinition::Branch) {
            return Err(invalid(
                "--run",
                format!("{} (lcp-ebd)", dir.display()),
                "runs of lcp-di, lcp-kp or lcp-lf with --definitions branch (LCP-EBD's descent has no branch)",
            ));
        }
        trained.push((TrainedRun::load(run, run_config)?, method));
    }
    let data = load_split(config)?;
    let dataset = job.split.of(&data);
    if job.samples > dataset.len() {
        return Err(invalid(
            "--samples",
            job.samples,
            &format!(
                "at most the {} samples of the {} split",
                dataset.len(),
                job.split.name()
            ),
        ));
    }
    for (t, _) in &trained {
        if t.net.n_x() != dataset.n_inputs() || t.net.n_y() != dataset.n_classes {
            return Err(LcsimError::Shape {
                field: format!("--run {}", t.run.path.display()),
                expected: format!(
                    "a network with {} inputs and {} outputs (the data of --config)",
                    dataset.n_inputs(),
                    dataset.n_classes
                ),
                found: format!("{} inputs and {} outputs", t.net.n_x(), t.net.n_y()),
            });
        }
    }
    let out = job
        .out
        .clone()
        .unwrap_or_else(|| config.output.dir.join("agreement"));
    create_out_dir("--out", &out)?;
    let idx: Vec<usize> = (0..job.samples).collect();
    let (x, targets) = dataset.batch(&idx);
    let (flow_reference, fine_branch) = reference_settings(&config.solver, &config.method.branch());
    say(format!(
        "lcsim {} agree: {} {} samples of {}; solver {} (certify_flow {}), tolerance {:e}; references: tsit45 flow, continuation with steps 1/64 .. 2^-16",
        env!("CARGO_PKG_VERSION"),
        job.samples,
        job.split.name(),
        dataset.name,
        config.solver.method.name(),
        config.solver.accelerated.certify.enabled,
        tolerance,
    ));
    let mut rows = Vec::new();
    let mut definitions_rows = Vec::new();
    let mut samples = Vec::new();
    let steps = trained.len() * alphas.len() * job.definitions.len();
    let mut step = 0;
    for (t, method) in &trained {
        let name = t.run.path.display().to_string();
        let free = CoupledSystem::new(
            &t.net,
            x.clone(),
            targets.clone(),
            config.objective(job.samples),
            config.dynamics.tau_v,
            None,
        )?;
        let (phi0, free_solve) = free_equilibrium(&free, &config.solver);
        let free_ok: Vec<bool> = (0..job.samples)
            .map(|j| free_solve.as_ref().is_none_or(|s| s.records[j].converged()))
            .collect();
        for &alpha in &alphas {
            let mut controller = config.controller_settings();
            controller.alpha = alpha;
            let base = config.variant(*method, controller);
            let mut references: Vec<(EquilibriumDefinition, BatchSteadyState)> = Vec::new();
            for &definition in &job.definitions {
                let phase = format!("agree: {name} alpha {alpha:e} {}", definition.name());
                progress::report(&phase, step, steps);
                step += 1;
                let start = std::time::Instant::now();
                let branch = config.method.branch();
                let fb = t.feedback.as_ref();
                let found =
                    solve_definition(&base, definition, &config.solver, &branch, fb, &free, &phi0)?;
                let reference = match definition {
                    EquilibriumDefinition::Flow => solve_definition(
                        &base,
                        definition,
                        &flow_reference,
                        &branch,
                        fb,
                        &free,
                        &phi0,
                    )?,
                    EquilibriumDefinition::Branch => solve_definition(
                        &base,
                        definition,
                        &config.solver,
                        &fine_branch,
                        fb,
                        &free,
                        &phi0,
                    )?,
                };
                let mut row = AgreementRow {
                    run: name.clone(),
                    alpha,
                    definition: definition.name(),
                    samples: job.samples,
                    agrees: 0,
                    flagged: 0,
                    silent: 0,
                    no_reference: 0,
                    no_reference_and_flagged: 0,
                    fraction_agrees: f64::NAN,
                    max_agreeing_distance: 0.0,
                    certificate_rejections: 0,
                };
                for (j, &free_converged) in free_ok.iter().enumerate() {
                    let (s, r) = (&found.records[j], &reference.records[j]);
                    let (v, distance) = verdict(free_converged, s, r, tolerance);
                    match v {
                        Verdict::Agrees => {
                            row.agrees += 1;
                            row.max_agreeing_distance = row.max_agreeing_distance.max(distance);
                        }
                        Verdict::Flagged => row.flagged += 1,
                        Verdict::Silent => row.silent += 1,
                        Verdict::NoReference => {
                            row.no_reference += 1;
                            row.no_reference_and_flagged += usize::from(!s.converged());
                        }
                    }
                    let rejected = s.flow_certified == Some(false);
                    row.certificate_rejections += usize::from(rejected);
                    samples.push(SampleAgreement {
                        run: name.clone(),
                        alpha,
                        definition: definition.name(),
                        sample: j,
                        verdict: v,
                        distance,
                        solver_termination: s.termination.name(),
                        solver_method: s.solver.name(),
                        reference_termination: r.termination.name(),
                        certificate_rejected: rejected,
                    });
                }
                let compared = job.samples - row.no_reference;
                if compared > 0 {
                    row.fraction_agrees = row.agrees as f64 / compared as f64;
                }
                say(format!(
                    "  {name} alpha {alpha:e} {:<6}: agrees {}/{compared} ({:.2}%), flagged {}, silent {}, no reference {} (solver unconverged too: {}), certificate rejections {}, max agreeing distance {:.1e} ({:.1} s)",
                    definition.name(),
                    row.agrees,
                    100.0 * row.fraction_agrees,
                    row.flagged,
                    row.silent,
                    row.no_reference,
                    row.no_reference_and_flagged,
                    row.certificate_rejections,
                    row.max_agreeing_distance,
                    start.elapsed().as_secs_f64()
                ));
                rows.push(row);
                references.push((definition, reference));
            }
            if let [(_, a), (_, b)] = references.as_slice() {
                let both: Vec<usize> = (0..job.samples)
                    .filter(|&j| free_ok[j] && a.records[j].converged() && b.records[j].converged())
                    .collect();
                let differ = both
                    .iter()
                    .filter(|&&j| {
                        relative_distance(&a.records[j].state, &b.records[j].state) > tolerance
                    })
                    .count();
                say(format!(
                    "  {name} alpha {alpha:e}: flow and branch references differ in {differ} of {} samples",
                    both.len()
                ));
                definitions_rows.push(DefinitionsRow {
                    run: name.clone(),
                    alpha,
                    compared: both.len(),
                    differ,
                });
            }
        }
    }
    let csv = out.join("agreement.csv");
    let lines = samples.iter().map(|s| {
        [
            s.run.clone(),
            format!("{}", s.alpha),
            s.definition.to_string(),
            s.sample.to_string(),
            s.verdict.name().to_string(),
            format!("{:e}", s.distance),
            s.solver_termination.to_string(),
            s.solver_method.to_string(),
            s.reference_termination.to_string(),
            s.certificate_rejected.to_string(),
        ]
    });
    write_atomic(&csv, csv_text(CSV_COLUMNS, lines).as_bytes())?;
    let json = out.join("agreement.json");
    let result = Agreement {
        tolerance,
        solver: config.solver.method.name(),
        rows,
        definitions: definitions_rows,
        samples,
        csv,
        json: json.clone(),
    };
    #[derive(Serialize)]
    struct Record<'a> {
        version: &'static str,
        command: &'a str,
        samples: usize,
        split: &'static str,
        config: &'a Config,
        result: &'a Agreement,
    }
    write_json(
        &json,
        &Record {
            version: env!("CARGO_PKG_VERSION"),
            command: &job.command,
            samples: job.samples,
            split: job.split.name(),
            config,
            result: &result,
        },
    )?;
    Ok(result)
}
