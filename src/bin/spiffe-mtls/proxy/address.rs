//! `--listen` and `--target` addresses: `HOST:PORT` or `unix:/path`; listeners and streams
//! over either.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
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

    /// Binds a listener. A Unix socket file left behind by a process that is gone is
    /// replaced; one that accepts connections is not.
    pub async fn bind(&self) -> Result<Listener, String> {
        match self {
            Self::Tcp { host, port } => TcpListener::bind((host.as_str(), *port))
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {self}: {e}")),
            Self::Unix(path) => {
                if path.exists() {
                    if UnixStream::connect(path).await.is_ok() {
                        return Err(format!(
                            "cannot listen on {self}: another process serves it"
                        ));
                    }
                    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| {
                        use std::os::unix::fs::FileTypeExt;
                        m.file_type().is_socket()
                    });
                    if !is_socket {
                        return Err(format!(
                            "cannot listen on {self}: the path exists and is not a socket"
                        ));
                    }
                    let _ = std::fs::remove_file(path);
                }
                UnixListener::bind(path)
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

    /// The address actually bound (the port chosen for port 0).
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
