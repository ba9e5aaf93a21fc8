//! The audit log on a real file: appends survive reopening; an edited, deleted, reordered or
//! inserted record, an edited head and a foreign signature are each found and named by line; a
//! torn append is cut back to the last signed head; a rewritten history (a fork, even re-signed
//! with the audit key) cannot prove itself consistent with a head kept before.

use std::path::Path;

use tiermesh_crypto::audit::verify_consistency;
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_storage::audit_log::{
    read_log, AuditLog, AuditRecord, Decision, AUDIT_LOG_FILE, AUDIT_REASON_BYTES_MAX,
};
use tiermesh_storage::StorageError;

fn node_key() -> SigningKey {
    SigningKey::from_seed(&[1; 32]).expect("seed")
}

fn audit_key() -> SigningKey {
    SigningKey::from_seed(&[2; 32]).expect("seed")
}

fn record(rows: u64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time_ms: 1_800_000_000_000 + rows,
        query_id: format!("{rows:032x}"),
        grant_id: "ab".repeat(16),
        requester: node_key().public_key().to_string(),
        plan_digest: "cd".repeat(32),
        role: "sub".to_string(),
        scope: vec!["520102000000".to_string()],
        rows_scanned: rows,
        groups_returned: 3,
        cells_suppressed: 0,
        decision: Decision::Answered,
        reason: String::new(),
        metadata_index: 7,
    }
}

/// A log of `count` records in `dir`.
fn write_log(dir: &Path, count: u64) {
    let mut log = AuditLog::open(dir, node_key().public_key(), audit_key()).expect("open");
    for rows in 0..count {
        log.append(record(rows), 1_800_000_000_000 + rows)
            .expect("append");
    }
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(AUDIT_LOG_FILE))
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(AUDIT_LOG_FILE), text).expect("write");
}

fn verdict(dir: &Path) -> String {
    verdict_with(dir, &audit_key().public_key())
}

fn verdict_with(dir: &Path, key: &PublicKey) -> String {
    match read_log(&dir.join(AUDIT_LOG_FILE), &node_key().public_key(), key) {
        Ok(contents) => format!(
            "ok: {} records, {} heads",
            contents.records.len(),
            contents.heads.len()
        ),
        Err(StorageError::AuditDamaged { line, reason, .. }) => format!("line {line}: {reason}"),
        Err(other) => format!("error: {other}"),
    }
}

#[test]
fn appends_survive_reopening_and_keep_counting() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), 3);
    let mut log = AuditLog::open(dir.path(), node_key().public_key(), audit_key()).expect("reopen");
    assert_eq!(log.size(), 3);
    let mut long = record(9);
    long.reason = "é".repeat(AUDIT_REASON_BYTES_MAX);
    let head = log.append(long, 1_900_000_000_000).expect("append");
    assert_eq!(head.head.size, 4);
    assert_eq!(verdict(dir.path()), "ok: 4 records, 4 heads");
    let contents = read_log(
        &dir.path().join(AUDIT_LOG_FILE),
        &node_key().public_key(),
        &audit_key().public_key(),
    )
    .expect("read");
    assert_eq!(
        contents.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(contents.records[3].reason.len() <= AUDIT_REASON_BYTES_MAX);
    // Lines alternate: record, head.
    assert!(lines(dir.path())[1].starts_with("{\"head\":"));
}

/// A change to the lines of a log.
type Tamper = dyn Fn(&mut Vec<String>);

#[test]
fn every_kind_of_tampering_is_found_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), 4);
    let original = lines(dir.path());
    assert_eq!(original.len(), 8);
    let cases: Vec<(&str, Box<Tamper>, &str)> = vec![
        (
            "an edited record",
            Box::new(|lines| lines[2] = lines[2].replace("\"rows_scanned\":1", "\"rows_scanned\":5")),
            "line 4: the records before it do not hash to the head's signed root (a record among the first 2 was edited or reordered)",
        ),
        (
            "a deleted record and its head",
            Box::new(|lines| {
                lines.drain(2..4);
            }),
            "line 3: record number 2 where 1 belongs (records deleted, inserted or reordered)",
        ),
        (
            "a deleted record",
            Box::new(|lines| {
                lines.remove(4);
            }),
            "line 5: the head covers 3 records but 2 precede it (a record was added or deleted)",
        ),
        (
            "two records swapped",
            Box::new(|lines| lines.swap(2, 4)),
            "line 3: record number 2 where 1 belongs (records deleted, inserted or reordered)",
        ),
        (
            "two records swapped and renumbered",
            Box::new(|lines| {
                let (second, third) = (lines[2].clone(), lines[4].clone());
                lines[2] = third.replace("\"seq\":2", "\"seq\":1");
                lines[4] = second.replace("\"seq\":1", "\"seq\":2");
            }),
            "line 4: the records before it do not hash to the head's signed root (a record among the first 2 was edited or reordered)",
        ),
        (
            "an inserted record",
            Box::new(|lines| {
                let forged = lines[2].replace("\"seq\":1", "\"seq\":2");
                lines.insert(4, forged);
            }),
            "line 6: record number 2 where 3 belongs (records deleted, inserted or reordered)",
        ),
        (
            "an edited head",
            Box::new(|lines| lines[3] = lines[3].replace("\"size\":2", "\"size\":3")),
            "line 4: the head covers 3 records but 2 precede it (a record was added or deleted)",
        ),
        (
            "a line that is not JSON",
            Box::new(|lines| lines[6] = "garbage".to_string()),
            "line 7: not an audit record: expected value at line 1 column 1",
        ),
    ];
    for (what, tamper, expected) in cases {
        let mut changed = original.clone();
        tamper(&mut changed);
        write_lines(dir.path(), &changed);
        let found = verdict(dir.path());
        assert_eq!(found, expected, "{what}");
        assert!(
            AuditLog::open(dir.path(), node_key().public_key(), audit_key()).is_err(),
            "{what}: a damaged log must not open for appending"
        );
    }
    write_lines(dir.path(), &original);
    assert_eq!(verdict(dir.path()), "ok: 4 records, 4 heads");
    // Another audit key than the one the verifier trusts.
    let stranger = SigningKey::from_seed(&[3; 32]).expect("seed");
    assert!(verdict_with(dir.path(), &stranger.public_key())
        .starts_with("line 2: the head's signature does not verify"));
}

#[test]
fn a_torn_append_is_cut_back_to_the_last_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), 2);
    let path = dir.path().join(AUDIT_LOG_FILE);
    let intact = std::fs::read(&path).expect("read");
    // A crash after the record line, in the middle of its head line.
    let mut torn = intact.clone();
    let next = lines(dir.path())[0].replace("\"seq\":0", "\"seq\":2");
    torn.extend_from_slice(next.as_bytes());
    torn.extend_from_slice(b"\n{\"head\":{\"node\":\"");
    std::fs::write(&path, &torn).expect("write");
    let contents = read_log(&path, &node_key().public_key(), &audit_key().public_key())
        .expect("a torn tail is not damage");
    assert_eq!(contents.records.len(), 2);
    assert_eq!(contents.torn_bytes, (torn.len() - intact.len()) as u64);
    let mut log = AuditLog::open(dir.path(), node_key().public_key(), audit_key()).expect("open");
    assert_eq!(std::fs::read(&path).expect("read"), intact);
    log.append(record(2), 1_800_000_000_100).expect("append");
    assert_eq!(verdict(dir.path()), "ok: 3 records, 3 heads");
}

#[test]
fn a_rewritten_history_cannot_prove_it_extends_a_kept_head() {
    let honest = tempfile::tempdir().expect("tempdir");
    write_log(honest.path(), 5);
    let kept = AuditLog::open(honest.path(), node_key().public_key(), audit_key())
        .expect("open")
        .last_head()
        .cloned()
        .expect("a head");
    // The same node and audit key write a different record 2, then carry on: every head of
    // the forged log verifies on its own.
    let forged = tempfile::tempdir().expect("tempdir");
    let mut log =
        AuditLog::open(forged.path(), node_key().public_key(), audit_key()).expect("open");
    for rows in 0..8 {
        let rows = if rows == 2 { 999 } else { rows };
        log.append(record(rows), 1_800_000_000_000 + rows)
            .expect("append");
    }
    assert_eq!(verdict(forged.path()), "ok: 8 records, 8 heads");
    let newest = log.last_head().cloned().expect("head");
    let proof =
        tiermesh_crypto::audit::consistency_proof(log.leaves(), kept.head.size).expect("proof");
    assert!(verify_consistency(
        kept.head.size,
        newest.head.size,
        &kept.head.root,
        &newest.head.root,
        &proof
    )
    .is_err());
    // The honest log, grown, does prove it.
    let mut honest_log =
        AuditLog::open(honest.path(), node_key().public_key(), audit_key()).expect("open");
    honest_log
        .append(record(5), 1_800_000_000_005)
        .expect("append");
    let grown = honest_log.last_head().cloned().expect("head");
    let proof = tiermesh_crypto::audit::consistency_proof(honest_log.leaves(), kept.head.size)
        .expect("proof");
    verify_consistency(
        kept.head.size,
        grown.head.size,
        &kept.head.root,
        &grown.head.root,
        &proof,
    )
    .expect("the honest log extends the kept head");
}
