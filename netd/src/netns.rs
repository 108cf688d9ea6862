//! Named network namespaces: files bind-mounted from `/proc/thread-self/ns/net`, like
//! `ip netns` and Docker's sandbox keys. The only module that calls `unshare`, `setns` or
//! `mount`; each call runs on a thread of its own (or in a child before exec) so no runtime
//! thread changes namespace.
#![expect(unsafe_code, reason = "unshare/setns/mount/umount2 have no safe std wrappers")]

use std::{
    ffi::CString,
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::Path,
};

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling thread into the namespace at `path`. Only for threads that never return to
/// a runtime (a thread of its own, or a child just before exec).
pub fn enter_this_thread(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: a valid namespace fd owned by `file` for the duration of the call; setns changes
    // only this thread's network namespace.
    check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Creates a new network namespace and pins it by bind-mounting it on `path` (a new file).
/// On failure nothing is left behind.
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let target = cstring(path)?;
    let result = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: unshare affects only this short-lived thread (CLONE_NEWNET is per thread).
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
            let source = CString::new("/proc/thread-self/ns/net").expect("no NUL");
            // SAFETY: valid NUL-terminated paths; a plain bind mount of this thread's namespace.
            check(unsafe {
                libc::mount(source.as_ptr(), target.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null())
            })
        })
        .join()
        .expect("netns thread panicked")
    });
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Writes a `net.*` sysctl inside the namespace at `path` (`key` like `ipv6/conf/all/disable_ipv6`).
/// `/proc/sys/net` shows the namespace of the thread that opens it, so a thread of its own
/// enters the namespace first.
pub fn write_net_sysctl(path: &Path, key: &str, value: &str) -> io::Result<()> {
    run_in(path, || std::fs::write(format!("/proc/sys/net/{key}"), value))
}

/// Runs `f` on a thread of its own inside the namespace at `path` (sockets it creates stay in
/// that namespace wherever they are used afterwards).
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_this_thread(path)?;
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}

/// What a sandbox's processes see of it besides its network namespace: files bind-mounted
/// over the host's (`/etc/resolv.conf`, `/etc/hosts`) and a host name.
#[derive(Debug, Default)]
pub struct SandboxView {
    /// (the sandbox's file, the path it is shown at).
    pub files: Vec<(std::path::PathBuf, &'static str)>,
    pub hostname: Option<String>,
}

/// Makes `cmd`'s child see `view`, as `ip netns exec` shows `/etc/netns/NAME/resolv.conf`:
/// the child gets a mount namespace of its own (a slave of the caller's, so mounts made later
/// on the host still show) with the files bind-mounted there, and a UTS namespace of its own
/// with the host name. Nothing changes for the caller; the mounts go with the child's last
/// process. A file the host lacks (`/etc/hosts`) is not shown.
pub fn with_view(cmd: &mut std::process::Command, view: &SandboxView) -> io::Result<()> {
    let mut mounts = Vec::new();
    for (source, target) in &view.files {
        if Path::new(target).exists() {
            mounts.push((cstring(source)?, cstring(Path::new(target))?));
        }
    }
    let root = cstring(Path::new("/"))?;
    let hostname = view.hostname.clone().map(String::into_bytes);
    let pre_exec = move || {
        // SAFETY: between fork and exec only async-signal-safe calls are made (unshare, mount,
        // sethostname), with buffers prepared before the fork.
        unsafe {
            if !mounts.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let flags = libc::MS_REC | libc::MS_SLAVE;
                check(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
                for (source, target) in &mounts {
                    let (s, t) = (source.as_ptr(), target.as_ptr());
                    check(libc::mount(s, t, std::ptr::null(), libc::MS_BIND, std::ptr::null()))?;
                }
            }
            if let Some(name) = &hostname {
                check(libc::unshare(libc::CLONE_NEWUTS))?;
                check(libc::sethostname(name.as_ptr().cast(), name.len()))?;
            }
        }
        Ok(())
    };
    // SAFETY: `pre_exec` only makes the async-signal-safe calls above.
    unsafe { std::os::unix::process::CommandExt::pre_exec(cmd, pre_exec) };
    Ok(())
}

/// Unpins and removes a namespace created by [`create`]. Already gone is success. The namespace
/// itself disappears (with its links) once no process is left in it.
pub fn remove(path: &Path) -> io::Result<()> {
    let target = cstring(path)?;
    // SAFETY: a valid NUL-terminated path; MNT_DETACH unmounts lazily.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point (already unmounted); ENOENT: no file.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(e);
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` is a pinned namespace (a bind mount of an nsfs inode).
pub fn is_pinned(path: &Path) -> bool {
    // nsfs magic: the file's filesystem is nsfs only while the bind mount is in place.
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(c) = cstring(path) else { return false };
    let mut st: libc::statfs = unsafe {
        // SAFETY: statfs is plain old data; zeroed is a valid value.
        std::mem::zeroed()
    };
    // SAFETY: valid path and a valid out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &raw mut st) };
    rc == 0 && st.f_type == NSFS_MAGIC
}
