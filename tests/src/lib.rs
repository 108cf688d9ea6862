//! Test harness for netd: crafted packets, network-namespace guards, and helpers to run code
//! inside a namespace. Everything a test creates has a unique name and is removed on drop, also
//! when the test panics.

pub mod bpf;
pub mod daemon;
pub mod netns;
pub mod packet;
pub mod tun;

/// Runs a socket call again while a signal interrupts it: a receive with a timeout
/// (`SO_RCVTIMEO`) is never restarted after a signal, whatever `SA_RESTART` says (signal(7)),
/// and tests run beside each other in one process.
pub fn uninterrupted<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}
