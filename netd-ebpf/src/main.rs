//! netd's eBPF programs. Entry points only dispatch; the work is in the modules.
#![no_std]
#![no_main]

mod dns;
mod host;
mod lxc;
mod maps;
mod nat;
mod uplink;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// Attached (TCX ingress) to the host-side veth of every endpoint: it sees what the container
/// sends. Parses and classifies the frame, drops malformed and spoofed frames and what policy
/// forbids, delivers endpoint-to-endpoint IPv4 straight into the peer's namespace
/// (`TC_ACT_REDIRECT` via `bpf_redirect_peer`), and passes the rest to the kernel (`TC_ACT_OK`).
/// Every exit is counted by reason. Returns a `TC_ACT_*` verdict.
#[classifier]
pub fn netd_from_container(ctx: TcContext) -> i32 {
    lxc::from_container(&ctx)
}

/// Attached (TCX ingress) to every uplink: it sees what arrives from outside. Replies of
/// masqueraded flows (and ICMP errors about them) are translated back and delivered straight
/// into the container's namespace (`bpf_redirect_peer`); packets for a masquerading network's
/// containers that no flow asked for are dropped; everything else passes to the host's stack
/// untouched (`TC_ACT_OK`). Returns a `TC_ACT_*` verdict.
#[classifier]
pub fn netd_from_uplink(ctx: TcContext) -> i32 {
    uplink::from_uplink::<false>(&ctx)
}

/// `netd_from_uplink` for uplinks without a link-layer header (`tun` devices, `WireGuard`, IP
/// tunnels): packets start at the IP header, and those delivered into a container get an
/// Ethernet header on the way. Returns a `TC_ACT_*` verdict.
#[classifier]
pub fn netd_from_l3_uplink(ctx: TcContext) -> i32 {
    uplink::from_uplink::<true>(&ctx)
}

/// Not attached: `netd_from_container` goes on in it (`bpf_tail_call`) with a masqueraded
/// packet too big for its uplink, without DF, which it hands to the stack translated (the stack
/// fragments it). Returns a `TC_ACT_*` verdict.
#[classifier]
pub fn netd_nat_to_stack(ctx: TcContext) -> i32 {
    lxc::nat_to_stack(&ctx)
}

/// Attached (TCX egress) to every network's bridge: it sees what the host's own stack sends
/// into the network. IPv4 unicast for one of the network's endpoints goes to the endpoint's veth
/// directly (`bpf_redirect`), skipping the bridge; the rest passes to the bridge (`TC_ACT_OK`).
#[classifier]
pub fn netd_to_container(ctx: TcContext) -> i32 {
    host::to_container(&ctx)
}

/// Attached (TCX ingress) to the `lo` of every sandbox with the embedded DNS resolver: moves
/// port 53 of `127.0.0.11` to the port the resolver is bound to, and back for its answers.
#[classifier]
pub fn netd_dns_redirect(ctx: TcContext) -> i32 {
    dns::to_resolver(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
