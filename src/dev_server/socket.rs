//! Where the dev server's Unix socket lives, and who can reach it.
//!
//! - The default directory is private to the user: `$XDG_RUNTIME_DIR/spiffe-mtls` when
//!   `XDG_RUNTIME_DIR` is set (to an absolute path), else `/tmp/spiffe-mtls-<uid>`. It is created
//!   with mode 0700; when it already exists it must be a directory (not a symbolic link) owned
//!   by this user with no group or other permission bits, else the server refuses to start
//!   (another local user could have created it first, and would control the socket in it).
//! - The parents of a socket path the user chose are created with mode 0700 when missing;
//!   existing ones are left as they are.
//! - The socket file gets mode 0600 (or the one asked for) right after `bind`. Between the two
//!   the file has the mode the umask gives it; in the private default directory nobody else can
//!   reach it meanwhile. With a socket path in a shared directory that window exists: put the
//!   socket in a directory of your own.

use std::ffi::OsStr;
use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::procfs;

/// The socket file name in the default directory.
pub const DEFAULT_SOCKET_NAME: &str = "agent.sock";

/// Why the socket directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketDirError {
    /// This process's uid could not be read.
    #[error("cannot read this process's uid: {0}")]
    CurrentUser(io::Error),
    /// The directory could not be created or inspected.
    #[error("cannot create socket directory {path}: {source}")]
    Create {
        /// The directory.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Something other than a directory is at the path (a symbolic link, a file).
    #[error("socket directory {path} is not a directory (a symbolic link or a file is there)")]
    NotADirectory {
        /// The path.
        path: String,
    },
    /// Another user owns the directory.
    #[error(
        "socket directory {path} is owned by uid {owner}, not by this user (uid {uid}); remove it or choose --socket"
    )]
    WrongOwner {
        /// The directory.
        path: String,
        /// Its owner.
        owner: u32,
        /// This process's uid.
        uid: u32,
    },
    /// Group or others have permissions on the directory.
    #[error(
        "socket directory {path} has mode {mode:04o}; it must give no access to group or others (chmod 700)"
    )]
    LooseMode {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// The private default socket directory: `$XDG_RUNTIME_DIR/spiffe-mtls`, else
/// `/tmp/spiffe-mtls-<uid>`. Nothing is created; [`ensure_private_dir`] does that.
///
/// # Errors
/// [`SocketDirError::CurrentUser`] when this process's uid cannot be read.
pub fn default_socket_dir() -> Result<PathBuf, SocketDirError> {
    let uid = procfs::effective_uid().map_err(SocketDirError::CurrentUser)?;
    Ok(default_socket_dir_for(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        uid,
    ))
}

/// The default directory for a given `XDG_RUNTIME_DIR` and uid (a relative or empty
/// `XDG_RUNTIME_DIR` is ignored, as the XDG specification says).
pub(crate) fn default_socket_dir_for(runtime_dir: Option<&OsStr>, uid: u32) -> PathBuf {
    match runtime_dir.map(Path::new).filter(|dir| dir.is_absolute()) {
        Some(dir) => dir.join("spiffe-mtls"),
        None => PathBuf::from(format!("/tmp/spiffe-mtls-{uid}")),
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or checks the existing one: a directory,
/// not a symbolic link, owned by this user, without group or other permission bits.
///
/// # Errors
/// [`SocketDirError`] naming the directory and what is wrong with it.
///
/// # Example
/// ```no_run
/// let dir = spiffe_mtls::dev_server::default_socket_dir()?;
/// spiffe_mtls::dev_server::ensure_private_dir(&dir)?;
/// # Ok::<(), spiffe_mtls::dev_server::SocketDirError>(())
/// ```
pub fn ensure_private_dir(dir: &Path) -> Result<(), SocketDirError> {
    let uid = procfs::effective_uid().map_err(SocketDirError::CurrentUser)?;
    let path = || dir.display().to_string();
    create_private_dirs(dir).map_err(|source| SocketDirError::Create {
        path: path(),
        source,
    })?;
    let meta = std::fs::symlink_metadata(dir).map_err(|source| SocketDirError::Create {
        path: path(),
        source,
    })?;
    check_private(dir, &meta, uid)
}

/// The verdict on an existing directory's metadata.
fn check_private(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), SocketDirError> {
    let path = dir.display().to_string();
    if !meta.file_type().is_dir() {
        return Err(SocketDirError::NotADirectory { path });
    }
    if meta.uid() != uid {
        return Err(SocketDirError::WrongOwner {
            path,
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SocketDirError::LooseMode { path, mode });
    }
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700 (the umask may only tighten it);
/// existing ones are left unchanged.
pub(crate) fn create_private_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Gives the socket file at `path` the permission bits `mode`.
pub(crate) fn set_socket_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_follows_xdg_runtime_dir() {
        assert_eq!(
            default_socket_dir_for(Some(OsStr::new("/run/user/1000")), 1000),
            Path::new("/run/user/1000/spiffe-mtls")
        );
        assert_eq!(
            default_socket_dir_for(None, 1000),
            Path::new("/tmp/spiffe-mtls-1000")
        );
        for ignored in ["", "relative/dir"] {
            assert_eq!(
                default_socket_dir_for(Some(OsStr::new(ignored)), 7),
                Path::new("/tmp/spiffe-mtls-7")
            );
        }
    }

    #[test]
    fn created_private_then_accepted_again() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/spiffe-mtls");
        ensure_private_dir(&dir).unwrap();
        for level in [base.path().join("a"), base.path().join("a/b"), dir.clone()] {
            let mode = std::fs::metadata(&level).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", level.display());
        }
        ensure_private_dir(&dir).unwrap();
    }

    #[test]
    fn loose_dirs_symlinks_and_other_owners_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let uid = procfs::effective_uid().unwrap();
        let loose = base.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = ensure_private_dir(&loose).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "socket directory {} has mode 0755; it must give no access to group or others (chmod 700)",
                loose.display()
            )
        );
        // still 0755: an existing directory is never changed
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);

        let link = base.path().join("link");
        let private = base.path().join("private");
        ensure_private_dir(&private).unwrap();
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(matches!(
            ensure_private_dir(&link),
            Err(SocketDirError::NotADirectory { .. })
        ));

        // the ownership verdict itself, with another uid injected
        let meta = std::fs::symlink_metadata(&private).unwrap();
        assert!(check_private(&private, &meta, uid).is_ok());
        assert!(matches!(
            check_private(&private, &meta, uid + 1),
            Err(SocketDirError::WrongOwner { .. })
        ));
    }
}
