//! netd: a Docker-compatible container network daemon whose packet path runs in eBPF.
//!
//! This library is the control plane; the `netd` binary is its CLI and daemon.
#![deny(unsafe_code)]

pub mod datapath;
