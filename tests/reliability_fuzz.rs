//! Property tests of issue 17, item 7: hostile config values, IDX files and .npz files never
//! panic; a refusal is a one-line error; nothing non-finite is accepted or saved, and a
//! failed training run never leaves a folder that looks finished. Case counts are kept small
//! (the suite's time budget); proptest's shrinking names the smallest failing input.

mod common;

use common::{idx_bytes, lcsim_in, stderr, TINY};
use lcsim::config::{Config, KEY_DOCS};
use lcsim::io::interop::{load_params, save_params};
use lcsim::io::npz::read_npz;
use lcsim::numerics::activation::Activation;
use lcsim::system::rate::{RateNetwork, Topology};
use lcsim::train::load_split;
use proptest::prelude::*;
use std::path::Path;

/// Values a hostile user types: numbers at and beyond every limit, wrong types, junk.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("1e-320".to_string()),
        Just("18446744073709551616".to_string()),
        Just("[]".to_string()),
        Just("[0]".to_string()),
        Just("[1000000000]".to_string()),
        Just("\"\"".to_string()),
        Just("\"../x\"".to_string()),
        Just("{a = 1}".to_string()),
        Just("true".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:e}")),
        "[a-z\\[\\]\"=,. 0-9]{0,12}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(
        KEY_DOCS
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>(),
    )
}

/// A refusal is one line that names the key it refuses (or the flag it came through).
fn one_line_naming(err: &str, key: &str) -> std::result::Result<(), TestCaseError> {
    prop_assert!(!err.contains('\n'), "{key}: multi-line error {err}");
    prop_assert!(err.len() < 2000, "{key}: {} bytes", err.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Any value of any documented key: refused in one line, or a config that validates
    /// and whose memory check answers (without allocating).
    #[test]
    fn config_values_are_accepted_valid_or_refused_in_one_line(
        keys in proptest::collection::vec((key(), hostile_value()), 1..3)
    ) {
        let sets: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
        match Config::load(None, &sets) {
            Err(e) => one_line_naming(&e.to_string(), &sets.join(" "))?,
            Ok(c) => {
                prop_assert!(c.validate().is_ok());
                if let Err(e) = c.check_resources() {
                    one_line_naming(&e.to_string(), &sets.join(" "))?;
                }
            }
        }
    }
}

/// A valid MNIST folder's files (train 6 images, test 3), as bytes by file name.
fn mnist_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (prefix, n) in [("train", 6u32), ("t10k", 3)] {
        let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i * 37) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| i as u8).collect();
        files.push((
            format!("{prefix}-images-idx3-ubyte"),
            idx_bytes(0x0803, &[n, 28, 28], &pixels),
        ));
        files.push((
            format!("{prefix}-labels-idx1-ubyte"),
            idx_bytes(0x0801, &[n], &labels),
        ));
    }
    files
}

/// One corruption of a file: bytes overwritten at positions (mostly in the header), or the
/// file cut short, or bytes appended.
#[derive(Clone, Debug)]
enum Corruption {
    Overwrite(Vec<(usize, u8)>),
    Truncate(usize),
    Append(Vec<u8>),
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        3 => proptest::collection::vec((0usize..40, any::<u8>()), 1..6).prop_map(Corruption::Overwrite),
        1 => proptest::collection::vec((0usize..100_000, any::<u8>()), 1..6).prop_map(Corruption::Overwrite),
        1 => (0usize..4000).prop_map(Corruption::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..50).prop_map(Corruption::Append),
    ]
}

fn corrupt(bytes: &mut Vec<u8>, c: &Corruption) {
    match c {
        Corruption::Overwrite(at) => {
            for &(i, b) in at {
                if !bytes.is_empty() {
                    let n = bytes.len();
                    bytes[i % n] = b;
                }
            }
        }
        Corruption::Truncate(n) => bytes.truncate(*n),
        Corruption::Append(extra) => bytes.extend_from_slice(extra),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Corrupted IDX files: a one-line error, or data that are finite with labels below
    /// the class count and both splits non-empty.
    #[test]
    fn corrupted_idx_files_are_refused_or_loaded_finite(file in 0usize..4, c in corruption()) {
        let dir = tempfile::tempdir().unwrap();
        for (i, (name, mut bytes)) in mnist_files().into_iter().enumerate() {
            if i == file {
                corrupt(&mut bytes, &c);
            }
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let config = Config::load(
            None,
            &[
                "data.source=\"mnist\"".into(),
                format!("data.mnist_dir={}", toml::Value::String(dir.path().display().to_string())),
            ],
        )
        .unwrap();
        match load_split(&config) {
            Err(e) => one_line_naming(&e.to_string(), "idx")?,
            Ok(split) => {
                for d in [&split.train, &split.test] {
                    prop_assert!(!d.is_empty());
                    prop_assert!(d.inputs.iter().all(|v| v.is_finite()));
                    prop_assert!(d.labels.iter().all(|&l| l < d.n_classes));
                }
            }
        }
    }

    /// Corrupted parameter files: a one-line error, or a network whose every parameter is
    /// finite.
    #[test]
    fn corrupted_npz_files_are_refused_or_loaded_finite(c in corruption(), body in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("P.npz");
        let net = RateNetwork::new(3, Topology::Recurrent { hidden: 4 }, 2, Activation::Tanh, 1).unwrap();
        save_params(&path, &net).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let c = match (c, body) {
            // Aim some overwrites at the arrays' data rather than the zip headers.
            (Corruption::Overwrite(at), true) => Corruption::Overwrite(
                at.into_iter().map(|(i, b)| (bytes.len() / 2 + i % (bytes.len() / 2), b)).collect(),
            ),
            (c, _) => c,
        };
        corrupt(&mut bytes, &c);
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = read_npz(&path) {
            one_line_naming(&e.to_string(), "npz")?;
        }
        match load_params(&path, false, Activation::Tanh) {
            Err(e) => one_line_naming(&e.to_string(), "npz")?,
            Ok(net) => {
                use lcsim::system::EquilibriumSystem;
                for (name, m) in net.params().iter() {
                    prop_assert!(m.iter().all(|v| v.is_finite()), "{name}");
                }
            }
        }
    }
}

/// Every f64 array of every .npz under `dir` is finite.
fn saved_arrays_finite(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries.flatten().all(|e| {
        let p = e.path();
        if p.is_dir() {
            return saved_arrays_finite(&p);
        }
        if p.extension().is_none_or(|x| x != "npz") {
            return true;
        }
        read_npz(&p).is_ok_and(|arrays| {
            arrays
                .values()
                .all(|a| a.data.iter().all(|v| v.is_finite()))
        })
    })
}

/// Keys that steer training towards its extremes, for the command-line property.
const TRAINING_KEYS: [&str; 10] = [
    "training.learning_rate",
    "training.weight_decay",
    "training.optimizer",
    "training.momentum",
    "controller.alpha",
    "solver.divergence_bound",
    "solver.method",
    "solver.max_iterations",
    "method.on_unconverged",
    "training.on_non_finite",
];

fn training_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e300".to_string()),
        Just("1e-300".to_string()),
        Just("1e200".to_string()),
        Just("0".to_string()),
        Just("-3".to_string()),
        Just("1".to_string()),
        Just("\"sgd\"".to_string()),
        Just("\"euler\"".to_string()),
        Just("\"stop\"".to_string()),
        Just("\"skip\"".to_string()),
        Just("0.9".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// `lcsim train` on hostile values: exit 0 with a finished run, or non-zero with a
    /// one-line error and no folder that looks finished; no saved array is non-finite.
    #[test]
    fn hostile_training_runs_fail_cleanly_and_save_nothing_non_finite(
        sets in proptest::collection::vec(
            (proptest::sample::select(TRAINING_KEYS.to_vec()), training_value()), 1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec!["train".into(), "--quiet".into()];
        args.extend(TINY.iter().map(|s| s.to_string()));
        args.extend(["--set".into(), "training.epochs=2".into()]);
        args.extend(["--set".into(), "solver.max_steps=2000".into()]);
        for (k, v) in &sets {
            args.extend(["--set".into(), format!("{k}={v}")]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = lcsim_in(dir.path(), &refs);
        let err = stderr(&o);
        prop_assert!(!err.contains("panicked"), "{sets:?}: {err}");
        let runs = dir.path().join("runs");
        if o.status.success() {
            prop_assert!(std::fs::read_dir(&runs).unwrap().flatten().all(|r| r.path().join("summary.json").is_file()));
        } else {
            let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
            prop_assert_eq!(errors.len(), 1, "{:?}: {}", sets, err);
            prop_assert!(errors[0].starts_with("error: "), "{:?}: {}", sets, err);
            if let Ok(entries) = std::fs::read_dir(&runs) {
                for r in entries.flatten() {
                    prop_assert!(!r.path().join("summary.json").exists(), "{:?} looks finished", sets);
                }
            }
        }
        prop_assert!(saved_arrays_finite(&runs), "{sets:?}: a non-finite array was saved");
    }
}
