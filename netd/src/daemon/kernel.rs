//! The kernel side of networks and endpoints: bridges, veth pairs, addresses, routes. Every
//! function is idempotent; teardown treats "already gone" as success.

use std::{net::Ipv4Addr, path::Path};

use crate::{
    model::{ids, BridgeOptions, EndpointLink, Network},
    netlink::{CreateVeth, Netlink},
};

use super::error::Result;

/// Alias marking links netd created, so orphans can be found after a crash.
pub const ALIAS_PREFIX: &str = "netd:";

pub fn bridge_alias(network_id: &str) -> String {
    format!("{ALIAS_PREFIX}net:{network_id}")
}

pub fn endpoint_alias(endpoint_id: &str) -> String {
    format!("{ALIAS_PREFIX}ep:{endpoint_id}")
}

/// Creates (or completes) a network's bridge: device, gateway address (none when the network
/// is isolated), up.
pub async fn setup_bridge(nl: &Netlink, network: &Network) -> Result<()> {
    let (Some(o), Some(ipam)) = (&network.bridge, &network.ipam) else {
        return Ok(());
    };
    let index = match nl.link(&o.bridge_name).await? {
        Some(l) => l.index,
        None => nl.create_bridge(&o.bridge_name, ids::random_mac(), o.mtu, &bridge_alias(&network.id)).await?,
    };
    if !network.isolated() {
        nl.add_address(index, ipam.gateway, ipam.subnet.prefix()).await?;
    }
    nl.set_up(index).await?;
    Ok(())
}

/// Deletes a network's bridge.
pub async fn teardown_bridge(nl: &Netlink, o: &BridgeOptions) -> Result<()> {
    Ok(nl.delete_link(&o.bridge_name).await?)
}

/// Creates an endpoint's veth pair (both ends down) with the host end on the bridge and the
/// peer in the sandbox; returns the host end's index.
pub async fn create_endpoint_veth(
    nl: &Netlink,
    netns: &Path,
    endpoint_id: &str,
    link: &EndpointLink,
    bridge: &BridgeOptions,
) -> Result<u32> {
    let master = nl.index(&bridge.bridge_name).await?;
    Ok(nl
        .create_veth(&CreateVeth {
            host_name: &link.host_veth,
            host_alias: &endpoint_alias(endpoint_id),
            master,
            peer_name: &link.ifname,
            peer_mac: link.mac,
            peer_netns: netns,
            mtu: bridge.mtu,
        })
        .await?)
}

/// Brings an endpoint up: the host end, then the sandbox end with its address and, when
/// `gateway` is given and the sandbox has no default route yet, the default route.
pub async fn bring_up_endpoint(
    nl: &Netlink,
    netns: &Path,
    host_index: u32,
    link: &EndpointLink,
    gateway: Option<Ipv4Addr>,
) -> Result<()> {
    nl.set_up(host_index).await?;
    let inside = Netlink::in_netns(netns)?;
    let index = inside.index(&link.ifname).await?;
    inside.add_address(index, link.ip, link.prefix).await?;
    inside.set_up(index).await?;
    if let Some(gw) = gateway {
        if inside.default_route_interfaces().await?.is_empty() {
            inside.add_default_route(gw).await?;
        }
    }
    Ok(())
}

/// Deletes an endpoint's veth pair (deleting the host end deletes both).
pub async fn delete_endpoint_veth(nl: &Netlink, link: &EndpointLink) -> Result<()> {
    Ok(nl.delete_link(&link.host_veth).await?)
}

/// Prepares a new sandbox: IPv6 off (netd's networks are IPv4; without it every endpoint's
/// router solicitations and MLD reports are flooded by the bridge to every other endpoint), and
/// `lo` up.
pub async fn setup_sandbox(netns: &Path) -> Result<()> {
    for key in ["ipv6/conf/all/disable_ipv6", "ipv6/conf/default/disable_ipv6"] {
        crate::netns::write_net_sysctl(netns, key, "1")
            .map_err(super::error::Error::io(format!("setting net.{key} in {}", netns.display())))?;
    }
    let inside = Netlink::in_netns(netns)?;
    let lo = inside.index("lo").await?;
    inside.set_up(lo).await?;
    Ok(())
}

/// Adds a default route via `gateway` inside the sandbox if it has none.
pub async fn ensure_default_route(netns: &Path, gateway: Ipv4Addr) -> Result<()> {
    let inside = Netlink::in_netns(netns)?;
    if inside.default_route_interfaces().await?.is_empty() {
        inside.add_default_route(gateway).await?;
    }
    Ok(())
}
