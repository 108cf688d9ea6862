//! What the eBPF program costs per packet: under `BPF_PROG_TEST_RUN` with a repeat count (the
//! redirect and the pass-to-stack paths, maps seeded), and live, from the kernel's run-time
//! statistics of netd's attached programs while the workloads run (`BPF_ENABLE_STATS`: enabled
//! while its fd is open, no sysctl changed).

use std::{net::Ipv4Addr, os::fd::OwnedFd, time::Duration};

use anyhow::{Context as _, Result};
use aya::programs::{loaded_programs, TestRun as _, TestRunOptions};
use netd::datapath::{Datapath, LoadOptions};
use netd_common::{EndpointInfo, NetworkFlags};
use netd_tests::{
    bpf::{SK_BUFF_IFINDEX_OFF, SK_BUFF_SIZE},
    netns::{Link, NetNs},
    packet::{docker_mac, udp, Ethernet, Ipv4, ETH_P_IPV4, PROTO_UDP},
};

/// Average ns per run of `netd_from_container` under `BPF_PROG_TEST_RUN` (median of 5
/// measurements of `repeat` runs each).
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

fn wire(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// Measures both paths with `repeat` runs each.
pub fn test_run_cost(repeat: u32) -> Result<TestRunCost> {
    let ns = NetNs::new("nb-cost");
    let _a = Link::veth(&ns, "ha", &ns, "pa");
    let _b = Link::veth(&ns, "hb", &ns, "pb");
    let ifindex = |name: &str| -> Result<u32> {
        let out = ns.ip(&["-o", "link", "show", name]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split(':').next().and_then(|n| n.trim().parse().ok()).context("ifindex")
    };
    let (ia, ib) = (ifindex("ha")?, ifindex("hb")?);
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
    let run = |dp: &Datapath, ifindex: u32, data: &[u8]| -> Result<f64> {
        let mut ctx = [0u8; SK_BUFF_SIZE];
        ctx[SK_BUFF_IFINDEX_OFF..SK_BUFF_IFINDEX_OFF + 4].copy_from_slice(&ifindex.to_ne_bytes());
        let mut samples = Vec::new();
        for _ in 0..5 {
            let r = dp.from_container().test_run(TestRunOptions {
                data_in: Some(data),
                ctx_in: Some(&ctx),
                repeat,
                ..TestRunOptions::default()
            })?;
            samples.push(r.duration.as_nanos() as f64);
        }
        Ok(crate::report::median(&mut samples))
    };
    ns.run(|| -> Result<TestRunCost> {
        Ok(TestRunCost {
            floor_ns: run(&dp, 1, &frame(ipa, ipb))?,
            redirect_ns: run(&dp, ia, &frame(ipa, ipb))?,
            pass_ns: run(&dp, ia, &frame(ipa, gw))?,
            drop_ns: run(&dp, ia, &frame(Ipv4Addr::new(10, 1, 0, 50), ipb))?,
        })
    })
}

/// Turns on the kernel's per-program run-time statistics while the returned fd lives.
pub fn enable_runtime_stats() -> Result<OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")
}

/// Total run time and run count of every loaded `netd_from_container` program.
pub fn netd_program_totals() -> (Duration, u64) {
    loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("netd_from_con")))
        .fold((Duration::ZERO, 0), |(t, n), p| (t + p.run_time(), n + p.run_count()))
}
