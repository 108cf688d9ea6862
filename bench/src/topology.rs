//! The topologies under test, each built in fresh namespaces (unique names, removed on drop):
//! two endpoints `a` and `b` that the workloads connect.

use std::{net::Ipv4Addr, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::workload;
use netd_tests::{
    daemon::TestDaemon,
    netns::{Link, NetNs},
};

/// Which packet path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Kind {
    /// Kernel bridge, `br_netfilter` off.
    Bridge,
    /// Docker 20.10's dataplane rebuilt by hand: bridge with `br_netfilter` on, Docker's filter
    /// chains and MASQUERADE rule (iptables-nft).
    Docker,
    /// The netd daemon with its eBPF datapath, set up through its own CLI.
    Netd,
    /// netd with `--host-fast-path=false`: the host's own traffic to containers goes through
    /// the kernel bridge (host → container workloads only: the case for `netd_to_container`).
    NetdBridgedHost,
    /// A direct veth pair between two namespaces (the limit for veth designs).
    Veth,
    /// Both ends in one namespace (the ceiling).
    Loopback,
    /// Masquerade: a container behind Docker's dataplane (iptables MASQUERADE and kernel
    /// conntrack) talking to a server in an "outside" namespace behind the host's uplink.
    DockerNat,
    /// Masquerade: the same through netd (eBPF SNAT and reverse NAT, its own conntrack).
    NetdNat,
    /// `NetdNat` with a do-nothing native XDP program on the uplink: what XDP on a veth
    /// uplink costs by itself (the case for TC there).
    NetdNatXdp,
    /// netd with `--tc-attach clsact`: the programs as clsact filters, the fallback for
    /// kernels without TCX (focused runs only, when named).
    NetdClsact,
    /// `NetdNat` with `--uplink-fast-path=false`: masqueraded packets sent out of the veth
    /// uplink rather than into its peer (focused runs only, when named).
    NetdNatViaUplink,
    /// Masquerade's limit: the container on a direct veth pair with the outside server's
    /// namespace (no host between, nothing translated): what no masquerade through veths can
    /// beat, as `Veth` is for container to container.
    VethOutside,
    /// Published ports: a client outside connecting to a port Docker's dataplane publishes
    /// (iptables DNAT in `PREROUTING`, kernel conntrack) for a container behind the host.
    DockerPublish,
    /// The same through netd (`netd run -p`: the uplink's program opens the flow).
    NetdPublish,
    /// Published ports' limit: the client outside on a direct veth pair with the container.
    VethInbound,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Bridge, Kind::Docker, Kind::Netd, Kind::NetdBridgedHost, Kind::Veth, Kind::Loopback];
    /// The masquerade comparison (container → outside server).
    pub const NAT: [Kind; 4] = [Kind::DockerNat, Kind::NetdNat, Kind::NetdNatXdp, Kind::VethOutside];
    /// The published-port comparison (outside client → container).
    pub const PUBLISH: [Kind; 3] = [Kind::DockerPublish, Kind::NetdPublish, Kind::VethInbound];
    /// Columns a focused run measures only when `--columns` names them.
    pub const ON_REQUEST: [Kind; 2] = [Kind::NetdClsact, Kind::NetdNatViaUplink];

    /// A masquerade column (container → outside server).
    pub fn is_nat(self) -> bool {
        Kind::NAT.contains(&self) || self == Kind::NetdNatViaUplink
    }

    /// A published-port column (outside client → container).
    pub fn is_publish(self) -> bool {
        Kind::PUBLISH.contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bridge => "bridge",
            Kind::Docker => "docker",
            Kind::Netd => "netd",
            Kind::NetdBridgedHost => "netd-bridged-host",
            Kind::Veth => "veth",
            Kind::Loopback => "loopback",
            Kind::DockerNat => "docker-nat",
            Kind::NetdNat => "netd-nat",
            Kind::NetdNatXdp => "netd-nat-xdp",
            Kind::NetdClsact => "netd-clsact",
            Kind::NetdNatViaUplink => "netd-nat-via-uplink",
            Kind::VethOutside => "veth-outside",
            Kind::DockerPublish => "docker-publish",
            Kind::NetdPublish => "netd-publish",
            Kind::VethInbound => "veth-inbound",
        }
    }
}

/// One end of a topology: a namespace (by its file) and an address in it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub netns: String,
    pub ip: Ipv4Addr,
    /// Where clients connect when that is not `ip`: the host's address of a published port
    /// (the server binds `ip`, the port is the same on both, see `workload::PUBLISHED_PORTS`).
    pub dial: Option<Ipv4Addr>,
}

/// A built topology. Dropping it removes everything it made.
pub struct Topology {
    pub kind: Kind,
    pub a: Endpoint,
    pub b: Endpoint,
    /// The host's own stack, on the bridge's address (bridge, docker and netd only): the
    /// client of the host → container workloads, whose server is `b`.
    pub host: Option<Endpoint>,
    // Drop order: links, daemon (its sandboxes and pins), then namespaces.
    _links: Vec<Link>,
    daemon: Option<TestDaemon>,
    _namespaces: Vec<NetNs>,
}

fn path(ns: &NetNs) -> String {
    format!("/run/netns/{}", ns.name())
}

/// Ephemeral ports of the clients (the servers listen below it).
pub const CLIENT_PORT_RANGE: &str = "20000 65000";

/// Settings of a client namespace so connection-per-request loads do not run out of ports:
/// `TIME_WAIT` reuse, and (with `wide_ports`) a wider ephemeral range. Masqueraded clients
/// keep Linux's default range, as a container has: their ports must fit the NAT range beside
/// the host's own (Docker's dataplane gets the same client).
fn client_sysctls(netns: &str, wide_ports: bool) -> Result<()> {
    let mut settings = vec!["net.ipv4.tcp_tw_reuse=1".to_owned()];
    if wide_ports {
        settings.push(format!("net.ipv4.ip_local_port_range={CLIENT_PORT_RANGE}"));
    }
    for kv in settings {
        let st = Command::new("nsenter").arg(format!("--net={netns}")).args(["sysctl", "-qw", &kv]).status()?;
        if !st.success() {
            bail!("sysctl {kv} in {netns}");
        }
    }
    Ok(())
}

impl Topology {
    pub fn build(kind: Kind) -> Result<Self> {
        let t = match kind {
            Kind::Bridge => Self::bridge(false)?,
            Kind::Docker => Self::bridge(true)?,
            Kind::Netd => Self::netd(&[])?,
            Kind::NetdBridgedHost => Self { kind, ..Self::netd(&["--host-fast-path=false"])? },
            Kind::NetdClsact => Self { kind, ..Self::netd(&["--tc-attach", "clsact"])? },
            Kind::Veth => Self::veth(),
            Kind::Loopback => Self::loopback(),
            Kind::DockerNat => Self::docker_nat()?,
            Kind::NetdNat => Self::netd_nat(false, &[])?,
            Kind::NetdNatXdp => Self::netd_nat(true, &[])?,
            Kind::NetdNatViaUplink => Self { kind, ..Self::netd_nat(false, &["--uplink-fast-path=false"])? },
            Kind::VethOutside => Self::veth_outside()?,
            Kind::DockerPublish => Self::docker_publish()?,
            Kind::NetdPublish => Self::netd_publish()?,
            Kind::VethInbound => {
                let t = Self::veth_outside()?;
                Self { kind, a: t.b.clone(), b: t.a.clone(), ..t }
            }
        };
        client_sysctls(&t.a.netns, !kind.is_nat())?;
        Ok(t)
    }

    /// The netd daemon under test (the `netd` column only).
    pub fn daemon(&self) -> Option<&TestDaemon> {
        self.daemon.as_ref()
    }

    fn bridge(docker: bool) -> Result<Self> {
        let host = NetNs::new("nb-host");
        host.sysctl("net.bridge.bridge-nf-call-iptables", if docker { "1" } else { "0" });
        host.sysctl("net.ipv4.ip_forward", "1");
        let bridge = Link::bridge(&host, "br0");
        host.ip(&["addr", "add", "10.90.0.1/24", "dev", "br0"]);
        let (c1, c2) = (NetNs::new("nb-c1"), NetNs::new("nb-c2"));
        let mut links = Vec::new();
        for (i, c) in [&c1, &c2].into_iter().enumerate() {
            let host_end = format!("veth{i}");
            links.push(Link::veth(&host, &host_end, c, "eth0"));
            host.ip(&["link", "set", &host_end, "master", "br0"]);
            c.ip(&["addr", "add", &format!("10.90.0.{}/24", i + 2), "dev", "eth0"]);
            c.ip(&["route", "add", "default", "via", "10.90.0.1"]);
        }
        links.push(bridge);
        if docker {
            docker_rules(&host).context("Docker's iptables rules")?;
        }
        Ok(Self {
            kind: if docker { Kind::Docker } else { Kind::Bridge },
            a: Endpoint { netns: path(&c1), ip: "10.90.0.2".parse()?, dial: None },
            b: Endpoint { netns: path(&c2), ip: "10.90.0.3".parse()?, dial: None },
            host: Some(Endpoint { netns: path(&host), ip: "10.90.0.1".parse()?, dial: None }),
            _links: links,
            daemon: None,
            _namespaces: vec![c1, c2, host],
        })
    }

    /// netd with two sandboxes on the default bridge (`extra` daemon flags).
    pub fn netd(extra: &[&str]) -> Result<Self> {
        let d = TestDaemon::start(extra);
        for name in ["bench-a", "bench-b"] {
            let run = d.netd(&["run", "-d", "--name", name, "--", "sleep", "86400"]);
            if run.code != 0 {
                bail!("netd run: {}", run.stderr);
            }
        }
        Ok(Self {
            kind: Kind::Netd,
            a: Endpoint { netns: d.sandbox_netns("bench-a"), ip: "172.17.0.2".parse()?, dial: None },
            b: Endpoint { netns: d.sandbox_netns("bench-b"), ip: "172.17.0.3".parse()?, dial: None },
            host: Some(Endpoint { netns: path(d.host()), ip: "172.17.0.1".parse()?, dial: None }),
            _links: Vec::new(),
            daemon: Some(d),
            _namespaces: Vec::new(),
        })
    }

    /// Docker's dataplane with one container (10.90.0.2) masqueraded through the uplink.
    fn docker_nat() -> Result<Self> {
        Self::docker_nat_with(|_| Ok(()))
    }

    /// [`Self::docker_nat`], with `extra` rules added in the host namespace.
    fn docker_nat_with(extra: fn(&NetNs) -> Result<()>) -> Result<Self> {
        let host = NetNs::new("nb-host");
        host.sysctl("net.bridge.bridge-nf-call-iptables", "1");
        host.sysctl("net.ipv4.ip_forward", "1");
        let bridge = Link::bridge(&host, "br0");
        host.ip(&["addr", "add", "10.90.0.1/24", "dev", "br0"]);
        let c1 = NetNs::new("nb-c1");
        let veth = Link::veth(&host, "veth0", &c1, "eth0");
        host.ip(&["link", "set", "veth0", "master", "br0"]);
        c1.ip(&["addr", "add", "10.90.0.2/24", "dev", "eth0"]);
        c1.ip(&["route", "add", "default", "via", "10.90.0.1"]);
        let (outside, uplink) = outside_of(&host);
        docker_rules(&host).context("Docker's iptables rules")?;
        extra(&host)?;
        Ok(Self {
            kind: Kind::DockerNat,
            a: Endpoint { netns: path(&c1), ip: "10.90.0.2".parse()?, dial: None },
            b: Endpoint { netns: path(&outside), ip: OUTSIDE_SERVER.parse()?, dial: None },
            host: None,
            _links: vec![veth, bridge, uplink],
            daemon: None,
            _namespaces: vec![c1, outside, host],
        })
    }

    /// netd with one sandbox on the default bridge, masqueraded through the uplink (with a
    /// do-nothing native XDP program on it when `xdp_pass`).
    fn netd_nat(xdp_pass: bool, flags: &[&str]) -> Result<Self> {
        let host = NetNs::new("ndt-host");
        let (outside, uplink) = outside_of(&host);
        if xdp_pass {
            crate::xdp::attach_pass(&host, "uplink0")?;
        }
        let d = TestDaemon::start_in(host, flags);
        let run = d.netd(&["run", "-d", "--name", "bench-a", "--", "sleep", "86400"]);
        if run.code != 0 {
            bail!("netd run: {}", run.stderr);
        }
        Ok(Self {
            kind: if xdp_pass { Kind::NetdNatXdp } else { Kind::NetdNat },
            a: Endpoint { netns: d.sandbox_netns("bench-a"), ip: "172.17.0.2".parse()?, dial: None },
            b: Endpoint { netns: path(&outside), ip: OUTSIDE_SERVER.parse()?, dial: None },
            host: None,
            _links: vec![uplink],
            daemon: Some(d),
            _namespaces: vec![outside],
        })
    }

    /// Docker's dataplane publishing `PUBLISHED_PORTS` (TCP and UDP) of one container
    /// (10.90.0.2) on the host: Docker's DNAT and filter rules for `-p`, one per protocol for
    /// the whole range (Docker writes one per port: fewer rules to walk here), its proxy off.
    /// The client is outside, behind the uplink.
    fn docker_publish() -> Result<Self> {
        let t = Self::docker_nat_with(publish_rules)?;
        let (container, outside) = (t.a.clone(), t.b.clone());
        Ok(Self {
            kind: Kind::DockerPublish,
            a: outside,
            b: Endpoint { dial: Some(UPLINK_ADDR.parse()?), ..container },
            ..t
        })
    }

    /// netd with one sandbox publishing `PUBLISHED_PORTS` (TCP and UDP); the client is outside,
    /// behind the uplink.
    fn netd_publish() -> Result<Self> {
        let host = NetNs::new("ndt-host");
        let (outside, uplink) = outside_of(&host);
        let d = TestDaemon::start_in(host, &[]);
        let (lo, hi) = (workload::PUBLISHED_PORTS.start, workload::PUBLISHED_PORTS.end - 1);
        let (tcp, udp) = (format!("{lo}-{hi}:{lo}-{hi}"), format!("{lo}-{hi}:{lo}-{hi}/udp"));
        let run = d.netd(&["run", "-d", "--name", "bench-a", "-p", &tcp, "-p", &udp, "--", "sleep", "86400"]);
        if run.code != 0 {
            bail!("netd run: {}", run.stderr);
        }
        Ok(Self {
            kind: Kind::NetdPublish,
            a: Endpoint { netns: path(&outside), ip: OUTSIDE_SERVER.parse()?, dial: None },
            b: Endpoint {
                netns: d.sandbox_netns("bench-a"),
                ip: "172.17.0.2".parse()?,
                dial: Some(UPLINK_ADDR.parse()?),
            },
            host: None,
            _links: vec![uplink],
            daemon: Some(d),
            _namespaces: vec![outside],
        })
    }

    fn veth() -> Self {
        let (c1, c2) = (NetNs::new("nb-v1"), NetNs::new("nb-v2"));
        let link = Link::veth(&c1, "eth0", &c2, "eth0");
        c1.ip(&["addr", "add", "10.91.0.1/24", "dev", "eth0"]);
        c2.ip(&["addr", "add", "10.91.0.2/24", "dev", "eth0"]);
        Self {
            kind: Kind::Veth,
            a: Endpoint { netns: path(&c1), ip: Ipv4Addr::new(10, 91, 0, 1), dial: None },
            b: Endpoint { netns: path(&c2), ip: Ipv4Addr::new(10, 91, 0, 2), dial: None },
            host: None,
            _links: vec![link],
            daemon: None,
            _namespaces: vec![c1, c2],
        }
    }

    /// A container namespace on a veth pair with an "outside" namespace that holds the server's
    /// address (as in the masquerade topologies).
    fn veth_outside() -> Result<Self> {
        let (c1, outside) = (NetNs::new("nb-c1"), NetNs::new("nb-out"));
        let link = Link::veth(&c1, "eth0", &outside, "eth0");
        c1.ip(&["addr", "add", "198.18.0.3/24", "dev", "eth0"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_SERVER}/24"), "dev", "eth0"]);
        outside.ip(&["link", "set", "lo", "up"]);
        Ok(Self {
            kind: Kind::VethOutside,
            a: Endpoint { netns: path(&c1), ip: "198.18.0.3".parse()?, dial: None },
            b: Endpoint { netns: path(&outside), ip: OUTSIDE_SERVER.parse()?, dial: None },
            host: None,
            _links: vec![link],
            daemon: None,
            _namespaces: vec![c1, outside],
        })
    }

    fn loopback() -> Self {
        let ns = NetNs::new("nb-lo");
        let e = Endpoint { netns: path(&ns), ip: Ipv4Addr::LOCALHOST, dial: None };
        Self {
            kind: Kind::Loopback,
            a: e.clone(),
            b: e,
            host: None,
            _links: Vec::new(),
            daemon: None,
            _namespaces: vec![ns],
        }
    }
}

/// The server's address in the "outside" namespace.
pub const OUTSIDE_SERVER: &str = "198.18.0.2";
/// The host's address on its uplink to the "outside" namespace.
pub const UPLINK_ADDR: &str = "198.18.0.1";

/// An "outside" namespace behind `host`'s uplink `uplink0` (198.18.0.1/24, the host's default
/// route); it knows no route to any container network, so only masquerade gets answers back.
fn outside_of(host: &NetNs) -> (NetNs, Link) {
    let outside = NetNs::new("nb-out");
    let uplink = Link::veth(host, "uplink0", &outside, "eth0");
    host.ip(&["addr", "add", "198.18.0.1/24", "dev", "uplink0"]);
    host.ip(&["route", "add", "default", "via", OUTSIDE_SERVER]);
    outside.ip(&["addr", "add", &format!("{OUTSIDE_SERVER}/24"), "dev", "eth0"]);
    outside.ip(&["link", "set", "lo", "up"]);
    (outside, uplink)
}

/// Docker's rules for publishing `PUBLISHED_PORTS` of 10.90.0.2 (TCP and UDP), one per
/// protocol for the range.
fn publish_rules(host: &NetNs) -> Result<()> {
    let range = format!("{}:{}", workload::PUBLISHED_PORTS.start, workload::PUBLISHED_PORTS.end - 1);
    for proto in ["tcp", "udp"] {
        let to = ["-p", proto, "-m", proto, "--dport", &range];
        let rules: [Vec<&str>; 3] = [
            [
                &["-t", "nat", "-A", "DOCKER", "!", "-i", "br0"][..],
                &to,
                &["-j", "DNAT", "--to-destination", "10.90.0.2"],
            ]
            .concat(),
            [&["-A", "DOCKER", "-d", "10.90.0.2/32", "!", "-i", "br0", "-o", "br0"][..], &to, &["-j", "ACCEPT"]]
                .concat(),
            [
                &["-t", "nat", "-A", "POSTROUTING", "-s", "10.90.0.2/32", "-d", "10.90.0.2/32"][..],
                &to,
                &["-j", "MASQUERADE"],
            ]
            .concat(),
        ];
        for rule in rules {
            let out = host.exec("iptables", &rule);
            if !out.status.success() {
                bail!("iptables {}: {}", rule.join(" "), String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    Ok(())
}

/// Docker 20.10's rules for one bridge network, as `iptables-save` shows them on a Docker host.
fn docker_rules(host: &NetNs) -> Result<()> {
    let rules: &[&[&str]] = &[
        &["-t", "nat", "-N", "DOCKER"],
        &["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "!",
            "-d",
            "127.0.0.0/8",
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "DOCKER",
        ],
        &["-t", "nat", "-A", "POSTROUTING", "-s", "10.90.0.0/24", "!", "-o", "br0", "-j", "MASQUERADE"],
        &["-t", "nat", "-A", "DOCKER", "-i", "br0", "-j", "RETURN"],
        &["-P", "FORWARD", "DROP"],
        &["-N", "DOCKER"],
        &["-N", "DOCKER-ISOLATION-STAGE-1"],
        &["-N", "DOCKER-ISOLATION-STAGE-2"],
        &["-N", "DOCKER-USER"],
        &["-A", "FORWARD", "-j", "DOCKER-USER"],
        &["-A", "FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1"],
        &["-A", "FORWARD", "-o", "br0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        &["-A", "FORWARD", "-o", "br0", "-j", "DOCKER"],
        &["-A", "FORWARD", "-i", "br0", "!", "-o", "br0", "-j", "ACCEPT"],
        &["-A", "FORWARD", "-i", "br0", "-o", "br0", "-j", "ACCEPT"],
        &["-A", "DOCKER-ISOLATION-STAGE-1", "-i", "br0", "!", "-o", "br0", "-j", "DOCKER-ISOLATION-STAGE-2"],
        &["-A", "DOCKER-ISOLATION-STAGE-1", "-j", "RETURN"],
        &["-A", "DOCKER-ISOLATION-STAGE-2", "-o", "br0", "-j", "DROP"],
        &["-A", "DOCKER-ISOLATION-STAGE-2", "-j", "RETURN"],
        &["-A", "DOCKER-USER", "-j", "RETURN"],
    ];
    for rule in rules {
        let out = host.exec("iptables", rule);
        if !out.status.success() {
            bail!("iptables {}: {}", rule.join(" "), String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}
