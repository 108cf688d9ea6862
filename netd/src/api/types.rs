//! The external contract: Docker Engine API v1.41 JSON for networks, and netd's own sandbox
//! JSON. Field names follow Docker exactly; these types are built from the internal model and
//! never stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ids, Network, Sandbox, State};

#[derive(Debug, Serialize, Deserialize)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's JSON contract")]
pub struct NetworkResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    /// Always: netd's networks are IPv4 (Docker 28 lists it as `IPv4`).
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: IpamResource,
    #[serde(rename = "Internal")]
    pub internal: bool,
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    #[serde(rename = "ConfigFrom")]
    pub config_from: ConfigReference,
    #[serde(rename = "ConfigOnly")]
    pub config_only: bool,
    #[serde(rename = "Containers")]
    pub containers: BTreeMap<String, EndpointResource>,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigReference {
    #[serde(rename = "Network")]
    pub network: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IpamResource {
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "Config")]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct IpamConfig {
    #[serde(rename = "Subnet", default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(rename = "Gateway", default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(rename = "AuxiliaryAddresses", default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

impl NetworkResource {
    /// Docker's view of a network; `containers` fills `Containers` (inspect does, list does not).
    pub fn from_model(n: &Network, state: &State, containers: bool) -> Self {
        let ipam = IpamResource {
            driver: "default".into(),
            options: if n.predefined { None } else { Some(BTreeMap::new()) },
            config: n
                .ipam
                .iter()
                .map(|i| IpamConfig {
                    subnet: Some(i.subnet.to_string()),
                    ip_range: i.ip_range.map(|r| r.to_string()),
                    gateway: Some(i.gateway.to_string()),
                    aux: (!i.aux.is_empty()).then(|| i.aux.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()),
                })
                .collect(),
        };
        let containers = if containers {
            n.endpoints
                .values()
                .filter_map(|e| {
                    let s = state.sandboxes.get(&e.sandbox_id)?;
                    let (mac, ip) = match &e.link {
                        Some(l) => (ids::format_mac(l.mac), format!("{}/{}", l.ip, l.prefix)),
                        None => (String::new(), String::new()),
                    };
                    Some((
                        s.id.clone(),
                        EndpointResource {
                            name: s.name.clone(),
                            endpoint_id: e.id.clone(),
                            mac_address: mac,
                            ipv4_address: ip,
                            ipv6_address: String::new(),
                        },
                    ))
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Self {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: "local".into(),
            driver: n.driver.name().into(),
            enable_ipv4: true,
            enable_ipv6: false,
            ipam,
            internal: n.internal,
            attachable: n.attachable,
            ingress: false,
            config_from: ConfigReference::default(),
            config_only: false,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
        }
    }
}

/// `POST /networks/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's JSON contract")]
pub struct NetworkCreateRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CheckDuplicate")]
    pub check_duplicate: bool,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Internal")]
    pub internal: bool,
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    #[serde(rename = "ConfigOnly")]
    pub config_only: bool,
    /// Docker 28's `--ipv4=false` (an IPv6-only network): refused. Absent: IPv4.
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Option<IpamRequest>,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "Labels")]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamRequest {
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Config")]
    pub config: Option<Vec<IpamConfig>>,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NetworkCreateResponse {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Warning")]
    pub warning: String,
}

/// `POST /networks/{id}/connect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetworkConnectRequest {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "EndpointConfig")]
    pub endpoint_config: Option<EndpointSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// Names on the network's DNS besides the container's (`--alias`).
    #[serde(rename = "Aliases")]
    pub aliases: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `POST /networks/{id}/disconnect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NetworkDisconnectRequest {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "Force")]
    pub force: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NetworksPruneResponse {
    #[serde(rename = "NetworksDeleted")]
    pub networks_deleted: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

/// `POST /netd/v1/sandboxes` body (netd's own API).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxCreateRequest {
    #[serde(rename = "Name")]
    pub name: Option<String>,
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
    #[serde(rename = "MacAddress")]
    pub mac_address: Option<String>,
    #[serde(rename = "AutoRemove")]
    pub auto_remove: bool,
    #[serde(rename = "Command")]
    pub command: Vec<String>,
    /// Ports to publish, in Docker's `-p` syntax (`8080:80`, `127.0.0.1::53/udp`, …).
    #[serde(rename = "Ports")]
    pub ports: Vec<String>,
    /// Names on the network's DNS besides the sandbox's (`--network-alias`).
    #[serde(rename = "Aliases")]
    pub aliases: Vec<String>,
    /// Its host name (default: the short id, as Docker's).
    #[serde(rename = "Hostname")]
    pub hostname: Option<String>,
    /// More lines of its `/etc/hosts`, as Docker's `HostConfig.ExtraHosts` (`NAME:IP`).
    #[serde(rename = "ExtraHosts")]
    pub extra_hosts: Vec<String>,
    /// Its own DNS servers, search domains and options (Docker's `HostConfig.Dns`,
    /// `DnsSearch`, `DnsOptions`).
    #[serde(rename = "Dns")]
    pub dns: Vec<String>,
    #[serde(rename = "DnsSearch")]
    pub dns_search: Vec<String>,
    #[serde(rename = "DnsOptions")]
    pub dns_options: Vec<String>,
    /// The environment and directory its command runs with (`netd run`'s own, with its `-e`,
    /// `--env-file` and `-w`), kept for `docker start` and `restart`.
    #[serde(rename = "Env", default)]
    pub env: Vec<String>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: String,
    /// The user its command runs as (`-u`: a name or `uid[:gid]`; empty: root).
    #[serde(rename = "User", default)]
    pub user: String,
}

/// `POST /netd/v1/sandboxes/{id}/processes` body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProcessRequest {
    #[serde(rename = "Pid")]
    pub pid: u32,
}

/// One line of a sandbox's log, as Docker's `json-file` driver writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The line, with its `\n` (not the last, cut or unfinished).
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When it was read (RFC 3339 with nanoseconds).
    pub time: String,
}

/// `POST /netd/v1/sandboxes/{id}/exit`: how its command ended (`netd run`'s report).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ExitRequest {
    #[serde(rename = "ExitCode")]
    pub code: i32,
}

/// A sandbox as netd's API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SandboxResource {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "NetnsPath")]
    pub netns_path: String,
    #[serde(rename = "Running")]
    pub running: bool,
    #[serde(rename = "Pids")]
    pub pids: Vec<u32>,
    /// How its last run ended, when known (not while it runs).
    #[serde(rename = "ExitCode", default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(rename = "FinishedAt", default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When its last run started (its creation before the first).
    #[serde(rename = "StartedAt", default)]
    pub started_at: String,
    /// Its detached commands' output (Docker's `json-file` log; empty: none kept).
    #[serde(rename = "LogPath", default)]
    pub log_path: String,
    #[serde(rename = "Command")]
    pub command: Vec<String>,
    #[serde(rename = "AutoRemove")]
    pub auto_remove: bool,
    #[serde(rename = "Networks")]
    pub networks: BTreeMap<String, SandboxNetwork>,
    /// Published ports as Docker's `NetworkSettings.Ports`: `"80/tcp": [{"HostIp": "0.0.0.0",
    /// "HostPort": "8080"}]`.
    #[serde(rename = "Ports", default)]
    pub ports: BTreeMap<String, Vec<HostBinding>>,
    /// The file its processes see as `/etc/resolv.conf` (Docker's `ResolvConfPath`; empty
    /// when they see the host's).
    #[serde(rename = "ResolvConfPath", default)]
    pub resolv_conf_path: String,
    /// The file its processes see as `/etc/hosts` (Docker's `HostsPath`; empty when they see
    /// the host's).
    #[serde(rename = "HostsPath", default)]
    pub hosts_path: String,
    /// Its host name (empty: the host's).
    #[serde(rename = "Hostname", default)]
    pub hostname: String,
}

/// Where a container port is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBinding {
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    #[serde(rename = "HostPort")]
    pub host_port: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SandboxNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface")]
    pub interface: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "Aliases", default)]
    pub aliases: Vec<String>,
}

impl SandboxResource {
    pub fn from_model(s: &Sandbox, state: &State, netns_path: String) -> Self {
        let running: Vec<u32> = s.processes.iter().filter(|p| p.is_running()).map(|p| p.pid).collect();
        let networks = state
            .networks_of(&s.id)
            .into_iter()
            .map(|n| {
                let e = &n.endpoints[&s.id];
                let l = e.link.as_ref();
                (
                    n.name.clone(),
                    SandboxNetwork {
                        network_id: n.id.clone(),
                        endpoint_id: e.id.clone(),
                        interface: l.map(|l| l.ifname.clone()).unwrap_or_default(),
                        ip_address: l.map(|l| l.ip.to_string()).unwrap_or_default(),
                        ip_prefix_len: l.map_or(0, |l| l.prefix),
                        gateway: match (l, &n.ipam) {
                            (Some(_), Some(i)) if !n.internal => i.gateway.to_string(),
                            _ => String::new(),
                        },
                        mac_address: l.map(|l| ids::format_mac(l.mac)).unwrap_or_default(),
                        aliases: e.aliases.clone(),
                    },
                )
            })
            .collect();
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            created: s.created.clone(),
            netns_path,
            exit_code: s.exit.as_ref().filter(|_| running.is_empty()).map(|e| e.code),
            finished_at: s.exit.as_ref().filter(|_| running.is_empty()).map(|e| e.at.clone()),
            started_at: s.started_at.clone().unwrap_or_else(|| s.created.clone()),
            log_path: s.log.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            running: !running.is_empty(),
            pids: running,
            command: s.command.clone(),
            auto_remove: s.auto_remove,
            networks,
            ports: ports_of(state, &s.id),
            resolv_conf_path: s.resolv_conf.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            hosts_path: s.hosts.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            hostname: s.hostname.clone(),
        }
    }
}

/// The published ports of sandbox `id`, as Docker's `NetworkSettings.Ports`.
fn ports_of(state: &State, id: &str) -> BTreeMap<String, Vec<HostBinding>> {
    let mut out: BTreeMap<String, Vec<HostBinding>> = BTreeMap::new();
    for (_, _, p) in state.published().filter(|(_, s, _)| *s == id) {
        out.entry(format!("{}/{}", p.container_port, p.protocol.name()))
            .or_default()
            .push(HostBinding { host_ip: p.host_ip.to_string(), host_port: p.host_port.to_string() });
    }
    out
}
