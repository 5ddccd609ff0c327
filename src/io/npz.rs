//! NumPy `.npy` / `.npz` reader and writer.
//!
//! Arrays are held as `f64` in C (row-major) order: reading widens float16/32/64,
//! (u)int8..64 and bool (64-bit integers beyond 2^53 are rounded); writing always
//! produces little-endian `<f8` with the header `np.save` writes.
//!
//! The format work is done by crates: the header dict is parsed by `py_literal` (the
//! Python-literal parser `npyz` uses), type strings by [`npyz::TypeStr`], and elements
//! are decoded by npyz's readers (byte order; float16 through `half`); the `.npz` zip
//! container is the `zip` crate, with npyz's member-name helpers ([`npyz::npz`]).
//! Kept here, because npyz does not offer it:
//! - the preamble (magic, version, header length) and the checks of the dict (exactly
//!   `descr`, `fortran_order` and `shape`, like `np.load`; axis lengths whose product is
//!   addressable): `NpyFile::new` ignores extra entries, multiplies the shape unchecked
//!   (an overflow panics in debug builds) and its errors do not say what was found;
//! - reordering Fortran-order data: npyz reports the order but yields items as stored;
//! - the written header: npyz writes shapes as `(2, 3, )` / `(3, )` where NumPy writes
//!   `(2, 3)` / `(3,)`, so npyz would change the bytes of every file written;
//! - npyz's own `.npz` support (feature `npz`) is built on zip 0.6 with its default
//!   features (bzip2, zstd, AES, ...), a second, old zip next to the crate's.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::io::atomic::write_atomic;
use npyz::{DType, Deserialize, TypeChar, TypeRead, TypeStr};
use py_literal::Value;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// The first six bytes of every `.npy` file.
const MAGIC: &[u8] = b"\x93NUMPY";

/// The dtypes `parse_npy` accepts, quoted in error messages.
const SUPPORTED_DTYPES: &str = "float16/32/64 ('f2', 'f4', 'f8'), int8..64 ('i1'..'i8'), \
     uint8..64 ('u1'..'u8') and bool ('b1'), with byte order '<', '>', '=' or '|'";

/// An n-dimensional array in C (row-major) order, values widened to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Length of each axis; empty for a 0-d (scalar) array.
    pub shape: Vec<usize>,
    /// The elements, last axis varying fastest.
    pub data: Vec<f64>,
}

impl NpyArray {
    /// Builds an array, checking that `shape` has exactly `data.len()` elements.
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, NpyError> {
        let array = Self { shape, data };
        array.check()?;
        Ok(array)
    }

    /// Number of elements (1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the array has no elements (some axis has length 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fails with `ShapeMismatch` unless the shape matches the data length.
    fn check(&self) -> Result<(), NpyError> {
        // An overflowing shape can never match, so usize::MAX stands for it.
        let expected = element_count(&self.shape).unwrap_or(usize::MAX);
        if expected == self.data.len() {
            return Ok(());
        }
        Err(NpyError::ShapeMismatch {
            expected,
            found: self.data.len(),
        })
    }
}

/// Why an array could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be opened, read, written or renamed.
    #[error("I/O error on '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not a `.npy` array this module can read.
    #[error("'{}' is not a readable .npy array: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// The `.npz` zip container is invalid, holds something other than
    /// `.npy` members, or could not be written.
    #[error("'{}' is not a readable .npz archive: {reason}", path.display())]
    Zip { path: PathBuf, reason: String },
    /// The shape's element count differs from the number of values.
    #[error(
        "shape has {expected} elements but {found} values were given; \
         the product of the shape must equal the number of values"
    )]
    ShapeMismatch { expected: usize, found: usize },
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
    parse_npy(&bytes, path)
}

/// Parses the bytes of a `.npy` file; `path_for_errors` only labels errors.
pub fn parse_npy(bytes: &[u8], path_for_errors: &Path) -> Result<NpyArray, NpyError> {
    let format_error = |reason| NpyError::Format {
        path: path_for_errors.to_path_buf(),
        reason,
    };
    let (header_text, data) = split_header(bytes).map_err(format_error)?;
    let header = parse_header(header_text).map_err(format_error)?;
    let (dtype, element) = parse_dtype(&header.descr).map_err(format_error)?;
    let values = decode_data(&header, &dtype, element, data).map_err(format_error)?;
    Ok(NpyArray {
        shape: header.shape,
        data: values,
    })
}

/// Writes `array` as a `.npy` file (`<f8`, C order), atomically.
pub fn write_npy(path: &Path, array: &NpyArray) -> Result<(), NpyError> {
    array.check()?;
    let bytes = npy_bytes(array);
    write_atomic(path, |file| {
        file.write_all(&bytes).map_err(|e| io_error(path, e))
    })
}

/// Encodes `array` as `.npy` bytes: a version 1.0 header (2.0 if the header
/// would not fit in 64 KiB), `<f8` little-endian data in C order.
pub fn npy_bytes(array: &NpyArray) -> Vec<u8> {
    let dict = header_dict(&array.shape);
    // Header = dict + spaces + '\n', so the data starts at a multiple of 64.
    let header_len = |preamble: usize| {
        let unpadded = preamble + dict.len() + 1;
        dict.len() + 1 + (64 - unpadded % 64) % 64
    };
    let (version, len_field) = match u16::try_from(header_len(10)) {
        Ok(len) => (1, len.to_le_bytes().to_vec()),
        Err(_) => (2, (header_len(12) as u32).to_le_bytes().to_vec()),
    };
    let padding = header_len(8 + len_field.len()) - dict.len() - 1;
    let mut out = Vec::with_capacity(128 + 8 * array.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    out.extend_from_slice(&len_field);
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padding));
    out.push(b'\n');
    for value in &array.data {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Arrays of an .npz archive by name (the ".npy" suffix removed), in a BTreeMap.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>, NpyError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut archive = ZipArchive::new(BufReader::new(file)).map_err(|e| {
        zip_error(
            path,
            format!("not a zip file ({e}); an .npz must be a zip of '<name>.npy' members"),
        )
    })?;
    let mut arrays = BTreeMap::new();
    for index in 0..archive.len() {
        let (name, array) = read_member(&mut archive, index, path)?;
        arrays.insert(name, array);
    }
    Ok(arrays)
}

/// Writes an `.npz` archive with one stored (uncompressed) member
/// `"<name>.npy"` per array, like `np.savez`, atomically.
pub fn write_npz(path: &Path, arrays: &[(&str, &NpyArray)]) -> Result<(), NpyError> {
    for (_, array) in arrays {
        array.check()?;
    }
    write_atomic(path, |file| {
        let mut zip = ZipWriter::new(file);
        for (name, array) in arrays {
            let bytes = npy_bytes(array);
            let options = SimpleFileOptions::default()
                .compression_method(CompressionMethod::Stored)
                .large_file(bytes.len() >= u32::MAX as usize);
            let member = npyz::npz::file_name_from_array_name(name);
            zip.start_file(member.as_str(), options)
                .map_err(|e| zip_error(path, format!("cannot add member '{member}': {e}")))?;
            zip.write_all(&bytes).map_err(|e| io_error(path, e))?;
        }
        zip.finish()
            .map_err(|e| zip_error(path, format!("cannot finish the archive: {e}")))?;
        Ok(())
    })
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> NpyError {
    NpyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn zip_error(path: &Path, reason: String) -> NpyError {
    NpyError::Zip {
        path: path.to_path_buf(),
        reason,
    }
}

/// Product of the axis lengths, or None if it overflows usize.
fn element_count(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Splits a `.npy` file into its header dict text and its data bytes.
fn split_header(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if !bytes.starts_with(MAGIC) {
        let found = bytes[..bytes.len().min(6)].escape_ascii();
        return Err(format!(
            "bad magic: a .npy file starts with \\x93NUMPY, this one with \"{found}\""
        ));
    }
    let len_size = match (bytes.get(6), bytes.get(7)) {
        (Some(1), Some(0)) => 2,
        (Some(2 | 3), Some(0)) => 4,
        (Some(major), Some(minor)) => {
            return Err(format!(
                "unsupported format version {major}.{minor}; supported: 1.0, 2.0, 3.0"
            ))
        }
        _ => return Err("file ends inside the format version bytes".into()),
    };
    let len_end = 8 + len_size;
    let len_bytes = bytes
        .get(8..len_end)
        .ok_or("file ends inside the header length field")?;
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let header = len_end
        .checked_add(header_len)
        .and_then(|end| bytes.get(len_end..end))
        .ok_or_else(|| {
            format!(
                "header length {header_len} runs past the end of the file ({} bytes)",
                bytes.len()
            )
        })?;
    Ok((header, &bytes[len_end + header.len()..]))
}

/// The three entries of a `.npy` header dict.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }` with
/// `py_literal` (the parser npyz uses), insisting on exactly these three entries
/// (as `np.load` does) and on addressable, non-negative axis lengths.
fn parse_header(text: &[u8]) -> Result<Header, String> {
    let shown = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
    let malformed = |e: String| format!("malformed header {:?}: {e}", shown.trim_end());
    let dict = match dict_text(&String::from_utf8_lossy(text))
        .trim()
        .parse::<Value>()
    {
        Ok(Value::Dict(dict)) => dict,
        Ok(other) => {
            return Err(malformed(format!(
                "expected a dict, found {}",
                literal(&other)
            )))
        }
        Err(e) => return Err(malformed(condense_parse_error(&e))),
    };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    for (key, value) in dict {
        match (key.as_string().map(String::as_str), value) {
            (Some("descr"), Value::String(s)) => descr = Some(s),
            (Some("descr"), Value::List(_)) => {
                return Err(malformed(format!(
                    "structured dtypes (a list as 'descr') are not supported; \
                     supported: {SUPPORTED_DTYPES}"
                )))
            }
            (Some("fortran_order"), Value::Boolean(b)) => fortran_order = Some(b),
            (Some("shape"), Value::Tuple(dims)) => {
                let dims: Result<Vec<usize>, String> = dims.iter().map(axis_length).collect();
                shape = Some(dims.map_err(malformed)?);
            }
            _ => {
                let key = key.as_string().cloned().unwrap_or_else(|| literal(&key));
                return Err(malformed(format!(
                    "unexpected entry '{key}'; allowed: 'descr' (a dtype string), \
                     'fortran_order' (True/False), 'shape' (a tuple of integers)"
                )));
            }
        }
    }
    let missing = |key: &str| malformed(format!("no '{key}' entry"));
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// One entry of the shape tuple as an axis length.
fn axis_length(value: &Value) -> Result<usize, String> {
    value
        .as_integer()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "shape entry {:?} is not an integer between 0 and {}",
                literal(value),
                usize::MAX
            )
        })
}

/// A header value as Python source, for messages.
fn literal(value: &Value) -> String {
    value
        .format_ascii()
        .unwrap_or_else(|_| format!("{value:?}"))
}

/// The multi-line pest report of `py_literal` on one line.
fn condense_parse_error(error: &py_literal::ParseError) -> String {
    let report = error.to_string();
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let what = lines.iter().rev().find_map(|l| l.strip_prefix("= "));
    let text = match (lines.first(), what) {
        (Some(first), Some(what)) => format!("{first} {what}"),
        _ => report.clone(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("not a Python literal ({text})")
}

/// The header text up to the dict's closing brace (what follows is padding; like the
/// earlier reader, junk there is ignored), with the 'L' of Python 2 long integers (`3L`)
/// dropped and whitespace made ' ' (py_literal takes neither), outside quoted strings.
fn dict_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    let mut previous = ' ';
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == 'L' && previous.is_ascii_digit() => {
                previous = c;
                continue;
            }
            None if c == '}' => {
                out.push(c);
                break;
            }
            // Python takes any whitespace between tokens, py_literal only ' '.
            None if c.is_ascii_whitespace() => {
                out.push(' ');
                previous = ' ';
                continue;
            }
            _ => {}
        }
        out.push(c);
        previous = c;
    }
    out
}

/// The element types `parse_npy` accepts, read through npyz.
#[derive(Clone, Copy)]
enum Element {
    F16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

/// Parses a descr such as `<f8`, `>i4` or `|b1` into npyz's type string and the
/// element type; `=`, `|` or no prefix mean native byte order.
fn parse_dtype(descr: &str) -> Result<(TypeStr, Element), String> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'=' | b'|') => descr.split_at(1),
        _ => ("", descr),
    };
    let native = if cfg!(target_endian = "big") {
        ">"
    } else {
        "<"
    };
    let order = if order == "<" || order == ">" {
        order
    } else {
        native
    };
    let unsupported = || {
        format!(
            "unsupported dtype '{descr}' ({}); supported: {SUPPORTED_DTYPES}",
            describe_type_char(code.chars().next())
        )
    };
    let type_str: TypeStr = format!("{order}{code}")
        .parse()
        .map_err(|_| unsupported())?;
    let element = match (
        type_str.type_char(),
        type_str.size_field(),
        type_str.time_units(),
    ) {
        (TypeChar::Float, 2, None) => Element::F16,
        (TypeChar::Float, 4, None) => Element::F32,
        (TypeChar::Float, 8, None) => Element::F64,
        (TypeChar::Int, 1, None) => Element::I8,
        (TypeChar::Int, 2, None) => Element::I16,
        (TypeChar::Int, 4, None) => Element::I32,
        (TypeChar::Int, 8, None) => Element::I64,
        (TypeChar::Uint, 1, None) => Element::U8,
        (TypeChar::Uint, 2, None) => Element::U16,
        (TypeChar::Uint, 4, None) => Element::U32,
        (TypeChar::Uint, 8, None) => Element::U64,
        (TypeChar::Bool, 1, None) => Element::Bool,
        _ => return Err(unsupported()),
    };
    Ok((type_str, element))
}

/// Names the NumPy type family of a descr's type character.
fn describe_type_char(type_char: Option<char>) -> &'static str {
    match type_char {
        Some('c') => "complex",
        Some('O') => "Python objects",
        Some('U' | 'S' | 'a') => "strings",
        Some('V') => "raw bytes / structured",
        Some('M' | 'm') => "datetime / timedelta",
        Some('f' | 'i' | 'u' | 'b') => "unsupported item size",
        _ => "unknown type code",
    }
}

/// Decodes the data section into C-order f64 values, checking its size.
fn decode_data(
    header: &Header,
    dtype: &TypeStr,
    element: Element,
    data: &[u8],
) -> Result<Vec<f64>, String> {
    let shape = &header.shape;
    let count = element_count(shape);
    let expected = count
        .zip(dtype.num_bytes())
        .and_then(|(count, size)| count.checked_mul(size))
        .ok_or_else(|| format!("shape {shape:?} is too large to address"))?;
    if data.len() != expected {
        let problem = if data.len() < expected {
            "truncated"
        } else {
            "trailing bytes after the array"
        };
        return Err(format!(
            "{problem}: shape {shape:?} of '{}' needs {expected} data bytes, found {}",
            header.descr,
            data.len()
        ));
    }
    let count = count.unwrap_or_default();
    let values = match element {
        Element::F16 => widen(dtype, data, count, |v: npyz::half::f16| v.to_f64()),
        Element::F32 => widen::<f32>(dtype, data, count, f64::from),
        Element::F64 => widen(dtype, data, count, |v: f64| v),
        Element::I8 => widen::<i8>(dtype, data, count, f64::from),
        Element::I16 => widen::<i16>(dtype, data, count, f64::from),
        Element::I32 => widen::<i32>(dtype, data, count, f64::from),
        Element::I64 => widen(dtype, data, count, |v: i64| v as f64),
        Element::U8 => widen::<u8>(dtype, data, count, f64::from),
        Element::U16 => widen::<u16>(dtype, data, count, f64::from),
        Element::U32 => widen::<u32>(dtype, data, count, f64::from),
        Element::U64 => widen(dtype, data, count, |v: u64| v as f64),
        // Any nonzero byte is True, as the earlier reader had it (npyz refuses bytes other
        // than 0 and 1).
        Element::Bool => Ok(data.iter().map(|&b| f64::from(u8::from(b != 0))).collect()),
    }?;
    if header.fortran_order {
        return Ok(fortran_to_c(shape, &values));
    }
    Ok(values)
}

/// Reads `count` items of `dtype` with npyz's reader for `T` and widens them.
fn widen<T: Deserialize>(
    dtype: &TypeStr,
    mut data: &[u8],
    count: usize,
    to_f64: impl Fn(T) -> f64,
) -> Result<Vec<f64>, String> {
    let reader = T::reader(&DType::new_scalar(dtype.clone())).map_err(|e| e.to_string())?;
    (0..count)
        .map(|_| {
            reader
                .read_one(&mut data)
                .map(&to_f64)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Reorders column-major `data` of `shape` into row-major order.
fn fortran_to_c(shape: &[usize], data: &[f64]) -> Vec<f64> {
    if data.is_empty() {
        return Vec::new(); // also keeps the stride products below from overflowing
    }
    // In column-major order axis k steps by the product of the axes before it.
    let strides: Vec<usize> = shape
        .iter()
        .scan(1, |acc, &d| {
            let stride = *acc;
            *acc *= d;
            Some(stride)
        })
        .collect();
    let mut index = vec![0; shape.len()];
    let mut out = Vec::with_capacity(data.len());
    for _ in 0..data.len() {
        out.push(
            data[index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>()],
        );
        // Advance the row-major multi-index, last axis fastest.
        for (i, &d) in index.iter_mut().zip(shape).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    out
}

/// The header dict `npy_bytes` writes, e.g. `{'descr': '<f8', ..., 'shape': (3,), }`.
fn header_dict(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match shape.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}")
}

/// Reads member `index` of an `.npz` archive as (name without ".npy", array).
fn read_member<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    index: usize,
    path: &Path,
) -> Result<(String, NpyArray), NpyError> {
    let mut member = archive
        .by_index(index)
        .map_err(|e| zip_error(path, format!("cannot open member #{index}: {e}")))?;
    let name = member
        .name()
        .map_err(|e| zip_error(path, format!("member #{index} has a bad name: {e}")))?
        .into_owned();
    let Some(stem) = npyz::npz::array_name_from_file_name(&name) else {
        return Err(zip_error(
            path,
            format!(
                "member '{name}' is not a .npy file; an .npz may only hold '<name>.npy' members"
            ),
        ));
    };
    let method = member.compression();
    if !matches!(
        method,
        CompressionMethod::Stored | CompressionMethod::Deflated
    ) {
        return Err(zip_error(
            path,
            format!("member '{name}' uses compression {method}; supported: stored (np.savez), deflated (np.savez_compressed)"),
        ));
    }
    let mut bytes = Vec::new();
    member
        .read_to_end(&mut bytes)
        .map_err(|e| zip_error(path, format!("cannot read member '{name}': {e}")))?;
    let member_path = PathBuf::from(format!("{} (member {name})", path.display()));
    Ok((stem.to_string(), parse_npy(&bytes, &member_path)?))
}
