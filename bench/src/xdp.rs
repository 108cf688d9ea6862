//! A do-nothing XDP program (`XDP_PASS`), for one question of the masquerade design: what does
//! merely having XDP on a veth uplink cost? (Attaching native XDP to a veth moves its receive
//! path onto a NAPI ring.) If that alone costs more than the whole TC reverse NAT, the reverse
//! NAT belongs in TC on such uplinks.
#![expect(unsafe_code, reason = "bpf(2) has no safe std wrapper, and the program is two raw instructions")]

use std::os::fd::{FromRawFd as _, OwnedFd};

use anyhow::{bail, Result};
use netd_tests::netns::{unique_name, NetNs};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_XDP: u32 = 6;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> libc::c_long {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` of the size passed.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
}

/// Loads `r0 = XDP_PASS; exit`.
fn load_pass() -> Result<OwnedFd> {
    let insns: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 2, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..60].copy_from_slice(b"netd_xdppass");
    let fd = bpf(BPF_PROG_LOAD, &mut attr);
    if fd < 0 {
        bail!("BPF_PROG_LOAD: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
}

/// Attaches the pass program natively (`xdpdrv`) to `dev` in `ns`. It stays as long as the
/// device (the namespace's teardown removes both).
pub fn attach_pass(ns: &NetNs, dev: &str) -> Result<()> {
    let prog = load_pass()?;
    let pin = format!("/sys/fs/bpf/{}\0", unique_name("netd-bench-xdp-"));
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(pin.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&prog).to_ne_bytes());
    if bpf(BPF_OBJ_PIN, &mut attr) < 0 {
        bail!("BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
    }
    let path = pin.trim_end_matches('\0');
    // nsenter, not `ip -n`: that one remounts /sys, hiding the bpffs pin.
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.name()))
        .args(["ip", "link", "set", "dev", dev, "xdpdrv", "pinned", path])
        .output()?;
    let _ = std::fs::remove_file(path);
    if !out.status.success() {
        bail!("attaching XDP to {dev}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let shown = ns.ip(&["-d", "link", "show", "dev", dev]);
    if !String::from_utf8_lossy(&shown.stdout).contains("xdp") {
        bail!("no XDP program on {dev} after attaching");
    }
    Ok(())
}
