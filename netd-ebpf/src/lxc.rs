//! The container side: what an endpoint sends, seen on TC ingress of its host-side veth.
//!
//! Anti-spoofing first (source MAC and IPv4 must be the endpoint's), then for IPv4 unicast:
//! another endpoint of the same network is reached with `bpf_redirect_peer` (no bridge, no
//! backlog), unless `enable_icc=false`; endpoints of other networks are dropped (isolation);
//! the gateway and the world beyond go to the host's stack (`--internal` networks reach nothing
//! outside their subnet); broadcast, multicast, ARP and the rest go to the kernel bridge.

use aya_ebpf::programs::TcContext;
use netd_common::{EndpointInfo, Ipv4Tuple, NatEntry, NetworkFlags, PacketClass, Reason};
use netd_ebpf::parse::{arp, eth, headers_len, headers_len_l3, parse, Frame, Parsed};

use crate::{
    maps::{endpoint_by_ifindex, endpoint_by_ip, NETD_NAT, NETD_NETWORKS},
    nat::{snat_v4_egress, to_stack_tail, NatTarget},
    verdict::{exit, Verdict, NO_ENDPOINT},
};

/// Ethernet + one VLAN tag + the largest IPv4 header + the largest TCP header.
const MAX_HEADERS_LEN: usize = 14 + 4 + 60 + 60;

#[inline(always)]
pub fn from_container(ctx: &TcContext) -> i32 {
    pull_headers::<false>(ctx);
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    // SAFETY: `skb` is the program's valid context pointer.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let parsed = match parse(&frame) {
        Ok(p) => p,
        Err(m) => {
            let v = Verdict { flags: m.flags, vlan_id: m.vlan_id, ..Verdict::unparsed(m.reason) };
            return exit(ctx, &v);
        }
    };
    let mut v = Verdict {
        reason: parsed.pass_reason(),
        class: parsed.class,
        flags: parsed.flags,
        vlan_id: parsed.vlan_id,
        tuple: parsed.tuple,
        slot: NO_ENDPOINT,
        target: 0,
        via_neigh: false,
        via_peer: false,
        trace: false,
    };
    let Some(src) = endpoint_by_ifindex(ifindex) else {
        // Not (yet) an endpoint: classify and pass.
        return exit(ctx, &v);
    };
    v.slot = src.slot;
    v.trace = src.flags & EndpointInfo::TRACE != 0;
    let mut peer = None;
    let mut flow = None;
    v.reason = decide(&frame, &parsed, src, &mut peer, &mut flow);
    let masquerade = match v.reason {
        Reason::RedirectPeer => {
            if let Some(peer) = peer {
                v.target = peer.ifindex;
                v.trace |= peer.flags & EndpointInfo::TRACE != 0;
                set_dst_mac(ctx, &frame, peer);
            }
            false
        }
        // A known flow (masqueraded, or tracked as routed).
        Reason::RedirectNat => true,
        // Beyond the host's networks (the route decides; local addresses stay with the stack):
        // masqueraded, or on a network without masquerade tracked as it is routed, so that
        // what answers it can come back (and nothing else, as Docker's conntrack rules).
        Reason::PassToStack => src.flags & NetworkFlags::INTERNAL == 0 && parsed.tuple.dst_addr != src.gateway,
        _ => false,
    };
    if masquerade {
        // `flow` is the egress entry, or `None` when `ipv4` looked it up and found none: it
        // looks for every packet of a network that is not internal to beyond its subnet, so
        // every packet that gets here.
        let mut t = NatTarget { ifindex: 0, via_neigh: false, via_peer: false };
        v.reason = match snat_v4_egress::<false>(ctx, &frame, &parsed, src, flow, &mut t) {
            // Too big for its uplink, without DF: translated and handed to the stack by
            // `netd_nat_to_stack`.
            Reason::PassNatToStack => to_stack_tail(ctx),
            r => r,
        };
        v.target = t.ifindex;
        v.via_neigh = t.via_neigh;
        v.via_peer = t.via_peer;
    }
    exit(ctx, &v)
}

/// `netd_nat_to_stack`: a packet `netd_from_container` found too big for its uplink, without
/// DF, that must leave translated: masquerade's egress in its stack mode (`snat_v4_egress`'s
/// `STACK`), counted and reported as that program would.
#[inline(always)]
pub fn nat_to_stack(ctx: &TcContext) -> i32 {
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let mut v = Verdict::unparsed(Reason::DropNatFragNeeded);
    // SAFETY: `skb` is the program's valid context pointer.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    if let (Ok(parsed), Some(src)) = (parse(&frame), endpoint_by_ifindex(ifindex)) {
        v.class = parsed.class;
        v.flags = parsed.flags;
        v.vlan_id = parsed.vlan_id;
        v.tuple = parsed.tuple;
        v.slot = src.slot;
        v.trace = src.flags & EndpointInfo::TRACE != 0;
        let known = NETD_NAT.get_ptr_mut(&parsed.tuple.key());
        let mut t = NatTarget { ifindex: 0, via_neigh: false, via_peer: false };
        v.reason = snat_v4_egress::<true>(ctx, &frame, &parsed, src, known, &mut t);
    }
    exit(ctx, &v)
}

/// The verdict for a well-formed frame from endpoint `src`. [`Reason::RedirectPeer`] names the
/// peer endpoint in `peer`; [`Reason::RedirectNat`] means "a known masqueraded flow", whose
/// entry is in `flow`.
#[inline(always)]
fn decide(
    frame: &Frame,
    p: &Parsed,
    src: &EndpointInfo,
    peer: &mut Option<&'static EndpointInfo>,
    flow: &mut Option<*mut NatEntry>,
) -> Reason {
    let Some(l2) = frame.header::<{ eth::HLEN }>(0) else {
        return Reason::DropShortEthernet;
    };
    let src_mac = (l2.raw32::<{ eth::SRC_OFF }>(), l2.raw16::<{ eth::SRC_OFF + 4 }>());
    if src_mac != src.mac_words() {
        return Reason::DropSpoofedMac;
    }
    match p.class {
        PacketClass::Arp => {
            let Some(a) = frame.header::<{ arp::LEN }>(p.l3_off) else {
                return Reason::DropShortArp;
            };
            let sha = (a.raw32::<{ arp::SHA_OFF }>(), a.raw16::<{ arp::SHA_OFF + 4 }>());
            let spa = a.raw32::<{ arp::SPA_OFF }>();
            // An ARP probe has sender address 0.0.0.0.
            if sha != src.mac_words() || (spa != 0 && spa != src.ip) {
                return Reason::DropSpoofedIp;
            }
            Reason::PassArp
        }
        PacketClass::Ipv4Tcp
        | PacketClass::Ipv4Udp
        | PacketClass::Ipv4Icmp
        | PacketClass::Ipv4Other
        | PacketClass::Ipv4Fragment => ipv4(l2.raw16::<{ eth::DST_OFF }>(), &p.tuple, src, peer, flow),
        PacketClass::Ipv6 | PacketClass::OtherL2 | PacketClass::Unknown => p.pass_reason(),
    }
}

#[inline(always)]
fn ipv4(
    dst_mac_first: u16,
    t: &Ipv4Tuple,
    src: &EndpointInfo,
    to: &mut Option<&'static EndpointInfo>,
    flow: &mut Option<*mut NatEntry>,
) -> Reason {
    if t.src_addr != src.ip {
        return Reason::DropSpoofedIp;
    }
    let dst = t.dst_addr;
    if src.flags & NetworkFlags::INTERNAL == 0 && dst & src.mask != src.subnet {
        // Most traffic to beyond the subnet belongs to a known flow (masqueraded, or tracked as
        // routed), which was checked against the policy when it was created, or answers a flow
        // to a published port: one lookup settles it (the daemon removes flows that a new
        // network or endpoint would contradict).
        if let Some(e) = NETD_NAT.get_ptr_mut(&t.key()) {
            *flow = Some(e);
            return Reason::RedirectNat;
        }
    }
    let dst_host = u32::from_be(dst);
    // The group bit is the lowest bit of the first byte on the wire.
    let l2_group = u16::from_be(dst_mac_first) & 0x0100 != 0;
    let subnet_broadcast = dst == src.subnet | !src.mask;
    if l2_group || dst_host >> 28 == 0xe || dst_host == u32::MAX || subnet_broadcast {
        return Reason::PassToBridge;
    }
    if let Some(peer) = endpoint_by_ip(dst) {
        if peer.network != src.network {
            return Reason::DropCrossNetwork;
        }
        if src.flags & NetworkFlags::ICC == 0 {
            return Reason::DropIccDisabled;
        }
        *to = Some(peer);
        return Reason::RedirectPeer;
    }
    if dst == src.gateway {
        // An isolated network's gateway is nobody's: the host has no address there.
        return if src.flags & NetworkFlags::ISOLATED != 0 { Reason::DropInternalNetwork } else { Reason::PassToStack };
    }
    if dst & src.mask == src.subnet {
        return Reason::PassToBridge;
    }
    if src.flags & NetworkFlags::INTERNAL != 0 {
        return Reason::DropInternalNetwork;
    }
    let key = aya_ebpf::maps::lpm_trie::Key::new(32, dst);
    if let Some(other) = NETD_NETWORKS.get(&key) {
        // Another network's subnet: only its gateway (a host address) may be reached.
        if dst != other.gateway {
            return Reason::DropCrossNetwork;
        }
    }
    Reason::PassToStack
}

/// Makes the destination MAC the peer's (it already is when the sender resolved the peer with
/// ARP, the common case, and then nothing is written).
#[inline(always)]
fn set_dst_mac(ctx: &TcContext, frame: &Frame, peer: &EndpointInfo) {
    let Some(l2) = frame.header::<{ eth::HLEN }>(0) else {
        return;
    };
    if (l2.raw32::<{ eth::DST_OFF }>(), l2.raw16::<{ eth::DST_OFF + 4 }>()) != peer.mac_words() {
        let _ = ctx.store(eth::DST_OFF, &peer.mac, 0);
    }
}

/// Makes sure the headers the parser reads are in the linear part of the skb: a large or GSO
/// packet may keep part of them in page fragments, where direct packet access cannot see them.
/// A no-op in the common cases: a frame that is all linear, and a segment whose payload alone is
/// in pages (pulling would copy the head of every cloned TCP segment). `L3`: the device has no
/// link-layer header (the frame starts at the IP header).
#[inline(always)]
pub fn pull_headers<const L3: bool>(ctx: &TcContext) {
    let linear = ctx.data_end() - ctx.data();
    let len = ctx.len() as usize;
    if linear >= len || linear >= MAX_HEADERS_LEN {
        return;
    }
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), len);
    let need = if L3 { headers_len_l3(&frame, MAX_HEADERS_LEN) } else { headers_len(&frame, MAX_HEADERS_LEN) };
    if linear < need {
        let want = if len < need { len } else { need };
        // On failure the parser sees the short linear area and drops the frame as truncated.
        let _ = ctx.pull_data(want as u32);
    }
}
