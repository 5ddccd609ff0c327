//! Minimal NumPy `.npy` / `.npz` reader and writer.
//!
//! Written from the NPY format specification (header versions 1.0, 2.0 and
//! 3.0). Arrays are held as `f64` in C (row-major) order: reading widens
//! float16/32/64, (u)int8..64 and bool (64-bit integers beyond 2^53 are
//! rounded); writing always produces little-endian `<f8`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let dtype = Dtype::parse(&header.descr).map_err(format_error)?;
    let values = decode_data(&header, &dtype, data).map_err(format_error)?;
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
            zip.start_file(format!("{name}.npy"), options)
                .map_err(|e| zip_error(path, format!("cannot add member '{name}.npy': {e}")))?;
            zip.write_all(&bytes).map_err(|e| io_error(path, e))?;
        }
        zip.finish()
            .map_err(|e| zip_error(path, format!("cannot finish the archive: {e}")))?;
        Ok(())
    })
}

fn io_error(path: &Path, source: std::io::Error) -> NpyError {
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
    let version = (bytes.get(6), bytes.get(7));
    let len_size = match version {
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

/// A value of the header's Python-literal dict.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &[u8]) -> Result<Header, String> {
    let shown = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
    let malformed = |e: String| format!("malformed header {:?}: {e}", shown.trim_end());
    let mut cursor = Cursor { text, pos: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    cursor.expect(b'{').map_err(malformed)?;
    while !cursor.eat(b'}') {
        let key = cursor.string().map_err(malformed)?;
        cursor.expect(b':').map_err(malformed)?;
        match (key.as_str(), cursor.value().map_err(malformed)?) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
            ("shape", Literal::Tuple(t)) => shape = Some(t),
            _ => {
                return Err(malformed(format!(
                    "unexpected entry '{key}'; allowed: 'descr' (a dtype string), \
                     'fortran_order' (True/False), 'shape' (a tuple of integers)"
                )))
            }
        }
        if !cursor.eat(b',') {
            cursor.expect(b'}').map_err(malformed)?;
            break;
        }
    }
    let missing = |key: &str| malformed(format!("no '{key}' entry"));
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// A position in the header text; every read skips leading whitespace.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The next non-space byte, without consuming it.
    fn peek(&mut self) -> Option<u8> {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        self.text.get(self.pos).copied()
    }

    /// Consumes `c` if it comes next.
    fn eat(&mut self, c: u8) -> bool {
        let found = self.peek() == Some(c);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            return Ok(());
        }
        Err(format!("expected '{}' at byte {}", c as char, self.pos))
    }

    /// A run of letters, digits, '_', '+' or '-' (a number or True/False).
    fn word(&mut self) -> String {
        self.peek();
        let start = self.pos;
        let is_word = |b: &u8| b.is_ascii_alphanumeric() || b"_+-".contains(b);
        while self.text.get(self.pos).is_some_and(is_word) {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.pos]).into_owned()
    }

    /// A single- or double-quoted string (NPY headers need no escapes).
    fn string(&mut self) -> Result<String, String> {
        let quote = self.peek().filter(|q| *q == b'\'' || *q == b'"');
        let quote =
            quote.ok_or_else(|| format!("expected a quoted string at byte {}", self.pos))?;
        let rest = &self.text[self.pos + 1..];
        let len = rest
            .iter()
            .position(|&b| b == quote)
            .ok_or("unterminated string")?;
        self.pos += len + 2;
        Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
    }

    fn value(&mut self) -> Result<Literal, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Literal::Str),
            Some(b'(') => self.tuple().map(Literal::Tuple),
            Some(b'[') => Err(format!(
                "structured dtypes (a list as 'descr') are not supported; supported: {SUPPORTED_DTYPES}"
            )),
            _ => match self.word().as_str() {
                "True" => Ok(Literal::Bool(true)),
                "False" => Ok(Literal::Bool(false)),
                other => Err(format!(
                    "unexpected value {other:?} at byte {}; expected a string, True/False or a tuple",
                    self.pos
                )),
            },
        }
    }

    /// A tuple of non-negative integers such as `()`, `(3,)` or `(2, 3)`.
    fn tuple(&mut self) -> Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        while !self.eat(b')') {
            let word = self.word();
            // Python 2 wrote long integers with an 'L' suffix.
            let digits = word.strip_suffix('L').unwrap_or(&word);
            let dim = digits.parse().map_err(|_| {
                format!(
                    "shape entry {word:?} is not an integer between 0 and {}",
                    usize::MAX
                )
            })?;
            dims.push(dim);
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

/// The element kinds `parse_npy` accepts.
#[derive(Clone, Copy)]
enum Kind {
    Float,
    Int,
    Uint,
    Bool,
}

/// An accepted dtype: kind, item size in bytes and byte order.
struct Dtype {
    kind: Kind,
    size: usize,
    big_endian: bool,
}

impl Dtype {
    /// Parses a descr such as `<f8`, `>i4` or `|b1`.
    fn parse(descr: &str) -> Result<Self, String> {
        let (order, code) = match descr.as_bytes().first() {
            Some(b'<' | b'>' | b'=' | b'|') => descr.split_at(1),
            _ => ("", descr),
        };
        let big_endian = match order {
            ">" => true,
            "<" => false,
            _ => cfg!(target_endian = "big"), // '=', '|' or none: native
        };
        let type_char = code.chars().next();
        let size = code.get(1..).and_then(|s| s.parse::<usize>().ok());
        let (kind, size) = match (type_char, size) {
            (Some('f'), Some(s @ (2 | 4 | 8))) => (Kind::Float, s),
            (Some('i'), Some(s @ (1 | 2 | 4 | 8))) => (Kind::Int, s),
            (Some('u'), Some(s @ (1 | 2 | 4 | 8))) => (Kind::Uint, s),
            (Some('b'), Some(1)) => (Kind::Bool, 1),
            _ => {
                return Err(format!(
                    "unsupported dtype '{descr}' ({}); supported: {SUPPORTED_DTYPES}",
                    describe_type_char(type_char)
                ))
            }
        };
        Ok(Self {
            kind,
            size,
            big_endian,
        })
    }

    /// Widens one item (exactly `self.size` bytes) to f64.
    fn decode(&self, item: &[u8]) -> f64 {
        let mut little = [0u8; 8];
        little[..self.size].copy_from_slice(item);
        if self.big_endian {
            little[..self.size].reverse();
        }
        let raw = u64::from_le_bytes(little);
        let unused_bits = 64 - 8 * self.size as u32;
        match (self.kind, self.size) {
            (Kind::Float, 2) => f16_to_f64(raw as u16),
            (Kind::Float, 4) => f64::from(f32::from_bits(raw as u32)),
            (Kind::Float, _) => f64::from_bits(raw),
            // Shift the sign bit to the top and back to sign-extend.
            (Kind::Int, _) => ((raw << unused_bits) as i64 >> unused_bits) as f64,
            (Kind::Uint, _) => raw as f64,
            (Kind::Bool, _) => f64::from(u8::from(raw != 0)),
        }
    }
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

/// Converts IEEE 754 half-precision bits to f64.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24), // zero and subnormals
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// Decodes the data section into C-order f64 values, checking its size.
fn decode_data(header: &Header, dtype: &Dtype, data: &[u8]) -> Result<Vec<f64>, String> {
    let shape = &header.shape;
    let expected = element_count(shape)
        .and_then(|count| count.checked_mul(dtype.size))
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
    let values: Vec<f64> = data
        .chunks_exact(dtype.size)
        .map(|item| dtype.decode(item))
        .collect();
    if header.fortran_order {
        return Ok(fortran_to_c(shape, &values));
    }
    Ok(values)
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
    let Some(stem) = name.strip_suffix(".npy") else {
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

/// Writes `bytes` to `path` atomically (temporary file, sync, rename), like the array writers.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), NpyError> {
    write_atomic(path, |file| {
        file.write_all(bytes).map_err(|e| io_error(path, e))
    })
}

/// Writes a file through `fill` under a temporary name in the same directory,
/// then renames it over `path`, so `path` never holds a half-written file.
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), NpyError>,
) -> Result<(), NpyError> {
    let temp = temp_path(path);
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| io_error(path, e))?;
    let written = fill(&mut file).and_then(|()| file.sync_all().map_err(|e| io_error(path, e)));
    drop(file); // close before renaming (required on Windows)
    let result = written.and_then(|()| fs::rename(&temp, path).map_err(|e| io_error(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp); // best effort: the error that matters is `result`
    }
    result
}

/// A fresh hidden name beside `path`: `.<name>.<pid>.<n>.tmp`.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}
