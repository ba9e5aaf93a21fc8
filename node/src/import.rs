//! `tiermesh import`: stream CSV files of the data standard into a node's store.
//!
//! Two threads: this one reads and validates rows (every rule that needs only the row), a writer
//! thread owns the store and applies the rules that need stored state (a person's household, the
//! head's ID, duplicates in another region), commits batches durably and writes the report files.
//! Items flow in file order, so reports come out in line order.
//!
//! Boundary: every byte of an input file is untrusted. A row is either stored or reported (with
//! its line, column, value, rule and message) in `<file>.rejects.csv`; warnings go to
//! `<file>.warnings.csv`. Nothing is dropped quietly.

use std::collections::{HashMap, HashSet};

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use tiermesh_federation::fast_hash::{FastMap, FastSet};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_federation::date::Date;
use tiermesh_federation::image::{PersonIndex, RESERVE_ROWS_MAX};
use tiermesh_federation::record::{format_cents, Household, HouseholdId, IdNumber, Person};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::validate::{
    household_warnings, parse_household, parse_person, person_warnings, rule, HeaderMap,
    ImportContext, Issue, Severity,
};
use tiermesh_storage::{Committer, PreparedWrite, Store};

/// Default rows per durable write.
pub const BATCH_ROWS_DEFAULT: usize = 65_536;
/// Rows per validated batch the reader hands to the writer: small enough that a batch is still
/// in cache when the writer takes it.
const HANDOFF_ROWS: usize = 2_048;
/// Largest batch accepted.
pub const BATCH_ROWS_MAX: usize = 1 << 20;
/// Batches in flight between each reader and the writer (of `HANDOFF_ROWS` rows, about 5 MB
/// in all per reader): enough that the readers keep parsing while the writer stalls on memory
/// it touches for the first time (the image's reservation when persons start), instead of the
/// second core idling.
const BATCHES_IN_FLIGHT: usize = 32;
/// Reader threads (each parses and checks whole files, taking the files in turn): parsing costs
/// about as much as the writer's work, so two readers keep the writer busy.
const READERS: usize = 2;
/// Columns a row may have (the standard's widest table plus the report columns).
const ROW_CELLS_MAX: usize = 32;
/// Bytes of one CSV record at most; a longer one is rejected, not buffered.
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// Rule name of a row that is not valid UTF-8.
pub const ENCODING_RULE: &str = "encoding";
/// Report columns put before the original row in a rejects or warnings file. A rejects file can
/// be corrected in a spreadsheet and imported again: the importer skips these columns.
pub const REPORT_COLUMNS: [&str; 5] = [
    "error_line",
    "error_column",
    "error_value",
    "error_rule",
    "error_message",
];

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub files: Vec<PathBuf>,
    /// Validate and report, store nothing.
    pub dry_run: bool,
    /// The import's date: "current year" and "not in the future".
    pub today: Date,
    /// Reference date of the age-based screens.
    pub as_of: Date,
    /// Where report files go; next to each input file when `None`.
    pub report_dir: Option<PathBuf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Print a line on stdout after every durable write: `committed FILE through line N`.
    /// Every row of FILE up to line N is then stored, whatever happens to the process.
    pub log_commits: bool,
    /// Rows per validated batch and per durable write.
    pub batch_rows: usize,
}

/// Counts for one input file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileReport {
    pub path: PathBuf,
    pub table: Option<Table>,
    pub rows: u64,
    pub stored: u64,
    pub rejected: u64,
    pub warnings: u64,
    /// Warnings by rule name.
    pub warnings_by_rule: Vec<(&'static str, u64)>,
    /// Rejections by rule name (a row rejected for two rules counts under both).
    pub rejected_by_rule: Vec<(&'static str, u64)>,
    pub rejects_file: Option<PathBuf>,
    pub warnings_file: Option<PathBuf>,
}

/// The outcome of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
    pub dry_run: bool,
    /// The data version after the import.
    pub data_version: u64,
}

impl ImportReport {
    /// Rows read in all files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|file| file.rows).sum()
    }

    /// Rows stored (or, in a dry run, that would be).
    pub fn stored(&self) -> u64 {
        self.files.iter().map(|file| file.stored).sum()
    }

    /// Rows rejected.
    pub fn rejected(&self) -> u64 {
        self.files.iter().map(|file| file.rejected).sum()
    }

    /// Warnings raised.
    pub fn warnings(&self) -> u64 {
        self.files.iter().map(|file| file.warnings).sum()
    }

    /// The one summary line.
    pub fn summary_line(&self) -> String {
        let mut by_rule: Vec<(&str, u64)> = Vec::new();
        for file in &self.files {
            for (name, count) in &file.warnings_by_rule {
                match by_rule.iter_mut().find(|(seen, _)| seen == name) {
                    Some(entry) => entry.1 += count,
                    None => by_rule.push((name, *count)),
                }
            }
        }
        by_rule.sort();
        let detail = if by_rule.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = by_rule
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            format!(" ({})", parts.join(", "))
        };
        format!(
            "{}{} files, {} rows: {} {}, {} rejected, {} warnings{}; data version {}",
            if self.dry_run { "dry run: " } else { "" },
            self.files.len(),
            self.rows(),
            self.stored(),
            if self.dry_run { "valid" } else { "stored" },
            self.rejected(),
            self.warnings(),
            detail,
            self.data_version
        )
    }
}

/// One input file with its header understood. The file is opened for reading only when its
/// turn comes (see [`Input::open_rows`]), so an import holds one open input per reader thread
/// however many files it names.
struct Input {
    index: usize,
    path: PathBuf,
    header: Vec<String>,
    map: HeaderMap,
    /// File positions of the standard columns, in file order (skipping report columns).
    keep: Vec<usize>,
    table: Table,
    /// Lines end in CRLF (judged from the first line).
    crlf: bool,
    /// Size of the file when opened.
    bytes: u64,
}

/// Read buffer of an input file while its rows are read.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Read buffer for checking a header: most headers are a few hundred bytes.
const HEADER_BUFFER_BYTES: usize = 8 * 1024;

/// Bytes of a table's first file sampled to estimate the rows of all its files.
const ROW_SAMPLE_BYTES: u64 = 256 * 1024;

/// Rows in `total_bytes` of files like `sample`, judged from the lines in its first bytes;
/// `None` when the sample cannot be read or has no line end.
fn estimate_rows(sample: &Path, total_bytes: u64) -> Option<usize> {
    let mut head = Vec::new();
    File::open(sample)
        .ok()?
        .take(ROW_SAMPLE_BYTES)
        .read_to_end(&mut head)
        .ok()?;
    let lines = head.iter().filter(|byte| **byte == b'\n').count();
    let last_line_end = head.iter().rposition(|byte| *byte == b'\n')?;
    let bytes_per_row = (last_line_end + 1) as f64 / lines.max(1) as f64;
    Some((total_bytes as f64 / bytes_per_row) as usize)
}

/// Bytes looked at to tell CRLF from LF line ends.
const LINE_END_PROBE_BYTES: u64 = 64 * 1024;

/// True when the first line of `file` ends in CRLF; rewinds the file.
fn first_line_ends_in_crlf(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut probe = Vec::new();
    file.by_ref()
        .take(LINE_END_PROBE_BYTES)
        .read_to_end(&mut probe)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(probe
        .iter()
        .position(|byte| *byte == b'\n')
        .is_some_and(|position| position > 0 && probe[position - 1] == b'\r'))
}

/// Counts bytes read, for the progress bar.
struct CountingReader<R> {
    inner: R,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        self.bytes
            .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(count)
    }
}

/// A CSV reader of `source` as the importer reads every input: no header handling (the header
/// is the first record), rows of any length (a wrong length is a reported rejection).
fn csv_reader<R: Read>(source: R, buffer_bytes: usize) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(buffer_bytes)
        .from_reader(source)
}

/// Reads a file's header record: `None` for an empty file.
fn read_header<R: Read>(
    reader: &mut csv::Reader<R>,
    path: &Path,
) -> Result<Option<csv::ByteRecord>> {
    let mut record = csv::ByteRecord::new();
    let found = reader
        .read_byte_record(&mut record)
        .with_context(|| format!("{}: line 1: cannot read the header", path.display()))?;
    Ok(found.then_some(record))
}

impl Input {
    /// Opens the file again for its rows, positioned after the header, which must still be the
    /// one checked when the import began.
    fn open_rows(
        &self,
        bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<csv::Reader<CountingReader<File>>> {
        let path = &self.path;
        let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let mut reader = csv_reader(CountingReader { inner: file, bytes }, READ_BUFFER_BYTES);
        let unchanged = read_header(&mut reader, path)?
            .and_then(|record| header_cells(&record, path).ok())
            .is_some_and(|header| header == self.header);
        if !unchanged {
            bail!(
                "{}: the header changed after the import began; nothing of the file is \
                 imported (run the import again)",
                path.display()
            );
        }
        Ok(reader)
    }
}

/// A header record's cells as text, a leading byte-order mark dropped.
fn header_cells(record: &csv::ByteRecord, path: &Path) -> Result<Vec<String>> {
    let mut header = Vec::with_capacity(record.len());
    for (position, cell) in record.iter().enumerate() {
        let mut text = std::str::from_utf8(cell).map_err(|_| {
            anyhow!(
                "{}: line 1, column {}: header is not valid UTF-8",
                path.display(),
                position + 1
            )
        })?;
        if position == 0 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        header.push(text.to_string());
    }
    Ok(header)
}

/// Checks a file's header (and how its lines end) and closes it again.
fn open_input(index: usize, path: &Path) -> Result<Input> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let file_bytes = file.metadata().map_or(0, |metadata| metadata.len());
    let crlf = first_line_ends_in_crlf(&mut file)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut reader = csv_reader(file, HEADER_BUFFER_BYTES);
    let Some(record) = read_header(&mut reader, path)? else {
        bail!(
            "{}: the file is empty; expected a header row",
            path.display()
        );
    };
    let header = header_cells(&record, path)?;
    let keep: Vec<usize> = (0..header.len())
        .filter(|position| !REPORT_COLUMNS.contains(&header[*position].as_str()))
        .collect();
    let names: Vec<&str> = keep
        .iter()
        .map(|position| header[*position].as_str())
        .collect();
    let map = HeaderMap::from_header(&names)
        .map_err(|error| anyhow!("{}: line 1: {error}", path.display()))?;
    let table = map.table;
    Ok(Input {
        index,
        bytes: file_bytes,
        crlf,
        path: path.to_path_buf(),
        header,
        map,
        keep,
        table,
    })
}

/// A row as the reader saw it.
enum Item {
    Household {
        line: u64,
        /// Boxed: a household row is twice a person item's size, and every item of a batch
        /// (most are persons) would be copied at that size.
        row: Box<Household>,
        warnings: Vec<Issue>,
        raw: Option<csv::ByteRecord>,
    },
    Person {
        line: u64,
        row: Person,
        warnings: Vec<Issue>,
        /// Present when the row has warnings; a rejection renders the row from `row`, which a
        /// valid persons row determines exactly.
        raw: Option<csv::ByteRecord>,
    },
    Rejected {
        line: u64,
        issues: Vec<Issue>,
        raw: csv::ByteRecord,
        /// The household id of a rejected households row, when it could be read.
        household: Option<HouseholdId>,
    },
}

enum Message {
    Start {
        file: usize,
        table: Table,
        header: Vec<String>,
    },
    Batch {
        file: usize,
        items: Vec<Item>,
    },
    /// The file is complete: the writer turns to the next reader.
    End,
}

/// One reader thread's channels, as the writer holds them.
struct ReaderLink {
    messages: Receiver<Message>,
    /// Emptied batch vectors go back to their reader.
    recycle: SyncSender<Vec<Item>>,
}

/// Imports `options.files` into `store`, whose node keeps records for `jurisdiction`.
pub fn import(
    store: &mut Store,
    jurisdiction: RegionCode,
    options: &ImportOptions,
) -> Result<ImportReport> {
    if options.files.is_empty() {
        bail!("no files given: name one or more CSV files of households or persons");
    }
    if let Some(report_dir) = &options.report_dir {
        std::fs::create_dir_all(report_dir)
            .with_context(|| format!("creating the report folder {}", report_dir.display()))?;
    }
    let bytes_read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Every header is checked before anything is stored.
    let mut inputs = Vec::with_capacity(options.files.len());
    for (index, path) in options.files.iter().enumerate() {
        inputs.push(open_input(index, path)?);
    }
    let total_bytes: u64 = inputs.iter().map(|input| input.bytes).sum();
    // Households first, so persons in the same command find them.
    inputs.sort_by_key(|input| (input.table, input.index));
    let context = ImportContext {
        today: options.today,
        as_of: options.as_of,
        jurisdiction,
    };
    let mut reports: Vec<FileReport> = options
        .files
        .iter()
        .map(|path| FileReport {
            path: path.clone(),
            ..FileReport::default()
        })
        .collect();
    for input in &inputs {
        reports[input.index].table = Some(input.table);
    }
    let progress = crate::output::progress_bar(options.progress, total_bytes);
    // About how many rows of each table are coming (from the line lengths at the start of its
    // first file and the bytes of all its files): the image makes room for them when the table
    // starts instead of growing step by step. Nothing is kept in a dry run.
    let estimate = |table: Table| -> Option<usize> {
        let first = inputs.iter().find(|input| input.table == table)?;
        let bytes = inputs
            .iter()
            .filter(|input| input.table == table)
            .map(|input| input.bytes)
            .sum();
        estimate_rows(&first.path, bytes).map(|rows| rows.min(RESERVE_ROWS_MAX))
    };
    let expected_rows = if options.dry_run {
        [None, None]
    } else {
        [estimate(Table::Households), estimate(Table::Persons)]
    };
    // A fresh store's person index is prepared by another thread meanwhile.
    let prepare_persons = expected_rows[1].filter(|_| store.image().persons_len() == 0);
    // Reader threads take the files in turn (position modulo the number of readers); the writer
    // takes them from the readers in the same turn, so it sees the files in order.
    let readers = READERS.min(inputs.len()).max(1);
    let mut shares: Vec<Vec<&mut Input>> = (0..readers).map(|_| Vec::new()).collect();
    for (position, input) in inputs.iter_mut().enumerate() {
        shares[position % readers].push(input);
    }
    let mut links = Vec::with_capacity(readers);
    let mut ends = Vec::with_capacity(readers);
    for _ in 0..readers {
        let (sender, messages) = sync_channel::<Message>(BATCHES_IN_FLIGHT);
        let (recycle, recycled) = sync_channel::<Vec<Item>>(BATCHES_IN_FLIGHT + 1);
        links.push(ReaderLink { messages, recycle });
        ends.push((sender, recycled));
    }
    let writer_result = std::thread::scope(|scope| {
        let (prepared_sender, prepared) = sync_channel(1);
        if let Some(rows) = prepare_persons {
            std::thread::Builder::new()
                .name("import-index".to_string())
                .spawn_scoped(scope, move || {
                    let _ = prepared_sender.send(PersonIndex::prepared(rows));
                })
                .context("starting the import index thread")?;
        } else {
            // Nothing is prepared: the writer's wait for it ends at once.
            drop(prepared_sender);
        }
        let link = if options.dry_run {
            None
        } else {
            let (commits, commit_receiver) = sync_channel::<Commit>(COMMITS_IN_FLIGHT);
            let (done_sender, done) = sync_channel::<Result<()>>(1);
            let committer = store.committer();
            std::thread::Builder::new()
                .name("import-committer".to_string())
                .spawn_scoped(scope, move || {
                    run_committer(committer, commit_receiver, done_sender)
                })
                .context("starting the import committer thread")?;
            Some(CommitLink {
                commits: Some(commits),
                done,
            })
        };
        let writer = std::thread::Builder::new()
            .name("import-writer".to_string())
            .spawn_scoped(scope, || {
                let mut writer =
                    Writer::new(store, link, options, &mut reports, expected_rows, prepared);
                match writer.run(links) {
                    Ok(()) => writer.finish(),
                    Err(error) => {
                        // Staged rows the image shows were never committed.
                        writer.store.discard_staged()?;
                        Err(error)
                    }
                }
            })
            .context("starting the import writer thread")?;
        let mut reader_threads = Vec::with_capacity(readers);
        for (number, (share, (sender, recycled))) in shares.into_iter().zip(ends).enumerate() {
            let (context, progress, bytes_read) = (&context, &progress, &bytes_read);
            let reader = std::thread::Builder::new()
                .name(format!("import-reader-{number}"))
                .spawn_scoped(scope, move || {
                    read_inputs(
                        options.batch_rows,
                        share,
                        context,
                        &sender,
                        progress,
                        bytes_read,
                        &recycled,
                    )
                })
                .context("starting an import reader thread")?;
            reader_threads.push(reader);
        }
        let mut read_result = Ok(());
        for reader in reader_threads {
            let result = reader
                .join()
                .map_err(|_| anyhow!("an import reader thread panicked"))?;
            // The first real cause: a reader that only saw the writer stop says so.
            if read_result.is_ok() {
                read_result = result;
            }
        }
        let written = writer
            .join()
            .map_err(|_| anyhow!("the import writer thread panicked"))?;
        // The writer's error is the cause when both failed (the reader then only saw it stop).
        match (read_result, written) {
            (_, Err(error)) => Err(error),
            (Err(error), Ok(_)) => Err(error),
            (Ok(()), Ok(version)) => Ok(version),
        }
    });
    progress.finish_and_clear();
    let data_version = writer_result?;
    Ok(ImportReport {
        files: reports,
        dry_run: options.dry_run,
        data_version,
    })
}

fn context_batch_rows(requested: usize) -> usize {
    requested.clamp(1, BATCH_ROWS_MAX)
}

#[allow(clippy::too_many_arguments)]
fn read_inputs(
    batch_rows: usize,
    inputs: Vec<&mut Input>,
    context: &ImportContext,
    sender: &std::sync::mpsc::SyncSender<Message>,
    progress: &indicatif::ProgressBar,
    bytes_read: &std::sync::Arc<std::sync::atomic::AtomicU64>,
    recycled: &Receiver<Vec<Item>>,
) -> Result<()> {
    let closed = || anyhow!("the import writer stopped early");
    // Keys seen in the current file; one set for all files, so that its memory is reused.
    let mut seen: FastSet<u64> = FastSet::default();
    for input in inputs {
        sender
            .send(Message::Start {
                file: input.index,
                table: input.table,
                header: input.header.clone(),
            })
            .map_err(|_| closed())?;
        seen.clear();
        let mut reader = input.open_rows(bytes_read.clone())?;
        let batch_rows = context_batch_rows(batch_rows).min(HANDOFF_ROWS);
        let mut items = Vec::with_capacity(batch_rows);
        let mut record = csv::ByteRecord::new();
        loop {
            let line = record_line(&reader);
            let more = reader
                .read_byte_record(&mut record)
                .with_context(|| format!("{}: line {line}: cannot read", input.path.display()))?;
            if !more {
                break;
            }
            // The csv crate counts a CRLF's LF only when it reads the next record, so in a CRLF
            // file every record after the first is reported one line early.
            let line = record.position().map_or(line, |position| position.line());
            let line = if input.crlf && line > 1 {
                line + 1
            } else {
                line
            };
            items.push(check_row(input, context, &mut seen, line, &record));
            if items.len() == batch_rows {
                let fresh = recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(batch_rows));
                let batch = std::mem::replace(&mut items, fresh);
                sender
                    .send(Message::Batch {
                        file: input.index,
                        items: batch,
                    })
                    .map_err(|_| closed())?;
                progress.set_position(bytes_read.load(std::sync::atomic::Ordering::Relaxed));
            }
        }
        if !items.is_empty() {
            sender
                .send(Message::Batch {
                    file: input.index,
                    items,
                })
                .map_err(|_| closed())?;
        }
        sender.send(Message::End).map_err(|_| closed())?;
        progress.set_position(bytes_read.load(std::sync::atomic::Ordering::Relaxed));
    }
    Ok(())
}

fn record_line<R: Read>(reader: &csv::Reader<R>) -> u64 {
    reader.position().line()
}

fn reject(line: u64, raw: csv::ByteRecord, issue: Issue, household: Option<HouseholdId>) -> Item {
    Item::Rejected {
        line,
        issues: vec![issue],
        raw,
        household,
    }
}

fn issue(
    column: Option<&'static str>,
    value: String,
    rule_name: &'static str,
    message: String,
) -> Issue {
    Issue {
        severity: Severity::Reject,
        column,
        value,
        rule: rule_name,
        message,
    }
}

/// Applies every rule that needs only the row (and the file's keys seen so far).
fn check_row(
    input: &Input,
    context: &ImportContext,
    seen: &mut FastSet<u64>,
    line: u64,
    record: &csv::ByteRecord,
) -> Item {
    // The row's bytes travel on only when a report needs them: rejected or warned rows.
    let raw = record;
    if raw.len() != input.header.len() {
        let message = format!(
            "the header has {} cells, this row {}; check for a missing or extra comma",
            input.header.len(),
            raw.len()
        );
        return reject(
            line,
            raw.clone(),
            issue(None, String::new(), rule::SHAPE, message),
            None,
        );
    }
    if raw.as_slice().len() > RECORD_BYTES_MAX {
        let message = format!("the row is longer than {RECORD_BYTES_MAX} bytes");
        return reject(
            line,
            raw.clone(),
            issue(None, String::new(), rule::SHAPE, message),
            None,
        );
    }
    let Ok(text) = std::str::from_utf8(raw.as_slice()) else {
        let position = raw
            .iter()
            .position(|cell| std::str::from_utf8(cell).is_err())
            .unwrap_or(0);
        let column = input.header.get(position).map_or("?", String::as_str);
        let message = format!(
            "column {} ({column}) is not valid UTF-8; save the file as UTF-8",
            position + 1
        );
        return reject(
            line,
            raw.clone(),
            issue(None, String::new(), ENCODING_RULE, message),
            None,
        );
    };
    let mut cells: [&str; ROW_CELLS_MAX] = [""; ROW_CELLS_MAX];
    for (slot, position) in input.keep.iter().enumerate().take(ROW_CELLS_MAX) {
        if let Some(range) = raw.range(*position) {
            cells[slot] = &text[range];
        }
    }
    let cells = &cells[..input.keep.len().min(ROW_CELLS_MAX)];
    match input.table {
        Table::Households => match parse_household(&input.map, cells, context) {
            Ok(row) => {
                if !seen.insert(row.household_id.0) {
                    let id = row.household_id;
                    return reject(
                        line,
                        raw.clone(),
                        duplicate("household_id", id.to_string()),
                        None,
                    );
                }
                let warnings = household_warnings(&row, context);
                let raw = (!warnings.is_empty()).then(|| raw.clone());
                Item::Household {
                    line,
                    row: Box::new(row),
                    warnings,
                    raw,
                }
            }
            Err(issues) => {
                let household = input
                    .map
                    .position("household_id")
                    .and_then(|position| cells.get(position))
                    .filter(|cell| cell.len() == 16 && cell.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|cell| cell.parse().ok())
                    .map(HouseholdId);
                Item::Rejected {
                    line,
                    issues,
                    raw: raw.clone(),
                    household,
                }
            }
        },
        Table::Persons => match parse_person(&input.map, cells, context) {
            Ok(row) => {
                if !seen.insert(row.person_id.0) {
                    return reject(
                        line,
                        raw.clone(),
                        duplicate("person_id", row.person_id.text()),
                        None,
                    );
                }
                let warnings = person_warnings(&row, context);
                let raw = (!warnings.is_empty()).then(|| raw.clone());
                Item::Person {
                    line,
                    row,
                    warnings,
                    raw,
                }
            }
            Err(issues) => Item::Rejected {
                line,
                issues,
                raw: raw.clone(),
                household: None,
            },
        },
    }
}

fn duplicate(column: &'static str, value: String) -> Issue {
    let message = format!("{column} {value} appears earlier in this file; each key once per file");
    issue(Some(column), value, rule::DUPLICATE, message)
}

/// A household known to this import: stored, or (in a dry run) accepted earlier in the run.
#[derive(Clone, Copy)]
struct KnownHousehold {
    head: IdNumber,
    region: RegionCode,
    /// Dry run: `members` of the household's last row in this run (0 when stored).
    members: u8,
}

/// A household whose persons or `members` this import changed: by its slot in the image, or
/// (in a dry run, where this run's households are not in the image) by id.
#[derive(Clone, Copy)]
enum Touch {
    Slot(u32),
    Id(HouseholdId),
}

/// Marks a line as a households row's in `TouchMarks`.
const HOUSEHOLDS_ROW: u64 = 1 << 63;

/// Where the `members-mismatch` screen of each household this import touched is filed once all
/// rows are in: at the household's last households row of this run, else at the first persons
/// row that touched it. A mark is a line (0: untouched; `HOUSEHOLDS_ROW` set for a households
/// row) and a file.
#[derive(Default)]
struct TouchMarks {
    /// Indexed by image slot: households are given slots in import order, so these grow and
    /// are written in order, 12 bytes a household.
    slot_lines: Vec<u64>,
    slot_files: Vec<u32>,
    /// Dry run.
    by_id: FastMap<HouseholdId, (u64, u32)>,
}

impl TouchMarks {
    fn mark(&mut self, touch: Touch, file: usize, line: u64, households_row: bool) {
        let (line_mark, file_mark) = match touch {
            Touch::Slot(slot) => {
                let slot = slot as usize;
                if slot >= self.slot_lines.len() {
                    self.slot_lines.resize(slot + 1, 0);
                    self.slot_files.resize(slot + 1, 0);
                }
                (&mut self.slot_lines[slot], &mut self.slot_files[slot])
            }
            Touch::Id(id) => {
                let entry = self.by_id.entry(id).or_insert((0, 0));
                (&mut entry.0, &mut entry.1)
            }
        };
        if households_row || *line_mark == 0 {
            *line_mark = if households_row {
                line | HOUSEHOLDS_ROW
            } else {
                line
            };
            *file_mark = file as u32;
        }
    }

    /// Makes room for about this many households (an estimate: an eighth more).
    fn reserve(&mut self, households: usize) {
        let households = households + households / 8;
        self.slot_lines.reserve(households);
        self.slot_files.reserve(households);
    }
}

/// Counters and report files of one input file.
struct FileOutput {
    header: Vec<String>,
    rejects: Option<csv::Writer<BufWriter<File>>>,
    warnings: Option<csv::Writer<BufWriter<File>>>,
}

/// A prepared batch, and the lines to print once it is durable.
struct Commit {
    prepared: PreparedWrite,
    lines: Vec<String>,
}

/// Prepared batches in flight to the committer: enough that one slow fsync (hundreds of
/// milliseconds on a busy disk) does not stop validation, few enough to bound memory (a batch of
/// 65,536 households is about 13 MB).
const COMMITS_IN_FLIGHT: usize = 6;

/// The committer thread: makes prepared batches durable in order, then prints their commit
/// lines. Its result arrives on `done` when the writer has hung up.
fn run_committer(committer: Committer, commits: Receiver<Commit>, done: SyncSender<Result<()>>) {
    let mut result = Ok(());
    for commit in commits {
        match committer.commit(commit.prepared) {
            Ok(_) => {
                for line in commit.lines {
                    println!("{line}");
                }
            }
            Err(error) => {
                result = Err(anyhow::Error::from(error));
                break;
            }
        }
    }
    // The writer may have failed first and stopped listening; nothing is lost then.
    let _ = done.send(result);
}

/// The link from the writer to the committer thread.
struct CommitLink {
    commits: Option<SyncSender<Commit>>,
    done: Receiver<Result<()>>,
}

impl CommitLink {
    fn send(&mut self, commit: Commit) -> Result<()> {
        let sent = match &self.commits {
            Some(commits) => commits.send(commit).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            self.wait()?;
            bail!("the committer stopped")
        }
    }

    /// Hangs up and waits until every batch sent is durable.
    fn wait(&mut self) -> Result<()> {
        self.commits = None;
        self.done
            .recv()
            .map_err(|_| anyhow!("the committer thread ended without a result"))?
    }
}

struct Writer<'a> {
    store: &'a mut Store,
    /// Absent in a dry run.
    link: Option<CommitLink>,
    options: &'a ImportOptions,
    reports: &'a mut [FileReport],
    outputs: HashMap<usize, FileOutput>,
    table: Option<Table>,
    /// Rows staged in the store (or, in a dry run, accepted) since the last durable write.
    staged_rows: usize,
    /// Households rejected in this run (and not accepted later in it).
    rejected_households: FastSet<HouseholdId>,
    /// Dry run: households accepted in this run.
    pending: FastMap<HouseholdId, KnownHousehold>,
    /// Dry run: persons accepted in this run, with their household.
    pending_persons: FastMap<IdNumber, HouseholdId>,
    /// Households this import touched, for the `members-mismatch` screen.
    touched: TouchMarks,
    last_person_household: Option<HouseholdId>,
    /// Dry run: persons the run would add to (or move out of) each household.
    dry_run_deltas: FastMap<HouseholdId, i32>,
    /// Report file names of each input, without the kind.
    report_bases: Vec<PathBuf>,
    /// The last line of each file with rows in the pending batch.
    last_lines: Vec<(usize, u64)>,
    /// Rows per durable write.
    batch_rows: usize,
    /// The file whose rows are coming.
    current_file: Option<usize>,
    /// Estimated rows of households and persons (`None` in a dry run, or without a guess).
    expected_rows: [Option<usize>; 2],
    /// A person index being prepared in another thread (nothing comes when none is).
    prepared_index: Receiver<PersonIndex>,
}

impl<'a> Writer<'a> {
    fn new(
        store: &'a mut Store,
        link: Option<CommitLink>,
        options: &'a ImportOptions,
        reports: &'a mut [FileReport],
        expected_rows: [Option<usize>; 2],
        prepared_index: Receiver<PersonIndex>,
    ) -> Self {
        Writer {
            expected_rows,
            prepared_index,
            store,
            link,
            options,
            reports,
            outputs: HashMap::new(),
            table: None,
            staged_rows: 0,
            last_lines: Vec::new(),
            batch_rows: context_batch_rows(options.batch_rows),
            rejected_households: FastSet::default(),
            pending: FastMap::default(),
            pending_persons: FastMap::default(),
            touched: TouchMarks::default(),
            last_person_household: None,
            dry_run_deltas: FastMap::default(),
            report_bases: report_bases(&options.files, options.report_dir.as_deref()),
            current_file: None,
        }
    }

    /// Takes the files from the readers in turn until the reader whose turn it is has no more.
    fn run(&mut self, links: Vec<ReaderLink>) -> Result<()> {
        let mut turn = 0;
        while let Ok(message) = links[turn].messages.recv() {
            match message {
                Message::End => {
                    if let Some(file) = self.current_file.take() {
                        self.close_reports(file)?;
                    }
                    turn = (turn + 1) % links.len();
                }
                Message::Start {
                    file,
                    table,
                    header,
                } => {
                    self.current_file = Some(file);
                    // Persons are checked against stored households: commit those first.
                    if self.table != Some(table) {
                        self.flush()?;
                        self.make_room(table);
                    }
                    self.table = Some(table);
                    self.outputs.insert(
                        file,
                        FileOutput {
                            header,
                            rejects: None,
                            warnings: None,
                        },
                    );
                }
                Message::Batch { file, mut items } => {
                    // The batch's index entries are read first, their cache misses overlapping.
                    for item in &items {
                        match item {
                            Item::Household { row, .. } => {
                                self.store.warm_household(row.household_id)
                            }
                            Item::Person { row, .. } => self.store.warm_person(row.person_id),
                            Item::Rejected { .. } => {}
                        }
                    }
                    for item in items.drain(..) {
                        self.apply(file, item)?;
                    }
                    // Hand the emptied vector back; the reader then allocates no new batches.
                    let _ = links[turn].recycle.try_send(items);
                    if self.staged_rows >= self.batch_rows {
                        self.flush()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes room in the image for the rows of `table` this import is expected to bring; for
    /// persons, with the index prepared meanwhile when there is one.
    fn make_room(&mut self, table: Table) {
        let persons = table == Table::Persons;
        let Some(rows) = self.expected_rows[usize::from(persons)] else {
            return;
        };
        if persons {
            // Waits for the index only if its thread is still at it.
            if let Ok(index) = self.prepared_index.recv() {
                self.store.adopt_person_index(index);
            }
        } else {
            self.touched.reserve(rows);
        }
        self.store.expect_rows(persons, rows);
    }

    /// The household's head and region: from this run (dry run) or from the image, whose lookup
    /// is cheap for persons that come grouped by household.
    fn known_household(&mut self, id: HouseholdId) -> Option<KnownHousehold> {
        if let Some(known) = self.pending.get(&id) {
            return Some(*known);
        }
        Some(KnownHousehold {
            head: self.store.stored_head(id)?,
            region: RegionCode::from_u64(id.region_value()).ok()?,
            members: 0,
        })
    }

    fn apply(&mut self, file: usize, item: Item) -> Result<()> {
        self.reports[file].rows += 1;
        let line = match &item {
            Item::Rejected { line, .. }
            | Item::Household { line, .. }
            | Item::Person { line, .. } => *line,
        };
        match self.last_lines.last_mut() {
            Some((last_file, last_line)) if *last_file == file => *last_line = line,
            _ => self.last_lines.push((file, line)),
        }
        match item {
            Item::Rejected {
                line,
                issues,
                raw,
                household,
            } => {
                if let Some(id) = household {
                    self.rejected_households.insert(id);
                }
                self.reject(file, line, &issues, &raw)?;
            }
            Item::Household {
                line,
                row,
                warnings,
                raw,
            } => {
                let id = row.household_id;
                self.rejected_households.remove(&id);
                if let Some(raw) = raw {
                    self.warn(file, line, &warnings, &raw)?;
                }
                self.reports[file].stored += 1;
                self.staged_rows += 1;
                let touch = if self.options.dry_run {
                    self.pending.insert(
                        id,
                        KnownHousehold {
                            head: row.head_id,
                            region: row.region_code,
                            members: row.members,
                        },
                    );
                    Touch::Id(id)
                } else {
                    Touch::Slot(self.store.stage_household(*row))
                };
                self.touched.mark(touch, file, line, true);
            }
            Item::Person {
                line,
                row,
                warnings,
                raw,
            } => {
                let id = row.household_id;
                let raw = raw.unwrap_or_default();
                let raw_or_render = |raw: &csv::ByteRecord, writer: &Self| {
                    if raw.is_empty() {
                        render_person(&row, &writer.header_of(file))
                    } else {
                        raw.clone()
                    }
                };
                let Some(household) = self.known_household(id) else {
                    let (rule_name, message) = if self.rejected_households.contains(&id) {
                        (
                            rule::HOUSEHOLD_REJECTED,
                            format!("household {id} was rejected in this import; fix it first"),
                        )
                    } else {
                        (
                            rule::UNKNOWN_HOUSEHOLD,
                            format!("household {id} is neither stored nor in this import"),
                        )
                    };
                    let issue = issue(Some("household_id"), id.to_string(), rule_name, message);
                    let raw = raw_or_render(&raw, self);
                    return self.reject(file, line, &[issue], &raw);
                };
                if row.relation == tiermesh_federation::record::Relation::Head
                    && row.person_id != household.head
                {
                    let message = format!(
                        "a head's person_id must equal the household's head_id {}",
                        household.head
                    );
                    let issue = issue(
                        Some("person_id"),
                        row.person_id.text(),
                        rule::HEAD_MISMATCH,
                        message,
                    );
                    let raw = raw_or_render(&raw, self);
                    return self.reject(file, line, &[issue], &raw);
                }
                let mut warnings = warnings;
                // The row is accepted from here on: staging it tells where the person was.
                let (previous, own, left) = if self.options.dry_run {
                    let previous = self
                        .pending_persons
                        .get(&row.person_id)
                        .copied()
                        .or_else(|| self.store.image().person_household(row.person_id));
                    (previous, Touch::Id(id), previous.map(Touch::Id))
                } else {
                    let placed = self.store.stage_person(row.clone())?;
                    (
                        placed.previous_household(),
                        Touch::Slot(placed.household_slot),
                        placed.previous.map(|(_, slot)| Touch::Slot(slot)),
                    )
                };
                if let Some(previous) = previous {
                    if previous.region_value() != household.region.value() {
                        warnings.push(Issue {
                            severity: Severity::Warning,
                            column: Some("person_id"),
                            value: row.person_id.text(),
                            rule: rule::DUPLICATE_PERSON,
                            message: format!(
                                "this person is also registered in household {previous} of region {:012}; \
                                 the row replaces it",
                                previous.region_value()
                            ),
                        });
                    }
                }
                if !warnings.is_empty() {
                    let raw = raw_or_render(&raw, self);
                    self.warn(file, line, &warnings, &raw)?;
                }
                if let Some(previous) = previous.filter(|previous| *previous != id) {
                    // The household the person leaves changes too.
                    if let Some(left) = left {
                        self.touched.mark(left, file, line, false);
                    }
                    if self.options.dry_run {
                        *self.dry_run_deltas.entry(previous).or_insert(0) -= 1;
                    }
                }
                if self.options.dry_run && previous != Some(id) {
                    // Nothing is written in a dry run: keep the membership changes as deltas.
                    self.pending_persons.insert(row.person_id, id);
                    *self.dry_run_deltas.entry(id).or_insert(0) += 1;
                }
                if self.last_person_household != Some(id) {
                    self.touched.mark(own, file, line, false);
                    self.last_person_household = Some(id);
                }
                self.reports[file].stored += 1;
                self.staged_rows += 1;
            }
        }
        Ok(())
    }

    /// The header of an input file, as read.
    fn header_of(&self, file: usize) -> Vec<String> {
        self.outputs
            .get(&file)
            .map(|output| output.header.clone())
            .unwrap_or_default()
    }

    fn flush(&mut self) -> Result<()> {
        self.staged_rows = 0;
        if self.options.dry_run {
            self.last_lines.clear();
            return Ok(());
        }
        let lines: Vec<String> = self
            .last_lines
            .drain(..)
            .filter(|_| self.options.log_commits)
            .map(|(file, line)| {
                format!(
                    "committed {} through line {line}",
                    self.reports[file].path.display()
                )
            })
            .collect();
        let prepared = self.store.take_staged_writes();
        if prepared.is_empty() {
            // Every row of the batch was rejected: nothing to make durable.
            for line in lines {
                println!("{line}");
            }
            return Ok(());
        }
        let link = self.link.as_mut().ok_or_else(|| anyhow!("no committer"))?;
        let last = prepared.len() - 1;
        let mut lines = Some(lines);
        for (index, prepared) in prepared.into_iter().enumerate() {
            let lines = if index == last {
                lines.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            if let Err(error) = link.send(Commit { prepared, lines }) {
                self.store.resync_image()?;
                return Err(error);
            }
        }
        Ok(())
    }

    /// Files the `members-mismatch` screen for every household this import touched, then closes
    /// the report files. Returns the data version.
    fn finish(mut self) -> Result<u64> {
        self.flush()?;
        if let Some(link) = self.link.as_mut() {
            if let Err(error) = link.wait() {
                self.store.resync_image()?;
                return Err(error);
            }
            self.store.refresh_data_version();
        }
        // One check per touched household, filed against its mark.
        let marks = std::mem::take(&mut self.touched);
        let mut mismatches: Vec<(usize, u64, HouseholdId, u8, u16)> = Vec::new();
        let households = &self.store.image().households;
        for (slot, (&line, &file)) in marks.slot_lines.iter().zip(&marks.slot_files).enumerate() {
            if line != 0 && households.alive[slot] {
                let (members, persons) =
                    (households.members[slot], households.persons_stored[slot]);
                if u16::from(members) != persons {
                    let id = HouseholdId(households.household_id[slot]);
                    mismatches.push((file as usize, line & !HOUSEHOLDS_ROW, id, members, persons));
                }
            }
        }
        for (&id, &(line, file)) in &marks.by_id {
            let counts = self.store.member_counts(id);
            let members = match (self.pending.get(&id), counts) {
                (Some(known), _) => known.members,
                (None, Some((stored, _))) => stored,
                (None, None) => continue,
            };
            let stored = counts.map_or(0, |(_, persons)| persons);
            let delta = self.dry_run_deltas.get(&id).copied().unwrap_or(0);
            let persons = (i32::from(stored) + delta).max(0) as u16;
            if u16::from(members) != persons {
                mismatches.push((file as usize, line & !HOUSEHOLDS_ROW, id, members, persons));
            }
        }
        drop(marks);
        mismatches.sort_by_key(|&(file, line, id, _, _)| (file, line, id));
        // The rows of the reports, read all at once (in parallel, in key order).
        let rows = if self.options.dry_run {
            vec![None; mismatches.len()]
        } else {
            let ids: Vec<HouseholdId> = mismatches.iter().map(|&(_, _, id, _, _)| id).collect();
            self.store.households(&ids)?
        };
        let mut previous_file = None;
        for ((file, line, id, members, persons), row) in mismatches.into_iter().zip(rows) {
            // One report open at a time here too: the files come in order.
            if let Some(previous) = previous_file.filter(|previous| *previous != file) {
                self.close_reports(previous)?;
            }
            previous_file = Some(file);
            let warning = Issue {
                severity: Severity::Warning,
                column: Some("members"),
                value: members.to_string(),
                rule: rule::MEMBERS_MISMATCH,
                message: format!(
                    "household {id} has members = {members} but {persons} persons stored"
                ),
            };
            let header = self
                .outputs
                .get(&file)
                .map(|o| o.header.clone())
                .unwrap_or_default();
            let raw = match (&row, self.reports[file].table) {
                (Some(row), Some(Table::Households)) => render_household(row, &header),
                _ => csv::ByteRecord::new(),
            };
            self.warn(file, line, &[warning], &raw)?;
        }
        let files: Vec<usize> = self.outputs.keys().copied().collect();
        for file in files {
            self.close_reports(file)?;
        }
        if !self.options.dry_run {
            self.store.flush()?;
        }
        Ok(self.store.data_version())
    }

    /// Writes out and closes the report files of an input whose rows have all arrived, so that an
    /// import of many files holds few open.
    fn close_reports(&mut self, file: usize) -> Result<()> {
        let Some(output) = self.outputs.get_mut(&file) else {
            return Ok(());
        };
        // Dropped once written out, which closes the file.
        for mut writer in [output.rejects.take(), output.warnings.take()]
            .into_iter()
            .flatten()
        {
            writer.flush().with_context(|| {
                format!(
                    "writing the report of {}",
                    self.reports[file].path.display()
                )
            })?;
        }
        Ok(())
    }

    fn report_writer(
        &mut self,
        file: usize,
        kind: &str,
    ) -> Result<&mut csv::Writer<BufWriter<File>>> {
        let path = with_kind(&self.report_bases[file], kind);
        let output = self
            .outputs
            .get_mut(&file)
            .ok_or_else(|| anyhow!("report for an unknown file"))?;
        let slot = if kind == "rejects" {
            &mut output.rejects
        } else {
            &mut output.warnings
        };
        let report = &mut self.reports[file];
        let written = if kind == "rejects" {
            &mut report.rejects_file
        } else {
            &mut report.warnings_file
        };
        if slot.is_none() {
            let mut builder = csv::WriterBuilder::new();
            builder.flexible(true);
            if written.is_some() {
                // Closed when its input ended; the members screen at the end adds to it.
                let handle = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("reopening {}", path.display()))?;
                *slot = Some(builder.from_writer(BufWriter::new(handle)));
            } else {
                let handle =
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                let mut writer = builder.from_writer(BufWriter::new(handle));
                let mut header: Vec<&str> = REPORT_COLUMNS.to_vec();
                header.extend(output.header.iter().map(String::as_str));
                writer
                    .write_record(&header)
                    .with_context(|| format!("writing {}", path.display()))?;
                *written = Some(path);
                *slot = Some(writer);
            }
        }
        slot.as_mut()
            .ok_or_else(|| anyhow!("report writer missing"))
    }

    fn reject(
        &mut self,
        file: usize,
        line: u64,
        issues: &[Issue],
        raw: &csv::ByteRecord,
    ) -> Result<()> {
        self.reports[file].rejected += 1;
        for issue in issues {
            count(&mut self.reports[file].rejected_by_rule, issue.rule);
        }
        let joined = |field: &dyn Fn(&Issue) -> String| {
            issues.iter().map(field).collect::<Vec<_>>().join(" | ")
        };
        let columns = joined(&|issue| issue.column.unwrap_or("").to_string());
        let values = joined(&|issue| issue.value.clone());
        let rules = joined(&|issue| issue.rule.to_string());
        let messages = joined(&|issue| issue.message.clone());
        let writer = self.report_writer(file, "rejects")?;
        write_report_row(writer, line, &columns, &values, &rules, &messages, raw)
    }

    fn warn(
        &mut self,
        file: usize,
        line: u64,
        warnings: &[Issue],
        raw: &csv::ByteRecord,
    ) -> Result<()> {
        for warning in warnings {
            self.reports[file].warnings += 1;
            count(&mut self.reports[file].warnings_by_rule, warning.rule);
            let writer = self.report_writer(file, "warnings")?;
            write_report_row(
                writer,
                line,
                warning.column.unwrap_or(""),
                &warning.value,
                warning.rule,
                &warning.message,
                raw,
            )?;
        }
        Ok(())
    }
}

fn count(counts: &mut Vec<(&'static str, u64)>, name: &'static str) {
    match counts.iter_mut().find(|(seen, _)| *seen == name) {
        Some(entry) => entry.1 += 1,
        None => counts.push((name, 1)),
    }
}

fn write_report_row(
    writer: &mut csv::Writer<BufWriter<File>>,
    line: u64,
    column: &str,
    value: &str,
    rule_name: &str,
    message: &str,
    raw: &csv::ByteRecord,
) -> Result<()> {
    let line = line.to_string();
    let mut record = csv::ByteRecord::with_capacity(256, raw.len() + REPORT_COLUMNS.len());
    for field in [line.as_str(), column, value, rule_name, message] {
        record.push_field(field.as_bytes());
    }
    for field in raw.iter() {
        record.push_field(field);
    }
    writer
        .write_byte_record(&record)
        .context("writing a report row")
}

/// The report files of each input, without the `.<kind>.csv` ending: `<dir>/<stem>`, beside the
/// input unless a report folder is given. Names are made unique (two `households.csv` from two
/// county folders into one report folder get their folder's name in front), and no report ever
/// overwrites an input of the same command.
pub fn report_bases(files: &[PathBuf], report_dir: Option<&Path>) -> Vec<PathBuf> {
    let stem = |input: &Path| {
        input.file_stem().map_or_else(
            || "import".to_string(),
            |stem| stem.to_string_lossy().into_owned(),
        )
    };
    let dir = |input: &Path| {
        report_dir
            .map(Path::to_path_buf)
            .or_else(|| input.parent().map(Path::to_path_buf))
            .unwrap_or_default()
    };
    let plain: Vec<PathBuf> = files
        .iter()
        .map(|input| dir(input).join(stem(input)))
        .collect();
    let inputs: HashSet<PathBuf> = files
        .iter()
        .map(|input| input.canonicalize().unwrap_or_else(|_| input.clone()))
        .collect();
    let clashes_with_input = |base: &Path| {
        ["rejects", "warnings"].iter().any(|kind| {
            let path = with_kind(base, kind);
            inputs.contains(&path.canonicalize().unwrap_or(path))
        })
    };
    let mut taken: HashSet<PathBuf> = HashSet::new();
    let mut bases = Vec::with_capacity(files.len());
    for (index, (input, base)) in files.iter().zip(&plain).enumerate() {
        let shared = plain.iter().filter(|other| *other == base).count() > 1;
        let mut candidate = if shared {
            let folder = input
                .parent()
                .and_then(Path::file_name)
                .map_or_else(String::new, |name| format!("{}-", name.to_string_lossy()));
            dir(input).join(format!("{folder}{}", stem(input)))
        } else {
            base.clone()
        };
        if taken.contains(&candidate) || clashes_with_input(&candidate) {
            candidate = dir(input).join(format!("{}-{}", stem(input), index + 1));
        }
        taken.insert(candidate.clone());
        bases.push(candidate);
    }
    bases
}

fn with_kind(base: &Path, kind: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(format!(".{kind}.csv"));
    PathBuf::from(name)
}

/// A valid persons row written back as CSV cells in `header`'s order. Every cell of a valid
/// persons row has exactly one accepted spelling, so this is the row as it was written.
fn render_person(row: &Person, header: &[String]) -> csv::ByteRecord {
    let bool_text = |value: bool| if value { "true" } else { "false" }.to_string();
    let mut record = csv::ByteRecord::new();
    for name in header {
        let cell = match name.as_str() {
            "person_id" => row.person_id.text(),
            "household_id" => row.household_id.to_string(),
            "relation" => row.relation.name().to_string(),
            "gender" => row.gender.name().to_string(),
            "birth_date" => row.birth_date.to_string(),
            "education" => row.education.name().to_string(),
            "health" => row.health.name().to_string(),
            "labor" => row.labor.name().to_string(),
            "in_school" => bool_text(row.in_school),
            "employed" => bool_text(row.employed),
            _ => String::new(),
        };
        record.push_field(cell.as_bytes());
    }
    record
}

/// A stored household written back as CSV cells in `header`'s order.
fn render_household(row: &Household, header: &[String]) -> csv::ByteRecord {
    let bool_text = |value: bool| if value { "true" } else { "false" }.to_string();
    let mut record = csv::ByteRecord::new();
    for name in header {
        let cell = match name.as_str() {
            "household_id" => row.household_id.to_string(),
            "region_code" => row.region_code.to_string(),
            "head_id" => row.head_id.text(),
            "head_name" => row.head_name.clone(),
            "members" => row.members.to_string(),
            "cause" => row.cause.name().to_string(),
            "status" => row.status.name().to_string(),
            "registered_year" => row.registered_year.to_string(),
            "exit_year" => row
                .exit_year
                .map(|year| year.to_string())
                .unwrap_or_default(),
            "income_per_capita" => format_cents(row.income_per_capita),
            "housing_safe" => bool_text(row.housing_safe),
            "water_safe" => bool_text(row.water_safe),
            "medical_insured" => bool_text(row.medical_insured),
            "cadre_id" => row.cadre_id.clone(),
            "industry" => row.industry.name().to_string(),
            "relocated" => bool_text(row.relocated),
            "relocation_site" => row.relocation_site.clone().unwrap_or_default(),
            "phone" => row.phone.clone().unwrap_or_default(),
            _ => String::new(),
        };
        record.push_field(cell.as_bytes());
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_unique_and_never_an_input() {
        let files: Vec<PathBuf> = [
            "a/520102/households.csv",
            "a/520103/households.csv",
            "b/persons.csv",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let bases = report_bases(&files, Some(Path::new("out")));
        assert_eq!(
            bases,
            [
                PathBuf::from("out/520102-households"),
                PathBuf::from("out/520103-households"),
                PathBuf::from("out/persons")
            ]
        );
        let beside = report_bases(&files, None);
        assert_eq!(beside[0], PathBuf::from("a/520102/households"));
        // Importing a file and its own rejects file together must not overwrite the latter.
        let files: Vec<PathBuf> = ["x/h.csv", "x/h.rejects.csv"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let bases = report_bases(&files, None);
        assert_eq!(bases[0], PathBuf::from("x/h-1"));
        assert_eq!(bases[1], PathBuf::from("x/h.rejects"));
    }
}
