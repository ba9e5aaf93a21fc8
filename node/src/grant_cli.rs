//! `tiermesh grant issue|delegate|show|revoke|list` and `tiermesh query --connect`: grant files,
//! revocations, the mesh's record of who may see what, and signed federated queries from the
//! command line.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::hex;
use tiermesh_crypto::PublicKey;
use tiermesh_federation::date::Date;
use tiermesh_federation::grant::{sign_request, Grant, GrantLink, QueryRequest};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::wire::{FederatedAnswer, GrantList, GrantListing, Message};

use crate::client::{load_key, Session};

/// What a new link grants, as given on the command line.
#[derive(Clone, Debug)]
pub struct LinkArgs {
    pub audience: PublicKey,
    pub scope: Vec<RegionCode>,
    pub tables: Vec<Table>,
    /// None: every non-personal column of the tables.
    pub dimensions: Option<Vec<String>>,
    /// None: every non-personal column of the tables.
    pub measures: Option<Vec<String>>,
    pub min_cell: u32,
    pub valid_days: u64,
    pub depth: u8,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Every non-personal column, and `birth_date` where persons are granted: the planner lets
/// `birth_date` into a query only inside `age()`/`age_band()`, so granting it as a dimension
/// grants ages and age bands, never the dates.
pub fn default_dimensions(tables: &[Table]) -> Vec<String> {
    let mut names = non_personal(tables);
    if tables.contains(&Table::Persons) {
        names.push("birth_date".to_string());
        names.sort();
    }
    names
}

/// Every non-personal column of `tables`, sorted: the default measures of a grant.
pub fn non_personal(tables: &[Table]) -> Vec<String> {
    let mut names: Vec<String> = tables
        .iter()
        .flat_map(|table| table.columns())
        .filter(|column| !column.personal)
        .map(|column| column.name.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn link(args: &LinkArgs) -> Result<GrantLink> {
    let not_before = now_seconds();
    Ok(GrantLink {
        id: crate::random_bytes()?,
        parent: [0; 32],
        issuer: args.audience,
        audience: args.audience,
        scope: args.scope.clone(),
        tables: args.tables.clone(),
        dimensions: args
            .dimensions
            .clone()
            .unwrap_or_else(|| default_dimensions(&args.tables)),
        measures: args
            .measures
            .clone()
            .unwrap_or_else(|| non_personal(&args.tables)),
        min_cell: args.min_cell,
        not_before,
        expires: not_before + args.valid_days.max(1) * 86_400,
        depth: args.depth,
    })
}

fn write_grant(out: &Path, grant: &Grant) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    file.write_all(&grant.encode())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))
}

/// Reads a grant file.
pub fn read_grant(path: &Path) -> Result<Grant> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the grant {}", path.display()))?;
    Grant::decode(&bytes).with_context(|| format!("{} is not a grant file", path.display()))
}

/// `tiermesh grant issue`: an officer issues a root link.
pub fn issue(officer_key: &Path, args: &LinkArgs, out: &Path) -> Result<Grant> {
    let officer = load_key(officer_key)?;
    let grant = Grant::issue(&officer, link(args)?);
    write_grant(out, &grant)?;
    Ok(grant)
}

/// Records a grant in the mesh's metadata (so its audience may connect), sending it with
/// `key_file`'s key (an officer, or the holder of the parent grant).
pub fn record(
    key_file: &Path,
    grant: &Grant,
    connect: &str,
    server_key: Option<PublicKey>,
) -> Result<u64> {
    let key = load_key(key_file)?;
    let command = tiermesh_federation::meta::MetaCommand::RecordGrant(Box::new(grant.clone()));
    crate::client::block_on(async {
        let session = Session::connect(&key, connect, server_key).await?;
        let index = session.commit(&Message::Propose { command }).await;
        session.close().await;
        index
    })
}

/// `tiermesh grant revoke`: commits the revocation of link `id` (and so of every link delegated
/// from it) through the node at `connect`; returns the metadata index it was applied at. Once
/// this returns, every entry node confirms with the leader that it has applied at least that
/// index before it checks a grant.
pub fn revoke(
    key_file: &Path,
    id: [u8; 16],
    reason: &str,
    connect: &str,
    server_key: Option<PublicKey>,
) -> Result<u64> {
    let key = load_key(key_file)?;
    let revocation = tiermesh_federation::meta::Revocation {
        grant_id: id,
        reason: reason.to_string(),
        at: now_seconds(),
    };
    let command = tiermesh_federation::meta::MetaCommand::RevokeGrant(
        tiermesh_federation::meta::sign_revocation(&key, revocation),
    );
    crate::client::block_on(async {
        let session = Session::connect(&key, connect, server_key).await?;
        let index = session.commit(&Message::Propose { command }).await;
        session.close().await;
        index
    })
}

/// `tiermesh grant list`: the grants recorded in the mesh (touching `region`, when given), as
/// the node at `connect` has applied them.
pub fn list(
    key_file: &Path,
    connect: &str,
    region: Option<RegionCode>,
    server_key: Option<PublicKey>,
) -> Result<GrantList> {
    let key = load_key(key_file)?;
    crate::client::block_on(async {
        let session = Session::connect(&key, connect, server_key).await?;
        let answer = session.request(&Message::GrantListRequest { region }).await;
        session.close().await;
        match answer? {
            Message::GrantList(list) => Ok(*list),
            Message::Error { message } => bail!("the node answered: {message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    })
}

/// A grant list as a table for people, or JSON.
pub fn render_list(list: &GrantList, format: crate::output::Format) -> Result<String> {
    let status = |listing: &GrantListing| -> String {
        match listing.revoked.first() {
            Some((id, record)) if *id == listing.grant.leaf().id => {
                format!("revoked at index {} by {}", record.index, short(&record.by))
            }
            Some((id, record)) => format!(
                "revoked through link {} (index {})",
                &hex::encode(id)[..8],
                record.index
            ),
            None if listing.grant.leaf().expires <= now_seconds() => "expired".to_string(),
            None => "active".to_string(),
        }
    };
    if format == crate::output::Format::Json {
        let grants: Vec<serde_json::Value> = list
            .grants
            .iter()
            .map(|listing| {
                let mut value = grant_json(&listing.grant);
                value["id"] = serde_json::json!(hex::encode(&listing.grant.leaf().id));
                value["status"] = serde_json::json!(status(listing));
                value["revoked"] = listing
                    .revoked
                    .iter()
                    .map(|(id, record)| {
                        serde_json::json!({
                            "id": hex::encode(id),
                            "by": record.by.to_string(),
                            "reason": record.reason,
                            "at": record.at,
                            "index": record.index,
                        })
                    })
                    .collect();
                value
            })
            .collect();
        let document = serde_json::json!({
            "metadata_index": list.metadata_index,
            "truncated": list.truncated,
            "grants": grants,
        });
        return Ok(format!("{}\n", serde_json::to_string_pretty(&document)?));
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "grant id", "audience", "scope", "tables", "min cell", "expires", "links", "status",
    ]);
    for listing in &list.grants {
        let leaf = listing.grant.leaf();
        table.add_row([
            hex::encode(&leaf.id),
            short(&leaf.audience),
            leaf.scope
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            leaf.tables
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
            leaf.min_cell.to_string(),
            leaf.expires.to_string(),
            listing.grant.links.len().to_string(),
            status(listing),
        ]);
    }
    Ok(format!(
        "{table}\n{} grants{}; metadata index {}\n",
        list.grants.len(),
        if list.truncated {
            " (more not shown)"
        } else {
            ""
        },
        list.metadata_index
    ))
}

fn short(key: &PublicKey) -> String {
    key.to_string().chars().take(16).collect()
}

/// `tiermesh grant delegate`: the holder of a grant issues a narrower child link.
pub fn delegate(holder_key: &Path, grant: &Path, args: &LinkArgs, out: &Path) -> Result<Grant> {
    let holder = load_key(holder_key)?;
    let parent = read_grant(grant)?;
    let child = parent.delegate(&holder, link(args)?)?;
    write_grant(out, &child)?;
    Ok(child)
}

/// A grant as JSON (for `grant show --format json`).
pub fn grant_json(grant: &Grant) -> serde_json::Value {
    serde_json::json!({
        "links": grant.links.iter().map(|signed| {
            let link = &signed.link;
            serde_json::json!({
                "id": hex::encode(&link.id),
                "parent": hex::encode(&link.parent),
                "issuer": link.issuer.to_string(),
                "audience": link.audience.to_string(),
                "scope": link.scope.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tables": link.tables.iter().map(|t| t.name()).collect::<Vec<_>>(),
                "dimensions": link.dimensions,
                "measures": link.measures,
                "min_cell": link.min_cell,
                "not_before": link.not_before,
                "expires": link.expires,
                "depth": link.depth,
            })
        }).collect::<Vec<_>>(),
    })
}

/// A grant for people.
pub fn grant_text(grant: &Grant) -> String {
    let mut text = String::new();
    for (index, signed) in grant.links.iter().enumerate() {
        let link = &signed.link;
        text.push_str(&format!(
            "link {index} {}\n  issuer   {}\n  audience {}\n  scope    {}\n  tables   {}\n  \
             dimensions {}\n  measures {}\n  min cell {}\n  valid    {} .. {} (unix seconds)\n  \
             may delegate {} more\n",
            hex::encode(&link.id),
            link.issuer,
            link.audience,
            link.scope
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            link.tables
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", "),
            link.dimensions.join(", "),
            link.measures.join(", "),
            link.min_cell,
            link.not_before,
            link.expires,
            link.depth,
        ));
    }
    text
}

/// Options of `tiermesh query --connect`.
#[derive(Clone, Debug)]
pub struct FederatedQuery {
    pub connect: String,
    pub key: std::path::PathBuf,
    pub grant: std::path::PathBuf,
    pub sql: String,
    pub as_of: Date,
    pub deadline_ms: u64,
    pub server_key: Option<PublicKey>,
}

/// A released answer and the query id it was asked under (the id every node's audit log and
/// log lines carry), with the time from sending each signed request to receiving its answer on
/// the open connection (connection set-up and close not included).
#[derive(Clone, Debug)]
pub struct Answered {
    pub query_id: String,
    pub answer: FederatedAnswer,
    /// One per run, in order.
    pub times: Vec<std::time::Duration>,
}

impl Answered {
    /// The median of `times`.
    pub fn median(&self) -> std::time::Duration {
        let mut times = self.times.clone();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    }
}

/// Signs and sends a federated query `runs` times (each a new query id) on one connection;
/// returns the last released answer and every run's time.
pub fn query(options: &FederatedQuery, runs: usize) -> Result<Answered> {
    let key = load_key(&options.key)?;
    let grant = read_grant(&options.grant)?;
    crate::client::block_on(async {
        let session = Session::connect(&key, &options.connect, options.server_key).await?;
        let entry_node = session
            .server_key
            .ok_or_else(|| anyhow!("the node presented no key"))?;
        let mut times = Vec::with_capacity(runs.max(1));
        let mut last = None;
        for _ in 0..runs.max(1) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            let query_id: [u8; 16] = crate::random_bytes()?;
            let request = sign_request(
                &key,
                QueryRequest {
                    query_id,
                    sql: options.sql.clone(),
                    as_of: options.as_of,
                    deadline_ms: now + options.deadline_ms,
                    entry_node,
                    issued_at: now / 1000,
                    grant: grant.clone(),
                },
            );
            let sent = std::time::Instant::now();
            let answer = session
                .request_with_timeout(
                    &Message::ClientQuery(Box::new(request)),
                    options.deadline_ms + 2_000,
                )
                .await;
            times.push(sent.elapsed());
            match answer {
                Ok(Message::QueryAnswer(answer)) => {
                    last = Some((hex::encode(&query_id), *answer));
                }
                Ok(Message::Error { message }) => {
                    session.close().await;
                    bail!("{message} (query id {})", hex::encode(&query_id))
                }
                Ok(other) => {
                    session.close().await;
                    bail!("unexpected answer {other:?}")
                }
                Err(error) => {
                    session.close().await;
                    return Err(error);
                }
            }
        }
        session.close().await;
        let (query_id, answer) = last.ok_or_else(|| anyhow!("no run was made"))?;
        Ok(Answered {
            query_id,
            answer,
            times,
        })
    })
}

/// A federated answer in the chosen format. JSON carries the rows, the coverage (every region
/// that answered with its node and data version, every missing one with its reason), the
/// metadata index and the suppression counts; table and CSV print the rows (coverage goes to
/// stderr).
pub fn render_answer(answered: &Answered, format: crate::output::Format) -> Result<String> {
    let answer = &answered.answer;
    let elapsed = answered.median();
    match format {
        crate::output::Format::Json => {}
        crate::output::Format::Csv => {
            return crate::output::render(&answer.result, format, answer.metadata_index, elapsed)
        }
        crate::output::Format::Table => {
            return Ok(format!(
            "{}\n{} rows; {} rows scanned across the mesh; answered in {:.1} ms{}; query id {}\n",
            crate::output::table(&answer.result),
            answer.result.rows.len(),
            answer.result.rows_scanned,
            elapsed.as_secs_f64() * 1e3,
            if answered.times.len() > 1 {
                format!(" (median of {} runs)", answered.times.len())
            } else {
                String::new()
            },
            answered.query_id
        ))
        }
    }
    let rows: Vec<Vec<serde_json::Value>> = answer
        .result
        .rows
        .iter()
        .map(|row| row.iter().map(crate::output::json_value).collect())
        .collect();
    let document = serde_json::json!({
        "query_id": answered.query_id,
        "columns": answer.result.columns,
        "rows": rows,
        "metadata_index": answer.metadata_index,
        "rows_scanned": answer.result.rows_scanned,
        "elapsed_ms": elapsed.as_secs_f64() * 1e3,
        "runs_ms": answered.times.iter().map(|time| time.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        "suppressed": {
            "primary": answer.suppressed_primary,
            "secondary": answer.suppressed_secondary,
        },
        "coverage": {
            "answered": answer.coverage.answered.iter().map(|(region, node, version)| serde_json::json!({
                "region": region.to_string(),
                "node": node.to_string(),
                "data_version": version,
            })).collect::<Vec<_>>(),
            "missing": answer.coverage.missing.iter().map(|(region, reason)| serde_json::json!({
                "region": region.to_string(),
                "reason": format!("{reason:?}"),
            })).collect::<Vec<_>>(),
        },
    });
    Ok(format!("{}\n", serde_json::to_string_pretty(&document)?))
}

/// The coverage lines printed under an answer.
pub fn coverage_text(answer: &FederatedAnswer) -> String {
    let mut text = format!(
        "coverage: {} regions answered, {} missing; metadata index {}; cells suppressed {} (+{} to protect them)\n",
        answer.coverage.answered.len(),
        answer.coverage.missing.len(),
        answer.metadata_index,
        answer.suppressed_primary,
        answer.suppressed_secondary
    );
    for (region, reason) in &answer.coverage.missing {
        text.push_str(&format!("  missing {region}: {reason:?}\n"));
    }
    text
}
