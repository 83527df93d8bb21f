//! A real SPIRE for the tests: `spire-server` and `spire-agent` (v1.13.3, built by
//! `interop/build.sh`) started in a temp dir, joined with a join token, entries registered
//! with the `spire-server` CLI, and every process they started killed (by process group) when
//! the world is dropped.
//!
//! The server: sqlite3 datastore in the dir, `join_token` node attestor, `memory` key manager,
//! bound to 127.0.0.1 on a free port, its API socket in the dir. The agent: the server's
//! bundle (`spire-server bundle show`) as its trust bundle, the `unix` workload attestor with
//! `discover_workload_path = true` (so `unix:path:` selectors work), its Workload API socket
//! in the dir. The agent's key manager is `disk` rather than `memory`: an agent restarted with
//! `memory` has lost its key and must attest again, and a join token attests only once.
//!
//! # Shortest lifetimes
//!
//! SPIRE 1.13.3 starts with any `ca_ttl` and `default_x509_svid_ttl` of `1s` or more (`0s`
//! means the defaults, 24h and 1h); it only warns when the SVID TTL is too long for the CA's:
//! `default_x509_svid_ttl is too high for the configured ca_ttl value. SVIDs with shorter
//! lifetimes may be issued. Please set default_x509_svid_ttl to 0s or less, or the ca_ttl to
//! 6s or more, to guarantee the full default_x509_svid_ttl lifetime when CA rotations are
//! scheduled.` (for `ca_ttl = "1s"`, `default_x509_svid_ttl = "1s"`). What bounds the useful
//! figures is the agent: it looks at its SVIDs every 5 s (its sync interval) and renews one
//! past half its life, counted from a NotBefore SPIRE backdates by 10 s. With
//! `default_x509_svid_ttl = "10s"` each SVID is valid for 20 s (10 s backdated) and is renewed
//! at every sync, about every 5 s; a TTL under 5 s would let an SVID expire between two syncs.
//! [`Options::default`] uses `ca_ttl = "1m"` (so the CA rotates within a test, the bundle
//! holding both CAs meanwhile), `default_x509_svid_ttl = "10s"`, `default_jwt_svid_ttl =
//! "30s"` and `agent_ttl = "1h"` (the agent's own SVID outlives an agent restart).
#![allow(dead_code)] // each test uses its part

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::interop_tools::tool;

/// The bound of every wait: far beyond what a step takes on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process in its own process group, its output in a log file; the whole group is killed
/// when dropped.
pub struct Process {
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(program: &Path, args: &[&str], log: PathBuf) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self { child, log }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL to the whole group, then reaps the leader.
    pub fn kill(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a SPIRE CLI command to completion (bounded); panics with its output when it fails.
pub fn run(program: &Path, args: &[&str]) -> String {
    let output = run_status(program, args);
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command, killed after [`PATIENCE`], and returns its output whatever its status.
pub fn run_status(program: &Path, args: &[&str]) -> Output {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(PATIENCE).is_err() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = tx.send(());
    let _ = watchdog.join();
    output
}

/// How a server is configured.
#[derive(Clone, Debug)]
pub struct Options {
    pub trust_domain: String,
    pub ca_ttl: String,
    pub x509_svid_ttl: String,
    pub jwt_svid_ttl: String,
    /// Serve the bundle endpoint (`https_spiffe`) on a free port, for federation.
    pub bundle_endpoint: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trust_domain: "example.org".into(),
            ca_ttl: "1m".into(),
            x509_svid_ttl: "10s".into(),
            jwt_svid_ttl: "30s".into(),
            bundle_endpoint: false,
        }
    }
}

/// A running `spire-server`.
pub struct SpireServer {
    pub trust_domain: String,
    pub socket: PathBuf,
    pub port: u16,
    pub bundle_port: Option<u16>,
    pub process: Process,
    dir: PathBuf,
}

impl SpireServer {
    /// Starts a server in `dir` (created) and waits until it answers its health check.
    pub fn start(dir: &Path, options: &Options) -> Self {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let bundle_port = options.bundle_endpoint.then(free_port);
        let socket = dir.join("server.sock");
        let federation = bundle_port.map_or(String::new(), |p| {
            format!(
                "  federation {{\n    bundle_endpoint {{\n      address = \"127.0.0.1\"\n      port = {p}\n    }}\n  }}\n"
            )
        });
        let config = format!(
            r#"server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = "{socket}"
  trust_domain = "{td}"
  data_dir = "{data}"
  log_level = "INFO"
  ca_ttl = "{ca_ttl}"
  default_x509_svid_ttl = "{x509}"
  default_jwt_svid_ttl = "{jwt}"
  agent_ttl = "1h"
{federation}}}
plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{data}/datastore.sqlite3"
    }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
}}
"#,
            socket = socket.display(),
            td = options.trust_domain,
            data = dir.join("data").display(),
            ca_ttl = options.ca_ttl,
            x509 = options.x509_svid_ttl,
            jwt = options.jwt_svid_ttl,
        );
        let config_path = dir.join("server.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut process = Process::spawn(
            &tool("spire-server"),
            &["run", "-config", config_path.to_str().unwrap()],
            dir.join("server.log"),
        );
        let socket_arg = socket.to_str().unwrap().to_owned();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let health = run_status(
                &tool("spire-server"),
                &["healthcheck", "-socketPath", &socket_arg],
            );
            if health.status.success() {
                break;
            }
            assert!(
                process.running() && Instant::now() < deadline,
                "spire-server did not become healthy: {}",
                process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            trust_domain: options.trust_domain.clone(),
            socket,
            port,
            bundle_port,
            process,
            dir: dir.to_owned(),
        }
    }

    /// `spire-server <command> <sub> -socketPath S args...`
    pub fn cli(&self, command: &[&str], args: &[&str]) -> String {
        let mut all: Vec<&str> = command.to_vec();
        all.extend(["-socketPath", self.socket.to_str().unwrap()]);
        all.extend_from_slice(args);
        run(&tool("spire-server"), &all)
    }

    /// The X.509 bundle, PEM (`bundle show`).
    pub fn bundle_pem(&self) -> String {
        self.cli(&["bundle", "show"], &[])
    }

    /// The bundle as a SPIFFE bundle document (`bundle show -format spiffe`).
    pub fn bundle_spiffe(&self) -> String {
        self.cli(&["bundle", "show"], &["-format", "spiffe"])
    }

    /// A new join token.
    pub fn join_token(&self) -> String {
        let out = self.cli(&["token", "generate"], &["-ttl", "600"]);
        out.lines()
            .find_map(|l| l.strip_prefix("Token:"))
            .unwrap_or_else(|| panic!("no token in {out:?}"))
            .trim()
            .to_owned()
    }

    /// Makes this server fetch `other`'s bundle from its bundle endpoint (`https_spiffe`),
    /// starting from `other`'s current bundle.
    pub fn federate_with(&self, other: &SpireServer) {
        let port = other
            .bundle_port
            .expect("the other server serves its bundle");
        let path = self.dir.join(format!("{}.bundle.json", other.trust_domain));
        std::fs::write(&path, other.bundle_spiffe()).unwrap();
        self.cli(
            &["federation", "create"],
            &[
                "-trustDomain",
                &other.trust_domain,
                "-bundleEndpointURL",
                &format!("https://127.0.0.1:{port}"),
                "-bundleEndpointProfile",
                "https_spiffe",
                "-endpointSpiffeID",
                &format!("spiffe://{}/spire/server", other.trust_domain),
                "-trustDomainBundlePath",
                path.to_str().unwrap(),
                "-trustDomainBundleFormat",
                "spiffe",
            ],
        );
    }
}

/// A running `spire-agent`, joined to a server.
pub struct SpireAgent {
    pub socket: PathBuf,
    pub token: String,
    pub process: Process,
    config: PathBuf,
    log: PathBuf,
}

impl SpireAgent {
    /// Joins an agent to `server` with a new token, in `dir`, and waits for its Workload API.
    pub fn start(dir: &Path, server: &SpireServer) -> Self {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let bundle = dir.join("bootstrap.pem");
        std::fs::write(&bundle, server.bundle_pem()).unwrap();
        let socket = dir.join("api.sock");
        let config = format!(
            r#"agent {{
  data_dir = "{data}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{socket}"
  trust_bundle_path = "{bundle}"
  trust_domain = "{td}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "disk" {{
    plugin_data {{
      directory = "{keys}"
    }}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{
      discover_workload_path = true
    }}
  }}
}}
"#,
            data = dir.join("data").display(),
            port = server.port,
            socket = socket.display(),
            bundle = bundle.display(),
            td = server.trust_domain,
            keys = dir.join("keys").display(),
        );
        let config_path = dir.join("agent.conf");
        std::fs::write(&config_path, config).unwrap();
        let token = server.join_token();
        let log = dir.join("agent.log");
        let process = Self::launch(&config_path, Some(&token), &log);
        let mut agent = Self {
            socket,
            token,
            process,
            config: config_path,
            log,
        };
        agent.wait_healthy();
        agent
    }

    fn launch(config: &Path, token: Option<&str>, log: &Path) -> Process {
        let mut args = vec!["run", "-config", config.to_str().unwrap()];
        if let Some(token) = token {
            args.extend(["-joinToken", token]);
        }
        Process::spawn(&tool("spire-agent"), &args, log.to_owned())
    }

    fn wait_healthy(&mut self) {
        let socket = self.socket.to_str().unwrap().to_owned();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let health = run_status(
                &tool("spire-agent"),
                &["healthcheck", "-socketPath", &socket],
            );
            if health.status.success() {
                return;
            }
            assert!(
                self.process.running() && Instant::now() < deadline,
                "spire-agent did not become healthy: {}",
                self.process.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The Workload API address, `unix:///...`.
    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Kills the agent (SIGKILL to its group); its socket stays, unanswered.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the agent again from its data dir (its stored SVID and key; no token).
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = Self::launch(&self.config, None, &self.log);
        self.wait_healthy();
    }

    /// `spire-agent api fetch x509` output (as this test process's uid, attested as the
    /// `spire-agent` binary), or `None` when it fails.
    pub fn fetch_x509_text(&self) -> Option<String> {
        let output = run_status(
            &tool("spire-agent"),
            &[
                "api",
                "fetch",
                "x509",
                "-socketPath",
                self.socket.to_str().unwrap(),
            ],
        );
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `spire-agent api fetch x509 -write DIR`: SPIRE's own files for what the agent serves
    /// this process (attested as the `spire-agent` binary); panics when it fails.
    pub fn fetch_x509_write(&self, dir: &Path) -> String {
        run(
            &tool("spire-agent"),
            &[
                "api",
                "fetch",
                "x509",
                "-socketPath",
                self.socket.to_str().unwrap(),
                "-write",
                dir.to_str().unwrap(),
            ],
        )
    }
}

/// One registration entry.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub spiffe_id: String,
    /// `unix:uid:<uid>` is always added.
    pub path: Option<PathBuf>,
    pub hint: Option<String>,
    pub dns: Vec<String>,
    pub federates_with: Vec<String>,
}

impl Entry {
    /// An entry for every process of this uid.
    pub fn uid(spiffe_id: &str) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            ..Self::default()
        }
    }

    /// An entry for this uid running the executable at `path`.
    pub fn path(spiffe_id: &str, path: &Path) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            path: Some(path.to_owned()),
            ..Self::default()
        }
    }

    pub fn hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.dns.push(name.into());
        self
    }

    pub fn federates_with(mut self, trust_domain: &str) -> Self {
        self.federates_with.push(format!("spiffe://{trust_domain}"));
        self
    }
}

/// This process's uid (the tests' workloads all run as it).
pub fn my_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A server and one agent in a temp dir.
pub struct SpireWorld {
    // Fields drop in order: the agent before its server, the dir last.
    pub agent: SpireAgent,
    pub server: SpireServer,
    pub dir: tempfile::TempDir,
    probes: std::cell::Cell<u32>,
}

impl SpireWorld {
    pub fn start() -> Self {
        Self::start_with(&Options::default())
    }

    pub fn start_with(options: &Options) -> Self {
        let dir = tempfile::Builder::new().prefix("spire").tempdir().unwrap();
        let server = SpireServer::start(&dir.path().join("server"), options);
        let agent = SpireAgent::start(&dir.path().join("agent"), &server);
        Self {
            agent,
            server,
            dir,
            probes: std::cell::Cell::new(0),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The agent's SPIFFE ID, parent of every entry.
    pub fn parent_id(&self) -> String {
        format!(
            "spiffe://{}/spire/agent/join_token/{}",
            self.server.trust_domain, self.agent.token
        )
    }

    /// The Workload API address.
    pub fn socket(&self) -> String {
        self.agent.address()
    }

    /// A copy of `program` in the world's dir under `name`, for an identity of its own by
    /// `unix:path` (a hard link where possible: the attestor reads the path, not the inode).
    pub fn copy_binary(&self, program: &Path, name: &str) -> PathBuf {
        let copy = self.path(name);
        if std::fs::hard_link(program, &copy).is_err() {
            std::fs::copy(program, &copy).unwrap();
        }
        copy
    }

    /// Creates `entry` (`entry create`).
    pub fn create(&self, entry: &Entry) {
        let uid = format!("unix:uid:{}", my_uid());
        let parent = self.parent_id();
        let mut args: Vec<String> = vec![
            "-parentID".into(),
            parent,
            "-spiffeID".into(),
            entry.spiffe_id.clone(),
            "-selector".into(),
            uid,
        ];
        if let Some(path) = &entry.path {
            // The attestor reads /proc/PID/exe: symbolic links resolved (the tool directory
            // of interop/build.sh holds links).
            let path = path.canonicalize().unwrap();
            args.extend(["-selector".into(), format!("unix:path:{}", path.display())]);
        }
        if let Some(hint) = &entry.hint {
            args.extend(["-hint".into(), hint.clone()]);
        }
        for dns in &entry.dns {
            args.extend(["-dns".into(), dns.clone()]);
        }
        for td in &entry.federates_with {
            args.extend(["-federatesWith".into(), td.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.server.cli(&["entry", "create"], &args);
    }

    /// Creates `entries`, then waits (bounded) until the agent serves them: a probe entry for
    /// the `spire-agent` binary itself, created last, is seen by `spire-agent api fetch`; the
    /// agent syncs every entry of its own in one go, so the earlier ones are there too.
    pub fn register(&self, entries: &[Entry]) {
        for entry in entries {
            self.create(entry);
        }
        let n = self.probes.get() + 1;
        self.probes.set(n);
        let probe = format!("spiffe://{}/probe/{n}", self.server.trust_domain);
        self.create(&Entry::path(&probe, &tool("spire-agent")));
        self.wait_served(&probe);
    }

    /// Waits (bounded) until `spire-agent api fetch x509` lists `spiffe_id`.
    pub fn wait_served(&self, spiffe_id: &str) {
        wait_until(&format!("the agent to serve {spiffe_id}"), PATIENCE, || {
            self.agent
                .fetch_x509_text()
                .is_some_and(|text| text.lines().any(|l| l.trim_end().ends_with(spiffe_id)))
        });
    }
}

/// Two worlds, `example.org` and `partner.org`, each server fetching the other's bundle from
/// its bundle endpoint (`https_spiffe`).
pub fn federated_pair() -> (SpireWorld, SpireWorld) {
    let ours = SpireWorld::start_with(&Options {
        bundle_endpoint: true,
        ..Options::default()
    });
    let partner = SpireWorld::start_with(&Options {
        trust_domain: "partner.org".into(),
        bundle_endpoint: true,
        ..Options::default()
    });
    ours.server.federate_with(&partner.server);
    partner.server.federate_with(&ours.server);
    (ours, partner)
}
