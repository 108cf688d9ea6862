//! `netd monitor`: the datapath's drops as they happen, each with its reason, the interface it
//! arrived on (and whose endpoint that is) and its addresses, as `cilium monitor --type drop`
//! shows Cilium's. The counters (`netd stats`) say how many; this says which packets.
//!
//! The datapath writes an event for every drop into the `NETD_EVENTS` ring buffer (a full ring
//! loses events, never verdicts). While anyone subscribes (API clients of `/netd/v1/monitor`),
//! one reader task waits on the ring's fd, describes each event once and broadcasts it. Without
//! subscribers the ring is not read; the first subscriber's reader discards what waited in it,
//! so subscribers see what happens from then on.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use netd_common::{Event, PacketClass, PacketFlags, Reason, EVENT_KIND_DROP};
use tokio::{
    io::unix::AsyncFd,
    sync::{broadcast, Notify},
};

use super::{error::Result, sandboxes::no_such_container, Daemon};
use crate::{datapath::next_event, model::ids::now_rfc3339};

/// Events a subscriber may fall behind by before it loses some (it is told how many).
const BACKLOG: usize = 4096;
/// How often at most the interface table is read again for an ifindex it does not know.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// One datapath event, described (a line of `GET /netd/v1/monitor`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonitorEvent {
    /// When the daemon read it (RFC 3339, UTC).
    pub time: String,
    /// "drop" (or "trace" when the datapath was loaded with tracing).
    pub kind: String,
    /// The reason's name and code, as `netd stats` shows them (`drop-spoofed-ip`, 79).
    pub reason: String,
    pub code: u8,
    /// What the parser made of the frame (`ipv4-tcp`, `arp`, …).
    pub class: String,
    /// The interface the packet arrived on in the daemon's namespace (a container's host
    /// veth, an uplink, a bridge), with its index.
    pub interface: String,
    pub ifindex: u32,
    /// When that interface is an endpoint's host veth: its sandbox (name and id), network and
    /// address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<MonitorEndpoint>,
    /// "tcp", "udp", "icmp", a protocol number, or "" when the frame is not IPv4.
    pub protocol: String,
    /// Source and destination (`address:port`; the address alone without ports).
    pub src: String,
    pub dst: String,
    /// The frame's length in bytes.
    pub len: u32,
    /// The 802.1Q VLAN id, 0 when untagged.
    pub vlan: u16,
    /// A fragment (IPv4 `MF` set or a non-zero offset).
    pub fragment: bool,
}

/// The endpoint behind an interface.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonitorEndpoint {
    pub sandbox: String,
    pub sandbox_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
}

/// A line of the monitor stream: an event, or how many the subscriber missed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum MonitorLine {
    Event(Box<MonitorEvent>),
    /// Events this subscriber missed because it read too slowly.
    Lost {
        lost: u64,
    },
}

/// Which events a subscriber wants: those about one sandbox, or all.
#[derive(Clone, Debug, Default)]
pub struct MonitorFilter {
    /// The sandbox's host veths and addresses: an event arrived on one of them, or from or to
    /// one of them.
    interfaces: Vec<String>,
    addresses: Vec<Ipv4Addr>,
    all: bool,
}

impl MonitorFilter {
    /// Whether `e` passes.
    #[must_use]
    pub fn matches(&self, e: &MonitorEvent) -> bool {
        let addr = |s: &str| s.split(':').next().and_then(|a| a.parse::<Ipv4Addr>().ok());
        self.all
            || self.interfaces.contains(&e.interface)
            || [addr(&e.src), addr(&e.dst)].iter().flatten().any(|a| self.addresses.contains(a))
    }
}

/// The subscribers' side: the daemon holds it, the reader sends into it.
pub(super) struct Monitor {
    tx: broadcast::Sender<Arc<MonitorEvent>>,
    /// Wakes the reader when the first subscriber comes.
    subscribed: Notify,
}

impl Default for Monitor {
    fn default() -> Self {
        Self { tx: broadcast::channel(BACKLOG).0, subscribed: Notify::new() }
    }
}

/// What the reader knows about the interfaces: ifindex → name and endpoint.
#[derive(Default)]
struct Interfaces {
    by_index: HashMap<u32, (String, Option<MonitorEndpoint>)>,
    read_at: Option<Instant>,
}

impl Daemon {
    /// A subscription to the events about `sandbox` (all events without one).
    pub async fn subscribe_monitor(
        &self,
        sandbox: Option<&str>,
    ) -> Result<(MonitorFilter, broadcast::Receiver<Arc<MonitorEvent>>)> {
        let mut filter = MonitorFilter { all: sandbox.is_none(), ..MonitorFilter::default() };
        if let Some(key) = sandbox {
            let state = self.snapshot().await;
            let sb = state.find_sandbox(key).map_err(|_| no_such_container(key))?;
            for n in state.networks.values() {
                for link in n.endpoints.values().filter(|ep| ep.sandbox_id == sb.id).filter_map(|ep| ep.link.as_ref()) {
                    filter.interfaces.push(link.host_veth.clone());
                    filter.addresses.push(link.ip);
                }
            }
        }
        let rx = self.monitor.tx.subscribe();
        self.monitor.subscribed.notify_one();
        Ok((filter, rx))
    }

    /// Reads the datapath's events until the task is aborted (see [`super::run`]).
    #[expect(unsafe_code, reason = "tokio's AsyncFd registration is unsafe: the fd must outlive it")]
    pub(super) async fn read_events(self: Arc<Self>, ring: RingBuf<MapData>) {
        // SAFETY: the ring owns its map's fd, which stays open and the same until the ring,
        // owned by the AsyncFd, is dropped with it.
        let registered = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
        let mut ring = match registered {
            Ok(r) => r,
            Err(e) => {
                eprintln!("netd: monitor: waiting on the events' ring buffer: {e}; `netd monitor` shows nothing");
                return;
            }
        };
        let mut interfaces = Interfaces::default();
        loop {
            // Nobody listens: the ring is left alone. It fills, and from then on the datapath's
            // writes fail at once (no copy, no wake-up), so a flood of drops costs the daemon
            // nothing.
            while self.monitor.tx.receiver_count() == 0 {
                self.monitor.subscribed.notified().await;
            }
            // What waited in the ring is old news.
            while next_event(ring.get_mut()).is_some() {}
            // Someone listens: read events as they come, until the last subscriber has gone.
            while self.monitor.tx.receiver_count() > 0 {
                let mut guard = match ring.readable_mut().await {
                    Ok(g) => g,
                    Err(e) => {
                        eprintln!("netd: monitor: reading the events' ring buffer: {e}; `netd monitor` shows nothing");
                        return;
                    }
                };
                let mut events = Vec::new();
                while let Some(event) = next_event(guard.get_inner_mut()) {
                    events.extend(event);
                }
                guard.clear_ready();
                drop(guard);
                for event in events {
                    if !interfaces.by_index.contains_key(&event.ifindex)
                        && interfaces.read_at.is_none_or(|t| t.elapsed() >= RESOLVE_EVERY)
                    {
                        self.read_interfaces(&mut interfaces).await;
                    }
                    let described = describe(&event, interfaces.by_index.get(&event.ifindex));
                    // The last subscriber may have gone meanwhile.
                    let _ = self.monitor.tx.send(Arc::new(described));
                }
            }
        }
    }

    /// Reads the namespace's interfaces and the endpoints behind them.
    async fn read_interfaces(&self, into: &mut Interfaces) {
        into.read_at = Some(Instant::now());
        let Ok(links) = self.nl.links().await else { return };
        let state = self.snapshot().await;
        let mut endpoints: HashMap<&str, MonitorEndpoint> = HashMap::new();
        for n in state.networks.values() {
            for ep in n.endpoints.values() {
                let Some(link) = &ep.link else { continue };
                let sandbox = state.sandboxes.get(&ep.sandbox_id).map(|s| s.name.clone()).unwrap_or_default();
                endpoints.insert(
                    link.host_veth.as_str(),
                    MonitorEndpoint {
                        sandbox,
                        sandbox_id: ep.sandbox_id.clone(),
                        network: n.name.clone(),
                        ip: link.ip,
                    },
                );
            }
        }
        into.by_index = links
            .into_iter()
            .map(|l| {
                let ep = endpoints.remove(l.name.as_str());
                (l.index, (l.name, ep))
            })
            .collect();
    }
}

/// `e` as a subscriber sees it, with what is known of its interface.
fn describe(e: &Event, interface: Option<&(String, Option<MonitorEndpoint>)>) -> MonitorEvent {
    let t = &e.tuple;
    let class = PacketClass::decode(e.class);
    let ipv4 = matches!(
        class,
        Some(
            PacketClass::Ipv4Tcp
                | PacketClass::Ipv4Udp
                | PacketClass::Ipv4Icmp
                | PacketClass::Ipv4Other
                | PacketClass::Ipv4Fragment
        )
    );
    let protocol = match t.protocol {
        _ if !ipv4 => String::new(),
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        p => p.to_string(),
    };
    // Ports for TCP and UDP; a later fragment has none.
    let ports = matches!(class, Some(PacketClass::Ipv4Tcp | PacketClass::Ipv4Udp));
    let end = |addr: u32, port: u16| match Ipv4Addr::from(addr.to_ne_bytes()) {
        _ if !ipv4 => String::new(),
        a if ports => format!("{a}:{}", u16::from_be(port)),
        a => a.to_string(),
    };
    MonitorEvent {
        time: now_rfc3339(),
        kind: if e.kind == EVENT_KIND_DROP { "drop".into() } else { "trace".into() },
        reason: Reason::decode(e.reason).map_or_else(|| format!("unknown-{}", e.reason), |r| r.name().to_owned()),
        code: e.reason,
        class: class.map_or_else(|| format!("unknown-{}", e.class), |c| c.name().to_owned()),
        interface: interface.map_or_else(|| format!("if{}", e.ifindex), |(name, _)| name.clone()),
        ifindex: e.ifindex,
        endpoint: interface.and_then(|(_, ep)| ep.clone()),
        src: end(t.src_addr, t.src_port),
        dst: end(t.dst_addr, t.dst_port),
        protocol,
        len: e.len,
        vlan: e.vlan_id,
        fragment: e.flags & PacketFlags::FRAGMENT != 0,
    }
}
