//! Every map of the datapath. Names start with `NETD_` so `bpftool map` shows whose they are.
//! All are pinned by name under the daemon's `--bpffs` directory, so programs attached by one
//! daemon keep working with the maps the next daemon fills.

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::LpmTrie, Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray, RingBuf},
};
use netd_common::{
    ifindex_slot, ip_slot, Counter, EndpointCounters, EndpointInfo, EndpointReasonKey, FragEntry, FragKey, Ipv4Tuple,
    NatConfig, NatEntry, NatTimeouts, NetworkInfo, PublishedKey, PublishedPort, UplinkInfo, ENDPOINT_SLOTS,
    MAX_ENDPOINTS, MAX_HOST_ADDRS, MAX_NETWORKS, MAX_PUBLISHED, MAX_TRUSTED, MAX_UPLINKS, NAT_DEFAULT_FLOWS,
    NAT_FRAG_DATAGRAMS, VERDICT_SLOTS,
};

/// Packets and bytes per (reason, class): index `reason * CLASS_SLOTS + class`. One lookup
/// counts both; userspace sums per reason or per class.
#[map]
pub static NETD_VERDICTS: PerCpuArray<Counter> = PerCpuArray::pinned(VERDICT_SLOTS, 0);

/// What each endpoint sent, forwarded / passed / dropped (index: the endpoint's slot).
#[map]
pub static NETD_ENDPOINT_COUNTERS: PerCpuArray<EndpointCounters> = PerCpuArray::pinned(MAX_ENDPOINTS, 0);

/// Each endpoint's drops by reason (only touched when dropping).
#[map]
pub static NETD_ENDPOINT_DROPS: PerCpuHashMap<EndpointReasonKey, Counter> = PerCpuHashMap::pinned(MAX_ENDPOINTS * 4, 0);

/// Endpoints by IPv4 address (wire order): where to deliver.
#[map]
pub static NETD_ENDPOINTS_BY_IP: HashMap<u32, EndpointInfo> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Endpoints by host-side veth ifindex: who is sending.
#[map]
pub static NETD_ENDPOINTS_BY_IFINDEX: HashMap<u32, EndpointInfo> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// Endpoints by host-side veth ifindex, direct-mapped (`netd_common::ifindex_slot`); a slot
/// whose entry has another ifindex (or none) sends the lookup to the hash map.
#[map]
pub static NETD_ENDPOINT_SLOTS_BY_IFINDEX: Array<EndpointInfo> = Array::pinned(ENDPOINT_SLOTS, 0);

/// Endpoints by IPv4 address, direct-mapped (`netd_common::ip_slot`), as above.
#[map]
pub static NETD_ENDPOINT_SLOTS_BY_IP: Array<EndpointInfo> = Array::pinned(ENDPOINT_SLOTS, 0);

/// The sending endpoint of veth `ifindex`: its direct-mapped slot, else the hash map.
#[inline(always)]
pub fn endpoint_by_ifindex(ifindex: u32) -> Option<&'static EndpointInfo> {
    if let Some(e) = NETD_ENDPOINT_SLOTS_BY_IFINDEX.get(ifindex_slot(ifindex)) {
        if e.ifindex == ifindex && ifindex != 0 {
            return Some(e);
        }
    }
    // SAFETY: map values are read-only in the datapath and valid for the program's run.
    unsafe { NETD_ENDPOINTS_BY_IFINDEX.get(&ifindex) }
}

/// The endpoint with address `ip` (wire order): its direct-mapped slot, else the hash map.
#[inline(always)]
pub fn endpoint_by_ip(ip: u32) -> Option<&'static EndpointInfo> {
    if let Some(e) = NETD_ENDPOINT_SLOTS_BY_IP.get(ip_slot(ip)) {
        if e.ip == ip && e.ifindex != 0 {
            return Some(e);
        }
    }
    // SAFETY: as above.
    unsafe { NETD_ENDPOINTS_BY_IP.get(&ip) }
}

/// Networks by subnet (longest prefix match on an IPv4 address, wire order).
#[map]
pub static NETD_NETWORKS: LpmTrie<u32, NetworkInfo> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// The translation table of masquerade: two entries per flow (egress and ingress, see
/// `netd_common::nat`). A plain hash, not an LRU: a full table refuses new flows (counted)
/// instead of silently breaking live ones; the daemon collects expired pairs. The daemon sets
/// its size at load (`--nat-max-flows`). Entries are allocated as flows come
/// (`BPF_F_NO_PREALLOC`), as conntrack's are: at the default size the table takes 8 MiB of
/// buckets when idle, where preallocated entries took 30 MiB at half the size (measured with
/// `bpftool map show`).
#[map]
pub static NETD_NAT: HashMap<Ipv4Tuple, NatEntry> =
    HashMap::pinned(NAT_DEFAULT_FLOWS * 2, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Programs that others go on in (`bpf_tail_call`): paths too rare to verify as part of the
/// program they start in (`netd_common::TAIL_NAT_TO_STACK`). The daemon fills it after loading.
#[map]
pub static NETD_TAILS: ProgramArray = ProgramArray::pinned(1, 0);

/// Fragmented datagrams of tracked flows (see `netd_common::FragKey`): a first fragment leaves
/// its flow's key, and the later ones, which carry no ports, are translated by it. An LRU, and
/// nobody collects it: a datagram's entry is of use for a few milliseconds, and the oldest make
/// room.
#[map]
pub static NETD_NAT_FRAGS: LruHashMap<FragKey, FragEntry> = LruHashMap::pinned(NAT_FRAG_DATAGRAMS, 0);

/// Uplinks by ifindex: the address masqueraded flows leave with.
#[map]
pub static NETD_UPLINKS: HashMap<u32, UplinkInfo> = HashMap::pinned(MAX_UPLINKS, 0);

/// Published ports (`netd run -p`) by host address (or zero: any uplink address), port and
/// protocol: a packet from outside that opens a flow to one is translated to the container.
#[map]
pub static NETD_PUBLISHED: HashMap<PublishedKey, PublishedPort> = HashMap::pinned(MAX_PUBLISHED, 0);

/// Which interfaces each network trusts (`com.docker.network.bridge.trusted_host_interfaces`),
/// keyed by `netd_common::nat::trusted_key` (the value is unused), as the daemon last listed
/// them (every 2 s): from these, a container's published ports are reached at its own address.
#[map]
pub static NETD_TRUSTED: HashMap<u64, u32> = HashMap::pinned(MAX_TRUSTED, 0);

/// The host's own IPv4 addresses (wire order; the value is unused), every interface's, as the
/// daemon last listed them (every 2 s): a published port is reached on each, as Docker's rules
/// match `--dst-type LOCAL`.
#[map]
pub static NETD_HOST_ADDRS: HashMap<u32, u32> = HashMap::pinned(MAX_HOST_ADDRS, 0);

/// The NAT settings (index 0), written by the daemon.
#[map]
pub static NETD_NAT_CONFIG: Array<NatConfig> = Array::pinned(1, 0);

/// How long flows live after their last packet (index 0, see `netd_common::NatTimeouts`),
/// written by the daemon (`--nat-timeout`).
#[map]
pub static NETD_NAT_TIMEOUTS: Array<NatTimeouts> = Array::pinned(1, 0);

/// The last `CLOCK_MONOTONIC_COARSE` reading and the jiffies it was taken at (see
/// `nat::coarse_now`).
#[repr(C)]
pub struct CoarseClock {
    pub jiffies: u64,
    pub ns: u64,
}

/// The datapath's [`CoarseClock`], shared by all CPUs: a global is one load, where a per-CPU
/// map's lookup lost most of the gain on egress (measured). Not pinned: each loaded object has
/// its own, which starts empty and reads the clock on its first packet.
#[unsafe(no_mangle)]
pub static mut NETD_CLOCK: CoarseClock = CoarseClock { jiffies: 0, ns: 0 };

/// A route that masquerade looked up (see `nat::route`): what a new flow from the same
/// endpoint veth (`from`) and address (`src`) to the same address (`dst`) takes for
/// `NAT_REFRESH_NS` after the lookup (`at`), as a flow keeps its own route that long, while
/// `NatConfig::SHARED_ROUTES` says routes depend on nothing else. All zero: empty.
#[repr(C)]
pub struct CachedRoute {
    pub dst: u32,
    pub src: u32,
    pub from: u32,
    /// The route's device, its MAC and the next hop's, and its MTU (`mtu_class`).
    pub ifindex: u32,
    pub at: u64,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub mtu_class: u8,
    /// The next hop's MAC is known, or the device needs none (`Hop::l2`).
    pub l2: u8,
    pub pad: [u8; 2],
}

/// How many routes [`NETD_ROUTES`] keeps per CPU (a power of two).
pub const ROUTE_SLOTS: u32 = 256;

/// Routes of new flows, per CPU, by a hash of destination and endpoint veth (see
/// [`CachedRoute`]). Not pinned: each loaded object starts empty.
#[map]
pub static NETD_ROUTES: PerCpuArray<CachedRoute> = PerCpuArray::with_max_entries(ROUTE_SLOTS, 0);

/// How many hints [`NETD_NAT_CANDIDATES`] keeps (a power of two).
pub const CANDIDATE_RING_LEN: u32 = 1024;

/// The egress keys of the flows created or started over last, and of the TCP flows that began
/// to close last (each direction's first FIN or RST), the oldest at `tail`: where a full table
/// looks for a flow to evict, as conntrack's early drop does (`nat::evict_one`). A flow becomes
/// evictable only at those moments (or by expiring, which the collector handles).
#[repr(C)]
pub struct CandidateRing {
    pub head: u32,
    pub tail: u32,
    pub keys: [Ipv4Tuple; CANDIDATE_RING_LEN as usize],
}

/// The datapath's [`CandidateRing`], shared by all CPUs without locks: a racing write loses or
/// repeats a hint, and every hint is checked against the table before a flow is evicted. A
/// global, as [`NETD_CLOCK`]: one load, no lookup. Not pinned: a restarted daemon's programs
/// start with an empty ring, and flows created or closing later fill it.
#[unsafe(no_mangle)]
pub static mut NETD_NAT_CANDIDATES: CandidateRing =
    CandidateRing { head: 0, tail: 0, keys: [Ipv4Tuple::new(0, 0, 0, 0, 0); CANDIDATE_RING_LEN as usize] };

/// Drop events (always), new flows (while `NatConfig::EVENTS` is set) and trace events (packets
/// of endpoints marked `EndpointInfo::TRACE`; every packet when `NETD_TRACE` is set at load
/// time).
#[map]
pub static NETD_EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);

/// Records that did not fit in `NETD_EVENTS` (index 0): a full ring loses events, and says how
/// many, as `cilium monitor` says "lost events".
#[map]
pub static NETD_EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);

/// Counts one record lost to a full `NETD_EVENTS`.
#[inline(always)]
pub fn count_lost_event() {
    if let Some(n) = NETD_EVENTS_LOST.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; a program is not preempted by itself on one CPU.
        unsafe { *n += 1 };
    }
}

/// Load-time switch: when non-zero every packet emits a trace event (tests). Read-only data,
/// so the verifier removes that code when it is off.
#[unsafe(no_mangle)]
pub static NETD_TRACE: u8 = 0;
