//! The plan of a sweep: grid axes (`--grid key=v1,v2`), seeded random samples (`--range
//! key=lo:hi[:log]`), stable run ids, and the sweep folder written from them (base.toml, one
//! config per run, manifest.json last).

use super::folder::{absolute, Sweep, MANIFEST};
use super::keys::{check_sweepable, default_value, normalise_value, split_values};
use crate::config::{fingerprint, sha256_hex, Config};
use crate::error::{invalid, io_error, Result};
use crate::numerics::rng::Rng;
use crate::run::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

impl std::fmt::Display for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, t, d) = (self.model, self.training, self.data);
        write!(f, "model.seed = {m}, training.seed = {t}, data.seed = {d}")
    }
}

impl Seeds {
    /// The seeds of a config.
    pub fn of(config: &Config) -> Seeds {
        Seeds {
            model: config.model.seed,
            training: config.training.seed,
            data: config.data.seed,
        }
    }
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
    /// SHA-256 of the planned config without output.dir ([`planned_fingerprint`]); absent in
    /// manifests of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
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
    /// The base config as planned, key by key (to name what an edit of base.toml changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BTreeMap<String, String>>,
    /// SHA-256 of the run list ([`runs_fingerprint`]): a deleted, added or edited run shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_sha256: Option<String>,
}

/// SHA-256 of a run's config without output.dir (which moves with the sweep folder).
pub fn planned_fingerprint(config: &Config) -> String {
    let mut flat = config.flat();
    flat.remove("output.dir");
    fingerprint(&flat)
}

/// SHA-256 of the run list as JSON (index, id, overrides, seeds and config hash of each run).
pub fn runs_fingerprint(runs: &[RunEntry]) -> String {
    sha256_hex(
        serde_json::to_string(runs)
            .expect("the runs serialise")
            .as_bytes(),
    )
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

/// The `key=value` assignments of a run's overrides, plus where its run folder goes.
pub(super) fn assignments(
    overrides: &BTreeMap<String, String>,
    runs_dir: &Path,
    id: &str,
) -> Vec<String> {
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
            seeds: Seeds::of(&config),
            config_sha256: Some(planned_fingerprint(&config)),
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
        runs_sha256: Some(runs_fingerprint(&runs)),
        runs,
        base: Some(base.flat()),
    };
    let configs_dir = out.join("configs");
    std::fs::create_dir_all(&configs_dir).map_err(io_error(&configs_dir))?;
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
