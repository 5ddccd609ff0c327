//! results.csv stays byte for byte what it was: header, column order, number formatting,
//! empty cells and quoting, against a fixture written by the original hand-written writer.

use lcsim::sweep::{
    results_csv, Manifest, RunEntry, RunResult, RunStatus, Seeds, Sweep, RESULT_COLUMNS,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

const FIXTURE: &str = "tests/data/sweep_results.csv";

fn entry(index: usize, overrides: &[(&str, &str)]) -> RunEntry {
    let overrides: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RunEntry {
        index,
        id: lcsim::sweep::run_id(index, 5, &overrides),
        overrides,
        seeds: Seeds {
            model: 1,
            training: 2,
            data: 3,
        },
        config_sha256: None,
    }
}

/// A sweep over four keys (a float, a list, a string with a quote, an integer) and runs in
/// every status, with values that exercise the number formatting.
fn sweep_and_results() -> (Sweep, Vec<RunResult>) {
    let keys = [
        "controller.alpha",
        "model.hidden",
        "data.source",
        "training.batch_size",
    ];
    let runs = vec![
        entry(
            0,
            &[
                ("controller.alpha", "0.1"),
                ("model.hidden", "[64]"),
                ("data.source", "\"xor\""),
                ("training.batch_size", "16"),
            ],
        ),
        entry(
            1,
            &[
                ("controller.alpha", "1e-7"),
                ("model.hidden", "[64, 32]"),
                ("data.source", "\"a\\\"b\""),
                ("training.batch_size", "32"),
            ],
        ),
        entry(
            2,
            &[
                ("controller.alpha", "1000.0"),
                ("model.hidden", "[]"),
                ("data.source", "\"mnist\""),
                ("training.batch_size", "1"),
            ],
        ),
        entry(
            3,
            &[
                ("controller.alpha", "-0.5"),
                ("model.hidden", "[8]"),
                ("data.source", "\"with space\""),
                ("training.batch_size", "2"),
            ],
        ),
        entry(
            4,
            &[
                ("controller.alpha", "2.5"),
                ("model.hidden", "[1,2]"),
                ("data.source", "\"digits\""),
                ("training.batch_size", "4"),
            ],
        ),
    ];
    let manifest = Manifest {
        lcsim_version: "0.1.0".into(),
        workdir: PathBuf::from("/nowhere"),
        grid: vec![],
        random_samples: 0,
        random_seed: 0,
        ranges: vec![],
        keys: keys.iter().map(|k| k.to_string()).collect(),
        runs: runs.clone(),
        base: None,
        runs_sha256: None,
    };
    let numbers: [f64; 12] = [
        0.9375,
        1.0,
        1e-7,
        1e21,
        f64::NAN,
        -0.0,
        f64::INFINITY,
        0.1 + 0.2,
        123456.789,
        f64::MIN_POSITIVE,
        -1.5e-300,
        42.0,
    ];
    let statuses = [
        RunStatus::Done,
        RunStatus::Failed("exit code 1: error: bad value \"x\", try y".into()),
        RunStatus::Unfinished,
        RunStatus::Missing,
        RunStatus::Failed("two\nlines".into()),
    ];
    let results = runs
        .into_iter()
        .zip(statuses)
        .enumerate()
        .map(|(i, (run, status))| {
            let values = RESULT_COLUMNS
                .iter()
                .enumerate()
                .map(|(c, name)| (*name, numbers[(c + i) % numbers.len()]))
                .collect();
            RunResult {
                run,
                status,
                epochs: 7 * i,
                values,
            }
        })
        .collect();
    let sweep = Sweep {
        dir: PathBuf::from("/nowhere/sweep"),
        manifest,
    };
    (sweep, results)
}

#[test]
fn results_csv_bytes_match_the_fixture() {
    let (sweep, results) = sweep_and_results();
    let text = results_csv(&sweep, &results);
    let fixture = std::fs::read(FIXTURE).expect("the fixture is there");
    assert!(
        text.as_bytes() == fixture.as_slice(),
        "results.csv changed:\n--- now ---\n{text}\n--- fixture ---\n{}",
        String::from_utf8_lossy(&fixture)
    );
}

#[test]
fn results_csv_of_no_keys_and_no_runs_is_the_header() {
    let (mut sweep, _) = sweep_and_results();
    sweep.manifest.keys.clear();
    let text = results_csv(&sweep, &[]);
    let mut header = vec!["run_id", "index", "status", "epochs"];
    header.extend(RESULT_COLUMNS);
    header.push("error");
    assert_eq!(text, format!("{}\n", header.join(",")));
}
