//! Prerequisites, installed only when missing. Each check is cheap, so a machine that has
//! everything passes through in well under a second.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::step::{self, output, say};

/// Debian packages the build, the tests, the bench and the demo use.
const DEBIAN_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22 (built from source below).
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    // Namespaces, links, sysctls, inspection.
    "iproute2",
    "procps",
    "iputils-ping",
    "bpftool",
    // Docker's dataplane rebuilt for the bench, and checking netd leaves rulesets empty.
    "iptables",
    "nftables",
    // Traffic generators for the bench.
    "iperf3",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13";
const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    nightly_rust_src()?;
    debian_packages()?;
    bpf_linker()?;
    bpffs()?;
    docker_cli()?;
    Ok(())
}

/// The stock docker CLI (the API-compatibility tests drive it). Machines of this kind ship one in
/// /usr/local/bin; elsewhere Debian's docker.io provides it.
fn docker_cli() -> Result<()> {
    if ["/usr/local/bin/docker", "/usr/bin/docker"].iter().any(|p| Path::new(p).exists()) {
        return Ok(());
    }
    say("installing the docker CLI (Debian docker.io) for the API-compatibility tests");
    step::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "docker.io"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]));
    match installed {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => Ok(()),
        Some(_) => {
            say("adding rust-src to the nightly toolchain (eBPF is built with -Z build-std=core)");
            step::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        }
        None => {
            say("installing the nightly toolchain with rust-src (eBPF is built with -Z build-std=core)");
            step::run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))
        }
    }
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    say(&format!("installing Debian packages: {}", missing.join(" ")));
    say("apt-get update");
    step::run(Command::new("apt-get").args(["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    step::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install")
}

fn bpf_linker() -> Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version"));
    if version.as_deref().is_some_and(|v| v.contains(&format!(" {BPF_LINKER_VERSION}."))) {
        return Ok(());
    }
    say(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (takes a few minutes; found: {})",
        version.as_deref().map_or("none", str::trim)
    ));
    let path = format!("{LLVM_PREFIX}/bin:{}", std::env::var("PATH").unwrap_or_default());
    step::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                &format!("^{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                "llvm-22",
                "--locked",
                "--force",
            ])
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
    )
}

fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next(), f.next(), f.next());
        dir == Some(BPFFS) && fstype == Some("bpf")
    }) {
        return Ok(());
    }
    if !Path::new(BPFFS).is_dir() {
        bail!("{BPFFS} does not exist: is this Linux with BPF?");
    }
    say(&format!("mounting bpffs on {BPFFS}"));
    step::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}
