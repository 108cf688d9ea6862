//! The sandbox side of the embedded DNS resolver, on TC ingress of a sandbox's `lo`: what is
//! sent to `127.0.0.11:53` goes to the port the resolver is really bound to
//! ([`DNS_RESOLVER_PORT`]), and what the resolver sends from there comes from port 53, so port
//! 53 of every address stays free for the sandbox's own servers. On `lo` everything a socket
//! sends is received again on the same device, so one program on its ingress sees both ways.
//! Docker does the same with iptables DNAT and SNAT rules in the container's namespace, which
//! bring connection tracking into it for every packet; this rewrites one port of the packets
//! concerned and leaves the rest alone.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, TC_ACT_OK},
    programs::TcContext,
};
use netd_common::{PacketClass, PacketFlags, DNS_RESOLVER_ADDR, DNS_RESOLVER_PORT};
use netd_ebpf::parse::{parse, tcp, udp, Frame};

/// Port 53 in wire order.
const DNS_PORT: u16 = 53u16.to_be();

#[inline(always)]
pub fn to_resolver(ctx: &TcContext) -> i32 {
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let Ok(p) = parse(&frame) else {
        return TC_ACT_OK as i32;
    };
    // A zero UDP checksum (none) must stay zero: the helper marks it so.
    let (csum_off, csum_flags) = match p.class {
        PacketClass::Ipv4Udp => (p.l4_off + udp::CSUM_OFF, u64::from(BPF_F_MARK_MANGLED_0)),
        PacketClass::Ipv4Tcp => (p.l4_off + tcp::CSUM_OFF, 0),
        _ => return TC_ACT_OK as i32,
    };
    if p.flags & PacketFlags::FRAGMENT != 0 {
        return TC_ACT_OK as i32;
    }
    let resolver = u32::from_ne_bytes(DNS_RESOLVER_ADDR);
    let bound = DNS_RESOLVER_PORT.to_be();
    let t = &p.tuple;
    let (port_off, old, new) = if t.dst_addr == resolver && t.dst_port == DNS_PORT {
        (p.l4_off + 2, DNS_PORT, bound)
    } else if t.src_addr == resolver && t.src_port == bound {
        (p.l4_off, bound, DNS_PORT)
    } else {
        return TC_ACT_OK as i32;
    };
    if ctx.store(port_off, &new, 0).is_ok() {
        let _ = ctx.l4_csum_replace(csum_off, u64::from(old), u64::from(new), csum_flags | 2);
    }
    TC_ACT_OK as i32
}
