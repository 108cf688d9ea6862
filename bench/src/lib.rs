//! `cargo xtask bench`: netd's datapath against the kernel bridge, Docker's dataplane, a direct
//! veth pair and loopback, measured side by side, interleaved round by round.
#![expect(clippy::cast_precision_loss, reason = "counts, indexes and nanoseconds in measurements stay far below 2^52")]

pub mod cost;
pub mod report;
pub mod topology;
pub mod workload;
pub mod xdp;
