//! Builds the eBPF programs (`netd-ebpf`) for `bpfel-unknown-none` with the nightly toolchain and
//! bpf-linker, and leaves the object in `OUT_DIR/netd-ebpf` for `include_bytes_aligned!`.
//! `cargo xtask setup` installs what this needs.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("netd has no parent directory"))?
        .join("netd-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    // The binary links against netd-common too: rebuild when either changes.
    println!("cargo:rerun-if-changed={manifest_dir}/../netd-common/src");
    aya_build::build_ebpf(
        [aya_build::Package { name: "netd-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
