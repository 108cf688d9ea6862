//! The fallback for kernels without TCX (before 6.6), also chosen with `--tc-attach clsact`:
//! each program as a direct-action `cls_bpf` filter on its device's `clsact` qdisc, attached
//! over netlink, as `tc filter add … bpf da` would.
//!
//! A filter belongs to its device: it outlives the daemon as a pinned TCX link does, and goes
//! with the device. What tells a restarted daemon "netd attached this" is a marker in the links
//! directory: the program pinned as `<pin name>@clsact-<ifindex>`. The ifindex tells the device
//! that has the filter from one created again under the same name (which has none).

#![expect(unsafe_code, reason = "if_nametoindex(3) has no safe std wrapper")]

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    str::FromStr,
};

use aya::programs::{
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
    ProgramError, SchedClassifier, TcAttachType,
};

/// How programs are attached: TCX links where the kernel has them (6.6 on), else `clsact`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcAttach {
    #[default]
    Auto,
    Tcx,
    Clsact,
}

impl FromStr for TcAttach {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "tcx" => Ok(Self::Tcx),
            "clsact" => Ok(Self::Clsact),
            _ => Err(format!("invalid attach mode {s:?}: expected auto, tcx or clsact")),
        }
    }
}

impl TcAttach {
    /// Whether this mode, on the running kernel, means `clsact` filters.
    #[must_use]
    pub fn is_clsact(self) -> bool {
        match self {
            Self::Auto => {
                use aya::util::KernelVersion;
                KernelVersion::current().is_ok_and(|v| v < KernelVersion::new(6, 6, 0))
            }
            Self::Tcx => false,
            Self::Clsact => true,
        }
    }
}

/// The filter's priority (first: lower runs earlier) and handle, the same on every device, so
/// that a restarted daemon finds its filters without having recorded them.
const PRIORITY: u16 = 1;
const HANDLE: TcHandle = TcHandle::new(0, 0x4e44);

/// The index of device `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> Option<u32> {
    let name = CString::new(ifname).ok()?;
    // SAFETY: a valid NUL-terminated string; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The marker of `pin_name` (a pin path's file name) on device `ifindex`, in `dir`.
pub fn marker(dir: &Path, pin_name: &str, ifindex: u32) -> PathBuf {
    dir.join(format!("{pin_name}@clsact-{ifindex}"))
}

/// `pin_name` of a marker's file name.
pub fn pin_name_of_marker(file_name: &str) -> Option<&str> {
    let (name, index) = file_name.rsplit_once("@clsact-")?;
    index.parse::<u32>().ok().map(|_| name)
}

/// Every marker of `pin_name` in `dir`, whatever its device.
pub fn markers(dir: &Path, pin_name: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_name().to_str().and_then(pin_name_of_marker) == Some(pin_name))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Attaches `program` to `ifname`'s `hook` as netd's filter (replacing one left there). With
/// `keep`, the filter outlives this process; otherwise it goes when the program does.
pub fn attach(program: &mut SchedClassifier, ifname: &str, hook: TcAttachType, keep: bool) -> Result<(), ProgramError> {
    match tc::qdisc_add_clsact(ifname) {
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        other => other?,
    }
    detach(ifname, hook)?;
    let options = NlOptions { priority: PRIORITY, handle: HANDLE, ..NlOptions::default() };
    let id = program.attach_with_options(ifname, hook, TcAttachOptions::Netlink(options))?;
    if keep {
        // Dropping the link would detach the filter.
        std::mem::forget(program.take_link(id)?);
    }
    Ok(())
}

/// Swaps `program` into netd's filter on `ifname`'s `hook`, atomically (a netlink replace).
pub fn replace(program: &mut SchedClassifier, ifname: &str, hook: TcAttachType) -> Result<(), ProgramError> {
    let link = SchedClassifierLink::attached(ifname, hook, PRIORITY, HANDLE, None).map_err(TcError::IoError)?;
    let id = program.attach_to_link(link)?;
    // Dropping the link would detach the filter.
    std::mem::forget(program.take_link(id)?);
    Ok(())
}

/// Detaches netd's filter from `ifname`'s `hook`. No device, no qdisc or no filter is success.
pub fn detach(ifname: &str, hook: TcAttachType) -> Result<(), ProgramError> {
    let Ok(link) = SchedClassifierLink::attached(ifname, hook, PRIORITY, HANDLE, None) else {
        return Ok(());
    };
    match aya::programs::Link::detach(link) {
        Err(ProgramError::NetlinkError(e))
            if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{marker, pin_name_of_marker, TcAttach};

    #[test]
    fn markers_name_their_pin_and_device() {
        let m = marker(Path::new("/b/links"), "uplink:eth0", 7);
        assert_eq!(m, Path::new("/b/links/uplink:eth0@clsact-7"));
        assert_eq!(pin_name_of_marker("uplink:eth0@clsact-7"), Some("uplink:eth0"));
        assert_eq!(pin_name_of_marker("veth1234567"), None);
        assert_eq!(pin_name_of_marker("veth1234567@clsact-x"), None);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("clsact".parse::<TcAttach>(), Ok(TcAttach::Clsact));
        assert_eq!("tcx".parse::<TcAttach>(), Ok(TcAttach::Tcx));
        assert!(!TcAttach::Tcx.is_clsact());
        assert!(TcAttach::Clsact.is_clsact());
        assert!("tc".parse::<TcAttach>().unwrap_err().contains("expected auto, tcx or clsact"));
    }
}
