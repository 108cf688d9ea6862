//! `netd daemon` flags, named after dockerd's.

use std::path::PathBuf;

use clap::ArgAction;
use ipnetwork::Ipv4Network;

use crate::ipam::pools::AddressPool;

#[derive(clap::Args, Clone, Debug)]
#[expect(clippy::struct_excessive_bools, reason = "dockerd-style on/off flags, one field each")]
pub struct Config {
    /// Device of the default `bridge` network ("none": no default bridge network).
    #[arg(long, default_value = "docker0")]
    pub bridge: String,
    /// Address and prefix of the default bridge (its gateway and subnet).
    #[arg(long, default_value = "172.17.0.1/16")]
    pub bip: Ipv4Network,
    /// Allow traffic between containers of the default bridge.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub icc: bool,
    /// Masquerade traffic from the default bridge to the outside.
    #[arg(long = "ip-masq", default_value_t = true, action = ArgAction::Set)]
    pub ip_masq: bool,
    /// Host address the default bridge's published ports bind to when `-p` names none, as
    /// dockerd's `--ip` (its `com.docker.network.bridge.host_binding_ipv4`): e.g. 127.0.0.1 to
    /// publish to the host alone.
    #[arg(long = "ip", value_name = "IP", default_value = "0.0.0.0", value_parser = parse_binding_ip)]
    pub ip: std::net::Ipv4Addr,
    /// MTU of the default bridge and default for new networks.
    #[arg(long, default_value_t = 1500, value_parser = parse_mtu)]
    pub mtu: u32,
    /// Pool for networks created without --subnet: base=CIDR,size=N (repeatable; replaces
    /// Docker's defaults).
    #[arg(long = "default-address-pool")]
    pub default_address_pools: Vec<AddressPool>,
    /// Where networks, endpoints and sandboxes are persisted.
    #[arg(long, default_value = "/var/lib/netd")]
    pub state_dir: PathBuf,
    /// Runtime files: sandbox namespaces (netns/), their `resolv.conf` (containers/), the
    /// default socket.
    #[arg(long, default_value = "/run/netd")]
    pub exec_root: PathBuf,
    /// bpffs directory for the datapath's pinned maps and links.
    #[arg(long, default_value = "/sys/fs/bpf/netd")]
    pub bpffs: PathBuf,
    /// API socket.
    #[arg(short = 'H', long = "host", default_value = "unix:///run/netd/netd.sock")]
    pub host: String,
    /// Uplink interface for traffic to the outside (repeatable; default: every Ethernet or
    /// tunnel interface with an IPv4 address but the networks' bridges, as Docker masquerades
    /// to any). The other interfaces are guarded: containers are not reached through them.
    #[arg(long)]
    pub uplink: Vec<String>,
    /// Ports (and ICMP identifiers) masquerade hands out, LO-HI; must not overlap
    /// `net.ipv4.ip_local_port_range` (default: the larger range beside it in 1024-65535).
    #[arg(long)]
    pub nat_port_range: Option<super::nat::PortRange>,
    /// Masqueraded flows the translation table holds; new flows beyond are dropped (counted)
    /// until old ones expire.
    #[arg(long, default_value_t = netd_common::NAT_DEFAULT_FLOWS, value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub nat_max_flows: u32,
    /// How long a masqueraded flow lives after its last packet (repeatable): KIND=DURATION,
    /// KIND one of tcp-syn (60s), tcp-established (6h), tcp-fin (120s), tcp-rst (10s), udp
    /// (30s), udp-stream (120s), icmp (30s), as conntrack's `nf_conntrack_*_timeout` sysctls;
    /// DURATION in s, m, h or d, e.g. `tcp-established=5d` (conntrack's default).
    #[arg(long = "nat-timeout", value_name = "KIND=DURATION")]
    pub nat_timeout: Vec<super::nat::NatTimeout>,
    /// Deliver the host's own traffic for containers straight to their veths (eBPF on each
    /// bridge's egress); false leaves it to the kernel bridge, e.g. to watch it with tcpdump
    /// on the bridge.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub host_fast_path: bool,
    /// Deliver masqueraded traffic through a veth uplink (netd in a namespace: a container, a
    /// Kind node) straight into the uplink's peer, as container traffic is; false sends it out
    /// of the uplink, e.g. to watch it with tcpdump there or shape it with an egress qdisc.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub uplink_fast_path: bool,
    /// Let the outside reach published ports at the containers' own addresses too (with a
    /// route to their network), on every network, as Docker's `--allow-direct-routing`;
    /// without it only `routed` networks allow that.
    #[arg(long)]
    pub allow_direct_routing: bool,
    /// How programs are attached: `tcx` links (Linux 6.6 on), `clsact` filters over netlink
    /// (older kernels), or `auto`, TCX where the kernel has it.
    #[arg(long, default_value = "auto")]
    pub tc_attach: crate::datapath::TcAttach,
    /// Also serve the Prometheus metrics (`/metrics`, nothing else) on this TCP address, as
    /// dockerd's `--metrics-addr` (e.g. 127.0.0.1:9323). They are always on the API socket.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// DNS server for containers (repeatable; replaces the host's `resolv.conf` servers): in the
    /// `resolv.conf` of default-bridge containers, asked by the embedded resolver of
    /// user-defined networks for names that are not containers'.
    #[arg(long)]
    pub dns: Vec<std::net::IpAddr>,
    /// DNS search domain for containers (repeatable; replaces the host's `search` line).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS resolver option for containers (repeatable; replaces the host's `options` line).
    #[arg(long = "dns-opt", value_name = "OPTION")]
    pub dns_opt: Vec<String>,
    /// A driver option new networks get unless they give it (repeatable), as dockerd's:
    /// `bridge=KEY=VALUE`, e.g. `bridge=com.docker.network.driver.mtu=1450`.
    #[arg(long = "default-network-opt", value_name = "DRIVER=OPT=VALUE", value_parser = parse_default_network_opt)]
    pub default_network_opt: Vec<(String, String)>,
}

/// An address a published port can bind to: unspecified (every address) or unicast.
fn parse_binding_ip(s: &str) -> Result<std::net::Ipv4Addr, String> {
    let ip: std::net::Ipv4Addr = s.parse().map_err(|_| format!("invalid IPv4 address {s:?}"))?;
    if ip.is_multicast() || ip.is_broadcast() {
        return Err(format!("{ip} is not an address to bind published ports to"));
    }
    Ok(ip)
}

fn parse_mtu(s: &str) -> Result<u32, String> {
    crate::model::options::parse_mtu(s)
}

/// `bridge=KEY=VALUE`: the bridge driver's option, checked as a network's would be. A bridge
/// name cannot be a default (every network needs its own).
fn parse_default_network_opt(s: &str) -> Result<(String, String), String> {
    let Some((driver, option)) = s.split_once('=') else {
        return Err(format!("{s:?} is not DRIVER=OPT=VALUE"));
    };
    if driver != "bridge" {
        return Err(format!("driver {driver:?} takes no options: only bridge networks do"));
    }
    let Some((key, value)) = option.split_once('=') else {
        return Err(format!("{s:?} is not DRIVER=OPT=VALUE"));
    };
    if key == crate::model::options::OptionKey::BridgeName.as_str() {
        return Err(format!("{key} cannot be a default: every network needs a bridge of its own"));
    }
    let one = std::collections::BTreeMap::from([(key.to_owned(), value.to_owned())]);
    crate::model::options::BridgeOptions::parse(&one, "br-default".into(), 1500)?;
    Ok((key.to_owned(), value.to_owned()))
}

impl Config {
    /// The socket path of `-H unix://PATH`.
    pub fn socket_path(&self) -> Result<PathBuf, String> {
        socket_path(&self.host)
    }

    /// `--dns`, `--dns-search`, `--dns-opt`.
    pub fn dns_settings(&self) -> crate::model::DnsSettings {
        crate::model::DnsSettings {
            servers: self.dns.clone(),
            search: self.dns_search.clone(),
            options: self.dns_opt.clone(),
        }
    }

    pub fn netns_dir(&self) -> PathBuf {
        self.exec_root.join("netns")
    }

    /// A sandbox's own files (its `resolv.conf`), as Docker's `containers/<id>/`.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.exec_root.join("containers").join(id)
    }
}

/// The path of a `unix://PATH` address.
pub fn socket_path(host: &str) -> Result<PathBuf, String> {
    host.strip_prefix("unix://")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("unsupported host {host:?}: only unix://PATH is supported"))
}
