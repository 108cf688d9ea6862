//! A wire of two `tun` devices: one in each of two namespaces, joined by threads that copy every
//! packet read from one into the other. It is a link without a link-layer header, as a VPN's
//! `tun0`, `WireGuard` or an IP tunnel is, on a kernel that may lack those drivers. The threads
//! stop and both devices go (they are not persistent: they live as long as their descriptors)
//! on drop.
#![expect(unsafe_code, reason = "the TUNSETIFF ioctl and poll(2) have no safe wrapper in std")]

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

use crate::netns::NetNs;

/// Two `tun` devices joined both ways (see the module).
pub struct TunWire {
    stop: Arc<AtomicBool>,
    too_long: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl TunWire {
    /// Creates `a_name` in `a` and `b_name` in `b`, both up, and starts carrying packets.
    #[must_use]
    pub fn new(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) -> Self {
        Self::with_limit(a, a_name, b, b_name, usize::MAX)
    }

    /// [`TunWire::new`], carrying no packet longer than `max` bytes: a link in the path whose
    /// MTU is `max` and that sends no "fragmentation needed" back (a black hole, unless the
    /// ends learn the path's MTU otherwise).
    #[must_use]
    pub fn with_limit(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str, max: usize) -> Self {
        let (a_name, b_name) = (a_name.to_owned(), b_name.to_owned());
        let fa = Arc::new(a.run(|| open_tun(&a_name)));
        let fb = Arc::new(b.run(|| open_tun(&b_name)));
        a.ip(&["link", "set", &a_name, "up"]);
        b.ip(&["link", "set", &b_name, "up"]);
        let stop = Arc::new(AtomicBool::new(false));
        let too_long = Arc::new(AtomicU64::new(0));
        let threads = [(fa.clone(), fb.clone()), (fb, fa)]
            .into_iter()
            .map(|(from, to)| {
                let (stop, too_long) = (stop.clone(), too_long.clone());
                std::thread::spawn(move || carry(&from, &to, max, &stop, &too_long))
            })
            .collect();
        Self { stop, too_long, threads }
    }

    /// How many packets were longer than the wire carries (see [`TunWire::with_limit`]).
    #[must_use]
    pub fn too_long(&self) -> u64 {
        self.too_long.load(Ordering::Relaxed)
    }
}

impl Drop for TunWire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Opens `/dev/net/tun` as a new `tun` device `name` (IPv4 packets as they are, no packet
/// information header) in the calling thread's namespace.
fn open_tun(name: &str) -> File {
    let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun").expect("opening /dev/net/tun");
    // SAFETY: an all-zero ifreq is valid; the name fits (checked) with its terminating zero.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    assert!(name.len() < ifr.ifr_name.len(), "{name}: too long for a device name");
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    ifr.ifr_ifru.ifru_flags = libc::c_short::try_from(libc::IFF_TUN | libc::IFF_NO_PI).expect("flags fit");
    // SAFETY: TUNSETIFF reads and writes the ifreq we own, on the descriptor `file` owns.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut ifr) };
    assert_eq!(rc, 0, "TUNSETIFF {name}: {}", std::io::Error::last_os_error());
    file
}

/// Copies packets of at most `max` bytes read from `from` into `to` (counting longer ones in
/// `too_long`) until `stop` is set (looked at every 50 ms).
fn carry(from: &File, to: &File, max: usize, stop: &AtomicBool, too_long: &AtomicU64) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd { fd: from.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd we own, for the duration of the call.
        if unsafe { libc::poll(&raw mut pfd, 1, 50) } <= 0 {
            continue;
        }
        let mut reader = from;
        match reader.read(&mut buf) {
            Ok(n) if n > max => {
                too_long.fetch_add(1, Ordering::Relaxed);
            }
            Ok(n) if n > 0 => {
                // A packet the other side refuses (its device down while the test ends) is lost,
                // as on a wire.
                let mut writer = to;
                let _ = writer.write(&buf[..n]);
            }
            _ => {}
        }
    }
}
