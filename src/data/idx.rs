//! MNIST from IDX files (gzipped or raw).
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

use super::{check_limits, file_error, Dataset, Split};
use crate::error::{io_error, LcsimError, Result};

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
        file_error(path, e.kind(), message)
    }
}

/// Reads an IDX file of unsigned bytes with magic `magic` (`0x0000_08_0d`, d dimensions):
/// returns the dimensions and exactly `prod(dims)` data bytes.
fn read_idx(path: &Path, magic: u32, kind: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let invalid_data = |message: String| file_error(path, io::ErrorKind::InvalidData, message);
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
        return Err(file_error(
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
        return Err(file_error(
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
    check_limits(train_limit, test_limit)?;
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
