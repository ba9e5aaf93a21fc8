//! Fuzz target: the data standard's row parser never panics on a CSV record, and every record is a
//! typed row or issues with rule names. The input is a selector byte (`p`: persons, else
//! households) then CSV text, read as `tiermesh import` reads a file (no header row here: the
//! header is the table's fixed standard one); the per-record property is in `checks/csv_row.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/csv_row.rs"]
mod check;

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, text)) = bytes.split_first() else {
        return;
    };
    let map = check::header(check::table_of(selector));
    let context = check::context();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut record = csv::ByteRecord::new();
    // In memory, without a header or fixed lengths, a read cannot fail; the import stops a file
    // at a read error, and so does this.
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let cells: Vec<&[u8]> = record.iter().collect();
        check::check_record(&map, &cells, &context);
    }
});
