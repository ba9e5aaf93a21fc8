//! Grants and signed query requests: who may ask which aggregates of which regions, proven by a
//! chain of Ed25519-signed links from a registered security officer down to the asker.
//!
//! A grant is a list of [`SignedLink`]s, root first. The root is issued by an officer whose
//! jurisdiction contains its whole scope; every later link is issued by the audience of the link
//! before it, names that link's hash, and is narrower in every field. Each link is signed under the
//! domain [`DOMAIN_GRANT_LINK`] over its canonical bytes (`meta::canonical_bytes`). A query request
//! carries the whole chain and is signed by the leaf's audience under [`DOMAIN_QUERY_REQUEST`].
//!
//! Invariant: pure functions. The time (`now`, unix seconds) and the random ids (grant ids, query
//! ids) are arguments; the replay cache forgets by the `now` it is handed.
//! Boundary: [`Grant::decode`], [`verify`] and [`verify_request`] take what arrived from the
//! network. `verify` re-checks the shape of every link itself, because a grant that travels
//! inside a `wire::Message` is decoded by serde without passing through `Grant::decode`.

use std::collections::{BTreeMap, BTreeSet};

use bincode::Options;
use serde::{Deserialize, Serialize};
use tiermesh_crypto::hex;
use tiermesh_crypto::{sha256, sign_domain, PublicKey, SigningKey};

use crate::date::Date;
use crate::meta::{canonical_bytes, MetaState};
use crate::query::{
    AggregateFunction, Dimension, Literal, Plan, PlanCache, Predicate, QueryError, SQL_BYTES_MAX,
};
use crate::region::RegionCode;
use crate::schema::Table;

/// Signature domain of a [`GrantLink`].
pub const DOMAIN_GRANT_LINK: &str = "grant/link";
/// Signature domain of a [`QueryRequest`].
pub const DOMAIN_QUERY_REQUEST: &str = "query/request";
/// The most links in one grant (the root included).
pub const LINKS_MAX: usize = 8;
/// The largest encoded grant [`Grant::decode`] accepts, in bytes.
pub const GRANT_BYTES_MAX: usize = 64 * 1024;
/// How far apart two clocks may be: a link is valid from `not_before - CLOCK_SKEW_MAX_SECONDS`
/// until `expires + CLOCK_SKEW_MAX_SECONDS`, and a request is fresh for that long either side of
/// its `issued_at`.
pub const CLOCK_SKEW_MAX_SECONDS: u64 = 30;
/// How long a [`ReplayCache`] remembers a query id: a request is fresh for
/// `CLOCK_SKEW_MAX_SECONDS` either side of its `issued_at`, so two arrivals of one request are at
/// most twice that apart.
pub const REPLAY_WINDOW_SECONDS: u64 = 2 * CLOCK_SKEW_MAX_SECONDS;
/// The most query ids a [`ReplayCache`] holds; when it is full of ids younger than
/// [`REPLAY_WINDOW_SECONDS`], new requests are refused rather than an id forgotten early.
pub const REPLAY_IDS_MAX: usize = 100_000;
/// The most regions in one link's scope.
pub const SCOPE_REGIONS_MAX: usize = 256;
/// The most column names in one link's dimensions or measures.
pub const COLUMNS_MAX: usize = 64;
/// A signature is an Ed25519 signature: 64 bytes.
pub const SIGNATURE_BYTES: usize = 64;

/// One step of a grant: `issuer` gives `audience` the right to ask aggregate queries within these
/// bounds.
///
/// The lists are kept sorted and free of duplicates (the canonical form [`Grant::issue`] and
/// [`Grant::delegate`] produce and [`verify`] insists on), so one set of rights has one encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantLink {
    /// Random, chosen by the issuer; what a revocation names.
    pub id: [u8; 16],
    /// SHA-256 of the parent's [`SignedLink`] in canonical bytes; zeros for the root.
    pub parent: [u8; 32],
    /// Who signs this link: an officer for the root, the parent's audience otherwise.
    pub issuer: PublicKey,
    /// Who receives the rights (and signs requests, or delegates further).
    pub audience: PublicKey,
    /// The regions whose rows may be aggregated; at least one.
    pub scope: Vec<RegionCode>,
    /// The tables that may be read; at least one.
    pub tables: Vec<Table>,
    /// Columns that may be grouped by or filtered on (a derived dimension such as
    /// `county(region_code)` or `age(birth_date)` counts as its base column).
    pub dimensions: Vec<String>,
    /// Columns that may be aggregated (`COUNT(*)` needs none).
    pub measures: Vec<String>,
    /// The smallest group count a released cell may have.
    pub min_cell: u32,
    /// Valid from (unix seconds).
    pub not_before: u64,
    /// Valid until (unix seconds, exclusive).
    pub expires: u64,
    /// How many more links may follow this one.
    pub depth: u8,
}

/// A link and its issuer's signature over `DOMAIN_GRANT_LINK` and its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedLink {
    pub link: GrantLink,
    pub signature: Vec<u8>,
}

impl SignedLink {
    /// Signs `link` with `key` as it stands: no field is filled in or checked. [`Grant::issue`]
    /// and [`Grant::delegate`] are the usual way to make links; this one is for tools and tests.
    pub fn sign(key: &SigningKey, link: GrantLink) -> SignedLink {
        let signature = sign_domain(key, DOMAIN_GRANT_LINK, &canonical_bytes(&link));
        SignedLink { link, signature }
    }

    /// The hash a child link names as its `parent`.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&canonical_bytes(self))
    }
}

/// A delegation chain, root first, at most [`LINKS_MAX`] links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub links: Vec<SignedLink>,
}

impl Grant {
    /// Issues a root grant: sets `link.issuer` to `issuer`'s public key and `link.parent` to zeros,
    /// sorts and deduplicates the lists, and signs. Whether `issuer` may issue it (a registered
    /// officer whose jurisdiction covers the scope) is for [`verify`] to say.
    pub fn issue(issuer: &SigningKey, mut link: GrantLink) -> Grant {
        link.issuer = issuer.public_key();
        link.parent = [0; 32];
        normalize(&mut link);
        Grant {
            links: vec![SignedLink::sign(issuer, link)],
        }
    }

    /// Delegates the leaf's rights, narrowed to `child`: `holder` must be the leaf's audience.
    /// Sets `child.issuer` and `child.parent`, sorts and deduplicates the lists, and refuses a
    /// child that is not narrower than the leaf in every field or that would make the chain longer
    /// than [`LINKS_MAX`].
    pub fn delegate(&self, holder: &SigningKey, mut child: GrantLink) -> Result<Grant, GrantError> {
        let Some(leaf) = self.links.last() else {
            return Err(GrantError::NoLinks);
        };
        if self.links.len() >= LINKS_MAX {
            return Err(GrantError::TooManyLinks {
                links: self.links.len() + 1,
                max: LINKS_MAX,
            });
        }
        if holder.public_key() != leaf.link.audience {
            return Err(GrantError::NotAudience {
                holder: holder.public_key(),
                audience: leaf.link.audience,
            });
        }
        child.issuer = holder.public_key();
        child.parent = leaf.hash();
        normalize(&mut child);
        let index = self.links.len();
        check_shape(index, &child)?;
        if self.ids().contains(&child.id) {
            return Err(GrantError::DuplicateId {
                link: index,
                id: hex::encode(&child.id),
            });
        }
        check_narrowing(index, &leaf.link, &child)?;
        let mut links = self.links.clone();
        links.push(SignedLink::sign(holder, child));
        Ok(Grant { links })
    }

    /// The last link: whose rights the grant carries.
    ///
    /// Panics on a grant with no links; [`Grant::issue`], [`Grant::delegate`] and
    /// [`Grant::decode`] never make one, and [`verify`] refuses one.
    pub fn leaf(&self) -> &GrantLink {
        match self.links.last() {
            Some(signed) => &signed.link,
            None => panic!("a grant has at least one link"),
        }
    }

    /// The ids of every link, root first: what a revocation list is checked against.
    pub fn ids(&self) -> Vec<[u8; 16]> {
        self.links.iter().map(|signed| signed.link.id).collect()
    }

    /// The canonical bytes: bincode with fixed-width little-endian integers.
    pub fn encode(&self) -> Vec<u8> {
        canonical_bytes(self)
    }

    /// Decodes a grant from untrusted bytes: at most [`GRANT_BYTES_MAX`], canonical (no trailing
    /// bytes), 1 to [`LINKS_MAX`] links, each well formed. Signatures and rights are not checked
    /// here (that is [`verify`]). Never panics, never allocates past the byte limit.
    pub fn decode(bytes: &[u8]) -> Result<Grant, GrantError> {
        if bytes.len() > GRANT_BYTES_MAX {
            return Err(GrantError::TooLarge {
                bytes: bytes.len(),
                max: GRANT_BYTES_MAX,
            });
        }
        let options = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(GRANT_BYTES_MAX as u64)
            .allow_trailing_bytes();
        let decode_error = |error: bincode::Error| GrantError::Decode {
            reason: crate::wire::describe(&error),
        };
        let grant: Grant = options.deserialize(bytes).map_err(decode_error)?;
        let consumed = options.serialized_size(&grant).map_err(decode_error)?;
        let consumed = usize::try_from(consumed).unwrap_or(usize::MAX);
        if consumed < bytes.len() {
            return Err(GrantError::TrailingBytes {
                count: bytes.len() - consumed,
            });
        }
        check_length(grant.links.len())?;
        for (index, signed) in grant.links.iter().enumerate() {
            check_shape(index, &signed.link)?;
        }
        Ok(grant)
    }
}

/// What a verified grant allows: the leaf's rights, with every id of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// The key that may sign requests under the grant.
    pub audience: PublicKey,
    pub scope: Vec<RegionCode>,
    pub tables: Vec<Table>,
    pub dimensions: Vec<String>,
    pub measures: Vec<String>,
    pub min_cell: u32,
    /// Unix seconds; the leaf's expiry (the earliest of the chain).
    pub expires: u64,
    /// Every link's id, root first.
    pub grant_ids: Vec<[u8; 16]>,
}

/// Why a grant, a delegation, a plan or a request was refused. Links are numbered from 0 (the
/// root).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The encoded grant is over the byte limit.
    #[error("an encoded grant is at most {max} bytes, got {bytes}")]
    TooLarge { bytes: usize, max: usize },
    /// The bytes are not a grant.
    #[error("the grant does not decode: {reason}")]
    Decode { reason: String },
    /// Bytes are left after the grant.
    #[error("{count} bytes follow the end of the grant")]
    TrailingBytes { count: usize },
    /// The grant has no link.
    #[error("the grant has no links; a grant holds at least its root link")]
    NoLinks,
    /// The chain is too long.
    #[error("the grant has {links} links; at most {max} are accepted")]
    TooManyLinks { links: usize, max: usize },
    /// A list of a link is empty.
    #[error("link {link}: {field} is empty; a link names at least one")]
    EmptyField { link: usize, field: &'static str },
    /// A list of a link is too long.
    #[error("link {link} names {count} {field}; at most {max} are accepted")]
    FieldTooLong {
        link: usize,
        field: &'static str,
        count: usize,
        max: usize,
    },
    /// A list of a link is not in canonical form.
    #[error("link {link}: {field} must be sorted and free of duplicates")]
    NotCanonical { link: usize, field: &'static str },
    /// A scope value is not a region code.
    #[error("link {link}: scope value {value} is not a valid 12-digit region code")]
    BadRegion { link: usize, value: u64 },
    /// A granted column is not a column of any granted table.
    #[error(
        "link {link} grants {field} column {column:?}, which none of its tables ({tables}) has"
    )]
    UnknownColumn {
        link: usize,
        field: &'static str,
        column: String,
        tables: String,
    },
    /// The validity window is empty.
    #[error("link {link} expires at {expires}, not after its not_before {not_before}")]
    EmptyWindow {
        link: usize,
        not_before: u64,
        expires: u64,
    },
    /// The signature is not 64 bytes or does not verify.
    #[error("the signature of link {link} by its issuer {issuer} does not verify")]
    BadSignature { link: usize, issuer: PublicKey },
    /// A link's parent hash is not its parent's (zeros for the root).
    #[error("link {link} names parent hash {found}, expected {expected}")]
    ParentHash {
        link: usize,
        found: String,
        expected: String,
    },
    /// Two links share an id.
    #[error("link {link} reuses the grant id {id} of an earlier link")]
    DuplicateId { link: usize, id: String },
    /// A link is not issued by its parent's audience.
    #[error(
        "link {link} is issued by {issuer}, but only the audience {expected} of link {parent} may \
         delegate it",
        parent = link - 1
    )]
    WrongIssuer {
        link: usize,
        issuer: PublicKey,
        expected: PublicKey,
    },
    /// The delegating key is not the leaf's audience.
    #[error("{holder} cannot delegate the grant: its leaf's audience is {audience}")]
    NotAudience {
        holder: PublicKey,
        audience: PublicKey,
    },
    /// The root issuer is not an officer.
    #[error("link 0 is issued by {issuer}, which is not a registered security officer")]
    NotOfficer { issuer: PublicKey },
    /// The root's scope leaves its officer's jurisdiction.
    #[error(
        "link 0 grants region {region}, outside the jurisdiction {jurisdiction} of its issuer \
         {issuer}"
    )]
    OutsideJurisdiction {
        issuer: PublicKey,
        region: RegionCode,
        jurisdiction: RegionCode,
    },
    /// The parent may not be delegated further.
    #[error("link {link} delegates link {parent}, whose delegation depth is 0", parent = link - 1)]
    DepthExhausted { link: usize },
    /// The child does not lower the depth.
    #[error(
        "link {link} does not lower the delegation depth: {depth} is not below {parent_depth}"
    )]
    DepthNotLowered {
        link: usize,
        depth: u8,
        parent_depth: u8,
    },
    /// A child's scope region is in no parent scope region.
    #[error("link {link} widens the scope: {region} is not inside {parent_scope}")]
    ScopeWidened {
        link: usize,
        region: RegionCode,
        parent_scope: String,
    },
    /// A child table is not a parent table.
    #[error("link {link} widens the tables: {table} is not granted by link {parent}", parent = link - 1)]
    TablesWidened { link: usize, table: Table },
    /// A child dimension is not a parent dimension.
    #[error(
        "link {link} widens the dimensions: {column} is not a dimension of link {parent}",
        parent = link - 1
    )]
    DimensionsWidened { link: usize, column: String },
    /// A child measure is not a parent measure.
    #[error(
        "link {link} widens the measures: {column} is not a measure of link {parent}",
        parent = link - 1
    )]
    MeasuresWidened { link: usize, column: String },
    /// A child lowers the minimum cell size.
    #[error("link {link} lowers the minimum cell size: {min_cell} is below {parent_min_cell}")]
    MinCellLowered {
        link: usize,
        min_cell: u32,
        parent_min_cell: u32,
    },
    /// A child's validity window leaves its parent's.
    #[error(
        "link {link} widens the validity window: [{not_before}, {expires}) is not inside \
         [{parent_not_before}, {parent_expires})"
    )]
    WindowWidened {
        link: usize,
        not_before: u64,
        expires: u64,
        parent_not_before: u64,
        parent_expires: u64,
    },
    /// A link is not valid yet, even allowing for clock skew.
    #[error(
        "link {link} is not valid before {not_before}; it is {now} (clock skew allowed: \
         {CLOCK_SKEW_MAX_SECONDS} s)"
    )]
    NotYetValid {
        link: usize,
        not_before: u64,
        now: u64,
    },
    /// A link has expired, even allowing for clock skew.
    #[error(
        "link {link} expired at {expires}; it is {now} (clock skew allowed: \
         {CLOCK_SKEW_MAX_SECONDS} s)"
    )]
    Expired { link: usize, expires: u64, now: u64 },
    /// A link has been revoked.
    #[error("link {link} (grant id {id}) has been revoked")]
    Revoked { link: usize, id: String },
    /// The plan reads a table the grant does not give.
    #[error("the query reads table {table}, which the grant does not give (granted: {granted})")]
    TableNotGranted { table: Table, granted: String },
    /// The plan groups or filters by a column that is not a granted dimension.
    #[error(
        "the query {used_as} column {column}, which is not a granted dimension (granted: \
         {granted})"
    )]
    DimensionNotGranted {
        column: String,
        used_as: &'static str,
        granted: String,
    },
    /// The plan aggregates a column that is not a granted measure.
    #[error(
        "the query aggregates column {column}, which is not a granted measure (granted: {granted})"
    )]
    MeasureNotGranted { column: String, granted: String },
    /// The plan's WHERE names a region that no scope region overlaps.
    #[error("the query's WHERE names region {region}, outside the grant's scope {scope}")]
    RegionOutsideScope { region: String, scope: String },
    /// The request's signature is not the leaf audience's.
    #[error("the request's signature does not verify against the grant's audience {audience}")]
    RequestSignature { audience: PublicKey },
    /// The request was issued too far from now.
    #[error(
        "the request was issued at {issued_at}, more than {CLOCK_SKEW_MAX_SECONDS} s from now \
         ({now})"
    )]
    Stale { issued_at: u64, now: u64 },
    /// The request's deadline has passed.
    #[error("the request's deadline {deadline_ms} ms has passed; it is {now_ms} ms")]
    DeadlinePassed { deadline_ms: u64, now_ms: u64 },
    /// The reference date is outside the years 1 to 9999.
    #[error("the request's as_of day number {days} is outside the years 0001 to 9999")]
    AsOf { days: i32 },
    /// The query id was seen within the replay window.
    #[error("query id {query_id} was already seen; a request is answered once")]
    Replay { query_id: String },
    /// Too many requests within the replay window to remember another.
    #[error(
        "{max} query ids arrived within the last {REPLAY_WINDOW_SECONDS} s; retry when older \
         ones are forgotten"
    )]
    ReplayCacheFull { max: usize },
    /// The SQL does not plan.
    #[error("the query is refused: {0}")]
    Query(#[from] QueryError),
}

/// Verifies the whole chain at `now` (unix seconds) against the applied metadata: shape,
/// signatures, parent hashes, the issuer of each link, narrowing at each step, the root issuer a
/// registered officer whose jurisdiction covers the root scope, every validity window contains
/// `now` (give or take [`CLOCK_SKEW_MAX_SECONDS`]), and no id `revoked`. Returns the leaf's rights.
///
/// Checks run link by link from the root, so the error names the first link that breaks a rule.
pub fn verify(
    grant: &Grant,
    state: &MetaState,
    now: u64,
    revoked: &impl Fn(&[u8; 16]) -> bool,
) -> Result<Rights, GrantError> {
    verify_with(grant, state, now, revoked, None)
}

/// [`verify`], skipping the Ed25519 arithmetic of link signatures `signatures` has verified
/// before (and remembering the ones it verifies now).
pub fn verify_with(
    grant: &Grant,
    state: &MetaState,
    now: u64,
    revoked: &impl Fn(&[u8; 16]) -> bool,
    mut signatures: Option<&mut VerifiedSignatures>,
) -> Result<Rights, GrantError> {
    check_length(grant.links.len())?;
    let mut seen_ids = BTreeSet::new();
    for (index, signed) in grant.links.iter().enumerate() {
        let link = &signed.link;
        check_shape(index, link)?;
        let message = canonical_bytes(link);
        let verified = signed.signature.len() == SIGNATURE_BYTES
            && match signatures.as_deref_mut() {
                Some(cache) => cache.verify(&link.issuer, &message, &signed.signature),
                None => link
                    .issuer
                    .verify_domain(DOMAIN_GRANT_LINK, &message, &signed.signature)
                    .is_ok(),
            };
        if !verified {
            return Err(GrantError::BadSignature {
                link: index,
                issuer: link.issuer,
            });
        }
        if !seen_ids.insert(link.id) {
            return Err(GrantError::DuplicateId {
                link: index,
                id: hex::encode(&link.id),
            });
        }
        match index.checked_sub(1).map(|parent| &grant.links[parent]) {
            None => check_root(link, state)?,
            Some(parent) => {
                let expected = parent.hash();
                if link.parent != expected {
                    return Err(GrantError::ParentHash {
                        link: index,
                        found: hex::encode(&link.parent),
                        expected: hex::encode(&expected),
                    });
                }
                if link.issuer != parent.link.audience {
                    return Err(GrantError::WrongIssuer {
                        link: index,
                        issuer: link.issuer,
                        expected: parent.link.audience,
                    });
                }
                check_narrowing(index, &parent.link, link)?;
            }
        }
        if now.saturating_add(CLOCK_SKEW_MAX_SECONDS) < link.not_before {
            return Err(GrantError::NotYetValid {
                link: index,
                not_before: link.not_before,
                now,
            });
        }
        if now >= link.expires.saturating_add(CLOCK_SKEW_MAX_SECONDS) {
            return Err(GrantError::Expired {
                link: index,
                expires: link.expires,
                now,
            });
        }
        if revoked(&link.id) {
            return Err(GrantError::Revoked {
                link: index,
                id: hex::encode(&link.id),
            });
        }
    }
    let leaf = grant.leaf();
    Ok(Rights {
        audience: leaf.audience,
        scope: leaf.scope.clone(),
        tables: leaf.tables.clone(),
        dimensions: leaf.dimensions.clone(),
        measures: leaf.measures.clone(),
        min_cell: leaf.min_cell,
        expires: leaf.expires,
        grant_ids: grant.ids(),
    })
}

/// Checks a plan against rights: every table read is granted; every group key and filter column
/// is a granted dimension; every aggregated column a granted measure (`COUNT(*)` needs none); and
/// no region the WHERE asks for (`region_code` or an ancestor of it compared with `=`, `IN`,
/// `BETWEEN` or `LIKE 'prefix%'`, not under NOT) lies wholly outside the scope.
///
/// The WHERE check only turns away a query that names a region it could never see; the scope
/// itself is enforced by the fan-out (only nodes whose region meets the scope are asked) and by
/// each node filtering its rows to the scope. `min_cell` is applied by disclosure control.
pub fn check_plan(plan: &Plan, rights: &Rights) -> Result<(), GrantError> {
    for table in plan.tables() {
        if !rights.tables.contains(table) {
            return Err(GrantError::TableNotGranted {
                table: *table,
                granted: join(&rights.tables),
            });
        }
    }
    let dimension_allowed = |dimension: &Dimension, used_as: &'static str| {
        for column in dimension.columns() {
            if !rights.dimensions.iter().any(|name| name == column.name) {
                return Err(GrantError::DimensionNotGranted {
                    column: column.name.to_string(),
                    used_as,
                    granted: join(&rights.dimensions),
                });
            }
        }
        Ok(())
    };
    for key in &plan.keys {
        dimension_allowed(key, "groups by")?;
    }
    if let Some(filter) = &plan.filter {
        let mut operands = Vec::new();
        predicate_operands(filter, &mut operands);
        for operand in operands {
            dimension_allowed(operand, "filters on")?;
        }
        check_filter_regions(filter, true, &rights.scope)?;
    }
    for aggregate in &plan.aggregates {
        debug_assert!(
            aggregate.argument.is_some() || aggregate.function == AggregateFunction::CountRows
        );
        let Some(argument) = &aggregate.argument else {
            continue;
        };
        for column in argument.columns() {
            if !rights.measures.iter().any(|name| name == column.name) {
                return Err(GrantError::MeasureNotGranted {
                    column: column.name.to_string(),
                    granted: join(&rights.measures),
                });
            }
        }
    }
    Ok(())
}

/// A query as its asker signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Random, chosen by the asker; a node answers one id once.
    pub query_id: [u8; 16],
    pub sql: String,
    /// The reference date for `age` and `age_band`.
    pub as_of: Date,
    /// Unix milliseconds after which no node works on the query.
    pub deadline_ms: u64,
    /// The node the asker sent it to.
    pub entry_node: PublicKey,
    /// Unix seconds, by the asker's clock.
    pub issued_at: u64,
    pub grant: Grant,
}

/// A request and the grant leaf audience's signature over `DOMAIN_QUERY_REQUEST` and its
/// canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    pub request: QueryRequest,
    pub signature: Vec<u8>,
}

/// Signs a request; `key` should be the grant leaf's audience.
pub fn sign_request(key: &SigningKey, request: QueryRequest) -> SignedRequest {
    let signature = sign_domain(key, DOMAIN_QUERY_REQUEST, &canonical_bytes(&request));
    SignedRequest { request, signature }
}

/// Verifies a request at `now` (unix seconds), in this order: signed by the grant leaf's audience;
/// issued within [`CLOCK_SKEW_MAX_SECONDS`] of now and before its deadline; query id not seen
/// (it is then remembered in `replay`); the grant verifies; the SQL plans (through `plans`, which
/// remembers the plans of SQL seen before); the plan is inside the rights. Returns the rights and
/// the plan.
///
/// Whether `entry_node` is the node the request arrived at is the caller's check: only it knows
/// its own key and whether it is the entry or a forwarding hop.
pub fn verify_request(
    signed: &SignedRequest,
    state: &MetaState,
    now: u64,
    revoked: &impl Fn(&[u8; 16]) -> bool,
    replay: &mut ReplayCache,
    signatures: &mut VerifiedSignatures,
    plans: &mut PlanCache,
) -> Result<(Rights, Plan), GrantError> {
    let request = &signed.request;
    check_length(request.grant.links.len())?;
    let audience = request.grant.leaf().audience;
    if signed.signature.len() != SIGNATURE_BYTES
        || audience
            .verify_domain(
                DOMAIN_QUERY_REQUEST,
                &canonical_bytes(request),
                &signed.signature,
            )
            .is_err()
    {
        return Err(GrantError::RequestSignature { audience });
    }
    if now.abs_diff(request.issued_at) > CLOCK_SKEW_MAX_SECONDS {
        return Err(GrantError::Stale {
            issued_at: request.issued_at,
            now,
        });
    }
    let now_ms = now.saturating_mul(1000);
    if now_ms >= request.deadline_ms {
        return Err(GrantError::DeadlinePassed {
            deadline_ms: request.deadline_ms,
            now_ms,
        });
    }
    replay.admit(request.query_id, now)?;
    let rights = verify_with(&request.grant, state, now, revoked, Some(signatures))?;
    check_as_of(request.as_of)?;
    if request.sql.len() > SQL_BYTES_MAX {
        // `plan` refuses it too; said here so the bound is visible where requests enter.
        return Err(GrantError::Query(QueryError::Unsupported {
            position: None,
            message: format!(
                "the query is {} bytes long; at most {SQL_BYTES_MAX} are accepted",
                request.sql.len()
            ),
        }));
    }
    let plan = plans.plan(&request.sql, request.as_of)?;
    check_plan(&plan, &rights)?;
    Ok((rights, plan))
}

/// Grant-link signatures a node remembers having verified.
pub const VERIFIED_SIGNATURES_MAX: usize = 4_096;

/// Grant-link signatures already verified, each remembered by the SHA-256 of the issuer key, the
/// signature and the signed bytes: every query under the same grant carries the same chain, so
/// seeing it again costs one hash per link instead of an Ed25519 verification. Only that
/// arithmetic is skipped: every other rule of [`verify`] (parents, narrowing, the root officer,
/// validity, revocation) is checked on every request. At most [`VERIFIED_SIGNATURES_MAX`]
/// entries; the oldest is forgotten first.
#[derive(Clone, Debug, Default)]
pub struct VerifiedSignatures {
    known: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl VerifiedSignatures {
    /// An empty cache.
    pub fn new() -> VerifiedSignatures {
        VerifiedSignatures::default()
    }

    /// How many signatures are remembered.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// True when `signature` is `issuer`'s grant-link signature over `message`.
    pub fn verify(&mut self, issuer: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        let mut input = Vec::with_capacity(32 + signature.len() + message.len());
        input.extend_from_slice(&issuer.0);
        input.extend_from_slice(signature);
        input.extend_from_slice(message);
        let digest = sha256(&input);
        if self.known.contains(&digest) {
            return true;
        }
        if issuer
            .verify_domain(DOMAIN_GRANT_LINK, message, signature)
            .is_err()
        {
            return false;
        }
        if self.order.len() >= VERIFIED_SIGNATURES_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.known.remove(&oldest);
            }
        }
        self.known.insert(digest);
        self.order.push_back(digest);
        true
    }
}

/// The query ids seen within the last [`REPLAY_WINDOW_SECONDS`], at most [`REPLAY_IDS_MAX`] of
/// them. Time is the `now` each call is handed.
#[derive(Clone, Debug, Default)]
pub struct ReplayCache {
    /// Query id -> the `now` it was recorded at.
    seen: BTreeMap<[u8; 16], u64>,
    /// The same entries ordered by time, for forgetting the oldest first.
    by_time: BTreeSet<(u64, [u8; 16])>,
}

impl ReplayCache {
    /// An empty cache.
    pub fn new() -> ReplayCache {
        ReplayCache::default()
    }

    /// Records `id` at `now`. True when it was not seen within the window and there was room;
    /// false for a replay or a full cache.
    pub fn insert(&mut self, id: [u8; 16], now: u64) -> bool {
        self.admit(id, now).is_ok()
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn admit(&mut self, id: [u8; 16], now: u64) -> Result<(), GrantError> {
        self.forget_before(now.saturating_sub(REPLAY_WINDOW_SECONDS));
        if self.seen.contains_key(&id) {
            return Err(GrantError::Replay {
                query_id: hex::encode(&id),
            });
        }
        if self.seen.len() >= REPLAY_IDS_MAX {
            return Err(GrantError::ReplayCacheFull {
                max: REPLAY_IDS_MAX,
            });
        }
        self.seen.insert(id, now);
        self.by_time.insert((now, id));
        Ok(())
    }

    fn forget_before(&mut self, cutoff: u64) {
        while let Some(&(time, id)) = self.by_time.first() {
            if time >= cutoff {
                break;
            }
            self.by_time.pop_first();
            self.seen.remove(&id);
        }
    }
}

fn check_length(links: usize) -> Result<(), GrantError> {
    if links == 0 {
        return Err(GrantError::NoLinks);
    }
    if links > LINKS_MAX {
        return Err(GrantError::TooManyLinks {
            links,
            max: LINKS_MAX,
        });
    }
    Ok(())
}

/// The rules a link obeys on its own, whoever issued it.
fn check_shape(index: usize, link: &GrantLink) -> Result<(), GrantError> {
    check_list(index, "scope", &link.scope, SCOPE_REGIONS_MAX)?;
    for region in &link.scope {
        if RegionCode::from_u64(region.value()).is_err() {
            return Err(GrantError::BadRegion {
                link: index,
                value: region.value(),
            });
        }
    }
    check_list(index, "tables", &link.tables, Table::ALL.len())?;
    for (field, columns) in [
        ("dimensions", &link.dimensions),
        ("measures", &link.measures),
    ] {
        // Only the count is bounded for emptiness: a grant of COUNT(*) alone has no measures.
        if columns.len() > COLUMNS_MAX {
            return Err(GrantError::FieldTooLong {
                link: index,
                field,
                count: columns.len(),
                max: COLUMNS_MAX,
            });
        }
        if !strictly_increasing(columns) {
            return Err(GrantError::NotCanonical { link: index, field });
        }
        for column in columns {
            if !link
                .tables
                .iter()
                .any(|table| table.column(column).is_some())
            {
                return Err(GrantError::UnknownColumn {
                    link: index,
                    field,
                    column: column.clone(),
                    tables: join(&link.tables),
                });
            }
        }
    }
    if link.expires <= link.not_before {
        return Err(GrantError::EmptyWindow {
            link: index,
            not_before: link.not_before,
            expires: link.expires,
        });
    }
    Ok(())
}

fn check_list<T: Ord>(
    index: usize,
    field: &'static str,
    values: &[T],
    max: usize,
) -> Result<(), GrantError> {
    if values.is_empty() {
        return Err(GrantError::EmptyField { link: index, field });
    }
    if values.len() > max {
        return Err(GrantError::FieldTooLong {
            link: index,
            field,
            count: values.len(),
            max,
        });
    }
    if !strictly_increasing(values) {
        return Err(GrantError::NotCanonical { link: index, field });
    }
    Ok(())
}

fn strictly_increasing<T: Ord>(values: &[T]) -> bool {
    values.windows(2).all(|pair| pair[0] < pair[1])
}

fn check_root(link: &GrantLink, state: &MetaState) -> Result<(), GrantError> {
    if link.parent != [0; 32] {
        return Err(GrantError::ParentHash {
            link: 0,
            found: hex::encode(&link.parent),
            expected: hex::encode(&[0; 32]),
        });
    }
    let Some(officer) = state.officer(&link.issuer) else {
        return Err(GrantError::NotOfficer {
            issuer: link.issuer,
        });
    };
    for region in &link.scope {
        if !officer.jurisdiction.contains(*region) {
            return Err(GrantError::OutsideJurisdiction {
                issuer: link.issuer,
                region: *region,
                jurisdiction: officer.jurisdiction,
            });
        }
    }
    Ok(())
}

/// The child at `index` is narrower than `parent` in every field.
fn check_narrowing(index: usize, parent: &GrantLink, child: &GrantLink) -> Result<(), GrantError> {
    for region in &child.scope {
        if !parent.scope.iter().any(|outer| outer.contains(*region)) {
            return Err(GrantError::ScopeWidened {
                link: index,
                region: *region,
                parent_scope: join(&parent.scope),
            });
        }
    }
    if let Some(table) = child
        .tables
        .iter()
        .find(|table| !parent.tables.contains(table))
    {
        return Err(GrantError::TablesWidened {
            link: index,
            table: *table,
        });
    }
    if let Some(column) = child
        .dimensions
        .iter()
        .find(|column| !parent.dimensions.contains(column))
    {
        return Err(GrantError::DimensionsWidened {
            link: index,
            column: column.clone(),
        });
    }
    if let Some(column) = child
        .measures
        .iter()
        .find(|column| !parent.measures.contains(column))
    {
        return Err(GrantError::MeasuresWidened {
            link: index,
            column: column.clone(),
        });
    }
    if child.min_cell < parent.min_cell {
        return Err(GrantError::MinCellLowered {
            link: index,
            min_cell: child.min_cell,
            parent_min_cell: parent.min_cell,
        });
    }
    if child.not_before < parent.not_before || child.expires > parent.expires {
        return Err(GrantError::WindowWidened {
            link: index,
            not_before: child.not_before,
            expires: child.expires,
            parent_not_before: parent.not_before,
            parent_expires: parent.expires,
        });
    }
    if parent.depth == 0 {
        return Err(GrantError::DepthExhausted { link: index });
    }
    if child.depth >= parent.depth {
        return Err(GrantError::DepthNotLowered {
            link: index,
            depth: child.depth,
            parent_depth: parent.depth,
        });
    }
    Ok(())
}

fn normalize(link: &mut GrantLink) {
    link.scope.sort_unstable();
    link.scope.dedup();
    link.tables.sort_unstable();
    link.tables.dedup();
    link.dimensions.sort_unstable();
    link.dimensions.dedup();
    link.measures.sort_unstable();
    link.measures.dedup();
}

fn check_as_of(as_of: Date) -> Result<(), GrantError> {
    let first = Date::from_ymd(1, 1, 1).map(Date::days);
    let last = Date::from_ymd(9999, 12, 31).map(Date::days);
    match (first, last) {
        (Some(first), Some(last)) if (first..=last).contains(&as_of.days()) => Ok(()),
        _ => Err(GrantError::AsOf { days: as_of.days() }),
    }
}

fn predicate_operands<'a>(predicate: &'a Predicate<Dimension>, out: &mut Vec<&'a Dimension>) {
    match predicate {
        Predicate::And(parts) | Predicate::Or(parts) => {
            for part in parts {
                predicate_operands(part, out);
            }
        }
        Predicate::Not(inner) => predicate_operands(inner, out),
        Predicate::Compare { operand, .. }
        | Predicate::In { operand, .. }
        | Predicate::Between { operand, .. }
        | Predicate::LikePrefix { operand, .. }
        | Predicate::IsNull { operand, .. }
        | Predicate::IsTrue { operand } => out.push(operand),
    }
}

/// Refuses a WHERE that, where it holds (`positive`: not under an odd number of NOTs), asks for a
/// region no scope region overlaps.
fn check_filter_regions(
    predicate: &Predicate<Dimension>,
    positive: bool,
    scope: &[RegionCode],
) -> Result<(), GrantError> {
    let outside = |low: u64, high: u64, shown: String| {
        let overlaps = scope.iter().any(|region| {
            let (first, last) = region.value_range();
            low <= last && first <= high
        });
        if overlaps {
            Ok(())
        } else {
            Err(GrantError::RegionOutsideScope {
                region: shown,
                scope: join(scope),
            })
        }
    };
    match predicate {
        Predicate::And(parts) | Predicate::Or(parts) => {
            for part in parts {
                check_filter_regions(part, positive, scope)?;
            }
            Ok(())
        }
        Predicate::Not(inner) => check_filter_regions(inner, !positive, scope),
        Predicate::Compare {
            operand,
            comparison,
            literal,
        } if positive && is_region(operand) && *comparison == crate::query::Comparison::Equal => {
            match literal_region(literal) {
                Some(region) => {
                    let (low, high) = region.value_range();
                    outside(low, high, region.to_string())
                }
                None => Ok(()),
            }
        }
        Predicate::In {
            operand,
            list,
            negated,
        } if positive != *negated && is_region(operand) => {
            for literal in list {
                if let Some(region) = literal_region(literal) {
                    let (low, high) = region.value_range();
                    outside(low, high, region.to_string())?;
                }
            }
            Ok(())
        }
        Predicate::Between {
            operand,
            low,
            high,
            negated,
        } if positive != *negated && is_region(operand) => {
            match (literal_value(low), literal_value(high)) {
                (Some(low), Some(high)) if low <= high => {
                    outside(low, high, format!("{low:012} to {high:012}"))
                }
                _ => Ok(()),
            }
        }
        Predicate::LikePrefix {
            operand,
            prefix,
            negated,
        } if positive != *negated && is_region(operand) => {
            let digits = prefix.len();
            if digits == 0 || digits > 12 || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
                return Ok(());
            }
            let Ok(value) = prefix.parse::<u64>() else {
                return Ok(());
            };
            let span = 10u64.pow(12 - digits as u32);
            let low = value * span;
            outside(low, low + span - 1, format!("{prefix}%"))
        }
        _ => Ok(()),
    }
}

/// `region_code` itself or an ancestor of it.
pub(crate) fn is_region(dimension: &Dimension) -> bool {
    match dimension {
        Dimension::Column(column) | Dimension::Ancestor { code: column, .. } => {
            column.name == "region_code"
        }
        _ => false,
    }
}

pub(crate) fn literal_value(literal: &Literal) -> Option<u64> {
    match literal {
        Literal::Text(text) if text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()
        }
        Literal::Number(number) => number
            .as_integer()
            .and_then(|value| u64::try_from(value).ok()),
        _ => None,
    }
}

fn literal_region(literal: &Literal) -> Option<RegionCode> {
    literal_value(literal).and_then(|value| RegionCode::from_u64(value).ok())
}

/// A grant id as 32 lowercase hex digits, as `grant show` prints it.
pub fn id_hex(id: &[u8; 16]) -> String {
    hex::encode(id)
}

/// A grant id from 32 hex digits.
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    tiermesh_crypto::hex::decode_array(text.trim())
}

fn join<T: std::fmt::Display>(values: &[T]) -> String {
    let parts: Vec<String> = values.iter().map(ToString::to_string).collect();
    parts.join(", ")
}
