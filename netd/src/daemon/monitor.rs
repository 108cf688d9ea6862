//! `netd monitor`: what the datapath does, as it happens.
//! - Drops (`--type drop`), each with its reason, the interface it arrived on (and whose
//!   endpoint that is) and its addresses, as `cilium monitor --type drop` shows Cilium's. The
//!   counters (`netd stats`) say how many; this says which packets.
//! - Masquerade's flows (`--type nat`): each new translation and each one removed (expired, or
//!   its container gone), as `conntrack -E` shows Docker's.
//! - Every packet of the followed sandboxes (`--type trace`), sent or delivered, with the
//!   datapath's verdict and where it went, as `cilium monitor`'s trace notifications: why a
//!   packet went to the bridge, the stack or the uplink rather than straight to its peer.
//! - The questions the sandboxes ask their embedded resolvers (`--type dns`): each with its
//!   answer, whether the resolver answered it or an upstream server did, and how long it took,
//!   as Hubble shows Cilium's DNS traffic. The resolvers send these themselves, only while
//!   someone subscribes.
//!
//! The datapath writes an event for every drop into the `NETD_EVENTS` ring buffer, and one for
//! every new flow while a `nat` subscriber is there (`NatConfig::EVENTS`), and one for every
//! packet from or to an endpoint marked `EndpointInfo::TRACE` while a `trace` subscriber
//! follows its sandbox (or every sandbox); a full ring loses events, never verdicts, and counts
//! them (`NETD_EVENTS_LOST`: subscribers are told). The daemon reports the flows it removes
//! itself. While anyone subscribes (API clients of `/netd/v1/monitor`), one reader task waits
//! on the ring's fd, describes each event once and broadcasts it. Without subscribers the ring is not read; the
//! first subscriber's reader discards what waited in it, so subscribers see what happens from
//! then on.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use netd_common::{
    EndpointInfo, Event, Ipv4Tuple, NatEntry, NatEvent, PacketClass, PacketFlags, Reason, UplinkInfo, EVENT_KIND_DROP,
};
use tokio::{
    io::unix::AsyncFd,
    sync::{broadcast, mpsc, Notify},
};

use super::{error::Result, sandboxes::no_such_container, stats::reason_name, Daemon};
use crate::{
    datapath::{next_record, protocol_name, Record},
    model::ids::now_rfc3339,
};

/// Events a subscriber may fall behind by before it loses some (it is told how many).
const BACKLOG: usize = 4096;
/// How often at most the interface table is read again for something it does not know.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

/// One event, described (a line of `GET /netd/v1/monitor`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonitorEvent {
    /// When the daemon read it (RFC 3339, UTC).
    pub time: String,
    /// "drop", "nat" or "trace".
    pub kind: String,
    /// Drops and traces: the reason's name and code, as `netd stats` shows them
    /// (`drop-spoofed-ip`, 79; `redirect-peer`, 4).
    /// NAT: `nat-new` (`nat-new-evicting` when the flow evicted another from a full table,
    /// `nat-new-published` when it was opened from outside, to a published port),
    /// `nat-expired`, `nat-removed` (its container, uplink address or remote network went).
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// What the parser made of the frame (`ipv4-tcp`, `arp`, …); empty for NAT events.
    pub class: String,
    /// The interface in the daemon's namespace: where a dropped or traced packet arrived (a
    /// container's host veth, an uplink, a bridge), the uplink of a NAT flow. With its index.
    pub interface: String,
    pub ifindex: u32,
    /// The endpoint behind the interface (drops) or the flow's container (NAT): its sandbox
    /// (name and id), network and address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<MonitorEndpoint>,
    /// "tcp", "udp", "icmp", a protocol number, or "" when the frame is not IPv4.
    pub protocol: String,
    /// Source and destination (`address:port`; the address alone without ports). NAT: as the
    /// container sent it.
    pub src: String,
    pub dst: String,
    /// NAT: the source the outside sees (`address:port`; ICMP: the identifier).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outside: String,
    /// Traces: the interface the packet was redirected to (a container's host veth, whose
    /// namespace it entered; an uplink), with its index and endpoint; empty when the packet
    /// went on to the stack or the bridge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub to_ifindex: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_endpoint: Option<MonitorEndpoint>,
    /// Drops and traces: the frame's length in bytes, its 802.1Q VLAN id (0 when untagged), and
    /// whether it is a fragment (IPv4 `MF` set or a non-zero offset).
    #[serde(default)]
    pub len: u32,
    #[serde(default)]
    pub vlan: u16,
    #[serde(default)]
    pub fragment: bool,
    /// DNS: the question (`web A`), the answer (its addresses, or its response code when it
    /// has none: `NXDOMAIN`, `NOERROR`), the upstream server that gave it (empty when the
    /// resolver answered), and how long it took in microseconds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub question: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upstream: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub micros: u64,
}

/// The endpoint behind an interface.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonitorEndpoint {
    pub sandbox: String,
    pub sandbox_id: String,
    pub network: String,
    pub ip: Ipv4Addr,
}

/// A line of the monitor stream: an event, or how many were missed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum MonitorLine {
    Event(Box<MonitorEvent>),
    /// Events missed: by this subscriber, because it read too slowly; or (`in_datapath`) by
    /// every subscriber, because the datapath's event ring was full (they may not all have
    /// been about what this subscriber follows).
    Lost {
        lost: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_datapath: bool,
    },
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The kinds of events a subscriber asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorType {
    /// Dropped packets.
    Drop,
    /// Masquerade's flows coming and going.
    Nat,
    /// Every packet from or to the followed sandboxes, whatever the verdict (drops excepted:
    /// they are `Drop`'s).
    Trace,
    /// The questions sandboxes ask their embedded resolvers, and the answers.
    Dns,
}

impl MonitorType {
    /// Its name in `--type` and `?type=`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Nat => "nat",
            Self::Trace => "trace",
            Self::Dns => "dns",
        }
    }
}

impl FromStr for MonitorType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "nat" => Ok(Self::Nat),
            "trace" => Ok(Self::Trace),
            "dns" => Ok(Self::Dns),
            _ => Err(format!("invalid event type {s:?}: expected drop, nat, trace or dns")),
        }
    }
}

/// Which events a subscriber wants: of which types, about one sandbox or all.
#[derive(Clone, Debug, Default)]
pub struct MonitorFilter {
    types: Vec<MonitorType>,
    /// The sandbox (its id), its host veths and addresses: an event arrived on one of them,
    /// went to one of them, or is from or to one of them.
    sandbox_id: String,
    interfaces: Vec<String>,
    addresses: Vec<Ipv4Addr>,
    all: bool,
}

impl MonitorFilter {
    /// Whether `line` passes: an event the subscriber asked for, or events the datapath lost.
    #[must_use]
    pub fn passes(&self, line: &MonitorLine) -> bool {
        match line {
            MonitorLine::Event(e) => self.matches(e),
            MonitorLine::Lost { .. } => true,
        }
    }

    /// Whether `e` passes.
    #[must_use]
    pub fn matches(&self, e: &MonitorEvent) -> bool {
        let kind = match e.kind.as_str() {
            "nat" => MonitorType::Nat,
            "trace" => MonitorType::Trace,
            "dns" => MonitorType::Dns,
            _ => MonitorType::Drop,
        };
        let addr = |s: &str| s.split(':').next().and_then(|a| a.parse::<Ipv4Addr>().ok());
        let ours = |ep: &Option<MonitorEndpoint>| ep.as_ref().is_some_and(|ep| ep.sandbox_id == self.sandbox_id);
        self.types.contains(&kind)
            && (self.all
                || ours(&e.endpoint)
                || ours(&e.to_endpoint)
                || self.interfaces.contains(&e.interface)
                || self.interfaces.contains(&e.to)
                || [addr(&e.src), addr(&e.dst)].iter().flatten().any(|a| self.addresses.contains(a)))
    }
}

/// A subscription: its filter and its events. Dropping it ends its interest in NAT events and
/// traces.
pub struct Subscription {
    pub filter: MonitorFilter,
    pub events: broadcast::Receiver<Arc<MonitorLine>>,
    _nat: Option<NatInterest>,
    _trace: Option<TraceInterest>,
}

/// One subscriber's interest in NAT events (the datapath reports new flows while there is any).
struct NatInterest(Arc<AtomicUsize>);

impl Drop for NatInterest {
    fn drop(&mut self) {
        // The daemon's 2 s tick turns the reports off once nobody wants them.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the `trace` subscribers follow, each a sandbox's id or (`None`) every sandbox, and a
/// generation that changes with it.
#[derive(Clone, Default)]
struct Traces {
    next_id: u64,
    followed: Vec<(u64, Option<String>)>,
    generation: u64,
}

impl Traces {
    fn follows(&self, sandbox_id: &str) -> bool {
        self.followed.iter().any(|(_, s)| s.as_deref().is_none_or(|s| s == sandbox_id))
    }
}

/// One `trace` subscriber's interest.
struct TraceInterest {
    id: u64,
    traces: Arc<Mutex<Traces>>,
}

impl Drop for TraceInterest {
    fn drop(&mut self) {
        // The daemon's 2 s tick takes the marks off what nobody follows any more.
        let mut t = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        t.followed.retain(|(id, _)| *id != self.id);
        t.generation += 1;
    }
}

/// Flows the daemon removed, and why ("nat-expired", "nat-removed").
struct Gone {
    why: &'static str,
    flows: Vec<(Ipv4Tuple, NatEntry)>,
}

/// The subscribers' side: the daemon holds it, the reader sends into it.
pub(super) struct Monitor {
    tx: broadcast::Sender<Arc<MonitorLine>>,
    /// Wakes the reader when the first subscriber comes.
    subscribed: Notify,
    /// Subscribers that want NAT events, and whether the datapath reports new flows (changed
    /// under its lock, so that a subscriber arriving is never left without reports).
    nat_interest: Arc<AtomicUsize>,
    nat_reports_on: Mutex<bool>,
    /// What `trace` subscribers follow, and the generation of it the datapath's marks
    /// (`EndpointInfo::TRACE`, `UplinkInfo::TRACE`) show (held while they are changed).
    traces: Arc<Mutex<Traces>>,
    traces_applied: tokio::sync::Mutex<u64>,
    /// An endpoint came or went since the reader last read the interfaces.
    endpoints_changed: std::sync::atomic::AtomicBool,
    /// Flows the daemon removed, to the reader.
    gone_tx: mpsc::UnboundedSender<Gone>,
    gone_rx: Mutex<Option<mpsc::UnboundedReceiver<Gone>>>,
}

impl Default for Monitor {
    fn default() -> Self {
        let (gone_tx, gone_rx) = mpsc::unbounded_channel();
        Self {
            tx: broadcast::channel(BACKLOG).0,
            subscribed: Notify::new(),
            nat_interest: Arc::new(AtomicUsize::new(0)),
            nat_reports_on: Mutex::new(false),
            traces: Arc::default(),
            traces_applied: tokio::sync::Mutex::new(0),
            endpoints_changed: std::sync::atomic::AtomicBool::new(false),
            gone_tx,
            gone_rx: Mutex::new(Some(gone_rx)),
        }
    }
}

/// What the reader knows about the namespace: ifindex → name and endpoint, address →
/// endpoint.
#[derive(Default)]
struct Interfaces {
    by_index: HashMap<u32, (String, Option<MonitorEndpoint>)>,
    by_ip: HashMap<Ipv4Addr, MonitorEndpoint>,
    read_at: Option<Instant>,
}

impl Monitor {
    /// Where the embedded resolvers send their events.
    pub(super) fn sender(&self) -> broadcast::Sender<Arc<MonitorLine>> {
        self.tx.clone()
    }
}

impl Daemon {
    /// A subscription to the events of `types` (drops and NAT flows when empty) about
    /// `sandbox` (all events without one).
    pub async fn subscribe_monitor(&self, sandbox: Option<&str>, types: &[MonitorType]) -> Result<Subscription> {
        let types = if types.is_empty() { vec![MonitorType::Drop, MonitorType::Nat] } else { types.to_vec() };
        let mut filter = MonitorFilter { all: sandbox.is_none(), ..MonitorFilter::default() };
        if let Some(key) = sandbox {
            let state = self.snapshot().await;
            let sb = state.find_sandbox(key).map_err(|_| no_such_container(key))?;
            filter.sandbox_id.clone_from(&sb.id);
            for n in state.networks.values() {
                for link in n.endpoints.values().filter(|ep| ep.sandbox_id == sb.id).filter_map(|ep| ep.link.as_ref()) {
                    filter.interfaces.push(link.host_veth.clone());
                    filter.addresses.push(link.ip);
                }
            }
        }
        let nat = if types.contains(&MonitorType::Nat) {
            let mut on = self.monitor.nat_reports_on.lock().unwrap_or_else(PoisonError::into_inner);
            self.monitor.nat_interest.fetch_add(1, Ordering::SeqCst);
            let interest = NatInterest(self.monitor.nat_interest.clone());
            if !*on {
                self.dp().set_nat_events(true)?;
                *on = true;
            }
            Some(interest)
        } else {
            None
        };
        let trace = types.contains(&MonitorType::Trace).then(|| {
            let mut t = self.monitor.traces.lock().unwrap_or_else(PoisonError::into_inner);
            let id = t.next_id;
            t.next_id += 1;
            t.followed.push((id, sandbox.map(|_| filter.sandbox_id.clone())));
            t.generation += 1;
            TraceInterest { id, traces: self.monitor.traces.clone() }
        });
        filter.types = types;
        let events = self.monitor.tx.subscribe();
        self.monitor.subscribed.notify_one();
        if trace.is_some() {
            self.sync_traces().await?;
        }
        Ok(Subscription { filter, events, _nat: nat, _trace: trace })
    }

    /// Whether a `trace` subscriber follows sandbox `sandbox_id` (its endpoints are marked).
    pub(super) fn traced(&self, sandbox_id: &str) -> bool {
        self.monitor.traces.lock().unwrap_or_else(PoisonError::into_inner).follows(sandbox_id)
    }

    /// Whether any `trace` subscriber is there (uplinks are marked).
    pub(super) fn tracing_any(&self) -> bool {
        !self.monitor.traces.lock().unwrap_or_else(PoisonError::into_inner).followed.is_empty()
    }

    /// Makes the datapath's trace marks match what `trace` subscribers follow: each endpoint
    /// of a followed sandbox marked (`EndpointInfo::TRACE`), no other; every uplink marked
    /// while anyone traces (`UplinkInfo::TRACE`). Called when a subscriber comes, and every
    /// 2 s (after one went). Endpoints made meanwhile are marked as they are made.
    pub(super) async fn sync_traces(&self) -> Result<()> {
        let traces = || self.monitor.traces.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut applied = self.monitor.traces_applied.lock().await;
        if *applied == traces().generation {
            return Ok(());
        }
        // No endpoint comes or goes meanwhile: every change of the state holds its lock.
        let state = self.state.lock().await;
        let followed = traces();
        let owners: HashMap<u32, &str> = state
            .networks
            .values()
            .flat_map(|n| n.endpoints.values())
            .filter_map(|ep| ep.link.as_ref().map(|l| (u32::from_ne_bytes(l.ip.octets()), ep.sandbox_id.as_str())))
            .collect();
        let any = if followed.followed.is_empty() { 0 } else { UplinkInfo::TRACE };
        let mut dp = self.dp();
        for mut ep in dp.endpoints()? {
            let want = owners.get(&ep.ip).is_some_and(|s| followed.follows(s));
            if (ep.flags & EndpointInfo::TRACE != 0) != want {
                ep.flags ^= EndpointInfo::TRACE;
                dp.set_endpoint(&ep)?;
            }
        }
        for (ifindex, addr, flags) in dp.uplinks()? {
            if flags & UplinkInfo::TRACE != any {
                dp.set_uplink(ifindex, addr, flags ^ UplinkInfo::TRACE)?;
            }
        }
        *applied = followed.generation;
        Ok(())
    }

    /// Turns the datapath's reports of new flows off once no subscriber wants them (called
    /// every 2 s).
    pub(super) fn sync_nat_reports(&self) -> Result<()> {
        let mut on = self.monitor.nat_reports_on.lock().unwrap_or_else(PoisonError::into_inner);
        if *on && self.monitor.nat_interest.load(Ordering::SeqCst) == 0 {
            self.dp().set_nat_events(false)?;
            *on = false;
        }
        Ok(())
    }

    /// Tells NAT subscribers about flows the daemon removed (`why`: "nat-expired",
    /// "nat-removed").
    pub(super) fn report_nat_gone(&self, why: &'static str, flows: Vec<(Ipv4Tuple, NatEntry)>) {
        if !flows.is_empty() && self.monitor.nat_interest.load(Ordering::SeqCst) > 0 {
            let _ = self.monitor.gone_tx.send(Gone { why, flows });
        }
    }

    /// Reads the datapath's events (and the flows the daemon removed) until the task is
    /// aborted (see [`super::run`]).
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
        let Some(mut gone) = self.monitor.gone_rx.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let mut interfaces = Interfaces::default();
        loop {
            // Nobody listens: the ring is left alone. It fills, and from then on the datapath's
            // writes fail at once (no copy, no wake-up), so a flood of drops costs the daemon
            // nothing.
            while self.monitor.tx.receiver_count() == 0 {
                self.monitor.subscribed.notified().await;
            }
            // What waited in the ring is old news, and so is what it lost.
            while next_record(ring.get_mut()).is_some() {}
            while gone.try_recv().is_ok() {}
            let mut lost_before = self.events_lost();
            // Someone listens: read events as they come, until the last subscriber has gone.
            while self.monitor.tx.receiver_count() > 0 {
                let mut described = Vec::new();
                tokio::select! {
                    guard = ring.readable_mut() => {
                        let mut guard = match guard {
                            Ok(g) => g,
                            Err(e) => {
                                eprintln!("netd: monitor: reading the events' ring buffer: {e}; `netd monitor` shows nothing");
                                return;
                            }
                        };
                        // Cleared before reading, not after: the kernel wakes the reader
                        // only for a record written once it has caught up, so one written
                        // between the last read and a later clear would wait in the ring,
                        // unseen, until the next.
                        guard.clear_ready();
                        let mut records = Vec::new();
                        while let Some(r) = next_record(guard.get_inner_mut()) {
                            records.extend(r);
                        }
                        drop(guard);
                        for r in records {
                            match &r {
                                Record::Packet(e) => {
                                    self.know(&mut interfaces, e.ifindex, None).await;
                                    if e.target != 0 {
                                        self.know(&mut interfaces, e.target, None).await;
                                    }
                                }
                                Record::NatNew(e) => self.know(&mut interfaces, e.ifindex, Some(e.tuple.src_addr)).await,
                            }
                            described.push(match &r {
                                Record::Packet(e) => describe_packet(e, &interfaces),
                                Record::NatNew(e) => describe_new_flow(e, &interfaces),
                            });
                        }
                    }
                    Some(g) = gone.recv() => {
                        for (key, entry) in &g.flows {
                            self.know(&mut interfaces, entry.ifindex, Some(key.src_addr)).await;
                            described.push(describe_gone_flow(g.why, key, entry, &interfaces));
                        }
                    }
                }
                for e in described {
                    // The last subscriber may have gone meanwhile.
                    let _ = self.monitor.tx.send(Arc::new(MonitorLine::Event(Box::new(e))));
                }
                // What did not fit in the ring was lost after what was read from it.
                let lost = self.events_lost();
                if lost > lost_before {
                    let line = MonitorLine::Lost { lost: lost - lost_before, in_datapath: true };
                    let _ = self.monitor.tx.send(Arc::new(line));
                    lost_before = lost;
                }
            }
        }
    }

    /// Records the datapath could not put in its full event ring, so far (0 when unreadable:
    /// then no loss is reported).
    fn events_lost(&self) -> u64 {
        self.dp().events_lost().unwrap_or(0)
    }

    /// Tells the reader that an endpoint came or went (its interface table is out of date).
    pub(super) fn endpoints_changed(&self) {
        self.monitor.endpoints_changed.store(true, Ordering::SeqCst);
    }

    /// Reads the interfaces again when `ifindex` or the container at `ip` (wire order) is not
    /// known yet: at once when an endpoint came or went since the last read, else at most
    /// every [`RESOLVE_EVERY`].
    async fn know(&self, interfaces: &mut Interfaces, ifindex: u32, ip: Option<u32>) {
        let known = interfaces.by_index.contains_key(&ifindex)
            && ip.is_none_or(|ip| interfaces.by_ip.contains_key(&Ipv4Addr::from(ip.to_ne_bytes())));
        if known {
            return;
        }
        if self.monitor.endpoints_changed.swap(false, Ordering::SeqCst)
            || interfaces.read_at.is_none_or(|t| t.elapsed() >= RESOLVE_EVERY)
        {
            self.read_interfaces(interfaces).await;
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
        into.by_ip = endpoints.values().map(|ep| (ep.ip, ep.clone())).collect();
        into.by_index = links
            .into_iter()
            .map(|l| {
                let ep = endpoints.remove(l.name.as_str());
                (l.index, (l.name, ep))
            })
            .collect();
    }
}

/// `address:port` (wire order) with ports, the address alone without.
fn end(addr: u32, port: u16, ports: bool) -> String {
    let a = Ipv4Addr::from(addr.to_ne_bytes());
    if ports {
        format!("{a}:{}", u16::from_be(port))
    } else {
        a.to_string()
    }
}

/// A dropped or traced packet as a subscriber sees it, with what is known of its interfaces.
fn describe_packet(e: &Event, interfaces: &Interfaces) -> MonitorEvent {
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
    // Ports for TCP and UDP; a later fragment has none.
    let ports = matches!(class, Some(PacketClass::Ipv4Tcp | PacketClass::Ipv4Udp));
    let addresses = |addr, port| if ipv4 { end(addr, port, ports) } else { String::new() };
    let name =
        |ifindex: u32| interfaces.by_index.get(&ifindex).map_or_else(|| format!("if{ifindex}"), |(n, _)| n.clone());
    let endpoint = |ifindex: u32| interfaces.by_index.get(&ifindex).and_then(|(_, ep)| ep.clone());
    let redirected = e.kind != EVENT_KIND_DROP && e.target != 0;
    MonitorEvent {
        time: now_rfc3339(),
        kind: if e.kind == EVENT_KIND_DROP { "drop".into() } else { "trace".into() },
        reason: reason_name(e.reason),
        code: Some(e.reason),
        class: class.map_or_else(|| format!("unknown-{}", e.class), |c| c.name().to_owned()),
        interface: name(e.ifindex),
        ifindex: e.ifindex,
        endpoint: endpoint(e.ifindex),
        protocol: if ipv4 { protocol_name(t.protocol) } else { String::new() },
        src: addresses(t.src_addr, t.src_port),
        dst: addresses(t.dst_addr, t.dst_port),
        outside: String::new(),
        to: if redirected { name(e.target) } else { String::new() },
        to_ifindex: if redirected { e.target } else { 0 },
        to_endpoint: if redirected { endpoint(e.target) } else { None },
        len: e.len,
        vlan: e.vlan_id,
        fragment: e.flags & PacketFlags::FRAGMENT != 0,
        ..MonitorEvent::default()
    }
}

/// A flow (egress key `t` on uplink `ifindex`, seen outside as `nat_addr`:`nat_port`) as a
/// subscriber sees it.
fn describe_flow(
    reason: &str,
    t: &Ipv4Tuple,
    ifindex: u32,
    (nat_addr, nat_port): (u32, u16),
    interfaces: &Interfaces,
) -> MonitorEvent {
    // ICMP echo: the identifier is in `src_port` and the outside's.
    let icmp = t.protocol == 1;
    MonitorEvent {
        time: now_rfc3339(),
        kind: "nat".into(),
        reason: reason.to_owned(),
        interface: interfaces.by_index.get(&ifindex).map_or_else(|| format!("if{ifindex}"), |(name, _)| name.clone()),
        ifindex,
        endpoint: interfaces.by_ip.get(&Ipv4Addr::from(t.src_addr.to_ne_bytes())).cloned(),
        protocol: protocol_name(t.protocol),
        src: end(t.src_addr, t.src_port, true),
        dst: end(t.dst_addr, t.dst_port, !icmp),
        outside: end(nat_addr, nat_port, true),
        ..MonitorEvent::default()
    }
}

fn describe_new_flow(e: &NatEvent, interfaces: &Interfaces) -> MonitorEvent {
    let reason = if e.reason == Reason::RedirectNatEvicted as u8 {
        "nat-new-evicting"
    } else if e.reason == Reason::RedirectReverseNat as u8 {
        // Opened from outside, to a published port.
        "nat-new-published"
    } else {
        "nat-new"
    };
    describe_flow(reason, &e.tuple, e.ifindex, (e.nat_addr, e.nat_port), interfaces)
}

fn describe_gone_flow(why: &str, key: &Ipv4Tuple, egress: &NatEntry, interfaces: &Interfaces) -> MonitorEvent {
    describe_flow(why, key, egress.ifindex, (egress.addr, egress.port), interfaces)
}
