//! Masquerade: the translation table (`NETD_NAT`), the uplinks (`NETD_UPLINKS`) and the NAT
//! settings (`NETD_NAT_CONFIG`), shared by the datapath and the control plane.
//!
//! A translated flow has two entries in `NETD_NAT`, both keyed by an [`Ipv4Tuple`] exactly as the
//! datapath parses packets:
//! - the **egress** entry, keyed by what the container sends (container → remote), says which
//!   source address and port to write (the uplink's address, the allocated port);
//! - the **ingress** entry, keyed by what the remote answers (remote → uplink address, allocated
//!   port), says which destination to restore and which endpoint veth to deliver to.
//!
//! For ICMP echo the identifier is the "port": it is `src_port` of the tuple in both directions
//! (the parser puts the identifier there), and `dst_port` is zero.
//!
//! Expiry is decided over the pair: a flow is alive until the later of both entries' `last_seen`
//! plus its lifetime ([`flow_lifetime_ns`]: TCP by the flags of both entries, UDP by whether it is
//! a stream). The datapath treats an expired pair as absent (it may reuse its port); the daemon's
//! collector deletes expired pairs. A full table evicts a flow that is not [`assured`] or has
//! closed ([`evictable`]), as conntrack's early drop does.

use crate::Ipv4Tuple;

/// Flags of a [`NatEntry`].
pub struct NatFlags;

impl NatFlags {
    /// The ingress (reply) entry of a pair; absent on the egress entry.
    pub const INGRESS: u8 = 1 << 0;
    /// A packet went this way (the egress entry has it from the start; the ingress entry from
    /// the first reply).
    pub const SEEN: u8 = 1 << 1;
    /// TCP: a SYN went this way.
    pub const TCP_SYN: u8 = 1 << 2;
    /// TCP: a FIN went this way.
    pub const TCP_FIN: u8 = 1 << 3;
    /// TCP: a RST went this way.
    pub const TCP_RST: u8 = 1 << 4;
    /// Egress: `smac`/`dmac` hold the next hop, as the last route lookup found it.
    pub const L2: u8 = 1 << 5;
    /// Egress: the uplink is a veth whose peer is the next hop's side: the packet is delivered
    /// straight into the peer (`bpf_redirect_peer`), as a container's is (see
    /// [`UplinkInfo::PEER`]).
    pub const PEER: u8 = 1 << 6;
    /// The flow was opened from outside, to a published port (both entries have it): the
    /// ingress entry saw the first packet, and the flow is answered once the egress entry saw
    /// one (the container's), where a masqueraded flow is answered by its first reply.
    pub const INBOUND: u8 = 1 << 7;
}

/// Whether a flow is answered: a packet went the other way than the one that opened it (the
/// ingress way for a masqueraded flow, the egress way for one to a published port).
#[must_use]
#[inline]
pub const fn replied(egress: &NatEntry, ingress: &NatEntry) -> bool {
    let answer = if (egress.flags | ingress.flags) & NatFlags::INBOUND != 0 { egress.flags } else { ingress.flags };
    answer & NatFlags::SEEN != 0
}

/// A value of `NETD_NAT`: one direction of a translated flow.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// Egress: the new source address (the uplink's). Ingress: the new destination address
    /// (the container's). Wire order.
    pub addr: u32,
    /// Egress: the new source port (or ICMP identifier). Ingress: the container's original port
    /// (or identifier). Wire order.
    pub port: u16,
    /// [`NatFlags`].
    pub flags: u8,
    /// Egress: the route's MTU as [`mtu_class`] writes it, refreshed with the route; 0 (also in
    /// ingress entries, and in a flow made by an earlier release, where this was padding): not
    /// known. Packets up to [`mtu_floor`] of it go without a check of their size.
    pub mtu_class: u8,
    /// Egress: the uplink's ifindex. Ingress: the endpoint's host-side veth.
    pub ifindex: u32,
    /// Egress: the uplink's MAC and the next hop's (when [`NatFlags::L2`]), refreshed with the
    /// route at most every [`NAT_REFRESH_NS`]. Ingress: `dmac` is the container's MAC.
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// `bpf_ktime_get_coarse_ns()` (`CLOCK_MONOTONIC_COARSE`) of the last packet this way, refreshed at most
    /// every [`NAT_REFRESH_NS`].
    pub last_seen: u64,
    /// `bpf_ktime_get_coarse_ns()` when the flow was created.
    pub created: u64,
}

const _: () = assert!(size_of::<NatEntry>() == 40);
// `mac_half_words` loads the MACs as aligned half-words.
const _: () = assert!(core::mem::offset_of!(NatEntry, smac) % 2 == 0 && core::mem::offset_of!(NatEntry, dmac) % 2 == 0);

impl NatEntry {
    /// `dmac` and `smac`, each as three 16-bit values as they lie in memory: what an Ethernet
    /// header's destination and source fields hold, read the same way. Six aligned loads,
    /// where reading bytes takes twelve and the shifts to join them.
    #[inline(always)]
    #[must_use]
    #[expect(clippy::inline_always, reason = "the datapath calls it while building a frame head")]
    pub fn mac_half_words(&self) -> ([u16; 3], [u16; 3]) {
        #[expect(clippy::cast_ptr_alignment, reason = "the fields' alignment is asserted above")]
        let (d, s) = (self.dmac.as_ptr().cast::<u16>(), self.smac.as_ptr().cast::<u16>());
        // SAFETY: both fields are 6 bytes at 2-aligned offsets (asserted above) of an 8-aligned
        // struct.
        unsafe { ([d.read(), d.add(1).read(), d.add(2).read()], [s.read(), s.add(1).read(), s.add(2).read()]) }
    }
}

/// An uplink: value of `NETD_UPLINKS` (key: its ifindex).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkInfo {
    /// The address masqueraded flows leave with (the uplink's primary IPv4), wire order.
    pub addr: u32,
    /// [`UplinkInfo::PEER`], [`UplinkInfo::TRACE`] (the field was padding before; zero means
    /// no flags).
    pub flags: u32,
}

impl UplinkInfo {
    /// The uplink is a veth (netd runs in a namespace: a container, a Kind node, the bench):
    /// new flows through it are delivered into its peer, skipping the uplink's transmit path
    /// and the peer's backlog queue.
    pub const PEER: u32 = 1 << 0;
    /// Some endpoint is traced (`EndpointInfo::TRACE`): a reply translated for a container
    /// is reported when the container is traced. Without it, replies take no endpoint lookup.
    pub const TRACE: u32 = 1 << 1;
    /// Some port is published (`NETD_PUBLISHED` has entries): a packet of no flow may open one.
    /// Without it, the host's own traffic takes no lookup there.
    pub const PUBLISHED: u32 = 1 << 2;
    /// Some network masquerades with an address of its own (`NetworkFlags::SNAT_ADDR`): replies
    /// may come to another address than the uplink's. Without it, the host's traffic to its
    /// other addresses takes no lookup.
    pub const SNAT_ADDRS: u32 = 1 << 3;
    /// Some network's containers are reached at their own addresses: a network without
    /// masquerade (replies of its flows come to them) or with `NetworkFlags::UNPROTECTED`.
    /// Without it, packets to a container's address take no flow lookup (they are dropped).
    pub const DIRECT: u32 = 1 << 4;
    /// The uplink has no link-layer header (a tunnel, `WireGuard`, a `tun` device): its
    /// routes need no neighbour, and what arrives on it starts at the IP header.
    pub const L3: u32 = 1 << 5;
    /// Not a way out but a guarded interface (no IPv4 address, or left out by `--uplink`;
    /// `addr` is zero): what arrives on it for a container is treated as on an uplink (replies
    /// of tracked flows and published ports come in, the rest is unsolicited), and flows that
    /// leave by it are tracked but not translated (there is no address to masquerade with),
    /// so their replies are known.
    pub const GUARD: u32 = 1 << 6;
}

const _: () = assert!(size_of::<UplinkInfo>() == 8);

/// Where the MTU classes of [`NatEntry::mtu_class`] start: class `c` > 0 stands for an MTU of at
/// least `MTU_CLASS_BASE + 2 * c`, exact for every even MTU up to 1534 (1280, 1420, 1450, 1460,
/// 1492, 1500), 1534 for larger ones (jumbo frames, and GSO packets, are then checked).
pub const MTU_CLASS_BASE: u32 = 1024;

/// The class of MTU `mtu` (see [`MTU_CLASS_BASE`]): 0 below 1026.
#[must_use]
#[expect(clippy::cast_possible_truncation, reason = "below 255 by the branch before")]
pub const fn mtu_class(mtu: u32) -> u8 {
    if mtu < MTU_CLASS_BASE + 2 {
        0
    } else if mtu >= MTU_CLASS_BASE + 2 * 255 {
        255
    } else {
        ((mtu - MTU_CLASS_BASE) / 2) as u8
    }
}

/// The largest packet (IPv4 total length) that fits an MTU of class `class` whatever it is: 0
/// for class 0 (every packet is checked).
#[must_use]
pub const fn mtu_floor(class: u8) -> u32 {
    if class == 0 {
        0
    } else {
        MTU_CLASS_BASE + 2 * class as u32
    }
}

/// The NAT settings: the only value of `NETD_NAT_CONFIG` (index 0).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatConfig {
    /// Ports (and ICMP identifiers) handed out, inclusive, host order. Zero `port_max`: no
    /// masquerade (the control plane has not configured it yet).
    pub port_min: u16,
    pub port_max: u16,
    /// [`NatConfig::EVENTS`], [`NatConfig::STACK_FRAGMENTS`] (the field was padding before;
    /// zero means no flags).
    pub flags: u32,
}

impl NatConfig {
    /// Report every new flow with a [`crate::NatEvent`] (set while `netd monitor` watches).
    pub const EVENTS: u32 = 1 << 0;
    /// The stack accepts translated packets from the networks' bridges (the daemon set
    /// `accept_local` on each, and none has a strict `rp_filter`): a masqueraded packet
    /// without DF that is too big for its uplink goes to the stack translated, which
    /// fragments it on the way out, as Docker's path does ([`crate::Reason::PassNatToStack`]).
    /// Off, it is dropped ([`crate::Reason::DropNatFragNeeded`]).
    pub const STACK_FRAGMENTS: u32 = 1 << 1;
    /// No routing rule selects by protocol or port (the daemon reads the rules every 2 s): a
    /// route depends on the packet's destination and where it came from only, so a new flow
    /// takes the route an earlier flow from the same endpoint to the same address found, for
    /// [`NAT_REFRESH_NS`] after that lookup, as a flow keeps its own that long. Off, each new
    /// flow looks up its own.
    pub const SHARED_ROUTES: u32 = 1 << 2;
}

const _: () = assert!(size_of::<NatConfig>() == 8);

/// A published port (`netd run -p`): key of `NETD_PUBLISHED`. What arrives on an uplink for
/// `addr:port` (`addr` zero: any uplink address) opens a flow to the container.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishedKey {
    /// The host address it is published on, wire order; zero for all of them.
    pub addr: u32,
    /// The host port, wire order.
    pub port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    pub pad: u8,
}

const _: () = assert!(size_of::<PublishedKey>() == 8);

/// Where a published port leads: value of `NETD_PUBLISHED`.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishedPort {
    /// The container's address, wire order.
    pub addr: u32,
    /// The container's port, wire order.
    pub port: u16,
    /// [`PublishedPort::TRUSTED_ONLY`] (was padding: zero means none).
    pub flags: u16,
    /// The endpoint's host-side veth (delivered into its peer).
    pub ifindex: u32,
    /// The container's MAC.
    pub mac: [u8; 6],
    pub pad2: [u8; 2],
}

const _: () = assert!(size_of::<PublishedPort>() == 20);

impl PublishedPort {
    /// Keyed by the container's own address for the network's trusted interfaces only
    /// (`com.docker.network.bridge.trusted_host_interfaces`): reached from an uplink that
    /// `NETD_TRUSTED` lists for the container's network, from no other.
    pub const TRUSTED_ONLY: u16 = 1 << 0;
}

/// A key of `NETD_TRUSTED`: network `network` (its datapath id) trusts the interface `ifindex`
/// (`com.docker.network.bridge.trusted_host_interfaces`).
#[must_use]
pub const fn trusted_key(network: u32, ifindex: u32) -> u64 {
    ((network as u64) << 32) | ifindex as u64
}

/// A fragmented datagram in `NETD_NAT_FRAGS` as all its fragments name it (RFC 791: source,
/// destination, protocol and identification, as they arrive), and the way it goes. Only the
/// first fragment carries ports: it finds the flow and leaves its key here, so that the later
/// ones are translated by the same entry.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Wire order, as in the fragment.
    pub src_addr: u32,
    pub dst_addr: u32,
    /// The IPv4 identification, wire order.
    pub id: u16,
    pub protocol: u8,
    /// [`FragKey::EGRESS`] (from a container) or [`FragKey::INGRESS`] (on an uplink).
    pub dir: u8,
}

impl FragKey {
    pub const EGRESS: u8 = 0;
    pub const INGRESS: u8 = 1;
}

const _: () = assert!(size_of::<FragKey>() == 12);

/// Value of `NETD_NAT_FRAGS`: the `NETD_NAT` key of the flow the first fragment belonged to (its
/// egress key from a container, its reply key on an uplink), and when it passed.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    pub flow: Ipv4Tuple,
    /// `bpf_ktime_get_coarse_ns()` of the first fragment.
    pub seen: u64,
}

const _: () = assert!(size_of::<FragEntry>() == 24);

/// Datagrams `NETD_NAT_FRAGS` remembers (an LRU: the oldest make room), as Cilium's fragment map.
pub const NAT_FRAG_DATAGRAMS: u32 = 8_192;
/// How long after its first fragment a datagram's later ones are translated: the receiver's
/// reassembly gives up after as long (`net.ipv4.ipfrag_time`), and the identification may be
/// reused by then.
pub const NAT_FRAG_TIMEOUT_NS: u64 = 30 * SEC;

/// Entries of `NETD_PUBLISHED` (Docker users publish ranges).
pub const MAX_PUBLISHED: u32 = 65_536;
/// Entries of `NETD_TRUSTED`: (network, interface) pairs.
pub const MAX_TRUSTED: u32 = 4_096;
/// Entries of `NETD_HOST_ADDRS`: the host's own addresses.
pub const MAX_HOST_ADDRS: u32 = 1_024;

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding, every bit pattern is valid.
unsafe impl aya::Pod for NatEntry {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for PublishedKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for PublishedPort {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for UplinkInfo {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NatConfig {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NatTimeouts {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for FragKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for FragEntry {}

/// Default number of flows the table holds (two entries each), as many as conntrack's default
/// `nf_conntrack_max` on hosts with 4 GiB or more; the daemon's `--nat-max-flows` changes it.
/// Entries are allocated as flows come (see `NETD_NAT`), so an idle table costs its buckets only.
pub const NAT_DEFAULT_FLOWS: u32 = 262_144;
/// Entries of `NETD_UPLINKS`: uplinks and guarded interfaces (every Ethernet or tunnel
/// interface of the daemon's namespace but bridges, their ports and netd's veths), so a host
/// with many VLANs, tunnels or another runtime's routed veths fits. A lookup costs the same
/// whatever the size. (A daemon that adopts an earlier one's pinned map keeps its size.)
pub const MAX_UPLINKS: u32 = 1024;

/// `netd_nat_to_stack`'s index in `NETD_TAILS` (the programs others go on in): masquerade's
/// egress for packets too big for their uplink, which the stack fragments.
pub const TAIL_NAT_TO_STACK: u32 = 0;
/// How often a live flow's `last_seen` is rewritten (writing it on every packet would make
/// CPUs fight over the entry's cache line).
pub const NAT_REFRESH_NS: u64 = 1_000_000_000;
/// How many ports a new flow tries (its own, or its own folded into the range, first; then
/// random ones) before it is dropped.
pub const NAT_PORT_ATTEMPTS: u32 = 16;

const SEC: u64 = 1_000_000_000;
/// TCP after a RST.
pub const TCP_RST_TIMEOUT_NS: u64 = 10 * SEC;
/// TCP after a FIN (either way): half-closed, or closed and in `TIME_WAIT` at one end. The
/// translation outlives the end's `TIME_WAIT` (60 s in Linux): a new connection from another
/// container port must not get this port while the server may still hold the old one, or its
/// SYN meets the `TIME_WAIT` socket and stalls.
pub const TCP_FIN_TIMEOUT_NS: u64 = 120 * SEC;
/// TCP before the remote answered (SYN sent).
pub const TCP_SYN_TIMEOUT_NS: u64 = 60 * SEC;
/// TCP established (both ways seen).
pub const TCP_ESTABLISHED_TIMEOUT_NS: u64 = 6 * 3600 * SEC;
/// UDP that was never answered, or answered within [`UDP_STREAM_AFTER_NS`] of its start and
/// quiet since (a query and its answer, as DNS): conntrack's `nf_conntrack_udp_timeout`.
pub const UDP_TIMEOUT_NS: u64 = 30 * SEC;
/// UDP answered and still carrying packets [`UDP_STREAM_AFTER_NS`] after it started: a stream
/// (conntrack's `nf_conntrack_udp_timeout_stream`).
pub const UDP_STREAM_TIMEOUT_NS: u64 = 120 * SEC;
/// How long after its start an answered UDP flow must still carry packets to be a stream
/// (conntrack's two seconds). Seen through `last_seen`, which moves at most every
/// [`NAT_REFRESH_NS`], so a flow is a stream from its first packet 2 to 3 s after the start.
pub const UDP_STREAM_AFTER_NS: u64 = 2 * SEC;
/// ICMP echo.
pub const ICMP_TIMEOUT_NS: u64 = 30 * SEC;

/// How long flows live after their last packet, by state, in seconds (zero: the default, the
/// `*_TIMEOUT_NS` constants): the only value of `NETD_NAT_TIMEOUTS` (index 0), written by the
/// daemon (`--nat-timeout`), read by the datapath when it checks whether a flow expired and by
/// the daemon's collector, so both judge alike. A new map: zero everywhere before a daemon
/// writes it, which is the defaults.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatTimeouts {
    /// TCP before the remote answered ([`TCP_SYN_TIMEOUT_NS`]).
    pub tcp_syn: u32,
    /// TCP answered ([`TCP_ESTABLISHED_TIMEOUT_NS`]).
    pub tcp_established: u32,
    /// TCP after a FIN ([`TCP_FIN_TIMEOUT_NS`]).
    pub tcp_fin: u32,
    /// TCP after a RST ([`TCP_RST_TIMEOUT_NS`]).
    pub tcp_rst: u32,
    /// UDP but a stream ([`UDP_TIMEOUT_NS`]).
    pub udp: u32,
    /// A UDP stream ([`UDP_STREAM_TIMEOUT_NS`]).
    pub udp_stream: u32,
    /// ICMP echo ([`ICMP_TIMEOUT_NS`]).
    pub icmp: u32,
    pub pad: u32,
}

const _: () = assert!(size_of::<NatTimeouts>() == 32);

impl NatTimeouts {
    /// Every timeout the default.
    pub const DEFAULT: Self =
        Self { tcp_syn: 0, tcp_established: 0, tcp_fin: 0, tcp_rst: 0, udp: 0, udp_stream: 0, icmp: 0, pad: 0 };

    /// `secs` in ns, or `default_ns` when it is zero.
    #[must_use]
    #[inline]
    const fn or(secs: u32, default_ns: u64) -> u64 {
        if secs == 0 {
            default_ns
        } else {
            secs as u64 * SEC
        }
    }
}

/// The later of the two entries' `last_seen`: the flow's last packet, either way.
#[must_use]
#[inline]
const fn last_packet(egress: &NatEntry, ingress: &NatEntry) -> u64 {
    if egress.last_seen > ingress.last_seen {
        egress.last_seen
    } else {
        ingress.last_seen
    }
}

/// Whether a UDP flow is a stream: answered, and still carrying packets
/// [`UDP_STREAM_AFTER_NS`] after it started.
#[must_use]
#[inline]
const fn udp_stream(egress: &NatEntry, ingress: &NatEntry) -> bool {
    replied(egress, ingress) && last_packet(egress, ingress) >= egress.created + UDP_STREAM_AFTER_NS
}

/// How long a flow (entries `egress` and `ingress`, protocol number `protocol`) lives after its
/// last packet: TCP by its state (the flags of both entries), UDP by whether it is a stream;
/// `t` says how long each.
#[must_use]
#[inline]
pub const fn flow_lifetime_ns(protocol: u8, egress: &NatEntry, ingress: &NatEntry, t: &NatTimeouts) -> u64 {
    let both = egress.flags | ingress.flags;
    let replied = replied(egress, ingress);
    match protocol {
        6 => {
            if both & NatFlags::TCP_RST != 0 {
                NatTimeouts::or(t.tcp_rst, TCP_RST_TIMEOUT_NS)
            } else if both & NatFlags::TCP_FIN != 0 {
                NatTimeouts::or(t.tcp_fin, TCP_FIN_TIMEOUT_NS)
            } else if replied {
                NatTimeouts::or(t.tcp_established, TCP_ESTABLISHED_TIMEOUT_NS)
            } else {
                NatTimeouts::or(t.tcp_syn, TCP_SYN_TIMEOUT_NS)
            }
        }
        17 => {
            if udp_stream(egress, ingress) {
                NatTimeouts::or(t.udp_stream, UDP_STREAM_TIMEOUT_NS)
            } else {
                NatTimeouts::or(t.udp, UDP_TIMEOUT_NS)
            }
        }
        _ => NatTimeouts::or(t.icmp, ICMP_TIMEOUT_NS),
    }
}

/// Whether a TCP flow whose entries carry `egress` and `ingress` flags has closed: a RST either
/// way, or a FIN each way (one FIN is half-closed: the other way may still carry data).
#[must_use]
#[inline]
pub const fn tcp_closed(egress: u8, ingress: u8) -> bool {
    (egress | ingress) & NatFlags::TCP_RST != 0 || egress & ingress & NatFlags::TCP_FIN != 0
}

/// Whether a flow is assured, as conntrack says: TCP answered (the handshake went both ways),
/// UDP a stream ([`UDP_STREAM_AFTER_NS`]); ICMP never.
#[must_use]
#[inline]
pub const fn assured(protocol: u8, egress: &NatEntry, ingress: &NatEntry) -> bool {
    match protocol {
        6 => replied(egress, ingress),
        17 => udp_stream(egress, ingress),
        _ => false,
    }
}

/// Whether a full table may evict a flow to make room for a new one, as conntrack's early drop
/// does: a flow that is not [`assured`] (unanswered; UDP that is no stream, as a DNS query and
/// its answer; ICMP), or a TCP flow that has closed ([`tcp_closed`]). An established TCP flow,
/// half-closed or not, and a UDP stream stay until they expire.
#[must_use]
#[inline]
pub const fn evictable(protocol: u8, egress: &NatEntry, ingress: &NatEntry) -> bool {
    !assured(protocol, egress, ingress) || (protocol == 6 && tcp_closed(egress.flags, ingress.flags))
}

/// Whether a flow whose entries are `egress` and `ingress` has expired at `now` (ns, the
/// datapath's clock) with timeouts `t`.
#[must_use]
#[inline]
pub const fn flow_expired(protocol: u8, egress: &NatEntry, ingress: &NatEntry, now: u64, t: &NatTimeouts) -> bool {
    now > last_packet(egress, ingress) + flow_lifetime_ns(protocol, egress, ingress, t)
}

/// The ingress (reply) key of a flow whose egress key is `egress`, translated to `addr:port`.
#[must_use]
#[inline]
pub const fn reply_key(egress: &Ipv4Tuple, addr: u32, port: u16) -> Ipv4Tuple {
    if egress.protocol == 1 {
        // ICMP echo: the reply carries the (translated) identifier in the same place.
        Ipv4Tuple::new(egress.dst_addr, addr, port, 0, 1)
    } else {
        Ipv4Tuple::new(egress.dst_addr, addr, egress.dst_port, port, egress.protocol)
    }
}

/// The egress key of a flow, from its ingress key and ingress entry (the container's
/// address and port).
#[must_use]
#[inline]
pub const fn egress_key(ingress: &Ipv4Tuple, entry: &NatEntry) -> Ipv4Tuple {
    if ingress.protocol == 1 {
        Ipv4Tuple::new(entry.addr, ingress.src_addr, entry.port, 0, 1)
    } else {
        Ipv4Tuple::new(entry.addr, ingress.src_addr, entry.port, ingress.src_port, ingress.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_classes_never_promise_more_than_the_mtu() {
        for mtu in [1280, 1420, 1450, 1460, 1492, 1500, 1534] {
            assert_eq!(mtu_floor(mtu_class(mtu)), mtu, "{mtu} exactly");
        }
        for mtu in 0..=20_000 {
            assert!(mtu_floor(mtu_class(mtu)) <= mtu, "{mtu}");
        }
        assert_eq!(mtu_floor(mtu_class(1025)), 0, "below the classes: every packet checked");
        assert_eq!(mtu_floor(mtu_class(1027)), 1026);
        assert_eq!(mtu_floor(mtu_class(9000)), 1534);
    }

    #[test]
    fn mac_half_words_equal_the_macs_read_from_a_frame() {
        let (dmac, smac) = ([0x02, 0x00, 0x00, 0x00, 0x99, 0x02], [0x02, 0x00, 0x00, 0x00, 0x99, 0x01]);
        let e = NatEntry { smac, dmac, ..NatEntry::default() };
        // An Ethernet header's MAC fields, read as the datapath does (three half-words each).
        let half = |m: [u8; 6]| [0, 2, 4].map(|i| u16::from_ne_bytes([m[i], m[i + 1]]));
        assert_eq!(e.mac_half_words(), (half(dmac), half(smac)));
    }

    #[test]
    fn reply_and_egress_keys_are_inverse() {
        for protocol in [6u8, 17, 1] {
            let dst_port = if protocol == 1 { 0 } else { 0x5000 };
            let eg = Ipv4Tuple::new(0x0200_12ac, 0x0100_000a, 0x3412, dst_port, protocol);
            let rk = reply_key(&eg, 0x0100_a8c0, 0x0104);
            let entry = NatEntry { addr: eg.src_addr, port: eg.src_port, ..NatEntry::default() };
            assert_eq!(egress_key(&rk, &entry), eg, "protocol {protocol}");
        }
    }

    /// A pair of entries with these flags, created at 10 s, last seen `last` ns later.
    fn pair(egress: u8, ingress: u8, last: u64) -> (NatEntry, NatEntry) {
        let created = 10 * SEC;
        let e = NatEntry { flags: egress, created, last_seen: created + last, ..NatEntry::default() };
        let i = NatEntry { flags: NatFlags::INGRESS | ingress, created, last_seen: created, ..NatEntry::default() };
        (e, i)
    }

    #[test]
    fn lifetimes_follow_tcp_state_and_udp_streams() {
        let s = NatFlags::SEEN;
        let life = |protocol, egress, ingress, last| {
            let (e, i) = pair(egress, ingress, last);
            flow_lifetime_ns(protocol, &e, &i, &NatTimeouts::DEFAULT)
        };
        assert_eq!(life(6, s | NatFlags::TCP_SYN, 0, 0), TCP_SYN_TIMEOUT_NS);
        assert_eq!(life(6, s | NatFlags::TCP_SYN, s, 0), TCP_ESTABLISHED_TIMEOUT_NS);
        assert_eq!(life(6, s | NatFlags::TCP_FIN, s, 0), TCP_FIN_TIMEOUT_NS);
        assert_eq!(life(6, s | NatFlags::TCP_FIN, s | NatFlags::TCP_FIN, 0), TCP_FIN_TIMEOUT_NS);
        assert_eq!(life(6, s, s | NatFlags::TCP_RST, 0), TCP_RST_TIMEOUT_NS);
        // UDP: unanswered, or a query and its answer, 30 s; a stream 120 s.
        assert_eq!(life(17, s, 0, 5 * SEC), UDP_TIMEOUT_NS);
        assert_eq!(life(17, s, s, SEC), UDP_TIMEOUT_NS);
        assert_eq!(life(17, s, s, UDP_STREAM_AFTER_NS), UDP_STREAM_TIMEOUT_NS);
        assert_eq!(life(1, s, 0, 0), ICMP_TIMEOUT_NS);
        let e = NatEntry { last_seen: 100, ..NatEntry::default() };
        let i = NatEntry { last_seen: 5 * SEC, ..NatEntry::default() };
        assert!(!flow_expired(1, &e, &i, 5 * SEC + ICMP_TIMEOUT_NS, &NatTimeouts::DEFAULT));
        assert!(flow_expired(1, &e, &i, 5 * SEC + ICMP_TIMEOUT_NS + 1, &NatTimeouts::DEFAULT));
        // Timeouts of the daemon's own replace the defaults, the others stay.
        let t = NatTimeouts { icmp: 3, udp_stream: 3600, ..NatTimeouts::DEFAULT };
        assert!(!flow_expired(1, &e, &i, 8 * SEC, &t));
        assert!(flow_expired(1, &e, &i, 8 * SEC + 1, &t));
        let (e, i) = pair(s, s, UDP_STREAM_AFTER_NS);
        assert_eq!(flow_lifetime_ns(17, &e, &i, &t), 3600 * SEC);
        assert_eq!(flow_lifetime_ns(6, &e, &i, &t), TCP_ESTABLISHED_TIMEOUT_NS);
    }

    #[test]
    fn a_flow_to_a_published_port_is_answered_by_the_container() {
        let (s, inb) = (NatFlags::SEEN, NatFlags::INBOUND);
        let life = |protocol, egress, ingress, last| {
            let (e, i) = pair(egress, ingress, last);
            flow_lifetime_ns(protocol, &e, &i, &NatTimeouts::DEFAULT)
        };
        // The client's SYN came in; until the container answers, it is a SYN not answered.
        assert_eq!(life(6, inb, inb | s | NatFlags::TCP_SYN, 0), TCP_SYN_TIMEOUT_NS);
        assert_eq!(life(6, inb | s | NatFlags::TCP_SYN, inb | s | NatFlags::TCP_SYN, 0), TCP_ESTABLISHED_TIMEOUT_NS);
        assert_eq!(life(17, inb, inb | s, 5 * SEC), UDP_TIMEOUT_NS);
        assert_eq!(life(17, inb | s, inb | s, UDP_STREAM_AFTER_NS), UDP_STREAM_TIMEOUT_NS);
        let (e, i) = pair(inb, inb | s, 0);
        assert!(!replied(&e, &i) && evictable(6, &e, &i), "an unanswered SYN may be evicted");
        let (e, i) = pair(inb | s, inb | s, 0);
        assert!(replied(&e, &i) && !evictable(6, &e, &i));
    }

    #[test]
    fn a_full_table_may_evict_what_conntrack_early_drops() {
        let (s, fin, rst) = (NatFlags::SEEN, NatFlags::TCP_FIN, NatFlags::TCP_RST);
        let evict = |protocol, egress, ingress, last| {
            let (e, i) = pair(egress, ingress, last);
            evictable(protocol, &e, &i)
        };
        // TCP: unanswered or closed goes; established or half-closed stays.
        assert!(evict(6, s | NatFlags::TCP_SYN, 0, 0));
        assert!(!evict(6, s, s, 0));
        assert!(!evict(6, s | fin, s, 0));
        assert!(evict(6, s | fin, s | fin, 0));
        assert!(evict(6, s, s | rst, 0));
        // UDP: unanswered or short goes; a stream stays.
        assert!(evict(17, s, 0, 10 * SEC));
        assert!(evict(17, s, s, SEC));
        assert!(!evict(17, s, s, UDP_STREAM_AFTER_NS));
        // ICMP echo is never assured.
        assert!(evict(1, s, s, 10 * SEC));
    }
}
