//! A managed broker before any of its processes starts: its ports (fixed or free), its
//! nodes' names and folders, the shared cookie, the TLS files, and the name resolution a
//! partitionable cluster needs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::BrokerError;
use super::account::Account;
use super::install::RabbitInstall;
use super::node::NodeSpec;
use super::partition;
use super::ports::{free_ports, is_free};
use super::rootfs::RabbitRoot;
use super::tls::{self, SERVER_NAMES, TlsFiles};
use crate::tls::ManagedTls;

/// The loopback ports of a managed broker.
pub(super) struct Ports {
    /// Each node's AMQP port.
    pub amqp: Vec<u16>,
    /// Each node's distribution port.
    pub dist: Vec<u16>,
    /// The private epmd's port.
    pub epmd: u16,
}

impl Ports {
    /// Free ports for `nodes` nodes and their epmd; the AMQP ports are `first`, `first +
    /// 1`, ... when `first` is given.
    ///
    /// # Errors
    /// A port asked for is busy, or there are not enough free ones.
    pub fn allocate(nodes: usize, first: Option<u16>) -> Result<Self, BrokerError> {
        let fixed: Vec<u16> = match first {
            Some(first) => {
                let ports: Vec<u16> = (0..nodes as u16).map(|i| first + i).collect();
                if let Some(busy) = ports.iter().find(|p| !is_free(**p)) {
                    return Err(BrokerError::PortInUse { port: *busy });
                }
                ports
            }
            None => Vec::new(),
        };
        let mut free =
            free_ports(nodes * 3 + 1).map_err(|e| BrokerError::io("find free ports", e))?;
        // One spare per node: a fixed AMQP port may come back among the free ones; drop it.
        free.retain(|p| !fixed.contains(p));
        let epmd = free.pop().ok_or_else(|| {
            BrokerError::io(
                "find free ports",
                std::io::ErrorKind::AddrNotAvailable.into(),
            )
        })?;
        Ok(Self {
            amqp: (0..nodes)
                .map(|i| fixed.get(i).copied().unwrap_or(free[i * 2]))
                .collect(),
            dist: (0..nodes).map(|i| free[i * 2 + 1]).collect(),
            epmd,
        })
    }
}

/// Each node's name, ports and folder under `base`. A partitionable cluster's nodes have
/// host names of their own ([`partition::host_name`]), so their links can be cut.
pub(super) fn node_specs(
    base: &Path,
    ports: &Ports,
    partitionable: bool,
    tls: bool,
) -> Vec<NodeSpec> {
    let tag = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host = |index: usize| {
        if partitionable {
            partition::host_name(index)
        } else {
            "localhost".to_string()
        }
    };
    (0..ports.amqp.len())
        .map(|index| NodeSpec {
            index,
            name: format!("{tag}-{}@{}", index + 1, host(index)),
            amqp_port: ports.amqp[index],
            dist_port: ports.dist[index],
            dir: base.join(format!("node-{}", index + 1)),
            tls,
        })
        .collect()
}

/// What the broker's folder is made of.
pub(super) struct Folders<'a> {
    pub base: &'a Path,
    pub specs: &'a [NodeSpec],
    pub install: &'a RabbitInstall,
    pub account: Account,
    pub root: Option<&'a RabbitRoot>,
    pub partitionable: bool,
    pub tls: Option<ManagedTls>,
}

impl Folders<'_> {
    /// Writes the cookie, the TLS files, each node's configuration and (partitionable)
    /// name resolution, hands it all to the node account, and makes the mount point in
    /// another root. Returns that mount point and the TLS files. On error the folder is
    /// removed.
    ///
    /// # Errors
    /// A file could not be written.
    pub fn prepare(&self) -> Result<(Option<PathBuf>, Option<TlsFiles>), BrokerError> {
        self.write().map_err(|e| {
            let _ = std::fs::remove_dir_all(self.base);
            BrokerError::io(&format!("prepare {}", self.base.display()), e)
        })
    }

    fn write(&self) -> std::io::Result<(Option<PathBuf>, Option<TlsFiles>)> {
        let base = self.base;
        write_cookie(base)?;
        let files = match self.tls {
            Some(_) => {
                let dir = base.join("tls");
                std::fs::create_dir_all(&dir)?;
                let names = SERVER_NAMES.map(String::from);
                Some(tls::generate(&dir, &names).map_err(std::io::Error::other)?)
            }
            None => None,
        };
        let clustered = self.specs.len() > 1;
        for spec in self.specs {
            let listener = files
                .as_ref()
                .zip(self.tls)
                .map(|(files, managed)| files.node_config(spec.amqp_port, managed.client_auth));
            spec.prepare(clustered, self.install.version, listener.as_deref())?;
            if self.partitionable {
                let text = partition::node_inetrc(spec.index, self.specs.len());
                partition::write_inetrc(&spec.dir.join("inetrc"), &text)?;
            }
        }
        if self.partitionable {
            let text = partition::cli_inetrc(self.specs.len());
            partition::write_inetrc(&base.join("inetrc"), &text)?;
        }
        self.account.own(base)?;
        let mount_point = match self.root {
            Some(root) => root.make_mount_point(base)?,
            None => None,
        };
        Ok((mount_point, files))
    }
}

/// Makes `<parent>/warren-<pid>-<n>`, readable by the node account. The parent is the
/// system temp folder when none is given; a TMPDIR the node account cannot reach (a
/// private folder of root's) gives way to /tmp, where the nodes can work.
pub(super) fn make_base_dir(
    parent: Option<&Path>,
    account: &Account,
) -> Result<PathBuf, BrokerError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    if !account.can_reach(&parent) {
        tracing::warn!(
            folder = %parent.display(),
            "the node account cannot reach this folder; node folders go to /tmp"
        );
        parent = PathBuf::from("/tmp");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let dir = parent.join(format!(
            "warren-{}-{:x}",
            std::process::id(),
            nanos.wrapping_add(attempt)
        ));
        match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(BrokerError::io(
                    &format!("create a folder in {}", parent.display()),
                    e,
                ));
            }
        }
    }
    Err(BrokerError::io(
        "create a broker folder",
        std::io::ErrorKind::AlreadyExists.into(),
    ))
}

/// The Erlang cookie all nodes and rabbitmqctl share; only the owner may read it.
fn write_cookie(base: &Path) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let cookie: String = random.iter().map(|b| char::from(b'A' + b % 26)).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(base.join(".erlang.cookie"))?;
    std::io::Write::write_all(&mut file, cookie.as_bytes())
}
