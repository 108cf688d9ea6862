//! The eBPF fast path through the daemon, in namespaces: container-to-container traffic is
//! delivered by `bpf_redirect_peer` (program counters move, the bridge does not forward it), the
//! host's own traffic to a container skips the bridge too (`netd_to_container`),
//! policy holds for every case of the isolation matrix while the legitimate paths stay open, and
//! a daemon restart loses nothing.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use netd_tests::{daemon::TestDaemon, netns::spawn_in_path, uninterrupted};

const DEADLINE: Duration = Duration::from_secs(10);

/// Accepts one connection or panics after [`DEADLINE`] (a test never hangs).
fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).expect("nonblocking");
    let start = Instant::now();
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                s.set_read_timeout(Some(DEADLINE)).expect("timeout");
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr.parse().expect("addr"), DEADLINE).expect("connect");
    s.set_write_timeout(Some(DEADLINE)).expect("timeout");
    s
}

fn ping(d: &TestDaemon, from: &str, to: &str) -> bool {
    d.netd(&["exec", from, "--", "ping", "-c", "1", "-W", "1", to]).code == 0
}

fn sandbox(d: &TestDaemon, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sleep", "300"]);
    d.netd(&args).ok();
}

#[test]
fn container_traffic_takes_the_fast_path_not_the_bridge() {
    let d = TestDaemon::start(&[]);
    sandbox(&d, "c1", &[]);
    sandbox(&d, "c2", &[]);
    assert!(ping(&d, "c1", "172.17.0.3"), "warm-up (ARP)");
    let c2_veth = d.host_veth("c2", "bridge");
    let (tx_before, redirected_before) = (d.tx_packets(&c2_veth), d.count(Some("c1"), "redirect-peer"));

    // ICMP, UDP and TCP from c1 to c2.
    d.netd(&["exec", "c1", "--", "ping", "-c", "20", "-i", "0.01", "-W", "1", "172.17.0.3"]).ok();
    let (c1, c2) = (d.sandbox_netns("c1"), d.sandbox_netns("c2"));
    let receiver = spawn_in_path(&c2, || {
        let udp = UdpSocket::bind("172.17.0.3:7001").expect("bind udp");
        udp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let tcp = TcpListener::bind("172.17.0.3:7002").expect("bind tcp");
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while got < 100 {
            match uninterrupted(|| udp.recv(&mut buf)) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        let mut conn = accept(&tcp);
        let mut data = Vec::new();
        conn.read_to_end(&mut data).expect("read");
        (got, data.len())
    });
    std::thread::sleep(Duration::from_millis(100));
    spawn_in_path(&c1, || {
        let udp = UdpSocket::bind("172.17.0.2:0").expect("bind");
        for _ in 0..100 {
            udp.send_to(&[7u8; 64], "172.17.0.3:7001").expect("send");
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut tcp = connect("172.17.0.3:7002");
        tcp.write_all(&vec![1u8; 1 << 20]).expect("write");
    })
    .join()
    .expect("sender");
    let (datagrams, bytes) = receiver.join().expect("receiver");
    assert_eq!((datagrams, bytes), (100, 1 << 20), "everything arrived");

    let redirected = d.count(Some("c1"), "redirect-peer") - redirected_before;
    let bridged = d.tx_packets(&c2_veth) - tx_before;
    assert!(redirected >= 20 + 100 + 20, "c1's traffic was redirected by the program ({redirected} packets)");
    assert!(bridged < 10, "the bridge forwarded almost nothing to c2 ({bridged} packets: ARP/ND at most)");
    // And the reverse direction (echo replies, TCP ACKs) took the fast path too.
    assert!(d.count(Some("c2"), "redirect-peer") >= 20);
}

#[test]
fn the_hosts_traffic_to_a_container_skips_the_bridge() {
    let d = TestDaemon::start(&[]);
    sandbox(&d, "c1", &[]);
    d.netd(&["network", "create", "--subnet", "10.74.0.0/24", "user"]).ok();
    sandbox(&d, "u1", &["--network", "user"]);
    let host_ping = |to: &str, count: &str| d.host().exec("ping", &["-c", count, "-i", "0.01", "-W", "1", to]);
    assert!(host_ping("172.17.0.2", "1").status.success(), "warm-up (ARP)");
    let (bridge_tx, redirected) = (d.tx_packets("docker0"), d.count(None, "redirect-from-host"));

    // ICMP, UDP and TCP from the host's stack to c1.
    assert!(host_ping("172.17.0.2", "20").status.success());
    let receiver = spawn_in_path(&d.sandbox_netns("c1"), || {
        let udp = UdpSocket::bind("172.17.0.2:7001").expect("bind udp");
        udp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let tcp = TcpListener::bind("172.17.0.2:7002").expect("bind tcp");
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while got < 100 && uninterrupted(|| udp.recv(&mut buf)).is_ok() {
            got += 1;
        }
        let mut data = Vec::new();
        accept(&tcp).read_to_end(&mut data).expect("read");
        (got, data.len())
    });
    std::thread::sleep(Duration::from_millis(100));
    d.host()
        .spawn_thread(|| {
            let udp = UdpSocket::bind("172.17.0.1:0").expect("bind");
            for _ in 0..100 {
                udp.send_to(&[7u8; 64], "172.17.0.2:7001").expect("send");
                std::thread::sleep(Duration::from_micros(200));
            }
            connect("172.17.0.2:7002").write_all(&vec![1u8; 1 << 20]).expect("write");
        })
        .join()
        .expect("sender");
    assert_eq!(receiver.join().expect("receiver"), (100, 1 << 20), "everything arrived");

    let redirected = d.count(None, "redirect-from-host") - redirected;
    let bridged = d.tx_packets("docker0") - bridge_tx;
    assert!(redirected >= 20 + 100 + 10, "the host's traffic was redirected by the program ({redirected} packets)");
    assert!(bridged < 10, "the bridge sent almost nothing itself ({bridged} packets: ARP at most)");

    // A user-defined network's bridge has the program too, and loses it (and its pin) with the
    // network.
    assert!(host_ping("10.74.0.2", "3").status.success());
    let pin = d.bpffs().join("links").join(format!("bridge:{}", user_bridge(&d)));
    assert!(pin.exists(), "{} pinned", pin.display());
    d.netd(&["rm", "-f", "u1"]).ok();
    d.netd(&["network", "rm", "user"]).ok();
    assert!(!pin.exists(), "{} unpinned with its network", pin.display());
}

#[test]
fn host_fast_path_off_leaves_the_hosts_traffic_to_the_bridge() {
    let d = TestDaemon::start(&["--host-fast-path=false"]);
    sandbox(&d, "c1", &[]);
    let bridge_tx = d.tx_packets("docker0");
    assert!(d.host().exec("ping", &["-c", "20", "-i", "0.01", "-W", "1", "172.17.0.2"]).status.success());
    assert_eq!(d.count(None, "redirect-from-host"), 0);
    assert!(d.tx_packets("docker0") >= bridge_tx + 20, "the bridge sent the host's traffic");
    assert!(!d.bpffs().join("links/bridge:docker0").exists());
}

/// The bridge of network `user`.
fn user_bridge(d: &TestDaemon) -> String {
    let v: serde_json::Value = serde_json::from_str(&d.netd(&["network", "inspect", "user"]).ok()).expect("inspect");
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .map_or_else(|| format!("br-{}", &v[0]["Id"].as_str().expect("id")[..12]), str::to_owned)
}

#[test]
fn isolation_matrix() {
    let d = TestDaemon::start(&[]);
    d.netd(&[
        "network",
        "create",
        "--subnet",
        "10.70.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "noicc",
    ])
    .ok();
    d.netd(&["network", "create", "--subnet", "10.71.0.0/24", "n1"]).ok();
    d.netd(&["network", "create", "--subnet", "10.72.0.0/24", "n2"]).ok();
    d.netd(&["network", "create", "--subnet", "10.73.0.0/24", "--internal", "int"]).ok();
    for (name, net) in
        [("q1", "noicc"), ("q2", "noicc"), ("x1", "n1"), ("x1b", "n1"), ("x2", "n2"), ("i1", "int"), ("i2", "int")]
    {
        sandbox(&d, name, &["--network", net]);
    }
    sandbox(&d, "s1", &[]);
    sandbox(&d, "s2", &[]);

    // icc=false: endpoints of the network cannot talk; the gateway stays reachable.
    assert!(!ping(&d, "q1", "10.70.0.3"));
    assert!(d.count(Some("q1"), "drop-icc-disabled") >= 1);
    assert!(ping(&d, "q1", "10.70.0.1"));

    // Two networks: isolated from each other; each reaches its own peers and gateway.
    assert!(!ping(&d, "x1", "10.72.0.2"));
    assert!(d.count(Some("x1"), "drop-cross-network") >= 1);
    assert!(!ping(&d, "x2", "10.71.0.2"));
    assert!(ping(&d, "x1", "10.71.0.3"));
    assert!(ping(&d, "x1", "10.71.0.1"));
    assert!(ping(&d, "s1", "172.17.0.3"));

    // --internal: its subnet only, even with a route out forced inside the container.
    assert!(ping(&d, "i1", "10.73.0.3"));
    assert!(ping(&d, "i1", "10.73.0.1"));
    d.netd(&["exec", "i1", "--", "ip", "route", "add", "default", "via", "10.73.0.1"]).ok();
    assert!(!ping(&d, "i1", "172.17.0.1"));
    assert!(d.count(Some("i1"), "drop-internal-network") >= 1);

    // A spoofed source address is dropped; the real one still works.
    d.netd(&["exec", "s1", "--", "ip", "addr", "add", "172.17.0.200/16", "dev", "eth0"]).ok();
    let spoofed = d.netd(&["exec", "s1", "--", "ping", "-c", "1", "-W", "1", "-I", "172.17.0.200", "172.17.0.3"]);
    assert_ne!(spoofed.code, 0);
    assert!(d.count(Some("s1"), "drop-spoofed-ip") >= 1);
    assert!(ping(&d, "s1", "172.17.0.3"));

    // A spoofed source MAC is dropped; restoring it restores traffic.
    d.netd(&["exec", "s2", "--", "ip", "link", "set", "dev", "eth0", "address", "02:42:de:ad:be:ef"]).ok();
    assert!(!ping(&d, "s2", "172.17.0.2"));
    assert!(d.count(Some("s2"), "drop-spoofed-mac") >= 1);
    d.netd(&["exec", "s2", "--", "ip", "link", "set", "dev", "eth0", "address", "02:42:ac:11:00:03"]).ok();
    assert!(ping(&d, "s2", "172.17.0.2"));
}

#[test]
fn netd_monitor_shows_each_drop_with_its_endpoint_and_addresses() {
    let d = TestDaemon::start(&[]);
    sandbox(&d, "m1", &[]);
    sandbox(&d, "m2", &[]);
    // Neighbours resolved with the real addresses, so the spoofed pings below need no ARP.
    assert!(ping(&d, "m1", "172.17.0.3"));
    assert!(ping(&d, "m2", "172.17.0.1"));
    d.netd(&["monitor", "--sandbox", "nosuch"]).fails_with("No such container: nosuch");
    // A drop before anyone monitors is old news: no monitor shows it.
    d.netd(&["exec", "m1", "--", "ip", "addr", "add", "172.17.0.199/16", "dev", "eth0"]).ok();
    assert_ne!(d.netd(&["exec", "m1", "--", "ping", "-c", "1", "-W", "1", "-I", "172.17.0.199", "172.17.0.3"]).code, 0);
    assert!(d.count(Some("m1"), "drop-spoofed-ip") >= 1);

    let all = d.netd_streaming(&["monitor"]);
    let m1 = d.netd_streaming(&["monitor", "--json", "--sandbox", "m1"]);
    for m in [&all, &m1] {
        let first = m.line(DEADLINE).expect("the monitor starts");
        assert!(first.contains("Listening for datapath events"), "{first}");
    }
    // The first line about an IPv4 packet (an ARP probe may come first).
    let next_ipv4 = |m: &netd_tests::daemon::Streaming| loop {
        let line = m.line(DEADLINE).expect("an event");
        if !line.contains("arp") {
            return line;
        }
    };

    // m2 spoofs its source towards the gateway, then m1 towards m2.
    d.netd(&["exec", "m2", "--", "ip", "addr", "add", "172.17.0.201/16", "dev", "eth0"]).ok();
    assert_ne!(d.netd(&["exec", "m2", "--", "ping", "-c", "1", "-W", "1", "-I", "172.17.0.201", "172.17.0.1"]).code, 0);
    d.netd(&["exec", "m1", "--", "ip", "addr", "add", "172.17.0.200/16", "dev", "eth0"]).ok();
    assert_ne!(d.netd(&["exec", "m1", "--", "ping", "-c", "1", "-W", "1", "-I", "172.17.0.200", "172.17.0.3"]).code, 0);

    // Every drop, as text, in order.
    let (m1_veth, m2_veth) = (d.host_veth("m1", "bridge"), d.host_veth("m2", "bridge"));
    let line = next_ipv4(&all);
    assert!(
        line.contains(&format!(
            "drop-spoofed-ip        {m2_veth} (m2 172.17.0.3 on bridge): icmp 172.17.0.201 -> 172.17.0.1, 98 bytes"
        )),
        "{line}"
    );
    let line = next_ipv4(&all);
    assert!(line.contains(&format!("{m1_veth} (m1 172.17.0.2 on bridge): icmp 172.17.0.200 -> 172.17.0.3")), "{line}");

    // m1's only, as JSON: m2's drop is not about m1.
    let e: serde_json::Value = serde_json::from_str(&next_ipv4(&m1)).expect("a JSON event");
    assert_eq!(e["kind"], "drop");
    assert_eq!(e["reason"], "drop-spoofed-ip");
    assert_eq!(e["code"], 79);
    assert_eq!(e["class"], "ipv4-icmp");
    assert_eq!(e["interface"], m1_veth.as_str());
    assert_eq!(e["endpoint"]["sandbox"], "m1");
    assert_eq!(e["endpoint"]["network"], "bridge");
    assert_eq!(e["endpoint"]["ip"], "172.17.0.2");
    assert_eq!(
        (e["protocol"].as_str(), e["src"].as_str(), e["dst"].as_str()),
        (Some("icmp"), Some("172.17.0.200"), Some("172.17.0.3"))
    );
    assert_eq!(e["len"], 98);
}

/// Adds `n` to the datapath's count of events its full ring lost, as the programs do.
fn add_lost_events(d: &TestDaemon, n: u64) {
    use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
    let data = MapData::from_pin(d.bpffs().join("maps/NETD_EVENTS_LOST")).expect("pinned lost-events counter");
    let mut lost = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(data)).expect("per-CPU array");
    let mut values: Vec<u64> = lost.get(&0, 0).expect("counter").iter().copied().collect();
    values[0] += n;
    lost.set(0, PerCpuValues::try_from(values).expect("one value per CPU"), 0).expect("set");
}

#[test]
fn netd_monitor_says_how_many_events_the_datapath_lost() {
    let d = TestDaemon::start(&[]);
    sandbox(&d, "l1", &[]);
    assert!(ping(&d, "l1", "172.17.0.1"));
    d.netd(&["exec", "l1", "--", "ip", "addr", "add", "172.17.0.199/16", "dev", "eth0"]).ok();
    let spoofed_ping = || {
        let out = d.netd(&["exec", "l1", "--", "ping", "-c", "1", "-W", "1", "-I", "172.17.0.199", "172.17.0.1"]);
        assert_ne!(out.code, 0);
    };
    // Losses before anyone monitors are old news.
    add_lost_events(&d, 100);
    let m = d.netd_streaming(&["monitor", "--type", "drop", "--json"]);
    assert!(m.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    let next = || -> serde_json::Value { serde_json::from_str(&m.line(DEADLINE).expect("a line")).expect("JSON") };
    spoofed_ping();
    assert_eq!(next()["reason"], "drop-spoofed-ip", "the monitor reads the ring");
    // The ring overflowed meanwhile (a test run fills it for real, see datapath_fastpath): the
    // next read says how many were lost, to every subscriber.
    add_lost_events(&d, 5);
    spoofed_ping();
    assert_eq!(next()["reason"], "drop-spoofed-ip");
    assert_eq!(next(), serde_json::json!({ "lost": 5, "in_datapath": true }));
    let text = d.netd_streaming(&["monitor", "--sandbox", "l1"]);
    assert!(text.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    spoofed_ping();
    add_lost_events(&d, 2);
    spoofed_ping();
    let lines: Vec<String> = (0..3).map(|_| text.line(DEADLINE).expect("a line")).collect();
    assert!(lines[2].ends_with("… 2 events lost (the datapath's event ring was full)"), "{lines:?}");
}

#[test]
fn a_daemon_restart_loses_nothing() {
    let d = restart_loses_nothing(&[]);
    assert!(d.log().contains("programs attached with TCX links"));
}

/// The fallback for kernels without TCX, forced: each program is a clsact filter, which
/// outlives the daemon as a pinned link does.
#[test]
fn a_daemon_restart_loses_nothing_with_clsact_filters() {
    let d = restart_loses_nothing(&["--tc-attach", "clsact"]);
    assert!(d.log().contains("programs attached as clsact filters"));
    let filters = |dev: &str, dir: &str| netd_tests::bpf::clsact_filters(d.host(), dev, dir);
    // One filter per device, adopted across the restart rather than added again.
    for name in ["c1", "c2", "c3"] {
        let veth = d.host_veth(name, "bridge");
        let f = filters(&veth, "ingress");
        assert_eq!(f.len(), 1, "{veth}: {f:?}");
        assert!(f[0].contains("netd_from_container") && f[0].contains("direct-action"), "{f:?}");
        assert!(netd_tests::bpf::tcx_ingress_programs(d.host(), &veth).is_empty(), "no TCX link on {veth}");
    }
    let f = filters("docker0", "egress");
    assert!(f.len() == 1 && f[0].contains("netd_to_container"), "{f:?}");
    // A removed sandbox takes its filter's marker along (the filter went with its veth).
    let c3 = d.host_veth("c3", "bridge");
    let marked = |veth: &str| {
        std::fs::read_dir(d.bpffs().join("links"))
            .expect("links dir")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&format!("{veth}@clsact-")))
    };
    assert!(marked(&c3));
    d.netd(&["rm", "-f", "c3"]).ok();
    assert!(!marked(&c3));
    assert!(ping(&d, "c1", "172.17.0.3"));
}

fn restart_loses_nothing(flags: &[&str]) -> TestDaemon {
    let mut d = TestDaemon::start(flags);
    sandbox(&d, "c1", &[]);
    sandbox(&d, "c2", &[]);
    assert!(ping(&d, "c1", "172.17.0.3"));
    let (c1, c2) = (d.sandbox_netns("c1"), d.sandbox_netns("c2"));

    // A TCP stream of numbered records, and a 100 pps ping, across a stop and a restart.
    let server = spawn_in_path(&c2, || {
        let l = TcpListener::bind("172.17.0.3:7100").expect("bind");
        let mut conn = accept(&l);
        let mut data = Vec::new();
        conn.read_to_end(&mut data).expect("read");
        data
    });
    std::thread::sleep(Duration::from_millis(100));
    let client = spawn_in_path(&c1, || {
        let mut s = connect("172.17.0.3:7100");
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < Duration::from_secs(4) {
            s.write_all(&n.to_be_bytes()).expect("the stream never breaks");
            n += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        n
    });
    let pinger = {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net={c1}")).args(["ping", "-i", "0.01", "-c", "400", "-W", "1", "172.17.0.3"]);
        cmd.stdout(std::process::Stdio::piped()).spawn().expect("ping")
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = d.count(None, "redirect-peer");
    let programs = |d: &TestDaemon| {
        let veth = d.host_veth("c1", "bridge");
        let mut ids = netd_tests::bpf::tcx_program_ids(d.host(), &veth, aya::programs::TcAttachType::Ingress);
        ids.extend(
            netd_tests::bpf::clsact_filters(d.host(), &veth, "ingress")
                .iter()
                .filter_map(|f| netd_tests::bpf::filter_program_id(f)),
        );
        ids
    };
    let old_programs = programs(&d);
    assert_eq!(old_programs.len(), 1, "{old_programs:?}");
    d.stop();
    std::thread::sleep(Duration::from_millis(1500));
    d.restart();
    let after = d.count(None, "redirect-peer");
    assert!(after > before + 100, "the pinned program kept forwarding while the daemon was down ({before} -> {after})");
    // The restarted daemon's own program took over (an upgrade's takes effect), swapped in
    // with the traffic flowing: one program, not the old one.
    let new_programs = programs(&d);
    assert!(new_programs.len() == 1 && new_programs != old_programs, "{old_programs:?} -> {new_programs:?}");

    let sent = client.join().expect("client");
    let data = server.join().expect("server");
    assert_eq!(data.len() as u64, sent * 8, "every record arrived");
    for (i, chunk) in data.chunks(8).enumerate() {
        assert_eq!(u64::from_be_bytes(chunk.try_into().expect("8 bytes")), i as u64, "in order, none missing");
    }
    let out = pinger.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("400 packets transmitted, 400 received"), "no ping lost across the restart:\n{text}");

    // The restarted daemon adopted the endpoints: new ones work, old ones are still counted.
    sandbox(&d, "c3", &[]);
    assert!(ping(&d, "c3", "172.17.0.2"));
    assert!(d.count(Some("c3"), "redirect-peer") >= 1);
    // The bridge's program was adopted too.
    let from_host = d.count(None, "redirect-from-host");
    assert!(d.host().exec("ping", &["-c", "2", "-W", "1", "172.17.0.4"]).status.success());
    assert!(d.count(None, "redirect-from-host") >= from_host + 2);
    assert!(d.log().matches("netd: listening").count() == 2);
    d
}
