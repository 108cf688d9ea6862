//! netd's eBPF programs. Entry points only dispatch; the work is in the modules.
#![no_std]
#![no_main]

mod maps;
mod verdict;

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_ebpf::parse::{parse, Frame};

/// Attached (TCX ingress) to the host-side veth of every endpoint: it sees what the container
/// sends. Today it parses, classifies and counts every frame, drops malformed IPv4 with a counted
/// reason, and passes the rest to the kernel (`TC_ACT_OK`). Returns a `TC_ACT_*` verdict.
#[classifier]
pub fn netd_from_container(ctx: TcContext) -> i32 {
    pull_headers(&ctx);
    let frame = Frame::new(ctx.data(), ctx.data_end());
    match parse(&frame) {
        Ok(parsed) => verdict::pass(&ctx, &parsed),
        Err(malformed) => verdict::drop_malformed(&ctx, &malformed),
    }
}

/// Makes sure the headers the parser reads are in the linear part of the skb: a large or
/// GSO packet may keep part of them in page fragments, where direct packet access cannot see
/// them. A no-op in the common case (the headers are already linear).
#[inline(always)]
fn pull_headers(ctx: &TcContext) {
    let linear = ctx.data_end() - ctx.data();
    let len = ctx.len() as usize;
    if linear < len && linear < MAX_HEADERS_LEN {
        let want = if len < MAX_HEADERS_LEN {
            len
        } else {
            MAX_HEADERS_LEN
        };
        // On failure the parser sees the short linear area and drops the frame as truncated.
        let _ = ctx.pull_data(want as u32);
    }
}

/// Ethernet + one VLAN tag + the largest IPv4 header + the largest TCP header.
const MAX_HEADERS_LEN: usize = 14 + 4 + 60 + 60;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
