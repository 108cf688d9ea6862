//! Per-CPU counters.

/// Packets and bytes, one per CPU in per-CPU maps; userspace sums them.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(size_of::<Counter>() == 16);

#[cfg(feature = "user")]
// SAFETY: repr(C), two u64, no padding, every bit pattern is valid.
unsafe impl aya::Pod for Counter {}
