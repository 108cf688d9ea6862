//! The exits of the datapath: every packet leaves through [`exit`], which counts it (by reason
//! and class with one lookup, and for its sending endpoint), reports drops and the packets of
//! traced endpoints (everything when tracing is on at load time), and returns the TC action.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{
    Counter, EndpointReasonKey, Event, Ipv4Tuple, PacketClass, Reason, CLASS_SLOTS, EVENT_KIND_DROP, EVENT_KIND_TRACE,
};

use crate::maps::{
    count_lost_event, NETD_ENDPOINT_COUNTERS, NETD_ENDPOINT_DROPS, NETD_EVENTS, NETD_TRACE, NETD_VERDICTS,
};

/// No sending endpoint (the frame came from a device that is not one).
pub const NO_ENDPOINT: u32 = u32::MAX;

/// What the program decided, and about what.
pub struct Verdict {
    pub reason: Reason,
    pub class: PacketClass,
    pub flags: u8,
    pub vlan_id: u16,
    pub tuple: Ipv4Tuple,
    /// The sending endpoint's counter slot, or [`NO_ENDPOINT`].
    pub slot: u32,
    /// The redirect target (an ifindex) for the `Redirect*` reasons.
    pub target: u32,
    /// [`Reason::RedirectNat`] (and `RedirectNatEvicted`): the next hop's MAC is unknown, the
    /// kernel resolves it.
    pub via_neigh: bool,
    /// [`Reason::RedirectNat`] (and `RedirectNatEvicted`) through a veth uplink: into its peer.
    pub via_peer: bool,
    /// From or to a traced endpoint: reported as a trace event (unless dropped: then as a
    /// drop, as every drop is).
    pub trace: bool,
}

impl Verdict {
    /// `reason` about a frame not parsed yet: no class, tuple, endpoint or target.
    #[inline(always)]
    pub fn unparsed(reason: Reason) -> Self {
        Verdict {
            reason,
            class: PacketClass::Unknown,
            flags: 0,
            vlan_id: 0,
            tuple: Ipv4Tuple::default(),
            slot: NO_ENDPOINT,
            target: 0,
            via_neigh: false,
            via_peer: false,
            trace: false,
        }
    }
}

/// Counts, reports and carries out `v`.
#[inline(always)]
pub fn exit(ctx: &TcContext, v: &Verdict) -> i32 {
    let len = u64::from(ctx.len());
    let drop = v.reason.is_drop();
    if let Some(c) = NETD_VERDICTS.get_ptr_mut(v.reason as u32 * CLASS_SLOTS + v.class as u32) {
        // SAFETY: this CPU's slot; a program is not preempted by itself on one CPU.
        unsafe { add(&mut *c, len) };
    }
    if v.slot != NO_ENDPOINT {
        if let Some(e) = NETD_ENDPOINT_COUNTERS.get_ptr_mut(v.slot) {
            // SAFETY: as above.
            let e = unsafe { &mut *e };
            match v.reason {
                Reason::RedirectPeer => add(&mut e.forwarded, len),
                Reason::RedirectNat | Reason::RedirectNatEvicted | Reason::PassNatToStack => {
                    add(&mut e.masqueraded, len)
                }
                _ if drop => add(&mut e.dropped, len),
                _ => add(&mut e.passed, len),
            }
        }
        if drop {
            count_endpoint_drop(v.slot, v.reason, len);
        }
    }
    if drop {
        emit(ctx, EVENT_KIND_DROP, v);
        return TC_ACT_SHOT;
    }
    if v.trace || tracing() {
        emit(ctx, EVENT_KIND_TRACE, v);
    }
    // SAFETY (each helper): a plain call; an invalid ifindex makes the kernel drop the packet.
    match v.reason {
        Reason::RedirectPeer | Reason::RedirectReverseNat => unsafe { bpf_redirect_peer(v.target, 0) as i32 },
        Reason::RedirectNat | Reason::RedirectNatEvicted if v.via_peer => unsafe {
            bpf_redirect_peer(v.target, 0) as i32
        },
        Reason::RedirectNat | Reason::RedirectNatEvicted if v.via_neigh => unsafe {
            bpf_redirect_neigh(v.target, core::ptr::null_mut(), 0, 0) as i32
        },
        Reason::RedirectNat | Reason::RedirectNatEvicted | Reason::RedirectFromHost => unsafe {
            bpf_redirect(v.target, 0) as i32
        },
        _ => TC_ACT_OK as i32,
    }
}

#[inline(always)]
fn add(c: &mut Counter, len: u64) {
    c.packets += 1;
    c.bytes += len;
}

#[inline(always)]
fn tracing() -> bool {
    // SAFETY: a plain read of a global; volatile so the compiler keeps the load that the
    // loader's rodata value decides.
    unsafe { core::ptr::read_volatile(&raw const NETD_TRACE) != 0 }
}

#[inline(always)]
fn count_endpoint_drop(slot: u32, reason: Reason, len: u64) {
    let key = EndpointReasonKey { slot, reason: reason as u8, pad: 0, pad2: 0 };
    match NETD_ENDPOINT_DROPS.get_ptr_mut(&key) {
        // SAFETY: this CPU's value of a per-CPU map.
        Some(c) => add(unsafe { &mut *c }, len),
        None => {
            // The first drop for this key; a full map loses the per-reason count only.
            let _ = NETD_ENDPOINT_DROPS.insert(&key, &Counter { packets: 1, bytes: len }, 0);
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
    // A full ring drops the event (counted), never the verdict.
    if NETD_EVENTS.output::<Event>(&event, 0).is_err() {
        count_lost_event();
    }
}
