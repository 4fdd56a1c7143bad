//! Finding the local RabbitMQ install: the real `rabbitmq-server` and `rabbitmqctl`
//! scripts (not Debian's wrappers, which switch user with `su` and refuse other users)
//! and Erlang's `epmd`.

use std::path::{Path, PathBuf};

use super::BrokerError;

/// The programs a managed node needs.
#[derive(Debug, Clone)]
pub struct RabbitInstall {
    /// The `rabbitmq-server` script that execs the Erlang VM.
    pub server: PathBuf,
    /// `rabbitmqctl`, from the same install.
    pub ctl: PathBuf,
    /// Erlang's port mapper daemon.
    pub epmd: PathBuf,
}

/// Environment variable naming a folder holding `rabbitmq-server` and `rabbitmqctl`.
pub const BIN_DIR_VAR: &str = "WARREN_RABBITMQ_BIN";

/// Where the scripts live in Debian's package and in the generic Unix tarball layout.
const KNOWN_BIN_DIRS: &[&str] = &[
    "/usr/lib/rabbitmq/bin",
    "/usr/local/lib/rabbitmq/sbin",
    "/opt/rabbitmq/sbin",
];

/// Known homes of `epmd` besides `$PATH`.
const KNOWN_EPMD: &[&str] = &["/usr/lib/erlang/bin/epmd", "/usr/local/lib/erlang/bin/epmd"];

impl RabbitInstall {
    /// Locates the install: only `$WARREN_RABBITMQ_BIN` when it is set, else the known
    /// folders, then `$PATH`.
    ///
    /// # Errors
    /// [`BrokerError::NotInstalled`], which says how to install RabbitMQ.
    pub fn locate() -> Result<Self, BrokerError> {
        let candidates: Vec<PathBuf> = match std::env::var_os(BIN_DIR_VAR) {
            Some(dir) => vec![PathBuf::from(dir)],
            None => KNOWN_BIN_DIRS
                .iter()
                .map(PathBuf::from)
                .chain(path_dirs())
                .collect(),
        };
        let server_dir = candidates
            .iter()
            .find(|dir| {
                is_executable(&dir.join("rabbitmq-server"))
                    && is_executable(&dir.join("rabbitmqctl"))
                    && !is_debian_wrapper(&dir.join("rabbitmq-server"))
            })
            .ok_or(BrokerError::NotInstalled {
                what: "rabbitmq-server",
            })?;
        let epmd = path_dirs()
            .map(|dir| dir.join("epmd"))
            .chain(KNOWN_EPMD.iter().map(PathBuf::from))
            .find(|p| is_executable(p))
            .ok_or(BrokerError::NotInstalled {
                what: "epmd (Erlang)",
            })?;
        Ok(Self {
            server: server_dir.join("rabbitmq-server"),
            ctl: server_dir.join("rabbitmqctl"),
            epmd,
        })
    }
}

fn path_dirs() -> impl Iterator<Item = PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Debian's /usr/sbin scripts switch to the rabbitmq user with `su` and print "Only root or
/// rabbitmq should run" for anyone else; warren runs the real scripts itself.
fn is_debian_wrapper(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.contains("Only root or rabbitmq should run"))
}
