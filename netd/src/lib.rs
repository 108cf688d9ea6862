//! netd: a Docker-compatible container network daemon whose packet path runs in eBPF.
//!
//! This library is the control plane (daemon, API, CLI client); the `netd` binary is its entry
//! point. Layers: `netlink` and `netns` touch the kernel, `model`/`ipam`/`store` hold the
//! state, `daemon` applies it, `api` serves it, `cli` and `client` talk to it, `datapath` loads
//! the eBPF programs.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod ipam;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod procfs;
pub mod store;
