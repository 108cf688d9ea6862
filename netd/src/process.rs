//! Signals to processes netd recorded (by pid and start time, never by name), and the
//! daemon's own limits.
#![expect(unsafe_code, reason = "kill(2) and setrlimit(2) have no safe std wrappers")]

use crate::model::ProcessRef;

/// Sends SIGKILL to `p` if it is still that very process.
pub fn kill(p: ProcessRef) {
    if p.is_running() {
        let Ok(pid) = libc::pid_t::try_from(p.pid) else {
            return;
        };
        // SAFETY: kill(2) with a positive pid and a valid signal has no memory-safety effects.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit, as Go's runtime does
/// for dockerd: each sandbox's resolver holds two sockets, each published port one, and a
/// default soft limit of 1024 would refuse sandboxes long before the host runs out.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit on this process with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}
