//! A sweep folder on disk: opened and checked against its manifest, the paths of each run's
//! config, folder and log, and where each run stands (done = summary.json written).

use super::plan::{
    assignments, planned_fingerprint, run_id, runs_fingerprint, Manifest, RunEntry, Seeds,
};
use crate::config::{changed_keys, Config};
use crate::error::{invalid, io_error, Result};
use std::path::{Path, PathBuf};

/// File name of the plan inside a sweep folder.
pub const MANIFEST: &str = "manifest.json";

/// A checked sweep folder.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The sweep folder (absolute).
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// `path` made absolute (from the current directory), without resolving links.
pub(super) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(io_error(path))
}

impl Sweep {
    /// Opens a sweep folder and checks that its manifest, base.toml and every run's config
    /// agree (a hand-edited manifest is refused with the run and the key that differ).
    pub fn open(dir: &Path) -> Result<Sweep> {
        let dir = absolute(dir)?;
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(invalid(
                "DIR",
                dir.display(),
                "a sweep folder made by `lcsim sweep plan` (with manifest.json)",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            invalid(
                &path.display().to_string(),
                e,
                "the manifest.json written by `lcsim sweep plan`",
            )
        })?;
        let sweep = Sweep { dir, manifest };
        sweep.check()?;
        Ok(sweep)
    }

    fn check(&self) -> Result<()> {
        let m = &self.manifest;
        let field = self.dir.join(MANIFEST).display().to_string();
        let bad = |what: String, allowed: &str| Err(invalid(&field, what, allowed));
        if m.runs.is_empty() {
            return bad("no runs".into(), "at least one run");
        }
        let base_path = self.dir.join("base.toml");
        let base = Config::load(Some(&base_path), &[])?;
        if let Some(planned) = &m.base {
            let edited = changed_keys(planned, &base.flat());
            if !edited.is_empty() {
                let items: Vec<String> = edited
                    .iter()
                    .map(|(k, was, is)| format!("{k} = {is} (was {was})"))
                    .collect();
                return bad(
                    format!(
                        "{} edited after planning: {}",
                        base_path.display(),
                        items.join(", ")
                    ),
                    "base.toml as planned: restore it, or plan a new sweep for other values",
                );
            }
        }
        let n = m.runs.len();
        let mut seen = std::collections::HashSet::new();
        for (i, run) in m.runs.iter().enumerate() {
            if run.index != i {
                return bad(
                    format!("run {} has index {} at position {i}", run.id, run.index),
                    "runs listed in index order 0, 1, 2, ...",
                );
            }
            if !seen.insert(run.id.clone()) {
                return bad(format!("run id {} twice", run.id), "distinct run ids");
            }
            let keys: Vec<&String> = run.overrides.keys().collect();
            let mut expected: Vec<&String> = m.keys.iter().collect();
            expected.sort();
            if keys != expected {
                return bad(
                    format!("run {} overrides keys {keys:?}", run.id),
                    &format!("exactly the swept keys {:?}", m.keys),
                );
            }
            let id = run_id(i, n, &run.overrides);
            if run.id != id {
                return bad(
                    format!("run {} with overrides {:?}", run.id, run.overrides),
                    &format!("the id {id} that these overrides and index give (was the manifest edited?)"),
                );
            }
            let path = self.config_path(run);
            if !path.is_file() {
                return bad(
                    format!("run {}: {} is missing", run.id, path.display()),
                    "a config file for every run (plan the sweep again)",
                );
            }
            let config = Config::load(Some(&path), &[])?;
            if Seeds::of(&config) != run.seeds {
                return bad(
                    format!(
                        "run {}: seeds {} in the manifest, {} in {}",
                        run.id,
                        run.seeds,
                        Seeds::of(&config),
                        path.display()
                    ),
                    "the seeds the sweep was planned with (was the manifest or the config edited?)",
                );
            }
            let actual = config.flat();
            let wanted = Config::load(
                Some(&base_path),
                &assignments(&run.overrides, &self.runs_dir(), &run.id),
            )?
            .flat();
            // output.dir may differ when the sweep folder was moved.
            if let Some((key, value)) = wanted
                .iter()
                .find(|(k, v)| *k != "output.dir" && actual.get(*k) != Some(v))
            {
                return bad(
                    format!(
                        "run {}: {key} = {} in {}",
                        run.id,
                        actual.get(key).map_or("(absent)", |s| s.as_str()),
                        path.display()
                    ),
                    &format!("{key} = {value}, as base.toml and the manifest's overrides say"),
                );
            }
            if let Some(h) = &run.config_sha256 {
                if *h != planned_fingerprint(&config) {
                    return bad(
                        format!(
                            "run {}: {} is not the config planned (config_sha256)",
                            run.id,
                            path.display()
                        ),
                        "the config `lcsim sweep plan` wrote for this run (plan the sweep again)",
                    );
                }
            }
        }
        if let Some(h) = &m.runs_sha256 {
            if *h != runs_fingerprint(&m.runs) {
                return bad(
                    format!("a run list of {n} runs that is not the one planned (runs_sha256)"),
                    "the run list `lcsim sweep plan` wrote (was a run deleted, added or edited? plan the sweep again)",
                );
            }
        }
        Ok(())
    }

    /// Where runs start: the directory the plan was made in, or the current one when that
    /// is gone (a sweep folder copied to another machine).
    pub fn workdir(&self) -> PathBuf {
        if self.manifest.workdir.is_dir() {
            self.manifest.workdir.clone()
        } else {
            absolute(Path::new(".")).unwrap_or_else(|_| PathBuf::from("."))
        }
    }

    /// DIR/runs: the parent of the run folders.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// The run folder of a run.
    pub fn run_dir(&self, run: &RunEntry) -> PathBuf {
        self.runs_dir().join(&run.id)
    }

    /// The planned config of a run.
    pub fn config_path(&self, run: &RunEntry) -> PathBuf {
        self.dir.join("configs").join(format!("{}.toml", run.id))
    }

    /// The log of a run's attempts.
    pub fn log_path(&self, run: &RunEntry) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", run.id))
    }

    /// Where a run stands.
    pub fn status(&self, run: &RunEntry) -> RunStatus {
        let dir = self.run_dir(run);
        if read_summary(&dir).is_some() {
            RunStatus::Done
        } else if let Ok(text) = std::fs::read_to_string(dir.join("error.txt")) {
            RunStatus::Failed(text.lines().next().unwrap_or("failed").to_string())
        } else if dir.is_dir() {
            RunStatus::Unfinished
        } else {
            RunStatus::Missing
        }
    }

    /// Indices of the runs that are not done.
    pub fn pending(&self) -> Vec<usize> {
        self.manifest
            .runs
            .iter()
            .filter(|r| self.status(r) != RunStatus::Done)
            .map(|r| r.index)
            .collect()
    }

    /// The run at `index`, or an error naming the valid range.
    pub fn run(&self, index: usize, field: &str) -> Result<&RunEntry> {
        self.manifest.runs.get(index).ok_or_else(|| {
            invalid(
                field,
                index,
                &format!("a run index in 0..={}", self.manifest.runs.len() - 1),
            )
        })
    }
}

/// summary.json of a run folder, when it is there and valid JSON.
pub(super) fn read_summary(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("summary.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .filter(|v| v.is_object())
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// summary.json written.
    Done,
    /// The last attempt failed (first line of error.txt).
    Failed(String),
    /// Started, not finished (interrupted or running).
    Unfinished,
    /// Not started.
    Missing,
}

impl RunStatus {
    /// The name used in results.csv.
    pub fn name(&self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Failed(_) => "failed",
            RunStatus::Unfinished => "unfinished",
            RunStatus::Missing => "missing",
        }
    }
}
