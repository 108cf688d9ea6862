//! The host side: what the host's own stack sends into a network, seen on TCX egress of the
//! network's bridge. An IPv4 unicast frame addressed (MAC and IPv4) to one of the endpoints is
//! handed to the endpoint's host-side veth directly (`bpf_redirect`), which skips the bridge's
//! forwarding database and port logic; the rest (ARP, broadcast, multicast, unknown addresses)
//! goes through the bridge as before, uncounted (the bridge's own statistics count it).

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{EndpointInfo, Ipv4Tuple, PacketClass, Reason};
use netd_ebpf::parse::{eth, ipv4, Frame};

use crate::{
    maps::endpoint_by_ip,
    verdict::{exit, Verdict, NO_ENDPOINT},
};

#[inline(always)]
pub fn to_container(ctx: &TcContext) -> i32 {
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let Some(l2) = frame.header::<{ eth::HLEN }>(0) else {
        return TC_ACT_OK as i32;
    };
    if l2.be16::<{ eth::PROTO_OFF }>() != eth::P_IPV4 {
        return TC_ACT_OK as i32;
    }
    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(eth::HLEN) else {
        return TC_ACT_OK as i32;
    };
    let dst = ip.raw32::<{ ipv4::DST_OFF }>();
    let Some(peer) = endpoint_by_ip(dst) else {
        return TC_ACT_OK as i32;
    };
    let dst_mac = (l2.raw32::<{ eth::DST_OFF }>(), l2.raw16::<{ eth::DST_OFF + 4 }>());
    if dst_mac != peer.mac_words() {
        // Resolved to another MAC (a stale neighbour, a foreign device): the bridge decides.
        return TC_ACT_OK as i32;
    }
    let protocol = ip.u8::<{ ipv4::PROTO_OFF }>();
    let class = match protocol {
        ipv4::PROTO_TCP => PacketClass::Ipv4Tcp,
        ipv4::PROTO_UDP => PacketClass::Ipv4Udp,
        ipv4::PROTO_ICMP => PacketClass::Ipv4Icmp,
        _ => PacketClass::Ipv4Other,
    };
    let v = Verdict {
        reason: Reason::RedirectFromHost,
        class,
        flags: 0,
        vlan_id: 0,
        tuple: Ipv4Tuple { src_addr: ip.raw32::<{ ipv4::SRC_OFF }>(), dst_addr: dst, protocol, ..Ipv4Tuple::default() },
        slot: NO_ENDPOINT,
        target: peer.ifindex,
        via_neigh: false,
        via_peer: false,
        trace: peer.flags & EndpointInfo::TRACE != 0,
    };
    exit(ctx, &v)
}
