//! `--listen` and `--target` addresses: `HOST:PORT` or `unix:/path`; listeners and streams
//! over either.
//!
//! # Unix sockets this proxy creates (`--listen`, `--status`)
//! - The socket file gets mode 0600, or the one `--socket-mode` gives, and never
//!   has another one while it can be reached: it is bound in a fresh private (0700)
//!   directory beside its path, given its mode there, then renamed into place
//!   (`bind_unix`).
//! - Its directory must exist (missing ones are created 0700), be owned by this user or root,
//!   and give no write permission to group or others, sticky or not ([`check_socket_dir`]):
//!   whoever may write to it could remove or replace the socket and receive what local
//!   clients send to it. Reading and searching it is harmless: connecting needs write
//!   permission on the socket itself.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address).
    Tcp {
        /// The host.
        host: String,
        /// The port.
        port: u16,
    },
    /// `unix:/absolute/path`.
    Unix(PathBuf),
}

impl Address {
    /// Parses `HOST:PORT` or `unix:/path` (also `unix:///path`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(format!(
                    "{text:?}: a Unix socket address is unix:/absolute/path"
                ));
            }
            if path.len() > 107 {
                return Err(format!("{text:?}: a Unix socket path is at most 107 bytes"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT or unix:/path"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        if host.is_empty() {
            return Err(format!(
                "{text:?}: the host is missing (use 127.0.0.1:{port}, say)"
            ));
        }
        let host = match bracketed {
            Some(inner) if inner.parse::<std::net::Ipv6Addr>().is_ok() => inner,
            _ if host.contains(['[', ']', ':']) => {
                return Err(format!(
                    "{text:?}: {host:?} is not a host name or IP address (IPv6: [::1]:PORT)"
                ));
            }
            _ => host,
        };
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(format!(
                "{text:?}: {host:?} is not a host name or IP address"
            ));
        }
        Ok(Self::Tcp {
            host: host.to_owned(),
            port,
        })
    }

    /// The resolved socket addresses of a TCP address.
    pub async fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Self::Tcp { host, port } => Ok(tokio::net::lookup_host((host.as_str(), *port))
                .await?
                .collect()),
            Self::Unix(_) => Ok(Vec::new()),
        }
    }

    /// Binds a listener; a Unix socket file gets the permission bits `mode` before anyone
    /// else can reach it (bound in a private directory, then renamed), in a directory that [`check_socket_dir`]
    /// accepts. A Unix socket file left behind by a process that is gone is replaced; one
    /// that accepts connections is not, nor anything that is not a socket.
    ///
    /// A TCP listener queues up to `backlog` connections the proxy has not accepted yet (the
    /// kernel caps it at `net.core.somaxconn`); a Unix socket's queue is the standard
    /// library's (128).
    pub async fn bind_with(&self, mode: u32, backlog: u32) -> Result<Listener, String> {
        match self {
            Self::Tcp { host, port } => bind_tcp(host, *port, backlog)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {self}: {e}")),
            Self::Unix(path) => {
                check_socket_dir(path).map_err(|e| format!("cannot listen on {self}: {e}"))?;
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if UnixStream::connect(path).await.is_ok() {
                        return Err(format!(
                            "cannot listen on {self}: another process serves it"
                        ));
                    }
                    use std::os::unix::fs::FileTypeExt;
                    if !meta.file_type().is_socket() {
                        return Err(format!(
                            "cannot listen on {self}: the path exists and is not a socket"
                        ));
                    }
                    // A stale socket: the rename in `bind_unix` replaces it.
                }
                bind_unix(path, mode)
                    .map(|listener| Listener::Unix(listener, path.clone()))
                    .map_err(|e| format!("cannot listen on {self}: {e}"))
            }
        }
    }

    /// Connects.
    pub async fn connect(&self) -> io::Result<Stream> {
        match self {
            Self::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                let _ = tcp.set_nodelay(true);
                Ok(Stream::Tcp(tcp))
            }
            Self::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        }
    }

    /// `host:port` for an HTTP authority (`localhost` for a Unix socket).
    pub fn authority(&self) -> String {
        match self {
            Self::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Self::Tcp { host, port } => format!("{host}:{port}"),
            Self::Unix(_) => "localhost".to_owned(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { .. } => f.write_str(&self.authority()),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Parses `--socket-mode`: octal permission bits (`0600`, `660`, `0o660`), at most `0777`. The
/// same syntax as `dev-server --socket-mode`.
pub fn parse_socket_mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{value:?} is not an octal permission mode such as 0600 or 0660"))
}

/// Checks (or creates) the directory of the Unix socket `path`. A missing directory is
/// created with its missing parents, mode 0700, by the library's
/// [`ensure_private_dir`](spiffe_mtls::dev_server::ensure_private_dir). An existing one must be
/// a directory (symbolic links followed) owned by this user or root, without write
/// permission for group or others.
///
/// # Errors
/// A message naming the directory and what is wrong with it (its mode, its owner).
pub fn check_socket_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => return Err(format!("{} has no directory", path.display())),
    };
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return spiffe_mtls::dev_server::ensure_private_dir(dir).map_err(|e| e.to_string());
        }
        Err(error) => {
            return Err(format!(
                "cannot inspect socket directory {}: {error}",
                dir.display()
            ));
        }
    };
    if !meta.is_dir() {
        return Err(format!(
            "socket directory {} is not a directory",
            dir.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "socket directory {} has mode {mode:04o}: group or others may write to it and \
             could replace the socket; use a directory only its owner can write to (chmod go-w)",
            dir.display()
        ));
    }
    let uid = spiffe_mtls::dev_server::effective_uid()
        .map_err(|e| format!("cannot read this process's uid from /proc/self/status: {e}"))?;
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "socket directory {} is owned by uid {}, neither this user (uid {uid}) nor root: \
             its owner could replace the socket",
            dir.display(),
            meta.uid()
        ));
    }
    Ok(())
}

/// A TCP listener on the first address `host:port` resolves to, with `backlog`.
async fn bind_tcp(host: &str, port: u16, backlog: u32) -> io::Result<TcpListener> {
    let address = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address"))?;
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's `TcpListener::bind` does: a restarted proxy can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Binds a Unix socket at `path` whose file has the permission bits `mode` from the moment
/// anyone but this user can reach it.
///
/// `bind(2)` creates the file with the mode the umask leaves, and `chmod` after it leaves a
/// window in which another user may connect. The umask is per process (changing it needs
/// `unsafe` and races other threads), and std and tokio bind and listen in one call, so the
/// mode cannot be set between them. Instead the socket is bound in a fresh directory of
/// mode 0700 beside `path` (same filesystem, so the rename is atomic), chmodded there, where
/// only this user can reach it, and then renamed to `path`; a stale socket at `path` is
/// replaced by the rename. The private directory is removed in every case.
fn bind_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    // A fresh directory (`create_dir` fails on an existing one): at most 16 names.
    let mut private = None;
    for attempt in 0..16u32 {
        let candidate = dir.join(format!(".{}.{attempt}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => {
                private = Some(candidate);
                break;
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    let private = private.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "no fresh private directory .{}.N in {} for binding",
                std::process::id(),
                dir.display()
            ),
        )
    })?;
    let inner = private.join("s");
    let bound = (|| {
        if inner.as_os_str().len() > 107 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the socket is first bound at {}, longer than 107 bytes; use a shorter path",
                    inner.display()
                ),
            ));
        }
        // The umask may have taken the owner's bits too.
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&inner, path)?;
        Ok(listener)
    })();
    if bound.is_err() {
        let _ = std::fs::remove_file(&inner);
    }
    let _ = std::fs::remove_dir(&private);
    bound
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// The listener and its socket file, removed on drop.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// The next connection and who it is from (`None` for a Unix socket peer).
    pub async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Self::Tcp(listener) => {
                let (tcp, remote) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                Ok((Stream::Tcp(tcp), Some(remote)))
            }
            Self::Unix(listener, _) => {
                let (unix, _) = listener.accept().await?;
                Ok((Stream::Unix(unix), None))
            }
        }
    }

    /// The address actually bound (the port chosen for port 0), as shown.
    pub fn local(&self) -> String {
        match self {
            Self::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string()),
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A TCP or Unix stream.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix socket connection.
    Unix(UnixStream),
}

impl Stream {
    /// The local address of a TCP stream.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(tcp) => tcp.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            Address::parse("127.0.0.1:8080"),
            Ok(Address::Tcp {
                host: "127.0.0.1".into(),
                port: 8080
            })
        );
        assert_eq!(
            Address::parse("[::1]:80"),
            Ok(Address::Tcp {
                host: "::1".into(),
                port: 80
            })
        );
        assert_eq!(
            Address::parse("unix:/run/app.sock"),
            Ok(Address::Unix("/run/app.sock".into()))
        );
        assert_eq!(
            Address::parse("unix:///run/app.sock"),
            Ok(Address::Unix("/run/app.sock".into()))
        );
        for bad in [
            "8080",
            ":80",
            "host:port",
            "host:99999",
            "unix:rel/path",
            "::1:80",
            "a b:1",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad}");
        }
    }
}
