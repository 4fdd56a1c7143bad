//! The account private nodes run under: the `rabbitmq` user when warren runs as root (the
//! Erlang VM should not run as root, and Debian's files belong to that user; with RabbitMQ
//! from another root, that root's own `rabbitmq` user), else the current user.

use std::path::Path;

use nix::unistd::{Gid, Uid, User, chown};

use super::BrokerError;

/// Who owns a managed node's files and processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    /// User id the nodes run as.
    pub uid: u32,
    /// Group id the nodes run as.
    pub gid: u32,
    /// True when warren must switch to this account to start processes (warren is root).
    pub switch: bool,
}

impl Account {
    /// The account for private nodes started from this machine's own install (another
    /// root's is [`super::rootfs::RabbitRoot::service_account`]).
    ///
    /// # Errors
    /// [`BrokerError::NoServiceUser`] when warren runs as root and no `rabbitmq` user exists.
    pub fn of_this_machine() -> Result<Self, BrokerError> {
        if !Uid::effective().is_root() {
            return Ok(Self {
                uid: Uid::effective().as_raw(),
                gid: Gid::effective().as_raw(),
                switch: false,
            });
        }
        match User::from_name("rabbitmq") {
            Ok(Some(user)) => Ok(Self {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                switch: true,
            }),
            _ => Err(BrokerError::NoServiceUser),
        }
    }

    /// Gives `path` and everything under it to this account (a no-op unless switching).
    ///
    /// # Errors
    /// The I/O error of the first file that could not be changed.
    pub fn own(&self, path: &Path) -> std::io::Result<()> {
        if !self.switch {
            return Ok(());
        }
        chown(
            path,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.own(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// True when this account can reach `dir` (search permission on it and on every
    /// folder above it): a node's folder must lie under such a folder. Always true when
    /// not switching, since the account is warren's own.
    pub fn can_reach(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        if !self.switch {
            return true;
        }
        dir.ancestors().all(|folder| {
            let Ok(meta) = std::fs::metadata(folder) else {
                return false;
            };
            let mode = meta.mode();
            if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            }
        })
    }

    /// Makes `command` run under this account (on this machine's own file system; see
    /// [`super::install::RabbitInstall::command`] for the general case).
    pub fn apply(&self, command: &mut tokio::process::Command) {
        if self.switch {
            command.uid(self.uid).gid(self.gid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_folder_behind_a_private_one_is_out_of_reach() {
        let base = std::env::temp_dir().join(format!("warren-reach-{}", std::process::id()));
        let inner = base.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        // An account that is neither owner nor group of the folders.
        let other = Account {
            uid: 4_000_000,
            gid: 4_000_000,
            switch: true,
        };
        assert!(!other.can_reach(&inner));
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert!(other.can_reach(&inner));
        let own = Account {
            switch: false,
            ..other
        };
        assert!(own.can_reach(&base.join("missing")));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
