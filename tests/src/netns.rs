//! Network-namespace guards.
//!
//! [`NetNs`] creates a named namespace (`ip netns add`, so it is visible to `ip netns exec` and to
//! the daemon under test) with a unique name — prefix, pid, counter — and deletes it on drop,
//! which also destroys every link inside it. [`Link`] deletes one link on drop, for links that
//! must go before their namespace does. [`Child`] kills a process started in a namespace.
//! Code can run inside a namespace on a dedicated thread ([`NetNs::run`]): `setns` is per thread,
//! so the caller's thread never changes namespace.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name: `prefix` + pid + a per-process counter.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

/// Runs `program args…` and panics with its output unless it succeeds.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `prefix<pid>-<n>` with `lo` up.
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args…`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// The ifindex of link `name` inside the namespace (panics if there is none).
    #[must_use]
    pub fn ifindex(&self, name: &str) -> u32 {
        let out = self.ip(&["-o", "link", "show", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("ifindex of {name}: {text}"))
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    #[must_use]
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawning {program} in {}: {e}", self.name))
    }

    /// Runs a command inside the namespace and panics with its output unless it succeeds.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "in {}: {program} {} failed ({}):\n{}{}",
            self.name,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A `Command` that runs `program args…` inside the namespace (`ip netns exec`).
    #[must_use]
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Starts a long-running process inside the namespace; it is killed when the guard drops.
    #[must_use]
    pub fn spawn(&self, program: &str, args: &[&str]) -> Child {
        let child = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program} in {}: {e}", self.name));
        Child { child: Some(child) }
    }

    /// Sets a sysctl inside the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result. The
    /// calling thread never changes namespace.
    pub fn run<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter_this_thread();
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Starts `f` on a new thread inside this namespace.
    pub fn spawn_thread<F, R>(&self, f: F) -> std::thread::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    fn enter_this_thread(&self) {
        enter(&self.path());
    }
}

/// Starts `f` on a new thread inside the namespace pinned at `path` (e.g. a netd sandbox).
pub fn spawn_in_path<F, R>(path: &str, f: F) -> std::thread::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let path = path.to_owned();
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
}

#[expect(unsafe_code, reason = "setns(2) has no safe wrapper in std")]
fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    // SAFETY: a valid namespace fd, owned by `file` for the duration of the call; setns only
    // changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys every link in it (and their veth peers elsewhere).
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        if let Ok(out) = out {
            if !out.status.success() {
                eprintln!("warning: ip netns del {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}

/// A link inside a namespace, deleted on drop ("already gone" is fine: deleting one end of a veth
/// pair deletes both, and deleting a namespace deletes its links).
#[derive(Debug)]
pub struct Link {
    netns: String,
    name: String,
}

impl Link {
    /// Creates a veth pair: `a` in `ns_a`, `b` in `ns_b`, both up. The guard owns the pair.
    #[must_use]
    pub fn veth(ns_a: &NetNs, a: &str, ns_b: &NetNs, b: &str) -> Self {
        Self::veth_with(ns_a, a, &[], ns_b, b)
    }

    /// [`Link::veth`] with `a`'s `ip link add` options `options` (e.g. `master br0`: a port
    /// from the start, never seen on its own).
    #[must_use]
    pub fn veth_with(ns_a: &NetNs, a: &str, options: &[&str], ns_b: &NetNs, b: &str) -> Self {
        let mut args = vec!["-n", ns_a.name(), "link", "add", a];
        args.extend_from_slice(options);
        args.extend_from_slice(&["type", "veth", "peer", "name", b, "netns", ns_b.name()]);
        run_ok("ip", &args);
        let guard = Self { netns: ns_a.name().to_owned(), name: a.to_owned() };
        ns_a.ip(&["link", "set", a, "up"]);
        ns_b.ip(&["link", "set", b, "up"]);
        guard
    }

    /// Creates a bridge in `ns`, up.
    #[must_use]
    pub fn bridge(ns: &NetNs, name: &str) -> Self {
        ns.ip(&["link", "add", name, "type", "bridge"]);
        let guard = Self { netns: ns.name().to_owned(), name: name.to_owned() };
        ns.ip(&["link", "set", name, "up"]);
        guard
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["-n", &self.netns, "link", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A process started inside a namespace, killed (by its own pid) and reaped on drop.
#[derive(Debug)]
pub struct Child {
    child: Option<std::process::Child>,
}

impl Child {
    /// Waits for the process to exit and returns its output.
    #[must_use]
    pub fn wait(mut self) -> Output {
        self.child.take().expect("not yet waited").wait_with_output().expect("wait")
    }

    /// The pid of the process (`ip netns exec` execs the program, so it is the program's pid).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A new "host" namespace with uplink `uplink0` (`host_addr`/24, its default route via
/// `outside_addr`) to an "outside" namespace's `eth0` (`outside_addr`/24, `lo` up), which
/// knows no route beyond: the world of the masquerade and DNS tests. Returns (host, outside,
/// the uplink's guard).
#[must_use]
pub fn uplinked(host_addr: &str, outside_addr: &str) -> (NetNs, NetNs, Link) {
    let host = NetNs::new("ndt-host");
    let outside = NetNs::new("ndt-out");
    let uplink = Link::veth(&host, "uplink0", &outside, "eth0");
    host.ip(&["addr", "add", &format!("{host_addr}/24"), "dev", "uplink0"]);
    host.ip(&["route", "add", "default", "via", outside_addr]);
    outside.ip(&["addr", "add", &format!("{outside_addr}/24"), "dev", "eth0"]);
    outside.ip(&["link", "set", "lo", "up"]);
    (host, outside, uplink)
}
