//! What the eBPF program costs per packet: under `BPF_PROG_TEST_RUN` with a repeat count (the
//! redirect and the pass-to-stack paths, maps seeded), and live, from the kernel's run-time
//! statistics of netd's attached programs while the workloads run (`BPF_ENABLE_STATS`: enabled
//! while its fd is open, no sysctl changed).

use std::{net::Ipv4Addr, os::fd::OwnedFd, time::Duration};

use anyhow::{Context as _, Result};
use aya::programs::{loaded_programs, SchedClassifier, TestRun as _, TestRunOptions};
use netd::datapath::{Datapath, LoadOptions};
use netd_common::{EndpointInfo, NetworkFlags, Reason};
use netd_tests::{
    bpf::{SK_BUFF_IFINDEX_OFF, SK_BUFF_SIZE},
    netns::{Link, NetNs},
    packet::{docker_mac, tcp, udp, Ethernet, Ipv4, ETH_P_IPV4, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_SYN},
};

/// Average ns per run of `netd_from_container` under `BPF_PROG_TEST_RUN` (the lowest of
/// a few medians, [`TRIES`] in a full measurement, of 5 measurements of `repeat` runs each).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TestRunCost {
    /// A frame from a device that is no endpoint: parse, one missed lookup, one counter (the floor).
    pub floor_ns: f64,
    /// Endpoint to endpoint: parse, policy, `bpf_redirect_peer`.
    pub redirect_ns: f64,
    /// Endpoint to its gateway: parse, policy, pass to the stack.
    pub pass_ns: f64,
    /// A spoofed source address: parse, policy, drop (counters and a drop event).
    pub drop_ns: f64,
}

impl TestRunCost {
    /// Each figure the lower of `self`'s and `other`'s.
    #[must_use]
    pub fn min(&self, other: &Self) -> Self {
        Self {
            floor_ns: self.floor_ns.min(other.floor_ns),
            redirect_ns: self.redirect_ns.min(other.redirect_ns),
            pass_ns: self.pass_ns.min(other.pass_ns),
            drop_ns: self.drop_ns.min(other.drop_ns),
        }
    }
}

impl NatCost {
    /// The repeated-run figures the lower of `self`'s and `other`'s; the single-run figures
    /// all from the measurement whose existing-flow egress was lower (they are read against
    /// its own single-run overhead).
    #[must_use]
    pub fn min(&self, other: &Self) -> Self {
        let singles = if self.egress_ns <= other.egress_ns { self } else { other };
        Self {
            egress_new_ns: singles.egress_new_ns,
            egress_ns: singles.egress_ns,
            egress_reopen_ns: singles.egress_reopen_ns,
            ingress_ns: singles.ingress_ns,
            host_ns: singles.host_ns,
            single_run_overhead_ns: singles.single_run_overhead_ns,
            egress_repeated_ns: self.egress_repeated_ns.min(other.egress_repeated_ns),
            ingress_repeated_ns: self.ingress_repeated_ns.min(other.ingress_repeated_ns),
        }
    }
}

/// Measurements per median of [`median_of_runs`].
const MEASUREMENTS: u32 = 5;

/// How many medians [`lowest_medians`] takes per figure in a full measurement. This host
/// alternates between two speeds, the slow one ~1.4× the fast one, for stretches from
/// milliseconds to seconds (40 medians of the masquerade paths in five processes, 2026-12-01:
/// egress ~250 or ~360 ns, ingress ~212 or ~295, in no order). Noise only adds time, so the
/// lowest median, from tries spread over seconds, is the program's own cost: with 8 tries
/// [`TRY_GAP`] apart, 4 of 5 `--cost-only` runs found the fast speed, against about half with
/// one median.
pub const TRIES: u32 = 8;
/// [`TRIES`] for a `--quick` run.
pub const QUICK_TRIES: u32 = 2;
const TRY_GAP: Duration = Duration::from_secs(1);

/// How a test-run figure is taken, for the report.
#[must_use]
pub fn tries_text() -> String {
    format!("the lowest of {TRIES} medians ({QUICK_TRIES} with `--quick`), {} s apart,", TRY_GAP.as_secs())
}

/// The lowest of `tries` medians of [`median_of_runs`] for each `(program, ifindex, data)` of
/// `paths`, each try measuring every path once, the tries [`TRY_GAP`] apart.
fn lowest_medians<const N: usize>(
    paths: [(&SchedClassifier, u32, &[u8]); N],
    repeat: u32,
    tries: u32,
) -> Result<[f64; N]> {
    let mut lowest = [f64::INFINITY; N];
    for t in 0..tries {
        if t > 0 {
            std::thread::sleep(TRY_GAP);
        }
        for (low, (program, ifindex, data)) in lowest.iter_mut().zip(paths) {
            *low = low.min(median_of_runs(program, ifindex, data, repeat)?);
        }
    }
    Ok(lowest)
}

/// The median over [`MEASUREMENTS`] test runs of `program`, each of `repeat` runs of `data` as
/// if it arrived on `ifindex`, in ns per run.
fn median_of_runs(program: &SchedClassifier, ifindex: u32, data: &[u8], repeat: u32) -> Result<f64> {
    let mut ctx = [0u8; SK_BUFF_SIZE];
    ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let mut samples = Vec::new();
    for _ in 0..MEASUREMENTS {
        let r = program.test_run(TestRunOptions {
            data_in: Some(data),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        })?;
        samples.push(r.duration.as_nanos() as f64);
    }
    Ok(crate::report::median(&mut samples))
}

fn wire(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Measures the four paths with `repeat` runs each, the lowest of `tries` medians (see [`TRIES`]).
pub fn test_run_cost(repeat: u32, tries: u32) -> Result<TestRunCost> {
    let ns = NetNs::new("nb-cost");
    let _a = Link::veth(&ns, "ha", &ns, "pa");
    let _b = Link::veth(&ns, "hb", &ns, "pb");
    let (ia, ib) = (ns.ifindex("ha"), ns.ifindex("hb"));
    let mut dp = Datapath::load(&LoadOptions { trace: false, pin_dir: None, ..LoadOptions::default() })?;
    let (ipa, ipb, gw) = (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 1));
    for (ifindex, ip) in [(ia, ipa), (ib, ipb)] {
        dp.set_endpoint(&EndpointInfo {
            ifindex,
            ip: wire(ip),
            mac: docker_mac(ip),
            network: 1,
            flags: NetworkFlags::ICC,
            subnet: wire(Ipv4Addr::new(10, 1, 0, 0)),
            mask: wire(Ipv4Addr::new(255, 255, 255, 0)),
            gateway: wire(gw),
            ..EndpointInfo::default()
        })?;
    }
    let frame = |src: Ipv4Addr, dst: Ipv4Addr| {
        Ethernet::new(docker_mac(ipa), docker_mac(dst), ETH_P_IPV4)
            .frame(&Ipv4::new(src, dst, PROTO_UDP).packet(&udp(src, dst, 5000, 6000, &[0; 18])))
    };
    let (to_peer, to_gateway, spoofed) = (frame(ipa, ipb), frame(ipa, gw), frame(Ipv4Addr::new(10, 1, 0, 50), ipb));
    let p = dp.from_container();
    ns.run(|| -> Result<TestRunCost> {
        let [floor_ns, redirect_ns, pass_ns, drop_ns] = lowest_medians(
            [(p, 1, &to_peer[..]), (p, ia, &to_peer[..]), (p, ia, &to_gateway[..]), (p, ia, &spoofed[..])],
            repeat,
            tries,
        )?;
        Ok(TestRunCost { floor_ns, redirect_ns, pass_ns, drop_ns })
    })
}

/// Turns on the kernel's per-program run-time statistics while the returned fd lives.
pub fn enable_runtime_stats() -> Result<OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")
}

/// Run time and runs, per program name (as the kernel keeps it: the first 15 characters).
pub type ProgramRuns = std::collections::BTreeMap<&'static str, (Duration, u64)>;

/// Run time and run count of netd's loaded programs, summed per program name.
fn per_program_totals() -> ProgramRuns {
    let mut out = std::collections::BTreeMap::new();
    for p in loaded_programs().flatten() {
        let name = match p.name_as_str() {
            Some(n) if n.starts_with("netd_from_conta") => "netd_from_conta",
            Some(n) if n.starts_with("netd_from_uplin") => "netd_from_uplin",
            Some(n) if n.starts_with("netd_to_contain") => "netd_to_contain",
            _ => continue,
        };
        let e: &mut (Duration, u64) = out.entry(name).or_default();
        e.0 += p.run_time();
        e.1 += p.run_count();
    }
    out
}

/// Runs `f`, and returns with its result what each of netd's programs ran meanwhile (keyed as
/// [`per_program_totals`]): run time and runs. Run-time statistics must be on.
pub fn program_runs_during<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, ProgramRuns)> {
    let before = per_program_totals();
    let out = f()?;
    let mut delta = per_program_totals();
    for (program, (time, runs)) in &mut delta {
        let (t0, n0) = before.get(program).copied().unwrap_or_default();
        *time = time.saturating_sub(t0);
        *runs = runs.saturating_sub(n0);
    }
    Ok((out, delta))
}

/// Average ns per run; NaN without runs.
#[must_use]
pub fn ns_per_run(time: Duration, runs: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    if runs > 0 {
        time.as_nanos() as f64 / runs as f64
    } else {
        f64::NAN
    }
}

/// What masquerade costs per packet under `BPF_PROG_TEST_RUN`, median of single runs (a
/// repeated run would see its own rewritten packet): the in-kernel time of one program run,
/// which includes reading the clock around it.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct NatCost {
    /// `netd_from_container`, a new flow: the route (shared: the flows before went to the same
    /// server), port allocation, two entries, rewrite.
    pub egress_new_ns: f64,
    /// `netd_from_container`, an existing flow: one entry lookup, rewrite.
    pub egress_ns: f64,
    /// `netd_from_container`, a TCP SYN that reuses the port of a closed flow (each connection
    /// of a connect/close loop): the flow starts over in both entries.
    pub egress_reopen_ns: f64,
    /// `netd_from_uplink`, a reply: one entry lookup, one endpoint lookup, rewrite.
    pub ingress_ns: f64,
    /// `netd_from_uplink`, the host's own traffic (no flow): parse, one lookup, one counter.
    pub host_ns: f64,
    /// What a single run adds to a repeated one (reading the clock, entering the loop):
    /// `netd_from_container`'s floor path measured both ways. Subtract it from the others.
    pub single_run_overhead_ns: f64,
    /// The existing-flow paths measured like the container-to-container ones (repeated runs,
    /// the lowest of [`TRIES`] medians of 5 × 200): through an endpoint whose address and port
    /// are the uplink's, so the translation rewrites every field with its own value and only
    /// the TTL changes from run to run (it starts at 255). The work of a flow that keeps its
    /// port (one checksum helper call fewer than where the port changes), no single-run
    /// overhead.
    pub egress_repeated_ns: f64,
    pub ingress_repeated_ns: f64,
}

const UPLINK_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 1];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x99, 2];

/// Measures the masquerade paths with `runs` single runs each; the repeated-run figures are
/// the lowest of `tries` medians (see [`TRIES`]).
pub fn nat_cost(runs: u16, tries: u32) -> Result<NatCost> {
    let ns = NetNs::new("nb-natcost");
    let outside = NetNs::new("nb-natout");
    let _a = Link::veth(&ns, "ha", &ns, "pa");
    let _b = Link::veth(&ns, "hb", &ns, "pb");
    let _up = Link::veth(&ns, "up0", &outside, "out0");
    ns.ip(&["link", "set", "up0", "address", "02:00:00:00:99:01"]);
    ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "up0"]);
    ns.ip(&["neigh", "replace", "198.18.0.2", "lladdr", "02:00:00:00:99:02", "dev", "up0", "nud", "permanent"]);
    ns.sysctl("net.ipv4.ip_forward", "1");
    let (ia, iup) = (ns.ifindex("ha"), ns.ifindex("up0"));
    let mut dp = Datapath::load(&LoadOptions { trace: false, pin_dir: None, ..LoadOptions::default() })?;
    dp.set_nat_config(1024, 32767)?;
    // As the daemon does where no routing rule selects by port (these are the default rules).
    dp.set_nat_shared_routes(true)?;
    let (up, server) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
    dp.set_uplink(iup, up, 0)?;
    let (ipa, gw) = (Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 1, 0, 1));
    dp.set_endpoint(&EndpointInfo {
        ifindex: ia,
        ip: wire(ipa),
        mac: docker_mac(ipa),
        network: 1,
        flags: NetworkFlags::ICC | NetworkFlags::MASQUERADE,
        subnet: wire(Ipv4Addr::new(10, 1, 0, 0)),
        mask: wire(Ipv4Addr::new(255, 255, 255, 0)),
        gateway: wire(gw),
        ..EndpointInfo::default()
    })?;
    // The identity endpoint: the uplink's own address and MAC (see
    // `NatCost::egress_repeated_ns`).
    let ib = ns.ifindex("hb");
    dp.set_endpoint(&EndpointInfo {
        ifindex: ib,
        ip: wire(up),
        mac: UPLINK_MAC,
        network: 2,
        flags: NetworkFlags::ICC | NetworkFlags::MASQUERADE,
        subnet: wire(Ipv4Addr::new(10, 2, 0, 0)),
        mask: wire(Ipv4Addr::new(255, 255, 255, 0)),
        gateway: wire(Ipv4Addr::new(10, 2, 0, 1)),
        slot: 2,
        ..EndpointInfo::default()
    })?;
    let egress = |sport: u16| {
        Ethernet::new(docker_mac(ipa), docker_mac(gw), ETH_P_IPV4)
            .frame(&Ipv4::new(ipa, server, PROTO_UDP).packet(&udp(ipa, server, sport, 53, &[0; 18])))
    };
    let egress_tcp = |sport: u16, flags: u8| {
        Ethernet::new(docker_mac(ipa), docker_mac(gw), ETH_P_IPV4)
            .frame(&Ipv4::new(ipa, server, PROTO_TCP).packet(&tcp(ipa, server, sport, 80, flags, &[])))
    };
    let reply = |dport: u16| {
        Ethernet::new([2, 0, 0, 0, 0x99, 2], [2, 0, 0, 0, 0x99, 1], ETH_P_IPV4)
            .frame(&Ipv4::new(server, up, PROTO_UDP).packet(&udp(server, up, 53, dport, &[0; 18])))
    };
    let repeated = |dp: &Datapath, data: &[u8]| -> Result<f64> {
        let r = dp.from_container().test_run(TestRunOptions {
            data_in: Some(data),
            repeat: 10_000,
            ..TestRunOptions::default()
        })?;
        Ok(r.duration.as_nanos() as f64)
    };
    ns.run(|| -> Result<NatCost> {
        // Routes are shared per CPU (`NETD_ROUTES`): the new flows' runs all on one, as a
        // container's connections to a server are where its socket's CPU is.
        crate::workload::pin_this_thread(crate::workload::PINNED_CPU);
        let (egress_repeated_ns, ingress_repeated_ns) = identity_cost(&dp, ib, iup, up, server, tries)?;
        let (mut new, mut hit, mut back, mut host) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut reopen = Vec::new();
        // The floor path (a device that is no endpoint) does not change the packet: it can be
        // measured repeated and single.
        let (mut floor_single, mut floor_repeated) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            floor_repeated.push(repeated(&dp, &egress(1))?);
        }
        for i in 0..runs {
            floor_single.push(single_run(&dp, false, 1, &egress(1))?.0);
            let sport = 40_000 + i;
            let (t, nat_port) = single_run(&dp, false, ia, &egress(sport))?;
            new.push(t);
            hit.push(single_run(&dp, false, ia, &egress(sport))?.0);
            back.push(single_run(&dp, true, iup, &reply(nat_port))?.0);
            host.push(single_run(&dp, true, iup, &reply(1000))?.0);
            // A connection (SYN, then FIN), then the next one on the same port.
            let sport = 50_000 + i;
            single_run(&dp, false, ia, &egress_tcp(sport, TCP_SYN))?;
            single_run(&dp, false, ia, &egress_tcp(sport, TCP_FIN | TCP_ACK))?;
            reopen.push(single_run(&dp, false, ia, &egress_tcp(sport, TCP_SYN))?.0);
        }
        Ok(NatCost {
            egress_new_ns: crate::report::median(&mut new),
            egress_ns: crate::report::median(&mut hit),
            egress_reopen_ns: crate::report::median(&mut reopen),
            ingress_ns: crate::report::median(&mut back),
            host_ns: crate::report::median(&mut host),
            single_run_overhead_ns: crate::report::median(&mut floor_single)
                - crate::report::median(&mut floor_repeated),
            egress_repeated_ns,
            ingress_repeated_ns,
        })
    })
}

/// One test run of `data` as if it arrived on `ifindex` (an uplink: `netd_from_uplink`, else
/// `netd_from_container`): its duration in ns, and the source port as it left (the NAT port).
fn single_run(dp: &Datapath, uplink: bool, ifindex: u32, data: &[u8]) -> Result<(f64, u16)> {
    let mut ctx = [0u8; SK_BUFF_SIZE];
    ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; data.len() + 64];
    let program = if uplink { dp.from_uplink() } else { dp.from_container() };
    let r = program.test_run(TestRunOptions {
        data_in: Some(data),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..TestRunOptions::default()
    })?;
    Ok((r.duration.as_nanos() as f64, u16::from_be_bytes([out[34], out[35]])))
}

/// The existing-flow paths under repeated runs (see [`NatCost::egress_repeated_ns`]): endpoint
/// `ib` has the uplink's address `up`; `iup` is the uplink. Checks that every run took the
/// translation path.
fn identity_cost(dp: &Datapath, ib: u32, iup: u32, up: Ipv4Addr, server: Ipv4Addr, tries: u32) -> Result<(f64, f64)> {
    let frame = |src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, src_mac: [u8; 6], dst_mac: [u8; 6]| {
        let mut h = Ipv4::new(src, dst, PROTO_UDP);
        h.ttl = 255;
        Ethernet::new(src_mac, dst_mac, ETH_P_IPV4).frame(&h.packet(&udp(src, dst, sport, dport, &[0; 18])))
    };
    let out = frame(up, server, 5000, 53, UPLINK_MAC, SERVER_MAC);
    let back = frame(server, up, 53, 5000, SERVER_MAC, UPLINK_MAC);
    let (egress, ingress) = (dp.from_container(), dp.from_uplink());
    // The first run creates the flow.
    median_of_runs(egress, ib, &out, 1)?;
    let counts = || -> Result<(u64, u64)> {
        Ok((dp.reason_counter(Reason::RedirectNat)?.packets, dp.reason_counter(Reason::RedirectReverseNat)?.packets))
    };
    let before = counts()?;
    // 200 runs: the TTL goes from 255 to 55, never to the 1 that would change the path.
    let repeat = 200;
    let [out_ns, back_ns] = lowest_medians([(egress, ib, &out[..]), (ingress, iup, &back[..])], repeat, tries)?;
    let after = counts()?;
    // Every run took the path it measures.
    let runs = u64::from(tries * MEASUREMENTS * repeat);
    anyhow::ensure!(after.0 - before.0 == runs, "{} of {runs} runs masqueraded", after.0 - before.0);
    anyhow::ensure!(after.1 - before.1 == runs, "{} of {runs} runs reverse-translated", after.1 - before.1);
    Ok((out_ns, back_ns))
}
