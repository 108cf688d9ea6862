//! Why the datapath did what it did with a packet.
//!
//! Append-only: a value, once released, keeps its meaning forever (pinned counter maps and
//! recorded events outlive the binary that wrote them). Add new reasons at the end; never
//! renumber. Userspace decodes values it does not know as [`Reason::decode`] → `None`.

/// A verdict or drop reason. Values below [`Reason::FIRST_DROP`] are verdicts that let the packet
/// continue; values from it on are drops.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// IPv4 passed on to the kernel (stack or bridge).
    PassIpv4 = 0,
    /// ARP passed on to the kernel bridge (the slow path for address resolution).
    PassArp = 1,
    /// IPv6 passed on unchanged: netd does not handle IPv6 yet.
    PassIpv6 = 2,
    /// Any other ethertype passed on unchanged.
    PassOtherL2 = 3,
    /// Delivered straight into the destination endpoint's namespace (`bpf_redirect_peer`).
    RedirectPeer = 4,
    /// IPv4 for the gateway, the host or beyond: handed to the host's stack.
    PassToStack = 5,
    /// Broadcast, multicast or an unknown address of the endpoint's own subnet: handed to the
    /// kernel bridge (the slow path).
    PassToBridge = 6,
    /// Masqueraded (source rewritten to the uplink's address and a NAT port) and sent out of
    /// the uplink; on a network without masquerade, tracked and sent out with its own address.
    RedirectNat = 7,
    /// A reply (or an ICMP error about a flow) arriving on an uplink, translated back and
    /// delivered straight into the container's namespace.
    RedirectReverseNat = 8,
    /// Arrived on an uplink and is not netd's: handed to the host's stack untouched.
    PassFromUplink = 9,
    /// Sent by the host's stack through a bridge to one of its endpoints: delivered to the
    /// endpoint's veth directly (`bpf_redirect`), skipping the bridge's forwarding.
    RedirectFromHost = 10,
    /// Masqueraded as [`Reason::RedirectNat`], the first packet of a flow that found the
    /// translation table full and took the room of a flow it evicted: one not assured (an
    /// unanswered flow, a UDP query and its answer, ICMP) or a TCP flow that had closed
    /// (conntrack's early drop).
    RedirectNatEvicted = 11,
    /// Masqueraded (as [`Reason::RedirectNat`]) but too big for the uplink's MTU, without DF:
    /// handed to the host's stack translated, which forwards it in fragments, as Docker's
    /// path does (see `NatConfig::STACK_FRAGMENTS`).
    PassNatToStack = 12,

    /// The frame is shorter than an Ethernet header.
    DropShortEthernet = 64,
    /// An 802.1Q tag is announced but the frame ends inside it.
    DropShortVlan = 65,
    /// ARP ethertype but the frame ends inside the ARP header.
    DropShortArp = 66,
    /// IPv4 ethertype but the frame ends inside the fixed IPv4 header.
    DropShortIpv4 = 67,
    /// IPv4 ethertype but the version field is not 4.
    DropIpv4Version = 68,
    /// IPv4 header length (IHL) below 5 words.
    DropIpv4IhlTooSmall = 69,
    /// IPv4 header length (IHL) runs past the end of the frame.
    DropIpv4IhlPastFrame = 70,
    /// IPv4 total length is below the header length or past the end of the frame.
    DropIpv4TotalLength = 71,
    /// TCP segment shorter than its fixed header.
    DropShortTcp = 72,
    /// TCP data offset below 5 words or past the end of the IP payload.
    DropTcpDataOffset = 73,
    /// UDP datagram shorter than its header.
    DropShortUdp = 74,
    /// UDP length field below 8 or past the end of the IP payload.
    DropUdpLength = 75,
    /// ICMP message shorter than its fixed header.
    DropShortIcmp = 76,
    /// IPv6 ethertype but the frame ends inside the fixed IPv6 header.
    DropShortIpv6 = 77,
    /// The source MAC is not the sending endpoint's.
    DropSpoofedMac = 78,
    /// The source IPv4 (or ARP sender address) is not the sending endpoint's.
    DropSpoofedIp = 79,
    /// Endpoint to endpoint inside a network with `enable_icc=false`.
    DropIccDisabled = 80,
    /// Between different networks (Docker's isolation).
    DropCrossNetwork = 81,
    /// From an `--internal` network to outside its subnet.
    DropInternalNetwork = 82,
    /// A new masqueraded flow found the translation table full.
    DropNatTableFull = 83,
    /// A new masqueraded flow found no free port after every attempt.
    DropNatNoPort = 84,
    /// A later IPv4 fragment from a container of a masquerading network whose first fragment
    /// was not seen (or not translated): netd translates a datagram's fragments by its first,
    /// without reassembly, and this one would leave with the container's own address.
    DropNatFragment = 85,
    /// A protocol masquerade cannot translate (not TCP, UDP, ICMP echo or an ICMP error
    /// about a translated flow).
    DropNatUnsupported = 86,
    /// Too big for the uplink's MTU, fragmenting allowed, and the stack would not take it
    /// translated (see `NatConfig::STACK_FRAGMENTS`): netd does not fragment.
    DropNatFragNeeded = 87,
    /// From outside to a container's own address without a flow (any network but a
    /// `nat-unprotected` one): nobody inside asked for it.
    DropUnsolicited = 88,
    /// A reply that would leave the host with TTL 0.
    DropTtlExceeded = 89,
    /// A packet from an uplink without a link-layer header (a tunnel), translated for a
    /// container, could not be given the Ethernet header the container's veth needs (no memory
    /// for it, or the container had just gone).
    DropNoEthernet = 90,
}

impl Reason {
    /// The first value that is a drop.
    pub const FIRST_DROP: u8 = 64;

    /// Every reason this build knows, in value order.
    pub const ALL: [Reason; 40] = [
        Reason::PassIpv4,
        Reason::PassArp,
        Reason::PassIpv6,
        Reason::PassOtherL2,
        Reason::RedirectPeer,
        Reason::PassToStack,
        Reason::PassToBridge,
        Reason::RedirectNat,
        Reason::RedirectReverseNat,
        Reason::PassFromUplink,
        Reason::RedirectFromHost,
        Reason::RedirectNatEvicted,
        Reason::PassNatToStack,
        Reason::DropShortEthernet,
        Reason::DropShortVlan,
        Reason::DropShortArp,
        Reason::DropShortIpv4,
        Reason::DropIpv4Version,
        Reason::DropIpv4IhlTooSmall,
        Reason::DropIpv4IhlPastFrame,
        Reason::DropIpv4TotalLength,
        Reason::DropShortTcp,
        Reason::DropTcpDataOffset,
        Reason::DropShortUdp,
        Reason::DropUdpLength,
        Reason::DropShortIcmp,
        Reason::DropShortIpv6,
        Reason::DropSpoofedMac,
        Reason::DropSpoofedIp,
        Reason::DropIccDisabled,
        Reason::DropCrossNetwork,
        Reason::DropInternalNetwork,
        Reason::DropNatTableFull,
        Reason::DropNatNoPort,
        Reason::DropNatFragment,
        Reason::DropNatUnsupported,
        Reason::DropNatFragNeeded,
        Reason::DropUnsolicited,
        Reason::DropTtlExceeded,
        Reason::DropNoEthernet,
    ];

    /// Whether this reason means the packet was dropped.
    #[must_use]
    pub const fn is_drop(self) -> bool {
        self as u8 >= Self::FIRST_DROP
    }

    /// Decodes a value read from a map or an event; `None` for values newer than this build.
    #[must_use]
    pub fn decode(value: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| *r as u8 == value)
    }

    /// A stable, human-readable name (used by `netd stats` and the bench).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassIpv4 => "pass-ipv4",
            Reason::PassArp => "pass-arp",
            Reason::PassIpv6 => "pass-ipv6",
            Reason::PassOtherL2 => "pass-other-l2",
            Reason::RedirectPeer => "redirect-peer",
            Reason::PassToStack => "pass-to-stack",
            Reason::PassToBridge => "pass-to-bridge",
            Reason::RedirectNat => "redirect-nat",
            Reason::RedirectReverseNat => "redirect-reverse-nat",
            Reason::PassFromUplink => "pass-from-uplink",
            Reason::RedirectFromHost => "redirect-from-host",
            Reason::RedirectNatEvicted => "redirect-nat-evicted",
            Reason::PassNatToStack => "pass-nat-to-stack",
            Reason::DropShortEthernet => "drop-short-ethernet",
            Reason::DropShortVlan => "drop-short-vlan",
            Reason::DropShortArp => "drop-short-arp",
            Reason::DropShortIpv4 => "drop-short-ipv4",
            Reason::DropIpv4Version => "drop-ipv4-version",
            Reason::DropIpv4IhlTooSmall => "drop-ipv4-ihl-too-small",
            Reason::DropIpv4IhlPastFrame => "drop-ipv4-ihl-past-frame",
            Reason::DropIpv4TotalLength => "drop-ipv4-total-length",
            Reason::DropShortTcp => "drop-short-tcp",
            Reason::DropTcpDataOffset => "drop-tcp-data-offset",
            Reason::DropShortUdp => "drop-short-udp",
            Reason::DropUdpLength => "drop-udp-length",
            Reason::DropShortIcmp => "drop-short-icmp",
            Reason::DropShortIpv6 => "drop-short-ipv6",
            Reason::DropSpoofedMac => "drop-spoofed-mac",
            Reason::DropSpoofedIp => "drop-spoofed-ip",
            Reason::DropIccDisabled => "drop-icc-disabled",
            Reason::DropCrossNetwork => "drop-cross-network",
            Reason::DropInternalNetwork => "drop-internal-network",
            Reason::DropNatTableFull => "drop-nat-table-full",
            Reason::DropNatNoPort => "drop-nat-no-port",
            Reason::DropNatFragment => "drop-nat-fragment",
            Reason::DropNatUnsupported => "drop-nat-unsupported",
            Reason::DropNatFragNeeded => "drop-nat-frag-needed",
            Reason::DropUnsolicited => "drop-unsolicited",
            Reason::DropTtlExceeded => "drop-ttl-exceeded",
            Reason::DropNoEthernet => "drop-no-ethernet",
        }
    }
}

const _: () = assert!(size_of::<Reason>() == 1);

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn all_is_sorted_unique_and_complete_for_decode() {
        for pair in Reason::ALL.windows(2) {
            assert!((pair[0] as u8) < (pair[1] as u8), "ALL must be sorted and unique");
        }
        for r in Reason::ALL {
            assert_eq!(Reason::decode(r as u8), Some(r));
            assert_eq!(r.is_drop(), r.name().starts_with("drop-"), "{r:?}");
        }
        assert_eq!(Reason::decode(250), None);
    }

    #[test]
    fn released_values_never_change() {
        // Append-only contract: these numbers are on disk (pinned maps) and in events.
        assert_eq!(Reason::PassIpv4 as u8, 0);
        assert_eq!(Reason::PassArp as u8, 1);
        assert_eq!(Reason::DropShortEthernet as u8, 64);
        assert_eq!(Reason::DropShortIpv6 as u8, 77);
    }
}
