//! Parameter sweeps: a plan of runs over a grid and/or random samples of config keys, run
//! locally in parallel or as a Slurm job array, and their results collected into one table
//! and figures.
//!
//! ```text
//! DIR/manifest.json       the plan: one entry per run (index, id, overrides, seeds); written last
//! DIR/base.toml           the resolved base config (every key)
//! DIR/configs/ID.toml     the resolved config of each run (base + overrides, output inside DIR)
//! DIR/runs/ID/            the run folder written by `lcsim train` (summary.json marks it done)
//! DIR/runs/ID/error.txt   exit code and log tail of a failed attempt
//! DIR/logs/ID.log         stdout and stderr of every attempt (appended)
//! DIR/slurm/              the job-array script and the Slurm logs
//! DIR/results.csv         `collect`: one row per run; DIR/figures/ the figures
//! ```
//!
//! Each run is a child process `lcsim train` (a crash stays in its run), so the runner needs
//! the path of the `lcsim` binary. A run counts as done only once its summary.json, which
//! `lcsim train` writes last and atomically, is there; running a sweep again skips done runs,
//! resumes interrupted ones (`lcsim train --resume`) and retries failed ones.
//!
//! Public items live in the files by concern and are re-exported here (`lcsim::sweep::X`):
//! keys (config keys and command-line values as TOML text), plan (grid, random samples, run
//! ids, writing the folder), folder (opening and checking a sweep folder, where each run
//! stands), runner (child processes, local parallel runs), slurm (the job-array script,
//! sbatch), results (results.csv), labels (how keys, values and metrics are shown), figures
//! (collect's figures) and commands (the `lcsim sweep` subcommands as library calls).

mod commands;
mod figures;
mod folder;
mod keys;
mod labels;
mod plan;
mod results;
mod runner;
mod slurm;

pub use commands::{
    collect_command, plan_command, run_command, slurm_command, stop_on_ctrl_c, this_exe,
    RunSettings, SubmitSettings,
};
pub use figures::{check_figure_settings, draw_figures, log_axis, FigureSettings};
pub use folder::{RunStatus, Sweep, MANIFEST};
pub use labels::{
    display_value, key_label, key_symbol, metric_label, numeric_value, overrides_text,
};
pub use plan::{
    parse_grid, parse_range, plan, run_id, GridAxis, Manifest, PlanSettings, RandomRange, RunEntry,
    Seeds,
};
pub use results::{collect, results_csv, RunResult, RESULT_COLUMNS};
pub use runner::{run_local, run_one, run_one_until, RunEvent, RunOutcome};
pub use slurm::{
    array_ranges, parse_job_id, slurm_script, submit, write_slurm_script, SlurmSettings,
};
