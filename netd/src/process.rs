//! Signals to processes netd recorded (by pid and start time, never by name).
#![expect(unsafe_code, reason = "kill(2) has no safe std wrapper for a non-child process")]

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
