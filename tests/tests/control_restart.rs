//! Control plane, faults: a clean stop leaves networks and sandboxes in place for the next start;
//! a SIGKILL at any moment restarts to a consistent state (no duplicate or lost addresses, no
//! orphan veths or bridges, sandboxes still connected).

use std::{
    collections::BTreeSet,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use netd_tests::daemon::TestDaemon;
use serde_json::Value;

/// Runs `cmd…` inside a sandbox's namespace without the daemon (nsenter only changes netns).
fn in_netns(path: &str, cmd: &[&str]) -> std::process::Output {
    Command::new("nsenter").arg(format!("--net={path}")).args(cmd).output().expect("nsenter")
}

fn host_links(d: &TestDaemon, prefix: &str) -> BTreeSet<String> {
    String::from_utf8_lossy(&d.host().ip(&["-o", "link"]).stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn a_clean_stop_keeps_networks_and_sandboxes_for_the_next_start() {
    let mut d = TestDaemon::start(&[]);
    let net = d.netd(&["network", "create", "--subnet", "10.50.0.0/24", "keep"]).ok().trim().to_owned();
    d.netd(&["run", "-d", "--name", "ca", "--network", "keep", "--", "sleep", "120"]).ok();
    d.netd(&["run", "-d", "--name", "cb", "--network", "keep", "--", "sleep", "120"]).ok();
    let links_before = host_links(&d, "");
    let state = d.state_json();
    let netns_a = state["sandboxes"].as_object().unwrap().values().find(|s| s["name"] == "ca").unwrap()["netns"]
        .as_str()
        .unwrap()
        .to_owned();

    d.stop();
    assert!(d.log().contains("netd: shutting down") && d.log().contains("netd: stopped"), "{}", d.log());
    assert_eq!(host_links(&d, ""), links_before, "links stay while the daemon is down");
    let ping = in_netns(&netns_a, &["ping", "-c", "1", "-W", "2", "10.50.0.3"]);
    assert!(ping.status.success(), "containers still talk with the daemon down");

    d.restart();
    assert_eq!(host_links(&d, ""), links_before, "a restart re-creates nothing and removes nothing");
    let ls = d.netd(&["network", "ls", "--no-trunc", "-q"]).ok();
    assert!(ls.contains(&net), "same network id after restart");
    let ps = d.netd(&["ps"]).ok();
    assert!(ps.contains("ca ") && ps.contains("cb "), "{ps}");
    d.netd(&["exec", "ca", "--", "ping", "-c", "1", "-W", "2", "10.50.0.3"]).ok();
    let out = d.netd(&["run", "--rm", "--network", "keep", "--", "ip", "-o", "-4", "addr", "show", "eth0"]).ok();
    assert!(out.contains("10.50.0.4/24"), "addresses are not handed out twice after a restart: {out}");
}

/// Checks that the kernel and the state agree after a restart.
fn assert_consistent(d: &TestDaemon) {
    let state = d.state_json();
    let networks = state["networks"].as_object().unwrap();
    let sandboxes = state["sandboxes"].as_object().unwrap();

    // Nothing half made survives.
    for n in networks.values() {
        assert_eq!(n["lifecycle"], "Ready", "{n}");
        let mut ips = BTreeSet::new();
        for e in n["endpoints"].as_object().unwrap().values() {
            assert_eq!(e["lifecycle"], "Ready");
            assert!(sandboxes.contains_key(e["sandbox_id"].as_str().unwrap()), "endpoint of a known sandbox");
            if let Some(ip) = e["link"]["ip"].as_str() {
                assert!(ips.insert(ip.to_owned()), "duplicate address {ip}");
                let allocated: Vec<&str> =
                    n["ipam"]["allocated"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert!(allocated.contains(&ip), "address {ip} is recorded as allocated");
            }
        }
        if let Some(allocated) = n["ipam"]["allocated"].as_array() {
            assert_eq!(allocated.len(), ips.len(), "no lost (leaked) allocations in {}", n["name"]);
        }
    }
    for s in sandboxes.values() {
        assert_eq!(s["lifecycle"], "Ready");
    }

    // Veths and bridges in the host namespace are exactly the state's.
    let want_veths: BTreeSet<String> = networks
        .values()
        .flat_map(|n| n["endpoints"].as_object().unwrap().values())
        .filter_map(|e| e["link"]["host_veth"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(host_links(d, "veth"), want_veths, "no orphan or missing veths");
    let want_bridges: BTreeSet<String> = networks
        .values()
        .filter_map(|n| n["bridge"]["bridge_name"].as_str().map(str::to_owned))
        .filter(|b| b.starts_with("br-"))
        .collect();
    assert_eq!(host_links(d, "br-"), want_bridges, "no orphan or missing bridges");

    // Every sandbox is pinned and still has its interfaces; nothing else is pinned.
    let files: BTreeSet<String> = std::fs::read_dir(d.exec_root().join("netns"))
        .map(|r| r.flatten().map(|e| e.path().display().to_string()).collect())
        .unwrap_or_default();
    let pinned: BTreeSet<String> = sandboxes.values().filter_map(|s| s["netns"].as_str().map(str::to_owned)).collect();
    assert_eq!(files, pinned, "no orphan namespaces");
    for s in sandboxes.values() {
        let Some(path) = s["netns"].as_str() else {
            continue;
        };
        let links = String::from_utf8_lossy(&in_netns(path, &["ip", "-o", "link"]).stdout).into_owned();
        for n in networks.values() {
            if let Some(ep) = n["endpoints"].get(s["id"].as_str().unwrap()) {
                if let Some(ifname) = ep["link"]["ifname"].as_str() {
                    assert!(links.contains(&format!("{ifname}@")), "{} keeps {ifname}: {links}", s["name"]);
                }
            }
        }
    }
}

#[test]
fn sigkill_at_any_moment_restarts_to_a_consistent_state() {
    let mut d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--subnet", "10.60.0.0/24", "base"]).ok();
    for round in 0..6u32 {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = d.socket().to_owned();
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let netd = netd_tests::daemon::netd_binary();
                let run = |args: &[&str]| {
                    let _ = Command::new(&netd).args(["-H", &socket]).args(args).output();
                };
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("r{round}s{i}");
                    let net = format!("r{round}n{i}");
                    run(&["run", "-d", "--name", &name, "--network", "base", "--", "sleep", "300"]);
                    run(&["network", "create", &net]);
                    run(&["network", "connect", &net, &name]);
                    if i % 2 == 1 {
                        run(&["rm", "-f", &name]);
                    }
                    i += 1;
                }
            })
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        std::thread::sleep(Duration::from_millis(30 + u64::from(nanos % 250)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("worker");
        d.restart();
        assert_consistent(&d);
    }
    // What the restarts had to repair (visible with --nocapture).
    for line in d.log().lines().filter(|l| l.contains("reconcile")) {
        println!("{line}");
    }
    // After all that, the daemon still works and hands out fresh addresses.
    let out = d.netd(&["run", "--rm", "--network", "base", "--", "ip", "-o", "-4", "addr", "show", "eth0"]).ok();
    assert!(out.contains("10.60.0."), "{out}");
    let reachable: Value = serde_json::from_str(&d.netd(&["network", "inspect", "base"]).ok()).unwrap();
    assert!(reachable[0]["Containers"].is_object());
}

/// A release that changed a pinned map's layout must not adopt the old map: the daemon says
/// which map and what to do, and changes nothing; removing the map as told lets it start.
#[test]
fn a_pinned_map_of_another_layout_is_refused_and_nothing_changes() {
    let mut d = TestDaemon::start(&[]);
    d.netd(&["run", "-d", "--name", "c1", "--", "sleep", "300"]).ok();
    d.stop();
    // What an older netd might have left: uplinks with 16-byte values (this one's are 8).
    let pin = d.bpffs().join("maps/NETD_UPLINKS");
    std::fs::remove_file(&pin).expect("unpin");
    let made = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&pin)
        .args(["type", "hash", "key", "4", "value", "16", "entries", "64", "name", "NETD_UPLINKS"])
        .status()
        .expect("bpftool");
    assert!(made.success());
    let links = host_links(&d, "veth");
    let state = d.state_json();

    let log = d.restart_refused();
    assert!(
        log.contains(&format!("the pinned map {} is a type-1 (4-byte keys, 16-byte values) map", pin.display())),
        "{log}"
    );
    assert!(log.contains("this netd's datapath needs a type-1 (4-byte keys, 8-byte values) one"), "{log}");
    assert!(log.contains("remove it"), "{log}");
    assert_eq!(host_links(&d, "veth"), links, "no link touched");
    assert_eq!(d.state_json(), state, "no state touched");

    std::fs::remove_file(&pin).expect("removing the map as told");
    d.restart();
    assert!(d.netd(&["exec", "c1", "--", "ping", "-c", "1", "-W", "1", "172.17.0.1"]).code == 0);
}
