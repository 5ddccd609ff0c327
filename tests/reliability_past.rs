//! Reliability regressions of issue 17, items 3-6: resumes that verify the past, one runner
//! per run and sweep folder, resource limits of the studies, and messages that name the real
//! key. Each test reproduces a defect measured from the command line and fails without its fix.

mod common;

use common::{idx_bytes, lcsim_in, stderr, TINY};
use lcsim::config::Config;
use lcsim::error::LcsimError;
use lcsim::io::lock::lock_holder;
use lcsim::io::npz::read_npz;
use lcsim::run::RunDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn train(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--quiet"];
    args.extend(TINY);
    args.extend(extra);
    lcsim_in(dir, &args)
}

/// A one-line error on stderr, a non-zero exit, and the error contains every `says`.
fn refused(o: &std::process::Output, says: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "must fail: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for s in says {
        assert!(err.contains(s), "{s:?} not in: {err}");
    }
    err
}

fn run_json(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap()
}

/// An edited alpha (and epochs) in a stopped run's config.toml was accepted: the folder then
/// said alpha 0.5 for epochs trained at 1. Now refused, naming both keys with their old
/// values; a key that may not change is refused with --set too; fewer epochs than done too.
#[test]
fn resume_refuses_an_edited_config_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        dir.path(),
        &["--set", "training.epochs=2", "--set", "output.name=\"r\""],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.path().join("runs/r");
    let record = run_json(&run);
    assert_eq!(record["config"]["controller.alpha"], "1.0");
    assert_eq!(record["config_sha256"].as_str().unwrap().len(), 64);
    assert!(record["data"]["sha256"].as_str().unwrap().len() == 64);
    let path = run.join("config.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original
        .replace("alpha = 1.0", "alpha = 0.5")
        .replace("epochs = 2", "epochs = 5");
    assert_ne!(edited, original);
    std::fs::write(&path, &edited).unwrap();
    let r = run.to_str().unwrap();
    refused(
        &lcsim_in(dir.path(), &["train", "--resume", r]),
        &[
            "controller.alpha = 0.5 (was 1.0)",
            "training.epochs = 5 (was 2)",
            "--set training.epochs=5",
        ],
    );
    // The epochs alone may change, but only explicitly.
    std::fs::write(&path, original.replace("epochs = 2", "epochs = 5")).unwrap();
    refused(
        &lcsim_in(dir.path(), &["train", "--resume", r]),
        &["training.epochs = 5 (was 2)"],
    );
    std::fs::write(&path, &original).unwrap();
    refused(
        &lcsim_in(
            dir.path(),
            &["train", "--resume", r, "--set", "controller.alpha=0.5"],
        ),
        &["--set", "controller.alpha", "training.epochs"],
    );
    refused(
        &lcsim_in(
            dir.path(),
            &["train", "--resume", r, "--set", "training.epochs=1"],
        ),
        &["training.epochs", "at least the 2 epochs"],
    );
    // Nothing of the run changed.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    assert!(run.join("summary.json").is_file());
    assert_eq!(run_json(&run), record);
}

/// `--resume RUN --set training.epochs=N` continues a finished run for more epochs and
/// records the change; with a constant learning rate the result equals a run trained for
/// N epochs from the start, bit for bit.
#[test]
fn more_epochs_on_resume_are_recorded_and_match_a_longer_run() {
    let dir = tempfile::tempdir().unwrap();
    let constant = ["--set", "training.schedule=\"constant\""];
    let mut short = vec!["--set", "training.epochs=2", "--set", "output.name=\"a\""];
    short.extend(constant);
    assert!(train(dir.path(), &short).status.success());
    let mut long = vec!["--set", "training.epochs=3", "--set", "output.name=\"b\""];
    long.extend(constant);
    assert!(train(dir.path(), &long).status.success());
    let a = dir.path().join("runs/a");
    let o = lcsim_in(
        dir.path(),
        &[
            "train",
            "--resume",
            a.to_str().unwrap(),
            "--set",
            "training.epochs=3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("epochs 3..3 (resumed after epoch 2)"), "{out}");
    let changes = &run_json(&a)["changes"];
    assert_eq!(changes[0]["key"], "training.epochs");
    assert_eq!(changes[0]["from"], "2");
    assert_eq!(changes[0]["to"], "3");
    assert_eq!(changes[0]["after_epoch"], 2);
    let params =
        |run: &str| read_npz(&dir.path().join("runs").join(run).join("params.npz")).unwrap();
    let (pa, pb) = (params("a"), params("b"));
    assert!(!pa.is_empty());
    for (name, array) in &pb {
        assert_eq!(pa[name].data, array.data, "{name}");
    }
    // Resumed again unchanged: finished, nothing to do.
    let o = lcsim_in(dir.path(), &["train", "--resume", a.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("finished"));
}

/// A run written before the unconverged-reason columns (metrics.csv of 22 columns) resumes:
/// its epochs keep their values and read as "not recorded" (NaN cells), the epochs trained
/// after the resume carry the counts, and the weights and new rows equal those of a run
/// trained without a break.
#[test]
fn resume_of_a_run_with_an_old_metrics_table() {
    let dir = tempfile::tempdir().unwrap();
    let common = [
        "--set",
        "training.schedule=\"constant\"",
        "--set",
        "solver.max_iterations=2",
        "--set",
        "solver.fallback=\"none\"",
    ];
    let run = |name: &str, epochs: &str| {
        let (name, epochs) = (
            format!("output.name=\"{name}\""),
            format!("training.epochs={epochs}"),
        );
        let mut args = vec!["--set", &name, "--set", &epochs];
        args.extend(common);
        let o = train(dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run("old", "2");
    run("whole", "3");
    let old = dir.path().join("runs/old");
    let table = old.join("metrics.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    let cut: Vec<String> = text
        .lines()
        .map(|l| l.split(',').take(22).collect::<Vec<_>>().join(","))
        .collect();
    std::fs::write(&table, cut.join("\n") + "\n").unwrap();
    let o = lcsim_in(
        dir.path(),
        &[
            "train",
            "--resume",
            old.to_str().unwrap(),
            "--set",
            "training.epochs=3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |run: &Path| lcsim::io::metrics::read_csv(&run.join("metrics.csv")).unwrap();
    let (resumed, whole) = (read(&old), read(&dir.path().join("runs/whole")));
    assert_eq!(resumed.len(), 3);
    let header = std::fs::read_to_string(&table).unwrap();
    let header = header.lines().next().unwrap();
    assert_eq!(header, lcsim::io::metrics::COLUMNS.join(","));
    let same = |a: &lcsim::io::metrics::EpochMetrics, b: &lcsim::io::metrics::EpochMetrics| {
        let strip = |m: &lcsim::io::metrics::EpochMetrics| {
            let m = lcsim::io::metrics::EpochMetrics {
                wall_time_s: 0.0,
                unconverged: None,
                ..m.clone()
            };
            format!("{m:?}")
        };
        assert_eq!(strip(a), strip(b));
    };
    for (r, w) in resumed.iter().zip(&whole) {
        same(r, w);
    }
    assert_eq!(resumed[0].unconverged, None);
    assert_eq!(resumed[1].unconverged, None);
    let counts = resumed[2].unconverged.expect("epoch 3 carries the reasons");
    assert_eq!(Some(counts), whole[2].unconverged);
    assert!(counts.max_iterations > 0, "{counts:?}");
    let params =
        |run: &str| read_npz(&dir.path().join("runs").join(run).join("params.npz")).unwrap();
    let (a, b) = (params("old"), params("whole"));
    for (name, array) in &b {
        assert_eq!(a[name].data, array.data, "{name}");
    }
}

fn mnist_dir(dir: &Path, pixel: u8) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", 12u32), ("t10k", 4)] {
        let pixels: Vec<u8> = (0..n * 28 * 28)
            .map(|i| pixel.wrapping_add(i as u8))
            .collect();
        let images = idx_bytes(0x0803, &[n, 28, 28], &pixels);
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let labels = idx_bytes(0x0801, &[n], &labels);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

/// Data files replaced under a run (same folder, same config) are refused on resume.
#[test]
fn resume_refuses_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    mnist_dir(&data, 0);
    let args = [
        "train",
        "--quiet",
        "--set",
        "data.source=\"mnist\"",
        "--set",
        "data.mnist_dir=\"mnist\"",
        "--set",
        "model.hidden=[3]",
        "--set",
        "training.epochs=1",
        "--set",
        "output.figures=false",
        "--set",
        "output.name=\"m\"",
    ];
    let o = lcsim_in(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    mnist_dir(&data, 9);
    let o = lcsim_in(
        dir.path(),
        &["train", "--resume", "runs/m", "--set", "training.epochs=2"],
    );
    refused(
        &o,
        &[
            "runs/m",
            "data are not those it was trained on",
            "mnist: 12 train",
        ],
    );
    assert!(run_json(&dir.path().join("runs/m"))["changes"].is_null());
}

/// Data are identified by their values (`DataIdentity`: SHA-256 of the loaded splits), not by
/// their path or file bytes: the same MNIST files moved to another folder (another machine)
/// resume with `--set data.mnist_dir=NEW`, recorded in run.json, and match a run that never
/// moved bit for bit. Data that really changed resume only with `--accept-data-change`, which
/// run.json records (from and to identities, after which epoch).
#[test]
fn moved_data_resume_and_changed_data_need_an_explicit_override() {
    let dir = tempfile::tempdir().unwrap();
    mnist_dir(&dir.path().join("mnist"), 0);
    let train = |name: &str, epochs: &str| {
        let epochs = format!("training.epochs={epochs}");
        let name = format!("output.name=\"{name}\"");
        let mut args = vec!["train", "--quiet"];
        for set in [
            "data.source=\"mnist\"",
            "data.mnist_dir=\"mnist\"",
            "model.hidden=[3]",
            "training.schedule=\"constant\"",
            "output.figures=false",
            &epochs,
            &name,
        ] {
            args.extend(["--set", set]);
        }
        let o = lcsim_in(dir.path(), &args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    train("moved", "1");
    train("straight", "2");
    // The data move: the recorded folder is gone, the same files are elsewhere.
    std::fs::rename(dir.path().join("mnist"), dir.path().join("elsewhere")).unwrap();
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--resume", "runs/moved"];
        args.extend(extra);
        lcsim_in(dir.path(), &args)
    };
    let o = resume(&["--set", "training.epochs=2"]);
    refused(&o, &["data.mnist_dir", "mnist", "--set data.mnist_dir="]);
    let o = resume(&[
        "--set",
        "training.epochs=2",
        "--set",
        "data.mnist_dir=\"elsewhere\"",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.path().join("runs/moved");
    let record = run_json(&run);
    let keys: Vec<&str> = record["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["data.mnist_dir", "training.epochs"]);
    assert_eq!(record["changes"][0]["from"], "\"mnist\"");
    assert_eq!(record["changes"][0]["to"], "\"elsewhere\"");
    assert!(record["data_changes"].is_null());
    let params =
        |run: &str| read_npz(&dir.path().join("runs").join(run).join("params.npz")).unwrap();
    let (moved, straight) = (params("moved"), params("straight"));
    for (name, array) in &straight {
        assert_eq!(moved[name].data, array.data, "{name}");
    }

    // Other values in the files: refused, naming the override; accepted with it, and recorded.
    mnist_dir(&dir.path().join("elsewhere"), 9);
    let o = resume(&["--set", "training.epochs=3"]);
    refused(
        &o,
        &[
            "data are not those it was trained on",
            "--accept-data-change",
        ],
    );
    assert_eq!(run_json(&run), record);
    let o = resume(&["--set", "training.epochs=3", "--accept-data-change"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = run_json(&run);
    let change = &after["data_changes"][0];
    assert_eq!(change["from"], record["data"]);
    assert_eq!(change["after_epoch"], 2);
    assert_eq!(change["to"], after["data"]);
    assert_ne!(after["data"]["sha256"], record["data"]["sha256"]);
    // Without a resume the flag is refused by the parser.
    let o = lcsim_in(dir.path(), &["train", "--accept-data-change"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
}

/// A child `lcsim` that trains for long (many slow samples), and its run folder.
fn long_training(dir: &Path, name: &str) -> Child {
    let mut args = vec!["train".to_string(), "--quiet".into()];
    args.extend(TINY.iter().map(|s| s.to_string()));
    for set in [
        "data.synthetic_samples=400000".to_string(),
        "model.hidden=[32]".into(),
        "training.epochs=100".into(),
        format!("output.name=\"{name}\""),
    ] {
        args.extend(["--set".into(), set]);
    }
    Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `lock` names a holder (the runner has started).
fn wait_for_lock(lock: &Path) {
    for _ in 0..600 {
        if std::fs::read_to_string(lock).is_ok_and(|t| t.starts_with("process")) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never written", lock.display());
}

/// Waits until a run folder is locked by its trainer and complete (config.toml is written
/// last, under the lock).
fn wait_for_run(run: &Path) {
    wait_for_lock(&run.join(".lock"));
    for _ in 0..600 {
        if run.join("config.toml").is_file() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{} never written", run.join("config.toml").display());
}

/// A second `lcsim train --resume` on a run being trained is refused naming the folder and
/// the holder; once the holder is killed its lock is stale and a resume takes it (and clears
/// the temp files left behind).
#[test]
fn one_trainer_per_run_folder_and_stale_locks_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = long_training(dir.path(), "busy");
    let run = dir.path().join("runs/busy");
    wait_for_run(&run);
    let pid = format!("process {}", child.id());
    let o = lcsim_in(dir.path(), &["train", "--resume", "runs/busy"]);
    refused(&o, &["run folder runs/busy is in use by", &pid]);
    assert!(lock_holder(&run).is_some_and(|h| h.contains(&pid)));
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock file still names the dead process, but the lock is free.
    assert!(std::fs::read_to_string(run.join(".lock"))
        .unwrap()
        .contains(&pid));
    assert_eq!(lock_holder(&run), None);
    let temp = run.join(".metrics.csv.123.0.tmp");
    std::fs::write(&temp, "half-written").unwrap();
    std::fs::create_dir_all(run.join("figures")).unwrap();
    let figure_temp = run.join("figures/.learning_curves.png.123.0.tmp.png");
    std::fs::write(&figure_temp, "half-drawn").unwrap();
    // Refused for its --set, i.e. after the lock was taken and the temp files removed.
    let o = lcsim_in(
        dir.path(),
        &["train", "--resume", "runs/busy", "--set", "model.seed=3"],
    );
    refused(&o, &["--set", "model.seed"]);
    assert!(!temp.exists(), "temp file left behind");
    assert!(!figure_temp.exists(), "figure temp file left behind");
}

/// A config of the tiny xor run in `dir` with a chosen run name.
fn tiny_config(dir: &Path, name: &str) -> Config {
    let sets: Vec<String> = TINY
        .chunks(2)
        .map(|kv| kv[1].to_string())
        .chain([
            format!("output.dir=\"{}\"", dir.display()),
            format!("output.name=\"{name}\""),
        ])
        .collect();
    Config::load(None, &sets).unwrap()
}

/// Two runners creating the same run folder at once: the folder was claimed (create_dir)
/// before it was locked, so the second could take a half-made folder (a sweep runner even
/// removed it). Creating and locking are now one step: of 8 threads racing on one folder,
/// exactly one proceeds, every other is refused as busy, and the folder holds the winner's
/// complete run.json and config.toml.
#[test]
fn run_folder_creation_and_locking_are_one_step() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let config = tiny_config(dir.path(), "race");
        let start = std::sync::Barrier::new(8);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (config, start) = (&config, &start);
                    s.spawn(move || {
                        start.wait();
                        RunDir::create(config, &format!("racer {i}"), None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one proceeds");
        for r in &results {
            match r {
                Ok(_) => {}
                Err(e @ LcsimError::Locked { .. }) => {
                    assert_eq!(e.exit_code(), 75);
                    assert!(e.to_string().contains("race is in use by"), "{e}");
                }
                Err(e) => panic!("round {round}: not the busy error: {e}"),
            }
        }
        let run = &won[0].0;
        assert_eq!(run.path, dir.path().join("race"));
        let record = run.record().unwrap();
        assert_eq!(record.config, Some(config.flat()));
        assert!(record.command.starts_with("racer "));
        let (_, on_disk) = RunDir::open(&run.path).unwrap();
        assert_eq!(on_disk.flat(), config.flat());
    }
}

/// A folder that only a failed start left (error.txt of a sweep runner, a stale lock, a
/// temp file) is taken over by a new run of that name; a folder holding anything else is
/// refused naming the file, which stays.
#[test]
fn a_failed_start_is_taken_over_and_other_folders_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), "left");
    let left = dir.path().join("left");
    std::fs::create_dir(&left).unwrap();
    for f in ["error.txt", ".lock", ".run.json.1.0.tmp"] {
        std::fs::write(left.join(f), "x").unwrap();
    }
    let (run, _lock) = RunDir::create(&config, "test", None).unwrap();
    assert!(!left.join("error.txt").exists() && !left.join(".run.json.1.0.tmp").exists());
    assert_eq!(run.record().unwrap().config, Some(config.flat()));

    // A folder with config.toml is a run: refused as before.
    let config = tiny_config(dir.path(), "run");
    std::fs::create_dir(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/config.toml"), config.to_toml()).unwrap();
    let e = RunDir::create(&config, "test", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("output.name") && e.contains("an unfinished run"),
        "{e}"
    );

    let config = tiny_config(dir.path(), "mine");
    std::fs::create_dir(dir.path().join("mine")).unwrap();
    std::fs::write(dir.path().join("mine/notes.txt"), "keep").unwrap();
    let e = RunDir::create(&config, "test", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("output.name") && e.contains("notes.txt"), "{e}");
    assert!(dir.path().join("mine/notes.txt").is_file());
    assert!(!dir.path().join("mine/config.toml").exists());
}

/// Plans the sweep `sw` in `dir` over `model.seed = seeds`, each run training for long
/// (many slow samples, no figures).
fn plan_long_sweep(dir: &Path, seeds: &str) {
    let grid = format!("model.seed={seeds}");
    let o = lcsim_in(
        dir,
        &[
            "sweep",
            "plan",
            "--out",
            "sw",
            "--grid",
            &grid,
            "--set",
            "data.source=\"xor\"",
            "--set",
            "data.synthetic_samples=400000",
            "--set",
            "model.hidden=[32]",
            "--set",
            "training.epochs=100",
            "--set",
            "output.figures=false",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Two `lcsim sweep run --index 0` (or Slurm tasks) started at once on a fresh sweep: exactly
/// one trains the run; the other reports it busy (exit 1, naming the trainer) and writes no
/// error.txt into the folder.
#[test]
fn two_index_runners_on_one_run_one_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    plan_long_sweep(dir.path(), "0");
    let runner = || {
        Command::new(env!("CARGO_BIN_EXE_lcsim"))
            .args(["sweep", "run", "sw", "--index", "0"])
            .current_dir(dir.path())
            .env_remove("SLURM_ARRAY_TASK_ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut runners = vec![runner(), runner()];
    // The busy one ends by itself; the other trains for long.
    let first = loop {
        if let Some(i) = (0..2).find(|&i| runners[i].try_wait().unwrap().is_some()) {
            break i;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let busy = runners.remove(first).wait_with_output().unwrap();
    let err = stderr(&busy);
    assert_eq!(busy.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is being trained by process") && err.contains("not started again"),
        "{err}"
    );
    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("sw/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    wait_for_run(run);
    assert!(!run.join("error.txt").exists());
    assert!(run.join("config.toml").is_file() && run.join("run.json").is_file());
    let trainer = pid_in(&run.join(".lock"));
    let killed = Command::new("kill")
        .args(["-9", &trainer.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let other = runners.pop().unwrap().wait_with_output().unwrap();
    assert!(!other.status.success());
}

/// Ctrl-C before the first epoch ends: the message said "interrupted after epoch 0". It now
/// says which epoch was interrupted, that none is kept, and how to continue; exit 130.
#[test]
fn interrupt_before_the_first_epoch_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = long_training(dir.path(), "int");
    let run = dir.path().join("runs/int");
    wait_for_run(&run);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["train", "--resume", "runs/int"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner is printed just before the Ctrl-C handler is installed; the first epoch
    // (400000 samples) takes far longer than the pause.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut banner).unwrap();
    assert!(
        banner.contains("epochs 1..100, run folder runs/int"),
        "{banner}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("interrupted before epoch 1 was completed (no epoch was completed yet); continue with: lcsim train --resume runs/int"),
        "{out}"
    );
}

/// Killed after its last checkpoint but before summary.json: the resume banner said
/// "epochs 2..1". It now says every epoch is done and the run is being finished, and it is.
#[test]
fn resume_after_the_last_epoch_says_it_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(
        dir.path(),
        &["--set", "training.epochs=1", "--set", "output.name=\"f\""],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run = dir.path().join("runs/f");
    for f in ["summary.json", "params.npz"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    let o = lcsim_in(dir.path(), &["train", "--resume", "runs/f"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("all 1 epochs done (finishing)"), "{out}");
    assert!(!out.contains("epochs 2..1"), "{out}");
    assert!(run.join("summary.json").is_file() && run.join("params.npz").is_file());
}

fn pid_in(lock: &Path) -> u32 {
    let text = std::fs::read_to_string(lock).unwrap();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Two `sweep run` on one folder both ran every point. Now the second is refused naming the
/// first; a runner whose run is being trained by an orphaned child reports it busy.
#[test]
fn one_runner_per_sweep_folder() {
    let dir = tempfile::tempdir().unwrap();
    plan_long_sweep(dir.path(), "0,1");
    let sweep = dir.path().join("sw");
    let mut first = Command::new(env!("CARGO_BIN_EXE_lcsim"))
        .args(["sweep", "run", "sw", "--jobs", "1"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&sweep.join(".lock"));
    let pid = format!("process {}", first.id());
    for args in [
        &["sweep", "run", "sw", "--jobs", "1"][..],
        &["sweep", "run", "sw", "--index", "1"][..],
    ] {
        refused(
            &lcsim_in(dir.path(), args),
            &["sweep folder", "is in use by", &pid],
        );
    }
    // The runner killed alone leaves its child training run 0: that run is busy.
    let runs: Vec<PathBuf> = (0..600)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let runs: Vec<PathBuf> = std::fs::read_dir(sweep.join("runs"))
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::read_to_string(p.join(".lock")).is_ok_and(|t| t.starts_with("process"))
                })
                .collect();
            (!runs.is_empty()).then_some(runs)
        })
        .expect("a run started");
    first.kill().unwrap();
    first.wait().unwrap();
    let trainer = pid_in(&runs[0].join(".lock"));
    let o = lcsim_in(dir.path(), &["sweep", "run", "sw", "--index", "0"]);
    let err = stderr(&o);
    let killed = Command::new("kill")
        .args(["-9", &trainer.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(!o.status.success());
    assert!(
        err.contains("is being trained by process") && err.contains(&trainer.to_string()),
        "{err}"
    );
}

fn plan_two(dir: &Path, out: &str) -> PathBuf {
    let o = lcsim_in(
        dir,
        &[
            "sweep",
            "plan",
            "--out",
            out,
            "--grid",
            "controller.alpha=0.5,1",
            "--set",
            "data.source=\"xor\"",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    dir.join(out)
}

fn edit_manifest(sweep: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = sweep.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// Sweep manifests missed a changed seed and a deleted run; an edited base.toml (with every
/// run's config edited alike) went unseen. Each is refused before any run starts.
#[test]
fn sweep_manifest_verifies_seeds_run_list_and_base() {
    let dir = tempfile::tempdir().unwrap();
    let run = |sweep: &Path, says: &[&str]| {
        let o = lcsim_in(dir.path(), &["sweep", "run", sweep.to_str().unwrap()]);
        refused(&o, says);
        assert!(!sweep.join("runs").exists(), "a run started");
    };
    let s = plan_two(dir.path(), "seed");
    edit_manifest(&s, |m| m["runs"][1]["seeds"]["model"] = 7.into());
    run(
        &s,
        &[
            "model.seed = 7",
            "model.seed = 0",
            "seeds the sweep was planned with",
        ],
    );

    let s = plan_two(dir.path(), "deleted");
    edit_manifest(&s, |m| {
        m["runs"].as_array_mut().unwrap().pop();
    });
    run(&s, &["a run list of 1 runs", "deleted"]);

    let s = plan_two(dir.path(), "base");
    for f in std::fs::read_dir(s.join("configs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .chain([s.join("base.toml")])
    {
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, text.replace("tau_v = 1.0", "tau_v = 2.0")).unwrap();
    }
    run(
        &s,
        &[
            "base.toml edited after planning",
            "dynamics.tau_v = 2.0 (was 1.0)",
        ],
    );
}

/// The messages the issue lists: each names the real key (or flag), the value and the limit.
#[test]
fn messages_name_the_real_key_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dup.toml"), "[model]\nseed = 1\nseed = 2\n").unwrap();
    refused(
        &lcsim_in(d, &["config", "--config", "dup.toml"]),
        &["duplicate key", "line 3", "model.seed"],
    );
    refused(
        &lcsim_in(d, &["config", "--set", "controller.alpha=1e400"]),
        &["controller.alpha", "1e400", "largest 64-bit float"],
    );
    let o = lcsim_in(d, &["config", "--set", "model.hidden=64"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("hidden = [64]"));
    let list = format!("[model]\nhidden = [{}]\n", vec!["1"; 2_000_000].join(","));
    std::fs::write(d.join("big.toml"), list).unwrap();
    let err = refused(
        &lcsim_in(d, &["config", "--config", "big.toml"]),
        &["model.hidden"],
    );
    assert!(err.len() < 1000, "{} bytes", err.len());
    refused(
        &lcsim_in(d, &["check", "--alphas", "10,1"]),
        &["--alphas", "increasing"],
    );
    refused(
        &lcsim_in(d, &["check", "--hidden", "1000000000"]),
        &["the check would need about", "GiB", "--hidden"],
    );
    refused(
        &lcsim_in(d, &["throughput", "--threads", "99999"]),
        &["--threads", "99999", "0..=1024"],
    );
    refused(
        &lcsim_in(d, &["sweep", "run", "nowhere", "--jobs", "99999"]),
        &["nowhere"],
    );
    plan_two(d, "sw");
    refused(
        &lcsim_in(d, &["sweep", "run", "sw", "--jobs", "99999"]),
        &["--jobs", "99999", "1..=1024"],
    );
    assert!(!d.join("sw/runs").exists());
    let o = train(
        d,
        &["--set", "training.epochs=1", "--set", "output.name=\"s\""],
    );
    assert!(o.status.success());
    refused(
        &lcsim_in(
            d,
            &["simulate", "--run", "runs/s", "--points", "1000000000"],
        ),
        &["the simulation would need about", "--points"],
    );
    assert!(!d.join("runs/simulate-s").exists());
    let p = "runs/s/params.npz";
    let before = std::fs::read(d.join(p)).unwrap();
    refused(
        &lcsim_in(
            d,
            &[
                "equilibrium",
                "--params",
                p,
                "--input",
                "x.npy",
                "--labels",
                "y.npy",
                "--out",
                "./runs/s/params.npz",
            ],
        ),
        &["--out", "--params", "overwritten"],
    );
    assert_eq!(std::fs::read(d.join(p)).unwrap(), before);
}
