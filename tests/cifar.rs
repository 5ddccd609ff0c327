//! Tests of the CIFAR-10 loader on small binary batches written here: exact values and
//! pixel layout, limits, the errors of missing, truncated and corrupt files, the config
//! keys and the memory estimate, and an end-to-end `lcsim train`.

mod common;

use std::path::{Path, PathBuf};

use common::lcsim_in;
use lcsim::config::Config;
use lcsim::data::{self, DataSource, CIFAR10_RECORD_BYTES, CIFAR10_SHAPE};

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

/// Pixel (c, y, x) of record `k` of file `f`: distinct across channels, rows, columns,
/// records and files (mod 256), so any mix-up of the layout changes a value.
fn pixel(f: usize, k: usize, c: usize, y: usize, x: usize) -> u8 {
    ((31 * f + 17 * k + 101 * c + 7 * y + 3 * x + y * x) % 256) as u8
}

/// Label of record `k` of file `f`.
fn label(f: usize, k: usize) -> u8 {
    ((3 * f + k) % 10) as u8
}

/// One record as the format specifies it, written plane by plane, row by row, pixel by
/// pixel with explicit loops (independent of the loader's indexing).
fn record(label: u8, px: impl Fn(usize, usize, usize) -> u8) -> Vec<u8> {
    let mut bytes = vec![label];
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                bytes.push(px(c, y, x));
            }
        }
    }
    bytes
}

/// File `f` (0..5 training, 5 test) with `n` records of [`pixel`] and [`label`].
fn batch_bytes(f: usize, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|k| record(label(f, k), |c, y, x| pixel(f, k, c, y, x)))
        .collect()
}

const NAMES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// Records per file of the small data set: 2, 1, 3, 1, 2 training (9), 3 test.
const COUNTS: [usize; 6] = [2, 1, 3, 1, 2, 3];

fn write_cifar(dir: &Path) {
    for (f, (name, &n)) in NAMES.iter().zip(&COUNTS).enumerate() {
        std::fs::write(dir.join(name), batch_bytes(f, n)).unwrap();
    }
}

/// The error of loading `dir`, which must name `path`.
fn load_error(dir: &Path, path: &Path) -> String {
    let msg = data::cifar10(dir, None, None)
        .expect_err("must be rejected")
        .to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name {}: {msg}",
        path.display()
    );
    msg
}

fn tempdir_with_cifar() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path());
    let path = dir.path().to_path_buf();
    (dir, path)
}

// ---------------------------------------------------------------------------------------
// values and layout
// ---------------------------------------------------------------------------------------

#[test]
fn written_batches_load_to_the_exact_values_in_channel_row_column_layout() {
    let (_tmp, dir) = tempdir_with_cifar();
    let s = data::cifar10(&dir, None, None).unwrap();
    assert_eq!(
        DataSource::Cifar10.image_shape(),
        Some(data::ImageShape {
            channels: 3,
            height: 32,
            width: 32
        })
    );
    assert_eq!(DataSource::Cifar10.image_side(), Some(32));
    assert_eq!((s.train.len(), s.test.len()), (9, 3));
    for d in [&s.train, &s.test] {
        assert_eq!((d.n_inputs(), d.n_classes), (3072, 10));
        assert_eq!(d.name, "cifar10");
    }
    // Training columns are the records of files 1..5 in order; test those of test_batch.
    let train_records: Vec<(usize, usize)> = (0..5)
        .flat_map(|f| (0..COUNTS[f]).map(move |k| (f, k)))
        .collect();
    let test_records: Vec<(usize, usize)> = (0..3).map(|k| (5, k)).collect();
    for (d, records) in [(&s.train, train_records), (&s.test, test_records)] {
        for (j, &(f, k)) in records.iter().enumerate() {
            assert_eq!(d.labels[j], usize::from(label(f, k)), "file {f} record {k}");
            for c in 0..3 {
                for y in 0..32 {
                    for x in 0..32 {
                        let entry = (c * 32 + y) * 32 + x;
                        assert_eq!(
                            d.inputs[(entry, j)],
                            f64::from(pixel(f, k, c, y, x)) / 255.0,
                            "file {f} record {k} pixel ({c}, {y}, {x})"
                        );
                    }
                }
            }
        }
    }
}

/// A black image with a white red pixel at (y, x) = (3, 17), a green one at (30, 1) and a
/// blue one at (0, 31): the column has 1 at exactly (c * 32 + y) * 32 + x of those three,
/// and label 9 and 0 (the ends of the label range) load.
#[test]
fn a_known_pixel_lands_at_its_channel_row_and_column() {
    let lit = [(0, 3, 17), (1, 30, 1), (2, 0, 31)];
    let px = |c, y, x| if lit.contains(&(c, y, x)) { 255 } else { 0 };
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path());
    let mut bytes = record(9, px);
    bytes.extend(record(0, |_, _, _| 128));
    std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
    let s = data::cifar10(dir.path(), None, None).unwrap();
    assert_eq!(s.test.labels, [9, 0]);
    let col = s.test.inputs.column(0);
    let ones: Vec<usize> = (0..3072).filter(|&i| col[i] != 0.0).collect();
    assert_eq!(ones, [3 * 32 + 17, (32 + 30) * 32 + 1, (2 * 32) * 32 + 31]);
    assert!(ones.iter().all(|&i| col[i] == 1.0));
    for &(c, y, x) in &lit {
        assert_eq!(col[CIFAR10_SHAPE.index(c, y, x)], 1.0);
    }
    assert!(s.test.inputs.column(1).iter().all(|&v| v == 128.0 / 255.0));
}

#[test]
fn limits_take_the_first_records_across_the_files() {
    let (_tmp, dir) = tempdir_with_cifar();
    let full = data::cifar10(&dir, None, None).unwrap();
    // 4 = 2 of file 1, 1 of file 2, 1 of file 3.
    let s = data::cifar10(&dir, Some(4), Some(2)).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (4, 2));
    assert_eq!(s.train, full.train.subset(&[0, 1, 2, 3]));
    assert_eq!(s.test, full.test.subset(&[0, 1]));
    let s = data::cifar10(&dir, Some(1_000), Some(1_000)).unwrap();
    assert_eq!(s, full);
    for (train, test, key) in [
        (Some(0), None, "data.train_limit"),
        (None, Some(0), "data.test_limit"),
    ] {
        let msg = data::cifar10(&dir, train, test).unwrap_err().to_string();
        assert!(msg.contains(key), "{msg}");
    }
}

#[test]
fn read_cifar_batch_reads_the_first_records_and_counts_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.bin");
    std::fs::write(&path, batch_bytes(2, 3)).unwrap();
    let b = data::read_cifar_batch(&path, Some(2)).unwrap();
    assert_eq!(b.records_in_file, 3);
    assert_eq!(b.labels, [label(2, 0), label(2, 1)]);
    assert_eq!(
        b.pixels,
        batch_bytes(2, 2)
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3073 != 0)
            .map(|(_, &p)| p)
            .collect::<Vec<_>>()
    );
    assert_eq!(data::cifar_batch_records(&path).unwrap(), 3);
}

// ---------------------------------------------------------------------------------------
// errors
// ---------------------------------------------------------------------------------------

#[test]
fn missing_files_are_listed_with_the_directory() {
    let (_tmp, dir) = tempdir_with_cifar();
    std::fs::remove_file(dir.join("data_batch_3.bin")).unwrap();
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let msg = load_error(&dir, &dir);
    assert!(
        msg.contains("data_batch_3.bin, test_batch.bin") && !msg.contains("data_batch_1.bin"),
        "{msg}"
    );
    assert!(msg.contains("not found"), "{msg}");

    let gone = dir.join("no-such-dir");
    let msg = load_error(&gone, &gone);
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn a_directory_given_as_a_file_and_a_file_given_as_the_directory_are_named() {
    let (_tmp, dir) = tempdir_with_cifar();
    // data.cifar_dir pointing at a batch file.
    let file = dir.join("data_batch_1.bin");
    let msg = load_error(&file, &file);
    assert!(
        msg.contains("data.cifar_dir is a file, not a directory"),
        "{msg}"
    );
    // A batch that is a directory.
    let batch = dir.join("data_batch_4.bin");
    std::fs::remove_file(&batch).unwrap();
    std::fs::create_dir(&batch).unwrap();
    let msg = load_error(&dir, &batch);
    assert!(msg.contains("is a directory"), "{msg}");
}

#[test]
fn lengths_that_are_not_whole_records_give_the_length_and_what_is_allowed() {
    let record = CIFAR10_RECORD_BYTES;
    assert_eq!(record, 3073);
    let full = batch_bytes(1, 3);
    for (len, records, left) in [
        (2 * record - 5, 1, record - 5), // truncated inside the second record
        (2 * record + 1, 2, 1),          // one byte too many
        (100, 0, 100),                   // shorter than one record
        (3 * 3074, 3, 3),                // CIFAR-100's 3074-byte records
    ] {
        let (_tmp, dir) = tempdir_with_cifar();
        let path = dir.join("data_batch_2.bin");
        let mut bytes = full.clone();
        bytes.resize(len, 0);
        std::fs::write(&path, &bytes).unwrap();
        let msg = load_error(&dir, &path);
        assert!(
            msg.contains(&format!("{len} bytes is not a whole number of records"))
                && msg.contains(&format!("{records} records and {left} bytes left over"))
                && msg.contains("a positive multiple of the record size 3073")
                && msg.contains("30730000 for a standard batch of 10000 records"),
            "{len}: {msg}"
        );
        assert_eq!(msg.contains("CIFAR-100"), len == 3 * 3074, "{msg}");
        // With a limit the file is not read, but its length is still checked.
        let msg = data::cifar10(&dir, Some(1), Some(1))
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    let (_tmp, dir) = tempdir_with_cifar();
    let path = dir.join("test_batch.bin");
    std::fs::write(&path, []).unwrap();
    let msg = load_error(&dir, &path);
    assert!(msg.contains("empty (0 bytes)"), "{msg}");
}

#[test]
fn label_bytes_above_9_name_the_record_and_its_offset() {
    for (bad, record_index, file) in [(10u8, 1, 0), (255, 0, 5), (200, 2, 2)] {
        let (_tmp, dir) = tempdir_with_cifar();
        let path = dir.join(NAMES[file]);
        let mut bytes = batch_bytes(file, COUNTS[file]);
        bytes[record_index * CIFAR10_RECORD_BYTES] = bad;
        std::fs::write(&path, &bytes).unwrap();
        let msg = load_error(&dir, &path);
        assert!(
            msg.contains(&format!(
                "label byte {bad} of record {record_index} (byte offset {})",
                record_index * 3073
            )) && msg.contains("outside 0..=9"),
            "{msg}"
        );
    }
}

/// Random corruptions (lengths and bytes) give Ok or an error, never a panic.
#[test]
fn corrupted_batches_never_panic() {
    let mut rng = lcsim::numerics::rng::Rng::seed_from_u64(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.bin");
    let good = batch_bytes(0, 2);
    for _ in 0..200 {
        let mut bytes = good.clone();
        let len = (rng.uniform() * (bytes.len() + 10) as f64) as usize;
        bytes.resize(len, 7);
        for _ in 0..3 {
            if !bytes.is_empty() {
                let i = (rng.uniform() * bytes.len() as f64) as usize % bytes.len();
                bytes[i] = (rng.uniform() * 256.0) as u8;
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        let whole = len > 0 && len.is_multiple_of(3073);
        let labels_ok = (0..len / 3073).all(|k| bytes[k * 3073] <= 9);
        match data::read_cifar_batch(&path, None) {
            Ok(b) => {
                assert!(whole && labels_ok, "len {len} accepted");
                assert_eq!(b.pixels.len(), len / 3073 * 3072);
            }
            Err(e) => {
                assert!(!(whole && labels_ok), "len {len}: {e}");
                assert!(e.to_string().contains(&path.display().to_string()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// config, memory estimate, command line
// ---------------------------------------------------------------------------------------

fn cifar_config(sets: &[&str]) -> Config {
    let mut all: Vec<String> = vec!["data.source=\"cifar10\"".into()];
    all.extend(sets.iter().map(|s| s.to_string()));
    Config::load(None, &all).unwrap()
}

#[test]
fn config_keys_are_documented_and_the_memory_estimate_counts_the_images() {
    let text = Config::default_toml();
    assert!(text.contains("cifar_dir = \"../shared/data/cifar-10-batches-bin\""));
    assert!(text.contains("\"cifar10\" (CIFAR-10 binary batches in cifar_dir"));
    assert!(text.contains("data_batch_1.bin ... data_batch_5.bin"));
    let c = cifar_config(&["data.cifar_dir=\"/x/y\""]);
    assert_eq!(c.data.cifar_dir, Path::new("/x/y"));

    // Each sample is 3072 inputs + 10 targets, 8 bytes each: the estimate grows by that
    // per image kept; all images = the standard 50,000 + 10,000.
    let per_image = 8.0 * (3072.0 + 10.0);
    let base = cifar_config(&["data.train_limit=100", "data.test_limit=10"]).memory_estimate();
    let more = cifar_config(&["data.train_limit=1100", "data.test_limit=10"]).memory_estimate();
    assert_eq!(more - base, 1000.0 * per_image);
    let all = cifar_config(&[]).memory_estimate();
    let capped = cifar_config(&["data.train_limit=1000000", "data.test_limit=1000000"]);
    assert_eq!(all, capped.memory_estimate());
    assert_eq!(all - base, (60_000.0 - 110.0) * per_image);
    // The input layer of a default rnn sees 3072 pixels: mnist's 784 give a smaller model.
    let mnist = Config::load(None, &["data.source=\"mnist\"".into()]).unwrap();
    let hidden = c.model.hidden[0] as f64;
    assert_eq!(
        all - mnist.memory_estimate(),
        8.0 * (7.0 * (3072.0 - 784.0) * hidden + 60_000.0 * (3072.0 + 10.0))
    );
}

/// `lcsim train` on written CIFAR files with the layered rate net: one epoch on 6
/// training and 3 test images finishes and records the source.
#[test]
fn cli_trains_a_layered_rate_net_on_written_cifar_files() {
    let (_tmp, dir) = tempdir_with_cifar();
    let work = tempfile::tempdir().unwrap();
    let cifar_dir = format!("data.cifar_dir=\"{}\"", dir.display());
    let args = [
        "train",
        "--quiet",
        "--set",
        "data.source=\"cifar10\"",
        "--set",
        &cifar_dir,
        "--set",
        "model.kind=\"ff\"",
        "--set",
        "model.hidden=[8]",
        "--set",
        "data.train_limit=6",
        "--set",
        "training.batch_size=3",
        "--set",
        "training.epochs=1",
        "--set",
        "output.figures=false",
    ];
    let o = lcsim_in(work.path(), &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = work.path().join("runs/lcp-di-ff-cifar10-seed0");
    let (run_dir, config) = lcsim::run::RunDir::open(&run).unwrap();
    assert!(run_dir.is_finished());
    assert_eq!(config.data.source, DataSource::Cifar10);
    let metrics = lcsim::io::metrics::read_csv(&run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.len(), 1);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 1);

    // A corrupt file fails before a run folder exists, naming the file.
    std::fs::write(dir.join("data_batch_1.bin"), [1u8; 3000]).unwrap();
    let work = tempfile::tempdir().unwrap();
    let o = lcsim_in(work.path(), &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("data_batch_1.bin") && err.contains("3000 bytes"),
        "{err}"
    );
    assert!(!work.path().join("runs").exists());
}

// ---------------------------------------------------------------------------------------
// the authors' settings as experiment configs
// ---------------------------------------------------------------------------------------

/// The repository's `experiments/NAME`.
fn experiment(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("experiments")
        .join(name)
}

#[test]
fn the_cifar10_conv_ff_configs_build_the_authors_layers() {
    // conv 3->96 5x5 pad 2 (96x32x32) + max pool 3 stride 2 (96x15x15), conv 96->128 5x5
    // stride 2 pad 1 (128x7x7), conv 128->256 likewise (256x3x3 = 2304), dense 2048, 2048, 10.
    let params = (96 * 3 * 25 + 96)
        + (128 * 96 * 25 + 128)
        + (256 * 128 * 25 + 256)
        + (2048 * 2304 + 2048)
        + (2048 * 2048 + 2048)
        + (10 * 2048 + 10);
    let state = 96 * 32 * 32 + 128 * 7 * 7 + 256 * 3 * 3 + 2048 + 2048 + 10;
    for name in ["conv-lcp-di-cifar10.toml", "conv-bp-cifar10.toml"] {
        let c = Config::load(Some(&experiment(name)), &[]).unwrap();
        assert_eq!(c.conv_system_sizes().unwrap(), (params, state), "{name}");
    }
}

#[test]
fn the_cifar10_deq_configs_build_the_authors_sizes() {
    // Encoder 3x3 3 -> 48 with bias, K1 48 -> 64 and K2 64 -> 48 (3x3, no bias), gamma and beta
    // of GN1 (64), GN2 and GN3 (48), readout on z averaged over 8x8 blocks (48 x 4 x 4 = 768).
    let params =
        (48 * 3 * 9 + 48) + 64 * 48 * 9 + 48 * 64 * 9 + 2 * (64 + 48 + 48) + (10 * 768 + 10);
    let state = 48 * 32 * 32 + 10;
    for name in ["deq-lcp-di-cifar10.toml", "deq-rbp-cifar10.toml"] {
        let c = Config::load(Some(&experiment(name)), &[]).unwrap();
        assert_eq!(c.conv_system_sizes().unwrap(), (params, state), "{name}");
    }
}
