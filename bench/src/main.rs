//! `netd-bench` (run it with `cargo xtask bench`): builds every topology in fresh namespaces,
//! measures them interleaved round by round, and writes `bench.md`, `runs.jsonl`, `bench.svg`.

use std::{
    fmt::Write as _,
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Parser;
use netd_bench::{
    cost,
    report::{self, Sample},
    topology::{Kind, Topology},
    workload,
};

#[derive(Parser)]
#[command(name = "netd-bench", about = "netd against the kernel bridge and Docker's dataplane, side by side")]
struct Args {
    /// A short run for development (under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Rounds (default: 3 quick, 10 full).
    #[arg(long)]
    rounds: Option<u32>,
    /// Output directory.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only the `BPF_PROG_TEST_RUN` costs (seconds: for comparing program changes).
    #[arg(long)]
    cost_only: bool,
    /// Endpoint counts for the scale section (default: 2,20 quick; 2,100,1000 full).
    #[arg(long, value_delimiter = ',')]
    scale: Vec<usize>,
    /// A focused run for A/B-ing a change: only these workloads (tcp, udp, rr, crr, host-udp,
    /// host-rr), and only the rounds: no test-run costs, flows or scale. Prints each column's
    /// median per-round ratios to docker, bridge and veth (those that ran), then the programs'
    /// live cost per run in the netd columns (one pass per workload).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// A focused run: only these columns (bridge, docker, netd, netd-bridged-host, veth, loopback,
    /// docker-nat, netd-nat, netd-nat-xdp, veth-outside (masquerade's limit), docker-publish,
    /// netd-publish, veth-inbound (published ports); and, only when named, netd-clsact (clsact filters
    /// instead of TCX links) and netd-nat-via-uplink (`--uplink-fast-path=false`)).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
}

/// What a focused run measures: its workloads and columns (empty: all).
#[derive(Default)]
struct Focus {
    workloads: Vec<String>,
    columns: Vec<String>,
}

impl Focus {
    fn is_set(&self) -> bool {
        !self.workloads.is_empty() || !self.columns.is_empty()
    }

    fn workload(&self, w: &str) -> bool {
        self.workloads.is_empty() || self.workloads.iter().any(|x| x == w)
    }

    fn column(&self, k: Kind) -> bool {
        self.columns.is_empty() || self.columns.iter().any(|x| x == k.name())
    }
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?");
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("Linux {}, {cpus} vCPU ({}), load average at start {:.2}", kernel.trim(), model.trim(), load1())
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index within the slice"
    )]
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Measures one workload on `t` once, appending samples under the name `label`.
fn measure(
    t: &Topology,
    label: &str,
    round: u32,
    secs: f64,
    load: f64,
    out: &mut Vec<Sample>,
    metric: &str,
) -> Result<()> {
    let mut push = |metric: &str, value: f64| {
        out.push(Sample { round, topology: label.into(), metric: metric.into(), value, load1: load });
    };
    match metric {
        "tcp" => push("tcp_gbps", workload::tcp_throughput(&t.a, &t.b, secs)?),
        "udp" => push("udp_pps", workload::udp_rate(&t.a, &t.b, secs)?),
        "rr" => {
            let rr = workload::tcp_rr(&t.a, &t.b, secs)?;
            push("rr_tps", rr.tps);
            push("rr_mean_us", rr.mean_us);
            push("rr_p99_us", rr.p99_us);
        }
        "crr" => push("crr_cps", workload::tcp_crr(&t.a, &t.b, secs)?),
        "host-udp" | "host-rr" => {
            let host = t.host.as_ref().context("no host endpoint")?;
            if metric == "host-udp" {
                push("host_udp_pps", workload::udp_rate(host, &t.b, secs)?);
            } else {
                push("host_rr_tps", workload::tcp_rr(host, &t.b, secs)?.tps);
            }
        }
        _ => anyhow::bail!("unknown workload {metric}"),
    }
    Ok(())
}

/// UDP passes per size for the scale section's live eBPF cost (each pass measures every size).
const SCALE_LIVE_PASSES: u32 = 5;

/// The order in which round `round` measures `n` columns: as listed, reversed every other
/// round, so that a column's place in the round (what ran just before it) favours none.
fn in_round_order(n: usize, round: u32) -> Vec<usize> {
    if round.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

/// Forwarding rate, RR and the program's live cost per packet with `n` endpoints attached, and
/// the control plane's time per sandbox create and remove. Every size is built first, then
/// measured interleaved round by round, so that the ratios to the smallest size are side by
/// side.
fn scale(sizes: &[usize], secs: f64, rounds: u32, md: &mut String) -> Result<Vec<serde_json::Value>> {
    let mut built = Vec::new();
    for &n in sizes {
        let t = Topology::netd(&[])?;
        let d = t.daemon().expect("netd topology");
        let mut create = Vec::new();
        for i in 2..n {
            let name = format!("scale{i}");
            let start = Instant::now();
            let r = d.netd(&["run", "-d", "--name", &name, "--", "sleep", "86400"]);
            anyhow::ensure!(r.code == 0, "netd run: {}", r.stderr);
            create.push(start.elapsed().as_secs_f64() * 1e3);
        }
        built.push((n, t, create));
    }
    let (mut udp, mut rr) = (vec![Vec::new(); built.len()], vec![Vec::new(); built.len()]);
    for round in 0..rounds {
        for i in in_round_order(built.len(), round) {
            let t = &built[i].1;
            udp[i].push(workload::udp_rate(&t.a, &t.b, secs)?);
            rr[i].push(workload::tcp_rr(&t.a, &t.b, secs)?.tps);
        }
    }
    // What the program costs per forwarded packet at each size: UDP once more per size and
    // pass, with the kernel's run-time statistics on (only that topology carries traffic).
    // ns per run, per size and pass.
    let mut live = vec![Vec::new(); built.len()];
    {
        let _stats = cost::enable_runtime_stats()?;
        for pass in 0..SCALE_LIVE_PASSES {
            for i in in_round_order(built.len(), pass) {
                let t = &built[i].1;
                let ((), ran) = cost::program_runs_during(|| workload::udp_rate(&t.a, &t.b, secs).map(drop))?;
                let (time, runs) = ran.get("netd_from_conta").copied().unwrap_or_default();
                live[i].push(cost::ns_per_run(time, runs));
            }
        }
    }
    // Per-round ratios to the first (smallest) size.
    let vs_first = |v: &[Vec<f64>], i: usize| {
        let mut r: Vec<f64> = v[i].iter().zip(&v[0]).map(|(x, base)| x / base).collect();
        report::median(&mut r)
    };
    let first = sizes.first().copied().unwrap_or(0);
    let _ = writeln!(
        md,
        "\n### Scale (netd)\n\nEvery size built first, then measured interleaved ({rounds} rounds, the order of the sizes reversed every other round); the eBPF cost is `netd_from_container`'s run time per run in {SCALE_LIVE_PASSES} UDP passes after the rounds, each pass over every size in turn (median, and median of per-pass ratios).\n\n| endpoints | UDP pps (median) | vs {first} | RR trans/s (median) | vs {first} | eBPF ns per packet (live) | vs {first} | create p50 / p99 / total | remove p50 / p99 / total |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut rows = Vec::new();
    for (i, (n, t, mut create)) in built.into_iter().enumerate() {
        let d = t.daemon().expect("netd topology");
        let mut remove = Vec::new();
        for j in 2..n {
            let start = Instant::now();
            let r = d.netd(&["rm", "-f", &format!("scale{j}")]);
            anyhow::ensure!(r.code == 0, "netd rm: {}", r.stderr);
            remove.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let ops = |v: &mut Vec<f64>| {
            if v.is_empty() {
                "–".to_owned()
            } else {
                let total: f64 = v.iter().sum();
                format!("{:.1} / {:.1} ms / {:.1} s", percentile(v, 0.5), percentile(v, 0.99), total / 1e3)
            }
        };
        let (udp_m, rr_m) = (report::median(&mut udp[i].clone()), report::median(&mut rr[i].clone()));
        let _ = writeln!(
            md,
            "| {n} | {udp_m:.0} | {:.2}× | {rr_m:.0} | {:.2}× | {:.0} | {:.2}× | {} | {} |",
            vs_first(&udp, i),
            vs_first(&rr, i),
            report::median(&mut live[i].clone()),
            vs_first(&live, i),
            ops(&mut create),
            ops(&mut remove)
        );
        rows.push(serde_json::json!({ "endpoints": n, "udp_pps": udp[i], "rr_tps": rr[i], "live_ns": live[i], "create_ms": create, "remove_ms": remove }));
    }
    Ok(rows)
}

/// `topo`'s median per-round ratios to `base` on packet rate, RR, connections/s and TCP, as
/// the sections' prose gives them.
fn four_ratios(samples: &[Sample], topo: &str, base: &str) -> String {
    let r = |metric| report::ratio(samples, metric, topo, base);
    format!(
        "packet rate {:.2}×, RR {:.2}×, connections/s {:.2}×, TCP {:.2}×",
        r("udp_pps"),
        r("rr_tps"),
        r("crr_cps"),
        r("tcp_gbps")
    )
}

/// The masquerade section: container → outside server through Docker's dataplane and netd.
fn nat_section(samples: &[Sample], cost: &cost::NatCost, live: &Live, flows: &[FlowRow]) -> String {
    let summary = report::summarize(samples);
    let how = cost::tries_text();
    let mut md = String::from("\n### Masquerade: container → server outside (through the uplink)\n\n");
    md.push_str(&report::markdown_vs_docker(&summary, &["docker", "netd", "netd-xdp-pass", "veth"]));
    let _ = writeln!(
        md,
        "\nnetd against veth, the limit (the container on a direct veth pair with the outside server: no host, nothing translated): {} (medians of per-round ratios); veth against docker: {}.",
        four_ratios(samples, "netd", "veth"),
        four_ratios(samples, "veth", "docker"),
    );
    let _ = write!(
        md,
        "\n| masquerade cost (BPF_PROG_TEST_RUN; repeated runs: {how} of 5 × 200 runs; the lower of two such measurements, before and after the rounds) | ns per packet |\n|---|---|\n| egress, existing flow (`netd_from_container`), repeated runs | {:.0} |\n| ingress, reply (`netd_from_uplink`), repeated runs | {:.0} |\n| egress, existing flow, single runs minus the {:.0} ns a single run adds | {:.0} |\n| egress, new flow (port allocation, two entries; the route of the last flow to the server, shared), single runs, same | {:.0} |\n| egress, TCP SYN reusing a closed flow's port (a connect/close loop), single runs, same | {:.0} |\n| ingress, reply, single runs, same | {:.0} |\n| ingress, the host's own traffic (no flow), single runs, same | {:.0} |\n\nRepeated runs go through an endpoint that has the uplink's own address and port, so the\ntranslation writes every field with its own value and only the TTL changes from run to run:\na flow that keeps its port, as a published port's with the same number or an untranslated\none does, which takes one checksum helper call fewer than a flow whose port changes (a\ndefault container's: its ports lie outside the NAT range). Single runs use ordinary\naddresses and ports, which change.\n",
        cost.egress_repeated_ns,
        cost.ingress_repeated_ns,
        cost.single_run_overhead_ns,
        cost.egress_ns - cost.single_run_overhead_ns,
        cost.egress_new_ns - cost.single_run_overhead_ns,
        cost.egress_reopen_ns - cost.single_run_overhead_ns,
        cost.ingress_ns - cost.single_run_overhead_ns,
        cost.host_ns - cost.single_run_overhead_ns
    );
    // Live: the kernel's own run-time statistics of each program while a workload ran. The UDP
    // load is one-way (a → b): the container program alone, on every packet.
    let _ = write!(
        md,
        "\n| live cost (run_time / run_cnt, a pass of its own after the measured rounds) | netd, container to container | netd, masquerade |\n|---|---|---|\n"
    );
    let workloads = [
        ("udp", "UDP 64-byte"),
        ("rr", "TCP RR"),
        ("crr", "TCP CRR"),
        ("tcp", "TCP bulk"),
        ("host-udp", "Host → container UDP 64-byte"),
        ("host-rr", "Host → container TCP RR"),
    ];
    let programs = [
        ("netd_from_conta", "netd_from_container"),
        ("netd_from_uplin", "netd_from_uplink"),
        ("netd_to_contain", "netd_to_container"),
    ];
    for (metric, label) in workloads {
        for (program, side) in programs {
            let cell = |kind: &str| match live.get(&(kind, metric, program)) {
                // A handful of runs is stray traffic (neighbour discovery), not the workload's.
                Some((t, n)) if *n >= 100 => Some(format!("{:.0} ns ({n} runs)", cost::ns_per_run(*t, *n))),
                _ => None,
            };
            let (c2c, nat) = (cell("netd"), cell("netd-nat"));
            if c2c.is_some() || nat.is_some() {
                let dash = || "–".to_owned();
                let _ =
                    writeln!(md, "| {label}: `{side}` | {} | {} |", c2c.unwrap_or_else(dash), nat.unwrap_or_else(dash));
            }
        }
    }
    let _ = write!(md, "\n| concurrent flows | path | received, first pass | received, second pass | NAT drops | flows listed (`netd nat ls`, time) |\n|---|---|---|---|---|---|\n");
    for (name, f, drops, held) in flows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let _ = writeln!(
            md,
            "| {} | {name} | {} | {} | {} | {} |",
            f.flows,
            f.first_pass,
            f.second_pass,
            opt(drops.map(|d| d.to_string())),
            opt(held.map(|(n, t)| format!("{n} ({:.0} ms)", t.as_secs_f64() * 1e3)))
        );
    }
    md
}

/// The published-ports section: a client outside → a container's published port, through
/// Docker's dataplane (DNAT) and netd (the uplink's program), against a direct veth pair.
fn publish_section(samples: &[Sample], live: &Live) -> String {
    let summary = report::summarize(samples);
    let mut md = String::from("\n### Published ports: client outside → container (`-p`, through the uplink)\n\n");
    md.push_str(&report::markdown_vs_docker(&summary, &["docker", "netd", "veth"]));
    let _ = writeln!(
        md,
        "\nDocker: its DNAT and filter rules for the ports (one per protocol for the range), kernel conntrack, `br_netfilter`, its proxy off (it takes no traffic from outside). netd against veth, the limit (the client on a direct veth pair with the container): {} (medians of per-round ratios).",
        four_ratios(samples, "netd", "veth"),
    );
    let _ = write!(
        md,
        "\n| live cost (run_time / run_cnt, a pass of its own after the measured rounds) | ns per run |\n|---|---|\n"
    );
    for (metric, label) in [("udp", "UDP 64-byte"), ("rr", "TCP RR"), ("crr", "TCP CRR"), ("tcp", "TCP bulk")] {
        for (program, side) in [("netd_from_uplin", "netd_from_uplink"), ("netd_from_conta", "netd_from_container")] {
            if let Some((t, n)) = live.get(&(Kind::NetdPublish.name(), metric, program)).filter(|(_, n)| *n >= 100) {
                let _ = writeln!(md, "| {label}: `{side}` | {:.0} ({n} runs) |", cost::ns_per_run(*t, *n));
            }
        }
    }
    md
}

/// One path's many-flows result: name, what arrived, netd's NAT drops, and the flows `netd nat
/// ls` listed with the time it took.
type FlowRow = (&'static str, workload::Flows, Option<u64>, Option<(usize, Duration)>);

/// netd's drop counters, to explain a failed workload.
fn netd_drops(t: &Topology) -> String {
    let Some(d) = t.daemon() else { return String::new() };
    let stats = d.stats(None);
    let drops: Vec<String> = stats["Reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["Reason"].as_str().is_some_and(|n| n.starts_with("drop-")))
        .map(|r| format!("{} {}", r["Reason"].as_str().unwrap_or("?"), r["Packets"]))
        .collect();
    format!(" (netd drops so far: {})", if drops.is_empty() { "none".to_owned() } else { drops.join(", ") })
}

/// What the interleaved rounds measured.
struct Rounds {
    samples: Vec<Sample>,
    nat_samples: Vec<Sample>,
    publish_samples: Vec<Sample>,
}

type Live = std::collections::BTreeMap<(&'static str, &'static str, &'static str), (Duration, u64)>;

/// The workloads: container to container (or to the outside server) and, where the topology
/// has one, the host's own stack to a container.
const WORKLOADS: [&str; 6] = ["tcp", "udp", "rr", "crr", "host-udp", "host-rr"];

/// Whether `metric` is measured on `t`: host workloads where there is a host endpoint, and
/// `netd-bridged-host` only there.
fn runs(t: &Topology, metric: &str) -> bool {
    if metric.starts_with("host-") {
        t.host.is_some()
    } else {
        t.kind != Kind::NetdBridgedHost
    }
}

/// A column's name in the report: the masquerade columns are "docker", "netd" and
/// "netd-xdp-pass" of their own table, the published-port columns "docker", "netd" and
/// "veth" of theirs.
fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::DockerNat | Kind::DockerPublish => "docker",
        Kind::NetdNat | Kind::NetdPublish => "netd",
        Kind::NetdNatXdp => "netd-xdp-pass",
        Kind::NetdNatViaUplink => "netd-via-uplink",
        Kind::VethOutside | Kind::VethInbound => "veth",
        k => k.name(),
    }
}

/// Every workload on every topology, `rounds` times, interleaved (the topologies' order
/// reversed every other round, see [`in_round_order`]). The kernel's run-time
/// statistics stay off: they add two clock reads to every run of netd's programs.
fn run_rounds(
    topologies: &[Topology],
    nat_topologies: &[Topology],
    publish_topologies: &[Topology],
    rounds: u32,
    secs: f64,
    focus: &Focus,
) -> Result<Rounds> {
    let (mut samples, mut nat_samples, mut publish_samples) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let load = load1();
        eprintln!("==> round {}/{rounds} (load {load:.2})", round + 1);
        let all: Vec<&Topology> = topologies.iter().chain(nat_topologies).chain(publish_topologies).collect();
        for metric in WORKLOADS.into_iter().filter(|w| focus.workload(w)) {
            for t in in_round_order(all.len(), round).into_iter().map(|i| all[i]) {
                if !runs(t, metric) {
                    continue;
                }
                let out = if t.kind.is_nat() {
                    &mut nat_samples
                } else if t.kind.is_publish() {
                    &mut publish_samples
                } else {
                    &mut samples
                };
                let label = label(t.kind);
                measure(t, label, round, secs, load, out, metric)
                    .with_context(|| format!("{} on {}{}", metric, t.kind.name(), netd_drops(t)))?;
            }
        }
    }
    Ok(Rounds { samples, nat_samples, publish_samples })
}

/// What netd's programs cost live: every workload once more on the netd topologies, with the
/// kernel's run-time statistics on (their samples are not reported).
/// Keyed by (column, workload, program): run time and runs.
fn live_cost(
    topologies: &[Topology],
    nat_topologies: &[Topology],
    publish_topologies: &[Topology],
    secs: f64,
    focus: &Focus,
) -> Result<Live> {
    let _stats = cost::enable_runtime_stats()?;
    let mut live = Live::new();
    let mut scratch = Vec::new();
    for metric in WORKLOADS.into_iter().filter(|w| focus.workload(w)) {
        for t in topologies.iter().chain(nat_topologies).chain(publish_topologies).filter(|t| {
            matches!(t.kind, Kind::Netd | Kind::NetdNat | Kind::NetdClsact | Kind::NetdNatViaUplink | Kind::NetdPublish)
        }) {
            if !runs(t, metric) {
                continue;
            }
            let ((), ran) = cost::program_runs_during(|| {
                measure(t, "live", 0, secs, load1(), &mut scratch, metric)
                    .with_context(|| format!("{} on {} (live cost){}", metric, t.kind.name(), netd_drops(t)))
            })?;
            for (program, (time, runs)) in ran {
                let e = live.entry((t.kind.name(), metric, program)).or_default();
                e.0 += time;
                e.1 += runs;
            }
        }
    }
    Ok(live)
}

/// `netd_from_container`'s live cost in the netd column over every container-to-container
/// workload: ns per run, and runs.
fn live_container_to_container(live: &Live) -> (f64, u64) {
    let (time, runs) = live
        .iter()
        .filter(|((column, metric, program), _)| {
            *column == Kind::Netd.name() && !metric.starts_with("host-") && *program == "netd_from_conta"
        })
        .fold((Duration::ZERO, 0u64), |(t, n), (_, (dt, dn))| (t + *dt, n + dn));
    (cost::ns_per_run(time, runs), runs)
}

/// A focused run (`--workloads`, `--columns`): the rounds alone, then every column's median
/// per-round ratio to docker's (the masquerade columns to docker-nat's), bridge's and veth's
/// where those columns ran, then the programs' live cost in the netd columns.
fn focused(focus: &Focus, rounds: u32, secs: f64) -> Result<()> {
    let build = |kinds: &[Kind]| -> Result<Vec<Topology>> {
        kinds.iter().filter(|k| focus.column(**k)).map(|k| Topology::build(*k)).collect()
    };
    let (mut topologies, mut nat_topologies) = (build(&Kind::ALL)?, build(&Kind::NAT)?);
    let publish_topologies = build(&Kind::PUBLISH)?;
    for k in Kind::ON_REQUEST.into_iter().filter(|k| focus.columns.iter().any(|c| c == k.name())) {
        let t = Topology::build(k)?;
        if k.is_nat() {
            nat_topologies.push(t);
        } else {
            topologies.push(t);
        }
    }
    let Rounds { samples, nat_samples, publish_samples } =
        run_rounds(&topologies, &nat_topologies, &publish_topologies, rounds, secs, focus)?;
    for (section, samples, columns) in [
        ("container to container", &samples, &topologies),
        ("masquerade", &nat_samples, &nat_topologies),
        ("published ports", &publish_samples, &publish_topologies),
    ] {
        let mut metrics: Vec<&str> = samples.iter().map(|s| s.metric.as_str()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        for metric in metrics {
            for t in columns {
                let label = label(t.kind);
                let mut values: Vec<f64> =
                    samples.iter().filter(|s| s.metric == metric && s.topology == label).map(|s| s.value).collect();
                let mut line =
                    format!("{section:24} {metric:14} {label:18} median {:>12.1}", report::median(&mut values));
                for base in ["docker", "bridge", "veth"] {
                    if columns.iter().any(|c| self::label(c.kind) == base) {
                        let _ = write!(line, "  vs {base} {:.3}×", report::ratio(samples, metric, label, base));
                    }
                }
                println!("{line}");
            }
        }
    }
    // What the programs cost live on these workloads: a test run cannot show what depends on
    // real traffic (cloned TCP segments, cold caches).
    for ((column, metric, program), (time, runs)) in
        live_cost(&topologies, &nat_topologies, &publish_topologies, secs, focus)?
    {
        if runs == 0 {
            continue;
        }
        println!(
            "live {column:18} {metric:14} {program:18} {:>8.0} ns/run ({runs} runs)",
            cost::ns_per_run(time, runs)
        );
    }
    Ok(())
}

/// `runs.jsonl`: every sample (container to container as is, the other sections tagged), then
/// the costs.
fn write_runs(path: &std::path::Path, rounds: &Rounds, costs: &serde_json::Value) -> Result<()> {
    let mut runs = std::fs::File::create(path)?;
    for s in &rounds.samples {
        writeln!(runs, "{}", serde_json::to_string(s)?)?;
    }
    for (section, samples) in [("masquerade", &rounds.nat_samples), ("publish", &rounds.publish_samples)] {
        for s in samples {
            writeln!(runs, "{}", serde_json::json!({ "section": section, "sample": s }))?;
        }
    }
    writeln!(runs, "{costs}")?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 10 });
    let secs = if args.quick { 0.5 } else { 2.0 };
    let default_sizes: &[usize] = if args.quick { &[2, 20] } else { &[2, 100, 1000] };
    let sizes = if args.scale.is_empty() { default_sizes } else { &args.scale[..] };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let started = Instant::now();
    let machine = machine();
    eprintln!("==> {machine}");
    let focus = Focus { workloads: args.workloads, columns: args.columns };
    if focus.is_set() {
        return focused(&focus, rounds, secs);
    }

    eprintln!("==> eBPF cost under BPF_PROG_TEST_RUN");
    let test_run_repeat = if args.quick { 20_000 } else { 125_000 };
    let nat_runs = if args.quick { 300 } else { 2000 };
    let tries = if args.quick { cost::QUICK_TRIES } else { cost::TRIES };
    let test_run = cost::test_run_cost(test_run_repeat, tries)?;

    eprintln!("==> masquerade cost under BPF_PROG_TEST_RUN");
    let nat_cost = cost::nat_cost(nat_runs, tries)?;

    if args.cost_only {
        println!("{test_run:#?}\n{nat_cost:#?}");
        return Ok(());
    }
    eprintln!("==> building the topologies");
    let topologies: Vec<Topology> = Kind::ALL.iter().map(|k| Topology::build(*k)).collect::<Result<_>>()?;
    let nat_topologies: Vec<Topology> = Kind::NAT.iter().map(|k| Topology::build(*k)).collect::<Result<_>>()?;
    let publish_topologies: Vec<Topology> = Kind::PUBLISH.iter().map(|k| Topology::build(*k)).collect::<Result<_>>()?;
    let Rounds { samples, nat_samples, publish_samples } =
        run_rounds(&topologies, &nat_topologies, &publish_topologies, rounds, secs, &Focus::default())?;
    eprintln!("==> live cost (run-time statistics on)");
    let live = live_cost(&topologies, &nat_topologies, &publish_topologies, secs, &Focus::default())?;
    drop(publish_topologies);
    let (sockets, ports) = if args.quick { (1024, 16) } else { (4096, 16) };
    eprintln!("==> {} concurrent masqueraded flows", sockets * ports);
    let mut flow_rows = Vec::new();
    // The translation tables' columns (the limit translates nothing).
    for t in nat_topologies.iter().filter(|t| ![Kind::NetdNatXdp, Kind::VethOutside].contains(&t.kind)) {
        let f =
            workload::udp_flows(&t.a, &t.b, sockets, ports).with_context(|| format!("flows on {}", t.kind.name()))?;
        let drops = t
            .daemon()
            .map(|d| ["drop-nat-table-full", "drop-nat-no-port"].iter().map(|r| d.count(None, r)).sum::<u64>());
        // Listing walks the whole table, as the collector does every 10 s.
        let held = t.daemon().map(|d| {
            let start = Instant::now();
            let flows: serde_json::Value =
                serde_json::from_str(&d.netd(&["nat", "ls", "--json"]).ok()).unwrap_or_default();
            (flows.as_array().map_or(0, Vec::len), start.elapsed())
        });
        flow_rows.push((t.kind.name(), f, drops, held));
    }
    drop(nat_topologies);
    // The machine is shared and noise only adds: the costs again, the lower of both counts.
    eprintln!("==> eBPF costs again");
    let test_run = test_run.min(&cost::test_run_cost(test_run_repeat, tries)?);
    let nat_cost = nat_cost.min(&cost::nat_cost(nat_runs, tries)?);
    let netd = topologies.iter().find_map(|t| t.daemon());
    let netd_redirects = netd.map_or(0, |d| d.count(None, "redirect-peer"));
    // How much ARP there is to answer: the case for answering it in eBPF.
    let netd_arp = netd.map_or(0, |d| d.count(None, "pass-arp"));
    drop(topologies);

    let order = ["bridge", "docker", "netd", "netd-bridged-host", "veth", "loopback"];
    let summary = report::summarize(&samples);
    let mut md = format!(
        "## Benchmark\n\n{machine}; {rounds} interleaved rounds of {secs} s per measurement (the columns' order reversed every other round); {}.\n\n",
        if args.quick { "quick run" } else { "full run" }
    );
    md.push_str(&report::markdown(&summary, &order));
    let _ = write!(
        md,
        "\nHost → container, netd against netd-bridged-host (the same daemon with `--host-fast-path=false`): UDP {:.2}×, RR {:.2}× (medians of per-round ratios).\n",
        report::ratio(&samples, "host_udp_pps", "netd", "netd-bridged-host"),
        report::ratio(&samples, "host_rr_tps", "netd", "netd-bridged-host"),
    );
    let (live_ns, live_runs) = live_container_to_container(&live);
    let how = cost::tries_text();
    let _ = write!(
        md,
        "\n### eBPF cost of `netd_from_container`\n\n| measure | ns per packet |\n|---|---|\n| BPF_PROG_TEST_RUN ({how} of 5 repeated measurements; the lower of two such, before and after the rounds), floor (not an endpoint: parse, one lookup, one counter) | {:.0} |\n| BPF_PROG_TEST_RUN, redirect path | {:.0} |\n| BPF_PROG_TEST_RUN, pass-to-stack path | {:.0} |\n| BPF_PROG_TEST_RUN, drop path (spoofed source, with drop event) | {:.0} |\n| live, in a pass of its own after the measured rounds (run_time_ns / run_cnt, {live_runs} runs) | {live_ns:.0} |\n\nThe netd column's traffic was forwarded by the eBPF program: {netd_redirects} packets redirected with `bpf_redirect_peer`, against {netd_arp} ARP frames left to the kernel bridge.\n",
        test_run.floor_ns, test_run.redirect_ns, test_run.pass_ns, test_run.drop_ns
    );
    md.push_str(&nat_section(&nat_samples, &nat_cost, &live, &flow_rows));
    md.push_str(&publish_section(&publish_samples, &live));
    eprintln!("==> scale: {sizes:?} endpoints");
    // Twice the rounds: the sizes differ by less than the machine's noise, and a median's
    // noise falls with the square root of the rounds.
    let scale_rows = scale(sizes, secs, 2 * rounds, &mut md)?;
    let _ = writeln!(md, "\nTotal bench time: {:.0} s.", started.elapsed().as_secs_f64());

    let rounds = Rounds { samples, nat_samples, publish_samples };
    let costs = serde_json::json!({ "cost": test_run, "live_ns": live_ns, "nat_cost": nat_cost, "scale": scale_rows, "machine": machine });
    write_runs(&args.out.join("runs.jsonl"), &rounds, &costs)?;
    std::fs::write(args.out.join("bench.md"), &md)?;
    // The chart shows the container-to-container workloads, where netd-bridged-host is netd.
    let chart_order: Vec<&str> = order.iter().copied().filter(|t| *t != Kind::NetdBridgedHost.name()).collect();
    std::fs::write(args.out.join("bench.svg"), report::svg(&summary, &chart_order))?;
    println!("{md}");
    eprintln!("==> wrote {}/bench.md, runs.jsonl, bench.svg", args.out.display());
    Ok(())
}
