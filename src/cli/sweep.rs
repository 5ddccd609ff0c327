//! The flags of `lcsim sweep` (plan, run, slurm, collect).

use super::ConfigSource;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `lcsim sweep ...`
#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// Write a sweep folder: manifest.json (one row per run: index, id, overrides, seeds),
    /// base.toml and one resolved config per run. Every run is validated first.
    Plan(SweepPlanArgs),
    /// Run the runs not done yet: all of them in parallel (--jobs), or one (--index, or
    /// SLURM_ARRAY_TASK_ID when neither --index nor --jobs is given). Done runs are skipped,
    /// interrupted ones resumed, failed ones retried.
    Run(SweepRunArgs),
    /// Write a Slurm job-array script over the runs not done yet (DIR/slurm/sweep.sbatch);
    /// with --submit, submit it with sbatch and print the job id.
    Slurm(SweepSlurmArgs),
    /// One table of all runs (DIR/results.csv: status, overrides, final metrics) and figures
    /// (DIR/figures: metric against a parameter, heatmaps over two); lists missing and
    /// failed runs.
    Collect(SweepCollectArgs),
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SweepPlanArgs {
    #[command(flatten)]
    pub source: ConfigSource,
    /// A grid axis, e.g. controller.alpha=0.01,0.1,1 (repeatable; the cartesian product of
    /// all axes is run, the first axis varying slowest; TOML values, lists in brackets).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Random samples per grid point, drawn from the --range keys.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub random: usize,
    /// A range of a random sample, uniform or log-uniform: controller.alpha=0.001:1:log
    /// (repeatable; integer keys are rounded).
    #[arg(long, value_name = "KEY=LO:HI[:log]")]
    pub range: Vec<String>,
    /// Seed of the random samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The sweep folder to write (must not hold a sweep yet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

impl SweepPlanArgs {
    /// The library settings.
    pub fn settings(&self) -> crate::sweep::PlanSettings {
        crate::sweep::PlanSettings {
            base: self.source.config.clone(),
            fixed: self.source.overrides.clone(),
            grid: self.grid.clone(),
            random: self.random,
            ranges: self.range.clone(),
            seed: self.seed,
            out: self.out.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct SweepRunArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Run only the run with this index (0-based, as in the manifest).
    #[arg(long, conflicts_with = "jobs")]
    pub index: Option<usize>,
    /// Runs at a time (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
}

#[derive(Args, Debug)]
pub struct SweepSlurmArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Slurm partition (default: the cluster's default).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per run, e.g. 30 (minutes), 1:00:00 or 1-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per run.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// At most this many runs at once (the %K of --array).
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    /// Submit the script with sbatch and print the job id.
    #[arg(long)]
    pub submit: bool,
    /// With --submit: wait until every task has ended (sbatch --wait); fails when one failed.
    #[arg(long, requires = "submit")]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct SweepCollectArgs {
    /// The sweep folder (made by `lcsim sweep plan`).
    pub dir: PathBuf,
    /// Result column to draw (repeatable; default: final_test_accuracy and fraction_converged).
    #[arg(long)]
    pub metric: Vec<String>,
    /// The x parameter of the figures (default: the first swept key with several values).
    #[arg(long)]
    pub x: Option<String>,
    /// The y parameter of the heatmaps, one line per value in the line figures (default: the
    /// second swept key).
    #[arg(long)]
    pub y: Option<String>,
    /// Figure format.
    #[arg(long, value_enum, default_value_t = crate::plot::FigureFormat::Png)]
    pub format: crate::plot::FigureFormat,
    /// Start of the figure titles (default: the sweep folder's name).
    #[arg(long)]
    pub title: Option<String>,
}
