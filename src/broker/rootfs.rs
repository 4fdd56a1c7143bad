//! RabbitMQ from another root file system: a Debian root holding a newer RabbitMQ and its
//! Erlang (made by `scripts/rabbitmq.sh`), for versions this machine's packages do not have.
//!
//! Its programs run chrooted into it as the root's own `rabbitmq` user. Each program gets a
//! mount namespace of its own in which /proc is mounted inside the root (RabbitMQ's memory
//! and disk monitors read it) and the broker's folder is bound into the root at the very
//! path it has here: node folders, the cookie and every path in the nodes' environment are
//! the same on both sides, and nothing stays mounted once the namespace's last process
//! exits. Only root can do this (chroot and mounts), hence [`BrokerError::RootNeedsRoot`].

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::BrokerError;
use super::account::Account;

/// Environment variable naming the other root (`[broker] root` in a scenario wins over it).
pub const ROOT_VAR: &str = "WARREN_RABBITMQ_ROOT";

/// A root file system RabbitMQ runs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitRoot {
    path: PathBuf,
}

impl RabbitRoot {
    /// The root named by `$WARREN_RABBITMQ_ROOT`, when set and not empty.
    pub fn path_from_env() -> Option<PathBuf> {
        std::env::var_os(ROOT_VAR)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    }

    /// Checks that `path` can serve as a root: an absolute folder, with warren running as
    /// root (chroot and mounts need it).
    ///
    /// # Errors
    /// [`BrokerError::RootNeedsRoot`] for any other user, [`BrokerError::BadRoot`] when the
    /// path is relative or not a folder.
    pub fn open(path: &Path) -> Result<Self, BrokerError> {
        let bad = |reason: &str| BrokerError::BadRoot {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if !path.is_absolute() {
            return Err(bad("not an absolute path"));
        }
        if !path.is_dir() {
            return Err(bad("no such folder"));
        }
        if !nix::unistd::Uid::effective().is_root() {
            return Err(BrokerError::RootNeedsRoot {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The root's own path on this side.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `inside` (an absolute path as the root's programs see it) is on this side.
    pub fn host_path(&self, inside: &Path) -> PathBuf {
        self.path.join(inside.strip_prefix("/").unwrap_or(inside))
    }

    /// The account for private nodes started from `root`, or from this machine's own
    /// install when `None`.
    ///
    /// # Errors
    /// [`BrokerError::BadRoot`] when the other root has no `rabbitmq` user;
    /// [`BrokerError::NoServiceUser`] when warren runs as root and this machine has none.
    pub fn node_account(root: Option<&Self>) -> Result<Account, BrokerError> {
        match root {
            Some(root) => root.service_account(),
            None => Account::of_this_machine(),
        }
    }

    /// The root's `rabbitmq` user, from its /etc/passwd, by number (its names mean nothing
    /// on this side): the account its nodes run as.
    ///
    /// # Errors
    /// [`BrokerError::BadRoot`] when the root has no such user (RabbitMQ is not installed
    /// in it).
    pub fn service_account(&self) -> Result<Account, BrokerError> {
        let passwd =
            std::fs::read_to_string(self.host_path(Path::new("/etc/passwd"))).unwrap_or_default();
        service_account_in(&passwd).ok_or_else(|| BrokerError::BadRoot {
            path: self.path.clone(),
            reason: "its /etc/passwd has no rabbitmq user (is rabbitmq-server installed in it?)"
                .into(),
        })
    }

    /// Makes the folder `dir` will be bound onto inside the root, and returns the
    /// outermost folder made for it ([`Self::remove_mount_point`] takes it back), or
    /// `None` when it already existed. Refuses a path that crosses a symbolic link in the
    /// root: the link would be followed on this side, out of the root.
    ///
    /// # Errors
    /// The I/O error, or `InvalidInput` for a relative path or a link on the way.
    pub fn make_mount_point(&self, dir: &Path) -> std::io::Result<Option<PathBuf>> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.is_absolute() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        let mut at = self.path.clone();
        let mut first_made = None;
        for component in dir.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            at.push(name);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "{} is a symbolic link inside the root; put the broker's folder elsewhere (TMPDIR)",
                            at.display()
                        ),
                    ));
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} is a file inside the root", at.display()),
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::DirBuilder::new().mode(0o755).create(&at)?;
                    // Whatever the umask: the node account must pass through.
                    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))?;
                    first_made.get_or_insert_with(|| at.clone());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(first_made)
    }

    /// Removes the empty folders [`Self::make_mount_point`] made for `dir`, innermost
    /// first, up to and including `first_made`; a folder that is not empty stays.
    pub fn remove_mount_point(&self, dir: &Path, first_made: &Path) {
        let inside = self.host_path(dir);
        if !first_made.starts_with(&self.path) || !inside.starts_with(first_made) {
            return;
        }
        for folder in inside.ancestors() {
            if std::fs::remove_dir(folder).is_err() || folder == first_made {
                return;
            }
        }
    }

    /// Makes `command` run inside the root: a mount namespace of its own with /proc and
    /// `bind` (a folder of this side, bound at the same path inside), chroot, `cwd`, then
    /// the root's `rabbitmq` account. The program path of `command` is the one inside the
    /// root. The caller must not also set a user or group on `command` (they would change
    /// before the chroot, which needs root).
    ///
    /// # Errors
    /// `InvalidInput` when a path holds a NUL byte.
    pub fn confine(
        &self,
        command: &mut tokio::process::Command,
        bind: &Path,
        cwd: &Path,
        account: &Account,
    ) -> std::io::Result<()> {
        let c_path = |path: &Path| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let jail = Jail {
            root: c_path(&self.path)?,
            proc_dir: c_path(&self.host_path(Path::new("/proc")))?,
            bind_source: c_path(bind)?,
            bind_target: c_path(&self.host_path(bind))?,
            cwd: c_path(cwd)?,
            uid: account.uid,
            gid: account.gid,
        };
        command.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        enter_before_exec(command, jail);
        Ok(())
    }
}

/// Removes a broker's folder `base` (unless `keep`) and, with another root, the mount point
/// made for it there (`first_made`, from [`RabbitRoot::make_mount_point`]): the one teardown
/// of a broker's folders, for a failed start, a stopped broker and `warren broker down`.
pub fn remove_broker_folders(
    base: &Path,
    keep: bool,
    root: Option<&RabbitRoot>,
    first_made: Option<&Path>,
) {
    if !keep {
        let _ = std::fs::remove_dir_all(base);
    }
    if let (Some(root), Some(made)) = (root, first_made) {
        root.remove_mount_point(base, made);
    }
}

/// What the child needs between fork and exec, made beforehand: nothing may allocate there.
struct Jail {
    root: CString,
    proc_dir: CString,
    bind_source: CString,
    bind_target: CString,
    cwd: CString,
    uid: u32,
    gid: u32,
}

impl Jail {
    fn enter(&self) -> nix::Result<()> {
        use nix::mount::{MsFlags, mount};
        use nix::unistd::{Gid, Uid, chdir, chroot, setgid, setgroups, setuid};
        const NONE: Option<&std::ffi::CStr> = None;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        // Private first: the mounts below must not propagate back to this side.
        mount(
            NONE,
            c"/",
            NONE,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            NONE,
        )?;
        mount(
            Some(c"proc"),
            self.proc_dir.as_c_str(),
            Some(c"proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            NONE,
        )?;
        mount(
            Some(self.bind_source.as_c_str()),
            self.bind_target.as_c_str(),
            NONE,
            MsFlags::MS_BIND,
            NONE,
        )?;
        chroot(self.root.as_c_str())?;
        chdir(self.cwd.as_c_str())?;
        let gid = Gid::from_raw(self.gid);
        setgroups(&[gid])?;
        setgid(gid)?;
        setuid(Uid::from_raw(self.uid))
    }
}

#[allow(unsafe_code)]
fn enter_before_exec(command: &mut tokio::process::Command, jail: Jail) {
    // SAFETY: the closure runs in the child between fork and exec. It only makes system
    // calls (unshare, mount, chroot, chdir, setgroups, setgid, setuid) on C strings made
    // before the fork; it allocates nothing and touches no lock shared with the parent.
    unsafe {
        command.pre_exec(move || jail.enter().map_err(std::io::Error::from));
    }
}

/// The `rabbitmq` user of an /etc/passwd text.
fn service_account_in(passwd: &str) -> Option<Account> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "rabbitmq" {
            return None;
        }
        let _password = fields.next()?;
        Some(Account {
            uid: fields.next()?.parse().ok()?,
            gid: fields.next()?.parse().ok()?,
            switch: true,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rabbitmq_user_is_read_by_number_from_the_roots_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      rabbitmq-old:x:7:7::/:/bin/false\n\
                      rabbitmq:x:101:102:RabbitMQ messaging server:/var/lib/rabbitmq:/usr/sbin/nologin\n";
        assert_eq!(
            service_account_in(passwd),
            Some(Account {
                uid: 101,
                gid: 102,
                switch: true
            })
        );
        assert_eq!(service_account_in("root:x:0:0::/:/bin/sh\n"), None);
        assert_eq!(service_account_in("rabbitmq:x:abc:1::/:\n"), None);
    }

    #[test]
    fn mount_points_are_made_inside_the_root_and_taken_back() {
        let base = std::env::temp_dir().join(format!("warren-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("tmp")).unwrap();
        let root = RabbitRoot { path: base.clone() };
        let dir = Path::new("/tmp/warren-it-x/tmp/warren-1-a");
        let made = root.make_mount_point(dir).unwrap().unwrap();
        assert_eq!(made, base.join("tmp/warren-it-x"));
        assert!(root.host_path(dir).is_dir());
        // A second broker beside it finds the folders made.
        let beside = Path::new("/tmp/warren-it-x/tmp/warren-1-b");
        let made_beside = root.make_mount_point(beside).unwrap().unwrap();
        assert_eq!(made_beside, base.join("tmp/warren-it-x/tmp/warren-1-b"));
        root.remove_mount_point(beside, &made_beside);
        root.remove_mount_point(dir, &made);
        assert!(!base.join("tmp/warren-it-x").exists());
        assert!(base.join("tmp").is_dir(), "the root's own folders stay");
        // A link inside the root is never followed out of it.
        std::os::unix::fs::symlink("/", base.join("var")).unwrap();
        let error = root.make_mount_point(Path::new("/var/x")).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(root.make_mount_point(Path::new("relative")).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
