//! Runs crafted frames through the real datapath programs with `BPF_PROG_TEST_RUN`.
//!
//! The object is loaded once per test binary (with tracing on, so every packet leaves an event
//! carrying its verdict, class and tuple); tests serialise on it and look at counter deltas.

use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use aya::programs::{TestRun as _, TestRunOptions};
use netd::datapath::Record;
use netd::datapath::{Datapath, LoadOptions};
use netd_common::{Counter, EndpointInfo, Event, NatEvent, PacketClass, Reason};

/// `TC_ACT_OK`: the packet continues into the kernel.
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`: the packet is dropped.
pub const TC_ACT_SHOT: u32 = 2;

static DATAPATH: LazyLock<Mutex<Datapath>> = LazyLock::new(|| {
    Mutex::new(
        Datapath::load(&LoadOptions { trace: true, pin_dir: None, ..LoadOptions::default() })
            .expect("loading the datapath (root, BTF)"),
    )
});

/// Keeps the calling thread on the CPU it is on, for the rest of its life: a test run executes
/// the program on the caller's CPU, and what a per-CPU map (`NETD_ROUTES`) keeps is seen only
/// by later runs on the same CPU.
#[expect(unsafe_code, reason = "sched_getcpu(3) and sched_setaffinity(2) have no safe wrapper in std")]
pub fn stay_on_this_cpu() {
    // SAFETY: sched_getcpu takes nothing; a zeroed cpu_set_t is valid, CPU_SET writes inside it,
    // and sched_setaffinity (0: this thread) reads it.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu()).expect("sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set), 0, "sched_setaffinity");
    }
}

/// Exclusive use of the shared, traced datapath.
pub fn datapath() -> MutexGuard<'static, Datapath> {
    let mut dp = DATAPATH.lock().unwrap_or_else(PoisonError::into_inner);
    dp.drain_events();
    dp
}

/// What one run of a program did.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: u32,
    pub output: Vec<u8>,
    /// Events emitted during the run.
    pub events: Vec<Event>,
    /// New flows reported during the run (while the datapath's NAT reports are on).
    pub nat_events: Vec<NatEvent>,
}

impl Outcome {
    /// The single event of the run (tracing emits exactly one per packet).
    #[must_use]
    pub fn event(&self) -> Event {
        assert_eq!(self.events.len(), 1, "expected one event, got {:?}", self.events);
        self.events[0]
    }

    #[must_use]
    pub fn reason(&self) -> Reason {
        let raw = self.event().reason;
        Reason::decode(raw).unwrap_or_else(|| panic!("unknown reason {raw}"))
    }

    #[must_use]
    pub fn class(&self) -> PacketClass {
        let raw = self.event().class;
        PacketClass::decode(raw).unwrap_or_else(|| panic!("unknown class {raw}"))
    }
}

/// Runs `frame` once through `netd_from_container` (arriving on loopback: no endpoint).
pub fn from_container(dp: &mut Datapath, frame: &[u8]) -> Outcome {
    test_run(dp, None, frame)
}

/// Endpoint `addr` (host veth `ifindex`, counter slot `slot`) of network `network`, a /24
/// `subnet` with its gateway at `.1`, as the daemon writes it, with the network's `flags`.
#[must_use]
pub fn endpoint_on_24(
    ifindex: u32,
    addr: std::net::Ipv4Addr,
    network: u32,
    flags: u32,
    subnet: std::net::Ipv4Addr,
    slot: u32,
) -> EndpointInfo {
    let wire = |a: std::net::Ipv4Addr| u32::from_ne_bytes(a.octets());
    EndpointInfo {
        ifindex,
        ip: wire(addr),
        mac: crate::packet::docker_mac(addr),
        pad: [0; 2],
        network,
        flags,
        subnet: wire(subnet),
        mask: wire(std::net::Ipv4Addr::new(255, 255, 255, 0)),
        gateway: wire(std::net::Ipv4Addr::from(u32::from(subnet) + 1)),
        slot,
    }
}

/// Marks the endpoint of host veth `ifindex` traced or not, as the daemon does while `netd
/// monitor --type trace` follows its sandbox.
pub fn set_traced(dp: &mut Datapath, ifindex: u32, on: bool) {
    let mut ep = dp.endpoints().expect("endpoints").into_iter().find(|e| e.ifindex == ifindex).expect("the endpoint");
    ep.flags = if on { ep.flags | EndpointInfo::TRACE } else { ep.flags & !EndpointInfo::TRACE };
    dp.set_endpoint(&ep).expect("endpoint");
}

/// The counter of `reason` now.
pub fn reason_count(dp: &Datapath, reason: Reason) -> Counter {
    dp.reason_counter(reason).expect("reading NETD_VERDICTS")
}

/// The counter of `class` now.
pub fn class_count(dp: &Datapath, class: PacketClass) -> Counter {
    dp.class_counter(class).expect("reading NETD_VERDICTS")
}

/// Names of the programs attached with TCX to the ingress of `ifname` inside `ns`.
#[must_use]
pub fn tcx_ingress_programs(ns: &crate::netns::NetNs, ifname: &str) -> Vec<String> {
    ns.run(|| {
        let (_, programs) = aya::programs::SchedClassifier::query_tcx(ifname, aya::programs::TcAttachType::Ingress)
            .expect("querying TCX");
        programs.iter().map(|p| p.name_as_str().unwrap_or("?").to_owned()).collect()
    })
}

/// Ids of the programs attached with TCX to `ifname`'s `hook` inside `ns`.
#[must_use]
pub fn tcx_program_ids(ns: &crate::netns::NetNs, ifname: &str, hook: aya::programs::TcAttachType) -> Vec<u32> {
    ns.run(|| {
        let (_, programs) = aya::programs::SchedClassifier::query_tcx(ifname, hook).expect("querying TCX");
        programs.iter().map(aya::programs::ProgramInfo::id).collect()
    })
}

/// The program id in a line of [`clsact_filters`].
#[must_use]
pub fn filter_program_id(line: &str) -> Option<u32> {
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == "id")?;
    words.next()?.parse().ok()
}

/// The `bpf` filters on `ifname`'s clsact `direction` ("ingress", "egress") inside `ns`, as
/// `tc filter show` lists them (one line each).
#[must_use]
pub fn clsact_filters(ns: &crate::netns::NetNs, ifname: &str, direction: &str) -> Vec<String> {
    let out = ns.exec("tc", &["filter", "show", "dev", ifname, direction]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" bpf ") && l.contains(" handle "))
        .map(str::to_owned)
        .collect()
}

/// Size of the kernel's `struct __sk_buff` (the context of an skb test run).
pub const SK_BUFF_SIZE: usize = 192;
/// Offset of `__sk_buff.ifindex`: a test run with it set pretends the frame arrived on that
/// device (which must exist in the calling thread's namespace).
pub const SK_BUFF_IFINDEX_OFF: usize = 40;

/// Runs `frame` once through `netd_from_container` as if it arrived on `ifindex`.
pub fn from_container_on(dp: &mut Datapath, ifindex: u32, frame: &[u8]) -> Outcome {
    let mut ctx = [0u8; SK_BUFF_SIZE];
    ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
    test_run(dp, Some(&ctx), frame)
}

/// Runs `frame` `repeat` times in one test run through `netd_from_container` as if it arrived
/// on `ifindex` (the events are read once, after the last run).
pub fn from_container_repeated(dp: &mut Datapath, ifindex: u32, frame: &[u8], repeat: u32) -> Outcome {
    let mut ctx = [0u8; SK_BUFF_SIZE];
    ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
    run_program_repeated(dp, Datapath::from_container, Some(&ctx), frame, repeat)
}

/// Runs `frame` once through `netd_from_uplink` as if it arrived on `ifindex`.
pub fn from_uplink_on(dp: &mut Datapath, ifindex: u32, frame: &[u8]) -> Outcome {
    let mut ctx = [0u8; SK_BUFF_SIZE];
    ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
    run_program(dp, Datapath::from_uplink, Some(&ctx), frame)
}

/// Runs `frame` once through `netd_to_container` (as the host's stack sends it into a bridge).
pub fn to_container(dp: &mut Datapath, frame: &[u8]) -> Outcome {
    run_program(dp, Datapath::to_container, None, frame)
}

/// Runs `frame` once through `netd_dns_redirect` (a sandbox's `lo`).
pub fn dns_redirect(dp: &mut Datapath, frame: &[u8]) -> Outcome {
    run_program(dp, Datapath::dns_redirect, None, frame)
}

fn test_run(dp: &mut Datapath, ctx: Option<&[u8]>, frame: &[u8]) -> Outcome {
    run_program(dp, Datapath::from_container, ctx, frame)
}

fn run_program(
    dp: &mut Datapath,
    program: fn(&Datapath) -> &aya::programs::SchedClassifier,
    ctx: Option<&[u8]>,
    frame: &[u8],
) -> Outcome {
    run_program_repeated(dp, program, ctx, frame, 1)
}

fn run_program_repeated(
    dp: &mut Datapath,
    program: fn(&Datapath) -> &aya::programs::SchedClassifier,
    ctx: Option<&[u8]>,
    frame: &[u8],
    repeat: u32,
) -> Outcome {
    let mut output = vec![0u8; frame.len() + 256];
    let program = program(dp);
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut output),
            ctx_in: ctx,
            repeat,
            ..TestRunOptions::default()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of a {}-byte frame: {e:?}", frame.len()));
    output.truncate(usize::try_from(result.data_size_out).expect("size"));
    let (mut events, mut nat_events) = (Vec::new(), Vec::new());
    for r in dp.drain_records() {
        match r {
            Record::Packet(e) => events.push(e),
            Record::NatNew(e) => nat_events.push(e),
        }
    }
    Outcome { verdict: result.return_value, output, events, nat_events }
}
