//! `lcsim align` end to end: the untrained variants and the trained runs, one alignment
//! curve each over alpha on one fixed batch ([`crate::studies::alignment`]), printed as a
//! table and written to alignment.csv, alignment.json and a figure.

use crate::config::{Config, Method};
use crate::error::{invalid, LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use crate::run::{create_out_dir, write_atomic, write_json, RunDir, TrainedRun};
use crate::studies::alignment::{alignment_csv, alignment_curve, draw_alignment, Subject};
use crate::studies::simulate::SplitChoice;
use crate::train::{load_split, TrainingState, FEEDBACK_SEED};
use std::path::{Path, PathBuf};

/// The least-control methods by config name.
pub const LEAST_CONTROL: &str = "lcp-di, lcp-kp, lcp-lf or lcp-ebd";

/// The study as asked for (config loaded, alphas and variants validated).
#[derive(Clone, Debug)]
pub struct AlignJob {
    /// Data, controller gains, solver and loss of every curve.
    pub config: Config,
    /// Controller leaks, increasing, each > 0.
    pub alphas: Vec<f64>,
    /// Least-control variants measured on the untrained network, distinct.
    pub variants: Vec<Method>,
    /// Finished runs of least-control methods, one per variant.
    pub runs: Vec<PathBuf>,
    /// The batch: the first `samples` of `split` (>= 1).
    pub samples: usize,
    pub split: SplitChoice,
    /// Output folder (default `output.dir/alignment-alpha`).
    pub out: Option<PathBuf>,
    /// Figure format (default `output.figure_format`).
    pub format: Option<FigureFormat>,
    /// Figure title (default: data, network and batch).
    pub title: Option<String>,
    /// The command line, recorded in alignment.json.
    pub command: String,
}

/// A run of `lcsim align --run` must be of a least-control method.
pub fn least_control_run(dir: &Path, method: Method) -> Result<Method> {
    if method.is_least_control() {
        Ok(method)
    } else {
        Err(invalid(
            "--run",
            format!("{} (method.name = \"{}\")", dir.display(), method.name()),
            &format!("a run of a least-control method: {LEAST_CONTROL}"),
        ))
    }
}

/// Runs the study; hands each line of the report to `say` as soon as it is known.
pub fn align(job: &AlignJob, mut say: impl FnMut(String)) -> Result<()> {
    let (config, alphas, variants) = (&job.config, &job.alphas, &job.variants);
    if job.samples == 0 {
        return Err(invalid("--samples", 0, "an integer >= 1"));
    }
    let mut trained: Vec<(TrainedRun, Method)> = Vec::new();
    for dir in &job.runs {
        let (run, run_config) = RunDir::open(dir)?;
        let method = least_control_run(dir, run_config.method.name)?;
        if trained.iter().any(|(_, m)| *m == method) {
            return Err(invalid(
                "--run",
                format!("{} (a second run of {})", dir.display(), method.name()),
                "one trained run per variant",
            ));
        }
        trained.push((TrainedRun::load(run, run_config)?, method));
    }
    if variants.is_empty() && trained.is_empty() {
        return Err(invalid(
            "--variants",
            "none",
            "at least one variant, or none with at least one --run",
        ));
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
        .unwrap_or_else(|| config.output.dir.join("alignment-alpha"));
    let format = job.format.unwrap_or(config.output.figure_format);
    create_out_dir("--out", &out)?;
    let idx: Vec<usize> = (0..job.samples).collect();
    let (x, targets) = dataset.batch(&idx);
    let n_h = config.topology().hidden_units();
    let describe = format!(
        "{} {} {}-{}-{}, {} {} samples",
        dataset.name,
        format!("{:?}", config.model.kind).to_uppercase(),
        dataset.n_inputs(),
        n_h,
        dataset.n_classes,
        job.samples,
        job.split.name()
    );
    say(format!(
        "lcsim {} align: {describe}; {} alphas from {:e} to {:e}; solver {}{}, atol {:e}, max_time {}; {} untrained variant(s), {} trained run(s)",
        env!("CARGO_PKG_VERSION"),
        alphas.len(),
        alphas[0],
        alphas[alphas.len() - 1],
        config.solver.method.name(),
        if config.solver.method.follows_flow() {
            String::new()
        } else {
            format!(" (fallback {:?})", config.solver.accelerated.fallback).to_lowercase()
        },
        config.solver.stop.atol,
        config.solver.stop.max_time,
        variants.len(),
        trained.len()
    ));
    let batches = 1;
    let mut curves = Vec::new();
    let mut sources = Vec::new();
    let mut measure = |subject: Subject<'_>, source: String| -> Result<()> {
        let start = std::time::Instant::now();
        let curve = alignment_curve(config, &subject, &x, &targets, alphas)?;
        let (c, n) = curve.converged();
        say(format!(
            "  {:<9} {:<7}: controlled solves converged {c}/{n}, free {}/{s}, adjoint {}/{s} ({:.1} s)",
            curve.network,
            curve.variant.name(),
            curve.free_converged,
            curve.adjoint_converged,
            start.elapsed().as_secs_f64(),
            s = curve.samples,
        ));
        curves.push(curve);
        sources.push(source);
        Ok(())
    };
    for &v in variants {
        let mut c = config.clone();
        c.method.name = v;
        let state = TrainingState::new(&c, dataset.n_inputs(), dataset.n_classes, batches)?;
        measure(
            Subject {
                network: "untrained".into(),
                variant: v,
                net: &state.net,
                feedback: state.feedback.as_ref(),
            },
            format!(
                "initial weights (model.seed = {}, feedback seed model.seed ^ {:#x})",
                config.model.seed, FEEDBACK_SEED
            ),
        )?;
    }
    for (t, method) in &trained {
        measure(
            Subject {
                network: "trained".into(),
                variant: *method,
                net: &t.net,
                feedback: t.feedback.as_ref(),
            },
            t.run.path.display().to_string(),
        )?;
    }
    say(String::new());
    say(format!(
        "  {:<9} {:<7} {:>9} {:>10} {:>12} {:>10}",
        "network", "variant", "alpha", "cosine", "norm ratio", "converged"
    ));
    for c in &curves {
        for p in &c.points {
            say(format!(
                "  {:<9} {:<7} {:>9.3e} {:>10.6} {:>12.4e} {:>6}/{}",
                c.network,
                c.variant.name(),
                p.alpha,
                p.cosine,
                p.norm_ratio,
                p.converged,
                p.solves
            ));
        }
    }
    let csv = out.join("alignment.csv");
    write_atomic(&csv, alignment_csv(&curves).as_bytes())?;
    let figure = out.join(format!("alignment.{}", format.extension()));
    let title = job
        .title
        .clone()
        .unwrap_or_else(|| format!("LC update vs RBP gradient: {describe}"));
    draw_alignment(&curves, &title, &figure, format)?;
    let runs: Vec<serde_json::Value> = trained
        .iter()
        .map(|(t, method)| {
            serde_json::json!({
                "dir": t.run.path.display().to_string(),
                "method": method.name(),
                "epochs": t.config.training.epochs,
                "model_seed": t.config.model.seed,
                "training_seed": t.config.training.seed,
            })
        })
        .collect();
    let summary: Vec<serde_json::Value> = curves
        .iter()
        .zip(&sources)
        .map(|(c, source)| {
            let (conv, n) = c.converged();
            serde_json::json!({
                "network": c.network,
                "variant": c.variant.name(),
                "weights": source,
                "controlled_converged": conv,
                "controlled_solves": n,
                "free_converged": c.free_converged,
                "adjoint_converged": c.adjoint_converged,
                "samples": c.samples,
            })
        })
        .collect();
    let info = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "command": job.command,
        "alphas": alphas,
        "samples": job.samples,
        "split": job.split.name(),
        "sample_indices": format!("0..{}", job.samples),
        "data": dataset.name,
        "model_seed": config.model.seed,
        "data_seed": config.data.seed,
        "feedback_seed": config.model.seed ^ FEEDBACK_SEED,
        "ebd_descent": format!("{:?}", config.ebd.clone().unwrap_or_default().descent).to_lowercase(),
        "runs": runs,
        "curves": summary,
        "csv": csv.display().to_string(),
        "figure": figure.display().to_string(),
        "config": config.to_toml(),
    });
    let json = out.join("alignment.json");
    write_json(&json, &info)?;
    let (conv, n) = curves.iter().fold((0, 0), |(a, b), c| {
        let (x, y) = c.converged();
        (a + x, b + y)
    });
    say(String::new());
    say(format!("controlled solves converged: {conv} of {n}"));
    say(format!("table:    {}", csv.display()));
    say(format!("settings: {}", json.display()));
    say(format!("figure:   {}", figure.display()));
    Ok(())
}
