//! Online import (`tiermesh import --connect`): an operator sends CSV files to a running node,
//! which stages them in `DIR/incoming/` and runs the same import as `tiermesh import --dir`
//! (same rules, same reports, same durability), then sends the reports back.
//!
//! Authorisation: only the node's operators may import: the node's own key, and the keys listed
//! as `operators` in `[mesh]` of `node.toml` or given with `tiermesh run --operator KEY`.
//! Boundary: every chunk comes from the network. Names are reduced to a plain file name, offsets
//! must continue exactly what the node holds, and every size is bounded
//! ([`IMPORT_CHUNK_BYTES_MAX`], [`IMPORT_FILES_MAX`], [`IMPORT_UPLOAD_BYTES_MAX`],
//! [`IMPORT_UPLOADS_MAX`]). While an import runs it holds the node's store: queries to this node
//! wait for it (a federated query whose deadline passes reports the node missing, with reason).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::hex;
use tiermesh_crypto::PublicKey;
use tiermesh_federation::date::Date;
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::wire::{
    ImportAnswer, ImportChunk, ImportCommit, ImportFileAnswer, Message, IMPORT_CHUNK_BYTES_MAX,
    IMPORT_FILES_MAX, IMPORT_REPORT_BYTES_MAX,
};
use tiermesh_storage::Store;

use crate::client::{load_key, Session};
use crate::import::{self, ImportOptions};

/// Uploads a node keeps open at once.
pub const IMPORT_UPLOADS_MAX: usize = 4;
/// Bytes of all files of one upload.
pub const IMPORT_UPLOAD_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;
/// An upload untouched for this long may be dropped to make room for a new one.
pub const IMPORT_UPLOAD_IDLE_MS: u64 = 10 * 60 * 1000;
/// Longest file name kept (bytes); longer ones are cut.
pub const IMPORT_NAME_BYTES_MAX: usize = 128;
/// Bytes the client sends per chunk.
pub const UPLOAD_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Wait for one chunk's acknowledgement.
pub const CHUNK_TIMEOUT_MS: u64 = 60_000;
/// Wait for the import itself (a province's files take minutes).
pub const IMPORT_COMMIT_TIMEOUT_MS: u64 = 4 * 60 * 60 * 1000;

/// What a running node needs to accept online imports.
#[derive(Clone, Debug)]
pub struct ImportSettings {
    /// Where uploads are staged (emptied at start).
    pub staging: PathBuf,
    /// The node's jurisdiction: rows outside it are rejected, as in a local import.
    pub jurisdiction: RegionCode,
    /// Keys allowed to import, besides the node's own.
    pub operators: Vec<PublicKey>,
}

struct StagedFile {
    name: String,
    path: PathBuf,
    received: u64,
}

struct Upload {
    owner: PublicKey,
    dir: PathBuf,
    files: Vec<StagedFile>,
    bytes: u64,
    importing: bool,
    touched: Instant,
}

/// A node's side of online imports.
pub struct ImportService {
    settings: Option<ImportSettings>,
    operators: HashSet<PublicKey>,
    store: Arc<Mutex<Store>>,
    uploads: Mutex<HashMap<[u8; 16], Upload>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ImportService {
    /// The service; `settings` `None` refuses every import. Empties the staging folder (what a
    /// crash left there was never imported, and its client was never told it was).
    pub fn new(
        own_key: PublicKey,
        settings: Option<ImportSettings>,
        store: Arc<Mutex<Store>>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<ImportService>> {
        let mut operators: HashSet<PublicKey> = HashSet::from([own_key]);
        if let Some(settings) = &settings {
            operators.extend(settings.operators.iter().copied());
            if settings.staging.exists() {
                std::fs::remove_dir_all(&settings.staging).with_context(|| {
                    format!("emptying the staging folder {}", settings.staging.display())
                })?;
            }
        }
        Ok(Arc::new(ImportService {
            settings,
            operators,
            store,
            uploads: Mutex::new(HashMap::new()),
            metrics,
        }))
    }

    /// Keys that must stay trusted by the transport so operators can connect.
    pub fn operator_keys(&self) -> Vec<PublicKey> {
        self.operators.iter().copied().collect()
    }

    /// Answers an `ImportChunk` or `ImportCommit` from `peer`.
    pub async fn handle(self: &Arc<Self>, peer: PublicKey, message: Message) -> Message {
        let service = Arc::clone(self);
        let outcome = tokio::task::spawn_blocking(move || match message {
            Message::ImportChunk(chunk) => service.chunk(peer, *chunk),
            Message::ImportCommit(commit) => service.commit(peer, &commit),
            _ => Err(anyhow!("not an import request")),
        })
        .await;
        match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Message::Error {
                message: format!("{error:#}"),
            },
            Err(_) => Message::Error {
                message: "the import task failed".to_string(),
            },
        }
    }

    fn check_operator(&self, peer: &PublicKey) -> Result<&ImportSettings> {
        let Some(settings) = &self.settings else {
            bail!("this node does not accept online imports (it was started without a node directory)");
        };
        if !self.operators.contains(peer) {
            bail!(
                "refused: key {peer} is not an operator of this node (operators: the node's own \
                 key, and `operators` in [mesh] of node.toml or `tiermesh run --operator KEY`)"
            );
        }
        Ok(settings)
    }

    fn chunk(&self, peer: PublicKey, chunk: ImportChunk) -> Result<Message> {
        let settings = self.check_operator(&peer)?;
        if chunk.bytes.len() > IMPORT_CHUNK_BYTES_MAX {
            bail!(
                "a chunk carries at most {IMPORT_CHUNK_BYTES_MAX} bytes, got {}",
                chunk.bytes.len()
            );
        }
        if chunk.file >= IMPORT_FILES_MAX {
            bail!(
                "an import has at most {IMPORT_FILES_MAX} files; file number {} is past that",
                chunk.file
            );
        }
        let mut uploads = self
            .uploads
            .lock()
            .map_err(|_| anyhow!("the upload table is poisoned"))?;
        if !uploads.contains_key(&chunk.upload) {
            if chunk.file != 0 || chunk.offset != 0 {
                bail!(
                    "upload {} is not known here (it may have been idle past {} s, or the node \
                     restarted): start it again",
                    hex::encode(&chunk.upload),
                    IMPORT_UPLOAD_IDLE_MS / 1000
                );
            }
            let idle = Duration::from_millis(IMPORT_UPLOAD_IDLE_MS);
            let stale: Vec<[u8; 16]> = uploads
                .iter()
                .filter(|(_, upload)| !upload.importing && upload.touched.elapsed() > idle)
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                if let Some(upload) = uploads.remove(&id) {
                    let _ = std::fs::remove_dir_all(&upload.dir);
                }
            }
            if uploads.len() >= IMPORT_UPLOADS_MAX {
                bail!(
                    "the node is busy with {} uploads (at most {IMPORT_UPLOADS_MAX}); try again \
                     later",
                    uploads.len()
                );
            }
            let dir = settings.staging.join(hex::encode(&chunk.upload));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the staging folder {}", dir.display()))?;
            uploads.insert(
                chunk.upload,
                Upload {
                    owner: peer,
                    dir,
                    files: Vec::new(),
                    bytes: 0,
                    importing: false,
                    touched: Instant::now(),
                },
            );
        }
        let upload = uploads
            .get_mut(&chunk.upload)
            .ok_or_else(|| anyhow!("the upload vanished"))?;
        if upload.owner != peer {
            bail!(
                "upload {} belongs to another key",
                hex::encode(&chunk.upload)
            );
        }
        if upload.importing {
            bail!(
                "upload {} is being imported already",
                hex::encode(&chunk.upload)
            );
        }
        upload.touched = Instant::now();
        let file = chunk.file as usize;
        if file == upload.files.len() {
            let name = plain_name(&chunk.name);
            let path = upload.dir.join(format!("{file}-{name}"));
            upload.files.push(StagedFile {
                name,
                path,
                received: 0,
            });
        } else if file > upload.files.len() {
            bail!(
                "file {file} of upload {} comes before file {}",
                hex::encode(&chunk.upload),
                upload.files.len()
            );
        }
        let length = chunk.bytes.len() as u64;
        if upload.bytes.saturating_add(length) > IMPORT_UPLOAD_BYTES_MAX {
            bail!("an upload holds at most {IMPORT_UPLOAD_BYTES_MAX} bytes");
        }
        let staged = &mut upload.files[file];
        if chunk.offset != staged.received {
            bail!(
                "file {file} ({}): a chunk at byte {} but the node holds {} bytes of it",
                staged.name,
                chunk.offset,
                staged.received
            );
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&staged.path)
            .with_context(|| format!("opening {}", staged.path.display()))?;
        out.write_all(&chunk.bytes)
            .with_context(|| format!("writing {}", staged.path.display()))?;
        staged.received += length;
        upload.bytes += length;
        Ok(Message::ImportChunkAck {
            received: staged.received,
        })
    }

    fn commit(&self, peer: PublicKey, commit: &ImportCommit) -> Result<Message> {
        let settings = self.check_operator(&peer)?;
        let (dir, files) = {
            let mut uploads = self
                .uploads
                .lock()
                .map_err(|_| anyhow!("the upload table is poisoned"))?;
            let upload = uploads
                .get_mut(&commit.upload)
                .filter(|upload| upload.owner == peer)
                .ok_or_else(|| {
                    anyhow!("upload {} is not known here", hex::encode(&commit.upload))
                })?;
            if upload.importing {
                bail!(
                    "upload {} is being imported already",
                    hex::encode(&commit.upload)
                );
            }
            if upload.files.len() != commit.files as usize {
                bail!(
                    "the node holds {} files of upload {}, the client sent {}",
                    upload.files.len(),
                    hex::encode(&commit.upload),
                    commit.files
                );
            }
            upload.importing = true;
            let files: Vec<(String, PathBuf)> = upload
                .files
                .iter()
                .map(|file| (file.name.clone(), file.path.clone()))
                .collect();
            (upload.dir.clone(), files)
        };
        let outcome = self.run_import(settings, &dir, &files, commit);
        self.metrics
            .import_finished(outcome.as_ref().ok().filter(|answer| !answer.dry_run).map(
                |answer| {
                    let sum = |field: fn(&ImportFileAnswer) -> u64| {
                        answer.files.iter().map(field).sum::<u64>()
                    };
                    (
                        sum(|file| file.stored),
                        sum(|file| file.rejected),
                        sum(|file| file.warnings),
                    )
                },
            ));
        if let Ok(mut uploads) = self.uploads.lock() {
            uploads.remove(&commit.upload);
        }
        let keep = matches!(&outcome, Ok(answer) if answer.reports_kept_at.is_some());
        if !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Message::ImportAnswer(Box::new(outcome?)))
    }

    fn run_import(
        &self,
        settings: &ImportSettings,
        dir: &Path,
        files: &[(String, PathBuf)],
        commit: &ImportCommit,
    ) -> Result<ImportAnswer> {
        let today = crate::today();
        let report_dir = dir.join("reports");
        let options = ImportOptions {
            files: files.iter().map(|(_, path)| path.clone()).collect(),
            dry_run: commit.dry_run,
            today,
            as_of: commit.as_of.unwrap_or(today),
            report_dir: Some(report_dir.clone()),
            progress: false,
            log_commits: false,
            batch_rows: import::BATCH_ROWS_DEFAULT,
        };
        let report = {
            let mut store = self
                .store
                .lock()
                .map_err(|_| anyhow!("the store is poisoned"))?;
            import::import(&mut store, settings.jurisdiction, &options)?
        };
        let report_bytes: u64 = report
            .files
            .iter()
            .flat_map(|file| [&file.rejects_file, &file.warnings_file])
            .flatten()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum();
        let send_reports = report_bytes <= IMPORT_REPORT_BYTES_MAX as u64;
        let read = |path: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
            match path {
                Some(path) if send_reports => Ok(Some(
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                )),
                _ => Ok(None),
            }
        };
        let mut answers = Vec::with_capacity(report.files.len());
        for ((name, _), file) in files.iter().zip(&report.files) {
            answers.push(ImportFileAnswer {
                name: name.clone(),
                table: file.table,
                rows: file.rows,
                stored: file.stored,
                rejected: file.rejected,
                warnings: file.warnings,
                rejects: read(&file.rejects_file)?,
                warnings_report: read(&file.warnings_file)?,
            });
        }
        Ok(ImportAnswer {
            files: answers,
            dry_run: report.dry_run,
            data_version: report.data_version,
            summary: report.summary_line(),
            reports_kept_at: (!send_reports && report_bytes > 0)
                .then(|| report_dir.display().to_string()),
        })
    }
}

/// The last path component, without control characters, cut to `IMPORT_NAME_BYTES_MAX`.
fn plain_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut plain: String = last
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == ':' { '_' } else { c })
        .collect();
    while plain.len() > IMPORT_NAME_BYTES_MAX {
        plain.pop();
    }
    if plain.is_empty() || plain == "." || plain == ".." {
        "file.csv".to_string()
    } else {
        plain
    }
}

/// How `tiermesh import --connect` runs.
#[derive(Clone, Debug)]
pub struct RemoteImport {
    pub connect: String,
    /// An operator key of the node.
    pub key: PathBuf,
    /// Pin the node's key.
    pub server_key: Option<PublicKey>,
    pub files: Vec<PathBuf>,
    pub dry_run: bool,
    pub as_of: Option<Date>,
    /// Where report files go; beside each input file when `None`.
    pub report_dir: Option<PathBuf>,
    pub progress: bool,
}

/// What an online import did, and where its reports were written here.
#[derive(Debug)]
pub struct RemoteReport {
    pub answer: ImportAnswer,
    /// For each file: the rejects and warnings reports written on this machine.
    pub written: Vec<(Option<PathBuf>, Option<PathBuf>)>,
}

impl RemoteReport {
    /// Rows rejected.
    pub fn rejected(&self) -> u64 {
        self.answer.files.iter().map(|file| file.rejected).sum()
    }
}

/// Sends the files to the node, has it import them, and writes its reports here.
pub fn import_remote(options: &RemoteImport) -> Result<RemoteReport> {
    if options.files.is_empty() {
        bail!("no files given: name one or more CSV files of households or persons");
    }
    if options.files.len() > IMPORT_FILES_MAX as usize {
        bail!(
            "an online import takes at most {IMPORT_FILES_MAX} files, got {}",
            options.files.len()
        );
    }
    let mut total_bytes = 0u64;
    for path in &options.files {
        let metadata =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if !metadata.is_file() {
            bail!("{} is not a file", path.display());
        }
        total_bytes += metadata.len();
    }
    let key = load_key(&options.key)?;
    let upload: [u8; 16] = crate::random_bytes()?;
    let progress = crate::output::progress_bar(options.progress, total_bytes);
    let answer = crate::client::block_on(async {
        let session = Session::connect(&key, &options.connect, options.server_key).await?;
        let outcome = send_and_commit(&session, upload, options, &progress).await;
        session.close().await;
        outcome
    })?;
    progress.finish_and_clear();
    if answer.files.len() != options.files.len() {
        bail!(
            "the node reported {} files, {} were sent",
            answer.files.len(),
            options.files.len()
        );
    }
    let bases = import::report_bases(&options.files, options.report_dir.as_deref());
    if let Some(dir) = &options.report_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the report folder {}", dir.display()))?;
    }
    let mut written = Vec::with_capacity(answer.files.len());
    for (file, base) in answer.files.iter().zip(&bases) {
        let write = |bytes: &Option<Vec<u8>>, kind: &str| -> Result<Option<PathBuf>> {
            let Some(bytes) = bytes else { return Ok(None) };
            let mut path = base.clone().into_os_string();
            path.push(format!(".{kind}.csv"));
            let path = PathBuf::from(path);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            Ok(Some(path))
        };
        written.push((
            write(&file.rejects, "rejects")?,
            write(&file.warnings_report, "warnings")?,
        ));
    }
    Ok(RemoteReport { answer, written })
}

async fn send_and_commit(
    session: &Session,
    upload: [u8; 16],
    options: &RemoteImport,
    progress: &indicatif::ProgressBar,
) -> Result<ImportAnswer> {
    let mut buffer = vec![0u8; UPLOAD_CHUNK_BYTES];
    for (index, path) in options.files.iter().enumerate() {
        let name = path.file_name().map_or_else(
            || "file.csv".to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut offset = 0u64;
        loop {
            let length = read_full(&mut file, &mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            // An empty file still sends one (empty) chunk so the node knows of it.
            if length == 0 && offset > 0 {
                break;
            }
            let chunk = ImportChunk {
                upload,
                file: index as u32,
                name: name.clone(),
                offset,
                bytes: buffer[..length].to_vec(),
            };
            let answer = session
                .request_with_timeout(&Message::ImportChunk(Box::new(chunk)), CHUNK_TIMEOUT_MS)
                .await
                .with_context(|| format!("sending {}", path.display()))?;
            offset += length as u64;
            match answer {
                Message::ImportChunkAck { received } if received == offset => {}
                Message::ImportChunkAck { received } => bail!(
                    "{}: the node holds {received} bytes, {offset} were sent",
                    path.display()
                ),
                Message::Error { message } => bail!("the node refused: {message}"),
                other => bail!("unexpected answer {other:?}"),
            }
            progress.inc(length as u64);
            if length < buffer.len() {
                break;
            }
        }
    }
    let commit = ImportCommit {
        upload,
        files: options.files.len() as u32,
        dry_run: options.dry_run,
        as_of: options.as_of,
    };
    progress.set_message("importing");
    match session
        .request_with_timeout(&Message::ImportCommit(commit), IMPORT_COMMIT_TIMEOUT_MS)
        .await
        .context("waiting for the node's import")?
    {
        Message::ImportAnswer(answer) => Ok(*answer),
        Message::Error { message } => bail!("the node's import failed: {message}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Reads until `buffer` is full or the file ends; the bytes read.
fn read_full(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_folders_and_control_characters() {
        assert_eq!(plain_name("../../etc/passwd"), "passwd");
        assert_eq!(plain_name("C:\\data\\households.csv"), "households.csv");
        assert_eq!(plain_name(".."), "file.csv");
        assert_eq!(plain_name(""), "file.csv");
        assert_eq!(plain_name("a\nb\u{7}.csv"), "ab.csv");
        assert_eq!(plain_name(&"x".repeat(1000)).len(), IMPORT_NAME_BYTES_MAX);
    }
}
