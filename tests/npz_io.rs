//! Tests of `lcsim::io::npz`: round trips, NumPy-written fixtures (see
//! tests/data/make_numpy_fixtures.py) and corrupt inputs; the parameter files of
//! `lcsim::io::interop`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{tiny_layered, tiny_rnn};
use lcsim::io::npz::{
    npy_bytes, parse_npy, read_npy, read_npz, write_npy, write_npz, NpyArray, NpyError,
};
use lcsim::system::EquilibriumSystem;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn array(shape: &[usize], data: Vec<f64>) -> NpyArray {
    NpyArray::new(shape.to_vec(), data).unwrap()
}

/// 1-D with awkward values, 2-D, 0-d and two empty arrays.
fn sample_arrays() -> Vec<(&'static str, NpyArray)> {
    let awkward = vec![
        f64::from_bits(0x7ff8_0000_dead_beef), // NaN with a payload
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE / 8.0, // subnormal
        f64::MAX,
        std::f64::consts::PI,
    ];
    vec![
        ("awkward", array(&[7], awkward)),
        (
            "grid",
            array(&[3, 4], (0..12).map(|i| i as f64 / 3.0).collect()),
        ),
        ("scalar", array(&[], vec![-2.5])),
        ("empty_2d", array(&[0, 3], vec![])),
        ("empty_1d", array(&[0], vec![])),
    ]
}

/// Same shape and bit-identical values (so NaN and -0.0 count).
fn assert_bit_exact(found: &NpyArray, expected: &NpyArray) {
    assert_eq!(found.shape, expected.shape);
    let bits = |a: &NpyArray| a.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(found), bits(expected));
}

/// A version 1.0 `.npy` file with a hand-written header dict.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{dict}\n").into_bytes();
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.append(&mut header);
    bytes.extend_from_slice(data);
    bytes
}

fn format_error(bytes: &[u8]) -> String {
    match parse_npy(bytes, Path::new("bad.npy")) {
        Err(e @ NpyError::Format { .. }) => e.to_string(),
        other => panic!("expected a Format error, got {other:?}"),
    }
}

/// Raw bytes of one member of a zip archive.
fn raw_member(path: &Path, name: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[test]
fn npz_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arrays.npz");
    let arrays = sample_arrays();
    let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    write_npz(&path, &refs).unwrap();

    let read = read_npz(&path).unwrap();
    let names: Vec<&str> = read.keys().map(String::as_str).collect();
    assert_eq!(names, ["awkward", "empty_1d", "empty_2d", "grid", "scalar"]);
    for (name, expected) in &arrays {
        assert_bit_exact(&read[*name], expected);
    }
    // Members are stored uncompressed, like np.savez.
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let member = archive.by_name("grid.npy").unwrap();
    assert_eq!(member.compression(), zip::CompressionMethod::Stored);
}

#[test]
fn npy_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for (name, expected) in sample_arrays() {
        let path = dir.path().join(format!("{name}.npy"));
        write_npy(&path, &expected).unwrap();
        assert_bit_exact(&read_npy(&path).unwrap(), &expected);
    }
}

#[test]
fn npy_bytes_follow_the_version_1_layout() {
    let bytes = npy_bytes(&array(&[2, 3], vec![1.0; 6]));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data_start = 10 + header_len;
    assert_eq!(data_start % 64, 0, "data must start at a multiple of 64");
    let header = std::str::from_utf8(&bytes[10..data_start]).unwrap();
    assert!(header.starts_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
    assert!(header.ends_with(" \n"));
    assert_eq!(&bytes[data_start..data_start + 8], &1.0f64.to_le_bytes());
    assert_eq!(bytes.len(), data_start + 6 * 8);

    // One axis is written as a Python 1-tuple, a 0-d array as ().
    let one = npy_bytes(&array(&[3], vec![0.0; 3]));
    assert!(String::from_utf8_lossy(&one).contains("'shape': (3,), }"));
    let zero_d = npy_bytes(&array(&[], vec![0.0]));
    assert!(String::from_utf8_lossy(&zero_d).contains("'shape': (), }"));
}

#[test]
fn reads_numpy_savez_fixture_exactly() {
    let path = fixture("numpy_fixtures.npz");
    let arrays = read_npz(&path).unwrap();
    let check = |name: &str, shape: &[usize], data: Vec<f64>| {
        let found = &arrays[name];
        assert_eq!(found.shape, shape, "shape of {name}");
        assert_eq!(found.data, data, "values of {name}");
    };
    let range = |n: i32| (0..n).map(f64::from).collect::<Vec<_>>();

    check(
        "f64_2d",
        &[3, 4],
        range(12).iter().map(|v| v * 0.5 - 1.0).collect(),
    );
    check("f32", &[5], vec![0.0, 0.25, 0.5, 0.75, 1.0]);
    check("f16", &[4], vec![0.5, -2.0, 65504.0, 2f64.powi(-24)]);
    check("i8", &[4], vec![-128.0, -1.0, 0.0, 127.0]);
    check("i16", &[3], vec![-32768.0, -1.0, 32767.0]);
    check("i32_be", &[2], vec![-2147483648.0, 5.0]);
    check(
        "i64",
        &[5],
        vec![-3.0, 0.0, 7.0, 2f64.powi(40), -(2f64.powi(53))],
    );
    check("u8", &[6], (250..=255).map(f64::from).collect());
    check("u16_be", &[2], vec![0.0, 65535.0]);
    check("u32", &[1], vec![4294967295.0]);
    check("u64", &[1], vec![u64::MAX as f64]);
    check("boolean", &[3], vec![1.0, 0.0, 1.0]);
    check("fortran_2d", &[2, 3], range(6));
    check("fortran_3d", &[2, 3, 4], range(24));
    check("f64_be", &[4], vec![0.125, 1.125, 2.125, 3.125]);
    check("scalar", &[], vec![3.5]);
    check("empty", &[0, 3], vec![]);
    assert_eq!(arrays.len(), 17);

    // The fixture really exercises Fortran order and big-endian data.
    let header = |name| String::from_utf8_lossy(&raw_member(&path, name)[..128]).into_owned();
    assert!(header("fortran_3d.npy").contains("'fortran_order': True"));
    assert!(header("f64_be.npy").contains("'descr': '>f8'"));
    assert!(header("i32_be.npy").contains("'descr': '>i4'"));
    assert!(header("u16_be.npy").contains("'descr': '>u2'"));
    assert!(header("boolean.npy").contains("'descr': '|b1'"));
}

#[test]
fn reads_numpy_savez_compressed_fixture() {
    let path = fixture("numpy_compressed.npz");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let method = archive.by_name("grid.npy").unwrap().compression();
    assert_eq!(method, zip::CompressionMethod::Deflated);

    let arrays = read_npz(&path).unwrap();
    assert_eq!(arrays["grid"].shape, [10, 10]);
    let grid: Vec<f64> = (0..100).map(|i| f64::from(i) / 8.0).collect();
    assert_eq!(arrays["grid"].data, grid);
    assert_eq!(arrays["counts"], array(&[3], vec![1.0, 2.0, 3.0]));
}

#[test]
fn reads_numpy_npy_fixtures_of_all_header_versions() {
    let int64 = read_npy(&fixture("numpy_int64.npy")).unwrap();
    assert_eq!(int64, array(&[2, 5], (-5..5).map(f64::from).collect()));
    for (name, version) in [("numpy_v2.npy", 2), ("numpy_v3.npy", 3)] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(bytes[6], version, "{name} should have a {version}.0 header");
        let found = parse_npy(&bytes, Path::new(name)).unwrap();
        assert_eq!(found, array(&[3], vec![0.5, 1.5, 2.5]));
    }
}

#[test]
fn rejects_numpy_complex_file_naming_dtype_and_alternatives() {
    let path = fixture("numpy_complex.npy");
    let message = read_npy(&path).unwrap_err().to_string();
    assert!(message.contains("numpy_complex.npy"), "{message}");
    assert!(
        message.contains("unsupported dtype '<c16' (complex)"),
        "{message}"
    );
    assert!(message.contains("supported: float16/32/64"), "{message}");
}

#[test]
fn rejects_object_and_structured_dtypes() {
    let object = npy_with_header(
        "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
        b"",
    );
    let message = format_error(&object);
    assert!(
        message.contains("unsupported dtype '|O' (Python objects)"),
        "{message}"
    );

    let text = npy_with_header(
        "{'descr': '<U3', 'fortran_order': False, 'shape': (), }",
        &[0; 12],
    );
    assert!(format_error(&text).contains("'<U3' (strings)"));

    let record = "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }";
    assert!(format_error(&npy_with_header(record, &[0; 8])).contains("structured dtypes"));
}

#[test]
fn rejects_bad_magic() {
    let message = format_error(b"PK\x03\x04 this is a zip, not an npy");
    assert!(message.contains("bad.npy"), "{message}");
    assert!(message.contains("bad magic"), "{message}");
    assert!(message.contains("\\x93NUMPY"), "{message}");
    assert!(format_error(b"").contains("bad magic"));
}

#[test]
fn rejects_truncated_and_oversized_data_with_byte_counts() {
    let bytes = npy_bytes(&array(&[3], vec![1.0, 2.0, 3.0]));
    let message = format_error(&bytes[..bytes.len() - 3]);
    assert!(message.contains("truncated"), "{message}");
    assert!(
        message.contains("needs 24 data bytes, found 21"),
        "{message}"
    );

    let mut longer = bytes.clone();
    longer.push(0);
    assert!(format_error(&longer).contains("trailing bytes"));
}

#[test]
fn rejects_bad_headers() {
    let f8 = |dict: &str| format_error(&npy_with_header(dict, &[0; 8]));
    let overflow =
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }";
    assert!(f8(overflow).contains("too large"), "{}", f8(overflow));
    let negative = "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }";
    assert!(f8(negative).contains("\"-1\" is not an integer"));
    assert!(f8("{'descr': '<f8', 'shape': (1,), }").contains("no 'fortran_order' entry"));
    let extra = "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': '', }";
    assert!(f8(extra).contains("unexpected entry 'x'"));
    assert!(f8("{'descr': '<f8', 'fortran_order': False").contains("malformed header"));
    assert!(f8("not a dict").contains("malformed header"));

    let mut version_4 = npy_bytes(&array(&[1], vec![0.0]));
    version_4[6] = 4;
    assert!(format_error(&version_4).contains("unsupported format version 4.0"));

    // Header lengths that run past the end of the file (u16 and u32 fields).
    let mut huge_v1 = npy_bytes(&array(&[1], vec![0.0]));
    huge_v1[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(format_error(&huge_v1).contains("header length 65535 runs past the end"));
    let huge_v2 = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{}";
    assert!(format_error(huge_v2).contains("header length 4294967295 runs past the end"));
}

#[test]
fn never_panics_on_truncated_or_mangled_input() {
    let sample = npy_with_header(
        "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }",
        &[7; 24],
    );
    assert_eq!(parse_npy(&sample, Path::new("ok.npy")).unwrap().len(), 6);
    for end in 0..sample.len() {
        assert!(parse_npy(&sample[..end], Path::new("cut.npy")).is_err());
    }
    // Deterministic pseudo-random byte overwrites: any result but a panic.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..5000 {
        let mut mangled = sample.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % mangled.len() as u64) as usize;
            mangled[at] = (state >> 32) as u8;
        }
        let _ = parse_npy(&mangled, Path::new("mangled.npy"));
    }
}

#[test]
fn rejects_npz_member_that_is_not_npy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("a.npy", options).unwrap();
    zip.write_all(&npy_bytes(&array(&[1], vec![1.0]))).unwrap();
    zip.start_file("notes.txt", options).unwrap();
    zip.write_all(b"hello").unwrap();
    zip.finish().unwrap();

    let error = read_npz(&path).unwrap_err();
    assert!(matches!(error, NpyError::Zip { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("mixed.npz"), "{message}");
    assert!(
        message.contains("member 'notes.txt' is not a .npy file"),
        "{message}"
    );
}

#[test]
fn reports_corrupt_npz_members_and_non_zip_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("x.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
    zip.finish().unwrap();
    let message = read_npz(&path).unwrap_err().to_string();
    assert!(message.contains("cut.npz (member x.npy)"), "{message}");
    assert!(message.contains("header length field"), "{message}");

    let not_zip = dir.path().join("plain.npz");
    std::fs::write(&not_zip, npy_bytes(&array(&[1], vec![1.0]))).unwrap();
    let error = read_npz(&not_zip).unwrap_err();
    assert!(matches!(error, NpyError::Zip { .. }), "{error:?}");
    assert!(error.to_string().contains("not a zip file"), "{error}");
}

#[test]
fn missing_files_give_io_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.npz");
    for error in [
        read_npz(&missing).unwrap_err(),
        read_npy(&missing).unwrap_err(),
    ] {
        assert!(matches!(&error, NpyError::Io { path, .. } if path == &missing));
        assert!(error.to_string().contains("nowhere.npz"), "{error}");
    }

    let in_missing_dir = dir.path().join("no_such_dir").join("out.npy");
    let error = write_npy(&in_missing_dir, &array(&[1], vec![1.0])).unwrap_err();
    assert!(matches!(&error, NpyError::Io { path, .. } if path == &in_missing_dir));
}

#[test]
fn shape_mismatch_is_an_error() {
    let error = NpyArray::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
    assert!(matches!(
        error,
        NpyError::ShapeMismatch {
            expected: 6,
            found: 5
        }
    ));
    assert!(
        error.to_string().contains("6 elements but 5 values"),
        "{error}"
    );
    let overflow = NpyArray::new(vec![usize::MAX, 2], vec![]).unwrap_err();
    assert!(matches!(
        overflow,
        NpyError::ShapeMismatch {
            expected: usize::MAX,
            found: 0
        }
    ));

    let scalar = array(&[], vec![1.0]);
    assert_eq!((scalar.len(), scalar.is_empty()), (1, false));
    assert!(array(&[4, 0], vec![]).is_empty());

    // Inconsistent public fields are refused by the writers.
    let dir = tempfile::tempdir().unwrap();
    let bad = NpyArray {
        shape: vec![3],
        data: vec![1.0],
    };
    let path = dir.path().join("bad.npz");
    assert!(matches!(
        write_npz(&path, &[("bad", &bad)]),
        Err(NpyError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        write_npy(&path, &bad),
        Err(NpyError::ShapeMismatch { .. })
    ));
    assert!(!path.exists());
}

#[test]
fn writes_replace_files_atomically_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.npz");
    write_npz(&path, &[("x", &array(&[1], vec![1.0]))]).unwrap();
    write_npz(&path, &[("y", &array(&[2], vec![2.0, 3.0]))]).unwrap();
    let read: BTreeMap<String, NpyArray> = read_npz(&path).unwrap();
    assert_eq!(read.keys().collect::<Vec<_>>(), ["y"]);

    // A failing write (duplicate member names) leaves the old file intact.
    let dup = array(&[1], vec![9.0]);
    let error = write_npz(&path, &[("z", &dup), ("z", &dup)]).unwrap_err();
    assert!(matches!(error, NpyError::Zip { .. }), "{error:?}");
    assert!(read_npz(&path).unwrap().contains_key("y"));

    let npy = dir.path().join("state.npy");
    write_npy(&npy, &array(&[1], vec![4.0])).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["state.npy", "state.npz"],
        "no temporary files may remain"
    );
}

/// The bytes the hand-written writer (before npz.rs used npyz) produced for
/// `write_npz(&[("x", [1.0, -2.0]), ("s", 0.25 as a 0-d array)])`: stored members,
/// numpy's header layout, zip timestamps of 1980-01-01.
const OLD_WRITER_NPZ_HEX: &str = "504b03040a00000000000000210044d81252900000009000000005000000782e6e7079934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d2020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000f03f00000000000000c0504b03040a00000000000000210083d8d4b6880000008800000005000000732e6e7079934e554d5059010076007b276465736372273a20273c6638272c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028292c207d20202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a000000000000d03f504b01020a030a00000000000000210044d812529000000090000000050000000000000000000000a48100000000782e6e7079504b01020a030a00000000000000210083d8d4b68800000088000000050000000000000000000000a481b3000000732e6e7079504b05060000000002000200660000005e0100000000";

#[test]
fn written_files_are_byte_identical_to_the_earlier_writer() {
    // .npy: the header exactly as np.save writes it (and as lcsim always has).
    let bytes = npy_bytes(&array(
        &[2, 3],
        (0..6).map(|i| f64::from(i) * 0.5).collect(),
    ));
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }";
    let mut expected = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    expected.extend_from_slice(dict.as_bytes());
    expected.extend(std::iter::repeat_n(b' ', 118 - dict.len() - 1));
    expected.push(b'\n');
    for i in 0..6 {
        expected.extend_from_slice(&(f64::from(i) * 0.5).to_le_bytes());
    }
    assert_eq!(bytes, expected);

    // .npz: the whole archive.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.npz");
    let x = array(&[2], vec![1.0, -2.0]);
    let s = array(&[], vec![0.25]);
    write_npz(&path, &[("x", &x), ("s", &s)]).unwrap();
    let hex: String = std::fs::read(&path)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, OLD_WRITER_NPZ_HEX);
}

#[test]
fn reads_header_variants_the_earlier_reader_took() {
    let one = 1.5f64.to_le_bytes();
    let read =
        |dict: &str, data: &[u8]| parse_npy(&npy_with_header(dict, data), Path::new("v.npy"));

    // Python 2 long integers, other whitespace between tokens, junk in the padding.
    let longs = read(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1L, 1L), }",
        &one,
    );
    assert_eq!(longs.unwrap(), array(&[1, 1], vec![1.5]));
    let spaced = "{'descr':\n'<f8',\t'fortran_order': False,\r'shape': (1,), }  junk";
    assert_eq!(read(spaced, &one).unwrap(), array(&[1], vec![1.5]));

    // '=', '|' and no byte-order character all mean native order.
    let native = 1.5f64.to_ne_bytes();
    for descr in ["=f8", "|f8", "f8"] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (), }}");
        assert_eq!(
            read(&dict, &native).unwrap(),
            array(&[], vec![1.5]),
            "{descr}"
        );
    }

    // Any nonzero byte of a bool array is True; a float16 NaN stays NaN.
    let bools = read(
        "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
        &[0, 1, 7],
    );
    assert_eq!(bools.unwrap().data, [0.0, 1.0, 1.0]);
    let half_nan = read(
        "{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
        &[0x01, 0x7e],
    );
    assert!(half_nan.unwrap().data[0].is_nan());
}

#[test]
fn header_errors_are_one_line_and_say_what_was_found() {
    let f8 = |dict: &str| format_error(&npy_with_header(dict, &[0; 8]));
    let cut = f8("{'descr': '<f8', 'fortran_order': False");
    assert!(cut.contains("not a Python literal"), "{cut}");
    assert!(!cut.contains('\n'), "{cut}");

    // np.load refuses a shape that is not a tuple ((1) is the integer 1).
    let not_tuple = f8("{'descr': '<f8', 'fortran_order': False, 'shape': (1), }");
    assert!(not_tuple.contains("malformed header"), "{not_tuple}");
    let as_list = f8("{'descr': '<f8', 'fortran_order': False, 'shape': [1], }");
    assert!(as_list.contains("unexpected entry 'shape'"), "{as_list}");
    let float_dim = f8("{'descr': '<f8', 'fortran_order': False, 'shape': ('a',), }");
    assert!(
        float_dim.contains("\"'a'\" is not an integer"),
        "{float_dim}"
    );
    let not_dict = f8("('<f8', False, (1,))");
    assert!(not_dict.contains("expected a dict"), "{not_dict}");

    let datetime = f8("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (1,), }");
    assert!(
        datetime.contains("unsupported dtype '<M8[ns]' (datetime / timedelta)"),
        "{datetime}"
    );
    let quad = format_error(&npy_with_header(
        "{'descr': '<f16', 'fortran_order': False, 'shape': (1,), }",
        &[0; 16],
    ));
    assert!(quad.contains("'<f16' (unsupported item size)"), "{quad}");
    assert!(quad.contains("supported: float16/32/64"), "{quad}");
}

// ---------------------------------------------------------------------------------------
// Parameter files (lcsim::io::interop)
// ---------------------------------------------------------------------------------------

#[test]
fn params_file_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    for (net, layered) in [(tiny_rnn(), false), (tiny_layered(), true)] {
        let path = dir.path().join(if layered { "ff.npz" } else { "rnn.npz" });
        lcsim::io::interop::save_params(&path, &net).unwrap();
        let back = lcsim::io::interop::load_params(&path, layered, net.activation()).unwrap();
        assert_eq!(back.topology(), net.topology());
        // Exact in value (masked entries may come back as +0.0 where the net holds -0.0).
        assert_eq!(back.params(), net.params());
    }
}
