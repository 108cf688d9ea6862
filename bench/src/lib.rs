//! `cargo xtask bench`: netd's datapath against the kernel bridge, Docker's dataplane, a direct
//! veth pair and loopback, measured side by side, interleaved round by round.

pub mod cost;
pub mod report;
pub mod topology;
pub mod workload;
