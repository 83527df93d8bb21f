//! What the dev server reads from Linux's `/proc`: a process's start time and executable, this
//! process's user, and the owner of a local TCP socket. Parsing is separate from reading, so
//! the parsers are tested on fixed text.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The identity of an executable file: its path and the file itself (device and inode), so a
/// different file later placed at the same path is told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Executable {
    /// The path `/proc/<pid>/exe` links to (with ` (deleted)` when the file is gone).
    pub(crate) path: PathBuf,
    /// The device holding the file.
    pub(crate) dev: u64,
    /// The file's inode.
    pub(crate) ino: u64,
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`, clock ticks since boot); it tells
/// a process from a later one that reused its pid.
pub(crate) fn start_time(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat format"),
        )
    })
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so the fields are counted from its LAST `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // after the name: field 3 (state) is the first, so field 22 is the 20th
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The executable of `pid`.
pub(crate) fn executable(pid: u32) -> io::Result<Executable> {
    let link = format!("/proc/{pid}/exe");
    let path = std::fs::read_link(&link)?;
    // stat through the link reaches the file the process runs, even when it was deleted
    let meta = std::fs::metadata(&link)?;
    Ok(Executable {
        path,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// This process's effective user ID (the second `Uid:` field of `/proc/self/status`).
///
/// # Errors
/// When `/proc/self/status` cannot be read or has no such field.
///
/// # Example
/// ```
/// # #[cfg(target_os = "linux")]
/// assert!(spiffe_mtls::dev_server::effective_uid().is_ok());
/// ```
pub fn effective_uid() -> io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "no effective uid in /proc/self/status",
            )
        })
}

/// The uid owning the established TCP socket whose local address is `local` and remote address
/// is `remote`, from `/proc/net/tcp` and `/proc/net/tcp6` (this network namespace). IPv4
/// addresses mapped into IPv6 compare equal to their IPv4 form.
pub(crate) fn tcp_socket_owner(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            find_tcp_owner(&text, local, remote)
        })
}

/// The `uid` column of the ESTABLISHED row of a `/proc/net/tcp{,6}` table whose addresses are
/// `local` and `remote`.
pub(crate) fn find_tcp_owner(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    const ESTABLISHED: &str = "01";
    let (local, remote) = (canonical(local), canonical(remote));
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let (row_local, row_remote, state, uid) = (
            columns.get(1)?,
            columns.get(2)?,
            columns.get(3)?,
            columns.get(7)?,
        );
        let matches = *state == ESTABLISHED
            && parse_socket_address(row_local).map(canonical) == Some(local)
            && parse_socket_address(row_remote).map(canonical) == Some(remote);
        matches.then(|| uid.parse().ok()).flatten()
    })
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each 32-bit
/// word of the address as a native-endian integer, so the words are read back the same way.
fn parse_socket_address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = address.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_the_last_parenthesis() {
        let fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        let rest = fields.join(" ");
        // field 22 holds "22" here
        assert_eq!(parse_start_time(&format!("42 (sh) {rest}")), Some(22));
        // a name that looks like the fields that follow it
        assert_eq!(
            parse_start_time(&format!("42 (x) R 1 2 3) {rest}")),
            Some(22)
        );
        assert_eq!(parse_start_time(&format!("42 (a b)) {rest}")), Some(22));
        assert_eq!(parse_start_time("42 (sh) R 1 2"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        let first = start_time(pid).unwrap();
        assert_eq!(start_time(pid).unwrap(), first);
        let exe = executable(pid).unwrap();
        assert_eq!(exe.path, std::env::current_exe().unwrap());
        use std::os::unix::fs::MetadataExt;
        let file = tempfile::tempfile().unwrap();
        assert_eq!(effective_uid().unwrap(), file.metadata().unwrap().uid());
    }

    fn hex4(octets: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(octets))
    }

    #[test]
    fn tcp_table_rows() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let lo = hex4([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: {lo}:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
             \x20  1: {lo}:1F91 {lo}:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
             \x20  2: {lo}:9C40 {lo}:1F91 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n"
        );
        // the server's own socket is row 1 (uid 0); the client's is row 2
        assert_eq!(find_tcp_owner(&table, client, server), Some(1000));
        assert_eq!(find_tcp_owner(&table, server, client), Some(0));
        let elsewhere: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        assert_eq!(find_tcp_owner(&table, elsewhere, server), None);
        // a row not established does not count
        let waiting = table.replace(
            ":1F91 01 00000000:00000000 00:00000000 00000000  1000",
            ":1F91 06 00000000:00000000 00:00000000 00000000  1000",
        );
        assert_eq!(find_tcp_owner(&waiting, client, server), None);
        // a mapped IPv4 address compares equal
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(find_tcp_owner(&table, mapped, server), Some(1000));
    }

    #[test]
    fn ipv6_rows() {
        let loopback = Ipv6Addr::LOCALHOST.octets();
        let hex: String = loopback
            .chunks(4)
            .map(|w| hex4([w[0], w[1], w[2], w[3]]))
            .collect();
        assert_eq!(
            parse_socket_address(&format!("{hex}:0050")),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(parse_socket_address("0100007F"), None);
        assert_eq!(parse_socket_address("XYZ:0050"), None);
    }
}
