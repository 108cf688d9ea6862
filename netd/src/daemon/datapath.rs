//! The daemon's side of the eBPF datapath: what goes into the maps for a network or an
//! endpoint, and the order that keeps the datapath ahead of the veth (entries and program in
//! place before the link is up; removed before the link goes).

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use netd_common::{EndpointInfo, NetworkFlags, NetworkInfo, PublishedKey, PublishedPort, UplinkInfo};

use crate::{
    datapath::{Datapath, DatapathError},
    model::{options::GatewayMode, EndpointLink, Network, PortBinding},
};

use super::{
    error::{Error, Result},
    kernel, Daemon,
};

impl From<DatapathError> for Error {
    fn from(e: DatapathError) -> Self {
        Error::Datapath(Box::new(e))
    }
}

fn wire(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn network_flags(n: &Network) -> u32 {
    let mut flags = 0;
    if let Some(b) = &n.bridge {
        if b.enable_icc {
            flags |= NetworkFlags::ICC;
        }
        if b.gateway_mode_ipv4 == GatewayMode::Routed {
            flags |= NetworkFlags::ROUTED;
        } else if b.enable_ip_masquerade {
            flags |= NetworkFlags::MASQUERADE;
            if b.host_ipv4.is_some() {
                flags |= NetworkFlags::SNAT_ADDR;
            }
        }
        if b.gateway_mode_ipv4 == GatewayMode::NatUnprotected {
            flags |= NetworkFlags::UNPROTECTED;
        }
    }
    if n.internal {
        flags |= NetworkFlags::INTERNAL;
    }
    if n.isolated() {
        flags |= NetworkFlags::ISOLATED;
    }
    flags
}

/// The datapath's keys of port `p` published by endpoint `link` of `n`: the host's address and
/// port; on a routed network the container's own instead (the host part is not used, as
/// Docker's), and with `direct` (`--allow-direct-routing`) or trusted interfaces
/// (`trusted_host_interfaces`, see [`published_flags`]) the container's own too.
pub fn published_keys(n: &Network, link: &EndpointLink, p: &PortBinding, direct: bool) -> Vec<PublishedKey> {
    let key = |addr: Ipv4Addr, port: u16| PublishedKey {
        addr: wire(addr),
        port: port.to_be(),
        protocol: p.protocol.number(),
        pad: 0,
    };
    let own = key(link.ip, p.container_port);
    match (n.routed(), direct || trusts_interfaces(n)) {
        (true, _) => vec![own],
        (false, false) => vec![key(p.host_ip, p.host_port)],
        (false, true) => vec![key(p.host_ip, p.host_port), own],
    }
}

/// Whether `n` has `trusted_host_interfaces`.
fn trusts_interfaces(n: &Network) -> bool {
    n.bridge.as_ref().is_some_and(|b| !b.trusted_host_interfaces.is_empty())
}

/// The flags of the entry at `key`, one of [`published_keys`] of endpoint `link` of `n`: at
/// the container's own address on a network that is not routed, without `direct`, it is there
/// for the network's trusted interfaces only.
pub fn published_flags(n: &Network, link: &EndpointLink, key: PublishedKey, direct: bool) -> u16 {
    if key.addr == wire(link.ip) && !n.routed() && !direct {
        PublishedPort::TRUSTED_ONLY
    } else {
        0
    }
}

/// The datapath's view of an endpoint of `n` (`traced`: `netd monitor --type trace` follows it;
/// `published`: it has published ports).
pub fn endpoint_info(
    n: &Network,
    link: &EndpointLink,
    host_ifindex: u32,
    traced: bool,
    published: bool,
) -> EndpointInfo {
    let ipam = n.ipam.as_ref().expect("bridge networks have IPAM");
    EndpointInfo {
        ifindex: host_ifindex,
        ip: wire(link.ip),
        mac: link.mac,
        pad: [0; 2],
        network: n.datapath_id,
        flags: network_flags(n)
            | if traced { EndpointInfo::TRACE } else { 0 }
            | if published { EndpointInfo::PUBLISHED } else { 0 },
        subnet: wire(ipam.subnet.network()),
        mask: wire(ipam.subnet.mask()),
        gateway: wire(ipam.gateway),
        slot: link.slot,
    }
}

impl Daemon {
    pub(super) fn dp(&self) -> std::sync::MutexGuard<'_, crate::datapath::Datapath> {
        self.datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts network `n` (its bridge exists) into the datapath: its subnet, and
    /// `netd_to_container` on its bridge's egress (taken over when an earlier daemon attached
    /// it and it is still there, attached again when the bridge was made anew; removed when
    /// `--host-fast-path=false`).
    pub(super) fn datapath_set_network(&self, n: &Network) -> Result<()> {
        let (Some(ipam), Some(bridge)) = (&n.ipam, &n.bridge) else { return Ok(()) };
        let info = NetworkInfo {
            network: n.datapath_id,
            gateway: wire(ipam.gateway),
            flags: network_flags(n),
            snat_addr: bridge.host_ipv4.map_or(0, wire),
        };
        let mut dp = self.dp();
        dp.set_network(ipam.subnet.network(), ipam.subnet.prefix(), &info)?;
        self.uplink_marks_changed(&mut dp)?;
        // Its addresses are local now: flows masqueraded to them would bypass the policy.
        let gone = dp.nat_forget_remote(ipam.subnet.network(), ipam.subnet.prefix())?;
        self.report_nat_gone("nat-removed", gone);
        let name = &bridge.bridge_name;
        if self.cfg.host_fast_path {
            dp.attach_to_bridge(name)?;
        } else {
            dp.detach_from_bridge(name)?;
        }
        Ok(())
    }

    /// Takes network `n` out of the datapath (before its bridge goes).
    pub(super) fn datapath_remove_network(&self, n: &Network) -> Result<()> {
        let Some(ipam) = &n.ipam else { return Ok(()) };
        let mut dp = self.dp();
        if let Some(bridge) = &n.bridge {
            dp.detach_from_bridge(&bridge.bridge_name)?;
        }
        dp.remove_network(ipam.subnet.network(), ipam.subnet.prefix())?;
        self.uplink_marks_changed(&mut dp)
    }

    /// Makes an existing veth of sandbox `sandbox_id` an endpoint of the datapath (its program
    /// this daemon's, entries set, traced if a `netd monitor` follows the sandbox).
    pub(super) fn datapath_adopt_endpoint(
        &self,
        n: &Network,
        sandbox_id: &str,
        link: &EndpointLink,
        host_ifindex: u32,
    ) -> Result<()> {
        let ports = n.endpoints.get(sandbox_id).map(|e| e.ports.as_slice()).unwrap_or_default();
        let mut dp = self.dp();
        dp.attach_from_container(&link.host_veth)?;
        dp.set_endpoint(&endpoint_info(n, link, host_ifindex, self.traced(sandbox_id), !ports.is_empty()))?;
        let direct = self.cfg.allow_direct_routing;
        for p in ports {
            for key in published_keys(n, link, p, direct) {
                let to = PublishedPort {
                    addr: wire(link.ip),
                    port: p.container_port.to_be(),
                    flags: published_flags(n, link, key, direct),
                    ifindex: host_ifindex,
                    mac: link.mac,
                    pad2: [0; 2],
                };
                dp.set_published(&key, &to)?;
            }
        }
        if !ports.is_empty() {
            self.uplink_marks_changed(&mut dp)?;
        }
        self.endpoints_changed();
        Ok(())
    }

    /// Marks the uplinks when some port is published (`UplinkInfo::PUBLISHED`), when some
    /// network masquerades with an address of its own (`UplinkInfo::SNAT_ADDRS`) and when some
    /// network's containers are reached at their own addresses (`UplinkInfo::DIRECT`), unmarks
    /// them when none does, now rather than at the next uplink sync.
    pub(super) fn uplink_marks_changed(&self, dp: &mut Datapath) -> Result<()> {
        const MARKS: u32 = UplinkInfo::PUBLISHED | UplinkInfo::SNAT_ADDRS | UplinkInfo::DIRECT;
        let networks = dp.networks()?;
        // Reached at their containers' own addresses: replies of routed flows, or anything
        // on a `nat-unprotected` network.
        let direct = networks.iter().any(|n| {
            n.flags & NetworkFlags::INTERNAL == 0
                && (n.flags & NetworkFlags::MASQUERADE == 0 || n.flags & NetworkFlags::UNPROTECTED != 0)
        });
        let own_addrs = networks.iter().any(|n| n.flags & NetworkFlags::SNAT_ADDR != 0);
        let marks = if dp.any_published()? { UplinkInfo::PUBLISHED } else { 0 }
            | if own_addrs { UplinkInfo::SNAT_ADDRS } else { 0 }
            | if direct { UplinkInfo::DIRECT } else { 0 };
        self.uplink_marks.store(marks, std::sync::atomic::Ordering::Relaxed);
        for (ifindex, addr, flags) in dp.uplinks()? {
            let want = (flags & !MARKS) | marks;
            if want != flags {
                dp.set_uplink(ifindex, addr, want)?;
            }
        }
        Ok(())
    }

    /// Forgets published ports the state does not have (a crash between the two).
    pub(super) fn datapath_forget_stale_published(&self, known: &BTreeSet<PublishedKey>) -> Result<()> {
        let mut dp = self.dp();
        for (key, _) in dp.published()? {
            if !known.contains(&key) {
                dp.remove_published(&key)?;
            }
        }
        self.uplink_marks_changed(&mut dp)
    }

    /// Creates an endpoint: veth pair, datapath entries and program, then the links up.
    pub(super) async fn setup_endpoint(
        &self,
        n: &Network,
        netns: &Path,
        sandbox_id: &str,
        endpoint_id: &str,
        link: &EndpointLink,
    ) -> Result<()> {
        let bridge = n.bridge.as_ref().expect("bridge network");
        let host = kernel::create_endpoint_veth(&self.nl, netns, endpoint_id, link, bridge).await?;
        self.dp().reset_endpoint_counters(link.slot)?;
        self.datapath_adopt_endpoint(n, sandbox_id, link, host)?;
        let gateway = (!n.internal).then(|| n.ipam.as_ref().map(|i| i.gateway)).flatten();
        kernel::bring_up_endpoint(&self.nl, netns, host, link, gateway).await
    }

    /// Removes an endpoint: datapath entries and link first, then the veth pair.
    pub(super) async fn teardown_endpoint(
        &self,
        n: &Network,
        link: &EndpointLink,
        ports: &[PortBinding],
    ) -> Result<()> {
        let ifindex = self.nl.link(&link.host_veth).await?.map(|l| l.index);
        let gone = {
            let mut dp = self.dp();
            for p in ports {
                for key in published_keys(n, link, p, self.cfg.allow_direct_routing) {
                    dp.remove_published(&key)?;
                }
            }
            if !ports.is_empty() {
                self.uplink_marks_changed(&mut dp)?;
            }
            dp.remove_endpoint(link.ip, ifindex.unwrap_or(0))?;
            let gone = dp.nat_forget_inside(link.ip)?;
            dp.reset_endpoint_counters(link.slot)?;
            dp.detach_from_container(&link.host_veth)?;
            gone
        };
        self.report_nat_gone("nat-removed", gone);
        self.endpoints_changed();
        kernel::delete_endpoint_veth(&self.nl, link).await
    }

    /// Drops datapath entries and pinned links of veths the state does not know.
    pub(super) fn datapath_forget_unknown(&self, known_links: &BTreeSet<String>) -> Result<()> {
        let mut dp = self.dp();
        for name in dp.pinned_links() {
            if !known_links.contains(&name) {
                eprintln!("netd: reconcile: unpinning the link of vanished {name}");
                dp.detach_from_container(&name)?;
            }
        }
        for name in dp.pinned_bridges() {
            if !known_links.contains(&name) {
                eprintln!("netd: reconcile: unpinning the link of vanished bridge {name}");
                dp.detach_from_bridge(&name)?;
            }
        }
        Ok(())
    }

    /// Drops endpoint entries whose ifindex is not one of `live` (host veths of the state).
    pub(super) fn datapath_forget_stale_endpoints(&self, live: &BTreeSet<u32>) -> Result<()> {
        let mut dp = self.dp();
        for ep in dp.endpoints()? {
            if !live.contains(&ep.ifindex) {
                dp.remove_endpoint(Ipv4Addr::from(ep.ip.to_ne_bytes()), ep.ifindex)?;
            }
        }
        Ok(())
    }
}
