//! A netd daemon under test: its own "host" namespace, state dir, exec root, socket and bpffs
//! sub-directory, all unique. Dropping the guard kills what its sandboxes ran (by recorded pid),
//! stops the daemon (by pid), unmounts its namespaces and deletes the host namespace.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{unique_name, NetNs};

/// The `netd` binary: `$NETD_BIN`, or the one next to this executable (a bench binary) or one
/// directory up (a test binary in `deps/`). `cargo xtask test` and `bench` build it first.
#[must_use]
pub fn netd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NETD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let here = exe.parent().expect("target dir");
    [here.join("netd"), here.parent().map(|p| p.join("netd")).unwrap_or_default()]
        .into_iter()
        .find(|b| b.is_file())
        .unwrap_or_else(|| {
            panic!("no netd binary near {}: build it with `cargo build -p netd` (cargo xtask test does)", exe.display())
        })
}

/// The stock docker CLI, when installed.
#[must_use]
pub fn docker_binary() -> Option<PathBuf> {
    ["/usr/local/bin/docker", "/usr/bin/docker"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// A CLI run's outcome.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: &Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless the command succeeded; returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "command failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.stdout
    }

    /// Panics unless the command failed with `message` on stderr.
    pub fn fails_with(&self, message: &str) {
        assert_ne!(self.code, 0, "expected failure with {message:?}, got success: {}", self.stdout);
        assert!(self.stderr.contains(message), "expected {message:?} in stderr, got: {}", self.stderr);
    }
}

/// A long-running CLI command (see [`TestDaemon::netd_streaming`]): its stdout and stderr, line
/// by line as they come (interleaved).
pub struct Streaming {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    /// The next line, or `None` after `timeout`.
    pub fn line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running daemon in a fresh namespace.
pub struct TestDaemon {
    child: Option<Child>,
    dir: PathBuf,
    bpffs: PathBuf,
    socket: String,
    args: Vec<String>,
    // Last: dropped after the daemon is stopped.
    host: NetNs,
}

impl TestDaemon {
    /// Starts a daemon with default flags (plus `extra`) in a new host namespace.
    #[must_use]
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(NetNs::new("ndt-host"), extra)
    }

    /// Starts a daemon with default flags (plus `extra`) in `host`, a namespace the test has
    /// prepared (an uplink, routes); the daemon owns it from now on.
    #[must_use]
    pub fn start_in(host: NetNs, extra: &[&str]) -> Self {
        host.sysctl("net.bridge.bridge-nf-call-iptables", "0");
        let dir = PathBuf::from("/tmp").join(unique_name("netd-test-"));
        std::fs::create_dir_all(&dir).expect("test dir");
        let socket = format!("unix://{}/run/netd.sock", dir.display());
        let bpffs = PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("netd-test-")));
        let mut args: Vec<String> = vec![
            "daemon".into(),
            "--state-dir".into(),
            dir.join("state").display().to_string(),
            "--exec-root".into(),
            dir.join("run").display().to_string(),
            "--bpffs".into(),
            bpffs.display().to_string(),
            "-H".into(),
            socket.clone(),
        ];
        // DNS questions the embedded resolvers forward go to the test's own namespaces (the
        // host namespace's loopback unless a test names its server), never to the machine's.
        if !extra.contains(&"--dns") {
            args.extend(["--dns".into(), "127.0.0.1".into()]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut d = Self { child: None, dir, bpffs, socket, args, host };
        d.spawn();
        d
    }

    /// The daemon process, started in the host namespace, logging to `daemon.log`.
    fn spawn_process(&self) -> Child {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).expect("log file");
        let args = self.args.clone();
        // Only the network namespace changes (not the mount namespace), so the sandboxes the
        // daemon pins are visible to the CLI and to the test.
        self.host.run(move || {
            Command::new(netd_binary())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawning netd daemon")
        })
    }

    fn spawn(&mut self) {
        self.child = Some(self.spawn_process());
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.log().contains("netd: listening on") && self.netd(&["version"]).code == 0 {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("netd daemon exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("netd daemon did not come up:\n{}", self.log());
    }

    /// The daemon's log so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// The "host" namespace the daemon runs in.
    #[must_use]
    pub fn host(&self) -> &NetNs {
        &self.host
    }

    #[must_use]
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The daemon's exec root (sandbox namespaces are under `netns/`).
    #[must_use]
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The daemon's persisted state document.
    #[must_use]
    pub fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("state/state.json")).expect("state.json");
        serde_json::from_str(&text).expect("state.json parses")
    }

    /// Replaces the persisted state document (the daemon stopped), as an older release would
    /// have left it.
    pub fn replace_state_json(&self, state: &serde_json::Value) {
        assert!(self.child.is_none(), "stop the daemon first");
        std::fs::write(self.dir.join("state/state.json"), state.to_string()).expect("state.json");
    }

    /// The daemon's bpffs directory (pinned maps and links).
    #[must_use]
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The daemon's pid.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Runs the netd CLI against this daemon.
    pub fn netd(&self, args: &[&str]) -> Run {
        let out = Command::new(netd_binary())
            .args(["-H", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running netd");
        Run::from(&out)
    }

    /// Starts a long-running netd CLI command against this daemon (`netd monitor`): its stdout
    /// lines arrive on [`Streaming::line`]; it is killed (by pid) when dropped.
    #[must_use]
    pub fn netd_streaming(&self, args: &[&str]) -> Streaming {
        let mut netd = Command::new(netd_binary());
        netd.args(["-H", &self.socket]).args(args);
        streaming(netd)
    }

    /// Starts the stock docker CLI against this daemon, as [`Self::netd_streaming`] (`None`
    /// when docker is not installed).
    #[must_use]
    pub fn docker_streaming(&self, args: &[&str]) -> Option<Streaming> {
        let mut docker = Command::new(docker_binary()?);
        docker.args(args).env("DOCKER_HOST", &self.socket).env("DOCKER_CONFIG", self.dir.join("docker-config"));
        Some(streaming(docker))
    }

    /// Runs the stock docker CLI against this daemon (`None` when docker is not installed).
    pub fn docker(&self, args: &[&str]) -> Option<Run> {
        self.docker_with_input(args, None)
    }

    /// Runs the stock docker CLI against this daemon with `input` as its standard input
    /// (`None`: none), as [`Self::docker`].
    pub fn docker_with_input(&self, args: &[&str], input: Option<&[u8]>) -> Option<Run> {
        let docker = docker_binary()?;
        let mut child = Command::new(docker)
            .args(args)
            .env("DOCKER_HOST", &self.socket)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running docker");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            std::io::Write::write_all(&mut stdin, input).expect("docker's input");
        }
        Some(Run::from(&child.wait_with_output().expect("running docker")))
    }

    /// The namespace file of sandbox `name` (from the persisted state).
    #[must_use]
    pub fn sandbox_netns(&self, name: &str) -> String {
        let state = self.state_json();
        let s = state["sandboxes"]
            .as_object()
            .expect("sandboxes")
            .values()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no sandbox {name}"));
        s["netns"].as_str().expect("a private sandbox").to_owned()
    }

    /// The host veth of sandbox `name` on network `network`.
    #[must_use]
    pub fn host_veth(&self, name: &str, network: &str) -> String {
        let stats = self.stats(Some(name));
        let e = stats["Endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .find(|e| e["Network"] == network)
            .unwrap_or_else(|| panic!("{name} is not on {network}"));
        e["HostVeth"].as_str().expect("host veth").to_owned()
    }

    /// `netd stats [SANDBOX] --json`.
    #[must_use]
    pub fn stats(&self, sandbox: Option<&str>) -> serde_json::Value {
        let mut args = vec!["stats", "--json"];
        args.extend(sandbox);
        serde_json::from_str(&self.netd(&args).ok()).expect("stats JSON")
    }

    /// Packets counted for `reason`, overall or for one sandbox's endpoints.
    #[must_use]
    pub fn count(&self, sandbox: Option<&str>, reason: &str) -> u64 {
        let stats = self.stats(sandbox);
        let sum = |list: &serde_json::Value| {
            list.as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["Reason"] == reason)
                .map(|r| r["Packets"].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        match sandbox {
            None => sum(&stats["Reasons"]),
            Some(_) => stats["Endpoints"].as_array().into_iter().flatten().map(|e| sum(&e["Reasons"])).sum(),
        }
    }

    /// Transmitted packets of a link in the host namespace.
    #[must_use]
    pub fn tx_packets(&self, link: &str) -> u64 {
        let out = self.host.ip(&["-j", "-s", "link", "show", "dev", link]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets")
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }

    /// Kills the daemon with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again with the same flags and directories, expecting it to refuse:
    /// returns what it logged.
    pub fn restart_refused(&mut self) -> String {
        assert!(self.child.is_none(), "stop the daemon first");
        let before = self.log().len();
        let mut child = self.spawn_process();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("waiting") {
                assert!(!status.success(), "the daemon was expected to refuse to start");
                return self.log()[before..].to_owned();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon was expected to refuse to start, but it runs:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again with the same flags and directories.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.spawn();
    }

    fn kill_recorded_processes(&self) {
        let Ok(text) = std::fs::read_to_string(self.dir.join("state/state.json")) else {
            return;
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        let Some(sandboxes) = state["sandboxes"].as_object() else {
            return;
        };
        for s in sandboxes.values() {
            for p in s["processes"].as_array().into_iter().flatten() {
                let (Some(pid), Some(start)) = (p["pid"].as_u64(), p["start_time"].as_u64()) else {
                    continue;
                };
                if process_start_time(pid) == Some(start) {
                    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
            }
        }
        // And whatever else runs in the sandboxes' namespaces (their children, processes joined).
        let namespaces: Vec<(u64, u64)> = sandboxes
            .values()
            .filter_map(|s| netd::procfs::namespace_id(Path::new(s["netns"].as_str()?)).ok())
            .collect();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let in_one =
                netd::procfs::namespace_id(&entry.path().join("ns/net")).is_ok_and(|id| namespaces.contains(&id));
            if in_one && pid != std::process::id() {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

fn process_start_time(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Mount points under `dir` (sandbox namespaces pinned by the daemon).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(PathBuf::from)
        .collect()
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill_recorded_processes();
        self.stop();
        for m in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // Pins outlive the daemon by design (restart without loss); the test removes them.
        let _ = std::fs::remove_dir_all(&self.bpffs);
        // `host` drops next: its bridges and veths (and the sandboxes' peers) go with it.
    }
}

/// Runs `command` with its output lines (stdout and stderr) on a channel.
fn streaming(mut command: Command) -> Streaming {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the command");
    let (tx, lines) = std::sync::mpsc::channel();
    for out in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    Streaming { child, lines }
}

/// `GET path` over a connected stream; returns the status line and the body.
pub fn http_get(mut s: impl std::io::Read + std::io::Write, path: &str) -> (String, String) {
    write!(s, "GET {path} HTTP/1.1\r\nHost: netd\r\nConnection: close\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as written) in a metrics text.
#[must_use]
pub fn metric_sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

impl TestDaemon {
    /// The daemon's metrics (`GET /metrics` on its API socket).
    #[must_use]
    pub fn metrics(&self) -> String {
        let socket =
            std::os::unix::net::UnixStream::connect(self.socket().trim_start_matches("unix://")).expect("socket");
        socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let (status, text) = http_get(socket, "/metrics");
        assert!(status.contains("200"), "{status}");
        text
    }
}
