//! Slurm: the job-array script over the runs not done yet (each task runs `lcsim sweep run
//! DIR` for SLURM_ARRAY_TASK_ID), and its submission with sbatch.

use super::folder::Sweep;
use crate::error::{invalid, io_error, LcsimError, Result};
use crate::run::write_atomic;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `lcsim sweep slurm` writes into the job-array script.
#[derive(Clone, Debug, Default)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    /// Time limit per task in a Slurm format (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS).
    pub time: Option<String>,
    pub cpus_per_task: usize,
    /// At most this many tasks at once (`%K`); None: no limit.
    pub max_parallel: Option<usize>,
    /// The lcsim binary the tasks run (absolute).
    pub exe: PathBuf,
}

/// Checks a Slurm time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
fn check_time(t: &str) -> Result<()> {
    let allowed = "a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS";
    let numbers = |s: &str| {
        !s.is_empty()
            && s.split(':')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    let ok = match t.split_once('-') {
        Some((d, rest)) => {
            !d.is_empty()
                && d.chars().all(|c| c.is_ascii_digit())
                && numbers(rest)
                && rest.split(':').count() <= 3
        }
        None => numbers(t) && t.split(':').count() <= 3,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid("--time", t, allowed))
    }
}

/// Compact Slurm array ranges of sorted indices: `0-3,5,7-9`.
pub fn array_ranges(indices: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Quotes a word for bash.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The job-array script over the runs `indices` (usually the pending ones): each task runs
/// `lcsim sweep run DIR`, which takes its run from SLURM_ARRAY_TASK_ID.
pub fn slurm_script(sweep: &Sweep, indices: &[usize], s: &SlurmSettings) -> Result<String> {
    if indices.is_empty() {
        return Err(invalid(
            "DIR",
            sweep.dir.display(),
            "a sweep with runs not done yet (every run is done)",
        ));
    }
    if s.cpus_per_task == 0 {
        return Err(invalid("--cpus-per-task", 0, "an integer >= 1"));
    }
    if s.max_parallel == Some(0) {
        return Err(invalid("--max-parallel", 0, "an integer >= 1"));
    }
    if let Some(p) = &s.partition {
        if p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.,".contains(c))
        {
            return Err(invalid(
                "--partition",
                p,
                "a partition name (letters, digits, _ - . ,)",
            ));
        }
    }
    if let Some(t) = &s.time {
        check_time(t)?;
    }
    let name = sweep
        .dir
        .file_name()
        .map_or("sweep".into(), |n| n.to_string_lossy().into_owned());
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let logs = sweep.dir.join("slurm").join("logs");
    let mut array = array_ranges(indices);
    if let Some(k) = s.max_parallel {
        array.push_str(&format!("%{k}"));
    }
    let mut out = String::from("#!/bin/bash\n");
    out.push_str(&format!(
        "# lcsim sweep: {} of {} runs of {}\n",
        indices.len(),
        sweep.manifest.runs.len(),
        sweep.dir.display()
    ));
    out.push_str(&format!("#SBATCH --job-name=lcsim-{name}\n"));
    out.push_str(&format!("#SBATCH --array={array}\n"));
    out.push_str(&format!("#SBATCH --output={}/%A_%a.out\n", logs.display()));
    out.push_str(&format!("#SBATCH --error={}/%A_%a.err\n", logs.display()));
    out.push_str(&format!("#SBATCH --chdir={}\n", sweep.workdir().display()));
    out.push_str("#SBATCH --ntasks=1\n");
    out.push_str(&format!("#SBATCH --cpus-per-task={}\n", s.cpus_per_task));
    if let Some(p) = &s.partition {
        out.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &s.time {
        out.push_str(&format!("#SBATCH --time={t}\n"));
    }
    out.push_str("set -euo pipefail\n");
    out.push_str(
        "# Each task runs the run SLURM_ARRAY_TASK_ID of the manifest (a done run is skipped).\n",
    );
    out.push_str(&format!(
        "exec {} sweep run {}\n",
        shell_quote(&s.exe.display().to_string()),
        shell_quote(&sweep.dir.display().to_string())
    ));
    Ok(out)
}

/// Writes the job-array script to DIR/slurm/sweep.sbatch (and creates the log folder).
pub fn write_slurm_script(sweep: &Sweep, script: &str) -> Result<PathBuf> {
    let logs = sweep.dir.join("slurm").join("logs");
    std::fs::create_dir_all(&logs).map_err(io_error(&logs))?;
    let path = sweep.dir.join("slurm").join("sweep.sbatch");
    write_atomic(&path, script.as_bytes())?;
    Ok(path)
}

/// The job id in sbatch's "Submitted batch job N".
pub fn parse_job_id(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Submitted batch job ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

/// Submits a script with `sbatch` (plus `extra` arguments, e.g. `--wait`) and returns the
/// job id; the id is also appended to DIR/slurm/jobs.txt.
pub fn submit(sweep: &Sweep, script: &Path, extra: &[&str]) -> Result<u64> {
    let output = Command::new("sbatch")
        .args(extra)
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                invalid(
                    "--submit",
                    "sbatch not found on PATH",
                    &format!(
                        "a machine with the Slurm client (sbatch); the script is written: submit it there with `sbatch {}`",
                        script.display()
                    ),
                )
            } else {
                LcsimError::Io {
                    path: PathBuf::from("sbatch"),
                    source: e,
                }
            }
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let id = parse_job_id(&stdout);
    if let Some(id) = id {
        let path = sweep.dir.join("slurm").join("jobs.txt");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        writeln!(f, "{id}").map_err(io_error(&path))?;
    }
    match (output.status.success(), id) {
        (true, Some(id)) => Ok(id),
        (ok, id) => Err(invalid(
            "sbatch",
            format!(
                "{}{}: {} {}",
                output
                    .status
                    .code()
                    .map_or("killed".into(), |c| format!("exit code {c}")),
                id.map_or(String::new(), |i| format!(" (job {i})")),
                stdout.trim(),
                stderr.trim()
            ),
            if ok {
                "output with \"Submitted batch job N\""
            } else {
                "a successful submission (and, with --wait, every task succeeding)"
            },
        )),
    }
}
