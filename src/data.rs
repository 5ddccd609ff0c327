//! Data sets for training and testing: scikit-learn's 8x8 digits (embedded in smartcore),
//! MNIST from IDX files (gzipped or raw), and two small synthetic tasks (XOR, two moons).
//!
//! A [`Dataset`] holds one sample per column (`n_x x N`, pixels scaled to [0, 1]) and integer
//! labels; [`Dataset::batch`] returns the inputs and one-hot targets of a mini-batch. All
//! randomness (splits, synthetic noise, batch order) comes from the crate's seeded [`Rng`],
//! so the same seed gives the same data on every platform.
//!
//! The IDX reader never panics on corrupt input: every header field is checked, sizes are
//! computed with checked arithmetic and capped, data are read incrementally (a header that
//! claims a huge size allocates nothing up front), and the file must end exactly where the
//! header says. Errors are [`LcsimError::Io`] naming the file and the problem.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, io_error, LcsimError, Result};
use crate::numerics::rng::Rng;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest data section (bytes, after decompression) the IDX reader accepts: 4 GiB, far
/// above full MNIST (47 MB); larger header claims are rejected as corrupt.
pub const MAX_IDX_DATA_BYTES: u64 = 1 << 32;
/// Number of MNIST classes; IDX labels above `MNIST_CLASSES - 1` are rejected.
pub const MNIST_CLASSES: usize = 10;

/// Standard MNIST file names (without `.gz`): train images, train labels, test images,
/// test labels.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Where the training and test data come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// scikit-learn's 8x8 handwritten digits (1,797 samples, 64 inputs, 10 classes).
    Digits,
    /// MNIST from the four standard IDX files (784 inputs, 10 classes).
    Mnist,
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
    /// and fewshot-mnist (1, 28, 28); `None` for the sources that are not images (xor,
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
            DataSource::Xor | DataSource::TwoMoons | DataSource::Sinusoid => None,
        }
    }

    /// Side of the square images of an image source: height = width of
    /// [`DataSource::image_shape`] (8 for digits, 28 for MNIST), `None` for the others.
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
// IDX files
// ---------------------------------------------------------------------------------------

/// Images of an IDX image file (magic 0x00000803).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` bytes: image after image, each row-major.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels of image `k` (`rows * cols` bytes, row-major).
    ///
    /// # Panics
    /// If `k >= count`.
    pub fn image(&self, k: usize) -> &[u8] {
        let size = self.rows * self.cols;
        &self.pixels[k * size..(k + 1) * size]
    }
}

/// An I/O-kind error on `path` whose message states the problem.
fn idx_error(path: &Path, kind: io::ErrorKind, message: String) -> LcsimError {
    LcsimError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(kind, message),
    }
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An opened IDX file: the (possibly decompressing) reader and whether it is gzipped.
struct IdxStream {
    reader: Box<dyn Read>,
    gzipped: bool,
}

impl IdxStream {
    fn open(path: &Path) -> Result<IdxStream> {
        let mut file = File::open(path).map_err(io_error(path))?;
        let mut head = [0u8; 2];
        let k = read_up_to(&mut file, &mut head).map_err(io_error(path))?;
        file.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
        let gzipped = k == 2 && head == [0x1f, 0x8b];
        let reader: Box<dyn Read> = if gzipped {
            Box::new(MultiGzDecoder::new(BufReader::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        Ok(IdxStream { reader, gzipped })
    }

    /// Where the byte counts of an error message are measured.
    fn unit(&self) -> &'static str {
        if self.gzipped {
            "bytes after gzip decompression"
        } else {
            "bytes"
        }
    }

    /// Wraps a read failure; in a gzipped file it means a corrupt or cut stream.
    fn read_failed(&self, path: &Path, what: &str, e: io::Error) -> LcsimError {
        let message = if self.gzipped {
            format!("gzip stream is corrupt or cut short while reading the IDX {what}: {e}")
        } else {
            format!("reading the IDX {what} failed: {e}")
        };
        idx_error(path, e.kind(), message)
    }
}

/// Reads an IDX file of unsigned bytes with magic `magic` (`0x0000_08_0d`, d dimensions):
/// returns the dimensions and exactly `prod(dims)` data bytes.
fn read_idx(path: &Path, magic: u32, kind: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let invalid_data = |message: String| idx_error(path, io::ErrorKind::InvalidData, message);
    let mut stream = IdxStream::open(path)?;
    let unit = stream.unit();
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;

    // Magic number.
    let mut head = [0u8; 4];
    let k = read_up_to(&mut stream.reader, &mut head)
        .map_err(|e| stream.read_failed(path, "header", e))?;
    if k == 0 {
        return Err(invalid_data(format!(
            "file is empty (0 {unit}); expected an IDX {kind} file with a {header_len}-byte header"
        )));
    }
    if k < 4 {
        return Err(invalid_data(format!(
            "file ends inside the IDX header: expected at least {header_len} {unit}, found {k}"
        )));
    }
    let found_magic = u32::from_be_bytes(head);
    if found_magic != magic {
        let hint = match found_magic {
            IDX_IMAGES_MAGIC => " (an IDX image file)",
            IDX_LABELS_MAGIC => " (an IDX label file)",
            m if m >> 16 == 0 && (m >> 8) & 0xff == 0x08 => " (unsigned bytes, other dimensions)",
            m if m >> 16 == 0 => " (IDX, but not of unsigned bytes)",
            _ => " (not an IDX file)",
        };
        return Err(invalid_data(format!(
            "wrong magic number for an IDX {kind} file: found 0x{found_magic:08x}{hint}, \
             expected 0x{magic:08x} (unsigned bytes, {ndims} dimension{})",
            if ndims == 1 { "" } else { "s" }
        )));
    }

    // Dimension sizes.
    let mut dim_bytes = vec![0u8; 4 * ndims];
    let k = read_up_to(&mut stream.reader, &mut dim_bytes)
        .map_err(|e| stream.read_failed(path, "header", e))?;
    if k < dim_bytes.len() {
        return Err(invalid_data(format!(
            "file ends inside the IDX header: expected at least {header_len} {unit}, found {}",
            4 + k
        )));
    }
    let dims: Vec<u64> = dim_bytes
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let dims_text = dims
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" x ");
    let product = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let data_len = match product {
        Some(len) if len <= MAX_IDX_DATA_BYTES => len,
        _ => {
            let claimed = product.map_or("more than 2^64".to_string(), |len| len.to_string());
            return Err(invalid_data(format!(
                "corrupt IDX header: dimensions {dims_text} claim {claimed} data bytes, \
                 above the limit of {MAX_IDX_DATA_BYTES} bytes"
            )));
        }
    };
    let expected_total = header_len as u64 + data_len;

    // Data: read at most one byte more than claimed; never pre-allocate more than a
    // modest amount, so a lying header cannot exhaust memory.
    let mut data = Vec::with_capacity(data_len.min(1 << 26) as usize);
    (&mut stream.reader)
        .take(data_len + 1)
        .read_to_end(&mut data)
        .map_err(|e| stream.read_failed(path, "data", e))?;
    let got = data.len() as u64;
    if got < data_len {
        return Err(invalid_data(format!(
            "truncated IDX {kind} file: expected {expected_total} {unit} (header {dims_text}), \
             found {}",
            header_len as u64 + got
        )));
    }
    if got > data_len {
        let rest = io::copy(&mut stream.reader, &mut io::sink())
            .map_err(|e| stream.read_failed(path, "trailing data", e))?;
        return Err(invalid_data(format!(
            "trailing bytes after the IDX {kind} data: expected {expected_total} {unit} \
             (header {dims_text}), found {}",
            expected_total + 1 + rest
        )));
    }
    let dims = dims.into_iter().map(|d| d as usize).collect();
    Ok((dims, data))
}

/// Reads an IDX image file (magic 0x00000803: count x rows x cols unsigned bytes), gzipped
/// (recognised by the magic bytes 1f 8b, whatever the file name) or raw.
///
/// Errors name the file and the problem: wrong magic number, zero rows or columns, sizes
/// above [`MAX_IDX_DATA_BYTES`], a cut or corrupt gzip stream, and a length that differs
/// from what the header says (truncated or trailing bytes; expected vs found bytes).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let (dims, pixels) = read_idx(path, IDX_IMAGES_MAGIC, "image")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(idx_error(
            path,
            io::ErrorKind::InvalidData,
            format!("IDX image file with empty images: {count} x {rows} x {cols}"),
        ));
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX label file (magic 0x00000801: count unsigned bytes), gzipped or raw, and
/// checks that every label is a digit class 0..=9. Errors as for [`read_idx_images`].
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, IDX_LABELS_MAGIC, "label")?;
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= MNIST_CLASSES)
    {
        return Err(idx_error(
            path,
            io::ErrorKind::InvalidData,
            format!(
                "label {l} at index {i} is outside 0..={} (MNIST has {MNIST_CLASSES} classes)",
                MNIST_CLASSES - 1
            ),
        ));
    }
    Ok(labels)
}

/// The path of MNIST file `base` in `dir`: `base.gz` if present, else `base`.
fn find_mnist_file(dir: &Path, base: &str) -> Option<PathBuf> {
    [format!("{base}.gz"), base.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

/// Images and labels of one MNIST part as a data set, the first `limit` samples.
fn mnist_part(
    images_path: &Path,
    labels_path: &Path,
    limit: Option<usize>,
    name: &str,
) -> Result<(Dataset, (usize, usize))> {
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if images.count == 0 {
        return Err(LcsimError::Shape {
            field: format!("MNIST {name} images ({})", images_path.display()),
            expected: "at least 1 image".into(),
            found: format!("0 images of {} x {}", images.rows, images.cols),
        });
    }
    if images.count != labels.len() {
        return Err(LcsimError::Shape {
            field: format!("MNIST {name} labels ({})", labels_path.display()),
            expected: format!(
                "{} labels, one per image in {}",
                images.count,
                images_path.display()
            ),
            found: format!("{} labels", labels.len()),
        });
    }
    let n = limit.map_or(images.count, |l| l.min(images.count));
    let size = images.rows * images.cols;
    let inputs = DMatrix::from_iterator(
        size,
        n,
        images.pixels[..n * size]
            .iter()
            .map(|&p| f64::from(p) / 255.0),
    );
    let labels = labels[..n].iter().map(|&l| usize::from(l)).collect();
    let shape = (images.rows, images.cols);
    Ok((Dataset::new(inputs, labels, MNIST_CLASSES, "mnist")?, shape))
}

/// MNIST from the four standard IDX files in `dir` (each as `NAME.gz` or uncompressed
/// `NAME`, see [`MNIST_FILES`]); pixels scaled from 0..255 to [0, 1] like torchvision's
/// `ToTensor`, images flattened row-major into 784-input columns.
///
/// `train_limit` / `test_limit` keep the first N samples of each file (all of them when N
/// exceeds the count; `Some(0)` is an error). Errors: a missing file (the message lists the
/// names looked for and the directory), any IDX problem (see [`read_idx_images`]), image
/// and label counts that disagree, a file without images, or train and test images of
/// different shapes (rows x cols, not only pixel counts).
pub fn mnist(dir: &Path, train_limit: Option<usize>, test_limit: Option<usize>) -> Result<Split> {
    for (field, limit) in [
        ("data.train_limit", train_limit),
        ("data.test_limit", test_limit),
    ] {
        if limit == Some(0) {
            return Err(invalid(field, 0, "at least 1, or no limit for all samples"));
        }
    }
    let found: Vec<Option<PathBuf>> = MNIST_FILES
        .iter()
        .map(|base| find_mnist_file(dir, base))
        .collect();
    let missing: Vec<String> = MNIST_FILES
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(base, _)| format!("{base}.gz or {base}"))
        .collect();
    if !missing.is_empty() {
        let situation = if dir.is_dir() {
            "MNIST files not found in the directory"
        } else if dir.exists() {
            "data.mnist_dir is a file, not a directory"
        } else {
            "the MNIST directory does not exist"
        };
        return Err(LcsimError::Io {
            path: dir.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{situation}: looked for {} in {} (the four standard IDX files, \
                     gzipped or not)",
                    missing.join(", "),
                    dir.display()
                ),
            ),
        });
    }
    let paths: Vec<PathBuf> = found.into_iter().flatten().collect();
    let (train, (rows, cols)) = mnist_part(&paths[0], &paths[1], train_limit, "train")?;
    let (test, test_shape) = mnist_part(&paths[2], &paths[3], test_limit, "test")?;
    if (rows, cols) != test_shape {
        return Err(LcsimError::Shape {
            field: format!("MNIST test images ({})", paths[2].display()),
            expected: format!("{rows} x {cols} images, like {}", paths[0].display()),
            found: format!("{} x {} images", test_shape.0, test_shape.1),
        });
    }
    Ok(Split { train, test })
}

// ---------------------------------------------------------------------------------------
// Synthetic tasks
// ---------------------------------------------------------------------------------------

fn check_noise(noise: f64) {
    assert!(
        noise.is_finite() && noise >= 0.0,
        "synthetic data noise must be a finite number >= 0, got {noise}"
    );
}

/// Puts the columns of `inputs` and the `labels` into a seeded random order.
fn shuffled_dataset(
    inputs: DMatrix<f64>,
    labels: Vec<usize>,
    name: &str,
    rng: &mut Rng,
) -> Dataset {
    let order = permutation(labels.len(), rng);
    Dataset {
        inputs: inputs.select_columns(&order),
        labels: order.iter().map(|&i| labels[i]).collect(),
        n_classes: 2,
        name: name.to_string(),
        targets: None,
    }
}

/// The XOR task: `n` 2-D points, the k-th around corner `k mod 4` of the unit square
/// ((0,0), (0,1), (1,0), (1,1)) plus Gaussian noise of standard deviation `noise`, label =
/// XOR of the corner's bits (2 classes, counts differing by at most 1), in seeded random
/// order.
///
/// # Panics
/// If `noise` is negative or not finite.
pub fn xor(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::seed_from_u64(seed);
    let mut inputs = DMatrix::zeros(2, n);
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let (a, b) = ((k >> 1) & 1, k & 1);
        inputs[(0, k)] = a as f64 + noise * rng.normal();
        inputs[(1, k)] = b as f64 + noise * rng.normal();
        labels.push(a ^ b);
    }
    shuffled_dataset(inputs, labels, "xor", &mut rng)
}

/// Two interleaving half circles like scikit-learn's `make_moons`: `n / 2` points (rounded
/// down) evenly spaced on the upper arc `(cos t, sin t)` (class 0), the rest on the lower
/// arc `(1 - cos t, 0.5 - sin t)` (class 1), t in [0, pi], plus Gaussian noise of standard
/// deviation `noise` in those units; then scaled by 1/3 with the aspect ratio kept,
/// `x -> (x + 1) / 3`, `y -> (y + 0.5) / 3 + 0.25`, so the noiseless moons fill
/// [0, 1] x [0.25, 0.75]. Seeded random order.
///
/// # Panics
/// If `noise` is negative or not finite.
pub fn two_moons(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::seed_from_u64(seed);
    let n_outer = n / 2;
    let n_inner = n - n_outer;
    let angle = |i: usize, m: usize| {
        if m > 1 {
            std::f64::consts::PI * i as f64 / (m - 1) as f64
        } else {
            0.0
        }
    };
    let mut inputs = DMatrix::zeros(2, n);
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let (x, y, label) = if k < n_outer {
            let t = angle(k, n_outer);
            (t.cos(), t.sin(), 0)
        } else {
            let t = angle(k - n_outer, n_inner);
            (1.0 - t.cos(), 0.5 - t.sin(), 1)
        };
        let x = x + noise * rng.normal();
        let y = y + noise * rng.normal();
        inputs[(0, k)] = (x + 1.0) / 3.0;
        inputs[(1, k)] = (y + 0.5) / 3.0 + 0.25;
        labels.push(label);
    }
    shuffled_dataset(inputs, labels, "two-moons", &mut rng)
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
