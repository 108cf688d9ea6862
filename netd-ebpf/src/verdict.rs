//! The exits of the datapath: every packet leaves through one of these, which count it and, for
//! drops (or when tracing), emit an event.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use netd_common::{Counter, Event, PacketClass, Reason, EVENT_KIND_DROP, EVENT_KIND_TRACE};
use netd_ebpf::parse::{Malformed, Parsed};

use crate::maps::{NETD_CLASSES, NETD_EVENTS, NETD_REASONS, NETD_TRACE};

/// Lets a parsed packet continue into the kernel unchanged.
#[inline(always)]
pub fn pass(ctx: &TcContext, parsed: &Parsed) -> i32 {
    let reason = parsed.pass_reason();
    let len = ctx.len();
    count(&NETD_REASONS, reason as u32, len);
    count(&NETD_CLASSES, parsed.class as u32, len);
    if tracing() {
        emit(
            ctx,
            EVENT_KIND_TRACE,
            reason,
            parsed.class,
            parsed.flags,
            parsed.vlan_id,
            parsed,
        );
    }
    TC_ACT_OK as i32
}

/// The one exit for a malformed frame: counted by reason, reported, dropped.
#[inline(always)]
pub fn drop_malformed(ctx: &TcContext, m: &Malformed) -> i32 {
    let len = ctx.len();
    count(&NETD_REASONS, m.reason as u32, len);
    count(&NETD_CLASSES, PacketClass::Unknown as u32, len);
    let none = Parsed {
        class: PacketClass::Unknown,
        flags: m.flags,
        vlan_id: m.vlan_id,
        l3_off: 0,
        l4_off: 0,
        tuple: netd_common::Ipv4Tuple::default(),
    };
    emit(
        ctx,
        EVENT_KIND_DROP,
        m.reason,
        PacketClass::Unknown,
        m.flags,
        m.vlan_id,
        &none,
    );
    TC_ACT_SHOT
}

#[inline(always)]
fn tracing() -> bool {
    // SAFETY: a plain read of a global; volatile so the compiler keeps the load that the
    // loader's rodata value decides.
    unsafe { core::ptr::read_volatile(&raw const NETD_TRACE) != 0 }
}

#[inline(always)]
fn count(map: &aya_ebpf::maps::PerCpuArray<Counter>, index: u32, len: u32) {
    if let Some(c) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot of this CPU; BPF programs are not preempted by themselves on it.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
        }
    }
}

#[inline(always)]
fn emit(
    ctx: &TcContext,
    kind: u8,
    reason: Reason,
    class: PacketClass,
    flags: u8,
    vlan_id: u16,
    parsed: &Parsed,
) {
    let event = Event {
        kind,
        reason: reason as u8,
        class: class as u8,
        flags,
        // SAFETY: `skb` is the program's valid context pointer.
        ifindex: unsafe { (*ctx.skb.skb).ifindex },
        len: ctx.len(),
        vlan_id,
        pad: [0; 2],
        tuple: parsed.tuple,
    };
    // A full ring drops the event, never the verdict.
    let _ = NETD_EVENTS.output::<Event>(&event, 0);
}
