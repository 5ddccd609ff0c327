//! Running the runs of a sweep: each one a child process `lcsim train` (fresh, or `--resume`
//! for an interrupted one) with its output in DIR/logs/ID.log and a failure in
//! DIR/runs/ID/error.txt; several at a time locally, stoppable resumably.

use super::folder::{read_summary, Sweep};
use crate::config::{changed_keys, Config};
use crate::error::{invalid, io_error, Result, EXIT_BUSY};
use crate::io::lock::lock_holder;
use crate::run::write_atomic;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// Already done: not run again.
    Skipped,
    /// Finished now (summary.json written).
    Done { seconds: f64 },
    /// Interrupted (Ctrl-C): resumable.
    Interrupted,
    /// Failed; the reason is in the run's error.txt.
    Failed { reason: String },
    /// Being trained by another process (its run folder is locked): left to it.
    Busy { holder: String },
}

/// Last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs one run of the sweep as a child process `exe train ...` (exe: the lcsim binary),
/// unless it is done: a fresh start, or `--resume` when its folder holds an interrupted run.
/// Output is appended to DIR/logs/ID.log; a failure is recorded in DIR/runs/ID/error.txt.
pub fn run_one(sweep: &Sweep, index: usize, exe: &Path) -> Result<RunOutcome> {
    run_one_until(sweep, index, exe, &AtomicBool::new(false))
}

/// How long a run may take to stop by itself once `stop` is raised before it is killed
/// (either way it resumes from its last completed epoch).
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// [`run_one`], stopping the run when `stop` is raised: a run that has not stopped by itself
/// (Ctrl-C reaches it too) within a grace period is killed, and counts as interrupted.
pub fn run_one_until(
    sweep: &Sweep,
    index: usize,
    exe: &Path,
    stop: &AtomicBool,
) -> Result<RunOutcome> {
    let run = sweep.run(index, "--index")?;
    let dir = sweep.run_dir(run);
    if read_summary(&dir).is_some() {
        return Ok(RunOutcome::Skipped);
    }
    if let Some(holder) = lock_holder(&dir) {
        return Ok(RunOutcome::Busy { holder });
    }
    let _ = std::fs::remove_file(dir.join("error.txt"));
    let runs_dir = sweep.runs_dir();
    let mut args: Vec<String> = vec!["train".into(), "--quiet".into()];
    if dir.join("config.toml").is_file() {
        // The run folder must hold the planned config (output.dir aside).
        let planned = Config::load(Some(&sweep.config_path(run)), &[])?.flat();
        let actual = Config::load(Some(&dir.join("config.toml")), &[])?.flat();
        let edited: Vec<String> = changed_keys(&planned, &actual)
            .into_iter()
            .filter(|(k, _, _)| k != "output.dir")
            .map(|(k, was, is)| format!("{k} = {is} (planned {was})"))
            .collect();
        if !edited.is_empty() {
            let reason = format!(
                "{} is not the planned config: {} (remove the run folder to start it again as planned)",
                dir.join("config.toml").display(),
                edited.join(", ")
            );
            write_atomic(&dir.join("error.txt"), format!("{reason}\n").as_bytes())?;
            return Ok(RunOutcome::Failed { reason });
        }
        args.extend(["--resume".into(), dir.display().to_string()]);
    } else {
        // A folder without config.toml holds nothing to resume (an earlier failure): the new
        // run takes it over under its lock ([`crate::run::RunDir::create`]).
        let out_dir = toml::Value::String(runs_dir.display().to_string());
        args.extend([
            "--config".into(),
            sweep.config_path(run).display().to_string(),
            "--set".into(),
            format!("output.dir={out_dir}"),
        ]);
    }
    let log_path = sweep.log_path(run);
    let logs = log_path.parent().expect("logs folder");
    std::fs::create_dir_all(logs).map_err(io_error(logs))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&log_path)
        .map_err(io_error(&log_path))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    writeln!(
        log,
        "=== lcsim sweep: attempt at unix time {now}: {} {}",
        exe.display(),
        args.join(" ")
    )
    .map_err(io_error(&log_path))?;
    let started = std::time::Instant::now();
    let mut child = Command::new(exe)
        .args(&args)
        .current_dir(sweep.workdir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_error(&log_path))?)
        .stderr(log.try_clone().map_err(io_error(&log_path))?)
        .spawn()
        .map_err(io_error(exe))?;
    let mut stop_seen: Option<std::time::Instant> = None;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_error(exe))? {
            break status;
        }
        if stop.load(Ordering::SeqCst) {
            let since = *stop_seen.get_or_insert_with(std::time::Instant::now);
            if !killed && since.elapsed() > STOP_GRACE {
                let _ = child.kill();
                killed = true;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    if status.success() && read_summary(&dir).is_some() {
        return Ok(RunOutcome::Done { seconds });
    }
    if status.code() == Some(130) || killed {
        return Ok(RunOutcome::Interrupted);
    }
    let mut output = String::new();
    log.seek(std::io::SeekFrom::Start(start_len))
        .and_then(|_| log.read_to_string(&mut output))
        .map_err(io_error(&log_path))?;
    // Another process took the run folder between the check above and the child's start.
    let busy = status.code() == Some(i32::from(EXIT_BUSY));
    if let Some(holder) = lock_holder(&dir) {
        return Ok(RunOutcome::Busy { holder });
    }
    if busy {
        let holder = output
            .lines()
            .rev()
            .find_map(|l| l.split_once(" is in use by "))
            .map(|(_, h)| {
                h.split("; one runner at a time")
                    .next()
                    .unwrap_or(h)
                    .to_string()
            })
            .unwrap_or_else(|| "another process".into());
        return Ok(RunOutcome::Busy { holder });
    }
    let code = match status.code() {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_string(),
    };
    let reason = if status.success() {
        "exit code 0 but no summary.json".to_string()
    } else {
        let last = output
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("");
        format!("{code}{}{last}", if last.is_empty() { "" } else { ": " })
    };
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let text = format!(
        "{reason}\ncommand: {} {}\nlog: {}\n--- last lines of the output ---\n{}\n",
        exe.display(),
        args.join(" "),
        log_path.display(),
        tail(&output, 30)
    );
    write_atomic(&dir.join("error.txt"), text.as_bytes())?;
    Ok(RunOutcome::Failed { reason })
}

/// What the local runner reports while it works.
#[derive(Clone, Debug)]
pub enum RunEvent {
    Started { index: usize },
    Finished { index: usize, outcome: RunOutcome },
}

/// Runs the runs `indices` with `jobs` child processes at a time; `on_event` sees every start
/// and finish (on the calling thread). Raising `stop` starts no further runs and stops the
/// running ones resumably ([`run_one_until`]). Returns the
/// outcomes in the order of `indices` (None: not started).
pub fn run_local(
    sweep: &Sweep,
    indices: &[usize],
    jobs: usize,
    exe: &Path,
    stop: &AtomicBool,
    mut on_event: impl FnMut(&RunEvent),
) -> Result<Vec<Option<RunOutcome>>> {
    if jobs == 0 {
        return Err(invalid("--jobs", 0, "an integer >= 1"));
    }
    for &i in indices {
        sweep.run(i, "index")?;
    }
    let queue = Mutex::new(indices.iter().copied().enumerate());
    let mut outcomes: Vec<Option<RunOutcome>> = vec![None; indices.len()];
    let (tx, rx) = mpsc::channel::<(usize, RunEvent)>();
    std::thread::scope(|s| {
        for _ in 0..jobs.min(indices.len()) {
            let tx = tx.clone();
            let queue = &queue;
            s.spawn(move || loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Some((slot, index)) = queue.lock().expect("queue").next() else {
                    break;
                };
                let _ = tx.send((slot, RunEvent::Started { index }));
                let outcome =
                    run_one_until(sweep, index, exe, stop).unwrap_or_else(|e| RunOutcome::Failed {
                        reason: format!("could not run: {e}"),
                    });
                let _ = tx.send((slot, RunEvent::Finished { index, outcome }));
            });
        }
        drop(tx);
        for (slot, event) in rx {
            if let RunEvent::Finished { outcome, .. } = &event {
                outcomes[slot] = Some(outcome.clone());
            }
            on_event(&event);
        }
    });
    Ok(outcomes)
}
