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
use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_federation::date::Date;
use tiermesh_federation::record::{format_cents, Household, HouseholdId, IdNumber, Person};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::standard::validate::{
    household_warnings, parse_household, parse_person, person_warnings, rule, HeaderMap,
    ImportContext, Issue, Severity,
};
use tiermesh_storage::Store;

/// Default rows per validated batch handed to the writer, and per durable write.
pub const BATCH_ROWS_DEFAULT: usize = 16_384;
/// Largest batch accepted.
pub const BATCH_ROWS_MAX: usize = 1 << 20;
/// Batches in flight between the reader and the writer.
const BATCHES_IN_FLIGHT: usize = 4;
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

/// One input file, opened and with its header understood.
struct Input {
    index: usize,
    path: PathBuf,
    reader: csv::Reader<CountingReader<File>>,
    header: Vec<String>,
    map: HeaderMap,
    /// File positions of the standard columns, in file order (skipping report columns).
    keep: Vec<usize>,
    table: Table,
    /// Lines end in CRLF (judged from the first line).
    crlf: bool,
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

fn open_input(
    index: usize,
    path: &Path,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<Input> {
    let mut file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let crlf = first_line_ends_in_crlf(&mut file)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(CountingReader { inner: file, bytes });
    let mut record = csv::ByteRecord::new();
    let found = reader
        .read_byte_record(&mut record)
        .with_context(|| format!("{}: line 1: cannot read the header", path.display()))?;
    if !found {
        bail!(
            "{}: the file is empty; expected a header row",
            path.display()
        );
    }
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
        crlf,
        path: path.to_path_buf(),
        reader,
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
        row: Household,
        warnings: Vec<Issue>,
        raw: Option<csv::ByteRecord>,
    },
    Person {
        line: u64,
        row: Person,
        warnings: Vec<Issue>,
        raw: csv::ByteRecord,
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
    let bytes_read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Every header is checked before anything is stored.
    let mut inputs = Vec::with_capacity(options.files.len());
    for (index, path) in options.files.iter().enumerate() {
        inputs.push(open_input(index, path, bytes_read.clone())?);
    }
    let total_bytes: u64 = options
        .files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
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
    let (sender, receiver) = sync_channel::<Message>(BATCHES_IN_FLIGHT);
    let writer_result = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut writer = Writer::new(store, options, &mut reports);
            writer.run(receiver)?;
            writer.finish()
        });
        let read_result = read_inputs(
            options.batch_rows,
            &mut inputs,
            &context,
            &sender,
            &progress,
            &bytes_read,
        );
        drop(sender);
        let written = writer
            .join()
            .map_err(|_| anyhow!("the import writer thread panicked"))?;
        read_result.and(written)
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

fn read_inputs(
    batch_rows: usize,
    inputs: &mut [Input],
    context: &ImportContext,
    sender: &std::sync::mpsc::SyncSender<Message>,
    progress: &indicatif::ProgressBar,
    bytes_read: &std::sync::atomic::AtomicU64,
) -> Result<()> {
    let closed = || anyhow!("the import writer stopped early");
    for input in inputs.iter_mut() {
        sender
            .send(Message::Start {
                file: input.index,
                table: input.table,
                header: input.header.clone(),
            })
            .map_err(|_| closed())?;
        let mut seen: HashSet<u64> = HashSet::new();
        let batch_rows = context_batch_rows(batch_rows);
        let mut items = Vec::with_capacity(batch_rows);
        let mut record = csv::ByteRecord::new();
        loop {
            let line = record_line(&input.reader);
            let more = input
                .reader
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
            let raw = std::mem::replace(&mut record, csv::ByteRecord::with_capacity(256, 24));
            items.push(check_row(input, context, &mut seen, line, raw));
            if items.len() == batch_rows {
                let batch = std::mem::replace(&mut items, Vec::with_capacity(batch_rows));
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
    seen: &mut HashSet<u64>,
    line: u64,
    raw: csv::ByteRecord,
) -> Item {
    if raw.len() != input.header.len() {
        let message = format!(
            "the header has {} cells, this row {}; check for a missing or extra comma",
            input.header.len(),
            raw.len()
        );
        return reject(
            line,
            raw,
            issue(None, String::new(), rule::SHAPE, message),
            None,
        );
    }
    if raw.as_slice().len() > RECORD_BYTES_MAX {
        let message = format!("the row is longer than {RECORD_BYTES_MAX} bytes");
        return reject(
            line,
            raw,
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
            raw,
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
                    return reject(line, raw, duplicate("household_id", id.to_string()), None);
                }
                let warnings = household_warnings(&row, context);
                let raw = (!warnings.is_empty()).then_some(raw);
                Item::Household {
                    line,
                    row,
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
                    raw,
                    household,
                }
            }
        },
        Table::Persons => match parse_person(&input.map, cells, context) {
            Ok(row) => {
                if !seen.insert(row.person_id.0) {
                    return reject(
                        line,
                        raw,
                        duplicate("person_id", row.person_id.text()),
                        None,
                    );
                }
                let warnings = person_warnings(&row, context);
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
                raw,
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
}

/// Where a household touched by this import was last seen, to file its members-mismatch warning.
#[derive(Clone, Copy)]
struct Touched {
    file: usize,
    line: u64,
    members: u8,
    /// Dry run: persons the run would add to (or move out of) the household.
    persons_delta: i32,
}

/// Counters and report files of one input file.
struct FileOutput {
    header: Vec<String>,
    rejects: Option<csv::Writer<BufWriter<File>>>,
    warnings: Option<csv::Writer<BufWriter<File>>>,
}

struct Writer<'a> {
    store: &'a mut Store,
    options: &'a ImportOptions,
    reports: &'a mut [FileReport],
    outputs: HashMap<usize, FileOutput>,
    table: Option<Table>,
    households: Vec<Household>,
    persons: Vec<Person>,
    /// Households rejected in this run (and not accepted later in it).
    rejected_households: HashSet<HouseholdId>,
    /// Dry run: households accepted in this run.
    pending: HashMap<HouseholdId, KnownHousehold>,
    /// Dry run: persons accepted in this run, with their household.
    pending_persons: HashMap<IdNumber, HouseholdId>,
    touched: HashMap<HouseholdId, Touched>,
    /// The file and line of the last row handed to the pending batch.
    last_line: Option<(usize, u64)>,
}

impl<'a> Writer<'a> {
    fn new(
        store: &'a mut Store,
        options: &'a ImportOptions,
        reports: &'a mut [FileReport],
    ) -> Self {
        Writer {
            store,
            options,
            reports,
            outputs: HashMap::new(),
            table: None,
            households: Vec::new(),
            persons: Vec::new(),
            last_line: None,
            rejected_households: HashSet::new(),
            pending: HashMap::new(),
            pending_persons: HashMap::new(),
            touched: HashMap::new(),
        }
    }

    fn run(&mut self, receiver: Receiver<Message>) -> Result<()> {
        for message in receiver {
            match message {
                Message::Start {
                    file,
                    table,
                    header,
                } => {
                    self.flush()?;
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
                Message::Batch { file, items } => {
                    for item in items {
                        self.apply(file, item)?;
                    }
                    self.flush()?;
                }
            }
        }
        Ok(())
    }

    fn known_household(&self, id: HouseholdId) -> Option<KnownHousehold> {
        if let Some(known) = self.pending.get(&id) {
            return Some(*known);
        }
        let head = self.store.image().head_id(id)?;
        Some(KnownHousehold {
            head,
            region: RegionCode::from_u64(id.region_value()).ok()?,
        })
    }

    fn apply(&mut self, file: usize, item: Item) -> Result<()> {
        self.reports[file].rows += 1;
        let line = match &item {
            Item::Rejected { line, .. }
            | Item::Household { line, .. }
            | Item::Person { line, .. } => *line,
        };
        self.last_line = Some((file, line));
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
                if self.options.dry_run {
                    self.pending.insert(
                        id,
                        KnownHousehold {
                            head: row.head_id,
                            region: row.region_code,
                        },
                    );
                }
                let delta = self
                    .touched
                    .get(&id)
                    .map_or(0, |touched| touched.persons_delta);
                self.touched.insert(
                    id,
                    Touched {
                        file,
                        line,
                        members: row.members,
                        persons_delta: delta,
                    },
                );
                if let Some(raw) = raw {
                    self.warn(file, line, &warnings, &raw)?;
                }
                self.reports[file].stored += 1;
                self.households.push(row);
            }
            Item::Person {
                line,
                row,
                warnings,
                raw,
            } => {
                let id = row.household_id;
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
                    return self.reject(file, line, &[issue], &raw);
                }
                let mut warnings = warnings;
                let previous = self
                    .pending_persons
                    .get(&row.person_id)
                    .copied()
                    .or_else(|| self.store.image().person_household(row.person_id));
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
                    self.warn(file, line, &warnings, &raw)?;
                }
                if self.options.dry_run && previous != Some(id) {
                    // Nothing is written in a dry run: keep the membership changes as deltas.
                    self.pending_persons.insert(row.person_id, id);
                    if let Some(previous) = previous {
                        self.touch(previous, file, line).persons_delta -= 1;
                    }
                    self.touch(id, file, line).persons_delta += 1;
                } else {
                    self.touch(id, file, line);
                }
                self.reports[file].stored += 1;
                self.persons.push(row);
            }
        }
        Ok(())
    }

    /// The household's entry in `touched`, created at `file`/`line` when new.
    fn touch(&mut self, id: HouseholdId, file: usize, line: u64) -> &mut Touched {
        self.touched.entry(id).or_insert(Touched {
            file,
            line,
            members: 0,
            persons_delta: 0,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.options.dry_run {
            self.households.clear();
            self.persons.clear();
            return Ok(());
        }
        if !self.households.is_empty() {
            self.store.write_households(&self.households)?;
            self.households.clear();
        }
        if !self.persons.is_empty() {
            self.store.write_persons(&self.persons)?;
            self.persons.clear();
        }
        if self.options.log_commits {
            if let Some((file, line)) = self.last_line.take() {
                println!(
                    "committed {} through line {line}",
                    self.reports[file].path.display()
                );
            }
        }
        Ok(())
    }

    /// Files the `members-mismatch` screen for every household this import touched, then closes
    /// the report files. Returns the data version.
    fn finish(mut self) -> Result<u64> {
        self.flush()?;
        let mut touched: Vec<(HouseholdId, Touched)> = self.touched.drain().collect();
        touched.sort_by_key(|(id, touched)| (touched.file, touched.line, *id));
        for (id, touched) in touched {
            let image = self.store.image();
            let stored_members = image
                .household_slot(id)
                .map(|slot| image.households.members[slot as usize]);
            let members = match (touched.members, stored_members) {
                (0, Some(stored)) => stored,
                (0, None) => continue,
                (imported, _) => imported,
            };
            let stored = image.persons_stored(id);
            let persons = (i32::from(stored) + touched.persons_delta).max(0) as u16;
            if u16::from(members) == persons {
                continue;
            }
            let warning = Issue {
                severity: Severity::Warning,
                column: Some("members"),
                value: members.to_string(),
                rule: rule::MEMBERS_MISMATCH,
                message: format!(
                    "household {id} has members = {members} but {persons} persons stored"
                ),
            };
            let row = if self.options.dry_run {
                None
            } else {
                self.store.household(id)?
            };
            let header = self
                .outputs
                .get(&touched.file)
                .map(|o| o.header.clone())
                .unwrap_or_default();
            let raw = match (&row, self.reports[touched.file].table) {
                (Some(row), Some(Table::Households)) => render_household(row, &header),
                _ => csv::ByteRecord::new(),
            };
            self.warn(touched.file, touched.line, &[warning], &raw)?;
        }
        for (file, output) in self.outputs.iter_mut() {
            for writer in [output.rejects.as_mut(), output.warnings.as_mut()]
                .into_iter()
                .flatten()
            {
                writer.flush().with_context(|| {
                    format!(
                        "writing the report of {}",
                        self.reports[*file].path.display()
                    )
                })?;
            }
        }
        Ok(self.store.data_version())
    }

    fn report_writer(
        &mut self,
        file: usize,
        kind: &str,
    ) -> Result<&mut csv::Writer<BufWriter<File>>> {
        let path = report_path(
            &self.reports[file].path,
            self.options.report_dir.as_deref(),
            kind,
        );
        let output = self
            .outputs
            .get_mut(&file)
            .ok_or_else(|| anyhow!("report for an unknown file"))?;
        let slot = if kind == "rejects" {
            &mut output.rejects
        } else {
            &mut output.warnings
        };
        if slot.is_none() {
            let handle =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut writer = csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(BufWriter::new(handle));
            let mut header: Vec<&str> = REPORT_COLUMNS.to_vec();
            header.extend(output.header.iter().map(String::as_str));
            writer
                .write_record(&header)
                .with_context(|| format!("writing {}", path.display()))?;
            if kind == "rejects" {
                self.reports[file].rejects_file = Some(path);
            } else {
                self.reports[file].warnings_file = Some(path);
            }
            *slot = Some(writer);
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

/// `<dir>/<stem>.<kind>.csv`, beside the input unless a report folder is given.
fn report_path(input: &Path, report_dir: Option<&Path>, kind: &str) -> PathBuf {
    let stem = input.file_stem().map_or_else(
        || "import".to_string(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let dir = report_dir
        .map(Path::to_path_buf)
        .or_else(|| input.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    dir.join(format!("{stem}.{kind}.csv"))
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
