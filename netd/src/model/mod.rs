//! The daemon's internal state: networks, endpoints, sandboxes. Persisted as one JSON document
//! (see `store`). The Docker JSON the API shows is built from this in `api::types`, never stored.

pub mod ids;
pub mod options;
pub mod ports;

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::ipam::Ipam;
pub use options::BridgeOptions;
pub use ports::{PortBinding, PortSpec, Protocol};

/// Version of the persisted layout.
pub const STATE_VERSION: u32 = 1;

/// Everything the daemon knows. Kernel objects are derived from it on start (reconcile).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// This daemon's identity, as Docker's engine ID (`docker info`'s `ID`): a UUID made at
    /// the first start (or the first of a release that keeps it), kept for good.
    #[serde(default)]
    pub engine_id: String,
    /// By network id.
    pub networks: BTreeMap<String, Network>,
    /// By sandbox id.
    pub sandboxes: BTreeMap<String, Sandbox>,
}

/// Where an object is in its life. Anything not `Ready` after a crash is rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifecycle {
    Creating,
    Ready,
}

/// A network driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Driver {
    Bridge,
    Host,
    Null,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Host => "host",
            Driver::Null => "null",
        }
    }
}

/// A network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: Driver,
    /// RFC 3339 creation time.
    pub created: String,
    /// `bridge`, `host` and `none`: cannot be created or removed.
    pub predefined: bool,
    pub internal: bool,
    pub attachable: bool,
    /// Bridge networks only.
    pub ipam: Option<Ipam>,
    /// Bridge networks only.
    pub bridge: Option<BridgeOptions>,
    /// Driver options exactly as given (shown by inspect).
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// By sandbox id.
    pub endpoints: BTreeMap<String, Endpoint>,
    pub lifecycle: Lifecycle,
    /// The network's number in the datapath maps (unique per daemon, never 0).
    #[serde(default)]
    pub datapath_id: u32,
}

impl Network {
    /// `gateway_mode_ipv4=routed`: not masqueraded, its containers' published ports reached at
    /// their own addresses (no host port).
    #[must_use]
    pub fn routed(&self) -> bool {
        self.bridge.as_ref().is_some_and(|b| b.gateway_mode_ipv4 == options::GatewayMode::Routed)
    }

    /// `gateway_mode_ipv4=isolated` (internal networks): its bridge has no address.
    #[must_use]
    pub fn isolated(&self) -> bool {
        self.bridge.as_ref().is_some_and(|b| b.gateway_mode_ipv4 == options::GatewayMode::Isolated)
    }
}

/// A sandbox's attachment to a network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub sandbox_id: String,
    /// Bridge networks only.
    pub link: Option<EndpointLink>,
    pub lifecycle: Lifecycle,
    /// Published ports (`netd run -p`), on the network the sandbox was created on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
    /// More names the sandbox is found by on this network's DNS (`--network-alias`,
    /// `network connect --alias`), as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The veth pair and address of an endpoint on a bridge network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointLink {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// The host end, enslaved to the bridge (`veth<7 hex>`).
    pub host_veth: String,
    /// The sandbox end (`eth0`, `eth1`, …).
    pub ifname: String,
    /// Given with `--ip` (released like any other).
    pub static_ip: bool,
    /// Index of the endpoint's counters in the datapath (unique among endpoints, never 0).
    #[serde(default)]
    pub slot: u32,
}

/// How a sandbox is networked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxMode {
    /// Its own namespace (bridge networks and `none`).
    Private,
    /// The daemon's namespace (`--network host`).
    Host,
}

/// A container without an image: a named network namespace and the processes run in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub created: String,
    pub mode: SandboxMode,
    /// The pinned namespace (private mode only).
    pub netns: Option<PathBuf>,
    /// Processes started in it by `netd run -d`.
    pub processes: Vec<ProcessRef>,
    /// Remove the sandbox when its processes have exited (`--rm` with `-d`).
    pub auto_remove: bool,
    /// The command it was started with, for `netd ps`.
    pub command: Vec<String>,
    pub lifecycle: Lifecycle,
    /// The `resolv.conf` its processes see (bridge networks; none for sandboxes of older
    /// releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
    /// Served by the embedded DNS server (`127.0.0.11`): created on a user-defined network.
    #[serde(default)]
    pub embedded_dns: bool,
    /// The `/etc/hosts` its processes see (private sandboxes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<PathBuf>,
    /// Its host name (`--hostname`, else the short id as Docker's; empty: the host's, for
    /// sandboxes of older releases and `--network host`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// More lines of its `/etc/hosts` (`--add-host NAME:IP`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    /// Its own DNS settings (`netd run --dns …`), over the daemon's.
    #[serde(default, skip_serializing_if = "DnsSettings::is_empty")]
    pub dns: DnsSettings,
    /// How its last run ended, when netd knows: the command's exit code (128 + the signal that
    /// ended it), and when (RFC 3339). Cleared when a process is started in it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    /// When its last run started (RFC 3339; none before the first, or from older releases:
    /// its creation then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Where its detached commands' output goes, as Docker's `json-file` log (none for
    /// sandboxes of older releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// The environment (`K=V`) and directory its command runs with when netd starts it
    /// (`docker start`, `restart`): `netd run`'s own, with its `-e`, `--env-file` and `-w`. The state file is the daemon's alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<PathBuf>,
    /// The user its command runs as (`netd run -u`, Docker's `Config.User`): a name or
    /// `uid[:gid]`, looked up when the command starts; empty for root.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
}

/// How a sandbox's command ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    pub at: String,
}

/// DNS servers, search domains and resolver options, as `resolv.conf` lines (dockerd's and
/// `docker run`'s `--dns`, `--dns-search`, `--dns-opt`); each replaces the line it names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl DnsSettings {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }

    /// Search domains and options are single words of a `resolv.conf` line.
    pub fn check(&self) -> Result<(), String> {
        for d in &self.search {
            if d.is_empty() || d.len() > 253 || !d.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c)) {
                return Err(format!("{d:?} is not a valid domain"));
            }
        }
        for o in &self.options {
            if o.is_empty() || o.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
                return Err(format!("invalid DNS option {o:?}"));
            }
        }
        Ok(())
    }
}

/// A process, identified by pid and start time so a recycled pid is never mistaken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat` (clock ticks since boot).
    pub start_time: u64,
}

impl ProcessRef {
    /// The process `pid` as it is now, if it exists.
    pub fn of(pid: u32) -> Option<Self> {
        start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// Whether this very process is still running (not a zombie, not a recycled pid).
    pub fn is_running(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return false;
        };
        let state = after_comm.split(' ').next();
        state != Some("Z") && start_time(self.pid) == Some(self.start_time)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(22 - 3)?.parse().ok()
}

impl State {
    /// The lowest datapath counter slot no endpoint has (slot 0 is never used).
    pub fn next_endpoint_slot(&self) -> u32 {
        let used: std::collections::BTreeSet<u32> = self
            .networks
            .values()
            .flat_map(|n| n.endpoints.values())
            .filter_map(|e| e.link.as_ref().map(|l| l.slot))
            .collect();
        // One more candidate than there are slots in use: one of them is free.
        (1..=u32::try_from(used.len()).expect("fewer endpoints than u32 values") + 1)
            .find(|s| !used.contains(s))
            .expect("pigeonhole")
    }

    /// A datapath id no network has.
    pub fn next_datapath_id(&self) -> u32 {
        self.networks.values().map(|n| n.datapath_id).max().unwrap_or(0) + 1
    }

    /// Finds a network by full id, exact name, then unique id prefix, like Docker.
    pub fn find_network(&self, key: &str) -> Result<&Network, Lookup> {
        find(&self.networks, key, |n| &n.name)
    }

    /// Finds a sandbox by full id, exact name (with or without Docker's leading `/`), then
    /// unique id prefix.
    pub fn find_sandbox(&self, key: &str) -> Result<&Sandbox, Lookup> {
        find(&self.sandboxes, key.strip_prefix('/').unwrap_or(key), |s| &s.name)
    }

    /// Every published port, with its network and sandbox ids.
    pub fn published(&self) -> impl Iterator<Item = (&Network, &str, &PortBinding)> {
        self.networks
            .values()
            .flat_map(|n| n.endpoints.iter().flat_map(move |(s, e)| e.ports.iter().map(move |p| (n, s.as_str(), p))))
    }

    /// The networks a sandbox is attached to, in name order.
    pub fn networks_of(&self, sandbox_id: &str) -> Vec<&Network> {
        let mut v: Vec<&Network> = self.networks.values().filter(|n| n.endpoints.contains_key(sandbox_id)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// Docker's lookup order over objects keyed by id: full id, exact name, unique id prefix.
fn find<'a, T>(by_id: &'a BTreeMap<String, T>, key: &str, name: impl Fn(&T) -> &String) -> Result<&'a T, Lookup> {
    if let Some(v) = by_id.get(key) {
        return Ok(v);
    }
    if let Some(v) = by_id.values().find(|v| name(v) == key) {
        return Ok(v);
    }
    let mut matches = by_id.iter().filter(|(id, _)| !key.is_empty() && id.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some((_, v)), None) => Ok(v),
        (Some(_), Some(_)) => Err(Lookup::Ambiguous),
        _ => Err(Lookup::NotFound),
    }
}

/// Why a lookup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    NotFound,
    Ambiguous,
}
