//! The traffic: bulk TCP (iperf3), 64-byte UDP packet rate, pinned TCP request/response, TCP
//! connections/s. Each side runs on a thread inside its endpoint's namespace; RR and CRR pin
//! client and server to one CPU (unpinned, this VM only measures cross-CPU wake-ups).
#![expect(unsafe_code, reason = "sched_setaffinity(2) has no safe std wrapper")]

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU16, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use netd_tests::netns::spawn_in_path;

use crate::topology::Endpoint;

/// The CPU request/response loads are pinned to.
pub const PINNED_CPU: usize = 1;

/// Listening ports cycle through `SERVER_PORTS`, disjoint from the clients' ephemeral range
/// (`topology::CLIENT_PORT_RANGE`): on loopback both ends share one namespace, and a client port
/// in `TIME_WAIT` must never be the next server's.
const SERVER_PORTS: std::ops::Range<u16> = 10_000..20_000;
static PORT: AtomicU16 = AtomicU16::new(0);

fn port() -> u16 {
    let span = SERVER_PORTS.end - SERVER_PORTS.start;
    SERVER_PORTS.start + PORT.fetch_add(1, Ordering::Relaxed) % span
}

/// The ports the published-port topologies publish (TCP and UDP, the same on the host and in
/// the container), below `SERVER_PORTS`. Servers behind them cycle through them.
pub const PUBLISHED_PORTS: std::ops::Range<u16> = 9_000..9_064;
static PUBLISHED_PORT: AtomicU16 = AtomicU16::new(0);

/// Where a server in `b` listens and where clients reach it: the same address, or (a published
/// port) the host's address and the same port.
fn server_addrs(b: &Endpoint) -> (SocketAddr, SocketAddr) {
    let port = if b.dial.is_some() {
        let span = PUBLISHED_PORTS.end - PUBLISHED_PORTS.start;
        PUBLISHED_PORTS.start + PUBLISHED_PORT.fetch_add(1, Ordering::Relaxed) % span
    } else {
        port()
    };
    (SocketAddr::from((b.ip, port)), SocketAddr::from((b.dial.unwrap_or(b.ip), port)))
}

pub fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity(0 = this thread) only
    // touch the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set);
    }
}

fn join<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("workload thread panicked"))?
}

/// A process killed on drop (by its own pid).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Single-stream TCP throughput a → b in Gbit/s (iperf3, whole seconds: at least one).
pub fn tcp_throughput(a: &Endpoint, b: &Endpoint, secs: f64) -> Result<f64> {
    let (bind, dial) = server_addrs(b);
    let port = bind.port().to_string();
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a few seconds")]
    let whole = secs.round().max(1.0) as u32;
    let _server = Proc(
        Command::new("nsenter")
            .arg(format!("--net={}", b.netns))
            .args(["iperf3", "-s", "-1", "-p", &port, "-B", &bind.ip().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("iperf3 server")?,
    );
    let mut last = String::new();
    for _ in 0..50 {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", a.netns))
            .args(["iperf3", "-c", &dial.ip().to_string(), "-p", &port, "-t", &whole.to_string(), "-J"])
            .output()
            .context("iperf3 client")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bps / 1e9);
        }
        v["error"].as_str().unwrap_or("no JSON").clone_into(&mut last);
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("iperf3 failed: {last}")
}

/// 64-byte frames (18-byte UDP payload) received per second, a → b.
pub fn udp_rate(a: &Endpoint, b: &Endpoint, secs: f64) -> Result<f64> {
    let (bind, dst) = server_addrs(b);
    let done = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (done, ready) = (done.clone(), ready.clone());
        spawn_in_path(&b.netns, move || -> Result<u64> {
            let s = UdpSocket::bind(bind)?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            ready.store(true, Ordering::Release);
            let mut buf = [0u8; 64];
            let mut n = 0;
            loop {
                match s.recv(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) if done.load(Ordering::Acquire) => return Ok(n),
                    Err(_) => {}
                }
            }
        })
    };
    while !ready.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let src = a.ip;
    let blaster = spawn_in_path(&a.netns, move || -> Result<u64> {
        let s = UdpSocket::bind((src, 0))?;
        s.connect(dst)?;
        let payload = [0x5a_u8; 18];
        let start = Instant::now();
        let limit = Duration::from_secs_f64(secs);
        let mut sent = 0u64;
        while start.elapsed() < limit {
            for _ in 0..64 {
                // ENOBUFS under overload is the measurement, not an error.
                if s.send(&payload).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    });
    let sent_count = join(blaster)?;
    done.store(true, Ordering::Release);
    let packets_received = join(receiver)?;
    if sent_count == 0 {
        bail!("nothing was sent");
    }
    Ok(packets_received as f64 / secs)
}

/// Pinned TCP request/response: transactions per second, mean and p99 latency (µs).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Rr {
    pub tps: f64,
    pub mean_us: f64,
    pub p99_us: f64,
}

/// 1-byte request, 1-byte response over one TCP connection, both ends pinned to one CPU.
pub fn tcp_rr(a: &Endpoint, b: &Endpoint, secs: f64) -> Result<Rr> {
    let (bind, addr) = server_addrs(b);
    let listener = spawn_in_path(&b.netns, move || TcpListener::bind(bind)).join().map_err(|_| anyhow!("bind"))??;
    let server = std::thread::spawn(move || -> Result<()> {
        pin_this_thread(PINNED_CPU);
        let (mut c, _) = listener.accept()?;
        c.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while c.read(&mut byte)? == 1 {
            c.write_all(&byte)?;
        }
        Ok(())
    });
    let client = spawn_in_path(&a.netns, move || -> Result<Vec<Duration>> {
        pin_this_thread(PINNED_CPU);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut lat = Vec::with_capacity(200_000);
        let mut byte = [1u8; 1];
        let start = Instant::now();
        let limit = Duration::from_secs_f64(secs);
        while start.elapsed() < limit {
            let t = Instant::now();
            s.write_all(&byte)?;
            s.read_exact(&mut byte)?;
            lat.push(t.elapsed());
        }
        Ok(lat)
    });
    let mut lat = join(client)?;
    join(server)?;
    if lat.is_empty() {
        bail!("no transaction completed");
    }
    lat.sort_unstable();
    let mean = lat.iter().sum::<Duration>().as_secs_f64() / lat.len() as f64;
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)].as_secs_f64();
    Ok(Rr { tps: lat.len() as f64 / secs, mean_us: mean * 1e6, p99_us: p99 * 1e6 })
}

/// TCP connections per second (connect, 1-byte exchange, close), both ends pinned to one CPU.
pub fn tcp_crr(a: &Endpoint, b: &Endpoint, secs: f64) -> Result<f64> {
    let (bind, addr) = server_addrs(b);
    let listener = spawn_in_path(&b.netns, move || TcpListener::bind(bind)).join().map_err(|_| anyhow!("bind"))??;
    let server = std::thread::spawn(move || -> Result<()> {
        pin_this_thread(PINNED_CPU);
        loop {
            let (mut c, _) = listener.accept()?;
            let mut byte = [0u8; 1];
            if c.read(&mut byte)? != 1 || byte[0] == 0xff {
                return Ok(());
            }
            c.write_all(&byte)?;
        }
    });
    let client = spawn_in_path(&a.netns, move || -> Result<u64> {
        pin_this_thread(PINNED_CPU);
        let start = Instant::now();
        let limit = Duration::from_secs_f64(secs);
        let mut n = 0u64;
        while start.elapsed() < limit {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.write_all(&[1])?;
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte)?;
            n += 1;
        }
        let mut stop = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stop.write_all(&[0xff])?;
        Ok(n)
    });
    let n = join(client)?;
    join(server)?;
    Ok(n as f64 / secs)
}

/// What [`udp_flows`] saw.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Flows {
    /// Distinct flows (source socket × server port).
    pub flows: u64,
    /// Datagrams the server received in the first pass (creating the flows) and the second
    /// (through the flows already set up); each pass sends one per flow.
    pub first_pass: u64,
    pub second_pass: u64,
}

fn raise_fd_limit(want: u64) -> Result<()> {
    // SAFETY: get/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) != 0 {
            bail!("getrlimit");
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) != 0 {
                bail!("setrlimit");
            }
        }
    }
    Ok(())
}

/// Many concurrent flows a → b: `sockets` UDP sockets in `a` (ephemeral ports) each send one
/// 18-byte datagram to each of `ports` server ports in `b`, twice. Counts what arrives.
pub fn udp_flows(a: &Endpoint, b: &Endpoint, sockets: usize, ports: usize) -> Result<Flows> {
    raise_fd_limit((sockets + ports + 256) as u64)?;
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let server_ports: Vec<u16> = (0..ports).map(|_| port()).collect();
    let bind_ip = b.ip;
    let servers: Vec<UdpSocket> = {
        let ports = server_ports.clone();
        spawn_in_path(&b.netns, move || -> Result<Vec<UdpSocket>> {
            ports.iter().map(|p| Ok(UdpSocket::bind((bind_ip, *p))?)).collect()
        })
        .join()
        .map_err(|_| anyhow!("bind"))??
    };
    let counters: Vec<_> = servers
        .into_iter()
        .map(|s| {
            let (received, done) = (received.clone(), done.clone());
            std::thread::spawn(move || -> Result<()> {
                // Root may exceed rmem_max (SO_RCVBUFFORCE): one pass must fit while the
                // sender runs.
                let size: libc::c_int = 8 << 20;
                // SAFETY: setsockopt on a socket we own with a valid int option.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        libc::SOL_SOCKET,
                        libc::SO_RCVBUFFORCE,
                        (&raw const size).cast(),
                        4,
                    );
                }
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                let mut buf = [0u8; 64];
                loop {
                    match s.recv(&mut buf) {
                        Ok(_) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) if done.load(Ordering::Acquire) => return Ok(()),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    let (src, dst_ip) = (a.ip, b.ip);
    let wait_for = |target: u64| {
        let start = Instant::now();
        while received.load(Ordering::Relaxed) < target && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        received.load(Ordering::Relaxed)
    };
    let clients = spawn_in_path(&a.netns, move || -> Result<Vec<UdpSocket>> {
        (0..sockets).map(|_| Ok(UdpSocket::bind((src, 0))?)).collect()
    })
    .join()
    .map_err(|_| anyhow!("client sockets"))??;
    let flows = (sockets * ports) as u64;
    let mut passes = [0u64; 2];
    for pass in &mut passes {
        let before = received.load(Ordering::Relaxed);
        let mut sent = 0u64;
        for s in &clients {
            for p in &server_ports {
                if s.send_to(&[0x5a; 18], (dst_ip, *p)).is_ok() {
                    sent += 1;
                }
                if sent.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        *pass = wait_for(before + flows) - before;
    }
    done.store(true, Ordering::Release);
    for c in counters {
        c.join().map_err(|_| anyhow!("server thread"))??;
    }
    Ok(Flows { flows, first_pass: passes[0], second_pass: passes[1] })
}
