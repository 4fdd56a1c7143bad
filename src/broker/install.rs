//! Finding the RabbitMQ install: the real `rabbitmq-server` and `rabbitmqctl` scripts (not
//! Debian's wrappers, which switch user with `su` and refuse other users) and Erlang's
//! `epmd`, on this machine or in another root (see [`super::rootfs`]); and starting its
//! programs.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::BrokerError;
use super::account::Account;
use super::rootfs::RabbitRoot;

/// The programs a managed node needs. With another root, their paths are the ones inside it.
#[derive(Debug, Clone)]
pub struct RabbitInstall {
    /// The root the programs run in; `None` for this machine's own.
    pub root: Option<RabbitRoot>,
    /// The `rabbitmq-server` script that execs the Erlang VM.
    pub server: PathBuf,
    /// `rabbitmqctl`, from the same install.
    pub ctl: PathBuf,
    /// Erlang's port mapper daemon.
    pub epmd: PathBuf,
    /// The release, from the install's `rabbitmq_server-X.Y.Z` folder, when it has one.
    pub version: Option<ReleaseVersion>,
}

/// A RabbitMQ release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReleaseVersion {
    /// 3 or 4.
    pub major: u32,
    /// The release line within the major version (4.0, 4.1...).
    pub minor: u32,
    /// The patch release within the line.
    pub patch: u32,
}

impl ReleaseVersion {
    /// The oldest release warren starts private nodes from.
    pub const OLDEST: ReleaseVersion = ReleaseVersion {
        major: 3,
        minor: 10,
        patch: 0,
    };

    /// Parses `X.Y.Z` (a suffix after the patch number, like `-rc.1`, is ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch_text = parts.next()?;
        let digits = patch_text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(patch_text.len());
        let patch = patch_text[..digits].parse().ok()?;
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    /// The release of the install whose scripts are in `bin_dir`: Debian's package keeps
    /// them in `…/rabbitmq/bin` beside `…/rabbitmq/lib/rabbitmq_server-X.Y.Z`, the generic
    /// Unix tarball in `rabbitmq_server-X.Y.Z/sbin`.
    pub fn of_install(bin_dir: &Path) -> Option<Self> {
        let from_name = |path: &Path| {
            path.file_name()?
                .to_str()?
                .strip_prefix("rabbitmq_server-")
                .and_then(Self::parse)
        };
        let parent = bin_dir.parent()?;
        if let Some(version) = from_name(parent) {
            return Some(version);
        }
        std::fs::read_dir(parent.join("lib"))
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| from_name(&entry.path()))
            .max()
    }
}

impl std::fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
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
    /// Locates the install: in `root` when given (its known folders), else only
    /// `$WARREN_RABBITMQ_BIN` when it is set, else the known folders, then `$PATH`.
    ///
    /// # Errors
    /// [`BrokerError::NotInstalled`], which says how to install RabbitMQ (or build the
    /// root); [`BrokerError::UnsupportedRelease`] for a release older than 3.10.
    pub fn locate(root: Option<&RabbitRoot>) -> Result<Self, BrokerError> {
        let on_this_side = |path: &Path| match root {
            Some(root) => root.host_path(path),
            None => path.to_path_buf(),
        };
        let candidates: Vec<PathBuf> = match (root, std::env::var_os(BIN_DIR_VAR)) {
            (Some(_), _) => KNOWN_BIN_DIRS.iter().map(PathBuf::from).collect(),
            (None, Some(dir)) => vec![PathBuf::from(dir)],
            (None, None) => KNOWN_BIN_DIRS
                .iter()
                .map(PathBuf::from)
                .chain(path_dirs())
                .collect(),
        };
        let not_installed = |what| match root {
            Some(root) => BrokerError::NotInRoot {
                what,
                path: root.path().to_path_buf(),
            },
            None => BrokerError::NotInstalled { what },
        };
        let server_dir = candidates
            .iter()
            .find(|dir| {
                let dir = on_this_side(dir);
                is_executable(&dir.join("rabbitmq-server"))
                    && is_executable(&dir.join("rabbitmqctl"))
                    && !is_debian_wrapper(&dir.join("rabbitmq-server"))
            })
            .ok_or_else(|| not_installed("rabbitmq-server"))?;
        let epmd_candidates: Vec<PathBuf> = match root {
            Some(_) => KNOWN_EPMD.iter().map(PathBuf::from).collect(),
            None => path_dirs()
                .map(|dir| dir.join("epmd"))
                .chain(KNOWN_EPMD.iter().map(PathBuf::from))
                .collect(),
        };
        let epmd = epmd_candidates
            .into_iter()
            .find(|p| is_executable(&on_this_side(p)))
            .ok_or_else(|| not_installed("epmd (Erlang)"))?;
        let version = ReleaseVersion::of_install(&on_this_side(server_dir));
        if let Some(version) = version.filter(|v| *v < ReleaseVersion::OLDEST) {
            return Err(BrokerError::UnsupportedRelease {
                version: version.to_string(),
                path: on_this_side(server_dir).display().to_string(),
            });
        }
        Ok(Self {
            root: root.cloned(),
            server: server_dir.join("rabbitmq-server"),
            ctl: server_dir.join("rabbitmqctl"),
            epmd,
            version,
        })
    }

    /// A command that runs `program` (one of this install's) as `account` in `cwd`, with
    /// the broker's folder `base` where the program can reach it (the same path on both
    /// sides of another root).
    ///
    /// # Errors
    /// [`BrokerError::Io`] when a path cannot be handed to the child.
    pub fn command(
        &self,
        program: &Path,
        account: &Account,
        base: &Path,
        cwd: &Path,
    ) -> Result<Command, BrokerError> {
        let mut command = Command::new(program);
        match &self.root {
            None => {
                command.current_dir(cwd);
                account.apply(&mut command);
            }
            Some(root) => {
                root.confine(&mut command, base, cwd, account)
                    .map_err(|e| BrokerError::io("run a program inside the RabbitMQ root", e))?;
            }
        }
        Ok(command)
    }

    /// How `program` is named in messages: with the root it runs in, if any.
    pub fn describe(&self, program: &Path) -> String {
        match &self.root {
            Some(root) => format!("{} (in {})", program.display(), root.path().display()),
            None => program.display().to_string(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_numbers_parse_and_order() {
        let v = |t: &str| ReleaseVersion::parse(t).unwrap();
        assert_eq!(v("3.10.8").to_string(), "3.10.8");
        assert_eq!(v("4.1.0-rc.1"), v("4.1.0"));
        assert!(v("3.9.29") < ReleaseVersion::OLDEST);
        assert!(v("3.10.0") >= ReleaseVersion::OLDEST && v("4.0.5") > v("3.13.7"));
        for bad in ["", "4", "4.0", "x.1.2", "4.0.x"] {
            assert_eq!(ReleaseVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_install_names_its_release_in_either_layout() {
        let root = std::env::temp_dir().join(format!("warren-release-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Debian: …/rabbitmq/bin beside …/rabbitmq/lib/rabbitmq_server-X.Y.Z.
        let debian = root.join("usr/lib/rabbitmq");
        std::fs::create_dir_all(debian.join("bin")).unwrap();
        std::fs::create_dir_all(debian.join("lib/rabbitmq_server-4.0.5")).unwrap();
        std::fs::create_dir_all(debian.join("lib/not-a-release")).unwrap();
        assert_eq!(
            ReleaseVersion::of_install(&debian.join("bin")),
            ReleaseVersion::parse("4.0.5")
        );
        // The generic Unix tarball: rabbitmq_server-X.Y.Z/sbin.
        let tarball = root.join("opt/rabbitmq_server-3.13.7/sbin");
        std::fs::create_dir_all(&tarball).unwrap();
        assert_eq!(
            ReleaseVersion::of_install(&tarball),
            ReleaseVersion::parse("3.13.7")
        );
        // Neither: unknown.
        let other = root.join("usr/local/bin");
        std::fs::create_dir_all(&other).unwrap();
        assert_eq!(ReleaseVersion::of_install(&other), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
