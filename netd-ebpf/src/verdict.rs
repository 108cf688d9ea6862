//! The exits of the datapath: every packet leaves through [`exit`], which counts it (globally, by
//! class, and per sending endpoint), reports drops (and everything when tracing), and returns
//! the TC action.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::bpf_redirect_peer,
    maps::PerCpuArray,
    programs::TcContext,
};
use netd_common::{
    Counter, EndpointReasonKey, Event, Ipv4Tuple, PacketClass, Reason, EVENT_KIND_DROP,
    EVENT_KIND_TRACE,
};

use crate::maps::{NETD_CLASSES, NETD_ENDPOINT_STATS, NETD_EVENTS, NETD_REASONS, NETD_TRACE};

/// What the program decided, and about what.
pub struct Verdict {
    pub reason: Reason,
    pub class: PacketClass,
    pub flags: u8,
    pub vlan_id: u16,
    pub tuple: Ipv4Tuple,
    /// The sending endpoint's host veth (0: not an endpoint).
    pub endpoint: u32,
    /// The redirect target for [`Reason::RedirectPeer`].
    pub target: u32,
}

/// Counts, reports and carries out `v`.
#[inline(always)]
pub fn exit(ctx: &TcContext, v: &Verdict) -> i32 {
    let len = ctx.len();
    count(&NETD_REASONS, v.reason as u32, len);
    count(&NETD_CLASSES, v.class as u32, len);
    if v.endpoint != 0 {
        count_endpoint(v.endpoint, v.reason, len);
    }
    if v.reason.is_drop() {
        emit(ctx, EVENT_KIND_DROP, v);
        return TC_ACT_SHOT;
    }
    if tracing() {
        emit(ctx, EVENT_KIND_TRACE, v);
    }
    if let Reason::RedirectPeer = v.reason {
        // SAFETY: a plain helper call; an invalid ifindex makes the kernel drop the packet.
        return unsafe { bpf_redirect_peer(v.target, 0) } as i32;
    }
    TC_ACT_OK as i32
}

#[inline(always)]
fn tracing() -> bool {
    // SAFETY: a plain read of a global; volatile so the compiler keeps the load that the
    // loader's rodata value decides.
    unsafe { core::ptr::read_volatile(&raw const NETD_TRACE) != 0 }
}

#[inline(always)]
fn count(map: &PerCpuArray<Counter>, index: u32, len: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: this CPU's slot; a program is not preempted by itself on one CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}

#[inline(always)]
fn count_endpoint(ifindex: u32, reason: Reason, len: u32) {
    let key = EndpointReasonKey {
        ifindex,
        reason: reason as u8,
        pad: [0; 3],
    };
    match NETD_ENDPOINT_STATS.get_ptr_mut(&key) {
        // SAFETY: this CPU's value of a per-CPU map.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        },
        None => {
            // The first packet for this key; a full map loses the per-endpoint count only.
            let _ = NETD_ENDPOINT_STATS.insert(
                &key,
                &Counter {
                    packets: 1,
                    bytes: u64::from(len),
                },
                0,
            );
        }
    }
}

#[inline(always)]
fn emit(ctx: &TcContext, kind: u8, v: &Verdict) {
    let event = Event {
        kind,
        reason: v.reason as u8,
        class: v.class as u8,
        flags: v.flags,
        // SAFETY: `skb` is the program's valid context pointer.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len: ctx.len(),
        vlan_id: v.vlan_id,
        pad: [0; 2],
        tuple: v.tuple,
        target: v.target,
        pad2: 0,
    };
    // A full ring drops the event, never the verdict.
    let _ = NETD_EVENTS.output::<Event>(&event, 0);
}
