//! Endpoints and networks as the datapath sees them. Written by the control plane on connect
//! (before the veth carries its first packet) and removed on disconnect.

/// Flags of an endpoint's network (`EndpointInfo::flags`, `NetworkInfo::flags`). An endpoint's
/// own flags ([`EndpointInfo::TRACE`]) lie above them.
pub struct NetworkFlags;

impl NetworkFlags {
    /// `com.docker.network.bridge.enable_icc`: endpoints of the network may talk to each other.
    pub const ICC: u32 = 1 << 0;
    /// `com.docker.network.bridge.enable_ip_masquerade`.
    pub const MASQUERADE: u32 = 1 << 1;
    /// `--internal`: nothing outside the subnet is reachable.
    pub const INTERNAL: u32 = 1 << 2;
    /// `com.docker.network.host_ipv4`: the network masquerades with an address of its own
    /// ([`NetworkInfo::snat_addr`]), not its uplink's. New flows look it up; known ones carry it.
    pub const SNAT_ADDR: u32 = 1 << 3;
    /// `com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected`: the outside may reach the
    /// network's containers at their own addresses, any port, as Docker's legacy default.
    /// Without it (Docker's `nat`), only replies of the containers' own flows reach them there
    /// (and published ports through the host's addresses).
    pub const UNPROTECTED: u32 = 1 << 4;
    /// `gateway_mode_ipv4=routed`: never masqueraded; the outside reaches the containers at
    /// their own addresses with ICMP and on their published ports (`NETD_PUBLISHED` entries
    /// keyed by the container's address and port).
    pub const ROUTED: u32 = 1 << 5;
    /// `gateway_mode_ipv4=isolated` (with [`NetworkFlags::INTERNAL`]): the gateway address is
    /// not the host's either (the bridge has none): nothing beyond the endpoints is reached.
    pub const ISOLATED: u32 = 1 << 6;
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
    /// [`NetworkFlags`] of the network, and the endpoint's own ([`EndpointInfo::TRACE`]).
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
// `mac_words` loads the MAC as an aligned word and half-word.
const _: () = assert!(core::mem::offset_of!(EndpointInfo, mac) % 4 == 0);

impl EndpointInfo {
    /// `netd monitor --type trace` follows this endpoint: the datapath reports every packet
    /// it sends, and every packet delivered to it, not only drops. Set and cleared by the
    /// daemon while a subscriber asks; never persisted.
    pub const TRACE: u32 = 1 << 16;
    /// The endpoint has published ports (`netd run -p`): what it sends beyond its subnet may
    /// answer a flow opened from outside, also on a network that does not masquerade.
    pub const PUBLISHED: u32 = 1 << 17;

    /// The MAC as two values, its first four bytes and its last two, as they lie in memory:
    /// equal to a packet's MAC field read the same way. Two aligned loads, where comparing
    /// bytes takes six loads and the shifts to join them.
    #[inline(always)]
    #[must_use]
    #[expect(clippy::inline_always, reason = "the datapath calls it between a packet load and a compare")]
    pub fn mac_words(&self) -> (u32, u16) {
        let p = self.mac.as_ptr();
        // SAFETY: `mac` is 6 bytes at a 4-aligned offset (asserted above) of a 4-aligned struct.
        #[expect(clippy::cast_ptr_alignment, reason = "the field's alignment is asserted above")]
        unsafe {
            (p.cast::<u32>().read(), p.add(4).cast::<u16>().read())
        }
    }
}

/// A network: value of the `NETD_NETWORKS` LPM trie (key: its subnet).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    pub network: u32,
    /// Gateway, wire order.
    pub gateway: u32,
    pub flags: u32,
    /// The address the network's flows are masqueraded with (`com.docker.network.host_ipv4`,
    /// with [`NetworkFlags::SNAT_ADDR`]), wire order; 0: the uplink's. (Padding before: a map
    /// pinned by an earlier release holds zeros here.)
    pub snat_addr: u32,
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
    /// Padding, zero. Two fields, not `[u8; 3]`, as in [`crate::Ipv4Tuple`].
    pub pad: u8,
    pub pad2: u16,
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
/// Slots of the direct-mapped endpoint tables (`NETD_ENDPOINT_SLOTS_BY_*`, a power of two).
/// Each endpoint is also kept there, at a slot computed from its key, unless another endpoint
/// holds that slot; the datapath checks the key and falls back to the hash maps, which hold
/// every endpoint. An array lookup is a few instructions, a hash lookup hashes the key and
/// walks a bucket.
pub const ENDPOINT_SLOTS: u32 = 65_536;

/// The direct-mapped slot of host veth `ifindex`.
#[must_use]
pub const fn ifindex_slot(ifindex: u32) -> u32 {
    ifindex & (ENDPOINT_SLOTS - 1)
}

/// The direct-mapped slot of IPv4 address `ip` (wire order): the low 16 bits folded with the
/// high 16 (host order), so that one host number in different networks lands apart.
#[must_use]
pub const fn ip_slot(ip: u32) -> u32 {
    let h = u32::from_be(ip);
    (h ^ (h >> 16)) & (ENDPOINT_SLOTS - 1)
}

/// Entries of the network trie.
pub const MAX_NETWORKS: u32 = 1_024;

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::{ifindex_slot, ip_slot, EndpointInfo, ENDPOINT_SLOTS};

    fn wire(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn mac_words_equal_the_mac_read_from_a_frame() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        let e = EndpointInfo { mac, ..EndpointInfo::default() };
        // The packet's bytes, read as the parser does (first four bytes, then two).
        let frame = [mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0xff, 0xff];
        let read =
            (u32::from_ne_bytes([frame[0], frame[1], frame[2], frame[3]]), u16::from_ne_bytes([frame[4], frame[5]]));
        assert_eq!(e.mac_words(), read);
        let other = EndpointInfo { mac: [0x02, 0x42, 0xac, 0x11, 0x00, 0x03], ..EndpointInfo::default() };
        assert_ne!(other.mac_words(), read);
    }

    #[test]
    fn slots_are_in_range_and_spread_networks_apart() {
        assert_eq!(ifindex_slot(7), 7);
        assert_eq!(ifindex_slot(ENDPOINT_SLOTS + 7), 7);
        // The same host number in the default bridge and the first user networks.
        let slots: Vec<u32> =
            (17..=40).map(|net| ip_slot(wire([172, net, 0, 2]))).chain([ip_slot(wire([10, 1, 0, 2]))]).collect();
        let mut unique = slots.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), slots.len(), "{slots:?}");
        // A /16 maps one to one.
        let mut all: Vec<u32> = (0..=u16::MAX)
            .map(|h| {
                let [hi, lo] = h.to_be_bytes();
                ip_slot(wire([172, 17, hi, lo]))
            })
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 65_536);
    }
}
