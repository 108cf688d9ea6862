//! Network operations: create, remove, prune, and the predefined networks.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnetwork::Ipv4Network;

use crate::{
    ipam::{pools, Ipam},
    model::{ids, BridgeOptions, Driver, Lifecycle, Lookup, Network, State},
};

use super::{
    error::{Error, Result},
    kernel, Daemon,
};

/// A network as requested (Docker's create body, already decoded).
#[derive(Clone, Debug, Default)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's create request")]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    /// An IPv6-only network (Docker 28's `--ipv4=false`), which netd refuses.
    pub ipv6_only: bool,
    pub enable_ipv6: bool,
    pub ipam_driver: String,
    /// At most one entry is supported (IPv4).
    pub ipam_config: Vec<IpamRequest>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// One IPAM config entry as requested.
#[derive(Clone, Debug, Default)]
pub struct IpamRequest {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux: BTreeMap<String, String>,
}

pub fn not_found(key: &str) -> Error {
    Error::NotFound(format!("network {key} not found"))
}

pub fn lookup_error(key: &str, e: Lookup) -> Error {
    match e {
        Lookup::NotFound => not_found(key),
        Lookup::Ambiguous => Error::NotFound(format!("network {key} is ambiguous (more than one network matches)")),
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidParameter(msg.into())
}

fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| invalid(format!("invalid IPv4 address: {s}")))
}

fn parse_subnet(s: &str) -> Result<Ipv4Network> {
    let net: Ipv4Network = s.parse().map_err(|_| invalid(format!("invalid CIDR address: {s}")))?;
    if net.ip() != net.network() {
        return Err(invalid(format!("invalid subnet {s}: it should be {}/{}", net.network(), net.prefix())));
    }
    Ok(net)
}

impl Daemon {
    /// The predefined networks as configured: `bridge` (unless `--bridge none`), `host`, `none`.
    pub(super) fn predefined_networks(&self) -> Vec<Network> {
        let mut out = Vec::new();
        let base = |name: &str, driver| Network {
            id: ids::new_id(),
            name: name.to_owned(),
            driver,
            created: ids::now_rfc3339(),
            predefined: true,
            internal: false,
            attachable: false,
            ipam: None,
            bridge: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            lifecycle: Lifecycle::Ready,
            datapath_id: 0,
        };
        if self.cfg.bridge != "none" {
            let mut n = base("bridge", Driver::Bridge);
            let o = self.default_bridge_options();
            n.options = default_bridge_option_map(&o);
            n.bridge = Some(o);
            n.ipam = Some(Ipam {
                subnet: Ipv4Network::new(self.cfg.bip.network(), self.cfg.bip.prefix()).expect("valid"),
                gateway: self.cfg.bip.ip(),
                ip_range: None,
                aux: BTreeMap::new(),
                user_subnet: false,
                allocated: std::collections::BTreeSet::default(),
            });
            out.push(n);
        }
        out.push(base("host", Driver::Host));
        out.push(base("none", Driver::Null));
        out
    }

    pub(super) fn default_bridge_options(&self) -> BridgeOptions {
        BridgeOptions {
            bridge_name: self.cfg.bridge.clone(),
            default_bridge: true,
            enable_icc: self.cfg.icc,
            enable_ip_masquerade: self.cfg.ip_masq,
            host_binding_ipv4: self.cfg.ip,
            host_ipv4: None,
            gateway_mode_ipv4: crate::model::options::GatewayMode::Nat,
            trusted_host_interfaces: Vec::new(),
            mtu: self.cfg.mtu,
        }
    }

    /// Creates a network; returns its id. Nothing is left behind on failure.
    pub async fn create_network(&self, req: CreateNetwork) -> Result<String> {
        let mut state = self.state.lock().await;
        let network = self.plan_network(&state, req).await?;
        let id = network.id.clone();
        let (bridge, ipam) = (network.bridge.clone(), network.ipam.clone());
        state.networks.insert(id.clone(), network);
        self.persist(&state)?;

        if let (Some(b), Some(_)) = (&bridge, &ipam) {
            let network = &state.networks[&id];
            let result = match kernel::setup_bridge(&self.nl, network).await {
                Ok(()) => self.datapath_set_network(network),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let _ = self.datapath_remove_network(&state.networks[&id]);
                let _ = kernel::teardown_bridge(&self.nl, b).await;
                state.networks.remove(&id);
                self.persist(&state)?;
                return Err(e);
            }
        }
        state.networks.get_mut(&id).expect("just inserted").lifecycle = Lifecycle::Ready;
        self.persist(&state)?;
        if bridge.is_some_and(|b| !b.trusted_host_interfaces.is_empty()) {
            // At once, not at the next pass over the uplinks.
            self.sync_trusted(&state).await?;
        }
        self.network_event("create", &state.networks[&id], None);
        Ok(id)
    }

    /// Validates a request against the state and returns the network to create (Creating).
    async fn plan_network(&self, state: &State, req: CreateNetwork) -> Result<Network> {
        if req.name.is_empty() {
            return Err(invalid("network name must not be empty"));
        }
        if state.networks.values().any(|n| n.name == req.name) {
            return Err(Error::Conflict(format!("network with name {} already exists", req.name)));
        }
        let driver = match req.driver.as_str() {
            "" | "bridge" => Driver::Bridge,
            d @ ("host" | "null") => {
                return Err(Error::Forbidden(format!("only one instance of \"{d}\" network is allowed")));
            }
            d => return Err(Error::NotFound(format!("plugin \"{d}\" not found"))),
        };
        debug_assert_eq!(driver, Driver::Bridge);
        if !matches!(req.ipam_driver.as_str(), "" | "default") {
            return Err(Error::NotFound(format!("plugin \"{}\" not found", req.ipam_driver)));
        }
        if req.enable_ipv6 {
            return Err(invalid("IPv6 networks are not supported by netd"));
        }
        if req.ipv6_only {
            return Err(invalid("IPv6-only networks are not supported by netd: its networks are IPv4"));
        }
        if req.ipam_config.len() > 1 {
            return Err(invalid("netd supports one IPv4 subnet per network"));
        }
        let id = ids::new_id();
        let ipam = self.plan_ipam(state, req.ipam_config.first()).await?;
        let default_name = format!("br-{}", &id[..12]);
        // The daemon's `--default-network-opt`s, unless the request gives them.
        let mut options = req.options;
        for (key, value) in &self.cfg.default_network_opt {
            options.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let bridge = BridgeOptions::parse(&options, default_name, self.cfg.mtu).map_err(invalid)?;
        if bridge.gateway_mode_ipv4 == crate::model::options::GatewayMode::Isolated && !req.internal {
            return Err(invalid(
                "com.docker.network.bridge.gateway_mode_ipv4=isolated is for internal networks only (--internal)",
            ));
        }
        if let Some(other) =
            state.networks.values().find(|n| n.bridge.as_ref().is_some_and(|b| b.bridge_name == bridge.bridge_name))
        {
            return Err(Error::Forbidden(format!(
                "cannot create network {id} ({}): conflicts with network {} ({}): networks have same bridge name",
                bridge.bridge_name, other.id, bridge.bridge_name
            )));
        }
        if self.nl.link(&bridge.bridge_name).await?.is_some() {
            return Err(Error::Forbidden(format!(
                "cannot create network {id} ({0}): interface {0} already exists",
                bridge.bridge_name
            )));
        }
        Ok(Network {
            id,
            name: req.name,
            driver,
            created: ids::now_rfc3339(),
            predefined: false,
            internal: req.internal,
            attachable: req.attachable,
            ipam: Some(ipam),
            bridge: Some(bridge),
            options,
            labels: req.labels,
            endpoints: BTreeMap::new(),
            lifecycle: Lifecycle::Creating,
            datapath_id: state.next_datapath_id(),
        })
    }

    async fn plan_ipam(&self, state: &State, req: Option<&IpamRequest>) -> Result<Ipam> {
        let used: Vec<Ipv4Network> =
            state.networks.values().filter_map(|n| n.ipam.as_ref().map(|i| i.subnet)).collect();
        let empty = IpamRequest::default();
        let req = req.unwrap_or(&empty);
        let (subnet, user_subnet) = if let Some(s) = &req.subnet {
            let subnet = parse_subnet(s)?;
            if used.iter().any(|u| pools::overlaps(*u, subnet)) {
                return Err(Error::Forbidden("Pool overlaps with other one on this address space".into()));
            }
            (subnet, true)
        } else {
            if req.gateway.is_some() || req.ip_range.is_some() {
                return Err(invalid("every ip-range or gateway must have a corresponding subnet"));
            }
            let mut avoid = used;
            avoid.extend(self.nl.link_scope_routes().await?);
            let subnet = pools::first_free(&self.pools, &avoid).ok_or_else(|| {
                Error::Forbidden(
                    "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
                        .into(),
                )
            })?;
            (subnet, false)
        };
        let gateway = match &req.gateway {
            Some(g) => {
                let gw = parse_ip(g)?;
                if !subnet.contains(gw) {
                    return Err(invalid(format!("no matching subnet for gateway {g}")));
                }
                if gw == subnet.network() || (subnet.prefix() < 31 && gw == subnet.broadcast()) {
                    return Err(invalid(format!(
                        "invalid gateway {g}: it is the network or broadcast address of {subnet}"
                    )));
                }
                gw
            }
            None => first_host(subnet)?,
        };
        let ip_range = match &req.ip_range {
            Some(r) => {
                let range = parse_subnet(r)?;
                if !(subnet.contains(range.network()) && subnet.contains(range.broadcast())) {
                    return Err(invalid(format!("no matching subnet for range {r}")));
                }
                Some(range)
            }
            None => None,
        };
        let mut aux = BTreeMap::new();
        for (name, addr) in &req.aux {
            let ip = parse_ip(addr)?;
            if !subnet.contains(ip) {
                return Err(invalid(format!("no matching subnet for aux-address {addr}")));
            }
            aux.insert(name.clone(), ip);
        }
        Ok(Ipam { subnet, gateway, ip_range, aux, user_subnet, allocated: std::collections::BTreeSet::default() })
    }

    /// Removes a network that has no endpoints.
    pub async fn remove_network(&self, key: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let n = state.find_network(key).map_err(|e| lookup_error(key, e))?.clone();
        if n.predefined {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        if !n.endpoints.is_empty() {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.datapath_remove_network(&n)?;
        if let Some(b) = &n.bridge {
            kernel::teardown_bridge(&self.nl, b).await?;
        }
        state.networks.remove(&n.id);
        self.persist(&state)?;
        if n.bridge.as_ref().is_some_and(|b| !b.trusted_host_interfaces.is_empty()) {
            // Before another network can take its datapath id.
            self.sync_trusted(&state).await?;
        }
        self.network_event("destroy", &n, None);
        Ok(())
    }

    /// Removes every user-defined network without endpoints whose labels match; returns names.
    pub async fn prune_networks(&self, labels: &[(String, Option<String>)]) -> Result<Vec<String>> {
        let candidates: Vec<String> = {
            let state = self.state.lock().await;
            state
                .networks
                .values()
                .filter(|n| !n.predefined && n.endpoints.is_empty())
                .filter(|n| {
                    labels.iter().all(|(k, v)| match v {
                        Some(v) => n.labels.get(k) == Some(v),
                        None => n.labels.contains_key(k),
                    })
                })
                .map(|n| n.id.clone())
                .collect()
        };
        let mut deleted = Vec::new();
        for id in candidates {
            let name = self.state.lock().await.networks.get(&id).map(|n| n.name.clone());
            if let (Some(name), Ok(())) = (name, self.remove_network(&id).await) {
                deleted.push(name);
            }
        }
        deleted.sort();
        Ok(deleted)
    }
}

fn first_host(subnet: Ipv4Network) -> Result<Ipv4Addr> {
    if subnet.prefix() >= 31 {
        return Err(invalid(format!("subnet {subnet} is too small for a gateway and endpoints")));
    }
    Ok(Ipv4Addr::from(u32::from(subnet.network()) + 1))
}

/// The six Options Docker shows on the default bridge network.
pub fn default_bridge_option_map(o: &BridgeOptions) -> BTreeMap<String, String> {
    use crate::model::options::OptionKey as K;
    [
        (K::DefaultBridge, "true".to_owned()),
        (K::EnableIcc, o.enable_icc.to_string()),
        (K::EnableIpMasquerade, o.enable_ip_masquerade.to_string()),
        (K::HostBindingIpv4, o.host_binding_ipv4.to_string()),
        (K::BridgeName, o.bridge_name.clone()),
        (K::Mtu, o.mtu.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.as_str().to_owned(), v))
    .collect()
}
