//! Endpoints and networks as the datapath sees them. Written by the control plane on connect
//! (before the veth carries its first packet) and removed on disconnect.

/// Flags of an endpoint's network (`EndpointInfo::flags`, `NetworkInfo::flags`).
pub struct NetworkFlags;

impl NetworkFlags {
    /// `com.docker.network.bridge.enable_icc`: endpoints of the network may talk to each other.
    pub const ICC: u32 = 1 << 0;
    /// `com.docker.network.bridge.enable_ip_masquerade`.
    pub const MASQUERADE: u32 = 1 << 1;
    /// `--internal`: nothing outside the subnet is reachable.
    pub const INTERNAL: u32 = 1 << 2;
}

/// An endpoint: value of `NETD_ENDPOINTS_BY_IP` (key: its IPv4 address, wire order) and of
/// `NETD_ENDPOINTS_BY_IFINDEX` (key: its host-side veth's ifindex). It carries its network's
/// plan so the fast path needs no second lookup.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// The host-side veth (the `bpf_redirect_peer` target for traffic to this endpoint).
    pub ifindex: u32,
    /// IPv4 address, wire order.
    pub ip: u32,
    pub mac: [u8; 6],
    pub pad: [u8; 2],
    /// The network's datapath id.
    pub network: u32,
    /// [`NetworkFlags`] of the network.
    pub flags: u32,
    /// Subnet address, mask and gateway of the network, wire order.
    pub subnet: u32,
    pub mask: u32,
    pub gateway: u32,
    /// Index of this endpoint's counters in `NETD_ENDPOINT_COUNTERS` (assigned by the control
    /// plane, below [`MAX_ENDPOINTS`]).
    pub slot: u32,
}

const _: () = assert!(size_of::<EndpointInfo>() == 40);

/// A network: value of the `NETD_NETWORKS` LPM trie (key: its subnet).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    pub network: u32,
    /// Gateway, wire order.
    pub gateway: u32,
    pub flags: u32,
    pub pad: u32,
}

const _: () = assert!(size_of::<NetworkInfo>() == 16);

/// What one endpoint sent, by outcome: value of the per-CPU array `NETD_ENDPOINT_COUNTERS`
/// (index: the endpoint's slot).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounters {
    /// Delivered straight into another endpoint (`bpf_redirect_peer`).
    pub forwarded: crate::Counter,
    /// Handed to the kernel (stack or bridge).
    pub passed: crate::Counter,
    /// Dropped (by reason in `NETD_ENDPOINT_DROPS`).
    pub dropped: crate::Counter,
    /// Masqueraded and sent out of an uplink.
    pub masqueraded: crate::Counter,
}

const _: () = assert!(size_of::<EndpointCounters>() == 64);

/// Key of `NETD_ENDPOINT_DROPS`: an endpoint's slot and a drop reason.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointReasonKey {
    pub slot: u32,
    /// A [`crate::Reason`] value.
    pub reason: u8,
    pub pad: [u8; 3],
}

const _: () = assert!(size_of::<EndpointReasonKey>() == 8);

#[cfg(feature = "user")]
// SAFETY: repr(C), explicit padding, every bit pattern is valid.
unsafe impl aya::Pod for EndpointInfo {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NetworkInfo {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for EndpointReasonKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for EndpointCounters {}

/// Entries of the endpoint maps (and of per-endpoint counters, per reason).
pub const MAX_ENDPOINTS: u32 = 16_384;
/// Entries of the network trie.
pub const MAX_NETWORKS: u32 = 1_024;
