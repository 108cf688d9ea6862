//! netd's eBPF datapath.
//!
//! The programs are the `netd-ebpf` binary (`src/main.rs`), built for `bpfel-unknown-none` by
//! netd's build script. This library holds the code that is pure packet logic, so that it also
//! compiles (and is unit-tested) on the host.
#![no_std]

pub mod parse;
