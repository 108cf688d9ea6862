//! netd's eBPF datapath.
//!
//! The programs are the `netd-ebpf` binary (`src/main.rs`), built for `bpfel-unknown-none` by
//! netd's build script. This library holds the code that is pure packet logic, so that it also
//! compiles (and is unit-tested) on the host.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![expect(clippy::inline_always, reason = "the verifier needs packet pointers and their bounds checks in one function")]

pub mod csum;
pub mod parse;
