//! Netlink behind typed verbs. Nothing outside this module builds netlink messages.
//!
//! A [`Netlink`] talks to one network namespace: the one its socket was created in. Use
//! [`Netlink::current`] for the daemon's own namespace and [`Netlink::in_netns`] for a sandbox.

use std::{net::Ipv4Addr, os::fd::AsRawFd, path::Path};

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use netlink_packet_route::{
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope},
};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::netns;

/// Errors of the netlink layer, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("entering namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("link {0} not found")]
    NoSuchLink(String),
}

type Result<T> = std::result::Result<T, NetlinkError>;

fn req(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

/// Whether an rtnetlink error is "no such device/entry" (for idempotent deletes).
fn is_not_found(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV || m.raw_code() == -libc::ENOENT)
}

/// A link as listed.
#[derive(Clone, Debug)]
pub struct LinkSummary {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    /// A veth (one end of a pair).
    pub veth: bool,
    /// A veth whose peer is in another namespace (the link names the peer's namespace).
    pub peer_elsewhere: bool,
    /// What its frames start with.
    pub link_layer: LinkLayer,
    /// The device it is enslaved to (a bridge port, a bond's slave): `IFLA_MASTER`.
    pub controller: Option<u32>,
    /// The device it sits on in this namespace (a VLAN's, a macvlan's parent): `IFLA_LINK`,
    /// but for a veth, where that names the peer.
    pub lower: Option<u32>,
}

/// What a device's frames start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayer {
    /// An Ethernet header (`ARPHRD_ETHER`: physical NICs, veths, bridges, dummies).
    Ethernet,
    /// Nothing: packets start at the IP header. `tun` devices (`tailscale0`, `OpenVPN`'s
    /// `tun0`), `WireGuard`, IP tunnels (IPIP, SIT, GRE and their IPv6 kinds), PPP, raw-IP
    /// modems.
    None,
    /// Anything else (loopback, `InfiniBand`, CAN...).
    Other,
}

/// What a veth pair looks like when created (see [`Netlink::create_veth`]).
pub struct CreateVeth<'a> {
    /// Name of the end that stays in this namespace.
    pub host_name: &'a str,
    /// Alias of the host end (netd marks its links to find orphans after a crash).
    pub host_alias: &'a str,
    /// Bridge the host end is enslaved to.
    pub master: u32,
    /// Name of the end moved into `peer_netns`.
    pub peer_name: &'a str,
    pub peer_mac: [u8; 6],
    /// The sandbox's namespace file (a bind mount of `/proc/…/ns/net`).
    pub peer_netns: &'a Path,
    pub mtu: u32,
}

/// A netlink connection bound to one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the calling thread's namespace (the daemon's). Needs a tokio runtime.
    pub fn current() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// A connection inside the namespace at `path`. The socket is created on a short-lived
    /// thread that enters the namespace, so no runtime thread ever changes namespace.
    pub fn in_netns(path: &Path) -> Result<Self> {
        let runtime = tokio::runtime::Handle::current();
        let path_buf = path.to_path_buf();
        let (conn, handle) = std::thread::scope(|s| {
            s.spawn(|| {
                netns::enter_this_thread(&path_buf)
                    .map_err(|source| NetlinkError::Netns { path: path_buf.display().to_string(), source })?;
                let _rt = runtime.enter();
                let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
                Ok::<_, NetlinkError>((conn, handle))
            })
            .join()
            .expect("netns thread panicked")
        })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkSummary>> {
        let msgs: Vec<LinkMessage> =
            self.handle.link().get().execute().try_collect().await.map_err(req("listing links"))?;
        Ok(msgs.iter().map(summarize).collect())
    }

    /// The link named `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<LinkSummary>> {
        let mut stream = self.handle.link().get().match_name(name.to_owned()).execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(Some(summarize(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(req(format!("looking up link {name}"))(e)),
        }
    }

    /// The index of the link named `name`, or an error if it does not exist.
    pub async fn index(&self, name: &str) -> Result<u32> {
        self.link(name).await?.map(|l| l.index).ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    /// Creates a bridge with the given MAC, MTU and alias, and returns its index. Not up yet.
    pub async fn create_bridge(&self, name: &str, mac: [u8; 6], mtu: u32, alias: &str) -> Result<u32> {
        let msg = LinkBridge::new(name).address(mac.to_vec()).mtu(mtu).alias(alias).build();
        self.handle.link().add(msg).execute().await.map_err(req(format!("creating bridge {name}")))?;
        self.index(name).await
    }

    /// Creates a veth pair, enslaves the host end to `master` and moves the peer into the
    /// sandbox namespace with its MAC and MTU. Returns the host end's index. Both ends are down.
    pub async fn create_veth(&self, v: &CreateVeth<'_>) -> Result<u32> {
        let netns = std::fs::File::open(v.peer_netns)
            .map_err(|source| NetlinkError::Netns { path: v.peer_netns.display().to_string(), source })?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(v.peer_name.to_owned())
            .address(v.peer_mac.to_vec())
            .mtu(v.mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(v.host_name, v.peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(v.mtu)
            .alias(v.host_alias)
            .controller(v.master)
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(req(format!("creating veth pair {}/{}", v.host_name, v.peer_name)))?;
        drop(netns);
        self.index(v.host_name).await
    }

    /// Brings a link up.
    pub async fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(msg).execute().await.map_err(req(format!("setting link {index} up")))
    }

    /// Deletes the link named `name`; a link that is already gone is success.
    pub async fn delete_link(&self, name: &str) -> Result<()> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.index).execute().await {
            Err(e) if !is_not_found(&e) => Err(req(format!("deleting link {name}"))(e)),
            _ => Ok(()),
        }
    }

    /// Adds `addr/prefix` to a link; an address already there is success.
    pub async fn add_address(&self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        match self.handle.address().add(index, addr.into(), prefix).execute().await {
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => Ok(()),
            r => r.map_err(req(format!("adding {addr}/{prefix} to link {index}"))),
        }
    }

    /// The IPv4 addresses of link `index` with their prefix lengths, primary first (the order
    /// the kernel lists them).
    pub async fn ipv4_addresses(&self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags};
        let msgs: Vec<netlink_packet_route::address::AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(req(format!("listing addresses of link {index}")))?;
        let mut out = Vec::new();
        for m in msgs.iter().filter(|m| m.header.index == index) {
            let secondary = m
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Secondary)));
            for a in &m.attributes {
                if let AddressAttribute::Local(std::net::IpAddr::V4(ip)) = a {
                    out.push((secondary, *ip, m.header.prefix_len));
                }
            }
        }
        out.sort_by_key(|(secondary, _, _)| *secondary);
        Ok(out.into_iter().map(|(_, ip, prefix)| (ip, prefix)).collect())
    }

    /// Every IPv4 address of the namespace, of every link.
    pub async fn all_ipv4_addresses(&self) -> Result<Vec<Ipv4Addr>> {
        use netlink_packet_route::address::AddressAttribute;
        let msgs: Vec<netlink_packet_route::address::AddressMessage> =
            self.handle.address().get().execute().try_collect().await.map_err(req("listing addresses".to_owned()))?;
        Ok(msgs
            .iter()
            .flat_map(|m| m.attributes.iter())
            .filter_map(|a| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
            .collect())
    }

    /// Adds the default route via `gateway`.
    pub async fn add_default_route(&self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build();
        self.handle.route().add(msg).execute().await.map_err(req(format!("adding default route via {gateway}")))
    }

    /// Every IPv4 route of the namespace (main table and others).
    async fn ipv4_routes(&self) -> Result<Vec<RouteMessage>> {
        self.handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(req("listing routes"))
    }

    /// Destinations of the namespace's IPv4 routes with link scope (directly connected
    /// subnets), for IPAM to avoid.
    pub async fn link_scope_routes(&self) -> Result<Vec<Ipv4Network>> {
        let routes = self.ipv4_routes().await?;
        let mut out = Vec::new();
        for r in routes {
            if r.header.scope != RouteScope::Link {
                continue;
            }
            for attr in &r.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(dst)) = attr {
                    if let Ok(net) = Ipv4Network::new(*dst, r.header.destination_prefix_length) {
                        out.push(net);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The first IPv4 routing rule that selects packets by what a route lookup of the datapath
    /// does not key its shared routes on (protocol, ports, or a selector this version does not
    /// know), described as `ip rule` shows it; `None` when routes depend on the destination,
    /// the source and the input interface only (see `NatConfig::SHARED_ROUTES`).
    pub async fn rule_selecting_by_port(&self) -> Result<Option<String>> {
        use netlink_packet_route::rule::RuleAttribute;
        // Rule attributes newer than the netlink crate (`linux/fib_rules.h`).
        const FRA_DSCP: u16 = 25;
        const FRA_FLOWLABEL: u16 = 26;
        const FRA_FLOWLABEL_MASK: u16 = 27;
        const FRA_SPORT_MASK: u16 = 28;
        const FRA_DPORT_MASK: u16 = 29;
        const FRA_DSCP_MASK: u16 = 30;
        let rules: Vec<netlink_packet_route::rule::RuleMessage> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(req("listing routing rules".to_owned()))?;
        let ports = |what: &str, p: &netlink_packet_route::rule::RulePortRange| {
            if p.start == p.end {
                format!("{what} {}", p.start)
            } else {
                format!("{what} {}-{}", p.start, p.end)
            }
        };
        for r in &rules {
            let priority = r.attributes.iter().find_map(|a| match a {
                RuleAttribute::Priority(p) => Some(*p),
                _ => None,
            });
            let mut by: Vec<String> = r
                .attributes
                .iter()
                .filter_map(|a| match a {
                    RuleAttribute::IpProtocol(p) => Some(format!("ipproto {}", u8::from(*p))),
                    RuleAttribute::SourcePortRange(p) => Some(ports("sport", p)),
                    RuleAttribute::DestinationPortRange(p) => Some(ports("dport", p)),
                    RuleAttribute::Other(nla) => match netlink_packet_core::Nla::kind(nla) {
                        // The masks of the port ranges above; the DSCP and flow label (routes
                        // of the datapath are looked up with neither).
                        FRA_SPORT_MASK | FRA_DPORT_MASK | FRA_DSCP | FRA_FLOWLABEL | FRA_FLOWLABEL_MASK
                        | FRA_DSCP_MASK => None,
                        kind => Some(format!("a selector netd does not know (attribute {kind})")),
                    },
                    _ => None,
                })
                .collect();
            by.sort();
            if !by.is_empty() {
                return Ok(Some(format!("rule {} selects by {}", priority.unwrap_or(0), by.join(", "))));
            }
        }
        Ok(None)
    }

    /// Names of the interfaces that carry the namespace's IPv4 default routes.
    pub async fn default_route_interfaces(&self) -> Result<Vec<String>> {
        let routes = self.ipv4_routes().await?;
        let links = self.links().await?;
        let mut out = Vec::new();
        for r in routes.iter().filter(|r| r.header.destination_prefix_length == 0) {
            for attr in &r.attributes {
                if let RouteAttribute::Oif(index) = attr {
                    if let Some(l) = links.iter().find(|l| l.index == *index) {
                        if !out.contains(&l.name) {
                            out.push(l.name.clone());
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn summarize(msg: &LinkMessage) -> LinkSummary {
    let mut s = LinkSummary {
        index: msg.header.index,
        name: String::new(),
        alias: None,
        veth: false,
        peer_elsewhere: false,
        link_layer: match msg.header.link_layer_type {
            LinkLayerType::Ether => LinkLayer::Ethernet,
            LinkLayerType::None
            | LinkLayerType::Tunnel
            | LinkLayerType::Tunnel6
            | LinkLayerType::Sit
            | LinkLayerType::Ipgre
            | LinkLayerType::Ip6gre
            | LinkLayerType::Ppp
            | LinkLayerType::Rawip => LinkLayer::None,
            _ => LinkLayer::Other,
        },
        controller: None,
        lower: None,
    };
    let mut netns_id = false;
    let mut link = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => s.name.clone_from(n),
            LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                s.veth = infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
            }
            LinkAttribute::LinkNetNsId(_) => netns_id = true,
            LinkAttribute::Controller(c) => s.controller = Some(*c),
            LinkAttribute::Link(l) => link = Some(*l),
            _ => {}
        }
    }
    s.peer_elsewhere = s.veth && netns_id;
    // Another namespace's index names nothing here.
    s.lower = link.filter(|l| !s.veth && !netns_id && *l != s.index && *l != 0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.attributes = attributes;
        m
    }

    #[test]
    fn a_links_controller_and_lower_device_are_read_but_a_veths_peer_is_no_lower_device() {
        let vlan = summarize(&message(7, vec![LinkAttribute::IfName("eth0.100".into()), LinkAttribute::Link(3)]));
        assert_eq!((vlan.lower, vlan.controller), (Some(3), None));
        let port = summarize(&message(8, vec![LinkAttribute::Controller(5)]));
        assert_eq!((port.lower, port.controller), (None, Some(5)));
        let veth = |netns: bool| {
            let mut attributes =
                vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]), LinkAttribute::Link(9)];
            if netns {
                attributes.push(LinkAttribute::LinkNetNsId(1));
            }
            summarize(&message(10, attributes))
        };
        for netns in [false, true] {
            let v = veth(netns);
            assert_eq!((v.veth, v.peer_elsewhere, v.lower), (true, netns, None), "{netns}");
        }
        // Another namespace's index names nothing here (an ipvlan whose parent is elsewhere).
        let elsewhere = summarize(&message(11, vec![LinkAttribute::Link(2), LinkAttribute::LinkNetNsId(1)]));
        assert_eq!(elsewhere.lower, None);
    }
}
