//! Masquerade: SNAT with netd's own connection tracking (`NETD_NAT`, layout and expiry rules in
//! `netd_common::nat`).
//!
//! - [`snat_v4_egress`]: a packet from an endpoint of a masquerading network to the outside. The
//!   FIB picks the uplink; the flow's entry pair is found or created (the container's own port
//!   when it is in the NAT range and free, else random ports, a bounded number of attempts); the
//!   source becomes the uplink's address and the NAT port, the TTL drops by one, checksums are
//!   updated incrementally, and the packet leaves by the uplink (`bpf_redirect`, or
//!   `bpf_redirect_neigh` when the next hop's MAC is not known yet).
//! - [`snat_v4_ingress`]: a packet arriving on an uplink. A reply of a translated flow (or an
//!   ICMP error about one, RFC 5508: the embedded packet is translated too) gets the container's
//!   address and port back and goes straight into its namespace (`bpf_redirect_peer`). Anything
//!   else is the host's and passes untouched, except packets for a masquerading network's
//!   containers that no flow asked for.
//! - Fragments are translated one by one, by their datagram's first (`NETD_NAT_FRAGS`): no
//!   reassembly.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{
        bpf_check_mtu_flags::BPF_MTU_CHK_SEGS,
        bpf_check_mtu_ret::{BPF_MTU_CHK_RET_FRAG_NEEDED, BPF_MTU_CHK_RET_SEGS_TOOBIG},
        bpf_fib_lookup as FibParams, BPF_ANY, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST,
    },
    helpers::{
        bpf_get_prandom_u32,
        generated::{bpf_check_mtu, bpf_fib_lookup, bpf_jiffies64, bpf_ktime_get_coarse_ns},
    },
    programs::TcContext,
};
use netd_common::{
    nat::{
        egress_key, evictable, flow_expired, mtu_class, mtu_floor, reply_key, trusted_key, NAT_PORT_ATTEMPTS,
        NAT_REFRESH_NS,
    },
    EndpointInfo, FragEntry, FragKey, Ipv4Tuple, NatConfig, NatEntry, NatEvent, NatFlags, NatTimeouts, NetworkFlags,
    PacketClass, PublishedKey, PublishedPort, Reason, UplinkInfo, EVENT_KIND_NAT_NEW, NAT_FRAG_TIMEOUT_NS,
    TAIL_NAT_TO_STACK,
};
use netd_ebpf::{
    csum,
    parse::{eth, icmp, ipv4, tcp, udp, Frame, HeaderMut, Parsed},
};

use crate::maps::{
    count_lost_event, endpoint_by_ip, CANDIDATE_RING_LEN, NETD_CLOCK, NETD_EVENTS, NETD_HOST_ADDRS, NETD_NAT,
    NETD_NAT_CANDIDATES, NETD_NAT_CONFIG, NETD_NAT_FRAGS, NETD_NAT_TIMEOUTS, NETD_NETWORKS, NETD_PUBLISHED,
    NETD_ROUTES, NETD_TAILS, NETD_TRUSTED, NETD_UPLINKS, ROUTE_SLOTS,
};

const AF_INET: u8 = 2;
const EEXIST: i32 = 17;

/// `CLOCK_MONOTONIC_COARSE` in ns, what `bpf_ktime_get_coarse_ns` returns (the clock of the
/// entries' times, which the daemon's collector reads too), with the helper called about once
/// per tick. That clock only moves on a tick, when `jiffies` does, and `bpf_jiffies64` is a load
/// the verifier inlines; a helper call costs ~15 ns per packet here (both masquerade paths under
/// repeated test runs, 2026-12-01). A reading is within a tick of the helper's: at a tick
/// `jiffies` moves a moment before the clock, and CPUs refreshing at once may store either's.
#[inline(always)]
fn coarse_now() -> u64 {
    // SAFETY: a plain helper call (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    let c = &raw mut NETD_CLOCK;
    // SAFETY: a global of the program; CPUs that race store readings at most a tick apart.
    unsafe {
        if core::ptr::read_volatile(&raw const (*c).jiffies) != jiffies {
            let ns = bpf_ktime_get_coarse_ns();
            core::ptr::write_volatile(&raw mut (*c).ns, ns);
            core::ptr::write_volatile(&raw mut (*c).jiffies, jiffies);
            return ns;
        }
        core::ptr::read_volatile(&raw const (*c).ns)
    }
}

/// Where a translated packet goes.
pub struct NatTarget {
    pub ifindex: u32,
    /// Egress only: the next hop's MAC is unknown, let the kernel resolve it.
    pub via_neigh: bool,
    /// Egress only: deliver into the uplink's peer (a veth uplink, [`NatFlags::PEER`]).
    pub via_peer: bool,
}

/// What an egress packet's header says, read before anything is written.
struct L4 {
    /// Offset of the checksum that covers the port/identifier (TCP, UDP or ICMP).
    csum_off: usize,
    /// Checksum flags for `bpf_l4_csum_replace` (UDP keeps a zero checksum zero).
    csum_flags: u64,
    /// Whether the L4 checksum covers the addresses (TCP, UDP: yes; ICMP: no).
    pseudo: bool,
    /// Offset of the port/identifier that NAT rewrites.
    port_off: usize,
    /// TCP flags ([`NatFlags`] `TCP_*` bits) of this packet.
    nat_flags: u8,
}

#[inline(always)]
fn l4_of(frame: &Frame, p: &Parsed, rewrite_src: bool) -> Result<L4, Reason> {
    match p.class {
        PacketClass::Ipv4Tcp => {
            let Some(t) = frame.header::<{ tcp::MIN_HLEN }>(p.l4_off) else {
                return Err(Reason::DropShortTcp);
            };
            let f = t.u8::<{ tcp::FLAGS_OFF }>();
            let mut nat_flags = 0;
            if f & tcp::SYN != 0 {
                nat_flags |= NatFlags::TCP_SYN;
            }
            if f & tcp::FIN != 0 {
                nat_flags |= NatFlags::TCP_FIN;
            }
            if f & tcp::RST != 0 {
                nat_flags |= NatFlags::TCP_RST;
            }
            Ok(L4 {
                csum_off: p.l4_off + tcp::CSUM_OFF,
                csum_flags: 0,
                pseudo: true,
                port_off: p.l4_off + if rewrite_src { tcp::SPORT_OFF } else { tcp::DPORT_OFF },
                nat_flags,
            })
        }
        PacketClass::Ipv4Udp => Ok(L4 {
            csum_off: p.l4_off + udp::CSUM_OFF,
            csum_flags: u64::from(BPF_F_MARK_MANGLED_0),
            pseudo: true,
            port_off: p.l4_off + if rewrite_src { udp::SPORT_OFF } else { udp::DPORT_OFF },
            nat_flags: 0,
        }),
        _ => Ok(L4 {
            csum_off: p.l4_off + icmp::CSUM_OFF,
            csum_flags: 0,
            pseudo: false,
            port_off: p.l4_off + icmp::ID_OFF,
            nat_flags: 0,
        }),
    }
}

/// The next hop of a masqueraded flow, from the route lookup.
struct Hop {
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
    /// The MACs are known (else the kernel resolves the neighbour: `bpf_redirect_neigh`), or
    /// the device has no link layer and needs none.
    l2: bool,
    /// The device's MTU (see [`mtu_class`]).
    mtu_class: u8,
}

/// A route lookup's parameters, 8-byte aligned so they can be zeroed a word at a time.
#[repr(C, align(8))]
struct Fib(FibParams);

const _: () = assert!(size_of::<Fib>() == 64);

/// Zeroes `slot` in place with 8-byte stores and returns it: `core::mem::zeroed` and
/// `[0; N]` fields make the BPF target call a `memset` subprogram that writes one byte at a
/// time (and spills the caller's registers around the call).
///
/// # Safety
/// All-zero bytes must be a valid `T`.
#[inline(always)]
unsafe fn zeroed_in<T>(slot: &mut MaybeUninit<T>) -> &mut T {
    const { assert!(size_of::<T>() % 8 == 0 && align_of::<T>() >= 8) };
    let words = slot.as_mut_ptr().cast::<u64>();
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: inside `slot`, 8-byte aligned; volatile, so the stores stay stores.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: every byte is written, and the caller vouches that all-zero is a valid `T`.
    unsafe { slot.assume_init_mut() }
}

/// Looks up the route of `p` (from endpoint veth `ifindex`; `tot_len`: its IPv4 total length,
/// host order), and whether it fits the route's device (`to_stack`: see [`too_big`]). `Err`
/// carries the verdict when the packet is not to be masqueraded here: the stack answers or
/// routes it.
///
/// Every lookup is kept in this CPU's `NETD_ROUTES`. `shared` (new flows while
/// `NatConfig::SHARED_ROUTES` says routes depend only on where a packet comes from and goes):
/// one kept less than `NAT_REFRESH_NS` before `now` for the same endpoint and destination is
/// taken as it is, as a flow keeps its own route that long. A new flow then skips the
/// helpers, ~300 ns of its cost (a container's connections to one server, 2026-12-02). A
/// known flow's refresh is not shared: each path through the cache costs the verifier states.
#[inline(always)]
fn route<const STACK: bool>(
    ctx: &TcContext,
    p: &Parsed,
    ifindex: u32,
    to_stack: bool,
    tot_len: u16,
    (shared, now): (bool, u64),
) -> Result<Hop, Reason> {
    let (src, dst) = (p.tuple.src_addr, p.tuple.dst_addr);
    // Every index of a per-CPU array is there.
    let Some(c) = NETD_ROUTES.get_ptr_mut(route_slot(dst, ifindex)) else {
        return Err(Reason::PassToStack);
    };
    // SAFETY: this CPU's slot; nothing else runs on it while the program does.
    let c = unsafe { &mut *c };
    let hop = if shared && c.dst == dst && c.src == src && c.from == ifindex && now <= c.at + NAT_REFRESH_NS {
        Hop { ifindex: c.ifindex, smac: c.smac, dmac: c.dmac, l2: c.l2 != 0, mtu_class: c.mtu_class }
    } else {
        let hop = fib_route(ctx, p, ifindex, tot_len)?;
        c.dst = dst;
        c.src = src;
        c.from = ifindex;
        c.at = now;
        c.ifindex = hop.ifindex;
        c.smac = hop.smac;
        c.dmac = hop.dmac;
        c.mtu_class = hop.mtu_class;
        c.l2 = u8::from(hop.l2);
        hop
    };
    // What may not fit (see `mtu_floor`) is weighed against the device.
    if !STACK
        && (ctx.len() as usize - p.l3_off) as u32 > mtu_floor(hop.mtu_class)
        && !fits_mtu(ctx, hop.ifindex, tot_len).0
    {
        return Err(too_big::<STACK>(to_stack));
    }
    Ok(hop)
}

/// The route of `p` as `bpf_fib_lookup` finds it (see [`route`]), with its device's MTU.
#[inline(always)]
fn fib_route(ctx: &TcContext, p: &Parsed, ifindex: u32, tot_len: u16) -> Result<Hop, Reason> {
    let mut fib = MaybeUninit::<Fib>::uninit();
    // SAFETY: all-zero is a valid value of this plain C struct.
    let fib = unsafe { &mut zeroed_in(&mut fib).0 };
    fib.family = AF_INET;
    fib.l4_protocol = p.tuple.protocol;
    fib.sport = p.tuple.src_port;
    fib.dport = p.tuple.dst_port;
    fib.__bindgen_anon_3.ipv4_src = p.tuple.src_addr;
    fib.__bindgen_anon_4.ipv4_dst = p.tuple.dst_addr;
    fib.ifindex = ifindex;
    // SAFETY: `fib` is a valid, writable lookup structure of the size passed.
    let rc = unsafe { bpf_fib_lookup(ctx.skb.skb.cast(), &raw mut *fib, size_of::<FibParams>() as i32, 0) } as u32;
    let l2 = match rc {
        BPF_FIB_LKUP_RET_SUCCESS => true,
        // A device without a link layer (a tunnel) needs no neighbour; the helper may find none
        // there (point-to-point devices keep theirs under another key).
        // SAFETY: read-only map value.
        BPF_FIB_LKUP_RET_NO_NEIGH => {
            unsafe { NETD_UPLINKS.get(&fib.ifindex) }.is_some_and(|u| u.flags & UplinkInfo::L3 != 0)
        }
        // The helper weighs the frame against the device's MTU plus its link-layer header: a
        // full-size frame from a veth (14 bytes of Ethernet) reads as too big for a tunnel
        // (none). The caller weighs what leaves, the IP packet. (It only says this of a
        // success: the route and its neighbour were found.)
        BPF_FIB_LKUP_RET_FRAG_NEEDED => true,
        // Unreachable, prohibited, local...: the stack answers or delivers.
        _ => return Err(Reason::PassToStack),
    };
    // The device's MTU, for the flow to weigh its packets by.
    let (_, mtu) = fits_mtu(ctx, fib.ifindex, tot_len);
    Ok(Hop { ifindex: fib.ifindex, smac: fib.smac, dmac: fib.dmac, l2, mtu_class: mtu_class(mtu) })
}

/// The slot of [`NETD_ROUTES`] for destination `dst` from endpoint veth `from`.
#[inline(always)]
fn route_slot(dst: u32, from: u32) -> u32 {
    (dst ^ from.rotate_left(16)).wrapping_mul(0x9e37_79b1) >> (32 - ROUTE_SLOTS.trailing_zeros())
}

/// The verdict for a packet too big for its route. The stack may have it as it is
/// (`to_stack`) with DF (it sends "fragmentation needed" back: path MTU discovery works, as
/// through Docker's forwarding) or on a network without masquerade (it forwards it unchanged,
/// in fragments, as Docker's path does). Else it must leave translated, in fragments, which
/// netd does not cut: [`Reason::PassNatToStack`], which the caller of [`snat_v4_egress`] turns
/// into a tail call ([`to_stack_tail`]): `netd_nat_to_stack` translates the packet (nothing
/// is written to it before) and hands it to the stack, which cuts it. (`STACK`: in that
/// program, where nothing is too big.)
#[inline(always)]
fn too_big<const STACK: bool>(to_stack: bool) -> Reason {
    if to_stack {
        Reason::PassToStack
    } else if STACK {
        Reason::DropNatFragNeeded
    } else {
        Reason::PassNatToStack
    }
}

/// Whether the stack takes translated packets from the bridges ([`NatConfig::STACK_FRAGMENTS`]:
/// the daemon set `accept_local` on them and found no strict `rp_filter`).
#[inline(always)]
fn stack_takes_translated() -> bool {
    NETD_NAT_CONFIG.get(0).is_some_and(|c| c.flags & NatConfig::STACK_FRAGMENTS != 0)
}

/// Goes on in `netd_nat_to_stack` (`snat_v4_egress::<true>`) with a packet too big for its
/// route that must leave translated (see [`too_big`]). A program of its own: in this one, the
/// verifier would follow that path from every state the main path reaches it with, past its
/// limit; and one call site, after masquerade's egress, rather than one per way a packet can
/// be too big, keeps the hot code small. Returns only when the program is not there (a
/// datapath being loaded): the packet is dropped.
#[inline(always)]
pub fn to_stack_tail(ctx: &TcContext) -> Reason {
    // SAFETY: a plain helper call; it returns only on failure.
    unsafe { NETD_TAILS.tail_call(ctx, TAIL_NAT_TO_STACK) };
    Reason::DropNatFragNeeded
}

/// The verdict for a packet too big for its route that goes to the stack (see [`too_big`]):
/// `translated`, or as it came (tracked all the same).
#[inline(always)]
fn to_stack_verdict(translated: bool) -> Reason {
    if translated {
        Reason::PassNatToStack
    } else {
        Reason::PassToStack
    }
}

/// The TTL and protocol word (as it lies in memory) with the TTL one lower.
#[inline(always)]
fn ttl_less_one(ttl_word: u16) -> u16 {
    let b = ttl_word.to_ne_bytes();
    u16::from_ne_bytes([b[0] - 1, b[1]])
}

/// Whether the packet (IPv4 total length `tot_len`, host order) fits device `ifindex`'s MTU,
/// and the MTU. A GSO packet fits when its segments do (the device or the stack cuts it).
/// Measured on the IP packet, whatever link-layer header the frame and the device have.
#[inline(always)]
fn fits_mtu(ctx: &TcContext, ifindex: u32, tot_len: u16) -> (bool, u32) {
    // SAFETY: `skb` is the program's valid context pointer.
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let (mut len, flags) = if gso { (0, u64::from(BPF_MTU_CHK_SEGS)) } else { (u32::from(tot_len), 0) };
    // SAFETY: a plain helper call; `len` is ours and writable.
    let rc = unsafe { bpf_check_mtu(ctx.skb.skb.cast(), ifindex, &raw mut len, 0, flags) };
    // An error (the device went) is not a size: the redirect will tell.
    let too_big = rc == i64::from(BPF_MTU_CHK_RET_FRAG_NEEDED) || rc == i64::from(BPF_MTU_CHK_RET_SEGS_TOOBIG);
    (!too_big, len)
}

/// Masquerades a packet from endpoint `src` to `p.tuple.dst_addr`, an address outside every
/// local network; `known` is the flow's egress entry as the caller looked it up (`None`: a new
/// flow; the caller's lookup is the only one, a new flow pays for no second miss). Returns
/// the verdict; on [`Reason::RedirectNat`] (or [`Reason::RedirectNatEvicted`]: a new flow that
/// evicted another from a full table) the packet is rewritten and `target` says where it
/// goes. [`Reason::PassToStack`] leaves it to the kernel unchanged (no route through an uplink,
/// TTL expiring, a path MTU error the stack must report). [`Reason::PassNatToStack`] (not
/// `STACK`): too big for its route, for `netd_nat_to_stack` (see [`too_big`]), unchanged.
///
/// A known flow skips the route lookup: its entry keeps the next hop, looked up again at most
/// every `NAT_REFRESH_NS`.
///
/// `STACK`: in `netd_nat_to_stack`, with a packet [`too_big`] for its route that must leave
/// translated. The flow is found or made as any other's; the packet is translated but keeps
/// its TTL and MACs, and goes to the stack ([`Reason::PassNatToStack`]; untranslated, a flow
/// tracked as it is, [`Reason::PassToStack`]), which forwards it in fragments, as Docker's
/// path does. Only while the daemon says the stack takes translated packets from the bridges
/// ([`NatConfig::STACK_FRAGMENTS`]); else it is dropped ([`Reason::DropNatFragNeeded`]) and
/// no flow is made for it.
#[inline(always)]
pub fn snat_v4_egress<const STACK: bool>(
    ctx: &TcContext,
    frame: &Frame,
    p: &Parsed,
    src: &EndpointInfo,
    known: Option<*mut NatEntry>,
    target: &mut NatTarget,
) -> Reason {
    let masquerade = src.flags & NetworkFlags::MASQUERADE != 0;
    // What cannot be tracked: dropped on a masquerading network (it would leave with the
    // container's own address), routed unchanged by the stack on others, and on
    // `nat-unprotected` ones (answers to what the outside sent them directly).
    let untracked = if masquerade && src.flags & NetworkFlags::UNPROTECTED == 0 {
        Reason::DropNatUnsupported
    } else {
        Reason::PassToStack
    };
    if p.class == PacketClass::Ipv4Fragment {
        // A later fragment: translated as its first was (a first fragment is a packet of its
        // flow like any other, and leaves the flow's key below).
        return snat_v4_egress_later_fragment::<STACK>(ctx, frame, p, masquerade, target);
    }
    match p.class {
        PacketClass::Ipv4Tcp | PacketClass::Ipv4Udp => {}
        PacketClass::Ipv4Icmp => {
            let Some(h) = frame.header::<{ icmp::HLEN }>(p.l4_off) else {
                return Reason::DropShortIcmp;
            };
            match h.u8::<{ icmp::TYPE_OFF }>() {
                icmp::ECHO_REQUEST => {}
                icmp::DEST_UNREACH | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM => {
                    return match snat_v4_icmp_error_egress(ctx, p, target) {
                        Reason::DropNatUnsupported => untracked,
                        r => r,
                    };
                }
                _ => return untracked,
            }
        }
        _ => return untracked,
    }
    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(p.l3_off) else {
        return Reason::DropShortIpv4;
    };
    let ttl_word = ip.raw16::<{ ipv4::TTL_OFF }>();
    if ip.u8::<{ ipv4::TTL_OFF }>() <= 1 {
        // The stack answers with "time exceeded", as a router must.
        return Reason::PassToStack;
    }
    let df = ip.be16::<{ ipv4::FRAG_OFF }>() & ipv4::DF != 0;
    // What does not fit the route's MTU may go to the stack (see `too_big`).
    let to_stack = df || !masquerade;
    let tot_len = ip.be16::<{ ipv4::TOT_LEN_OFF }>();
    let l4 = match l4_of(frame, p, true) {
        Ok(l4) => l4,
        Err(r) => return r,
    };

    let now = coarse_now();
    let key = p.tuple.key();
    let (nat_addr, nat_port, ifindex, macs, verdict, peer) = if let Some(e) = known {
        // SAFETY: a live map value; concurrent writers only race on refresh fields.
        let e = unsafe { &mut *e };
        let stale = now > e.last_seen + NAT_REFRESH_NS;
        let syn = l4.nat_flags & NatFlags::TCP_SYN != 0;
        if syn || stale {
            // A SYN on a closed connection (the container reused its port), or a packet after
            // a quiet while on an expired flow: the flow starts over.
            restart_if_over(&key, e, syn, stale, now);
        }
        if e.flags & NatFlags::L2 == 0 || stale {
            // Follow route and neighbour changes, once a second per flow.
            match route::<STACK>(ctx, p, src.ifindex, to_stack, tot_len, (false, now)) {
                Ok(h) => {
                    if h.ifindex != e.ifindex {
                        // The route moved to another device: into its peer no more (the mark
                        // was the first device's, a veth uplink's).
                        e.flags &= !NatFlags::PEER;
                    }
                    e.ifindex = h.ifindex;
                    e.smac = h.smac;
                    e.dmac = h.dmac;
                    e.mtu_class = h.mtu_class;
                    e.flags = if h.l2 { e.flags | NatFlags::L2 } else { e.flags & !NatFlags::L2 };
                }
                Err(r) => return r,
            }
        }
        // What may not fit the route's MTU (a full-size packet, a GSO one) is weighed against
        // the device (after a refresh above, a second time: once a second at most).
        if !STACK
            && (ctx.len() as usize - p.l3_off) as u32 > mtu_floor(e.mtu_class)
            && !fits_mtu(ctx, e.ifindex, tot_len).0
        {
            return too_big::<STACK>(to_stack);
        }
        if STACK && (e.addr != p.tuple.src_addr || e.port != p.tuple.src_port) && !stack_takes_translated() {
            return Reason::DropNatFragNeeded;
        }
        if refresh(e, l4.nat_flags, now) {
            note_candidate(&key);
        }
        let peer = e.flags & NatFlags::PEER != 0;
        (
            e.addr,
            e.port,
            e.ifindex,
            (e.flags & NatFlags::L2 != 0).then(|| e.mac_half_words()),
            Reason::RedirectNat,
            peer,
        )
    } else {
        let Some(cfg) = NETD_NAT_CONFIG.get(0) else {
            return Reason::PassToStack;
        };
        if cfg.port_max == 0 {
            // Not configured yet: routed unchanged, as before masquerade existed.
            return Reason::PassToStack;
        }
        // The route decides the uplink (and so the address to masquerade with).
        let shared = cfg.flags & NatConfig::SHARED_ROUTES != 0;
        let hop = match route::<STACK>(ctx, p, src.ifindex, to_stack, tot_len, (shared, now)) {
            Ok(h) => h,
            Err(r) => return r,
        };
        // SAFETY: read-only map value, valid for the duration of the program.
        let Some(uplink) = (unsafe { NETD_UPLINKS.get(&hop.ifindex) }) else {
            // Routed through a device that is not an uplink: the kernel routes it unchanged.
            return Reason::PassToStack;
        };
        // The uplink as this flow leaves by it: with the network's own address if it has one
        // (as Docker's SNAT rule, through any interface), else the uplink's, and a port of the
        // NAT range. Without masquerade, or through a guarded interface without an address of
        // the network's own (there is none to masquerade with: the stack sent such flows out
        // unchanged before it was guarded), with the container's own address and port
        // (tracked, not translated: its replies are known there).
        let translated = if masquerade {
            snat_addr(src).or((uplink.flags & UplinkInfo::GUARD == 0).then_some(uplink.addr))
        } else {
            None
        };
        if STACK && translated.is_some() && !stack_takes_translated() {
            return Reason::DropNatFragNeeded;
        }
        let (via, range) = match translated {
            Some(addr) => (UplinkInfo { addr, flags: uplink.flags }, (cfg.port_min, cfg.port_max)),
            None => {
                let own = u16::from_be(key.src_port);
                (UplinkInfo { addr: src.ip, flags: uplink.flags }, (own, own))
            }
        };
        let mut verdict = Reason::RedirectNat;
        match snat_v4_new_mapping(&key, src, &via, &hop, l4.nat_flags, now, range, &mut verdict) {
            Ok((addr, port)) => {
                if cfg.flags & NatConfig::EVENTS != 0 {
                    report_new_flow(&key, verdict, hop.ifindex, addr, port);
                }
                let macs = hop.l2.then(|| (half_words(&hop.dmac), half_words(&hop.smac)));
                (addr, port, hop.ifindex, macs, verdict, uplink.flags & UplinkInfo::PEER != 0)
            }
            Err(r) => return r,
        }
    };

    // Rewrite: MACs, TTL, source address (IPv4 checksum by hand), then the port, then the L4
    // checksum with the helper (it knows about partial and complete checksums). What goes to
    // the stack keeps its TTL, which the stack lowers, and its MACs, to the bridge.
    let new_ttl_word = if STACK { ttl_word } else { ttl_less_one(ttl_word) };
    let macs = if STACK { None } else { macs };
    let Some(old_port) = frame_raw16(frame, l4.port_off) else {
        return Reason::DropNatUnsupported;
    };
    let old_addr = p.tuple.src_addr;
    let mut check = ip.raw16::<{ ipv4::CSUM_OFF }>();
    // A first fragment (later ones returned above) leaves its flow for the others, once it is
    // written; read before the writes, which invalidate packet pointers, and from the packet
    // (see `Parsed::flags`).
    let first_fragment = ip.u8::<{ ipv4::FRAG_OFF }>() & ipv4::MF_BYTE != 0;
    let id = ip.raw16::<{ ipv4::ID_OFF }>();
    check = csum::replace16(check, ttl_word, new_ttl_word);
    check = csum::replace32(check, old_addr, nat_addr);
    let tail = Ipv4Tail { ttl_word: new_ttl_word, check, src: nat_addr, dst: p.tuple.dst_addr };
    store_frame_head(ctx, frame, p, &l4, macs, tail, (nat_port, p.tuple.dst_port));
    l4_csum_update(ctx, &l4, (old_addr, nat_addr), (old_port, nat_port));
    if first_fragment {
        note_fragment(p, id, FragKey::EGRESS, &key, now);
    }
    if STACK {
        return to_stack_verdict(nat_addr != old_addr || nat_port != old_port);
    }
    target.ifindex = ifindex;
    target.via_neigh = macs.is_none();
    // Into the peer only with the next hop's MAC in place (else the kernel resolves it).
    target.via_peer = peer && macs.is_some();
    verdict
}

/// Leaves the key of the flow (`flow`) whose first fragment `p` is (identification `id`, wire
/// order), for the later fragments of its datagram that go the same way (`dir`).
#[inline(always)]
fn note_fragment(p: &Parsed, id: u16, dir: u8, flow: &Ipv4Tuple, now: u64) {
    let fk = FragKey { src_addr: p.tuple.src_addr, dst_addr: p.tuple.dst_addr, id, protocol: p.tuple.protocol, dir };
    let _ = NETD_NAT_FRAGS.insert(&fk, &FragEntry { flow: *flow, seen: now }, u64::from(BPF_ANY));
}

/// The flow entry of the datagram whose later fragment `p` is (going way `dir`), as its first
/// fragment found it, if that came within [`NAT_FRAG_TIMEOUT_NS`] and the flow is still there.
#[inline(always)]
fn fragment_flow(p: &Parsed, id: u16, dir: u8, now: u64) -> Option<*const NatEntry> {
    let fk = FragKey { src_addr: p.tuple.src_addr, dst_addr: p.tuple.dst_addr, id, protocol: p.tuple.protocol, dir };
    // SAFETY: read-only map value, valid for the duration of the program.
    let f = unsafe { NETD_NAT_FRAGS.get(&fk) }?;
    if now > f.seen + NAT_FRAG_TIMEOUT_NS {
        return None;
    }
    NETD_NAT.get_ptr(&f.flow)
}

/// A later fragment (no L4 header) from endpoint `src`: it gets its flow's address, TTL and next
/// hop, as its first fragment did, and follows it. Without one (its first fragment was not
/// seen, or was not translated), it is dropped on a masquerading network (it would leave with
/// the container's address) and routed unchanged by the stack on others.
#[inline(always)]
fn snat_v4_egress_later_fragment<const STACK: bool>(
    ctx: &TcContext,
    frame: &Frame,
    p: &Parsed,
    masquerade: bool,
    target: &mut NatTarget,
) -> Reason {
    let unknown = if masquerade { Reason::DropNatFragment } else { Reason::PassToStack };
    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(p.l3_off) else {
        return Reason::DropShortIpv4;
    };
    let Some(e) = fragment_flow(p, ip.raw16::<{ ipv4::ID_OFF }>(), FragKey::EGRESS, coarse_now()) else {
        return unknown;
    };
    // SAFETY: a live map value, read only here.
    let e = unsafe { &*e };
    let ttl_word = ip.raw16::<{ ipv4::TTL_OFF }>();
    if ip.u8::<{ ipv4::TTL_OFF }>() <= 1 {
        return Reason::PassToStack;
    }
    let old_addr = p.tuple.src_addr;
    // One too big for the route goes to the stack as a whole packet would (see `too_big`): as
    // it is when untranslated, else by `netd_nat_to_stack`, which keeps the TTL and MACs.
    if !STACK
        && (ctx.len() as usize - p.l3_off) as u32 > mtu_floor(e.mtu_class)
        && !fits_mtu(ctx, e.ifindex, ip.be16::<{ ipv4::TOT_LEN_OFF }>()).0
    {
        return too_big::<STACK>(e.addr == old_addr);
    }
    if STACK && e.addr != old_addr && !stack_takes_translated() {
        return Reason::DropNatFragNeeded;
    }
    let new_ttl_word = if STACK { ttl_word } else { ttl_less_one(ttl_word) };
    let mut check = ip.raw16::<{ ipv4::CSUM_OFF }>();
    check = csum::replace16(check, ttl_word, new_ttl_word);
    check = csum::replace32(check, old_addr, e.addr);
    let l2 = e.flags & NatFlags::L2 != 0;
    if l2 && !STACK {
        let (dmac, smac) = e.mac_half_words();
        let _ = ctx.store(eth::DST_OFF, &[dmac[0], dmac[1], dmac[2], smac[0], smac[1], smac[2]], 0);
    }
    let tail = Ipv4Tail { ttl_word: new_ttl_word, check, src: e.addr, dst: p.tuple.dst_addr };
    let _ = ctx.store(p.l3_off + ipv4::TTL_OFF, &tail, 0);
    if STACK {
        return to_stack_verdict(e.addr != old_addr);
    }
    target.ifindex = e.ifindex;
    target.via_neigh = !l2;
    target.via_peer = l2 && e.flags & NatFlags::PEER != 0;
    Reason::RedirectNat
}

/// The address endpoint `src`'s network masquerades with when it has one of its own
/// (`com.docker.network.host_ipv4`): looked up for new flows of such networks only.
#[inline(always)]
fn snat_addr(src: &EndpointInfo) -> Option<u32> {
    if src.flags & NetworkFlags::SNAT_ADDR == 0 {
        return None;
    }
    let key = aya_ebpf::maps::lpm_trie::Key::new(32, src.ip);
    NETD_NETWORKS.get(&key).map(|n| n.snat_addr).filter(|a| *a != 0)
}

/// Reports a new flow to `netd monitor` (a [`NatEvent`] in `NETD_EVENTS`), written in place in
/// the ring: nothing on the stack. A full ring loses the report (counted), never the flow.
#[inline(always)]
fn report_new_flow(key: &Ipv4Tuple, verdict: Reason, ifindex: u32, nat_addr: u32, nat_port: u16) {
    let Some(mut slot) = NETD_EVENTS.reserve::<NatEvent>(0) else {
        count_lost_event();
        return;
    };
    let e = slot.as_mut_ptr();
    // SAFETY: `e` points at the reserved record, `NatEvent`-sized; every field is written
    // (plain data, no drop glue).
    unsafe {
        (*e).kind = EVENT_KIND_NAT_NEW;
        (*e).reason = verdict as u8;
        (*e).pad = 0;
        (*e).ifindex = ifindex;
        (*e).tuple = *key;
        (*e).nat_addr = nat_addr;
        (*e).nat_port = nat_port;
        (*e).pad2 = 0;
    }
    slot.submit(0);
}

/// Updates the L4 checksum for an address (`(old, new)`, in the pseudo-header of TCP and UDP)
/// and a port or identifier that changed. The helper knows partial and complete checksums; a
/// zero UDP checksum stays zero. A port that stays takes no second call (~40 ns less on egress,
/// ~25 ns on reverse NAT, repeated test runs): a published port with the same number on both
/// sides, an untranslated flow, a container port inside the NAT range. (A default container's
/// ports lie in the host's ephemeral range, outside the NAT range, and change.)
#[inline(always)]
fn l4_csum_update(ctx: &TcContext, l4: &L4, addr: (u32, u32), port: (u16, u16)) {
    if l4.pseudo {
        let flags = u64::from(BPF_F_PSEUDO_HDR) | l4.csum_flags | 4;
        let _ = ctx.l4_csum_replace(l4.csum_off, u64::from(addr.0), u64::from(addr.1), flags);
    }
    if port.0 != port.1 {
        let _ = ctx.l4_csum_replace(l4.csum_off, u64::from(port.0), u64::from(port.1), l4.csum_flags | 2);
    }
}

/// Reads the 16-bit field at `off` (a variable offset: port or identifier).
#[inline(always)]
fn frame_raw16(frame: &Frame, off: usize) -> Option<u16> {
    frame.header::<2>(off).map(|h| h.raw16::<0>())
}

/// A MAC as three 16-bit values, as they lie in memory (the rare paths: a fresh route).
#[inline(always)]
fn half_words(m: &[u8; 6]) -> [u16; 3] {
    [u16::from_ne_bytes([m[0], m[1]]), u16::from_ne_bytes([m[2], m[3]]), u16::from_ne_bytes([m[4], m[5]])]
}

/// A 32-bit value (wire order) as two 16-bit values, as they lie in memory.
#[inline(always)]
fn halves(v: u32) -> [u16; 2] {
    let b = v.to_ne_bytes();
    [u16::from_ne_bytes([b[0], b[1]]), u16::from_ne_bytes([b[2], b[3]])]
}

/// The first 38 bytes of an untagged Ethernet frame carrying IPv4 without options and TCP or
/// UDP: the MACs, the EtherType and the IPv4 header's first 8 bytes (kept: written with their
/// own values), the rest of the IPv4 header (rewritten) and the ports. Half-words only, so
/// there is no padding and every field is an aligned store.
#[repr(C)]
struct FrameHead {
    macs: [u16; 6],
    kept: [u16; 5],
    ttl_word: u16,
    check: u16,
    src: [u16; 2],
    dst: [u16; 2],
    sport: u16,
    dport: u16,
}

const _: () = assert!(size_of::<FrameHead>() == eth::HLEN + ipv4::MIN_HLEN + 4);

/// Writes a frame translated on egress: the MACs (`macs`: destination and source; `None` keeps
/// them), the IPv4 header from the TTL on (`tail`) and the ports (see [`store_headers`]). The
/// common frame (untagged, IPv4 without options, TCP or UDP, MACs known) takes one store of its
/// first 38 bytes, the bytes in between written with their own values; any other, two or three.
///
/// With helpers, not direct packet writes, though each helper call costs ~40 ns: a program that
/// writes packet data directly gets a verifier prologue that makes every cloned skb's head
/// writable before the program runs, also on the paths that write nothing. This program
/// carries container-to-container traffic, whose TCP segments are clones. Measured with an
/// in-place egress (2026-11-30): masquerade 248 → 204 ns under repeated test runs, but
/// container-to-container request/response 210 → 283 ns per packet live. The uplink's program
/// has no such traffic and writes in place (see [`snat_v4_ingress`]).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the header fields, each needed")]
fn store_frame_head(
    ctx: &TcContext,
    frame: &Frame,
    p: &Parsed,
    l4: &L4,
    macs: Option<([u16; 3], [u16; 3])>,
    tail: Ipv4Tail,
    ports: (u16, u16),
) {
    let Some((dmac, smac)) = macs else {
        store_headers(ctx, p, tail, l4, ports);
        return;
    };
    let all = [dmac[0], dmac[1], dmac[2], smac[0], smac[1], smac[2]];
    if l4.pseudo && p.l3_off == eth::HLEN && p.l4_off == eth::HLEN + ipv4::MIN_HLEN {
        if let Some(h) = frame.header::<{ eth::HLEN + ipv4::TTL_OFF }>(0) {
            let head = FrameHead {
                macs: all,
                // Offsets 12 to 21: the EtherType, then IPv4 up to the TTL.
                kept: [h.raw16::<12>(), h.raw16::<14>(), h.raw16::<16>(), h.raw16::<18>(), h.raw16::<20>()],
                ttl_word: tail.ttl_word,
                check: tail.check,
                src: halves(tail.src),
                dst: halves(tail.dst),
                sport: ports.0,
                dport: ports.1,
            };
            let _ = ctx.store(0, &head, 0);
            return;
        }
    }
    let _ = ctx.store(eth::DST_OFF, &all, 0);
    store_headers(ctx, p, tail, l4, ports);
}

/// The IPv4 header from the TTL to the destination address (wire order), as one value: typed
/// fields are written with aligned stores, where a byte array is filled a byte at a time.
#[repr(C)]
struct Ipv4Tail {
    ttl_word: u16,
    check: u16,
    src: u32,
    dst: u32,
}

/// [`Ipv4Tail`] and the TCP or UDP ports right behind it (an IPv4 header without options).
#[repr(C)]
struct Ipv4TailPorts {
    tail: Ipv4Tail,
    sport: u16,
    dport: u16,
}

/// Writes a translated packet's IPv4 header from the TTL to the destination address (`tail`:
/// TTL and protocol word, checksum, addresses) and its ports (`ports`: source and destination).
/// TCP and UDP behind an option-less header take one store from the TTL to the destination
/// port; else two: the header, then the source port or identifier at `l4.port_off`
/// (`ports.0`). The caller writes the MACs.
#[inline(always)]
fn store_headers(ctx: &TcContext, p: &Parsed, tail: Ipv4Tail, l4: &L4, ports: (u16, u16)) {
    if l4.pseudo && p.l4_off == p.l3_off + ipv4::MIN_HLEN {
        let _ = ctx.store(p.l3_off + ipv4::TTL_OFF, &Ipv4TailPorts { tail, sport: ports.0, dport: ports.1 }, 0);
    } else {
        let _ = ctx.store(p.l3_off + ipv4::TTL_OFF, &tail, 0);
        let _ = ctx.store(l4.port_off, &ports.0, 0);
    }
}

/// Starts the flow of egress entry `egress` (key `key`) over, in both entries, if it is over:
/// `syn` and the connection closed (FIN or RST either way: the container reused its port for a
/// new one), or `stale` and the flow expired. The next hop stays: it is looked up again when
/// stale, as for any flow. A flow started over is a new one: unanswered, a full table may
/// evict it (it is noted as a candidate).
#[inline(always)]
fn restart_if_over(key: &Ipv4Tuple, egress: &mut NatEntry, syn: bool, stale: bool, now: u64) {
    let Some(i) = NETD_NAT.get_ptr_mut(&reply_key(key, egress.addr, egress.port)) else {
        return;
    };
    // SAFETY: a live map value; concurrent writers only race on these fields.
    let i = unsafe { &mut *i };
    let closed = syn && (egress.flags | i.flags) & (NatFlags::TCP_FIN | NatFlags::TCP_RST) != 0;
    if closed || (stale && expired(key.protocol, egress, i, now)) {
        const KEPT: u8 = NatFlags::L2 | NatFlags::PEER | NatFlags::INBOUND;
        egress.flags = NatFlags::SEEN | (egress.flags & KEPT);
        egress.last_seen = now;
        egress.created = now;
        // A flow to a published port starts over with the client's SYN, which came in.
        i.flags = if i.flags & NatFlags::INBOUND != 0 {
            NatFlags::INGRESS | NatFlags::INBOUND | NatFlags::SEEN
        } else {
            NatFlags::INGRESS
        };
        i.last_seen = now;
        i.created = now;
        note_candidate(key);
    }
}

/// Whether a flow (its entries `egress` and `ingress`) has expired at `now`, with the daemon's
/// timeouts (`NETD_NAT_TIMEOUTS`). Only on the rare paths: a flow stale for a second, a port
/// taken, a full table.
#[inline(always)]
fn expired(protocol: u8, egress: &NatEntry, ingress: &NatEntry, now: u64) -> bool {
    match NETD_NAT_TIMEOUTS.get(0) {
        Some(t) => flow_expired(protocol, egress, ingress, now, t),
        None => flow_expired(protocol, egress, ingress, now, &NatTimeouts::DEFAULT),
    }
}

/// Whether the flow of ingress entry `ingress` (key `key`) expired (or lost its egress half).
#[inline(always)]
fn reply_expired(key: &Ipv4Tuple, ingress: &NatEntry, now: u64) -> bool {
    // SAFETY: read-only map value.
    match unsafe { NETD_NAT.get(&egress_key(key, ingress)) } {
        Some(e) => expired(key.protocol, e, ingress, now),
        None => true,
    }
}

/// Records a packet on a flow's entry: new TCP flags at once, the time at most every
/// [`NAT_REFRESH_NS`]. Returns whether the packet is this direction's first FIN or RST.
#[inline(always)]
fn refresh(e: &mut NatEntry, flags: u8, now: u64) -> bool {
    const CLOSING: u8 = NatFlags::TCP_FIN | NatFlags::TCP_RST;
    let want = e.flags | flags | NatFlags::SEEN;
    if want != e.flags {
        let closing = want & CLOSING != 0 && e.flags & CLOSING == 0;
        e.flags = want;
        e.last_seen = now;
        closing
    } else {
        if now > e.last_seen + NAT_REFRESH_NS {
            e.last_seen = now;
        }
        false
    }
}

/// Notes the flow of egress key `key` as a candidate for eviction: it was created or started
/// over (unanswered yet), or a FIN or RST went one way (it may close). A full table checks the
/// candidates oldest first (see [`evict_one`]).
#[inline(always)]
fn note_candidate(key: &Ipv4Tuple) {
    // SAFETY: a global shared by all CPUs; racing writes lose or repeat a hint (see
    // `NETD_NAT_CANDIDATES`), and a torn key matches no flow or is checked like any other.
    let ring = unsafe { &mut *(&raw mut NETD_NAT_CANDIDATES) };
    let head = ring.head;
    if let Some(slot) = ring.keys.get_mut((head & (CANDIDATE_RING_LEN - 1)) as usize) {
        *slot = *key;
    }
    ring.head = head.wrapping_add(1);
}

/// How many candidates a new flow looks at when the table is full.
const EVICT_ATTEMPTS: u32 = 8;

/// Makes room in a full table as conntrack's early drop does: evicts the oldest of the last
/// noted candidates that is [`evictable`] (not assured, as an unanswered flow or a DNS query
/// and its answer; or a TCP flow that closed) or has expired. Established TCP flows, half-closed
/// or not, and UDP streams stay. Returns whether one went.
#[inline(always)]
fn evict_one(now: u64) -> bool {
    // SAFETY: as in `note_candidate`.
    let ring = unsafe { &mut *(&raw mut NETD_NAT_CANDIDATES) };
    let head = ring.head;
    let mut tail = ring.tail;
    if head.wrapping_sub(tail) > CANDIDATE_RING_LEN {
        // Overwritten: the oldest hints left are a ring's length behind.
        tail = head.wrapping_sub(CANDIDATE_RING_LEN);
    }
    let mut evicted = false;
    for _ in 0..EVICT_ATTEMPTS {
        if tail == head {
            break;
        }
        let Some(key) = ring.keys.get((tail & (CANDIDATE_RING_LEN - 1)) as usize).copied() else {
            break;
        };
        tail = tail.wrapping_add(1);
        // SAFETY: read-only map values.
        let Some(e) = (unsafe { NETD_NAT.get(&key) }) else {
            continue;
        };
        if e.flags & NatFlags::INGRESS != 0 {
            continue;
        }
        let rk = reply_key(&key, e.addr, e.port);
        // SAFETY: as above.
        // Without its ingress half (a half-deleted pair) the flow is nobody's.
        let gone = match unsafe { NETD_NAT.get(&rk) } {
            Some(i) => evictable(key.protocol, e, i) || expired(key.protocol, e, i, now),
            None => true,
        };
        if gone {
            let _ = NETD_NAT.remove(&rk);
            let _ = NETD_NAT.remove(&key);
            evicted = true;
            break;
        }
    }
    ring.tail = tail;
    evicted
}

/// Creates the entry pair of a new flow: claims a reply key (the container's port if it is in
/// `[lo, hi]`, else random ones; an expired flow's key is taken over), then the egress entry.
/// Returns the NAT address and port (wire order); `verdict` becomes
/// [`Reason::RedirectNatEvicted`] when another flow was evicted to make room. (An out
/// parameter: LLVM returns a tuple with a `u8` in it with undefined padding bits that it then
/// reads, and the verifier refuses that read.)
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "one call site, every value is needed")]
fn snat_v4_new_mapping(
    key: &Ipv4Tuple,
    src: &EndpointInfo,
    uplink: &UplinkInfo,
    hop: &Hop,
    tcp_flags: u8,
    now: u64,
    range: (u16, u16),
    verdict: &mut Reason,
) -> Result<(u32, u16), Reason> {
    let (lo, hi) = range;
    let span = u32::from(hi - lo) + 1;
    let own = u16::from_be(key.src_port);
    // First choice: the container's own port, or outside the range its fixed image in it. One
    // container's ports then map one to one (its range is narrower than the NAT range by
    // default), and a port it reuses gets the same translation: its own TIME_WAIT rules stay
    // right for the server. Collisions (other containers) go on with random ports.
    let mut port = if own >= lo && own <= hi { own } else { lo + (u32::from(own) % span) as u16 };
    // Field by field on a zeroed entry: `smac: [0; 6]` (unused by replies) would be a `memset`.
    let mut slot = MaybeUninit::<NatEntry>::uninit();
    let ingress: &NatEntry = {
        // SAFETY: all-zero is a valid value of this plain C struct.
        let e = unsafe { zeroed_in(&mut slot) };
        e.addr = key.src_addr;
        e.port = key.src_port;
        e.flags = NatFlags::INGRESS;
        e.ifindex = src.ifindex;
        e.dmac = src.mac;
        e.last_seen = now;
        e.created = now;
        e
    };
    let mut claimed = false;
    for _ in 0..NAT_PORT_ATTEMPTS {
        let rk = reply_key(key, uplink.addr, port.to_be());
        match NETD_NAT.insert(&rk, ingress, u64::from(BPF_NOEXIST)) {
            Ok(()) => {
                claimed = true;
                break;
            }
            Err(e) if e == -EEXIST => {
                if reclaim_if_expired(&rk, ingress, now) {
                    claimed = true;
                    break;
                }
            }
            Err(_) => {
                // Full: a flow that is not assured or has closed makes room, else the new one
                // is refused (counted).
                if evict_one(now) && NETD_NAT.insert(&rk, ingress, u64::from(BPF_NOEXIST)).is_ok() {
                    claimed = true;
                    *verdict = Reason::RedirectNatEvicted;
                    break;
                }
                return Err(Reason::DropNatTableFull);
            }
        }
        // SAFETY: a plain helper call.
        port = lo + (unsafe { bpf_get_prandom_u32() } % span) as u16;
    }
    if !claimed {
        return Err(Reason::DropNatNoPort);
    }
    let nat_port = port.to_be();
    let egress = NatEntry {
        addr: uplink.addr,
        port: nat_port,
        flags: NatFlags::SEEN
            | tcp_flags
            | if hop.l2 { NatFlags::L2 } else { 0 }
            | if uplink.flags & UplinkInfo::PEER != 0 { NatFlags::PEER } else { 0 },
        mtu_class: hop.mtu_class,
        ifindex: hop.ifindex,
        smac: hop.smac,
        dmac: hop.dmac,
        last_seen: now,
        created: now,
    };
    match NETD_NAT.insert(key, &egress, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            note_candidate(key);
            Ok((uplink.addr, nat_port))
        }
        Err(e) => {
            let _ = NETD_NAT.remove(&reply_key(key, uplink.addr, nat_port));
            if e == -EEXIST {
                // Another CPU created this flow meanwhile: use its translation.
                // SAFETY: read-only map value.
                if let Some(won) = unsafe { NETD_NAT.get(key) } {
                    return Ok((won.addr, won.port));
                }
            }
            Err(Reason::DropNatTableFull)
        }
    }
}

/// Takes over the reply key `rk` if its flow expired (the collector had not come by yet); the
/// old flow's egress entry is deleted.
#[inline(always)]
fn reclaim_if_expired(rk: &Ipv4Tuple, ingress: &NatEntry, now: u64) -> bool {
    // SAFETY: read-only map values.
    let Some(old) = (unsafe { NETD_NAT.get(rk) }) else {
        return false;
    };
    let ek = egress_key(rk, old);
    let expired = match unsafe { NETD_NAT.get(&ek) } {
        Some(old_egress) => expired(rk.protocol, old_egress, old, now),
        None => true,
    };
    if !expired {
        return false;
    }
    let _ = NETD_NAT.remove(&ek);
    NETD_NAT.insert(rk, ingress, u64::from(BPF_ANY)).is_ok()
}

/// A packet arriving on uplink `uplink`: reverse-translates replies of masqueraded flows (and
/// ICMP errors about them) and sends them into the container; drops what is addressed to a
/// masquerading network's containers without a flow; passes the rest to the host untouched.
///
/// `L3`: the uplink has no link-layer header (a tunnel, `WireGuard`: `p` starts at the IPv4
/// header). Then no MAC is written here: the caller gives a packet going into a container its
/// Ethernet header (see `uplink::push_ethernet`).
#[inline(always)]
pub fn snat_v4_ingress<const L3: bool>(
    ctx: &TcContext,
    frame: &Frame,
    p: &Parsed,
    uplink: &UplinkInfo,
    ifindex: u32,
    target: &mut NatTarget,
) -> Reason {
    // Another address than the uplink's is the host's business, except replies to the
    // address a network masquerades with (`com.docker.network.host_ipv4`, while one has one),
    // what comes to containers' own addresses (`DIRECT`: replies of routed flows, and
    // `nat-unprotected` networks), and (while ports are published) TCP and UDP that may be
    // for a published port: those are reached on every address of the host, as Docker's
    // rules match `--dst-type LOCAL`. A guarded interface has no address of netd's: all is
    // other, and looked up (the flows that left by it are tracked at containers' addresses).
    let other = p.tuple.dst_addr != uplink.addr;
    if p.class == PacketClass::Ipv4Fragment {
        // A later fragment of a datagram whose first was translated goes where that went;
        // any other is the host's (its stack keeps it until its reassembly gives up).
        return match snat_v4_ingress_later_fragment::<L3>(frame, p, target) {
            Some(r) => r,
            None if other => unsolicited_or_pass(p),
            None => Reason::PassFromUplink,
        };
    }
    if other
        && uplink.flags & (UplinkInfo::SNAT_ADDRS | UplinkInfo::DIRECT | UplinkInfo::GUARD) == 0
        && (uplink.flags & UplinkInfo::PUBLISHED == 0
            || !matches!(p.class, PacketClass::Ipv4Tcp | PacketClass::Ipv4Udp))
    {
        return unsolicited_or_pass(p);
    }
    // What a packet of no flow gets.
    let none = || if other { unsolicited_or_pass(p) } else { Reason::PassFromUplink };
    let reply = match p.class {
        PacketClass::Ipv4Tcp | PacketClass::Ipv4Udp => true,
        PacketClass::Ipv4Icmp => {
            let Some(h) = frame.header::<{ icmp::HLEN }>(p.l4_off) else {
                return none();
            };
            match h.u8::<{ icmp::TYPE_OFF }>() {
                icmp::ECHO_REPLY => true,
                icmp::DEST_UNREACH | icmp::TIME_EXCEEDED | icmp::PARAM_PROBLEM => false,
                _ => return none(),
            }
        }
        _ => return none(),
    };
    if !reply {
        return match snat_v4_icmp_error_ingress::<L3>(ctx, p, target) {
            Reason::PassFromUplink => none(),
            r => r,
        };
    }
    let key = p.tuple.key();
    let found = NETD_NAT.get_ptr_mut(&key);
    // Without a flow, what is published there, or the container itself on a `nat-unprotected`
    // network (looked up once: `open_published` takes it).
    let mut to = None;
    if found.is_none() {
        to = inbound_target(&key, uplink, ifindex, other);
        if to.is_none() {
            return none();
        }
    }
    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(p.l3_off) else {
        return none();
    };
    let ttl_word = ip.raw16::<{ ipv4::TTL_OFF }>();
    if ip.u8::<{ ipv4::TTL_OFF }>() <= 1 {
        return Reason::DropTtlExceeded;
    }
    let l4 = match l4_of(frame, p, false) {
        Ok(l4) => l4,
        Err(_) => return Reason::PassFromUplink,
    };
    let now = coarse_now();
    let e = match found {
        // SAFETY: a live map value; concurrent writers only race on refresh fields.
        Some(e) if !(now > unsafe { (*e).last_seen } + NAT_REFRESH_NS && reply_expired(&key, unsafe { &*e }, now)) => e,
        // No flow (an expired flow is none): the packet is the host's, unless it opens one
        // to a published port.
        old => match open_published(frame, p, &key, uplink, ifindex, other, old, to, now) {
            Ok(Some(e)) => e,
            Ok(None) => return none(),
            Err(r) => return r,
        },
    };
    // SAFETY: as above.
    let e = unsafe { &mut *e };
    if refresh(e, l4.nat_flags, now) {
        note_candidate(&egress_key(&key, e));
    }
    let (new_addr, new_port, mac, veth) = (e.addr, e.port, e.mac_half_words().0, e.ifindex);
    // Every header to write is taken (bounds-checked) before the first write, so a frame is
    // written whole or not at all.
    let Some(port) = frame.header::<2>(l4.port_off) else {
        return Reason::PassFromUplink;
    };
    let l2 = if L3 {
        None
    } else {
        match frame.header::<{ eth::HLEN }>(0) {
            Some(l2) => Some(l2.writable()),
            None => return Reason::PassFromUplink,
        }
    };
    let old_port = port.raw16::<0>();
    let old_addr = p.tuple.dst_addr;
    let new_ttl_word = {
        let b = ttl_word.to_ne_bytes();
        u16::from_ne_bytes([b[0] - 1, b[1]])
    };
    let mut check = ip.raw16::<{ ipv4::CSUM_OFF }>();
    // As on egress: a first fragment leaves its flow for the later ones (they returned above).
    let first_fragment = ip.u8::<{ ipv4::FRAG_OFF }>() & ipv4::MF_BYTE != 0;
    let id = ip.raw16::<{ ipv4::ID_OFF }>();
    check = csum::replace16(check, ttl_word, new_ttl_word);
    check = csum::replace32(check, old_addr, new_addr);
    // Written in place, field by field, one store each: one helper call fewer than
    // `bpf_skb_store_bytes` (254 → 212 ns under repeated test runs). The verifier's prologue
    // for direct writes costs this program little: replies are written anyway, and a physical
    // uplink's received frames are not clones (see `store_frame_head` for the container side,
    // where it costs).
    let (l3, port) = (ip.writable(), port.writable());
    // The source MAC stays (who sent it matters to no one); the destination is the container.
    if let Some(l2) = l2 {
        set_dst_mac(&l2, mac);
    }
    l3.set_raw16::<{ ipv4::TTL_OFF }>(new_ttl_word);
    l3.set_raw16::<{ ipv4::CSUM_OFF }>(check);
    l3.set_raw32::<{ ipv4::DST_OFF }>(new_addr);
    port.set_raw16::<0>(new_port);
    l4_csum_update(ctx, &l4, (old_addr, new_addr), (old_port, new_port));
    if first_fragment {
        note_fragment(p, id, FragKey::INGRESS, &key, now);
    }
    target.ifindex = veth;
    Reason::RedirectReverseNat
}

/// Writes the destination MAC of the Ethernet header `l2` (as [`NatEntry::mac_half_words`] gives
/// it).
#[inline(always)]
fn set_dst_mac(l2: &HeaderMut<{ eth::HLEN }>, mac: [u16; 3]) {
    l2.set_raw16::<{ eth::DST_OFF }>(mac[0]);
    l2.set_raw16::<{ eth::DST_OFF + 2 }>(mac[1]);
    l2.set_raw16::<{ eth::DST_OFF + 4 }>(mac[2]);
}

/// A later fragment (no L4 header) arriving on an uplink: when its datagram's first fragment was
/// translated, it gets the same destination and goes to the same container. `None`: it is not
/// a translated datagram's.
#[inline(always)]
fn snat_v4_ingress_later_fragment<const L3: bool>(frame: &Frame, p: &Parsed, target: &mut NatTarget) -> Option<Reason> {
    let ip = frame.header::<{ ipv4::MIN_HLEN }>(p.l3_off)?;
    let e = fragment_flow(p, ip.raw16::<{ ipv4::ID_OFF }>(), FragKey::INGRESS, coarse_now())?;
    // SAFETY: a live map value, read only here.
    let e = unsafe { &*e };
    let ttl_word = ip.raw16::<{ ipv4::TTL_OFF }>();
    if ip.u8::<{ ipv4::TTL_OFF }>() <= 1 {
        return Some(Reason::DropTtlExceeded);
    }
    let l2 = if L3 { None } else { Some(frame.header::<{ eth::HLEN }>(0)?.writable()) };
    let new_ttl_word = {
        let b = ttl_word.to_ne_bytes();
        u16::from_ne_bytes([b[0] - 1, b[1]])
    };
    let mut check = ip.raw16::<{ ipv4::CSUM_OFF }>();
    check = csum::replace16(check, ttl_word, new_ttl_word);
    check = csum::replace32(check, p.tuple.dst_addr, e.addr);
    if let Some(l2) = l2 {
        set_dst_mac(&l2, e.mac_half_words().0);
    }
    let l3 = ip.writable();
    l3.set_raw16::<{ ipv4::TTL_OFF }>(new_ttl_word);
    l3.set_raw16::<{ ipv4::CSUM_OFF }>(check);
    l3.set_raw32::<{ ipv4::DST_OFF }>(e.addr);
    target.ifindex = e.ifindex;
    Some(Reason::RedirectReverseNat)
}

/// Whether a packet of no flow may open one to a published port: UDP, or a TCP SYN without
/// ACK. Read only then, not on every packet of a flow.
#[inline(always)]
fn opens_flow(frame: &Frame, p: &Parsed) -> bool {
    match p.class {
        PacketClass::Ipv4Udp => true,
        PacketClass::Ipv4Tcp => frame
            .header::<{ tcp::MIN_HLEN }>(p.l4_off)
            .is_some_and(|t| t.u8::<{ tcp::FLAGS_OFF }>() & (tcp::SYN | tcp::ACK) == tcp::SYN),
        _ => false,
    }
}

/// The published port `key` (arriving on uplink `ifindex`) is addressed to (on its address,
/// else on all), if any. One published for trusted interfaces only is found from those only.
#[inline(always)]
fn published(key: &Ipv4Tuple, ifindex: u32) -> Option<&'static PublishedPort> {
    if key.protocol != ipv4::PROTO_TCP && key.protocol != ipv4::PROTO_UDP {
        return None;
    }
    let mut pk = PublishedKey { addr: key.dst_addr, port: key.dst_port, protocol: key.protocol, pad: 0 };
    // SAFETY: read-only map values, valid for the duration of the program.
    if let Some(v) = unsafe { NETD_PUBLISHED.get(&pk) } {
        if v.flags & PublishedPort::TRUSTED_ONLY == 0 || trusted(key.dst_addr, ifindex) {
            return Some(v);
        }
        // Not from here: the container's address is no host address either.
        return None;
    }
    pk.addr = 0;
    // SAFETY: as above.
    unsafe { NETD_PUBLISHED.get(&pk) }
}

/// What a packet without a flow may open a flow to: the port published where it goes. The
/// host's own traffic pays no lookup while nothing is published ([`UplinkInfo::PUBLISHED`]).
#[inline(always)]
fn publishable(key: &Ipv4Tuple, uplink: &UplinkInfo, ifindex: u32) -> Option<&'static PublishedPort> {
    if uplink.flags & UplinkInfo::PUBLISHED == 0 {
        return None;
    }
    published(key, ifindex)
}

/// Whether the network of the container at `addr` trusts uplink `ifindex`.
#[inline(always)]
fn trusted(addr: u32, ifindex: u32) -> bool {
    let Some(ep) = endpoint_by_ip(addr) else {
        return false;
    };
    // SAFETY: read-only map value.
    unsafe { NETD_TRUSTED.get(&trusted_key(ep.network, ifindex)) }.is_some()
}

/// Where a packet of no flow may open one (map values: a pointer to carry, not a copy).
#[derive(Clone, Copy)]
enum Inbound {
    /// A published port (see [`publishable`]): through a host address, or on a routed network
    /// at the container's own.
    Published(&'static PublishedPort),
    /// Sent to a container's own address on a `nat-unprotected` network: that container and
    /// port as they are (tracked, so its answers leave untranslated).
    Direct(&'static EndpointInfo),
}

/// See [`Inbound`]; `other`: the packet is not for the uplink's address (`ifindex`).
#[inline(always)]
fn inbound_target(key: &Ipv4Tuple, uplink: &UplinkInfo, ifindex: u32, other: bool) -> Option<Inbound> {
    if let Some(to) = publishable(key, uplink, ifindex) {
        return Some(Inbound::Published(to));
    }
    if !other || uplink.flags & UplinkInfo::DIRECT == 0 {
        return None;
    }
    let ep = endpoint_by_ip(key.dst_addr)?;
    if ep.flags & (NetworkFlags::UNPROTECTED | NetworkFlags::INTERNAL) != NetworkFlags::UNPROTECTED {
        return None;
    }
    Some(Inbound::Direct(ep))
}

/// Opens a flow to a published port for the packet `key` arriving on uplink `ifindex` (UDP, or
/// a TCP SYN without ACK: anything else of no flow is the host's), in place of `old`, the
/// expired flow of the same key if there is one. The ingress entry gives the packet the
/// container's address and port; the egress entry gives the container's answers the published
/// address and port back, and learns its next hop from the route on the first answer. `to` is
/// what the caller found published there, if it looked. Returns the ingress entry; `Ok(None)`
/// when nothing is published there.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "one call site, every value is needed")]
fn open_published(
    frame: &Frame,
    p: &Parsed,
    key: &Ipv4Tuple,
    uplink: &UplinkInfo,
    ifindex: u32,
    other: bool,
    old: Option<*mut NatEntry>,
    to: Option<Inbound>,
    now: u64,
) -> Result<Option<*mut NatEntry>, Reason> {
    if !opens_flow(frame, p) {
        return Ok(None);
    }
    // Looked up by the caller when there was no flow; not when an expired one was found.
    let Some(to) = to.or_else(|| inbound_target(key, uplink, ifindex, other)) else {
        return Ok(None);
    };
    // The container's address and port, its veth and MAC; whether it is reached directly.
    let (addr, port, veth, mac, direct) = match to {
        // Published on a routed network: keyed by the container's own address.
        Inbound::Published(published) => {
            (published.addr, published.port, published.ifindex, published.mac, published.addr == key.dst_addr)
        }
        Inbound::Direct(ep) => (key.dst_addr, key.dst_port, ep.ifindex, ep.mac, true),
    };
    // SAFETY: read-only map value.
    if other && !direct && unsafe { NETD_HOST_ADDRS.get(&key.dst_addr) }.is_none() {
        // Not the host's: routed through it, or a container's (unsolicited).
        return Ok(None);
    }
    if let Some(old) = old {
        // SAFETY: a live map value, read once.
        let _ = NETD_NAT.remove(&egress_key(key, unsafe { &*old }));
        let _ = NETD_NAT.remove(key);
    }
    let mut slot = MaybeUninit::<NatEntry>::uninit();
    // SAFETY: all-zero is a valid value of this plain C struct.
    let e = unsafe { zeroed_in(&mut slot) };
    e.addr = addr;
    e.port = port;
    e.flags = NatFlags::INGRESS | NatFlags::INBOUND;
    e.ifindex = veth;
    e.dmac = mac;
    e.last_seen = now;
    e.created = now;
    let ek = egress_key(key, e);
    match NETD_NAT.insert(key, &*e, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        // Another CPU opened it meanwhile: take its entry.
        Err(err) if err == -EEXIST => return Ok(NETD_NAT.get_ptr_mut(key)),
        Err(_) => {
            if !(evict_one(now) && NETD_NAT.insert(key, &*e, u64::from(BPF_NOEXIST)).is_ok()) {
                return Err(Reason::DropNatTableFull);
            }
        }
    }
    // The egress half, in the same slot: the published address and port, the uplink until the
    // route says otherwise.
    e.addr = key.dst_addr;
    e.port = key.dst_port;
    // Answers leave by the uplink it came in by (into its peer when that is a veth uplink),
    // until the route says otherwise.
    e.flags = NatFlags::INBOUND | if uplink.flags & UplinkInfo::PEER != 0 { NatFlags::PEER } else { 0 };
    e.ifindex = ifindex;
    e.dmac = [0; 6];
    if NETD_NAT.insert(&ek, &*e, u64::from(BPF_NOEXIST)).is_err() {
        // A flow of the container's with the same ports (or a full table): refused.
        let _ = NETD_NAT.remove(key);
        return Err(Reason::DropNatTableFull);
    }
    note_candidate(&ek);
    if NETD_NAT_CONFIG.get(0).is_some_and(|c| c.flags & NatConfig::EVENTS != 0) {
        // As the container answers it, and as the outside sees it.
        report_new_flow(&ek, Reason::RedirectReverseNat, ifindex, key.dst_addr, key.dst_port);
    }
    Ok(NETD_NAT.get_ptr_mut(key))
}

/// Traffic `p` from outside, of no flow, to an address that is not the uplink's: the
/// containers of netd's networks are not reachable from outside, but on `nat-unprotected`
/// networks, and with ICMP on routed ones; anything else (the host's other addresses, routes
/// through the host, gateways) is the host's business.
#[inline(always)]
fn unsolicited_or_pass(p: &Parsed) -> Reason {
    let dst = p.tuple.dst_addr;
    let key = aya_ebpf::maps::lpm_trie::Key::new(32, dst);
    if let Some(n) = NETD_NETWORKS.get(&key) {
        // Docker's `nat` gateway mode, masquerading or not: a container is reached through
        // the host's addresses (published ports) and by the replies of its flows, never
        // directly; `nat-unprotected` lets anything through, `routed` ICMP (and published
        // ports, which open flows); internal networks: nothing.
        let open = n.flags & NetworkFlags::INTERNAL == 0
            && (n.flags & NetworkFlags::UNPROTECTED != 0
                || (n.flags & NetworkFlags::ROUTED != 0 && p.class == PacketClass::Ipv4Icmp));
        // The gateway is a host address, but an isolated network's, which the host has not.
        let host = dst == n.gateway && n.flags & NetworkFlags::ISOLATED == 0;
        if !host && !open {
            return Reason::DropUnsolicited;
        }
    }
    Reason::PassFromUplink
}

/// The packet embedded in an ICMP error (RFC 792: its IPv4 header and first 8 bytes).
struct Embedded {
    /// Offset of its IPv4 header and of its L4 header.
    ip_off: usize,
    l4_off: usize,
    ip: [u8; ipv4::MIN_HLEN],
    /// The flow it belongs to, as `NETD_NAT` keys it, seen from the other side: source and
    /// destination (addresses and ports) swapped. This is the reply key of a translated packet
    /// the container sent, and the egress key of a packet the container received.
    key: Ipv4Tuple,
    /// Offsets (from `l4_off`) of its source and destination port, or of the ICMP identifier
    /// for both, and of its transport checksum.
    sport_off: usize,
    dport_off: usize,
    csum_off: usize,
    sport: u16,
    dport: u16,
}

/// Reads the packet embedded in the ICMP error of `p` (TCP, UDP or ICMP echo, without IPv4
/// options); `None` for anything else.
#[inline(always)]
fn embedded(ctx: &TcContext, p: &Parsed) -> Option<Embedded> {
    let ip_off = p.l4_off + icmp::ERROR_INNER_OFF;
    let ip = ctx.load::<[u8; ipv4::MIN_HLEN]>(ip_off).ok()?;
    if ip[0] != 0x45 {
        // Options are legal in the embedded header but never seen in netd's flows.
        return None;
    }
    let l4_off = ip_off + ipv4::MIN_HLEN;
    let l4 = ctx.load::<[u8; 8]>(l4_off).ok()?;
    let protocol = ip[ipv4::PROTO_OFF];
    let src = u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let word = |a: u8, b: u8| u16::from_ne_bytes([a, b]);
    let (sport, dport, sport_off, dport_off, csum_off) = match protocol {
        ipv4::PROTO_TCP => (word(l4[0], l4[1]), word(l4[2], l4[3]), 0, 2, tcp::CSUM_OFF),
        ipv4::PROTO_UDP => (word(l4[0], l4[1]), word(l4[2], l4[3]), 0, 2, udp::CSUM_OFF),
        ipv4::PROTO_ICMP if l4[0] == icmp::ECHO_REQUEST || l4[0] == icmp::ECHO_REPLY => {
            let id = word(l4[4], l4[5]);
            (id, id, icmp::ID_OFF, icmp::ID_OFF, icmp::CSUM_OFF)
        }
        _ => return None,
    };
    let key = if protocol == ipv4::PROTO_ICMP {
        Ipv4Tuple::new(dst, src, sport, 0, protocol)
    } else {
        Ipv4Tuple::new(dst, src, dport, sport, protocol)
    };
    Some(Embedded { ip_off, l4_off, ip, key, sport_off, dport_off, csum_off, sport, dport })
}

/// Translates an ICMP error about a flow: the outer address at `outer_addr_off` (from the IPv4
/// header) and the embedded packet's source (`embedded_src`) or destination become
/// `addr:port`, with every checksum involved; the TTL drops by one. Works on
/// `bpf_skb_load_bytes`/`store_bytes` offsets: errors are rare and their embedded headers may
/// lie beyond the linear part. `Err` when the outer header cannot be read or the TTL expires.
#[inline(always)]
fn icmp_error_rewrite(
    ctx: &TcContext,
    p: &Parsed,
    inner: &Embedded,
    outer_addr_off: usize,
    embedded_src: bool,
    addr: u32,
    port: u16,
) -> Result<(), Reason> {
    let Ok(outer_ip) = ctx.load::<[u8; ipv4::MIN_HLEN]>(p.l3_off) else {
        return Err(Reason::DropShortIpv4);
    };
    if outer_ip[ipv4::TTL_OFF] <= 1 {
        return Err(Reason::DropTtlExceeded);
    }
    let Ok(mut icmp_check) = ctx.load::<u16>(p.l4_off + icmp::CSUM_OFF) else {
        return Err(Reason::DropShortIcmp);
    };
    let (addr_off, port_off, old_port) = if embedded_src {
        (ipv4::SRC_OFF, inner.sport_off, inner.sport)
    } else {
        (ipv4::DST_OFF, inner.dport_off, inner.dport)
    };
    let old_addr = u32::from_ne_bytes([
        inner.ip[addr_off],
        inner.ip[addr_off + 1],
        inner.ip[addr_off + 2],
        inner.ip[addr_off + 3],
    ]);
    let protocol = inner.ip[ipv4::PROTO_OFF];

    // The embedded transport checksum (covers the addresses for TCP/UDP, the identifier for
    // ICMP), when the error carries it; a zero UDP checksum stays zero.
    let csum_at = inner.l4_off + inner.csum_off;
    if let Ok(old) = ctx.load::<u16>(csum_at) {
        if !(protocol == ipv4::PROTO_UDP && old == 0) {
            let mut c = old;
            if protocol != ipv4::PROTO_ICMP {
                c = csum::replace32(c, old_addr, addr);
            }
            c = csum::replace16(c, old_port, port);
            if protocol == ipv4::PROTO_UDP && c == 0 {
                c = 0xffff;
            }
            let _ = ctx.store(csum_at, &c, 0);
            icmp_check = csum::replace16(icmp_check, old, c);
        }
    }
    // The embedded port/identifier, address and IPv4 checksum.
    let _ = ctx.store(inner.l4_off + port_off, &port, 0);
    icmp_check = csum::replace16(icmp_check, old_port, port);
    let old_ip_csum = u16::from_ne_bytes([inner.ip[10], inner.ip[11]]);
    let new_ip_csum = csum::replace32(old_ip_csum, old_addr, addr);
    let _ = ctx.store(inner.ip_off + addr_off, &addr, 0);
    let _ = ctx.store(inner.ip_off + ipv4::CSUM_OFF, &new_ip_csum, 0);
    icmp_check = csum::replace32(icmp_check, old_addr, addr);
    icmp_check = csum::replace16(icmp_check, old_ip_csum, new_ip_csum);
    let _ = ctx.store(p.l4_off + icmp::CSUM_OFF, &icmp_check, 0);

    // The outer header: the address and the TTL.
    let old_outer = u32::from_ne_bytes([
        outer_ip[outer_addr_off],
        outer_ip[outer_addr_off + 1],
        outer_ip[outer_addr_off + 2],
        outer_ip[outer_addr_off + 3],
    ]);
    let ttl_word = u16::from_ne_bytes([outer_ip[8], outer_ip[9]]);
    let new_ttl_word = u16::from_ne_bytes([outer_ip[8] - 1, outer_ip[9]]);
    let mut check = u16::from_ne_bytes([outer_ip[10], outer_ip[11]]);
    check = csum::replace16(check, ttl_word, new_ttl_word);
    check = csum::replace32(check, old_outer, addr);
    let _ = ctx.store(p.l3_off + ipv4::TTL_OFF, &new_ttl_word, 0);
    let _ = ctx.store(p.l3_off + outer_addr_off, &addr, 0);
    let _ = ctx.store(p.l3_off + ipv4::CSUM_OFF, &check, 0);
    Ok(())
}

/// An ICMP error arriving on the uplink about a masqueraded flow (RFC 5508): the embedded
/// packet is one the container sent, as translated. Restores the outer destination and the
/// embedded source and sends it into the container.
#[inline(always)]
fn snat_v4_icmp_error_ingress<const L3: bool>(ctx: &TcContext, p: &Parsed, target: &mut NatTarget) -> Reason {
    let Some(inner) = embedded(ctx, p) else {
        return Reason::PassFromUplink;
    };
    // SAFETY: read-only map value.
    let Some(e) = (unsafe { NETD_NAT.get(&inner.key) }) else {
        return Reason::PassFromUplink;
    };
    if e.flags & NatFlags::INGRESS == 0 {
        return Reason::PassFromUplink;
    }
    if let Err(r) = icmp_error_rewrite(ctx, p, &inner, ipv4::DST_OFF, true, e.addr, e.port) {
        return r;
    }
    if !L3 {
        let _ = ctx.store(eth::DST_OFF, &e.dmac, 0);
    }
    target.ifindex = e.ifindex;
    Reason::RedirectReverseNat
}

/// An ICMP error a container sends about a packet it received through masquerade (e.g. "port
/// unreachable" for a late reply): the embedded packet is a reply as translated back. Gives the
/// outer source and the embedded destination the flow's NAT address and port, and sends it out
/// of the flow's uplink.
#[inline(always)]
fn snat_v4_icmp_error_egress(ctx: &TcContext, p: &Parsed, target: &mut NatTarget) -> Reason {
    let Some(inner) = embedded(ctx, p) else {
        return Reason::DropNatUnsupported;
    };
    // SAFETY: read-only map value.
    let Some(e) = (unsafe { NETD_NAT.get(&inner.key) }) else {
        return Reason::DropNatUnsupported;
    };
    if e.flags & NatFlags::INGRESS != 0 || inner.key.src_addr != p.tuple.src_addr {
        return Reason::DropNatUnsupported;
    }
    let (ifindex, l2, smac, dmac) = (e.ifindex, e.flags & NatFlags::L2 != 0, e.smac, e.dmac);
    if let Err(r) = icmp_error_rewrite(ctx, p, &inner, ipv4::SRC_OFF, false, e.addr, e.port) {
        return r;
    }
    if l2 {
        let _ = ctx.store(eth::DST_OFF, &dmac, 0);
        let _ = ctx.store(eth::SRC_OFF, &smac, 0);
    }
    target.ifindex = ifindex;
    target.via_neigh = !l2;
    target.via_peer = false;
    Reason::RedirectNat
}
