//! Test harness for netd: crafted packets, network-namespace guards, and helpers to run code
//! inside a namespace. Everything a test creates has a unique name and is removed on drop, also
//! when the test panics.

pub mod bpf;
pub mod daemon;
pub mod netns;
pub mod packet;
