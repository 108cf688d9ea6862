//! The eBPF datapath as the control plane sees it: the compiled object, loading it with its
//! maps pinned (or ephemeral, for tests), attaching programs with pinned TCX links, filling the
//! endpoint and network maps, and reading counters and events.
//!
//! Pins (under the daemon's `--bpffs`): `maps/NETD_*` and `links/<host veth>`. They outlive the
//! daemon, so traffic keeps flowing while it is stopped and a restarted daemon adopts them.
//! Without TCX (or with `--tc-attach clsact`) programs are `clsact` filters instead, marked by
//! `links/<host veth>@clsact-<ifindex>` (see `clsact`).

mod attach;
mod batch;
mod clsact;
mod counters;
mod nat;

pub use clsact::TcAttach;
pub use counters::EndpointTotals;
pub use nat::{monotonic_ns, protocol_name, NatFlow, NatTableStats};

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    maps::{
        lpm_trie::{Key as LpmKey, LpmTrie},
        Array, HashMap, MapData, MapError, ProgramArray, RingBuf,
    },
    programs::{ProgramError, SchedClassifier},
    Ebpf, EbpfError, EbpfLoader,
};
use netd_common::{ifindex_slot, ip_slot, EndpointInfo, Event, NatEvent, NetworkInfo, EVENT_KIND_NAT_NEW};

/// The eBPF object built by `build.rs` from `netd-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"));

/// Name of the program attached to the host side of every endpoint veth.
pub const PROG_FROM_CONTAINER: &str = "netd_from_container";
/// Name of the program attached to every Ethernet uplink.
pub const PROG_FROM_UPLINK: &str = "netd_from_uplink";
/// Name of the program attached to every uplink without a link-layer header (tunnels).
pub const PROG_FROM_L3_UPLINK: &str = "netd_from_l3_uplink";
/// Name of the program attached to the egress of every network's bridge.
pub const PROG_TO_CONTAINER: &str = "netd_to_container";
/// Name of the program attached to the `lo` of sandboxes with the embedded DNS resolver.
pub const PROG_DNS_REDIRECT: &str = "netd_dns_redirect";
/// Name of the program `netd_from_container` goes on in with a masqueraded packet too big for
/// its uplink (not attached: in `NETD_TAILS`).
pub const PROG_NAT_TO_STACK: &str = "netd_nat_to_stack";
/// The programs others go on in, by index (`bpf_tail_call`).
const MAP_TAILS: &str = "NETD_TAILS";

const MAP_ENDPOINTS_BY_IP: &str = "NETD_ENDPOINTS_BY_IP";
const MAP_ENDPOINTS_BY_IFINDEX: &str = "NETD_ENDPOINTS_BY_IFINDEX";
const MAP_SLOTS_BY_IP: &str = "NETD_ENDPOINT_SLOTS_BY_IP";
const MAP_SLOTS_BY_IFINDEX: &str = "NETD_ENDPOINT_SLOTS_BY_IFINDEX";
const MAP_NETWORKS: &str = "NETD_NETWORKS";
const MAP_EVENTS: &str = "NETD_EVENTS";

/// Errors of the datapath layer.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<EbpfError>),
    #[error("program {name} is missing from the eBPF object or has the wrong type")]
    MissingProgram { name: &'static str },
    #[error("loading program {name} into the kernel failed: {source}")]
    LoadProgram {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching program {name} to {ifname} failed: {source}")]
    Attach {
        name: &'static str,
        ifname: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("pinning the link of {ifname}: {source}")]
    Pin {
        ifname: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error(
        "the pinned map {} is a {pinned} map, this netd's datapath needs a {expected} one: another netd release \
         made it. Stop netd, remove it (what it holds is lost; for NETD_NAT, the masqueraded flows) and start again",
        path.display()
    )]
    PinnedLayout { path: PathBuf, pinned: MapLayout, expected: MapLayout },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, DatapathError>;

/// What a map's entries look like to the kernel: its type and key and value sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
}

impl std::fmt::Display for MapLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "type-{} ({}-byte keys, {}-byte values)", self.map_type, self.key_size, self.value_size)
    }
}

/// Refuses maps pinned in `maps_dir` whose layout is not the one this build's object declares
/// (a release that changed a map's key or value type). Adopting one would let the programs
/// read its entries as something they are not; the verifier only catches some of it.
fn check_pinned_layouts(maps_dir: &Path) -> Result<()> {
    let object =
        aya_obj::Object::parse(EBPF_OBJECT).map_err(|e| DatapathError::Load(Box::new(EbpfError::ParseError(e))))?;
    for (name, def) in &object.maps {
        let path = maps_dir.join(name);
        if def.pinning() != aya_obj::maps::PinningType::ByName || !path.exists() {
            continue;
        }
        let unreadable = |e: MapError| DatapathError::Io {
            what: "reading the pinned map",
            path: path.clone(),
            source: std::io::Error::other(e),
        };
        let info = aya::maps::MapInfo::from_pin(&path).map_err(unreadable)?;
        let pinned = MapLayout {
            map_type: info.map_type().map_err(unreadable)? as u32,
            key_size: info.key_size(),
            value_size: info.value_size(),
        };
        let expected = MapLayout { map_type: def.map_type(), key_size: def.key_size(), value_size: def.value_size() };
        if pinned != expected {
            return Err(DatapathError::PinnedLayout { path, pinned, expected });
        }
    }
    Ok(())
}

/// Puts the programs others go on in into `NETD_TAILS` (pinned: an earlier daemon's programs,
/// still attached, go on in this one's, which reads the same maps).
fn fill_tails(ebpf: &mut Ebpf) -> Result<()> {
    let name = PROG_NAT_TO_STACK;
    let program: &SchedClassifier =
        ebpf.program(name).and_then(|p| p.try_into().ok()).ok_or(DatapathError::MissingProgram { name })?;
    let fd = program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
        .map_err(|e| DatapathError::LoadProgram { name, source: Box::new(e) })?;
    let map = ebpf.map_mut(MAP_TAILS).ok_or(DatapathError::MissingMap { name: MAP_TAILS })?;
    let mut tails = ProgramArray::try_from(map).map_err(map_err(MAP_TAILS))?;
    tails.set(netd_common::TAIL_NAT_TO_STACK, &fd, 0).map_err(map_err(MAP_TAILS))
}

/// Whether a map error means "no such key" (idempotent removal).
fn is_absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> DatapathError {
    move |e| DatapathError::Map { name, source: Box::new(e) }
}

/// How to load the datapath.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Emit a trace event for every packet (tests and debugging; removed by the verifier when
    /// off).
    pub trace: bool,
    /// A bpffs directory for pinned maps and links (the daemon's `--bpffs`). `None`: maps are
    /// private to this instance and nothing is pinned (tests).
    pub pin_dir: Option<PathBuf>,
    /// Flows the translation table holds (two entries each); `None`: the default
    /// ([`netd_common::NAT_DEFAULT_FLOWS`]). Only applies when the table is created, not when
    /// a pinned one is adopted.
    pub nat_max_flows: Option<u32>,
    /// TCX links, or `clsact` filters (the fallback for kernels without TCX).
    pub tc_attach: TcAttach,
}

static EPHEMERAL: AtomicU32 = AtomicU32::new(0);

/// The loaded datapath: programs verified and loaded, maps created or adopted from pins.
pub struct Datapath {
    ebpf: Ebpf,
    /// `None` once [`Datapath::take_events`] handed it to a reader of its own.
    events: Option<RingBuf<MapData>>,
    links_dir: Option<PathBuf>,
    /// New attachments are `clsact` filters, not TCX links.
    clsact: bool,
    /// What this datapath attached or took over (see `attach`).
    owned: attach::Owned,
}

/// Attempts per program load: the kernel stops verifying with `EAGAIN` when a signal is
/// pending for the loading thread (e.g. a child's exit, where `SIGCHLD` is handled); libbpf
/// retries the same way.
const PROG_LOAD_ATTEMPTS: u32 = 5;

/// Loads `program`, with signals blocked in this thread (a process-wide signal goes to another
/// thread or waits, instead of interrupting the verifier), and again when one still did
/// (`SIGKILL` cannot be blocked).
fn load_program(program: &mut SchedClassifier) -> std::result::Result<(), ProgramError> {
    let mut attempt = 1;
    loop {
        match with_signals_blocked(|| program.load()) {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < PROG_LOAD_ATTEMPTS =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Runs `f` with every blockable signal blocked in the calling thread, then restores its mask.
/// Under many tests or sandboxes exiting at once, five loads in a row were interrupted.
#[expect(unsafe_code, reason = "pthread_sigmask(3) has no safe std wrapper")]
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: plain C structs filled by sigfillset and pthread_sigmask; the old mask is restored
    // before returning, and no signal handler state is touched.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&raw mut all);
        let blocked = libc::pthread_sigmask(libc::SIG_BLOCK, &raw const all, &raw mut old) == 0;
        let result = f();
        if blocked {
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const old, std::ptr::null_mut());
        }
        result
    }
}

impl Datapath {
    /// Loads the object and every program. With a pin directory, maps pinned there by an
    /// earlier daemon are adopted (their contents kept), others are created and pinned.
    pub fn load(options: &LoadOptions) -> Result<Self> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| DatapathError::Io { what, path, source }
        };
        // Maps are declared pinned-by-name; an ephemeral load pins them in a private directory
        // and unpins them right away (the loaded object keeps them alive).
        let (maps_dir, ephemeral) = if let Some(dir) = &options.pin_dir {
            (dir.join("maps"), None)
        } else {
            let n = EPHEMERAL.fetch_add(1, Ordering::Relaxed);
            let dir = PathBuf::from(format!("/sys/fs/bpf/netd-ephemeral-{}-{n}", std::process::id()));
            (dir.clone(), Some(dir))
        };
        if ephemeral.is_none() {
            check_pinned_layouts(&maps_dir)?;
        }
        std::fs::create_dir_all(&maps_dir).map_err(io("creating", &maps_dir))?;
        let trace = u8::from(options.trace);
        let nat_entries = options.nat_max_flows.unwrap_or(netd_common::NAT_DEFAULT_FLOWS).saturating_mul(2);
        let loaded = EbpfLoader::new()
            .override_global("NETD_TRACE", &trace, true)
            .map_max_entries("NETD_NAT", nat_entries)
            .default_map_pin_directory(&maps_dir)
            .load(EBPF_OBJECT);
        if let Some(dir) = &ephemeral {
            std::fs::remove_dir_all(dir).map_err(io("removing", dir))?;
        }
        let mut ebpf = loaded.map_err(|e| DatapathError::Load(Box::new(e)))?;
        for name in [
            PROG_FROM_CONTAINER,
            PROG_FROM_UPLINK,
            PROG_FROM_L3_UPLINK,
            PROG_TO_CONTAINER,
            PROG_DNS_REDIRECT,
            PROG_NAT_TO_STACK,
        ] {
            let program: &mut SchedClassifier =
                ebpf.program_mut(name).and_then(|p| p.try_into().ok()).ok_or(DatapathError::MissingProgram { name })?;
            load_program(program).map_err(|e| DatapathError::LoadProgram { name, source: Box::new(e) })?;
        }
        fill_tails(&mut ebpf)?;
        let events = ebpf.take_map(MAP_EVENTS).ok_or(DatapathError::MissingMap { name: MAP_EVENTS })?;
        let events = RingBuf::try_from(events).map_err(map_err(MAP_EVENTS))?;
        let links_dir = match &options.pin_dir {
            Some(dir) => {
                let links = dir.join("links");
                std::fs::create_dir_all(&links).map_err(io("creating", &links))?;
                Some(links)
            }
            None => None,
        };
        Ok(Self {
            ebpf,
            events: Some(events),
            links_dir,
            clsact: options.tc_attach.is_clsact(),
            owned: attach::Owned::default(),
        })
    }

    /// Adds or replaces an endpoint in both endpoint maps, then in its direct-mapped slots
    /// where they are free or already its own (see `netd_common::ENDPOINT_SLOTS`). The order
    /// (hash maps first; on removal, slots first) means a slot never holds an endpoint the hash
    /// maps lack, whenever the daemon stops. An endpoint that found its slot taken is served by
    /// the hash maps; it takes the slot when it is set again after the holder left (at restart).
    pub fn set_endpoint(&mut self, ep: &EndpointInfo) -> Result<()> {
        let by_ip =
            self.ebpf.map_mut(MAP_ENDPOINTS_BY_IP).ok_or(DatapathError::MissingMap { name: MAP_ENDPOINTS_BY_IP })?;
        HashMap::<_, u32, EndpointInfo>::try_from(by_ip)
            .and_then(|mut m| m.insert(ep.ip, ep, 0))
            .map_err(map_err(MAP_ENDPOINTS_BY_IP))?;
        let by_ifindex = self
            .ebpf
            .map_mut(MAP_ENDPOINTS_BY_IFINDEX)
            .ok_or(DatapathError::MissingMap { name: MAP_ENDPOINTS_BY_IFINDEX })?;
        HashMap::<_, u32, EndpointInfo>::try_from(by_ifindex)
            .and_then(|mut m| m.insert(ep.ifindex, ep, 0))
            .map_err(map_err(MAP_ENDPOINTS_BY_IFINDEX))?;
        self.set_slot(MAP_SLOTS_BY_IFINDEX, ifindex_slot(ep.ifindex), ep, |cur| cur.ifindex == ep.ifindex)?;
        self.set_slot(MAP_SLOTS_BY_IP, ip_slot(ep.ip), ep, |cur| cur.ip == ep.ip)
    }

    /// Writes `ep` into `slot` of the direct-mapped table `name` if the slot is free or holds
    /// the same key (`same`).
    fn set_slot(
        &mut self,
        name: &'static str,
        slot: u32,
        ep: &EndpointInfo,
        same: impl Fn(&EndpointInfo) -> bool,
    ) -> Result<()> {
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap { name })?;
        let mut slots = Array::<_, EndpointInfo>::try_from(map).map_err(map_err(name))?;
        let cur = slots.get(&slot, 0).map_err(map_err(name))?;
        if cur.ifindex == 0 || same(&cur) {
            slots.set(slot, ep, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Empties `slot` of the direct-mapped table `name` if it holds the key (`same`).
    fn clear_slot(&mut self, name: &'static str, slot: u32, same: impl Fn(&EndpointInfo) -> bool) -> Result<()> {
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap { name })?;
        let mut slots = Array::<_, EndpointInfo>::try_from(map).map_err(map_err(name))?;
        let cur = slots.get(&slot, 0).map_err(map_err(name))?;
        if cur.ifindex != 0 && same(&cur) {
            slots.set(slot, EndpointInfo::default(), 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Removes an endpoint from its direct-mapped slots, then from both maps (absent keys are
    /// fine). `ifindex` 0 (its veth is gone) means the one the map has for `ip`.
    pub fn remove_endpoint(&mut self, ip: Ipv4Addr, ifindex: u32) -> Result<()> {
        let key = u32::from_ne_bytes(ip.octets());
        let ifindex = if ifindex == 0 { self.endpoint_by_ip(key)?.map_or(0, |e| e.ifindex) } else { ifindex };
        self.clear_slot(MAP_SLOTS_BY_IP, ip_slot(key), |cur| cur.ip == key)?;
        if ifindex != 0 {
            self.clear_slot(MAP_SLOTS_BY_IFINDEX, ifindex_slot(ifindex), |cur| cur.ifindex == ifindex)?;
        }
        for (name, k) in [(MAP_ENDPOINTS_BY_IP, key), (MAP_ENDPOINTS_BY_IFINDEX, ifindex)] {
            let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap { name })?;
            let mut m = HashMap::<_, u32, EndpointInfo>::try_from(map).map_err(map_err(name))?;
            match m.remove(&k) {
                Err(e) if !is_absent(&e) => return Err(map_err(name)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    fn endpoint_by_ip(&self, ip: u32) -> Result<Option<EndpointInfo>> {
        let map = self.ebpf.map(MAP_ENDPOINTS_BY_IP).ok_or(DatapathError::MissingMap { name: MAP_ENDPOINTS_BY_IP })?;
        let m = HashMap::<_, u32, EndpointInfo>::try_from(map).map_err(map_err(MAP_ENDPOINTS_BY_IP))?;
        match m.get(&ip, 0) {
            Ok(e) => Ok(Some(e)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_err(MAP_ENDPOINTS_BY_IP)(e)),
        }
    }

    /// Every endpoint in the by-ifindex map.
    pub fn endpoints(&self) -> Result<Vec<EndpointInfo>> {
        let map = self
            .ebpf
            .map(MAP_ENDPOINTS_BY_IFINDEX)
            .ok_or(DatapathError::MissingMap { name: MAP_ENDPOINTS_BY_IFINDEX })?;
        let m = HashMap::<_, u32, EndpointInfo>::try_from(map).map_err(map_err(MAP_ENDPOINTS_BY_IFINDEX))?;
        m.iter().map(|r| r.map(|(_, v)| v).map_err(map_err(MAP_ENDPOINTS_BY_IFINDEX))).collect()
    }

    /// Adds or replaces a network's subnet in the network trie.
    pub fn set_network(&mut self, subnet: Ipv4Addr, prefix: u8, info: &NetworkInfo) -> Result<()> {
        let map = self.ebpf.map_mut(MAP_NETWORKS).ok_or(DatapathError::MissingMap { name: MAP_NETWORKS })?;
        let mut trie = LpmTrie::<_, u32, NetworkInfo>::try_from(map).map_err(map_err(MAP_NETWORKS))?;
        trie.insert(&LpmKey::new(u32::from(prefix), u32::from_ne_bytes(subnet.octets())), info, 0)
            .map_err(map_err(MAP_NETWORKS))
    }

    /// The networks the trie holds.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>> {
        let map = self.ebpf.map(MAP_NETWORKS).ok_or(DatapathError::MissingMap { name: MAP_NETWORKS })?;
        let trie = LpmTrie::<_, u32, NetworkInfo>::try_from(map).map_err(map_err(MAP_NETWORKS))?;
        trie.iter().map(|r| r.map(|(_, n)| n).map_err(map_err(MAP_NETWORKS))).collect()
    }

    /// The addresses networks masquerade with instead of their uplink's
    /// (`com.docker.network.host_ipv4`), as the network trie holds them.
    pub fn snat_addresses(&self) -> Result<Vec<Ipv4Addr>> {
        let with_own = |n: &NetworkInfo| n.flags & netd_common::NetworkFlags::SNAT_ADDR != 0 && n.snat_addr != 0;
        Ok(self.networks()?.iter().filter(|n| with_own(n)).map(|n| Ipv4Addr::from(n.snat_addr.to_ne_bytes())).collect())
    }

    /// Removes a network's subnet from the trie (absent is fine).
    pub fn remove_network(&mut self, subnet: Ipv4Addr, prefix: u8) -> Result<()> {
        let map = self.ebpf.map_mut(MAP_NETWORKS).ok_or(DatapathError::MissingMap { name: MAP_NETWORKS })?;
        let mut trie = LpmTrie::<_, u32, NetworkInfo>::try_from(map).map_err(map_err(MAP_NETWORKS))?;
        match trie.remove(&LpmKey::new(u32::from(prefix), u32::from_ne_bytes(subnet.octets()))) {
            Err(e) if !is_absent(&e) => Err(map_err(MAP_NETWORKS)(e)),
            _ => Ok(()),
        }
    }

    /// Takes every packet event waiting in the ring buffer (none once
    /// [`Datapath::take_events`] took it).
    pub fn drain_events(&mut self) -> Vec<Event> {
        self.drain_records()
            .into_iter()
            .filter_map(|r| match r {
                Record::Packet(e) => Some(e),
                Record::NatNew(_) => None,
            })
            .collect()
    }

    /// Takes every record waiting in the ring buffer.
    pub fn drain_records(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        if let Some(ring) = self.events.as_mut() {
            while let Some(r) = next_record(ring) {
                out.extend(r);
            }
        }
        out
    }

    /// Hands the events' ring buffer over, e.g. to a reader that waits on its fd.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

/// A record of the events' ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// A packet dropped (or traced).
    Packet(Event),
    /// A new masqueraded flow (while [`Datapath::set_nat_events`] is on).
    NatNew(NatEvent),
}

/// The next record of `ring`: `None` when it is empty, `Some(None)` for one this build does not
/// know (its first byte, the kind, tells them apart).
pub fn next_record(ring: &mut RingBuf<MapData>) -> Option<Option<Record>> {
    let item = ring.next()?;
    let read = |size: usize| (item.len() >= size).then(|| &item[..size]);
    Some(match item.first() {
        Some(&EVENT_KIND_NAT_NEW) => {
            read(size_of::<NatEvent>()).map(|b| Record::NatNew(bytemuck::pod_read_unaligned(b)))
        }
        Some(_) => read(size_of::<Event>()).map(|b| Record::Packet(bytemuck::pod_read_unaligned(b))),
        None => None,
    })
}
