//! The packet parser: the only code in the datapath that reads packet bytes directly, and that
//! writes them in place ([`Header::writable`], for the one program that does: the uplink's).
//!
//! Every header is bounds-checked once against the end of the frame when it is taken
//! ([`Frame::header`]); its field accessors take the field offset as a const generic that is
//! checked against the header size at compile time, so no accessor can read out of bounds and the
//! verifier sees one comparison per header.
//!
//! All multi-byte values are returned in network byte order (as read from the wire) except where
//! a function says otherwise; the tuple keeps wire order so that map keys match packet bytes.

use netd_common::{Ipv4Tuple, PacketClass, PacketFlags, Reason};

/// Ethernet header offsets and constants.
pub mod eth {
    pub const DST_OFF: usize = 0;
    pub const SRC_OFF: usize = 6;
    pub const PROTO_OFF: usize = 12;
    pub const HLEN: usize = 14;
    /// An 802.1Q tag: TCI (2 bytes) then the encapsulated ethertype (2 bytes).
    pub const VLAN_HLEN: usize = 4;
    pub const VLAN_TCI_OFF: usize = 0;
    pub const VLAN_PROTO_OFF: usize = 2;
    pub const VLAN_ID_MASK: u16 = 0x0fff;

    pub const P_IPV4: u16 = 0x0800;
    pub const P_ARP: u16 = 0x0806;
    pub const P_8021Q: u16 = 0x8100;
    pub const P_8021AD: u16 = 0x88a8;
    pub const P_IPV6: u16 = 0x86dd;
}

/// ARP (RFC 826) for IPv4 over Ethernet.
pub mod arp {
    pub const HTYPE_OFF: usize = 0;
    pub const PTYPE_OFF: usize = 2;
    pub const HLEN_OFF: usize = 4;
    pub const PLEN_OFF: usize = 5;
    pub const OPER_OFF: usize = 6;
    pub const SHA_OFF: usize = 8;
    pub const SPA_OFF: usize = 14;
    pub const THA_OFF: usize = 18;
    pub const TPA_OFF: usize = 24;
    pub const LEN: usize = 28;
}

/// IPv4 (RFC 791).
pub mod ipv4 {
    pub const VER_IHL_OFF: usize = 0;
    pub const TOS_OFF: usize = 1;
    pub const TOT_LEN_OFF: usize = 2;
    pub const ID_OFF: usize = 4;
    pub const FRAG_OFF: usize = 6;
    pub const TTL_OFF: usize = 8;
    pub const PROTO_OFF: usize = 9;
    pub const CSUM_OFF: usize = 10;
    pub const SRC_OFF: usize = 12;
    pub const DST_OFF: usize = 16;
    pub const MIN_HLEN: usize = 20;
    pub const MIN_IHL: u8 = 5;
    /// "More fragments" flag in the host-order flags/fragment-offset word.
    pub const MF: u16 = 0x2000;
    /// "More fragments" in the first byte of the flags/fragment-offset field: read as a byte on
    /// its own, a fresh value to the verifier (see `Parsed::flags`).
    pub const MF_BYTE: u8 = 0x20;
    /// "Don't fragment".
    pub const DF: u16 = 0x4000;
    /// Fragment offset mask (8-byte units) in the host-order flags/fragment-offset word.
    pub const OFFSET_MASK: u16 = 0x1fff;

    pub const PROTO_ICMP: u8 = 1;
    pub const PROTO_TCP: u8 = 6;
    pub const PROTO_UDP: u8 = 17;
}

/// IPv6 (RFC 8200): recognised only.
pub mod ipv6 {
    pub const HLEN: usize = 40;
}

/// TCP (RFC 9293).
pub mod tcp {
    pub const SPORT_OFF: usize = 0;
    pub const DPORT_OFF: usize = 2;
    pub const SEQ_OFF: usize = 4;
    pub const ACK_OFF: usize = 8;
    pub const DOFF_OFF: usize = 12;
    pub const FLAGS_OFF: usize = 13;
    pub const CSUM_OFF: usize = 16;
    pub const MIN_HLEN: usize = 20;
    pub const MIN_DOFF: u8 = 5;
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// UDP (RFC 768).
pub mod udp {
    pub const SPORT_OFF: usize = 0;
    pub const DPORT_OFF: usize = 2;
    pub const LEN_OFF: usize = 4;
    pub const CSUM_OFF: usize = 6;
    pub const HLEN: usize = 8;
}

/// ICMP (RFC 792).
pub mod icmp {
    pub const TYPE_OFF: usize = 0;
    pub const CODE_OFF: usize = 1;
    pub const CSUM_OFF: usize = 2;
    pub const ID_OFF: usize = 4;
    pub const SEQ_OFF: usize = 6;
    pub const HLEN: usize = 8;
    pub const ECHO_REPLY: u8 = 0;
    pub const ECHO_REQUEST: u8 = 8;
    pub const DEST_UNREACH: u8 = 3;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    /// Offset of the offending packet's IPv4 header inside an error message.
    pub const ERROR_INNER_OFF: usize = 8;
}

/// A frame: its linear bytes `[data, end)` as the program context gives them, and its whole
/// length, which is larger for a non-linear skb (e.g. a GSO packet keeps its payload in page
/// fragments). Headers are read from the linear bytes; lengths are checked against the whole.
#[derive(Clone, Copy)]
pub struct Frame {
    data: usize,
    end: usize,
    len: usize,
}

impl Frame {
    /// A frame whose bytes are all linear (XDP, tests).
    #[inline(always)]
    pub fn linear(data: usize, end: usize) -> Self {
        Self { data, end, len: end - data }
    }

    /// A frame of `len` bytes whose first `end - data` are linear (TC: `skb->len`).
    #[inline(always)]
    pub fn with_len(data: usize, end: usize, len: usize) -> Self {
        let linear = end - data;
        Self { data, end, len: if len > linear { len } else { linear } }
    }

    /// The whole length of the frame.
    #[inline(always)]
    #[expect(clippy::len_without_is_empty, reason = "a frame is never tested for emptiness")]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The `N` bytes at `off`, or `None` when the frame ends before `off + N`.
    #[inline(always)]
    pub fn header<const N: usize>(&self, off: usize) -> Option<Header<N>> {
        let start = self.data + off;
        if start + N > self.end {
            return None;
        }
        Some(Header { ptr: start as *const u8 })
    }
}

/// `N` bytes of the frame that are known to be inside it.
#[derive(Clone, Copy)]
pub struct Header<const N: usize> {
    ptr: *const u8,
}

impl<const N: usize> Header<N> {
    #[inline(always)]
    pub fn u8<const OFF: usize>(&self) -> u8 {
        const { assert!(OFF < N) };
        // SAFETY: `Frame::header` checked that N bytes from `ptr` are inside the frame and OFF < N.
        unsafe { *self.ptr.add(OFF) }
    }

    /// A 16-bit field converted to host order.
    #[inline(always)]
    pub fn be16<const OFF: usize>(&self) -> u16 {
        u16::from_be(self.raw16::<OFF>())
    }

    /// A 16-bit field exactly as on the wire (network order in memory).
    #[inline(always)]
    pub fn raw16<const OFF: usize>(&self) -> u16 {
        const { assert!(OFF + 2 <= N) };
        // SAFETY: `Frame::header` checked that N bytes from `ptr` are inside the frame and
        // OFF + 2 <= N.
        unsafe { u16::load::<OFF>(self.ptr) }
    }

    /// A 32-bit field exactly as on the wire (network order in memory).
    #[inline(always)]
    pub fn raw32<const OFF: usize>(&self) -> u32 {
        const { assert!(OFF + 4 <= N) };
        // SAFETY: as `raw16`, with OFF + 4 <= N.
        unsafe { u32::load::<OFF>(self.ptr) }
    }

    /// The same bytes, to write in place: they were checked when the header was taken.
    ///
    /// Only for a program that may write packet data directly: the verifier then gives it a
    /// prologue that un-clones every cloned skb it sees, whether it writes or not (see `nat`).
    #[inline(always)]
    pub fn writable(self) -> HeaderMut<N> {
        HeaderMut { ptr: self.ptr.cast_mut() }
    }

    /// A copy of the `N` bytes.
    #[inline(always)]
    pub fn bytes(&self) -> [u8; N] {
        // SAFETY: `Frame::header` checked that N bytes from `ptr` are inside the frame.
        unsafe { self.ptr.cast::<[u8; N]>().read_unaligned() }
    }
}

/// `N` bytes of the frame, known to be inside it, that the program writes in place.
#[derive(Clone, Copy)]
pub struct HeaderMut<const N: usize> {
    ptr: *mut u8,
}

impl<const N: usize> HeaderMut<N> {
    /// Writes a 16-bit field exactly as it goes on the wire (network order in memory).
    #[inline(always)]
    pub fn set_raw16<const OFF: usize>(&self, v: u16) {
        const { assert!(OFF + 2 <= N) };
        // SAFETY: `Frame::header` checked that N bytes from `ptr` are inside the frame and
        // OFF + 2 <= N.
        unsafe { v.store::<OFF>(self.ptr) }
    }

    /// Writes a 32-bit field exactly as it goes on the wire (network order in memory).
    #[inline(always)]
    pub fn set_raw32<const OFF: usize>(&self, v: u32) {
        const { assert!(OFF + 4 <= N) };
        // SAFETY: as `set_raw16`, with OFF + 4 <= N.
        unsafe { v.store::<OFF>(self.ptr) }
    }
}

/// A 2- or 4-byte packet field, stored whole: one instruction, unaligned, for the reason given
/// at [`Load`].
trait Store: Sized {
    /// # Safety
    /// `ptr + OFF .. ptr + OFF + size_of::<Self>()` must be writable.
    unsafe fn store<const OFF: usize>(self, ptr: *mut u8);
}

macro_rules! impl_store {
    ($t:ty, $size:literal) => {
        impl Store for $t {
            #[inline(always)]
            unsafe fn store<const OFF: usize>(self, ptr: *mut u8) {
                #[cfg(target_arch = "bpf")]
                // SAFETY: the caller's contract; the instruction writes only those bytes.
                unsafe {
                    core::arch::asm!(
                        concat!("*(", $size, " *)({p} + {off}) = {v}"),
                        p = in(reg) ptr,
                        v = in(reg) u64::from(self),
                        off = const OFF,
                        options(nostack, preserves_flags),
                    );
                }
                #[cfg(not(target_arch = "bpf"))]
                // SAFETY: the caller's contract.
                unsafe {
                    ptr.add(OFF).cast::<$t>().write_unaligned(self)
                }
            }
        }
    };
}
impl_store!(u16, "u16");
impl_store!(u32, "u32");

/// A 2- or 4-byte packet field, loaded whole.
trait Load: Sized {
    /// # Safety
    /// `ptr + OFF .. ptr + OFF + size_of::<Self>()` must be readable.
    unsafe fn load<const OFF: usize>(ptr: *const u8) -> Self;
}

/// One load instruction, unaligned. Packet data has no alignment guarantee, so LLVM's BPF
/// backend splits a `read_unaligned` into byte loads (about ten instructions for a word); the
/// kernel allows unaligned packet loads where the CPU does them efficiently (x86-64, arm64),
/// so the datapath says what it means in assembly. Elsewhere (unit tests) a plain unaligned read.
macro_rules! impl_load {
    ($t:ty, $size:literal) => {
        impl Load for $t {
            #[inline(always)]
            unsafe fn load<const OFF: usize>(ptr: *const u8) -> Self {
                #[cfg(target_arch = "bpf")]
                {
                    let v: u64;
                    // SAFETY: the caller's contract; the instruction reads only those bytes.
                    unsafe {
                        core::arch::asm!(
                            concat!("{v} = *(", $size, " *)({p} + {off})"),
                            v = lateout(reg) v,
                            p = in(reg) ptr,
                            off = const OFF,
                            options(pure, readonly, nostack, preserves_flags),
                        );
                    }
                    v as $t
                }
                #[cfg(not(target_arch = "bpf"))]
                // SAFETY: the caller's contract.
                unsafe {
                    ptr.add(OFF).cast::<$t>().read_unaligned()
                }
            }
        }
    };
}
impl_load!(u16, "u16");
impl_load!(u32, "u32");

/// What the parser learnt about a frame that is well formed as far as it looked.
#[derive(Clone, Copy)]
pub struct Parsed {
    pub class: PacketClass,
    /// [`PacketFlags`] bits.
    ///
    /// The container's and the uplink's programs do not branch on them (the small DNS one may):
    /// the verifier knows them as a constant on each path through the parser, and a branch it
    /// can decide from a constant makes it keep paths with different flags apart to the end of
    /// the program (a first fragment's path would be verified again through all of masquerade,
    /// past the verifier's limit). Where the program needs to know, it reads the packet again,
    /// which the verifier cannot relate to them.
    pub flags: u8,
    /// 802.1Q VLAN id, 0 when untagged.
    pub vlan_id: u16,
    /// Offset of the L3 header (after Ethernet and the optional tag).
    pub l3_off: usize,
    /// Offset of the L4 header for IPv4 (`l3_off + IHL * 4`), else `l3_off`.
    pub l4_off: usize,
    /// IPv4 5-tuple; zero for other classes.
    pub tuple: Ipv4Tuple,
}

impl Parsed {
    /// The verdict for a packet the datapath lets through unchanged.
    #[inline(always)]
    pub fn pass_reason(&self) -> Reason {
        match self.class {
            PacketClass::Arp => Reason::PassArp,
            PacketClass::Ipv6 => Reason::PassIpv6,
            PacketClass::Unknown | PacketClass::OtherL2 => Reason::PassOtherL2,
            PacketClass::Ipv4Tcp
            | PacketClass::Ipv4Udp
            | PacketClass::Ipv4Icmp
            | PacketClass::Ipv4Other
            | PacketClass::Ipv4Fragment => Reason::PassIpv4,
        }
    }
}

/// A frame the parser refused, with what was known when it stopped (for the drop event).
#[derive(Clone, Copy)]
pub struct Malformed {
    pub reason: Reason,
    pub flags: u8,
    pub vlan_id: u16,
}

/// How many bytes from the start of `frame` [`parse`] reads: Ethernet and its tag, then the ARP
/// header, the IPv6 header, or the IPv4 header with its options and the L4 header's fixed part.
/// Read from the linear bytes alone; where those end too early to tell, `unknown`.
///
/// A TCP segment usually keeps only its headers in the linear area and its payload in pages: then
/// the headers are all there and nothing needs pulling, which matters because pulling a cloned
/// skb (every TCP segment is one) copies its whole head.
#[inline(always)]
pub fn headers_len(frame: &Frame, unknown: usize) -> usize {
    let Some(l2) = frame.header::<{ eth::HLEN }>(0) else {
        return unknown;
    };
    let mut proto = l2.be16::<{ eth::PROTO_OFF }>();
    let mut l3_off = eth::HLEN;
    if proto == eth::P_8021Q || proto == eth::P_8021AD {
        let Some(tag) = frame.header::<{ eth::VLAN_HLEN }>(eth::HLEN) else {
            return unknown;
        };
        proto = tag.be16::<{ eth::VLAN_PROTO_OFF }>();
        l3_off += eth::VLAN_HLEN;
    }
    match proto {
        eth::P_IPV4 => ipv4_headers_len(frame, l3_off, unknown),
        eth::P_ARP => l3_off + arp::LEN,
        eth::P_IPV6 => l3_off + ipv6::HLEN,
        _ => l3_off,
    }
}

/// [`headers_len`] for a frame without a link-layer header (see [`parse_l3`]).
#[inline(always)]
pub fn headers_len_l3(frame: &Frame, unknown: usize) -> usize {
    let Some(first) = frame.header::<2>(0) else {
        return unknown;
    };
    match first.u8::<{ ipv4::VER_IHL_OFF }>() >> 4 {
        4 => ipv4_headers_len(frame, 0, unknown),
        6 => ipv6::HLEN,
        _ => 0,
    }
}

/// How many bytes from the start of `frame` an IPv4 header at `l3_off` and the fixed part of
/// its L4 header take.
#[inline(always)]
fn ipv4_headers_len(frame: &Frame, l3_off: usize, unknown: usize) -> usize {
    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(l3_off) else {
        return unknown;
    };
    let l4_off = l3_off + usize::from(ip.u8::<{ ipv4::VER_IHL_OFF }>() & 0x0f) * 4;
    if ip.be16::<{ ipv4::FRAG_OFF }>() & ipv4::OFFSET_MASK != 0 {
        return l4_off;
    }
    match ip.u8::<{ ipv4::PROTO_OFF }>() {
        ipv4::PROTO_TCP => l4_off + tcp::MIN_HLEN,
        ipv4::PROTO_UDP => l4_off + udp::HLEN,
        ipv4::PROTO_ICMP => l4_off + icmp::HLEN,
        _ => l4_off,
    }
}

/// Parses Ethernet (with at most one 802.1Q / 802.1ad tag), then ARP, IPv4 and its L4 header,
/// or recognises IPv6.
#[inline(always)]
pub fn parse(frame: &Frame) -> Result<Parsed, Malformed> {
    let mut flags = 0u8;
    let mut vlan_id = 0u16;
    let fail = |reason, flags, vlan_id| Malformed { reason, flags, vlan_id };

    let Some(l2) = frame.header::<{ eth::HLEN }>(0) else {
        return Err(fail(Reason::DropShortEthernet, flags, vlan_id));
    };
    let mut proto = l2.be16::<{ eth::PROTO_OFF }>();
    let mut l3_off = eth::HLEN;
    if proto == eth::P_8021Q || proto == eth::P_8021AD {
        let Some(tag) = frame.header::<{ eth::VLAN_HLEN }>(eth::HLEN) else {
            return Err(fail(Reason::DropShortVlan, flags, vlan_id));
        };
        flags |= PacketFlags::VLAN;
        vlan_id = tag.be16::<{ eth::VLAN_TCI_OFF }>() & eth::VLAN_ID_MASK;
        proto = tag.be16::<{ eth::VLAN_PROTO_OFF }>();
        l3_off += eth::VLAN_HLEN;
    }

    let mut parsed =
        Parsed { class: PacketClass::OtherL2, flags, vlan_id, l3_off, l4_off: l3_off, tuple: Ipv4Tuple::default() };
    match proto {
        eth::P_IPV4 => parse_ipv4(frame, &mut parsed).map(|()| parsed),
        eth::P_ARP => {
            if frame.header::<{ arp::LEN }>(l3_off).is_none() {
                return Err(fail(Reason::DropShortArp, flags, vlan_id));
            }
            parsed.class = PacketClass::Arp;
            Ok(parsed)
        }
        eth::P_IPV6 => {
            if frame.header::<{ ipv6::HLEN }>(l3_off).is_none() {
                return Err(fail(Reason::DropShortIpv6, flags, vlan_id));
            }
            parsed.class = PacketClass::Ipv6;
            Ok(parsed)
        }
        _ => Ok(parsed),
    }
}

/// Parses a frame of a device without a link-layer header (a `tun` device, `WireGuard`, an IP
/// tunnel): IPv4 from its first byte, then its L4 header, or IPv6 recognised, told apart by the
/// version nibble. `l3_off` is 0; anything else is [`PacketClass::OtherL2`].
#[inline(always)]
pub fn parse_l3(frame: &Frame) -> Result<Parsed, Malformed> {
    let mut parsed =
        Parsed { class: PacketClass::OtherL2, flags: 0, vlan_id: 0, l3_off: 0, l4_off: 0, tuple: Ipv4Tuple::default() };
    // Two bytes, not one: the verifier learns nothing from a check that the packet is not
    // empty.
    let Some(first) = frame.header::<2>(0) else {
        return Err(Malformed { reason: Reason::DropShortIpv4, flags: 0, vlan_id: 0 });
    };
    match first.u8::<{ ipv4::VER_IHL_OFF }>() >> 4 {
        4 => parse_ipv4(frame, &mut parsed).map(|()| parsed),
        6 => {
            if frame.header::<{ ipv6::HLEN }>(0).is_none() {
                return Err(Malformed { reason: Reason::DropShortIpv6, flags: 0, vlan_id: 0 });
            }
            parsed.class = PacketClass::Ipv6;
            Ok(parsed)
        }
        _ => Ok(parsed),
    }
}

#[inline(always)]
fn parse_ipv4(frame: &Frame, p: &mut Parsed) -> Result<(), Malformed> {
    let fail = |reason, p: &Parsed| Malformed { reason, flags: p.flags, vlan_id: p.vlan_id };

    let Some(ip) = frame.header::<{ ipv4::MIN_HLEN }>(p.l3_off) else {
        return Err(fail(Reason::DropShortIpv4, p));
    };
    let ver_ihl = ip.u8::<{ ipv4::VER_IHL_OFF }>();
    if ver_ihl >> 4 != 4 {
        return Err(fail(Reason::DropIpv4Version, p));
    }
    let ihl = ver_ihl & 0x0f;
    if ihl < ipv4::MIN_IHL {
        return Err(fail(Reason::DropIpv4IhlTooSmall, p));
    }
    let hlen = usize::from(ihl) * 4;
    if ihl > ipv4::MIN_IHL {
        p.flags |= PacketFlags::IP_OPTIONS;
    }
    let available = frame.len() - p.l3_off;
    if hlen > available {
        return Err(fail(Reason::DropIpv4IhlPastFrame, p));
    }
    let total_len = usize::from(ip.be16::<{ ipv4::TOT_LEN_OFF }>());
    if total_len < hlen || total_len > available {
        return Err(fail(Reason::DropIpv4TotalLength, p));
    }
    let l4_len = total_len - hlen;
    p.l4_off = p.l3_off + hlen;

    let protocol = ip.u8::<{ ipv4::PROTO_OFF }>();
    p.tuple.src_addr = ip.raw32::<{ ipv4::SRC_OFF }>();
    p.tuple.dst_addr = ip.raw32::<{ ipv4::DST_OFF }>();
    p.tuple.protocol = protocol;

    let frag = ip.be16::<{ ipv4::FRAG_OFF }>();
    if frag & (ipv4::MF | ipv4::OFFSET_MASK) != 0 {
        p.flags |= PacketFlags::FRAGMENT;
        if frag & ipv4::OFFSET_MASK != 0 {
            // A later fragment: no L4 header to read.
            p.class = PacketClass::Ipv4Fragment;
            return Ok(());
        }
        p.flags |= PacketFlags::FIRST_FRAGMENT;
    }

    match protocol {
        ipv4::PROTO_TCP => {
            let Some(tcp) = frame.header::<{ tcp::MIN_HLEN }>(p.l4_off) else {
                return Err(fail(Reason::DropShortTcp, p));
            };
            if l4_len < tcp::MIN_HLEN {
                return Err(fail(Reason::DropShortTcp, p));
            }
            let doff = tcp.u8::<{ tcp::DOFF_OFF }>() >> 4;
            if doff < tcp::MIN_DOFF || usize::from(doff) * 4 > l4_len {
                return Err(fail(Reason::DropTcpDataOffset, p));
            }
            p.class = PacketClass::Ipv4Tcp;
            p.tuple.src_port = tcp.raw16::<{ tcp::SPORT_OFF }>();
            p.tuple.dst_port = tcp.raw16::<{ tcp::DPORT_OFF }>();
        }
        ipv4::PROTO_UDP => {
            let Some(udp) = frame.header::<{ udp::HLEN }>(p.l4_off) else {
                return Err(fail(Reason::DropShortUdp, p));
            };
            if l4_len < udp::HLEN {
                return Err(fail(Reason::DropShortUdp, p));
            }
            // A first fragment carries only part of the datagram: its length is checked on
            // reassembly, not here.
            let udp_len = usize::from(udp.be16::<{ udp::LEN_OFF }>());
            // From the packet, not from `p.flags` (see `Parsed::flags`); here the offset is zero,
            // so MF alone says whether this is a fragment.
            let fragment = ip.u8::<{ ipv4::FRAG_OFF }>() & ipv4::MF_BYTE != 0;
            if udp_len < udp::HLEN || (!fragment && udp_len > l4_len) {
                return Err(fail(Reason::DropUdpLength, p));
            }
            p.class = PacketClass::Ipv4Udp;
            p.tuple.src_port = udp.raw16::<{ udp::SPORT_OFF }>();
            p.tuple.dst_port = udp.raw16::<{ udp::DPORT_OFF }>();
        }
        ipv4::PROTO_ICMP => {
            let Some(icmp) = frame.header::<{ icmp::HLEN }>(p.l4_off) else {
                return Err(fail(Reason::DropShortIcmp, p));
            };
            if l4_len < icmp::HLEN {
                return Err(fail(Reason::DropShortIcmp, p));
            }
            p.class = PacketClass::Ipv4Icmp;
            let ty = icmp.u8::<{ icmp::TYPE_OFF }>();
            if ty == icmp::ECHO_REQUEST || ty == icmp::ECHO_REPLY {
                p.tuple.src_port = icmp.raw16::<{ icmp::ID_OFF }>();
            }
        }
        _ => p.class = PacketClass::Ipv4Other,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The parser on the host, for frames the kernel's test run refuses to build (shorter than
    //! an Ethernet header, or cut inside the fixed IPv4/IPv6 header).
    extern crate std;
    use std::vec::Vec;

    use super::{headers_len, headers_len_l3, parse, parse_l3, Frame};
    use netd_common::{PacketClass, Reason};

    fn run(bytes: &[u8]) -> Result<PacketClass, Reason> {
        let data = bytes.as_ptr() as usize;
        parse(&Frame::linear(data, data + bytes.len())).map(|p| p.class).map_err(|m| m.reason)
    }

    fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = std::vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    #[test]
    fn shorter_than_ethernet() {
        for len in 0..14 {
            assert_eq!(run(&std::vec![0u8; len]), Err(Reason::DropShortEthernet), "{len} bytes");
        }
    }

    #[test]
    fn cut_inside_the_fixed_ipv4_header() {
        let mut ip = std::vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&20u16.to_be_bytes());
        ip[9] = 253;
        let full = frame(0x0800, &ip);
        assert_eq!(run(&full), Ok(PacketClass::Ipv4Other));
        for len in 14..full.len() {
            assert_eq!(run(&full[..len]), Err(Reason::DropShortIpv4), "{len} bytes");
        }
    }

    #[test]
    fn lengths_of_a_non_linear_frame_count_its_whole_length() {
        // A GSO packet: 14 + 20 + 20 linear header bytes, 3000 bytes in all.
        let mut ip = std::vec![0u8; 40];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(3000u16 - 14).to_be_bytes());
        ip[9] = 6;
        ip[20 + 12] = 5 << 4;
        let f = frame(0x0800, &ip);
        let data = f.as_ptr() as usize;
        let class = |frame: Frame| parse(&frame).map(|p| p.class).map_err(|m| m.reason);
        assert_eq!(class(Frame::with_len(data, data + f.len(), 3000)), Ok(PacketClass::Ipv4Tcp));
        assert_eq!(class(Frame::linear(data, data + f.len())), Err(Reason::DropIpv4TotalLength));
    }

    #[test]
    fn writable_headers_write_wire_order_in_bounds_only() {
        let mut bytes = std::vec![0u8; 8];
        let data = bytes.as_mut_ptr() as usize;
        let f = Frame::linear(data, data + 8);
        // An odd offset: packet fields need not be aligned.
        let h = f.header::<6>(1).expect("in bounds").writable();
        h.set_raw16::<0>(u16::from_ne_bytes([0xaa, 0xbb]));
        h.set_raw32::<2>(u32::from_ne_bytes([1, 2, 3, 4]));
        assert!(f.header::<6>(3).is_none(), "ends past the frame");
        assert!(f.header::<2>(7).is_none(), "ends past the frame");
        assert_eq!(bytes, [0, 0xaa, 0xbb, 1, 2, 3, 4, 0]);
    }

    #[test]
    fn headers_len_is_what_the_parser_reads() {
        let len = |bytes: &[u8]| {
            let data = bytes.as_ptr() as usize;
            headers_len(&Frame::linear(data, data + bytes.len()), 999)
        };
        let mut ip = std::vec![0u8; 24 + 20];
        ip[0] = 0x46;
        ip[9] = 6;
        assert_eq!(len(&frame(0x0800, &ip)), 14 + 24 + 20);
        ip[9] = 17;
        assert_eq!(len(&frame(0x0800, &ip)), 14 + 24 + 8);
        ip[9] = 1;
        assert_eq!(len(&frame(0x0800, &ip)), 14 + 24 + 8);
        ip[9] = 47;
        assert_eq!(len(&frame(0x0800, &ip)), 14 + 24);
        // A later fragment has no L4 header.
        ip[9] = 6;
        ip[7] = 1;
        assert_eq!(len(&frame(0x0800, &ip)), 14 + 24);
        let mut tagged = std::vec![0, 5, 0x08, 0x06];
        tagged.extend_from_slice(&[0u8; 28]);
        assert_eq!(len(&frame(0x8100, &tagged)), 18 + 28);
        assert_eq!(len(&frame(0x86dd, &[])), 14 + 40);
        assert_eq!(len(&frame(0x88cc, &[])), 14);
        // Linear bytes too short to tell.
        assert_eq!(len(&frame(0x0800, &ip[..10])), 999);
        assert_eq!(len(&frame(0x8100, &[0])), 999);
        assert_eq!(len(&[0u8; 10]), 999);
    }

    #[test]
    fn frames_without_a_link_layer_header_start_with_ip() {
        let run_l3 = |bytes: &[u8]| {
            let data = bytes.as_ptr() as usize;
            let f = Frame::linear(data, data + bytes.len());
            (
                parse_l3(&f).map(|p| (p.class, p.l3_off, p.l4_off, p.tuple)).map_err(|m| m.reason),
                headers_len_l3(&f, 999),
            )
        };
        // UDP 10.0.0.1:53 -> 10.0.0.2:4000 behind a 24-byte header (one option word).
        let mut ip = std::vec![0u8; 24 + 8];
        ip[0] = 0x46;
        ip[2..4].copy_from_slice(&32u16.to_be_bytes());
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ip[24..26].copy_from_slice(&53u16.to_be_bytes());
        ip[26..28].copy_from_slice(&4000u16.to_be_bytes());
        ip[28..30].copy_from_slice(&8u16.to_be_bytes());
        let (parsed, len) = run_l3(&ip);
        let (class, l3_off, l4_off, tuple) = parsed.expect("parsed");
        assert_eq!((class, l3_off, l4_off, len), (PacketClass::Ipv4Udp, 0, 24, 32));
        assert_eq!(tuple.src_addr.to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(u16::from_be(tuple.dst_port), 4000);
        assert_eq!(run_l3(&ip[..19]).0.map(|p| p.0), Err(Reason::DropShortIpv4));
        assert_eq!(run_l3(&ip[..10]).1, 999, "too short to tell");
        let mut v6 = std::vec![0u8; 40];
        v6[0] = 0x60;
        assert_eq!(run_l3(&v6).0.map(|p| p.0), Ok(PacketClass::Ipv6));
        assert_eq!(run_l3(&v6[..39]).0.map(|p| p.0), Err(Reason::DropShortIpv6));
        assert_eq!(run_l3(&[0x10, 0, 0, 0]).0.map(|p| p.0), Ok(PacketClass::OtherL2), "neither version");
        assert_eq!(run_l3(&[]).0.map(|p| p.0), Err(Reason::DropShortIpv4));
    }

    #[test]
    fn cut_inside_the_vlan_tag_or_the_ipv6_header() {
        let tagged = frame(0x8100, &[0, 5, 0x86, 0xdd]);
        for len in 14..18 {
            assert_eq!(run(&tagged[..len]), Err(Reason::DropShortVlan), "{len} bytes");
        }
        let mut v6 = std::vec![0u8; 40];
        v6[0] = 0x60;
        let full = frame(0x86dd, &v6);
        assert_eq!(run(&full), Ok(PacketClass::Ipv6));
        for len in 14..full.len() {
            assert_eq!(run(&full[..len]), Err(Reason::DropShortIpv6), "{len} bytes");
        }
    }
}
