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

use crate::config::{Config, KEY_DOCS};
use crate::error::{invalid, LcsimError, Result};
use crate::io::metrics::{read_csv, EpochMetrics};
use crate::numerics::rng::Rng;
use crate::plot::YScale;
use crate::run::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

/// File name of the plan inside a sweep folder.
pub const MANIFEST: &str = "manifest.json";

/// One `--range key=lo:hi[:log]` of a random search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RandomRange {
    pub key: String,
    pub lo: f64,
    pub hi: f64,
    /// Log-uniform instead of uniform.
    pub log: bool,
    /// The key holds integers (or a list of one integer): samples are rounded.
    pub integer: bool,
}

/// What `lcsim sweep plan` needs.
#[derive(Clone, Debug, Default)]
pub struct PlanSettings {
    /// Base config file (None: the default config).
    pub base: Option<PathBuf>,
    /// Fixed `key=value` overrides applied to every run.
    pub fixed: Vec<String>,
    /// `key=v1,v2,...` grid axes, in order (the first varies slowest).
    pub grid: Vec<String>,
    /// Random samples per grid point (0: none).
    pub random: usize,
    /// `key=lo:hi[:log]` ranges of the random samples.
    pub ranges: Vec<String>,
    /// Seed of the random samples.
    pub seed: u64,
    /// The sweep folder (must not hold a sweep yet).
    pub out: PathBuf,
}

/// One grid axis of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridAxis {
    pub key: String,
    /// TOML values, as written into the configs.
    pub values: Vec<String>,
}

/// Seeds of one run (from its resolved config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seeds {
    pub model: u64,
    pub training: u64,
    pub data: u64,
}

/// One run of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Position in the plan (the Slurm array index).
    pub index: usize,
    /// Stable id: zero-padded index and a hash of the overrides.
    pub id: String,
    /// Swept key -> TOML value.
    pub overrides: BTreeMap<String, String>,
    pub seeds: Seeds,
}

/// The plan of a sweep (manifest.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub lcsim_version: String,
    /// Directory the plan was made in: relative paths in the configs (data.mnist_dir) are
    /// resolved from there by the Slurm script.
    pub workdir: PathBuf,
    pub grid: Vec<GridAxis>,
    pub random_samples: usize,
    pub random_seed: u64,
    pub ranges: Vec<RandomRange>,
    /// The swept keys in column order (grid keys, then random keys).
    pub keys: Vec<String>,
    pub runs: Vec<RunEntry>,
}

/// A checked sweep folder.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The sweep folder (absolute).
    pub dir: PathBuf,
    pub manifest: Manifest,
}

// ---------------------------------------------------------------------------------------
// Plan
// ---------------------------------------------------------------------------------------

/// The default config as a TOML table (to look keys and their types up).
fn default_table() -> toml::Table {
    Config::schema_table()
}

/// The default value of a dotted key, or a clear error when it is not a config key.
fn default_value(key: &str, flag: &str) -> Result<toml::Value> {
    let root = toml::Value::Table(default_table());
    let mut node = &root;
    for part in key.split('.') {
        node = node.get(part).ok_or_else(|| {
            let keys: Vec<&str> = KEY_DOCS.iter().map(|(k, _)| *k).collect();
            invalid(flag, key, &format!("a config key, one of {keys:?}"))
        })?;
    }
    match node {
        toml::Value::Table(_) => Err(invalid(
            flag,
            key,
            "a key inside a table, e.g. controller.alpha",
        )),
        v => Ok(v.clone()),
    }
}

/// Splits `a,b,[c,d],"e,f"` at the commas outside brackets and quotes.
fn split_values(text: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

/// A command-line value as TOML text for `key`: a bare word becomes a string, and a single
/// value for a list key (model.hidden=64) becomes a list of one.
fn normalise_value(raw: &str, default: &toml::Value) -> String {
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let value = match (default, parsed) {
        (toml::Value::Array(_), v @ toml::Value::Array(_)) => v,
        (toml::Value::Array(_), v) => toml::Value::Array(vec![v]),
        (_, v) => v,
    };
    value_text(&value)
}

/// Compact TOML text of a value.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(value_text).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    }
}

/// Keys the sweep sets itself.
fn check_sweepable(key: &str, flag: &str) -> Result<()> {
    if key.starts_with("output.dir") || key.starts_with("output.name") {
        return Err(invalid(
            flag,
            key,
            "a key other than output.dir and output.name (the sweep places every run inside its folder)",
        ));
    }
    Ok(())
}

/// Parses one `--grid key=v1,v2,...`.
pub fn parse_grid(arg: &str) -> Result<GridAxis> {
    let (key, values) = arg.split_once('=').ok_or_else(|| {
        invalid(
            "--grid",
            arg,
            "key=v1,v2,... e.g. controller.alpha=0.01,0.1,1",
        )
    })?;
    let key = key.trim().to_string();
    let flag = format!("--grid {key}");
    let default = default_value(&key, "--grid")?;
    check_sweepable(&key, "--grid")?;
    let raw = split_values(values);
    if raw.iter().any(|v| v.is_empty()) {
        return Err(invalid(
            &flag,
            format!("`{values}`"),
            "one or more non-empty values separated by commas",
        ));
    }
    let values: Vec<String> = raw.iter().map(|v| normalise_value(v, &default)).collect();
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(invalid(
                &flag,
                v,
                "distinct values (this one appears twice)",
            ));
        }
    }
    Ok(GridAxis { key, values })
}

/// Parses one `--range key=lo:hi[:log]`.
pub fn parse_range(arg: &str) -> Result<RandomRange> {
    let usage =
        "key=lo:hi or key=lo:hi:log with numbers lo < hi, e.g. controller.alpha=0.001:1:log";
    let (key, spec) = arg
        .split_once('=')
        .ok_or_else(|| invalid("--range", arg, usage))?;
    let key = key.trim().to_string();
    let flag = format!("--range {key}");
    let default = default_value(&key, "--range")?;
    check_sweepable(&key, "--range")?;
    let integer = match &default {
        toml::Value::Float(_) => false,
        toml::Value::Integer(_) => true,
        toml::Value::Array(a) if a.len() == 1 && a[0].is_integer() => true,
        other => {
            return Err(invalid(
                &flag,
                format!("a range for a key of type {}", other.type_str()),
                "a numeric key (float or integer) for --range; use --grid for the others",
            ))
        }
    };
    let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
    let (lo, hi, log) = match parts.as_slice() {
        [lo, hi] => (*lo, *hi, false),
        [lo, hi, "log"] => (*lo, *hi, true),
        _ => return Err(invalid(&flag, spec, usage)),
    };
    let number = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| invalid(&flag, spec, usage))
    };
    let (lo, hi) = (number(lo)?, number(hi)?);
    if lo >= hi {
        return Err(invalid(&flag, spec, "a non-empty range: lo < hi"));
    }
    if log && lo <= 0.0 {
        return Err(invalid(&flag, spec, "lo > 0 for a log range"));
    }
    if integer && hi.floor() < lo.ceil() {
        return Err(invalid(&flag, spec, "a range holding at least one integer"));
    }
    Ok(RandomRange {
        key,
        lo,
        hi,
        log,
        integer,
    })
}

impl RandomRange {
    /// One sample as TOML text.
    fn sample(&self, rng: &mut Rng) -> String {
        let u = rng.uniform();
        let v = if self.log {
            (self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp()
        } else {
            self.lo + u * (self.hi - self.lo)
        };
        if self.integer {
            let n = v.round().clamp(self.lo.ceil(), self.hi.floor()) as i64;
            if default_value(&self.key, "--range").is_ok_and(|d| d.is_array()) {
                format!("[{n}]")
            } else {
                n.to_string()
            }
        } else {
            // Six significant digits keep ids and tables readable.
            let v: f64 = format!("{v:.5e}")
                .parse()
                .expect("a formatted float parses");
            toml::Value::Float(v).to_string()
        }
    }
}

/// FNV-1a, 64 bit: a hash that never changes between Rust versions.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The id of run `index` of `n` with these overrides: e.g. `0007-3fa2c1d0`.
pub fn run_id(index: usize, n: usize, overrides: &BTreeMap<String, String>) -> String {
    let width = n.saturating_sub(1).to_string().len().max(4);
    let canonical: String = overrides
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    format!("{index:0width$}-{:08x}", fnv1a(&canonical) >> 32)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LcsimError + '_ {
    move |source| LcsimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(io_err(path))
}

/// The `key=value` assignments of a run's overrides, plus where its run folder goes.
fn assignments(overrides: &BTreeMap<String, String>, runs_dir: &Path, id: &str) -> Vec<String> {
    let mut out: Vec<String> = overrides.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let dir = toml::Value::String(runs_dir.display().to_string());
    out.push(format!("output.dir={dir}"));
    out.push(format!("output.name=\"{id}\""));
    out
}

/// Writes a sweep folder: base.toml, one config per run, and manifest.json last. Everything
/// is checked before anything is written: keys, types and values of every run.
pub fn plan(settings: &PlanSettings) -> Result<Sweep> {
    let base = Config::load(settings.base.as_deref(), &settings.fixed)?;
    let mut grid: Vec<GridAxis> = Vec::new();
    for g in &settings.grid {
        let axis = parse_grid(g)?;
        if grid.iter().any(|a| a.key == axis.key) {
            return Err(invalid(
                "--grid",
                &axis.key,
                "each key in one --grid only (list all its values there)",
            ));
        }
        grid.push(axis);
    }
    let mut ranges: Vec<RandomRange> = Vec::new();
    for r in &settings.ranges {
        let range = parse_range(r)?;
        if grid.iter().any(|a| a.key == range.key) || ranges.iter().any(|q| q.key == range.key) {
            return Err(invalid(
                "--range",
                &range.key,
                "a key not swept by another --grid or --range",
            ));
        }
        ranges.push(range);
    }
    match (settings.random, ranges.is_empty()) {
        (0, false) => {
            return Err(invalid(
                "--random",
                0,
                "a number of samples >= 1 with --range",
            ))
        }
        (n, true) if n > 0 => {
            return Err(invalid(
                "--range",
                "none",
                "at least one --range key=lo:hi[:log] with --random",
            ))
        }
        _ => {}
    }
    if grid.is_empty() && ranges.is_empty() {
        return Err(invalid(
            "--grid / --random",
            "none",
            "at least one --grid key=v1,v2,... or --random N with --range key=lo:hi",
        ));
    }
    for f in &settings.fixed {
        let key = f.split_once('=').map_or(f.as_str(), |(k, _)| k).trim();
        if grid.iter().any(|a| a.key == key) || ranges.iter().any(|r| r.key == key) {
            return Err(invalid(
                "--set",
                key,
                "a key that is not also swept by --grid or --range",
            ));
        }
    }
    // Each value alone first, so an error names the offending grid value.
    let base_text = base.to_toml();
    let check = |assignment: &[String], what: &str| -> Result<Config> {
        let all: Vec<String> = settings.fixed.iter().chain(assignment).cloned().collect();
        Config::load(settings.base.as_deref(), &all).map_err(|e| {
            invalid(
                what,
                assignment.join(" "),
                &format!("a valid config value ({e})"),
            )
        })
    };
    for axis in &grid {
        for v in &axis.values {
            check(
                &[format!("{}={v}", axis.key)],
                &format!("--grid {}", axis.key),
            )?;
        }
    }
    // The runs: the cartesian product of the grid (first key slowest), times the samples.
    let mut points: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    for axis in &grid {
        points = points
            .iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(axis.key.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    if !ranges.is_empty() {
        let mut rng = Rng::seed_from_u64(settings.seed);
        points = points
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), settings.random))
            .map(|mut p| {
                for r in &ranges {
                    p.insert(r.key.clone(), r.sample(&mut rng));
                }
                p
            })
            .collect();
    }
    if points.len() > 1_000_000 {
        return Err(invalid(
            "--grid / --random",
            points.len(),
            "at most 1000000 runs",
        ));
    }
    let out = absolute(&settings.out)?;
    if out.join(MANIFEST).exists() {
        return Err(invalid(
            "--out",
            out.display(),
            "a folder without a sweep (it holds manifest.json: choose another --out or remove it)",
        ));
    }
    let runs_dir = out.join("runs");
    let n = points.len();
    let mut runs = Vec::with_capacity(n);
    let mut configs = Vec::with_capacity(n);
    for (index, overrides) in points.into_iter().enumerate() {
        let id = run_id(index, n, &overrides);
        let config = check(
            &assignments(&overrides, &runs_dir, &id),
            &format!("run {id}"),
        )?;
        runs.push(RunEntry {
            index,
            id,
            overrides,
            seeds: Seeds {
                model: config.model.seed,
                training: config.training.seed,
                data: config.data.seed,
            },
        });
        configs.push(config);
    }
    let mut keys: Vec<String> = grid.iter().map(|a| a.key.clone()).collect();
    keys.extend(ranges.iter().map(|r| r.key.clone()));
    let manifest = Manifest {
        lcsim_version: env!("CARGO_PKG_VERSION").into(),
        workdir: absolute(Path::new("."))?,
        grid,
        random_samples: settings.random,
        random_seed: settings.seed,
        ranges,
        keys,
        runs,
    };
    let configs_dir = out.join("configs");
    std::fs::create_dir_all(&configs_dir).map_err(io_err(&configs_dir))?;
    write_atomic(&out.join("base.toml"), base_text.as_bytes())?;
    for (run, config) in manifest.runs.iter().zip(&configs) {
        write_atomic(
            &configs_dir.join(format!("{}.toml", run.id)),
            config.to_toml().as_bytes(),
        )?;
    }
    let text = serde_json::to_string_pretty(&manifest).expect("the manifest serialises");
    write_atomic(&out.join(MANIFEST), text.as_bytes())?;
    Ok(Sweep { dir: out, manifest })
}

// ---------------------------------------------------------------------------------------
// Opening and checking a sweep folder
// ---------------------------------------------------------------------------------------

/// Flattens a TOML table into dotted keys -> value text.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => {
                out.insert(key, value_text(v));
            }
        }
    }
}

fn flat(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten(
        "",
        &toml::Table::try_from(config).expect("a config serialises"),
        &mut out,
    );
    out
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
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
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
        Config::load(Some(&base_path), &[])?;
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
            let actual = flat(&Config::load(Some(&path), &[])?);
            let wanted = flat(&Config::load(
                Some(&base_path),
                &assignments(&run.overrides, &self.runs_dir(), &run.id),
            )?);
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
fn read_summary(dir: &Path) -> Option<serde_json::Value> {
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

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

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
    let _ = std::fs::remove_file(dir.join("error.txt"));
    let runs_dir = sweep.runs_dir();
    let mut args: Vec<String> = vec!["train".into(), "--quiet".into()];
    if dir.join("config.toml").is_file() {
        args.extend(["--resume".into(), dir.display().to_string()]);
    } else {
        // A folder without config.toml holds nothing to resume (an earlier failure).
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        }
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
    std::fs::create_dir_all(logs).map_err(io_err(logs))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
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
    .map_err(io_err(&log_path))?;
    let started = std::time::Instant::now();
    let mut child = Command::new(exe)
        .args(&args)
        .current_dir(sweep.workdir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err(&log_path))?)
        .stderr(log.try_clone().map_err(io_err(&log_path))?)
        .spawn()
        .map_err(io_err(exe))?;
    let mut stop_seen: Option<std::time::Instant> = None;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err(exe))? {
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
        .map_err(io_err(&log_path))?;
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
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
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

// ---------------------------------------------------------------------------------------
// Slurm
// ---------------------------------------------------------------------------------------

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
    std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
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
            .map_err(io_err(&path))?;
        writeln!(f, "{id}").map_err(io_err(&path))?;
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

// ---------------------------------------------------------------------------------------
// Collect
// ---------------------------------------------------------------------------------------

/// The final numbers of one run (NaN when absent).
#[derive(Clone, Debug)]
pub struct RunResult {
    pub run: RunEntry,
    pub status: RunStatus,
    pub epochs: usize,
    pub values: BTreeMap<&'static str, f64>,
}

/// Result columns of results.csv, after the run id, status and swept keys.
pub const RESULT_COLUMNS: [&str; 12] = [
    "final_test_accuracy",
    "final_test_loss",
    "final_train_accuracy",
    "final_train_loss",
    "final_mean_h",
    "final_fraction_unconverged",
    "mean_fraction_unconverged",
    "fraction_converged",
    "mean_fraction_free_unconverged",
    "mean_steps",
    "max_steps",
    "total_wall_time_s",
];

/// Reads every run's summary.json and metrics.csv.
pub fn collect(sweep: &Sweep) -> Vec<RunResult> {
    sweep
        .manifest
        .runs
        .iter()
        .map(|run| {
            let status = sweep.status(run);
            let dir = sweep.run_dir(run);
            let rows: Vec<EpochMetrics> = read_csv(&dir.join("metrics.csv")).unwrap_or_default();
            let summary = read_summary(&dir);
            let mut values: BTreeMap<&'static str, f64> =
                RESULT_COLUMNS.iter().map(|c| (*c, f64::NAN)).collect();
            let last = rows.last();
            let mean = |f: fn(&EpochMetrics) -> f64| {
                if rows.is_empty() {
                    f64::NAN
                } else {
                    rows.iter().map(f).sum::<f64>() / rows.len() as f64
                }
            };
            let from_summary = |k: &str| {
                summary
                    .as_ref()
                    .and_then(|s| s.get(k))
                    .and_then(|v| v.as_f64())
            };
            let mut put = |k: &'static str, v: f64| {
                values.insert(k, v);
            };
            let l = |f: fn(&EpochMetrics) -> f64| last.map_or(f64::NAN, f);
            put(
                "final_test_accuracy",
                from_summary("final_test_accuracy").unwrap_or(l(|m| m.test_accuracy)),
            );
            put(
                "final_test_loss",
                from_summary("final_test_loss").unwrap_or(l(|m| m.test_loss)),
            );
            put(
                "final_mean_h",
                from_summary("final_mean_h").unwrap_or(l(|m| m.mean_h)),
            );
            put("final_train_accuracy", l(|m| m.train_accuracy));
            put("final_train_loss", l(|m| m.train_loss));
            put("final_fraction_unconverged", l(|m| m.fraction_unconverged));
            let unconverged = mean(|m| m.fraction_unconverged);
            put("mean_fraction_unconverged", unconverged);
            put("fraction_converged", 1.0 - unconverged);
            put(
                "mean_fraction_free_unconverged",
                mean(|m| m.fraction_free_unconverged),
            );
            put("mean_steps", mean(|m| m.mean_steps));
            put(
                "max_steps",
                rows.iter().map(|m| m.max_steps).fold(f64::NAN, f64::max),
            );
            put(
                "total_wall_time_s",
                from_summary("total_wall_time_s")
                    .unwrap_or_else(|| rows.iter().map(|m| m.wall_time_s).sum()),
            );
            RunResult {
                run: run.clone(),
                status,
                epochs: rows.len(),
                values,
            }
        })
        .collect()
}

/// A CSV cell: quoted when it holds a comma, a quote or a newline.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The text of results.csv: run_id, index, status, the swept keys, epochs, the
/// [`RESULT_COLUMNS`] and the error of failed runs. Unfinished and missing runs are rows too.
pub fn results_csv(sweep: &Sweep, results: &[RunResult]) -> String {
    let mut header = vec!["run_id".to_string(), "index".into(), "status".into()];
    header.extend(sweep.manifest.keys.iter().cloned());
    header.push("epochs".into());
    header.extend(RESULT_COLUMNS.iter().map(|c| c.to_string()));
    header.push("error".into());
    let mut out = header
        .iter()
        .map(|h| csv_cell(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in results {
        let mut cells = vec![
            r.run.id.clone(),
            r.run.index.to_string(),
            r.status.name().into(),
        ];
        for k in &sweep.manifest.keys {
            cells.push(display_value(&r.run.overrides[k]));
        }
        cells.push(r.epochs.to_string());
        for c in RESULT_COLUMNS {
            let v = r.values[c];
            cells.push(if v.is_finite() {
                format!("{v}")
            } else {
                String::new()
            });
        }
        cells.push(match &r.status {
            RunStatus::Failed(reason) => reason.clone(),
            _ => String::new(),
        });
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

/// A swept value as shown in tables and figures: strings without quotes, a list of one
/// value as that value (`[64]` -> `64`).
pub fn display_value(text: &str) -> String {
    let t = text.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .filter(|r| !r.contains(','))
        .unwrap_or(t);
    inner.trim().trim_matches('"').to_string()
}

/// A swept value as a number: `0.1`, `64`, or a list of one number `[64]`.
pub fn numeric_value(text: &str) -> Option<f64> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An axis label for a config key: its symbol and the key, e.g. "α (controller.alpha)".
pub fn key_label(key: &str) -> String {
    let symbol = match key {
        "controller.alpha" => "leak α",
        "controller.k_i" => "integral gain kᵢ",
        "controller.k_p" => "proportional gain kₚ",
        "dynamics.tau_e" => "τₑ / τᵥ",
        "dynamics.tau_u" => "τᵤ / τᵥ",
        "dynamics.tau_v" => "τᵥ",
        "model.hidden" => "hidden units",
        "training.learning_rate" => "learning rate",
        _ => return key.to_string(),
    };
    format!("{symbol} ({key})")
}

/// The symbol of a config key in legends ("α"), or its last part ("batch_size").
pub fn key_symbol(key: &str) -> String {
    match key {
        "controller.alpha" => "α".into(),
        "controller.k_i" => "kᵢ".into(),
        "controller.k_p" => "kₚ".into(),
        "dynamics.tau_e" => "τₑ".into(),
        "dynamics.tau_u" => "τᵤ".into(),
        "dynamics.tau_v" => "τᵥ".into(),
        _ => key.rsplit('.').next().unwrap_or(key).to_string(),
    }
}

/// A label for a result column.
pub fn metric_label(metric: &str) -> String {
    match metric {
        "final_test_accuracy" => "test accuracy (last epoch)".into(),
        "final_test_loss" => "test loss (last epoch)".into(),
        "final_train_accuracy" => "training accuracy (last epoch)".into(),
        "final_train_loss" => "training loss (last epoch)".into(),
        "final_mean_h" => "mean H = ½|ψ*|² (last epoch)".into(),
        "fraction_converged" => "fraction of controlled solves converged".into(),
        "mean_fraction_unconverged" => "fraction of controlled solves unconverged".into(),
        "final_fraction_unconverged" => "fraction unconverged (last epoch)".into(),
        "mean_steps" => "mean solver steps per controlled solve".into(),
        other => other.to_string(),
    }
}

/// Keys whose values vary among the runs, in manifest order.
fn varied_keys(sweep: &Sweep) -> Vec<String> {
    sweep
        .manifest
        .keys
        .iter()
        .filter(|k| {
            let first = &sweep.manifest.runs[0].overrides[*k];
            sweep
                .manifest
                .runs
                .iter()
                .any(|r| &r.overrides[*k] != first)
        })
        .cloned()
        .collect()
}

/// Distinct values of a key, numerically sorted when all are numbers.
fn distinct_values(sweep: &Sweep, key: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for r in &sweep.manifest.runs {
        let v = &r.overrides[key];
        if !values.contains(v) {
            values.push(v.clone());
        }
    }
    if values.iter().all(|v| numeric_value(v).is_some()) {
        values.sort_by(|a, b| {
            numeric_value(a)
                .unwrap()
                .total_cmp(&numeric_value(b).unwrap())
        });
    }
    values
}

/// Whether numeric axis values read best on a log axis: all positive and spanning at least
/// two decades, or at least three values in a constant ratio (1, 2, 4, 8).
pub fn log_axis(values: &[f64]) -> bool {
    if values.is_empty() || values.iter().any(|&v| v.is_nan() || v <= 0.0) {
        return false;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi / lo >= 100.0 {
        return true;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len() >= 3 && {
        let r = v[1] / v[0];
        r > 1.5 && v.windows(2).all(|w| ((w[1] / w[0]) / r - 1.0).abs() < 1e-6)
    }
}

/// What `collect` draws.
#[derive(Clone, Debug)]
pub struct FigureSettings {
    /// Result columns to draw (see [`RESULT_COLUMNS`]).
    pub metrics: Vec<String>,
    /// x key of the figures (default: the first varied key).
    pub x: Option<String>,
    /// y key of the heatmaps / line colour (default: the second varied key).
    pub y: Option<String>,
    pub format: crate::plot::FigureFormat,
    /// Start of the figure titles (default: the sweep folder's name).
    pub title: Option<String>,
}

impl Default for FigureSettings {
    fn default() -> Self {
        FigureSettings {
            metrics: vec!["final_test_accuracy".into(), "fraction_converged".into()],
            x: None,
            y: None,
            format: crate::plot::FigureFormat::Png,
            title: None,
        }
    }
}

/// Checks the figure settings against the sweep before anything is written.
pub fn check_figure_settings(sweep: &Sweep, s: &FigureSettings) -> Result<()> {
    for m in &s.metrics {
        if !RESULT_COLUMNS.contains(&m.as_str()) {
            return Err(invalid(
                "--metric",
                m,
                &format!("one of {RESULT_COLUMNS:?}"),
            ));
        }
    }
    let varied = varied_keys(sweep);
    for (flag, key) in [("--x", &s.x), ("--y", &s.y)] {
        if let Some(k) = key {
            if !varied.contains(k) {
                return Err(invalid(
                    flag,
                    k,
                    &format!("a swept key with more than one value, one of {varied:?}"),
                ));
            }
        }
    }
    if s.x.is_some() && s.x == s.y {
        return Err(invalid(
            "--y",
            s.y.as_deref().unwrap_or(""),
            "a key other than --x",
        ));
    }
    Ok(())
}

/// How a metric reads best: fractions on 0..1, positive values spanning a decade or more
/// (steps, H, times) on a log scale, the rest linearly.
fn y_scale(metric: &str, values: &[f64]) -> YScale {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if metric.contains("fraction") {
        YScale::Unit
    } else if !finite.is_empty() && lo > 0.0 && hi >= 10.0 * lo {
        YScale::Log
    } else {
        YScale::Linear
    }
}

/// Mean of the finite values.
fn mean_finite(values: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Draws the figures into DIR/figures and returns their paths: for each metric, the metric
/// against the x key (lines, one per value of the y key; a log x axis where the values
/// call for it) and, with two or more varied keys, a heatmap over (x, y). Only done runs
/// count; cells and points without any are left empty (n/a). Other varied keys are averaged
/// over (said in the title).
pub fn draw_figures(
    sweep: &Sweep,
    results: &[RunResult],
    s: &FigureSettings,
) -> Result<Vec<PathBuf>> {
    use crate::plot::{heatmap, parameter_lines, Heatmap, Series};
    check_figure_settings(sweep, s)?;
    let varied = varied_keys(sweep);
    let Some(x_key) = s.x.clone().or_else(|| varied.first().cloned()) else {
        return Ok(vec![]);
    };
    let y_key =
        s.y.clone()
            .or_else(|| varied.iter().find(|k| **k != x_key).cloned());
    let others: Vec<&String> = varied
        .iter()
        .filter(|k| **k != x_key && Some(*k) != y_key.as_ref())
        .collect();
    let dir = sweep.dir.join("figures");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let name = s.title.clone().unwrap_or_else(|| {
        sweep
            .dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    });
    let done: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .collect();
    let n_done = done.len();
    let title_for = |extra: &str| {
        let mut t = format!("{name}: {n_done} of {} runs done", results.len());
        if !others.is_empty() {
            let o: Vec<&str> = others.iter().map(|k| k.as_str()).collect();
            t.push_str(&format!(", mean over {}", o.join(", ")));
        }
        t.push_str(extra);
        t
    };
    let ext = s.format.extension();
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let xs = distinct_values(sweep, &x_key);
    let x_numeric: Option<Vec<f64>> = xs.iter().map(|v| numeric_value(v)).collect();
    let ys: Vec<Option<String>> = match &y_key {
        Some(k) => distinct_values(sweep, k).into_iter().map(Some).collect(),
        None => vec![None],
    };
    // Random samples: every run is its own point (no grid to average on), against each
    // numeric key (or only --x).
    let mut written = Vec::new();
    if !sweep.manifest.ranges.is_empty() {
        let keys: Vec<&String> = match &s.x {
            Some(k) => vec![k],
            None => varied.iter().collect(),
        };
        for metric in &s.metrics {
            for key in &keys {
                let pts: Vec<(f64, f64)> = done
                    .iter()
                    .filter_map(|r| {
                        Some((
                            numeric_value(&r.run.overrides[key.as_str()])?,
                            r.values[metric.as_str()],
                        ))
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let (px, py): (Vec<f64>, Vec<f64>) = pts.into_iter().unzip();
                let path = dir.join(format!("{metric}-vs-{}.{ext}", short(key)));
                let title = format!(
                    "{name}: {n_done} of {} runs done, one point per run",
                    results.len()
                );
                let scale = y_scale(metric, &py);
                parameter_lines(
                    &[(px.clone(), Series::new("runs", py))],
                    &key_label(key),
                    &metric_label(metric),
                    log_axis(&px),
                    scale,
                    false,
                    &title,
                    &path,
                    s.format,
                )?;
                written.push(path);
            }
        }
        return Ok(written);
    }
    for metric in &s.metrics {
        let cell = |x: &str, y: Option<&String>| {
            mean_finite(
                done.iter()
                    .filter(|r| r.run.overrides[&x_key] == x)
                    .filter(|r| match (y, &y_key) {
                        (Some(y), Some(k)) => &r.run.overrides[k] == y,
                        _ => true,
                    })
                    .map(|r| r.values[metric.as_str()]),
            )
        };
        let unit = metric.contains("fraction");
        if let Some(xv) = &x_numeric {
            let log_x = log_axis(xv);
            let series: Vec<(Vec<f64>, Series)> = ys
                .iter()
                .map(|y| {
                    let label = match (y, &y_key) {
                        (Some(y), Some(k)) => format!("{} = {}", key_symbol(k), display_value(y)),
                        _ => metric_label(metric),
                    };
                    let values = xs.iter().map(|x| cell(x, y.as_ref())).collect();
                    (xv.clone(), Series::new(label, values))
                })
                .collect();
            let path = dir.join(format!("{metric}-vs-{}.{ext}", short(&x_key)));
            let all: Vec<f64> = series.iter().flat_map(|(_, s)| s.values.clone()).collect();
            parameter_lines(
                &series,
                &key_label(&x_key),
                &metric_label(metric),
                log_x,
                y_scale(metric, &all),
                true,
                &title_for(""),
                &path,
                s.format,
            )?;
            written.push(path);
        }
        if let Some(yk) = &y_key {
            let values: Vec<Vec<f64>> = ys
                .iter()
                .map(|y| xs.iter().map(|x| cell(x, y.as_ref())).collect())
                .collect();
            // Why a cell is empty: its runs failed, or have not finished.
            let notes: Vec<Vec<String>> = ys
                .iter()
                .map(|y| {
                    xs.iter()
                        .map(|x| {
                            let at: Vec<&RunResult> = results
                                .iter()
                                .filter(|r| &r.run.overrides[&x_key] == x)
                                .filter(|r| y.as_ref().is_none_or(|y| &r.run.overrides[yk] == y))
                                .collect();
                            if at.iter().any(|r| r.status == RunStatus::Done) {
                                String::new()
                            } else if at.iter().any(|r| matches!(r.status, RunStatus::Failed(_))) {
                                "failed".into()
                            } else {
                                "not run".into()
                            }
                        })
                        .collect()
                })
                .collect();
            // Counts and magnitudes spanning a decade or more read best on a log scale.
            let finite: Vec<f64> = values
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let log = y_scale(metric, &finite) == YScale::Log;
            let h = Heatmap {
                title: title_for(""),
                x_label: key_label(&x_key),
                y_label: key_label(yk),
                x_ticks: xs.iter().map(|v| display_value(v)).collect(),
                y_ticks: ys
                    .iter()
                    .map(|v| display_value(v.as_deref().unwrap_or("")))
                    .collect(),
                values,
                notes,
                value_label: metric_label(metric),
                range: unit.then_some((0.0, 1.0)),
                log,
            };
            let path = dir.join(format!("{metric}-{}-{}.{ext}", short(&x_key), short(yk)));
            heatmap(&h, &path, s.format)?;
            written.push(path);
        }
    }
    Ok(written)
}
