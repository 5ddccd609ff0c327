//! Tests of the data module: digits, MNIST IDX files (real, written here, and corrupted),
//! synthetic tasks, splits and mini-batches.

mod common;

use common::idx_bytes;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use lcsim::data::{self, DataSource, Dataset};
use nalgebra::DMatrix;

const MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist10k");

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Three 2x2 images with distinct pixels, including 0 and 255.
const TINY_PIXELS: [u8; 12] = [0, 1, 2, 3, 10, 20, 30, 40, 255, 128, 64, 7];
const TINY_LABELS: [u8; 3] = [7, 0, 9];

fn tiny_images() -> Vec<u8> {
    idx_bytes(0x0803, &[3, 2, 2], &TINY_PIXELS)
}

fn tiny_labels() -> Vec<u8> {
    idx_bytes(0x0801, &[3], &TINY_LABELS)
}

/// The error message of an image-file read, which must name the file.
fn image_error(path: &Path) -> String {
    let err = data::read_idx_images(path).expect_err("corrupt file must be rejected");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    msg
}

fn label_error(path: &Path) -> String {
    let err = data::read_idx_labels(path).expect_err("corrupt file must be rejected");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message does not name the file: {msg}"
    );
    msg
}

/// Columns as hashable keys (values are multiples of 1/16 or 1/255, exact after scaling).
fn column_keys(m: &DMatrix<f64>, scale: f64) -> Vec<Vec<u32>> {
    m.column_iter()
        .map(|c| c.iter().map(|v| (v * scale).round() as u32).collect())
        .collect()
}

/// A data set whose input row 0 is the sample index (to track samples through splits).
fn indexed(n: usize, n_classes: usize) -> Dataset {
    let inputs = DMatrix::from_fn(2, n, |i, j| if i == 0 { j as f64 } else { -(j as f64) });
    let labels = (0..n).map(|j| j % n_classes).collect();
    Dataset::new(inputs, labels, n_classes, "indexed").unwrap()
}

fn ids(d: &Dataset) -> Vec<usize> {
    d.inputs.row(0).iter().map(|&v| v as usize).collect()
}

// ---------------------------------------------------------------------------------------
// digits
// ---------------------------------------------------------------------------------------

#[test]
fn digits_has_1797_samples_of_64_pixels_in_unit_range_and_10_classes() {
    let s = data::digits(0.2, 0).unwrap();
    assert_eq!(s.train.len() + s.test.len(), 1797);
    for d in [&s.train, &s.test] {
        assert_eq!(d.n_inputs(), 64);
        assert_eq!(d.inputs.ncols(), d.len());
        assert_eq!(d.n_classes, 10);
        assert_eq!(d.name, "digits");
        assert!(d.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
    // Scaled by 1/16: the full range is used, and every value is a multiple of 1/16.
    let max = s.train.inputs.max().max(s.test.inputs.max());
    assert_eq!(max, 1.0);
    assert!(s.train.inputs.iter().all(|&v| (v * 16.0).fract() == 0.0));
    let mut counts = vec![0; 10];
    for d in [&s.train, &s.test] {
        for (c, k) in d.class_counts().into_iter().enumerate() {
            counts[c] += k;
        }
    }
    assert!(counts.iter().all(|&k| k > 150), "class counts {counts:?}");
    assert!(s.train.class_counts().iter().all(|&k| k > 0));
    assert!(s.test.class_counts().iter().all(|&k| k > 0));
}

#[test]
fn digits_split_has_the_right_sizes_and_partitions_the_data() {
    let s = data::digits(0.2, 3).unwrap();
    // round(0.2 * 1797) = round(359.4) = 359
    assert_eq!(s.test.len(), 359);
    assert_eq!(s.train.len(), 1797 - 359);
    let s25 = data::digits(0.25, 3).unwrap();
    assert_eq!(s25.test.len(), 449); // round(449.25)

    // train + test is exactly the original multiset of images (with labels): disjoint
    // and complete.
    let raw = smartcore::dataset::digits::load_dataset();
    let mut original: Vec<(Vec<u32>, usize)> = (0..raw.num_samples)
        .map(|j| {
            let img = raw.data[j * 64..(j + 1) * 64]
                .iter()
                .map(|&p| p as u32)
                .collect();
            (img, raw.target[j] as usize)
        })
        .collect();
    let mut split_samples: Vec<(Vec<u32>, usize)> = [&s.train, &s.test]
        .iter()
        .flat_map(|d| {
            column_keys(&d.inputs, 16.0)
                .into_iter()
                .zip(d.labels.clone())
        })
        .collect();
    original.sort();
    split_samples.sort();
    assert_eq!(original, split_samples);
}

#[test]
fn digits_split_is_seeded() {
    let a = data::digits(0.2, 7).unwrap();
    let b = data::digits(0.2, 7).unwrap();
    let c = data::digits(0.2, 8).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.test.inputs, c.test.inputs);
    assert_ne!(a.train.labels, c.train.labels);
}

#[test]
fn test_fraction_outside_zero_one_is_rejected_by_name() {
    for f in [0.0, 1.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
        let msg = data::digits(f, 0).unwrap_err().to_string();
        assert!(msg.contains("data.test_fraction"), "{f}: {msg}");
    }
    // A fraction that leaves one side empty on a small data set.
    let msg = data::split(indexed(10, 2), 0.01, 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("data.test_fraction"), "{msg}");
    let msg = data::split(indexed(10, 2), 0.99, 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("data.test_fraction"), "{msg}");
}

#[test]
fn split_is_a_seeded_disjoint_partition() {
    let d = indexed(100, 3);
    let s = data::split(d.clone(), 0.3, 5).unwrap();
    assert_eq!(s.test.len(), 30);
    assert_eq!(s.train.len(), 70);
    let mut all: Vec<usize> = ids(&s.train).into_iter().chain(ids(&s.test)).collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    // Labels travel with their samples.
    for part in [&s.train, &s.test] {
        for (id, &l) in ids(part).iter().zip(&part.labels) {
            assert_eq!(l, id % 3);
        }
    }
    assert_eq!(s, data::split(d.clone(), 0.3, 5).unwrap());
    assert_ne!(ids(&s.test), ids(&data::split(d, 0.3, 6).unwrap().test));
}

// ---------------------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------------------

#[test]
fn batch_returns_inputs_and_one_hot_targets_of_the_chosen_samples() {
    let d = indexed(6, 3);
    let (x, t) = d.batch(&[4, 1, 4]);
    assert_eq!(x.shape(), (2, 3));
    assert_eq!(t.shape(), (3, 3));
    assert_eq!(
        x.row(0).iter().copied().collect::<Vec<_>>(),
        [4.0, 1.0, 4.0]
    );
    // labels 4 % 3 = 1, 1 % 3 = 1
    assert_eq!(
        t,
        DMatrix::from_column_slice(3, 3, &[0., 1., 0., 0., 1., 0., 0., 1., 0.])
    );
    let sub = d.subset(&[5, 0]);
    assert_eq!(ids(&sub), [5, 0]);
    assert_eq!(sub.labels, [2, 0]);
    assert_eq!(sub.n_classes, 3);
    assert!(!sub.is_empty());
    assert!(d.subset(&[]).is_empty());
}

#[test]
fn dataset_new_checks_labels() {
    let x = DMatrix::zeros(2, 3);
    assert!(Dataset::new(x.clone(), vec![0, 1], 2, "d").is_err());
    let msg = Dataset::new(x.clone(), vec![0, 1, 2], 2, "d")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("index 2"), "{msg}");
    assert!(Dataset::new(x, vec![0, 1, 1], 2, "d").is_ok());
}

// ---------------------------------------------------------------------------------------
// MNIST (real files)
// ---------------------------------------------------------------------------------------

#[test]
fn mnist10k_loads_8000_train_and_2000_test_digits() {
    let s = data::mnist(Path::new(MNIST_DIR), None, None).unwrap();
    assert_eq!(s.train.len(), 8000);
    assert_eq!(s.test.len(), 2000);
    for d in [&s.train, &s.test] {
        assert_eq!(d.n_inputs(), 784);
        assert_eq!(d.n_classes, 10);
        assert_eq!(d.name, "mnist");
        assert!(d.inputs.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert_eq!(d.inputs.max(), 1.0);
        assert_eq!(d.inputs.min(), 0.0);
        assert!(d
            .inputs
            .iter()
            .all(|&v| ((v * 255.0).round() - v * 255.0).abs() < 1e-9));
        let counts = d.class_counts();
        for (c, &k) in counts.iter().enumerate() {
            let share = k as f64 / d.len() as f64;
            assert!(
                (0.05..=0.15).contains(&share),
                "class {c}: {k} of {} ({counts:?})",
                d.len()
            );
        }
        // Known property of MNIST: mean intensity ~0.13 (torchvision normalises with
        // mean 0.1307).
        let mean = d.inputs.mean();
        assert!((0.1..0.2).contains(&mean), "mean pixel {mean}");
        // Digits are centred: the border pixels are nearly always blank, the centre not.
        let corner_mean = d.inputs.row(0).mean();
        let centre_mean = d.inputs.row(14 * 28 + 14).mean();
        assert!(corner_mean < 0.01, "corner {corner_mean}");
        assert!(centre_mean > 0.2, "centre {centre_mean}");
    }
}

#[test]
fn mnist_limits_take_the_first_samples() {
    let full = data::mnist(Path::new(MNIST_DIR), None, None).unwrap();
    let s = data::mnist(Path::new(MNIST_DIR), Some(100), Some(30)).unwrap();
    assert_eq!(s.train.len(), 100);
    assert_eq!(s.test.len(), 30);
    assert_eq!(s.train.inputs, full.train.inputs.columns(0, 100));
    assert_eq!(s.train.labels, full.train.labels[..100]);
    assert_eq!(s.test.inputs, full.test.inputs.columns(0, 30));
    assert_eq!(s.test.labels, full.test.labels[..30]);
    // A limit above the count keeps everything.
    let s = data::mnist(Path::new(MNIST_DIR), Some(1_000_000), Some(5)).unwrap();
    assert_eq!(s.train.len(), 8000);
    assert_eq!(s.test.len(), 5);
    // A zero limit is an error naming the setting.
    let msg = data::mnist(Path::new(MNIST_DIR), Some(0), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("data.train_limit"), "{msg}");
}

#[test]
fn mnist10k_files_read_directly() {
    let images =
        data::read_idx_images(&Path::new(MNIST_DIR).join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (2000, 28, 28));
    assert_eq!(images.pixels.len(), 2000 * 784);
    let labels =
        data::read_idx_labels(&Path::new(MNIST_DIR).join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(labels.len(), 2000);
    assert!(labels.iter().all(|&l| l <= 9));
}

// ---------------------------------------------------------------------------------------
// IDX files written here
// ---------------------------------------------------------------------------------------

#[test]
fn idx_files_raw_and_gzipped_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("raw-images", tiny_images(), "raw-labels", tiny_labels()),
        (
            "images.gz",
            gzip(&tiny_images()),
            "labels.gz",
            gzip(&tiny_labels()),
        ),
        // Compression is recognised by content, not by name.
        (
            "gz-images-without-suffix",
            gzip(&tiny_images()),
            "raw-labels-with-suffix.gz",
            tiny_labels(),
        ),
    ];
    for (img_name, img_bytes, lab_name, lab_bytes) in cases {
        let images = data::read_idx_images(&write(dir.path(), img_name, &img_bytes)).unwrap();
        assert_eq!(
            (images.count, images.rows, images.cols),
            (3, 2, 2),
            "{img_name}"
        );
        assert_eq!(images.pixels, TINY_PIXELS, "{img_name}");
        assert_eq!(images.image(2), &TINY_PIXELS[8..12]);
        let labels = data::read_idx_labels(&write(dir.path(), lab_name, &lab_bytes)).unwrap();
        assert_eq!(labels, TINY_LABELS, "{lab_name}");
    }
    // Zero images is a valid (empty) file.
    let empty = write(dir.path(), "none", &idx_bytes(0x0803, &[0, 28, 28], &[]));
    assert_eq!(data::read_idx_images(&empty).unwrap().count, 0);
    // A gzip file of several members (as `cat a.gz b.gz` makes) is one stream.
    let img = tiny_images();
    let mut two_members = gzip(&img[..9]);
    two_members.extend(gzip(&img[9..]));
    let path = write(dir.path(), "members.gz", &two_members);
    assert_eq!(data::read_idx_images(&path).unwrap().pixels, TINY_PIXELS);
}

#[test]
fn mnist_reads_a_directory_of_written_files_with_either_names() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gzip(&tiny_images()),
    );
    write(dir.path(), "train-labels-idx1-ubyte", &tiny_labels());
    write(dir.path(), "t10k-images-idx3-ubyte", &tiny_images());
    write(
        dir.path(),
        "t10k-labels-idx1-ubyte.gz",
        &gzip(&tiny_labels()),
    );
    let s = data::mnist(dir.path(), None, Some(2)).unwrap();
    assert_eq!(s.train.len(), 3);
    assert_eq!(s.test.len(), 2);
    assert_eq!(s.train.n_inputs(), 4);
    assert_eq!(s.train.labels, [7, 0, 9]);
    assert_eq!(s.test.labels, [7, 0]);
    let expected = DMatrix::from_iterator(4, 3, TINY_PIXELS.iter().map(|&p| p as f64 / 255.0));
    assert_eq!(s.train.inputs, expected);
    assert_eq!(s.test.inputs, expected.columns(0, 2));
    assert_eq!(s.train.inputs[(0, 2)], 1.0);
}

#[test]
fn mnist_image_and_label_counts_must_agree() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train-images-idx3-ubyte", &tiny_images());
    write(
        dir.path(),
        "train-labels-idx1-ubyte",
        &idx_bytes(0x0801, &[2], &[1, 2]),
    );
    write(dir.path(), "t10k-images-idx3-ubyte", &tiny_images());
    write(dir.path(), "t10k-labels-idx1-ubyte", &tiny_labels());
    let msg = data::mnist(dir.path(), None, None).unwrap_err().to_string();
    assert!(msg.contains("train-labels-idx1-ubyte"), "{msg}");
    assert!(msg.contains("3 labels"), "{msg}");
    assert!(msg.contains("found 2 labels"), "{msg}");
}

#[test]
fn missing_mnist_files_are_listed_with_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let msg = data::mnist(dir.path(), None, None).unwrap_err().to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    for name in data::MNIST_FILES {
        assert!(msg.contains(&format!("{name}.gz")), "{name}: {msg}");
        assert!(msg.contains(&format!("or {name}")), "{name}: {msg}");
    }
    // Only the missing ones are listed.
    write(
        dir.path(),
        "train-images-idx3-ubyte.gz",
        &gzip(&tiny_images()),
    );
    write(dir.path(), "train-labels-idx1-ubyte", &tiny_labels());
    let msg = data::mnist(dir.path(), None, None).unwrap_err().to_string();
    assert!(!msg.contains("train-images"), "{msg}");
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
    assert!(msg.contains("t10k-labels-idx1-ubyte.gz"), "{msg}");
    // A directory that does not exist says so.
    let gone = dir.path().join("no-such-dir");
    let msg = data::mnist(&gone, None, None).unwrap_err().to_string();
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(msg.contains(&gone.display().to_string()), "{msg}");
}

// ---------------------------------------------------------------------------------------
// corrupt IDX files
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_magic_numbers_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    // A label file read as images and vice versa.
    let p = write(dir.path(), "labels-as-images", &tiny_labels());
    let msg = image_error(&p);
    assert!(msg.contains("magic number"), "{msg}");
    assert!(msg.contains("0x00000801"), "{msg}");
    assert!(msg.contains("expected 0x00000803"), "{msg}");
    let p = write(dir.path(), "images-as-labels", &tiny_images());
    let msg = label_error(&p);
    assert!(msg.contains("expected 0x00000801"), "{msg}");
    // Not IDX at all, and IDX of another element type (0x0D = float).
    let p = write(dir.path(), "text", b"hello world, not an IDX file");
    assert!(image_error(&p).contains("not an IDX file"));
    let p = write(
        dir.path(),
        "floats",
        &idx_bytes(0x0D03, &[1, 1, 1], &[0; 4]),
    );
    assert!(image_error(&p).contains("magic number"));
}

#[test]
fn truncated_and_overlong_files_report_expected_and_found_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let full = tiny_images(); // 16-byte header + 12 pixels = 28 bytes
    assert_eq!(full.len(), 28);
    let p = write(dir.path(), "truncated", &full[..27]);
    let msg = image_error(&p);
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("expected 28 bytes"), "{msg}");
    assert!(msg.contains("found 27"), "{msg}");

    let mut long = full.clone();
    long.extend_from_slice(&[1, 2]);
    let p = write(dir.path(), "trailing", &long);
    let msg = image_error(&p);
    assert!(msg.contains("trailing"), "{msg}");
    assert!(msg.contains("expected 28 bytes"), "{msg}");
    assert!(msg.contains("found 30"), "{msg}");

    // The same, gzipped: counts refer to the decompressed stream.
    let p = write(dir.path(), "trailing.gz", &gzip(&long));
    let msg = image_error(&p);
    assert!(msg.contains("after gzip decompression"), "{msg}");
    assert!(msg.contains("found 30"), "{msg}");

    // Cut inside the header.
    let p = write(dir.path(), "short-header", &full[..10]);
    let msg = image_error(&p);
    assert!(msg.contains("header"), "{msg}");
    assert!(
        msg.contains("expected at least 16 bytes, found 10"),
        "{msg}"
    );

    // Labels too.
    let labels = tiny_labels();
    let p = write(dir.path(), "labels-truncated", &labels[..labels.len() - 1]);
    let msg = label_error(&p);
    assert!(msg.contains("expected 11 bytes"), "{msg}");
    assert!(msg.contains("found 10"), "{msg}");
}

#[test]
fn out_of_range_labels_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad-label",
        &idx_bytes(0x0801, &[3], &[1, 12, 3]),
    );
    let msg = label_error(&p);
    assert!(msg.contains("label 12"), "{msg}");
    assert!(msg.contains("index 1"), "{msg}");
    assert!(msg.contains("0..=9"), "{msg}");
}

#[test]
fn absurd_header_sizes_are_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // 10^9 images of 1000 x 1000 pixels: 10^15 bytes (the IDX count is 32-bit, so 10^12
    // images cannot be written; this claims even more data).
    let p = write(
        dir.path(),
        "huge",
        &idx_bytes(0x0803, &[1_000_000_000, 1000, 1000], &[0; 8]),
    );
    let msg = image_error(&p);
    assert!(msg.contains("1000000000 x 1000 x 1000"), "{msg}");
    assert!(msg.contains("limit"), "{msg}");
    // The largest 32-bit sizes: the product overflows 64 bits.
    let p = write(
        dir.path(),
        "overflow",
        &idx_bytes(0x0803, &[u32::MAX, u32::MAX, u32::MAX], &[]),
    );
    assert!(image_error(&p).contains("limit"));
    // Under the limit but far beyond the file: reported as truncated, read incrementally.
    let p = write(
        dir.path(),
        "big-claim.gz",
        &gzip(&idx_bytes(0x0801, &[u32::MAX], &[1, 2, 3])),
    );
    let msg = label_error(&p);
    assert!(msg.contains("truncated"), "{msg}");
    assert!(
        msg.contains(&format!("expected {} bytes", 8 + u32::MAX as u64)),
        "{msg}"
    );
    // Zero-sized images.
    let p = write(
        dir.path(),
        "zero-rows",
        &idx_bytes(0x0803, &[1, 0, 28], &[]),
    );
    assert!(image_error(&p).contains("empty images"));
}

#[test]
fn empty_and_missing_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty", &[]);
    assert!(image_error(&p).contains("empty"));
    assert!(label_error(&p).contains("empty"));
    let p = write(dir.path(), "empty.gz", &gzip(&[]));
    assert!(image_error(&p).contains("empty"));
    let p = dir.path().join("absent");
    let msg = image_error(&p);
    assert!(
        msg.contains("No such file") || msg.contains("not find"),
        "{msg}"
    );
}

#[test]
fn cut_gzip_streams_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let gz = gzip(&tiny_images());
    let p = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    let msg = image_error(&p);
    assert!(msg.contains("gzip"), "{msg}");
    // Every proper prefix of the gzip file fails cleanly (no panic, no success).
    for cut in 0..gz.len() {
        let p = write(dir.path(), "prefix.gz", &gz[..cut]);
        assert!(data::read_idx_images(&p).is_err(), "cut at {cut}");
    }
    // A corrupted deflate body (bytes flipped) also fails, naming gzip.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid - 2..mid + 2] {
        *b ^= 0xff;
    }
    let p = write(dir.path(), "flipped.gz", &bad);
    assert!(data::read_idx_images(&p).is_err());
}

#[test]
fn mutated_idx_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let raw = tiny_images();
    let gz = gzip(&raw);
    for original in [&raw, &gz] {
        for pos in 0..original.len() {
            for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bytes = original.clone();
                bytes[pos] = value;
                let p = write(dir.path(), "mutated", &bytes);
                // Ok or Err, but never a panic; a success must be self-consistent.
                if let Ok(img) = data::read_idx_images(&p) {
                    assert_eq!(img.pixels.len(), img.count * img.rows * img.cols);
                }
                let _ = data::read_idx_labels(&p);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// synthetic tasks
// ---------------------------------------------------------------------------------------

#[test]
fn xor_is_seeded_balanced_and_labelled_by_the_corner() {
    let a = data::xor(203, 0.1, 1);
    assert_eq!(a, data::xor(203, 0.1, 1));
    assert_ne!(a.inputs, data::xor(203, 0.1, 2).inputs);
    assert_eq!((a.len(), a.n_inputs(), a.n_classes), (203, 2, 2));
    assert_eq!(a.name, "xor");
    let counts = a.class_counts();
    assert!(counts[0].abs_diff(counts[1]) <= 1, "{counts:?}");
    // Each corner gets n/4 points (203 = 51 + 51 + 51 + 50).
    let mut corners = BTreeMap::new();
    for (j, &l) in a.labels.iter().enumerate() {
        let (x, y) = (a.inputs[(0, j)], a.inputs[(1, j)]);
        let (bx, by) = ((x > 0.5) as usize, (y > 0.5) as usize);
        // with noise 0.1 a point crosses the mid-line with probability ~3e-7
        assert_eq!(l, bx ^ by, "point ({x}, {y})");
        *corners.entry((bx, by)).or_insert(0) += 1;
    }
    assert_eq!(
        corners.values().copied().collect::<Vec<_>>(),
        [51, 51, 51, 50]
    );
    // Noise is Gaussian with the requested spread.
    let b = data::xor(4000, 0.2, 9);
    let resid: Vec<f64> = b.inputs.iter().map(|v| v - v.round()).collect();
    let sd = (resid.iter().map(|r| r * r).sum::<f64>() / resid.len() as f64).sqrt();
    assert!((sd - 0.2).abs() < 0.01, "sd {sd}");
    // Without noise the points are exactly the corners.
    let c = data::xor(8, 0.0, 0);
    assert!(c.inputs.iter().all(|&v| v == 0.0 || v == 1.0));
}

#[test]
fn two_moons_is_seeded_balanced_and_in_the_unit_square() {
    let a = data::two_moons(301, 0.1, 4);
    assert_eq!(a, data::two_moons(301, 0.1, 4));
    assert_ne!(a.inputs, data::two_moons(301, 0.1, 5).inputs);
    assert_eq!((a.len(), a.n_inputs(), a.n_classes), (301, 2, 2));
    assert_eq!(a.name, "two-moons");
    assert_eq!(a.class_counts(), [150, 151]);
    // Noiseless moons lie on their arcs: class 0 on the circle of radius 1/3 around
    // (1/3, 5/12) (upper half), class 1 on the circle around (2/3, 7/12) (lower half).
    let m = data::two_moons(200, 0.0, 0);
    assert_eq!(m.class_counts(), [100, 100]);
    for (j, &l) in m.labels.iter().enumerate() {
        let (x, y) = (m.inputs[(0, j)], m.inputs[(1, j)]);
        assert!((0.0..=1.0).contains(&x) && (0.25 - 1e-12..=0.75 + 1e-12).contains(&y));
        let (cx, cy, upper) = if l == 0 {
            (1.0 / 3.0, 5.0 / 12.0, true)
        } else {
            (2.0 / 3.0, 7.0 / 12.0, false)
        };
        let r = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
        assert!((r - 1.0 / 3.0).abs() < 1e-12, "radius {r}");
        // the arc endpoints lie on the centre line
        if upper {
            assert!(y >= cy - 1e-12, "({x}, {y}) class {l}");
        } else {
            assert!(y <= cy + 1e-12, "({x}, {y}) class {l}");
        }
    }
    // With the usual noise the points stay roughly in [0, 1]^2.
    let b = data::two_moons(1000, 0.1, 1);
    assert!(b.inputs.iter().all(|&v| (-0.25..=1.25).contains(&v)));
    // Tiny sizes work.
    assert_eq!(data::two_moons(1, 0.0, 0).labels, [1]);
    assert!(data::two_moons(0, 0.0, 0).is_empty());
}

// ---------------------------------------------------------------------------------------
// mini-batches
// ---------------------------------------------------------------------------------------

#[test]
fn epoch_batches_cover_every_index_once_with_the_right_sizes() {
    let b = data::epoch_batches(10, 4, 0, 0);
    assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
    let mut all: Vec<usize> = b.concat();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());
    assert_eq!(
        data::epoch_batches(8, 4, 0, 0)
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [4, 4]
    );
    assert_eq!(data::epoch_batches(3, 100, 0, 0).len(), 1);
    assert!(data::epoch_batches(0, 4, 0, 0).is_empty());
    let big = data::epoch_batches(1000, 32, 5, 3);
    assert_eq!(big.len(), 32); // 31 full batches + 8
    assert_eq!(big.last().unwrap().len(), 8);
    let mut all = big.concat();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
}

#[test]
fn epoch_batches_depend_only_on_seed_and_epoch() {
    let base = data::epoch_batches(100, 10, 42, 3);
    assert_eq!(base, data::epoch_batches(100, 10, 42, 3));
    assert_ne!(base, data::epoch_batches(100, 10, 42, 4));
    assert_ne!(base, data::epoch_batches(100, 10, 43, 3));
    // (seed, epoch) pairs with equal sums differ too.
    assert_ne!(
        data::epoch_batches(100, 10, 1, 0),
        data::epoch_batches(100, 10, 0, 1)
    );
    // The order is a real shuffle, not the identity.
    assert_ne!(base.concat(), (0..100).collect::<Vec<_>>());
    // The batch size only cuts the same permutation.
    assert_eq!(base.concat(), data::epoch_batches(100, 7, 42, 3).concat());
}

// ---------------------------------------------------------------------------------------
// DataSource
// ---------------------------------------------------------------------------------------

#[test]
fn data_source_names_match_serde_and_clap() {
    use clap::ValueEnum;
    for (source, name) in [
        (DataSource::Digits, "digits"),
        (DataSource::Mnist, "mnist"),
        (DataSource::Cifar10, "cifar10"),
        (DataSource::Xor, "xor"),
        (DataSource::TwoMoons, "two-moons"),
        (DataSource::Sinusoid, "sinusoid"),
        (DataSource::FewshotMnist, "fewshot-mnist"),
        (DataSource::FewshotDigits, "fewshot-digits"),
    ] {
        assert_eq!(source.name(), name);
        assert_eq!(
            serde_json::to_string(&source).unwrap(),
            format!("\"{name}\"")
        );
        assert_eq!(
            serde_json::from_str::<DataSource>(&format!("\"{name}\"")).unwrap(),
            source
        );
        assert_eq!(DataSource::from_str(name, false).unwrap(), source);
    }
    assert_eq!(DataSource::value_variants().len(), 8);
}

// ---------------------------------------------------------------------------------------
// Image shapes and pixel layout
// ---------------------------------------------------------------------------------------

#[test]
fn image_shapes_of_the_sources_and_their_side() {
    use data::ImageShape;
    let shape = |channels, height, width| {
        Some(ImageShape {
            channels,
            height,
            width,
        })
    };
    for (source, expected) in [
        (DataSource::Digits, shape(1, 8, 8)),
        (DataSource::FewshotDigits, shape(1, 8, 8)),
        (DataSource::Mnist, shape(1, 28, 28)),
        (DataSource::FewshotMnist, shape(1, 28, 28)),
        (DataSource::Cifar10, shape(3, 32, 32)),
        (DataSource::Xor, None),
        (DataSource::TwoMoons, None),
        (DataSource::Sinusoid, None),
    ] {
        assert_eq!(source.image_shape(), expected, "{source:?}");
        assert_eq!(
            source.image_side(),
            expected.map(|s| s.height),
            "{source:?}"
        );
    }
    let s = ImageShape {
        channels: 3,
        height: 4,
        width: 5,
    };
    assert_eq!(s.len(), 60);
    // (c * h + y) * w + x, visiting 0..len in channel, row, column order.
    let mut k = 0;
    for c in 0..3 {
        for y in 0..4 {
            for x in 0..5 {
                assert_eq!(s.index(c, y, x), k);
                k += 1;
            }
        }
    }
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        r#"{"channels":3,"height":4,"width":5}"#
    );
}

/// Mean over the images of class `label` of the pixel-mass variance along x and along y,
/// reading column entry `shape.index(0, y, x)` as pixel (y, x).
fn stroke_spread(d: &Dataset, shape: data::ImageShape, label: usize) -> (f64, f64) {
    let (mut var_x, mut var_y, mut n) = (0.0, 0.0, 0.0);
    for (j, _) in d.labels.iter().enumerate().filter(|(_, &l)| l == label) {
        let col = d.inputs.column(j);
        let pixel = |y, x| col[shape.index(0, y, x)];
        let coords = || (0..shape.height).flat_map(|y| (0..shape.width).map(move |x| (y, x)));
        let mass: f64 = coords().map(|(y, x)| pixel(y, x)).sum();
        let mean = |f: &dyn Fn(usize, usize) -> f64| {
            coords().map(|(y, x)| pixel(y, x) * f(y, x)).sum::<f64>() / mass
        };
        let (my, mx) = (mean(&|y, _| y as f64), mean(&|_, x| x as f64));
        var_y += mean(&|y, _| (y as f64 - my).powi(2));
        var_x += mean(&|_, x| (x as f64 - mx).powi(2));
        n += 1.0;
    }
    (var_x / n, var_y / n)
}

/// MNIST columns are row-major images: entry y * 28 + x is the IDX file's pixel at row y,
/// column x (the file's byte at 16 + 784 k + 28 y + x), and read that way the ones are
/// upright strokes (their ink spreads along y, not x), which a transposed layout would
/// turn on their side.
#[test]
fn mnist_columns_are_row_major_images() {
    let shape = DataSource::Mnist.image_shape().unwrap();
    let s = data::mnist(Path::new(MNIST_DIR), None, None).unwrap();
    let raw =
        data::read_idx_images(&Path::new(MNIST_DIR).join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!((raw.rows, raw.cols), (shape.height, shape.width));
    for k in [0, 1, 4321] {
        for (y, x) in [(6, 14), (14, 6), (10, 20), (20, 10), (13, 13)] {
            let byte = raw.pixels[k * 784 + 28 * y + x];
            assert_eq!(
                s.train.inputs[(shape.index(0, y, x), k)],
                f64::from(byte) / 255.0
            );
        }
    }
    let (var_x, var_y) = stroke_spread(&s.train, shape, 1);
    assert!(var_y > 3.0 * var_x, "var_x {var_x}, var_y {var_y}");
}

/// The digits' columns are row-major 8x8 images too: read so, the ones are upright.
#[test]
fn digits_columns_are_row_major_images() {
    let shape = DataSource::Digits.image_shape().unwrap();
    let s = data::digits(0.2, 0).unwrap();
    let (var_x, var_y) = stroke_spread(&s.train, shape, 1);
    assert!(var_y > 2.0 * var_x, "var_x {var_x}, var_y {var_y}");
}
