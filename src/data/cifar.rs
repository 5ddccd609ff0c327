//! CIFAR-10 from its standard binary batches (`cifar-10-binary.tar.gz`, unpacked into
//! `cifar-10-batches-bin/`): `data_batch_1.bin` ... `data_batch_5.bin` (training) and
//! `test_batch.bin` (test), each a sequence of 3073-byte records: 1 label byte (0..=9),
//! then 3072 pixel bytes, the red, green and blue planes, each 32x32 row-major. A record's
//! pixels are therefore already in [`ImageShape`]'s column layout, (c * 32 + y) * 32 + x.
//!
//! The reader never panics on corrupt input: every file's length is checked against the
//! record size before anything is read, and every label read is checked. Errors are
//! [`crate::error::LcsimError::Io`] naming the file and the problem.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use nalgebra::DMatrix;

use super::{check_limits, file_error, Dataset, ImageShape, Split};
use crate::error::{io_error, Result};

/// Shape of a CIFAR-10 image: 3 channels (red, green, blue) of 32 x 32 pixels.
pub const CIFAR10_SHAPE: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};
/// Bytes of one record: the label byte and the 3 x 32 x 32 pixel bytes.
pub const CIFAR10_RECORD_BYTES: usize = 1 + 3 * 32 * 32;
/// Records in each file of the standard distribution (smaller files are read too).
pub const CIFAR10_RECORDS_PER_FILE: usize = 10_000;
/// Number of CIFAR-10 classes; label bytes above `CIFAR10_CLASSES - 1` are rejected.
pub const CIFAR10_CLASSES: usize = 10;
/// The five training batches, read in this order.
pub const CIFAR10_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch.
pub const CIFAR10_TEST_FILE: &str = "test_batch.bin";

/// Records of a CIFAR-10 binary batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarBatch {
    /// Class of each record read, each `< CIFAR10_CLASSES`.
    pub labels: Vec<u8>,
    /// `3072` bytes per record read, in file order (red, green, blue planes, row-major).
    pub pixels: Vec<u8>,
    /// Records in the whole file (file length / 3073), read or not.
    pub records_in_file: usize,
}

/// The number of records in the CIFAR-10 batch file at `path`, from its length alone:
/// errors for a missing path, a directory, an empty file and a length that is not a
/// multiple of [`CIFAR10_RECORD_BYTES`] (the message gives the length and what is allowed).
pub fn cifar_batch_records(path: &Path) -> Result<usize> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(file_error(
                path,
                io::ErrorKind::NotFound,
                "CIFAR-10 batch file does not exist".into(),
            ))
        }
        Err(e) => return Err(io_error(path)(e)),
    };
    if meta.is_dir() {
        return Err(file_error(
            path,
            io::ErrorKind::InvalidInput,
            "is a directory, expected a CIFAR-10 binary batch file".into(),
        ));
    }
    let len = meta.len();
    let record = CIFAR10_RECORD_BYTES as u64;
    let allowed = format!(
        "allowed: a positive multiple of the record size {record} (1 label byte + 3072 pixel \
         bytes), {} for a standard batch of {CIFAR10_RECORDS_PER_FILE} records",
        record * CIFAR10_RECORDS_PER_FILE as u64
    );
    if len == 0 {
        return Err(file_error(
            path,
            io::ErrorKind::InvalidData,
            format!("CIFAR-10 batch file is empty (0 bytes); {allowed}"),
        ));
    }
    if !len.is_multiple_of(record) {
        let hint = if len.is_multiple_of(record + 1) {
            " (a multiple of 3074: CIFAR-100's format with 2 label bytes?)"
        } else {
            ""
        };
        return Err(file_error(
            path,
            io::ErrorKind::InvalidData,
            format!(
                "CIFAR-10 batch file of {len} bytes is not a whole number of records: \
                 {} records and {} bytes left over{hint}; {allowed}",
                len / record,
                len % record
            ),
        ));
    }
    usize::try_from(len / record).map_err(|_| {
        file_error(
            path,
            io::ErrorKind::InvalidData,
            format!("CIFAR-10 batch file of {len} bytes is too large for this machine"),
        )
    })
}

/// Reads the first `limit` records (all when `None` or above the count) of the CIFAR-10
/// binary batch file at `path`, after checking its length ([`cifar_batch_records`]); every
/// label read must be 0..=9 (the error names the record and its byte offset).
pub fn read_cifar_batch(path: &Path, limit: Option<usize>) -> Result<CifarBatch> {
    let records_in_file = cifar_batch_records(path)?;
    let n = limit.map_or(records_in_file, |l| l.min(records_in_file));
    let pixels_per_record = CIFAR10_RECORD_BYTES - 1;
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut labels = Vec::with_capacity(n);
    let mut pixels = vec![0u8; n * pixels_per_record];
    let mut label = [0u8; 1];
    for (i, image) in pixels.chunks_exact_mut(pixels_per_record).enumerate() {
        reader
            .read_exact(&mut label)
            .and_then(|()| reader.read_exact(image))
            .map_err(|e| {
                file_error(
                    path,
                    e.kind(),
                    format!("reading CIFAR-10 record {i} failed (file changed while read?): {e}"),
                )
            })?;
        if usize::from(label[0]) >= CIFAR10_CLASSES {
            return Err(file_error(
                path,
                io::ErrorKind::InvalidData,
                format!(
                    "label byte {} of record {i} (byte offset {}) is outside 0..={} \
                     (CIFAR-10 has {CIFAR10_CLASSES} classes)",
                    label[0],
                    i * CIFAR10_RECORD_BYTES,
                    CIFAR10_CLASSES - 1
                ),
            ));
        }
        labels.push(label[0]);
    }
    Ok(CifarBatch {
        labels,
        pixels,
        records_in_file,
    })
}

/// One part (train or test) of CIFAR-10 from `files` in order: the first `limit` records,
/// pixels scaled from 0..255 to [0, 1].
fn cifar_part(files: &[&Path], limit: Option<usize>) -> Result<Dataset> {
    let mut labels = Vec::new();
    let mut pixels = Vec::new();
    for path in files {
        let wanted = limit.map(|l| l - labels.len());
        if wanted == Some(0) {
            break;
        }
        let batch = read_cifar_batch(path, wanted)?;
        labels.extend(batch.labels.iter().map(|&l| usize::from(l)));
        pixels.extend_from_slice(&batch.pixels);
    }
    let inputs = DMatrix::from_iterator(
        CIFAR10_SHAPE.len(),
        labels.len(),
        pixels.iter().map(|&p| f64::from(p) / 255.0),
    );
    Dataset::new(inputs, labels, CIFAR10_CLASSES, "cifar10")
}

/// CIFAR-10 from the binary batches in `dir`: training = `data_batch_1.bin` ...
/// `data_batch_5.bin` in that order, test = `test_batch.bin`; pixels scaled from 0..255 to
/// [0, 1] (as [`super::mnist`] and torchvision's `ToTensor`, no mean/std normalisation),
/// one image per 3072-input column in [`ImageShape`]'s layout (channel, row, column), 10
/// classes.
///
/// `train_limit` / `test_limit` keep the first N records (all of them when N exceeds the
/// count; `Some(0)` is an error); only the records kept are read, but the existence and
/// length of all six files are checked first. Errors name the directory or the file: a
/// missing directory or one that is a file, missing files (listed together), a batch that
/// is a directory, and any problem of [`read_cifar_batch`].
pub fn cifar10(dir: &Path, train_limit: Option<usize>, test_limit: Option<usize>) -> Result<Split> {
    check_limits(train_limit, test_limit)?;
    let not_a_dir = |situation: &str| {
        file_error(
            dir,
            io::ErrorKind::NotFound,
            format!(
                "data.cifar_dir {situation}: it must name the directory of the CIFAR-10 binary \
                 batches ({} and {CIFAR10_TEST_FILE}, from cifar-10-binary.tar.gz: \
                 cifar-10-batches-bin)",
                CIFAR10_TRAIN_FILES.join(", ")
            ),
        )
    };
    if dir.is_file() {
        return Err(not_a_dir("is a file, not a directory"));
    }
    if !dir.is_dir() {
        return Err(not_a_dir("does not exist"));
    }
    let names: Vec<&str> = CIFAR10_TRAIN_FILES
        .iter()
        .copied()
        .chain([CIFAR10_TEST_FILE])
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !dir.join(name).exists())
        .collect();
    if !missing.is_empty() {
        return Err(file_error(
            dir,
            io::ErrorKind::NotFound,
            format!(
                "CIFAR-10 files not found in the directory: {} (the binary version, \
                 cifar-10-binary.tar.gz, not the python or matlab one; nothing is downloaded)",
                missing.join(", ")
            ),
        ));
    }
    let paths: Vec<std::path::PathBuf> = names.iter().map(|name| dir.join(name)).collect();
    for path in &paths {
        cifar_batch_records(path)?;
    }
    let path_refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let (train_files, test_file) = path_refs.split_at(CIFAR10_TRAIN_FILES.len());
    Ok(Split {
        train: cifar_part(train_files, train_limit)?,
        test: cifar_part(test_file, test_limit)?,
    })
}
