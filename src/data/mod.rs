//! Data sets for training and testing: scikit-learn's 8x8 digits (embedded in smartcore),
//! MNIST from IDX files (`idx.rs`), CIFAR-10 from its binary batches (`cifar.rs`), and two
//! small synthetic tasks (XOR, two moons: `synthetic.rs`).
//!
//! A [`Dataset`] holds one sample per column (`n_x x N`, pixels scaled to [0, 1]) and integer
//! labels; an image is a column in [`ImageShape`]'s layout. [`Dataset::batch`] returns the
//! inputs and one-hot targets of a mini-batch. All randomness (splits, synthetic noise,
//! batch order) comes from the crate's seeded [`Rng`], so the same seed gives the same data
//! on every platform.

mod cifar;
mod idx;
mod synthetic;

pub use cifar::{
    cifar10, cifar_batch_records, read_cifar_batch, CifarBatch, CIFAR10_CLASSES,
    CIFAR10_RECORDS_PER_FILE, CIFAR10_RECORD_BYTES, CIFAR10_SHAPE, CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
};
pub use idx::{
    mnist, read_idx_images, read_idx_labels, IdxImages, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
    MAX_IDX_DATA_BYTES, MNIST_CLASSES, MNIST_FILES,
};
pub use synthetic::{two_moons, xor};

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, LcsimError, Result};
use crate::numerics::rng::Rng;

/// Where the training and test data come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// scikit-learn's 8x8 handwritten digits (1,797 samples, 64 inputs, 10 classes).
    Digits,
    /// MNIST from the four standard IDX files (784 inputs, 10 classes).
    Mnist,
    /// CIFAR-10 from its standard binary batches (3 x 32 x 32 = 3072 inputs, 10 classes).
    Cifar10,
    /// Noisy 2-D points around the corners of the unit square, label = XOR of the corner.
    Xor,
    /// Two interleaving half circles (scikit-learn's `make_moons`), 2 classes.
    TwoMoons,
    /// Few-shot sinusoid regression tasks for meta-learning ([meta], [`crate::tasks`]).
    Sinusoid,
    /// N-way K-shot classification tasks from the MNIST IDX files ([meta], [`crate::tasks`]).
    FewshotMnist,
    /// N-way K-shot classification tasks from the embedded 8x8 digits.
    FewshotDigits,
}

impl DataSource {
    /// Name as used in configs, on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            DataSource::Digits => "digits",
            DataSource::Mnist => "mnist",
            DataSource::Cifar10 => "cifar10",
            DataSource::Xor => "xor",
            DataSource::TwoMoons => "two-moons",
            DataSource::Sinusoid => "sinusoid",
            DataSource::FewshotMnist => "fewshot-mnist",
            DataSource::FewshotDigits => "fewshot-digits",
        }
    }

    /// Whether the samples are few-shot tasks (meta-learning's data).
    pub fn is_tasks(self) -> bool {
        matches!(
            self,
            DataSource::Sinusoid | DataSource::FewshotMnist | DataSource::FewshotDigits
        )
    }

    /// Shape of one image of an image source: digits and fewshot-digits (1, 8, 8), mnist
    /// and fewshot-mnist (1, 28, 28), cifar10 (3, 32, 32); `None` for the sources that are not images (xor,
    /// two-moons, sinusoid). A data column holds one image in [`ImageShape`]'s layout.
    pub fn image_shape(self) -> Option<ImageShape> {
        let gray = |side| ImageShape {
            channels: 1,
            height: side,
            width: side,
        };
        match self {
            DataSource::Digits | DataSource::FewshotDigits => Some(gray(8)),
            DataSource::Mnist | DataSource::FewshotMnist => Some(gray(28)),
            DataSource::Cifar10 => Some(CIFAR10_SHAPE),
            DataSource::Xor | DataSource::TwoMoons | DataSource::Sinusoid => None,
        }
    }

    /// Side of the square images of an image source: height = width of
    /// [`DataSource::image_shape`] (8 for digits, 28 for MNIST, 32 for CIFAR-10), `None` for
    /// the others.
    pub fn image_side(self) -> Option<usize> {
        self.image_shape()
            .filter(|s| s.height == s.width)
            .map(|s| s.height)
    }
}

/// Shape of the images of an image source, `channels x height x width`.
///
/// Pixel layout of a data column (one image): channel-major, then row (y, top to bottom),
/// then column (x, left to right): pixel (c, y, x) is entry `(c * height + y) * width + x`,
/// the layout of `crate::numerics::conv`. For one channel this is row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// Number of pixels `channels * height * width` (rows of a data column).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Entry of pixel (c, y, x) in a data column: `(c * height + y) * width + x`.
    pub fn index(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.height + y) * self.width + x
    }
}

/// A labelled data set, one sample per column.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Inputs, `n_x x N` (one sample per column).
    pub inputs: DMatrix<f64>,
    /// Class of each sample, each `< n_classes`.
    pub labels: Vec<usize>,
    /// Number of classes (rows of the one-hot targets).
    pub n_classes: usize,
    /// Short name of the source ("digits", "mnist", "xor", "two-moons", ...).
    pub name: String,
    /// Real-valued targets, one column per sample (a task's query set), given instead of
    /// one-hot labels; then every label is 0 and `n_classes` is 1.
    pub targets: Option<DMatrix<f64>>,
}

impl Dataset {
    /// Builds a data set after checking that there is one label per column and that every
    /// label is below `n_classes`.
    pub fn new(
        inputs: DMatrix<f64>,
        labels: Vec<usize>,
        n_classes: usize,
        name: impl Into<String>,
    ) -> Result<Dataset> {
        if labels.len() != inputs.ncols() {
            return Err(LcsimError::Shape {
                field: "dataset labels".to_string(),
                expected: format!("{} labels (one per input column)", inputs.ncols()),
                found: format!("{} labels", labels.len()),
            });
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
            return Err(invalid(
                &format!("dataset label at index {i}"),
                l,
                &format!("0..{n_classes} (n_classes = {n_classes})"),
            ));
        }
        Ok(Dataset {
            inputs,
            labels,
            n_classes,
            name: name.into(),
            targets: None,
        })
    }

    /// A data set with real-valued `targets` (one column per input column).
    pub fn with_targets(
        inputs: DMatrix<f64>,
        targets: DMatrix<f64>,
        name: impl Into<String>,
    ) -> Result<Dataset> {
        if targets.ncols() != inputs.ncols() {
            return Err(LcsimError::Shape {
                field: "dataset targets".to_string(),
                expected: format!("{} columns (one per input column)", inputs.ncols()),
                found: format!("{} columns", targets.ncols()),
            });
        }
        let mut d = Dataset::new(inputs, vec![0; targets.ncols()], 1, name)?;
        d.targets = Some(targets);
        Ok(d)
    }

    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the data set has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of inputs per sample n_x (rows of `inputs`).
    pub fn n_inputs(&self) -> usize {
        self.inputs.nrows()
    }

    /// Number of samples of each class (length `n_classes`).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The samples at `indices`, in that order (repeats allowed), with the same name and
    /// number of classes.
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            inputs: self.inputs.select_columns(indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            n_classes: self.n_classes,
            name: self.name.clone(),
            targets: self.targets.as_ref().map(|t| t.select_columns(indices)),
        }
    }

    /// A mini-batch: inputs `n_x x B` and one-hot targets `n_classes x B` (or the real-valued
    /// targets) of the samples at `indices` (B = `indices.len()`), column j belonging to
    /// `indices[j]`.
    ///
    /// # Panics
    /// If an index is `>= len()`.
    pub fn batch(&self, indices: &[usize]) -> (DMatrix<f64>, DMatrix<f64>) {
        let targets = match &self.targets {
            Some(t) => t.select_columns(indices),
            None => {
                let labels: Vec<usize> = indices.iter().map(|&i| self.labels[i]).collect();
                crate::system::loss::one_hot(&labels, self.n_classes)
            }
        };
        (self.inputs.select_columns(indices), targets)
    }
}

/// Checks `data.train_limit` / `data.test_limit` of a file loader: `Some(0)` is an error.
fn check_limits(train_limit: Option<usize>, test_limit: Option<usize>) -> Result<()> {
    for (field, limit) in [
        ("data.train_limit", train_limit),
        ("data.test_limit", test_limit),
    ] {
        if limit == Some(0) {
            return Err(invalid(field, 0, "at least 1, or no limit for all samples"));
        }
    }
    Ok(())
}

/// An I/O-kind error on `path` whose message states the problem.
fn file_error(path: &std::path::Path, kind: std::io::ErrorKind, message: String) -> LcsimError {
    LcsimError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(kind, message),
    }
}

/// A training set and a held-out test set.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
}

/// Fisher-Yates shuffle driven by the crate's [`Rng`].
fn shuffle(values: &mut [usize], rng: &mut Rng) {
    for i in (1..values.len()).rev() {
        // uniform() < 1, so j <= i; the min guards against rounding at the top end.
        let j = ((rng.uniform() * (i + 1) as f64) as usize).min(i);
        values.swap(i, j);
    }
}

/// A seeded random permutation of `0..n`.
pub(crate) fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    shuffle(&mut p, rng);
    p
}

/// SplitMix64 finaliser: a bijective 64-bit mix used to derive per-epoch seeds.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Splits a data set by a seeded shuffle: `round(test_fraction * N)` randomly chosen
/// samples form the test set, the rest the training set (both in shuffled order).
///
/// `test_fraction` must lie in (0, 1) and leave at least one sample on each side; otherwise
/// the error names `data.test_fraction`.
pub fn split(dataset: Dataset, test_fraction: f64, seed: u64) -> Result<Split> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(invalid(
            "data.test_fraction",
            test_fraction,
            "a number strictly between 0 and 1",
        ));
    }
    let n = dataset.len();
    let n_test = (test_fraction * n as f64).round() as usize;
    if n_test == 0 || n_test >= n {
        return Err(invalid(
            "data.test_fraction",
            test_fraction,
            &format!(
                "a fraction leaving at least one training and one test sample \
                 (round({test_fraction} * {n}) = {n_test} test samples of {n})"
            ),
        ));
    }
    let mut rng = Rng::seed_from_u64(seed);
    let perm = permutation(n, &mut rng);
    let (test_idx, train_idx) = perm.split_at(n_test);
    Ok(Split {
        train: dataset.subset(train_idx),
        test: dataset.subset(test_idx),
    })
}

/// scikit-learn's 8x8 handwritten digits (1,797 samples, 64 inputs, 10 classes) as embedded
/// in smartcore, pixels scaled from 0..16 to [0, 1], split by [`split`] with
/// `test_fraction` and `seed`.
pub fn digits(test_fraction: f64, seed: u64) -> Result<Split> {
    let ds = smartcore::dataset::digits::load_dataset();
    let (n, nx) = (ds.num_samples, ds.num_features);
    if ds.data.len() != n * nx || ds.target.len() != n {
        return Err(LcsimError::Shape {
            field: "smartcore digits data".to_string(),
            expected: format!("{n} x {nx} pixels and {n} targets"),
            found: format!("{} pixels and {} targets", ds.data.len(), ds.target.len()),
        });
    }
    // smartcore stores the samples row-major (sample r, feature c at r * nx + c): sample
    // j becomes column j.
    let inputs = DMatrix::from_fn(nx, n, |i, j| f64::from(ds.data[j * nx + i]) / 16.0);
    let labels = ds
        .target
        .iter()
        .map(|&t| {
            if t.fract() == 0.0 && (0.0..=9.0).contains(&t) {
                Ok(t as usize)
            } else {
                Err(invalid("smartcore digits target", t, "an integer 0..=9"))
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    split(
        Dataset::new(inputs, labels, 10, "digits")?,
        test_fraction,
        seed,
    )
}

// ---------------------------------------------------------------------------------------
// Mini-batches
// ---------------------------------------------------------------------------------------

/// The mini-batches of one epoch: a random permutation of `0..n` that depends only on
/// `(seed, epoch)` (so a resumed run sees the same order), cut into batches of `batch_size`
/// with a smaller last batch kept (PyTorch `drop_last=False`). Fisher-Yates with the
/// crate's [`Rng`] seeded from a SplitMix64 hash of `(seed, epoch)`. `n = 0` gives no
/// batches.
///
/// # Panics
/// If `batch_size` is 0.
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    assert!(
        batch_size > 0,
        "epoch_batches: batch_size must be at least 1"
    );
    let epoch_seed = splitmix64(splitmix64(seed) ^ epoch as u64);
    let mut rng = Rng::seed_from_u64(epoch_seed);
    permutation(n, &mut rng)
        .chunks(batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}
