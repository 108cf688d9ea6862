//! Records the datapath sends to userspace through the `NETD_EVENTS` ring buffer.

use crate::Ipv4Tuple;

/// `Event::kind` for a dropped packet (always emitted).
pub const EVENT_KIND_DROP: u8 = 1;
/// `Event::kind` for a packet of a traced endpoint (`EndpointInfo::TRACE`), or any packet when
/// tracing is enabled at load time (tests).
pub const EVENT_KIND_TRACE: u8 = 2;
/// `NatEvent::kind`: a new masqueraded flow (while `NatConfig::EVENTS` is set).
pub const EVENT_KIND_NAT_NEW: u8 = 3;

/// One datapath event: what happened to one packet and why.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EVENT_KIND_DROP`] or [`EVENT_KIND_TRACE`].
    pub kind: u8,
    /// A [`crate::Reason`] value.
    pub reason: u8,
    /// A [`crate::PacketClass`] value.
    pub class: u8,
    /// [`crate::PacketFlags`] bits.
    pub flags: u8,
    /// The interface the packet arrived on.
    pub ifindex: u32,
    /// The frame length.
    pub len: u32,
    /// 802.1Q VLAN id (0 when untagged).
    pub vlan_id: u16,
    pub pad: [u8; 2],
    /// The IPv4 5-tuple (zero when the frame is not IPv4 or did not parse).
    pub tuple: Ipv4Tuple,
    /// Where the packet was redirected to (ifindex), 0 when it was not.
    pub target: u32,
    pub pad2: u32,
}

const _: () = assert!(size_of::<Event>() == 40);

/// A new masqueraded flow, as the datapath created it: the container's tuple and what the
/// outside sees. Records in the ring are told apart by their first byte, `kind`.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEvent {
    /// [`EVENT_KIND_NAT_NEW`].
    pub kind: u8,
    /// `RedirectNat`, or `RedirectNatEvicted` when the flow evicted another from a full table.
    pub reason: u8,
    pub pad: u16,
    /// The uplink the flow leaves through.
    pub ifindex: u32,
    /// The flow as the container sent it (the egress key).
    pub tuple: Ipv4Tuple,
    /// The source the outside sees: the uplink's address and the NAT port (wire order).
    pub nat_addr: u32,
    pub nat_port: u16,
    pub pad2: u16,
}

const _: () = assert!(size_of::<NatEvent>() == 32);

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding, every bit pattern is valid.
unsafe impl aya::Pod for Event {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NatEvent {}
