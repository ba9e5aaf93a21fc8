//! A node's directory: `node.toml`, the node key, and the database folder.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::region::{RegionCode, Tier};
use tiermesh_federation::schema::STANDARD_VERSION;
use tiermesh_storage::{Store, StoreOptions};

/// File name of the node configuration inside a node directory.
pub const CONFIG_FILE: &str = "node.toml";
/// File name of the node's private key (PKCS#8, mode 0600).
pub const KEY_FILE: &str = "node.key";
/// Folder of the RocksDB database.
pub const DB_FOLDER: &str = "db";

/// The contents of `node.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// A human name for the node, e.g. "Guanshanhu district office".
    pub name: String,
    /// The region this node keeps records for (its jurisdiction), 12 digits.
    pub region: String,
    /// The node's tier, derived from `region`; written for the reader's benefit and checked on load.
    pub tier: String,
    /// Version of the national data standard the node validates against.
    pub standard_version: u32,
    /// The node's Ed25519 public key, hex; the private key is in `node.key`.
    pub public_key: String,
    /// How the node takes part in the mesh (`tiermesh run`); flags override it.
    #[serde(default, skip_serializing_if = "MeshSettings::is_empty")]
    pub mesh: MeshSettings,
}

/// The `[mesh]` section of `node.toml`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshSettings {
    /// UDP address to listen on, e.g. "0.0.0.0:7400".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Peers trusted before the registry arrives, "KEY@HOST:PORT" (a node joining names a voter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Raft tick in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_ms: Option<u64>,
    /// Public keys (hex) of the operators who may import into the running node with
    /// `tiermesh import --connect`; the node's own key always may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<String>,
    /// TCP address of the admin HTTP port (Prometheus `/metrics`, `/healthz`), e.g.
    /// "127.0.0.1:9464"; no admin port when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

impl MeshSettings {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self == &MeshSettings::default()
    }

    /// Checks the shapes (addresses are resolved only when the node runs).
    pub fn check(&self) -> Result<()> {
        if let Some(listen) = &self.listen {
            check_host_port(listen).with_context(|| format!("listen '{listen}'"))?;
        }
        if let Some(admin) = &self.admin {
            check_host_port(admin).with_context(|| format!("admin '{admin}'"))?;
        }
        for peer in &self.peers {
            let (key, addr) = peer
                .split_once('@')
                .with_context(|| format!("peer '{peer}' must be KEY@HOST:PORT"))?;
            let _: PublicKey = key.parse().with_context(|| format!("peer '{peer}': key"))?;
            check_host_port(addr).with_context(|| format!("peer '{peer}'"))?;
        }
        for operator in &self.operators {
            let _: PublicKey = operator.parse().with_context(|| {
                format!("operator '{operator}': not a public key (64 hex digits)")
            })?;
        }
        if self.tick_ms == Some(0) {
            bail!("tick_ms must be at least 1");
        }
        Ok(())
    }
}

fn check_host_port(text: &str) -> Result<()> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| "expected HOST:PORT".to_string())?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        bail!("expected HOST:PORT with a port from 0 to 65535");
    }
    Ok(())
}

impl NodeConfig {
    /// The node's jurisdiction.
    pub fn region_code(&self) -> Result<RegionCode> {
        self.region
            .parse()
            .with_context(|| format!("node.toml: region '{}' is not a region code", self.region))
    }
}

/// An opened node directory.
#[derive(Debug)]
pub struct NodeDir {
    pub path: PathBuf,
    pub config: NodeConfig,
}

impl NodeDir {
    /// Creates a new node: `node.toml`, `node.key` (mode 0600) and an empty database.
    /// Refuses to touch a directory that already holds a node.
    pub fn init(dir: &Path, region: RegionCode, name: Option<&str>) -> Result<NodeDir> {
        let config_path = dir.join(CONFIG_FILE);
        let key_path = dir.join(KEY_FILE);
        for existing in [&config_path, &key_path, &dir.join(DB_FOLDER)] {
            if existing.exists() {
                bail!(
                    "{} already exists: {} already holds a node; refusing to overwrite it",
                    existing.display(),
                    dir.display()
                );
            }
        }
        if region.tier() == Tier::Village {
            bail!("region {region} is a village; a node serves a township or a higher tier");
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = SigningKey::generate(&ring::rand::SystemRandom::new())?;
        let mut key_file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(|| format!("creating {}", key_path.display()))?;
        key_file
            .write_all(key.pkcs8())
            .and_then(|()| key_file.sync_all())
            .with_context(|| format!("writing {}", key_path.display()))?;
        let config = NodeConfig {
            name: name.map_or_else(
                || format!("{} node {region}", region.tier()),
                str::to_string,
            ),
            region: region.to_string(),
            tier: region.tier().name().to_string(),
            standard_version: STANDARD_VERSION,
            public_key: key.public_key().to_string(),
            mesh: MeshSettings::default(),
        };
        let text = format!(
            "# TierMesh node configuration, written by `tiermesh init`.\n\
             # region: the 12-digit code this node keeps records for (its jurisdiction).\n{}",
            toml::to_string(&config).context("encoding node.toml")?
        );
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&config_path)
            .with_context(|| format!("creating {}", config_path.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", config_path.display()))?;
        Store::open(&dir.join(DB_FOLDER), &StoreOptions::default())?;
        Ok(NodeDir {
            path: dir.to_path_buf(),
            config,
        })
    }

    /// Opens an existing node directory and checks its configuration.
    pub fn open(dir: &Path) -> Result<NodeDir> {
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path).with_context(|| {
            format!(
                "reading {}: is {} a node directory? (create one with `tiermesh init`)",
                config_path.display(),
                dir.display()
            )
        })?;
        let config: NodeConfig = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid node configuration",
                config_path.display()
            )
        })?;
        let region = config.region_code()?;
        if config.tier != region.tier().name() {
            bail!(
                "{}: tier '{}' does not match region {} (a {} code)",
                config_path.display(),
                config.tier,
                region,
                region.tier()
            );
        }
        if config.standard_version != STANDARD_VERSION {
            bail!(
                "{}: data standard version {} is not supported by this build (version {})",
                config_path.display(),
                config.standard_version,
                STANDARD_VERSION
            );
        }
        let _: PublicKey = config
            .public_key
            .parse()
            .with_context(|| format!("{}: public_key", config_path.display()))?;
        config
            .mesh
            .check()
            .with_context(|| format!("{}: [mesh]", config_path.display()))?;
        Ok(NodeDir {
            path: dir.to_path_buf(),
            config,
        })
    }

    /// Loads the node's private key.
    pub fn signing_key(&self) -> Result<SigningKey> {
        let path = self.path.join(KEY_FILE);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_pkcs8(&bytes).with_context(|| path.display().to_string())
    }

    /// Opens the node's database (and builds its columnar image).
    pub fn open_store(&self, options: &StoreOptions) -> Result<Store> {
        Ok(Store::open(&self.path.join(DB_FOLDER), options)?)
    }
}
