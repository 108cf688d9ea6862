//! Types shared by the eBPF datapath (`netd-ebpf`) and the control plane (`netd`).
//!
//! Everything here is `#[repr(C)]`, has explicit padding, no `bool`, and a compile-time size
//! assertion: these layouts are the contract of the BPF maps, and pinned maps outlive a daemon
//! restart, so a layout change is a breaking change.
#![no_std]

pub mod endpoint;
pub mod event;
pub mod nat;
pub mod packet;
pub mod reason;
pub mod stats;

pub use endpoint::{
    ifindex_slot, ip_slot, EndpointCounters, EndpointInfo, EndpointReasonKey, NetworkFlags, NetworkInfo,
    ENDPOINT_SLOTS, MAX_ENDPOINTS, MAX_NETWORKS,
};
pub use event::{Event, NatEvent, EVENT_KIND_DROP, EVENT_KIND_NAT_NEW, EVENT_KIND_TRACE};
pub use nat::{
    FragEntry, FragKey, NatConfig, NatEntry, NatFlags, NatTimeouts, PublishedKey, PublishedPort, UplinkInfo,
    MAX_HOST_ADDRS, MAX_PUBLISHED, MAX_TRUSTED, MAX_UPLINKS, NAT_DEFAULT_FLOWS, NAT_FRAG_DATAGRAMS,
    NAT_FRAG_TIMEOUT_NS, TAIL_NAT_TO_STACK,
};
pub use packet::{Ipv4Tuple, PacketClass, PacketFlags};
pub use reason::Reason;
pub use stats::Counter;

/// Entries of every map indexed by [`Reason`]: the whole `u8` space, so appending a reason never
/// needs a bigger (re-created) pinned map.
pub const REASON_SLOTS: u32 = 256;

/// Classes per reason in `NETD_VERDICTS` (index: `reason * CLASS_SLOTS + class`).
pub const CLASS_SLOTS: u32 = 32;

/// Entries of `NETD_VERDICTS`: one counter per (reason, class), counted with one lookup.
pub const VERDICT_SLOTS: u32 = REASON_SLOTS * CLASS_SLOTS;

/// Where a sandbox's processes find the embedded DNS resolver: Docker's `127.0.0.11`, port 53.
pub const DNS_RESOLVER_ADDR: [u8; 4] = [127, 0, 0, 11];

/// The port the resolver's sockets are bound to in a sandbox (on [`DNS_RESOLVER_ADDR`]); the
/// program on the sandbox's `lo` moves port 53 there and back, which leaves port 53 to the
/// sandbox's own servers. Above Linux's default ephemeral ports (32768–60999), so no socket of
/// the sandbox is given it by chance.
pub const DNS_RESOLVER_PORT: u16 = 61053;
