//! The `lcsim sweep` subcommands as library calls: each takes plain settings, does the work
//! and prints what the subcommand prints (stdout; the failure of a single run on stderr),
//! returning the exit status where it can be other than success (1: runs failed or are
//! left, 130: interrupted, resumable).

use super::figures::{check_figure_settings, draw_figures, FigureSettings};
use super::folder::{RunStatus, Sweep};
use super::labels::overrides_text;
use super::plan::{plan, PlanSettings};
use super::results::{collect, results_csv};
use super::runner::{run_local, run_one, RunEvent, RunOutcome};
use super::slurm::{slurm_script, submit, write_slurm_script, SlurmSettings};
use crate::error::{invalid, LcsimError, Result, MAX_THREADS};
use crate::io::lock::{lock_folder, LockMode};
use crate::run::write_atomic;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit status of an interrupted (resumable) command, as after SIGINT.
const INTERRUPTED: u8 = 130;

/// The path of the running binary, which the runs and the Slurm tasks call.
pub fn this_exe() -> Result<PathBuf> {
    std::env::current_exe().map_err(|source| LcsimError::Io {
        path: "current executable".into(),
        source,
    })
}

/// A stop flag raised by Ctrl-C (installs the process's Ctrl-C handler: for binaries).
pub fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    stop
}

/// `lcsim sweep plan`: writes the sweep folder and prints its first runs and what to do next.
pub fn plan_command(settings: &PlanSettings) -> Result<()> {
    let sweep = plan(settings)?;
    let m = &sweep.manifest;
    println!(
        "planned {} runs over {:?} in {}",
        m.runs.len(),
        m.keys,
        sweep.dir.display()
    );
    for run in m.runs.iter().take(3) {
        println!("  {} {}", run.id, overrides_text(&sweep, run));
    }
    if m.runs.len() > 3 {
        println!(
            "  ... ({} more; see {}/manifest.json)",
            m.runs.len() - 3,
            sweep.dir.display()
        );
    }
    println!(
        "next: lcsim sweep run {0} --jobs N   or   lcsim sweep slurm {0} --submit",
        sweep.dir.display()
    );
    Ok(())
}

/// What `lcsim sweep run` does.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// The sweep folder.
    pub dir: PathBuf,
    /// Exactly this run (`--index`).
    pub index: Option<usize>,
    /// Runs at a time (None: one per core).
    pub jobs: Option<usize>,
    /// SLURM_ARRAY_TASK_ID: the run of a Slurm task, used when neither index nor jobs is set.
    pub slurm_task_id: Option<String>,
    /// The lcsim binary the runs call.
    pub exe: PathBuf,
}

/// `lcsim sweep run`: one run (`index`, or the Slurm task's), or every pending run with
/// `jobs` at a time and a progress bar. `stop_source` gives the flag that stops the local
/// runner resumably ([`stop_on_ctrl_c`]); it is called only once runs start in parallel.
/// Returns the exit status: 0 all done, 1 failures, 130 interrupted.
pub fn run_command(s: &RunSettings, stop_source: impl FnOnce() -> Arc<AtomicBool>) -> Result<u8> {
    let sweep = Sweep::open(&s.dir)?;
    let from_env = s.index.is_none() && s.jobs.is_none();
    let index = match (s.index, &s.slurm_task_id) {
        (Some(i), _) => Some((i, "--index")),
        (None, Some(v)) if from_env => Some((
            v.trim()
                .parse::<usize>()
                .map_err(|_| invalid("SLURM_ARRAY_TASK_ID", v, "a run index (an integer)"))?,
            "SLURM_ARRAY_TASK_ID",
        )),
        _ => None,
    };
    // One local runner per sweep folder; the single-run runners (--index, Slurm tasks) share it.
    let mode = match index {
        Some(_) => LockMode::Shared,
        None => LockMode::Exclusive,
    };
    let _lock = lock_folder(&sweep.dir, "sweep folder", mode)?;
    match index {
        Some((i, field)) => run_single(&sweep, i, field, s),
        None => run_pending(&sweep, s, stop_source),
    }
}

/// One run of the sweep, reported in a line.
fn run_single(sweep: &Sweep, i: usize, field: &str, s: &RunSettings) -> Result<u8> {
    let run = sweep.run(i, field)?;
    println!(
        "lcsim sweep: run {i} of {} ({}): {}",
        sweep.manifest.runs.len(),
        run.id,
        overrides_text(sweep, run)
    );
    Ok(match run_one(sweep, i, &s.exe)? {
        RunOutcome::Skipped => {
            println!("already done: {}", sweep.run_dir(run).display());
            0
        }
        RunOutcome::Done { seconds } => {
            println!("done in {seconds:.1} s: {}", sweep.run_dir(run).display());
            0
        }
        RunOutcome::Interrupted => {
            println!("interrupted; run the same command again to resume");
            INTERRUPTED
        }
        RunOutcome::Busy { holder } => {
            eprintln!(
                "error: run {} is being trained by {holder}; not started again",
                sweep.run_dir(run).display()
            );
            1
        }
        RunOutcome::Failed { reason } => {
            eprintln!(
                "error: run {} failed: {reason} (see {})",
                run.id,
                sweep.run_dir(run).join("error.txt").display()
            );
            1
        }
    })
}

/// The pending runs, `jobs` at a time, with a progress bar and a line per finished run.
fn run_pending(
    sweep: &Sweep,
    s: &RunSettings,
    stop_source: impl FnOnce() -> Arc<AtomicBool>,
) -> Result<u8> {
    let jobs = s
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=MAX_THREADS).contains(&jobs) {
        return Err(invalid(
            "--jobs",
            jobs,
            &format!("an integer in 1..={MAX_THREADS}"),
        ));
    }
    let total = sweep.manifest.runs.len();
    let pending = sweep.pending();
    println!(
        "lcsim sweep: {} of {total} runs to do ({} done before) in {}, {jobs} at a time",
        pending.len(),
        total - pending.len(),
        sweep.dir.display()
    );
    if pending.is_empty() {
        return Ok(0);
    }
    let stop = stop_source();
    let bar = indicatif::ProgressBar::new(pending.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} runs {elapsed_precise} eta {eta} {msg}",
        )
        .expect("valid template"),
    );
    let say = |line: String| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut failed = Vec::new();
    let mut running = std::collections::BTreeSet::new();
    let outcomes = run_local(sweep, &pending, jobs, &s.exe, &stop, |event| match event {
        RunEvent::Started { index } => {
            running.insert(sweep.manifest.runs[*index].id.clone());
            bar.set_message(format!(
                "running {}",
                running.iter().cloned().collect::<Vec<_>>().join(" ")
            ));
        }
        RunEvent::Finished { index, outcome } => {
            let run = &sweep.manifest.runs[*index];
            running.remove(&run.id);
            bar.inc(1);
            match outcome {
                RunOutcome::Done { seconds } => say(format!(
                    "done    {} ({seconds:.1} s) {}",
                    run.id,
                    overrides_text(sweep, run)
                )),
                RunOutcome::Skipped => say(format!("skipped {} (done)", run.id)),
                RunOutcome::Interrupted => say(format!("stopped {} (resumable)", run.id)),
                RunOutcome::Busy { holder } => {
                    say(format!("busy    {} (trained by {holder})", run.id))
                }
                RunOutcome::Failed { reason } => {
                    say(format!(
                        "FAILED  {} {}: {reason}",
                        run.id,
                        overrides_text(sweep, run)
                    ));
                    failed.push(run.id.clone());
                }
            }
        }
    })?;
    bar.finish_and_clear();
    let done = outcomes
        .iter()
        .filter(|o| matches!(o, Some(RunOutcome::Done { .. }) | Some(RunOutcome::Skipped)))
        .count();
    let not_run = outcomes
        .iter()
        .filter(|o| matches!(o, None | Some(RunOutcome::Interrupted)))
        .count();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, Some(RunOutcome::Busy { .. })))
        .count();
    let busy_text = match busy {
        0 => String::new(),
        n => format!(", {n} trained by another process"),
    };
    println!(
        "{done} runs finished now, {} failed{busy_text}, {not_run} not finished; {} of {total} done in all",
        failed.len(),
        total - sweep.pending().len()
    );
    if !failed.is_empty() {
        println!(
            "failed (error.txt in each run folder under {}): {}",
            sweep.runs_dir().display(),
            failed.join(" ")
        );
    }
    Ok(if not_run > 0 {
        println!("interrupted; run the same command again to finish the sweep");
        INTERRUPTED
    } else if failed.is_empty() && busy == 0 {
        0
    } else {
        1
    })
}

/// What `lcsim sweep slurm` does.
#[derive(Clone, Debug)]
pub struct SubmitSettings {
    /// The sweep folder.
    pub dir: PathBuf,
    /// What goes into the job-array script.
    pub script: SlurmSettings,
    /// Submit the script with sbatch.
    pub submit: bool,
    /// Submit with `sbatch --wait` and report how many runs are done when the job ends.
    pub wait: bool,
}

/// `lcsim sweep slurm`: writes the job-array script over the pending runs and, if asked,
/// submits it. Returns the exit status: 1 when `--wait` ends with runs not done.
pub fn slurm_command(s: &SubmitSettings) -> Result<u8> {
    let sweep = Sweep::open(&s.dir)?;
    let pending = sweep.pending();
    if pending.is_empty() {
        println!(
            "all {} runs of {} are done; nothing to submit",
            sweep.manifest.runs.len(),
            sweep.dir.display()
        );
        return Ok(0);
    }
    let script = slurm_script(&sweep, &pending, &s.script)?;
    let path = write_slurm_script(&sweep, &script)?;
    println!(
        "job-array script for {} of {} runs: {}",
        pending.len(),
        sweep.manifest.runs.len(),
        path.display()
    );
    if !s.submit {
        println!("submit it with: sbatch {}", path.display());
        return Ok(0);
    }
    if s.wait {
        println!("submitting with sbatch --wait; waiting until every task has ended ...");
    }
    let extra: &[&str] = if s.wait { &["--wait"] } else { &[] };
    let id = submit(&sweep, &path, extra)?;
    println!("Submitted batch job {id}");
    if s.wait {
        let left = sweep.pending();
        println!(
            "job {id} ended: {} of {} runs done",
            sweep.manifest.runs.len() - left.len(),
            sweep.manifest.runs.len()
        );
        if !left.is_empty() {
            return Ok(1);
        }
    } else {
        println!(
            "follow it with: squeue -j {id}; then lcsim sweep collect {}",
            sweep.dir.display()
        );
    }
    Ok(0)
}

/// `lcsim sweep collect`: writes DIR/results.csv, lists the runs not done and draws the
/// figures.
pub fn collect_command(dir: &std::path::Path, settings: &FigureSettings) -> Result<()> {
    let sweep = Sweep::open(dir)?;
    check_figure_settings(&sweep, settings)?;
    let results = collect(&sweep);
    let csv = sweep.dir.join("results.csv");
    write_atomic(&csv, results_csv(&sweep, &results).as_bytes())?;
    let total = results.len();
    let done = results
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .count();
    println!("{done} of {total} runs done; table: {}", csv.display());
    for r in results.iter().filter(|r| r.status != RunStatus::Done) {
        let why = match &r.status {
            RunStatus::Failed(reason) => format!(": {reason}"),
            _ => String::new(),
        };
        println!(
            "  {:<10} {} {}{why}",
            r.status.name(),
            r.run.id,
            overrides_text(&sweep, &r.run)
        );
    }
    for f in draw_figures(&sweep, &results, settings)? {
        println!("figure: {}", f.display());
    }
    Ok(())
}
