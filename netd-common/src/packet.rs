//! What the parser found in a packet.

/// The class of a parsed frame. Append-only, like [`crate::Reason`].
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// Not parsed (malformed frames are classified by their drop reason instead).
    Unknown = 0,
    /// ARP for IPv4 over Ethernet.
    Arp = 1,
    /// IPv4 carrying TCP (an unfragmented packet or a first fragment).
    Ipv4Tcp = 2,
    /// IPv4 carrying UDP (an unfragmented packet or a first fragment).
    Ipv4Udp = 3,
    /// IPv4 carrying ICMP (an unfragmented packet or a first fragment).
    Ipv4Icmp = 4,
    /// IPv4 carrying another protocol; ports are zero.
    Ipv4Other = 5,
    /// A non-first IPv4 fragment: no L4 header, ports are zero.
    Ipv4Fragment = 6,
    /// IPv6 (recognised, not parsed further).
    Ipv6 = 7,
    /// Any other ethertype.
    OtherL2 = 8,
}

impl PacketClass {
    /// Every class this build knows, in value order.
    pub const ALL: [PacketClass; 9] = [
        PacketClass::Unknown,
        PacketClass::Arp,
        PacketClass::Ipv4Tcp,
        PacketClass::Ipv4Udp,
        PacketClass::Ipv4Icmp,
        PacketClass::Ipv4Other,
        PacketClass::Ipv4Fragment,
        PacketClass::Ipv6,
        PacketClass::OtherL2,
    ];

    /// Decodes a value read from a map or an event; `None` for values newer than this build.
    #[must_use]
    pub fn decode(value: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| *c as u8 == value)
    }

    /// A stable, human-readable name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            PacketClass::Unknown => "unknown",
            PacketClass::Arp => "arp",
            PacketClass::Ipv4Tcp => "ipv4-tcp",
            PacketClass::Ipv4Udp => "ipv4-udp",
            PacketClass::Ipv4Icmp => "ipv4-icmp",
            PacketClass::Ipv4Other => "ipv4-other",
            PacketClass::Ipv4Fragment => "ipv4-fragment",
            PacketClass::Ipv6 => "ipv6",
            PacketClass::OtherL2 => "other-l2",
        }
    }
}

/// Bit flags describing a parsed frame (a plain `u8` in events).
pub struct PacketFlags;

impl PacketFlags {
    /// The frame carried one 802.1Q tag.
    pub const VLAN: u8 = 1 << 0;
    /// The IPv4 header has options (IHL > 5).
    pub const IP_OPTIONS: u8 = 1 << 1;
    /// IPv4 "more fragments" is set or the fragment offset is non-zero.
    pub const FRAGMENT: u8 = 1 << 2;
    /// A fragment with offset zero (it carries the L4 header).
    pub const FIRST_FRAGMENT: u8 = 1 << 3;
}

/// An IPv4 5-tuple. Addresses and ports are in network byte order, exactly as on the wire.
///
/// For ICMP echo request/reply, `src_port` holds the identifier and `dst_port` is zero; for
/// other ICMP messages both are zero. For non-first fragments and other protocols both are zero.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ipv4Tuple {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// Padding, zero in map keys. Two fields, not `[u8; 3]`: the BPF target zeroes a 3-byte
    /// array with a call to a `memset` subprogram, these with two stores (ARCHITECTURE.md, "The
    /// parser").
    pub pad: u8,
    pub pad2: u16,
}

const _: () = assert!(size_of::<Ipv4Tuple>() == 16);

impl Ipv4Tuple {
    /// A tuple with its padding zeroed, as map keys need.
    #[must_use]
    #[inline]
    pub const fn new(src_addr: u32, dst_addr: u32, src_port: u16, dst_port: u16, protocol: u8) -> Self {
        Self { src_addr, dst_addr, src_port, dst_port, protocol, pad: 0, pad2: 0 }
    }

    /// This tuple as a map key: its padding zeroed.
    #[must_use]
    #[inline]
    pub const fn key(&self) -> Self {
        Self::new(self.src_addr, self.dst_addr, self.src_port, self.dst_port, self.protocol)
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), no padding bytes left implicit, every bit pattern is valid.
unsafe impl aya::Pod for Ipv4Tuple {}
