//! The uplink side: what arrives from outside, seen on TC ingress of each uplink. Only replies
//! of masqueraded flows are netd's (see `nat`); the host's own traffic passes untouched.
//!
//! Two programs share this code: `netd_from_uplink` for Ethernet uplinks, and
//! `netd_from_l3_uplink` for uplinks without a link-layer header (`tun` devices such as
//! `tailscale0` or OpenVPN's `tun0`, `WireGuard`, IP tunnels), whose packets start at the IP
//! header. A packet of the latter that goes into a container gets an Ethernet header once it
//! is translated ([`push_ethernet`]): the container's veth carries Ethernet.

use aya_ebpf::{helpers::generated::bpf_skb_change_head, programs::TcContext};
use netd_common::{EndpointInfo, PacketClass, Reason, UplinkInfo};
use netd_ebpf::parse::{eth, parse, parse_l3, Frame};

use crate::{
    lxc::pull_headers,
    maps::{endpoint_by_ifindex, NETD_UPLINKS},
    nat::{snat_v4_ingress, NatTarget},
    verdict::{exit, Verdict},
};

/// `L3`: the uplink has no link-layer header.
#[inline(always)]
pub fn from_uplink<const L3: bool>(ctx: &TcContext) -> i32 {
    pull_headers::<L3>(ctx);
    let frame = Frame::with_len(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let mut v = Verdict::unparsed(Reason::PassFromUplink);
    // Malformed frames are the host's to judge, not netd's.
    let parsed = if L3 { parse_l3(&frame) } else { parse(&frame) };
    let Ok(parsed) = parsed else {
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
                v.reason = snat_v4_ingress::<L3>(ctx, &frame, &parsed, uplink, ifindex, &mut t);
                v.target = t.ifindex;
                if L3 && v.reason == Reason::RedirectReverseNat {
                    v.reason = push_ethernet(ctx, t.ifindex);
                }
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

/// Gives an IPv4 packet from an uplink without a link-layer header, translated for the container
/// behind veth `veth`, the Ethernet header that container's `eth0` expects: to its MAC, from no
/// one (zeros: the source matters to no one, as on Ethernet uplinks), IPv4. Only packets going
/// into a container pay for it; the host's own traffic stays as it came. Returns the verdict:
/// [`Reason::DropNoEthernet`] when the header cannot be added (the endpoint just went, or no
/// memory for it): the packet is already rewritten and cannot go to the host.
#[inline(always)]
fn push_ethernet(ctx: &TcContext, veth: u32) -> Reason {
    let Some(ep) = endpoint_by_ifindex(veth) else {
        return Reason::DropNoEthernet;
    };
    let mut head = [0u8; eth::HLEN];
    head[eth::DST_OFF..eth::DST_OFF + 6].copy_from_slice(&ep.mac);
    head[eth::PROTO_OFF..].copy_from_slice(&eth::P_IPV4.to_be_bytes());
    // SAFETY: a plain helper call on the program's own packet.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, eth::HLEN as u32, 0) } != 0 {
        return Reason::DropNoEthernet;
    }
    match ctx.store(0, &head, 0) {
        Ok(()) => Reason::RedirectReverseNat,
        Err(_) => Reason::DropNoEthernet,
    }
}
