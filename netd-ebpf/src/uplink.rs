//! The uplink side: what arrives from outside, seen on TC ingress of each uplink. Only replies
//! of masqueraded flows are netd's (see `nat`); the host's own traffic passes untouched.

use aya_ebpf::programs::TcContext;
use netd_common::{EndpointInfo, Ipv4Tuple, PacketClass, Reason, UplinkInfo};
use netd_ebpf::parse::{parse, Frame};

use crate::{
    lxc::pull_headers,
    maps::{endpoint_by_ifindex, NETD_UPLINKS},
    nat::{snat_v4_ingress, NatTarget},
    verdict::{exit, Verdict, NO_ENDPOINT},
};

#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> i32 {
    pull_headers(ctx);
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let mut v = Verdict {
        reason: Reason::PassFromUplink,
        class: PacketClass::Unknown,
        flags: 0,
        vlan_id: 0,
        tuple: Ipv4Tuple::default(),
        slot: NO_ENDPOINT,
        target: 0,
        via_neigh: false,
        via_peer: false,
        trace: false,
    };
    // Malformed frames are the host's to judge, not netd's.
    let Ok(parsed) = parse(&frame) else {
        return exit(ctx, &v);
    };
    v.class = parsed.class;
    v.flags = parsed.flags;
    v.vlan_id = parsed.vlan_id;
    v.tuple = parsed.tuple;
    match parsed.class {
        PacketClass::Ipv4Tcp
        | PacketClass::Ipv4Udp
        | PacketClass::Ipv4Icmp
        | PacketClass::Ipv4Other
        | PacketClass::Ipv4Fragment => {
            // SAFETY: `skb` is the program's valid context pointer.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            // SAFETY: read-only map value, valid for the duration of the program.
            if let Some(uplink) = unsafe { NETD_UPLINKS.get(&ifindex) } {
                let mut t = NatTarget { ifindex: 0, via_neigh: false, via_peer: false };
                v.reason = snat_v4_ingress(ctx, &frame, &parsed, uplink, ifindex, &mut t);
                v.target = t.ifindex;
                // Only while some endpoint is traced is the container looked up.
                if uplink.flags & UplinkInfo::TRACE != 0 && v.reason == Reason::RedirectReverseNat {
                    v.trace = endpoint_by_ifindex(t.ifindex).is_some_and(|e| e.flags & EndpointInfo::TRACE != 0);
                }
            }
        }
        _ => {}
    }
    exit(ctx, &v)
}
