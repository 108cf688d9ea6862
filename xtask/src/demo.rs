//! `cargo xtask demo`: the Docker networking walk-through, replayed against netd in a throw-away
//! sandbox — a "host" namespace running the daemon and an "outside" namespace behind an uplink
//! veth — printing every command and its output, then tearing everything down.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::step::{self, say, workspace_root};

/// Everything the demo creates; removed on drop, also after an error or a panic.
struct Sandbox {
    host: String,
    outside: String,
    dir: PathBuf,
    daemon: Option<Child>,
    netd: PathBuf,
    /// The daemon's pinned maps and links (they outlive the daemon by design).
    bpffs: PathBuf,
}

impl Sandbox {
    fn socket(&self) -> String {
        format!("unix://{}/run/netd.sock", self.dir.display())
    }

    fn netd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.netd);
        c.args(["-H", &self.socket()]).args(args);
        c
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            // Sandboxes first (kills their processes by recorded pid), then the daemon.
            if let Ok(out) = self.netd(&["ps", "-q"]).output() {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = self.netd(&["rm", "-f", id]).output();
                }
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = Command::new("kill").args(["-TERM", &d.id().to_string()]).status();
            let _ = d.wait();
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        for m in mounts.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)) {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        for ns in [&self.host, &self.outside] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    step::run(Command::new("ip").args(args))
}

/// Prints `$ shown` and the output of `cmd`, in order; a failing command is shown, not fatal.
fn show(shown: &str, cmd: &mut Command) -> Result<()> {
    println!("\n$ {shown}");
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {shown}"))?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        println!("(exit status {})", out.status.code().unwrap_or(-1));
    }
    Ok(())
}

pub fn run() -> Result<()> {
    let pid = std::process::id();
    let netd = workspace_root()?.join("target/debug/netd");
    let mut sb = Sandbox {
        host: format!("netd-demo-host-{pid}"),
        outside: format!("netd-demo-outside-{pid}"),
        dir: PathBuf::from(format!("/tmp/netd-demo-{pid}")),
        daemon: None,
        netd,
        bpffs: PathBuf::from(format!("/sys/fs/bpf/netd-demo-{pid}")),
    };
    say(&format!("creating namespaces {} and {}", sb.host, sb.outside));
    ip(&["netns", "add", &sb.host])?;
    ip(&["netns", "add", &sb.outside])?;
    for ns in [&sb.host, &sb.outside] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    ip(&["-n", &sb.host, "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", &sb.outside])?;
    ip(&["-n", &sb.host, "addr", "add", "10.255.0.1/24", "dev", "uplink0"])?;
    ip(&["-n", &sb.outside, "addr", "add", "10.255.0.2/24", "dev", "eth0"])?;
    ip(&["-n", &sb.host, "link", "set", "uplink0", "up"])?;
    ip(&["-n", &sb.outside, "link", "set", "eth0", "up"])?;
    ip(&["-n", &sb.host, "route", "add", "default", "via", "10.255.0.2"])?;

    std::fs::create_dir_all(&sb.dir)?;
    let log = std::fs::File::create(sb.dir.join("daemon.log"))?;
    say("starting netd in the host namespace");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", sb.host))
        .arg(&sb.netd)
        .args(["daemon", "--state-dir"])
        .arg(sb.dir.join("state"))
        .arg("--exec-root")
        .arg(sb.dir.join("run"))
        .args(["--bpffs", &sb.bpffs.display().to_string(), "-H", &sb.socket()])
        // DNS questions the containers' resolvers cannot answer stay in the outside namespace.
        .args(["--dns", "10.255.0.2"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting netd")?;
    sb.daemon = Some(child);
    wait_for_daemon(&sb, &sb.dir.join("daemon.log"))?;
    walk_through(&sb)?;
    say("tearing down");
    drop(sb);
    say("done: no namespace, link, mount or process left");
    Ok(())
}

/// One step of the walk-through: a `netd` command, or `ip` in the host namespace.
enum Step {
    Netd(&'static [&'static str]),
    HostIp(&'static [&'static str], &'static str),
    /// A command in the outside namespace (a client out there).
    Outside(&'static [&'static str], &'static str),
    /// A `netd` command run while `netd monitor` (with these arguments) watches, then what the
    /// monitor saw.
    Monitored(&'static [&'static str], &'static [&'static str], &'static str),
}

/// The walk-through (Docker's networking chapter, with netd): every step is printed with its
/// output; a failing step is shown, not fatal (one of them fails on purpose).
const WALK_THROUGH: &[Step] = &[
    Step::Netd(&["network", "ls"]),
    Step::Netd(&["run", "--rm", "--network", "none", "--", "ip", "a"]),
    Step::Netd(&["run", "--rm", "--network", "host", "--", "ip", "a"]),
    Step::Netd(&["run", "-d", "--name", "d0busy1", "--", "sleep", "600"]),
    Step::Netd(&["run", "-d", "--name", "d0busy2", "--", "sleep", "600"]),
    Step::Netd(&["ps"]),
    Step::Netd(&["exec", "d0busy1", "--", "ip", "a"]),
    Step::Netd(&["exec", "d0busy2", "--", "ip", "link", "show", "eth0"]),
    Step::Netd(&["exec", "d0busy1", "--", "ping", "-c", "2", "-W", "2", "172.17.0.3"]),
    Step::Monitored(
        &["--type", "trace", "--sandbox", "d0busy1"],
        &["exec", "d0busy1", "--", "ping", "-c", "1", "-W", "1", "172.17.0.3"],
        "every packet of d0busy1: straight into the peer's namespace, no bridge",
    ),
    Step::HostIp(&["-br", "link", "show", "master", "docker0"], "bridge membership"),
    Step::Netd(&["network", "inspect", "bridge"]),
    Step::Netd(&["network", "create", "--driver", "bridge", "my_net"]),
    Step::Netd(&["network", "inspect", "my_net"]),
    Step::Netd(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        "172.22.16.0/24",
        "--gateway",
        "172.22.16.1",
        "my_net2",
    ]),
    Step::Netd(&["network", "inspect", "my_net2"]),
    Step::HostIp(&["-br", "addr", "show", "type", "bridge"], "the gateways live on the bridges"),
    Step::Netd(&["run", "--rm", "--network", "my_net2", "--", "ip", "a"]),
    Step::Netd(&[
        "run",
        "-d",
        "--name",
        "static88",
        "--network",
        "my_net2",
        "--ip",
        "172.22.16.88",
        "--",
        "sleep",
        "600",
    ]),
    Step::Netd(&["exec", "static88", "--", "ip", "a"]),
    Step::Netd(&["run", "--network", "my_net", "--ip", "172.22.16.88", "--", "true"]),
    // User-defined networks resolve their containers' names (the embedded DNS server).
    Step::Netd(&["run", "--rm", "--network", "my_net2", "--", "cat", "/etc/resolv.conf"]),
    Step::Monitored(
        &["--type", "dns"],
        &["run", "--rm", "--network", "my_net2", "--", "getent", "hosts", "static88"],
        "each question and its answer, as Hubble shows DNS",
    ),
    Step::HostIp(&["-o", "link", "show", "type", "veth"], "host ends and their bridges"),
    Step::Monitored(
        &[],
        &["exec", "static88", "--", "ping", "-c", "1", "-W", "1", "172.17.0.2"],
        "networks are isolated: each drop, as it happens",
    ),
    // The outside world, masqueraded through the uplink by eBPF (no iptables).
    Step::Monitored(
        &[],
        &["exec", "d0busy1", "--", "ping", "-c", "2", "-W", "2", "10.255.0.2"],
        "masquerade's new flows, as conntrack -E shows Docker's",
    ),
    // A published port (`-p`, as `docker run -p`): reached from outside, in eBPF.
    Step::Netd(&["run", "-d", "--name", "web", "-p", "8080:5201", "--", "iperf3", "-s"]),
    Step::Netd(&["port", "web"]),
    Step::Netd(&["ps"]),
    Step::Outside(
        &["iperf3", "-c", "10.255.0.1", "-p", "8080", "-t", "1"],
        "from outside to the uplink's address: straight to the container",
    ),
    Step::Netd(&["nat", "ls"]),
    Step::Netd(&["nat", "stats"]),
    Step::Netd(&["stats"]),
];

fn walk_through(sb: &Sandbox) -> Result<()> {
    for step in WALK_THROUGH {
        match step {
            Step::Netd(args) => show(&format!("netd {}", args.join(" ")), &mut sb.netd(args))?,
            Step::HostIp(args, why) => {
                let mut c = Command::new("ip");
                c.args(["-n", &sb.host]).args(*args);
                show(&format!("ip {}    # {why}", args.join(" ")), &mut c)?;
            }
            Step::Outside(args, why) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{}", sb.outside)).args(*args);
                show(&format!("(outside) {}    # {why}", args.join(" ")), &mut c)?;
            }
            Step::Monitored(monitor, args, why) => monitored(sb, monitor, args, why)?,
        }
    }
    Ok(())
}

fn monitored(sb: &Sandbox, monitor_args: &[&str], args: &[&str], why: &str) -> Result<()> {
    let command: Vec<&str> = std::iter::once("monitor").chain(monitor_args.iter().copied()).collect();
    println!("\n$ netd {} &    # {why}", command.join(" "));
    let mut monitor = sb
        .netd(&command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting netd monitor")?;
    // Subscribed once it says it listens.
    let mut started = String::new();
    let stderr = monitor.stderr.take().context("monitor's stderr")?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut started)?;
    print!("{started}");
    show(&format!("netd {}", args.join(" ")), &mut sb.netd(args))?;
    std::thread::sleep(Duration::from_millis(300));
    // Stopped by its pid, as Ctrl-C would.
    let _ = monitor.kill();
    let out = monitor.wait_with_output()?;
    println!("\n$ # what netd monitor printed meanwhile");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

fn wait_for_daemon(sb: &Sandbox, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if sb.netd(&["version"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("netd did not start:\n{}", std::fs::read_to_string(log).unwrap_or_default())
}
