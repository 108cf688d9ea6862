//! Every map of the datapath. Names start with `NETD_` so `bpftool map` shows whose they are.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use netd_common::{Counter, CLASS_SLOTS, REASON_SLOTS};

/// Packets and bytes per verdict/drop reason (index: `netd_common::Reason`).
#[map]
pub static NETD_REASONS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(REASON_SLOTS, 0);

/// Packets and bytes per packet class (index: `netd_common::PacketClass`).
#[map]
pub static NETD_CLASSES: PerCpuArray<Counter> = PerCpuArray::with_max_entries(CLASS_SLOTS, 0);

/// Drop events (always) and trace events (when `NETD_TRACE` is set at load time).
#[map]
pub static NETD_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Load-time switch: when non-zero every packet emits a trace event. Read-only data, so the
/// verifier removes the tracing code entirely when it is off.
#[unsafe(no_mangle)]
pub static NETD_TRACE: u8 = 0;
