//! CSV text through the `csv` crate: a header and serde rows, one line each, `\n`-terminated.
//! A field holding a comma, a quote, CR or LF is quoted (quotes doubled); every other field
//! is written as it is. Numbers are formatted by the callers (the tables keep Rust's `{}` or
//! `{:?}` forms, e.g. `1e-7`, not the `csv` crate's ryu output).

use serde::Serialize;

/// The CSV text of `header` and `rows` (each a serde record: a sequence, tuple or struct of
/// strings).
pub fn csv_text<H, R>(header: H, rows: impl IntoIterator<Item = R>) -> String
where
    H: IntoIterator,
    H::Item: AsRef<[u8]>,
    R: Serialize,
{
    // Flexible: rows of any length. Writing strings into memory cannot fail then (only
    // maps and nested records can). The header is `header`, never a struct row's field names.
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_writer(Vec::new());
    writer
        .write_record(header)
        .expect("a CSV header writes to memory");
    for row in rows {
        writer.serialize(row).expect("a CSV row writes to memory");
    }
    let bytes = writer.into_inner().expect("CSV in memory flushes");
    String::from_utf8(bytes).expect("CSV of strings is UTF-8")
}
