//! Name resolution, in namespaces: containers of a user-defined network find each other by
//! name, short id and alias through the embedded resolver (`127.0.0.11`, UDP and TCP), and the
//! reverse names of their addresses; other names go to the upstream server (`--dns`), here a
//! fake one in an "outside" namespace behind the daemon's uplink; the default bridge's
//! containers ask that server themselves, as in Docker.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use netd_tests::{
    daemon::{metric_sample, TestDaemon},
    netns::{spawn_in_path, uplinked, Link, NetNs},
    uninterrupted,
};

const UPLINK: &str = "198.18.0.1";
const UPSTREAM: &str = "198.18.0.2";
/// What the fake upstream server answers for every name.
const FORWARDED: &str = "192.0.2.99";

/// A DNS server in the outside namespace answering every question with an A record of
/// [`FORWARDED`] (a stub takes it for "no AAAA" when it asked for that), and noting the names
/// of the A questions it was asked, until dropped.
struct Upstream {
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(outside: &NetNs) -> Self {
        let socket = outside.run(|| UdpSocket::bind((UPSTREAM, 53)).expect("bind upstream"));
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let (asked, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (names, done) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !done.load(Ordering::Relaxed) {
                let Ok((n, from)) = uninterrupted(|| socket.recv_from(&mut buf)) else { continue };
                let (name, end) = read_name(&buf[..n]);
                if buf[end..end + 2] == [0, 1] {
                    names.lock().unwrap().push(name);
                }
                // The question, then one A record pointing at it.
                let mut answer = buf[..2].to_vec();
                answer.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
                answer.extend_from_slice(&buf[12..end + 4]);
                answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                answer.extend_from_slice(&FORWARDED.parse::<Ipv4Addr>().unwrap().octets());
                socket.send_to(&answer, from).expect("answer");
            }
        });
        Self { asked, stop, thread: Some(thread) }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The question's name of a DNS message, and where it ends.
fn read_name(msg: &[u8]) -> (String, usize) {
    let (mut at, mut labels) = (12, Vec::new());
    while msg[at] != 0 {
        let len = usize::from(msg[at]);
        labels.push(String::from_utf8_lossy(&msg[at + 1..=at + len]).into_owned());
        at += len + 1;
    }
    (labels.join("."), at + 1)
}

/// A query for `name` (labels of up to 63 bytes) of type `qtype`.
fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(u8::try_from(label.len()).expect("a label"));
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

/// Sends `msg` to the sandbox's resolver over UDP or TCP (from inside its namespace); returns
/// the answer.
fn ask_resolver(netns: &str, msg: Vec<u8>, tcp: bool) -> Vec<u8> {
    spawn_in_path(netns, move || {
        let timeout = Some(Duration::from_secs(5));
        if tcp {
            let mut s = TcpStream::connect("127.0.0.11:53").expect("connect");
            s.set_read_timeout(timeout).unwrap();
            let mut framed = u16::try_from(msg.len()).expect("a query").to_be_bytes().to_vec();
            framed.extend_from_slice(&msg);
            s.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut answer).unwrap();
            answer
        } else {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(timeout).unwrap();
            s.send_to(&msg, "127.0.0.11:53").unwrap();
            let mut buf = [0u8; 512];
            let n = uninterrupted(|| s.recv(&mut buf)).expect("an answer");
            buf[..n].to_vec()
        }
    })
    .join()
    .expect("resolver thread")
}

struct World {
    d: TestDaemon,
    upstream: Upstream,
    _outside: NetNs,
    _uplink: Link,
}

/// The topology with a daemon started with `flags` (`--dns …`).
fn world_with(flags: &[&str]) -> World {
    let (host, outside, uplink) = uplinked(UPLINK, UPSTREAM);
    let upstream = Upstream::start(&outside);
    let d = TestDaemon::start_in(host, flags);
    World { d, upstream, _outside: outside, _uplink: uplink }
}

fn world() -> World {
    world_with(&["--dns", UPSTREAM])
}

/// `getent hosts KEY` in a sandbox: `(address, name)` of its first line.
fn getent(d: &TestDaemon, sandbox: &str, key: &str) -> (String, String) {
    let out = d.netd(&["exec", sandbox, "--", "getent", "hosts", key]).ok();
    let mut words = out.split_whitespace();
    (words.next().unwrap_or_default().to_owned(), words.next().unwrap_or_default().to_owned())
}

/// Runs `sleep 300` in a new sandbox `name` on `network` (with `flags`: aliases, …); its id.
fn sandbox(d: &TestDaemon, name: &str, network: &str, flags: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name, "--network", network];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "sleep", "300"]);
    d.netd(&args).ok().trim().to_owned()
}

fn addr(a: &str) -> (String, String) {
    let (ip, name) = a.split_once(' ').unwrap();
    (ip.to_owned(), name.to_owned())
}

#[test]
fn containers_of_a_user_network_find_each_other_and_ask_upstream_for_the_rest() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.50.0.0/24", "mynet"]).ok();
    d.netd(&["network", "create", "--subnet", "10.51.0.0/24", "other"]).ok();
    let web = sandbox(d, "web", "mynet", &["--network-alias", "www", "--network-alias", "Front"]);
    sandbox(d, "db", "mynet", &[]);
    sandbox(d, "lonely", "other", &[]);
    sandbox(d, "old", "bridge", &[]);

    // The file their processes see.
    let conf = d.netd(&["exec", "db", "--", "cat", "/etc/resolv.conf"]).ok();
    assert!(conf.contains("nameserver 127.0.0.11\n") && conf.contains("options ndots:0"), "{conf}");
    let conf = d.netd(&["exec", "old", "--", "cat", "/etc/resolv.conf"]).ok();
    assert!(conf.contains(&format!("nameserver {UPSTREAM}\n")) && !conf.contains("127.0.0.11"), "{conf}");

    // By name, alias (any case), short id, qualified by the network; itself too; and back.
    assert_eq!(getent(d, "db", "web"), addr("10.50.0.2 web"));
    assert_eq!(getent(d, "db", "WWW"), addr("10.50.0.2 WWW"));
    assert_eq!(getent(d, "db", "front"), addr("10.50.0.2 front"));
    assert_eq!(getent(d, "db", &web[..12]).0, "10.50.0.2");
    assert_eq!(getent(d, "db", "web.mynet"), addr("10.50.0.2 web.mynet"));
    assert_eq!(getent(d, "web", "web"), addr("10.50.0.2 web"));
    assert_eq!(getent(d, "web", "db"), addr("10.50.0.3 db"));
    assert_eq!(getent(d, "db", "10.50.0.2"), addr("10.50.0.2 web.mynet"));
    assert!(w.upstream.asked().is_empty(), "answered by the resolver: {:?}", w.upstream.asked());

    // Anything else is the upstream server's: other names, and containers of other networks.
    assert_eq!(getent(d, "db", "example.test"), addr(&format!("{FORWARDED} example.test")));
    assert_eq!(getent(d, "lonely", "web").0, FORWARDED);
    // The default bridge's containers ask it themselves (through masquerade).
    assert_eq!(getent(d, "old", "web").0, FORWARDED);
    assert_eq!(w.upstream.asked(), ["example.test", "web", "web"]);

    // The resolver itself, over UDP and TCP: A, and a name without IPv6 (no record, no error).
    let netns = d.sandbox_netns("db");
    for tcp in [false, true] {
        let a = ask_resolver(&netns, query(0x4242, "web", 1), tcp);
        assert_eq!((&a[..2], a[3] & 0x0f, &a[6..8]), (&[0x42, 0x42][..], 0, &[0, 1][..]), "{a:?}");
        assert_eq!(&a[a.len() - 4..], &[10, 50, 0, 2]);
        let aaaa = ask_resolver(&netns, query(7, "web", 28), tcp);
        assert_eq!((aaaa[3] & 0x0f, &aaaa[6..8]), (0, &[0, 0][..]), "{aaaa:?}");
    }
    assert_eq!(w.upstream.asked().len(), 3, "nothing more forwarded");
}

#[test]
fn names_follow_connect_disconnect_restart_and_removal() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.52.0.0/24", "front"]).ok();
    d.netd(&["network", "create", "--subnet", "10.53.0.0/24", "back"]).ok();
    sandbox(d, "web", "front", &[]);
    sandbox(d, "api", "back", &[]);
    assert_eq!(getent(d, "web", "api").0, FORWARDED);

    // Connected with an alias: found on that network, under its name and the alias.
    d.netd(&["network", "connect", "--alias", "service", "front", "api"]).ok();
    assert_eq!(getent(d, "web", "api"), addr("10.52.0.3 api"));
    assert_eq!(getent(d, "web", "service"), addr("10.52.0.3 service"));
    if let Some(out) = d.docker(&["network", "connect", "--alias", "web-alias", "back", "web"]) {
        out.ok();
        assert_eq!(getent(d, "api", "web-alias"), addr("10.53.0.3 web-alias"));
        d.netd(&["network", "disconnect", "back", "web"]).ok();
    }

    // Aliases only on user-defined networks, and only DNS names; refused, nothing made.
    let before = d.netd(&["ps", "-q"]).ok();
    d.netd(&["run", "--rm", "--network-alias", "x", "--", "true"])
        .fails_with("network-scoped alias is supported only for containers in user defined networks");
    d.netd(&["run", "--rm", "--network", "front", "--network-alias", "a b", "--", "true"])
        .fails_with("invalid network alias \"a b\": not a DNS name");
    d.netd(&["network", "connect", "--alias", "x", "bridge", "web"])
        .fails_with("network-scoped alias is supported only for containers in user defined networks");
    assert_eq!(d.netd(&["ps", "-q"]).ok(), before);

    // Disconnected: not found there any more.
    d.netd(&["network", "disconnect", "front", "api"]).ok();
    assert_eq!(getent(d, "web", "service").0, FORWARDED);

    // A restarted daemon serves the names again (its resolvers went with the last one).
    let mut w = w;
    w.d.stop();
    w.d.restart();
    let d = &w.d;
    assert_eq!(getent(d, "web", "web"), addr("10.52.0.2 web"));
    d.netd(&["network", "connect", "front", "api"]).ok();
    assert_eq!(getent(d, "web", "api"), addr("10.52.0.3 api"));

    // Removed: gone from the names, and its files with it.
    d.netd(&["rm", "-f", "api"]).ok();
    assert_eq!(getent(d, "web", "api").0, FORWARDED);
    let dirs: Vec<_> = std::fs::read_dir(d.exec_root().join("containers")).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1, "only web's is left: {dirs:?}");
}

#[test]
fn a_sandboxs_own_dns_settings_replace_the_daemons() {
    // The daemon's server answers nothing (nobody listens on the host's loopback).
    let w = world_with(&["--dns", "127.0.0.1", "--dns-search", "lab.test", "--dns-opt", "timeout:1"]);
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.54.0.0/24", "mynet"]).ok();
    let own = ["--dns", UPSTREAM, "--dns-search", "corp.test", "--dns-option", "ndots:2"];
    sandbox(d, "mine", "mynet", &own);
    sandbox(d, "theirs", "mynet", &[]);

    let conf = |s: &str| d.netd(&["exec", s, "--", "cat", "/etc/resolv.conf"]).ok();
    assert_eq!(conf("mine"), "# Generated by netd.\nnameserver 127.0.0.11\nsearch corp.test\noptions ndots:2\n");
    assert_eq!(
        conf("theirs"),
        "# Generated by netd.\nnameserver 127.0.0.11\nsearch lab.test\noptions timeout:1 ndots:0\n"
    );
    // Its resolver forwards to its own server; the other's to the daemon's, which is silent.
    assert_eq!(getent(d, "mine", "example").0, FORWARDED);
    assert_eq!(d.netd(&["exec", "theirs", "--", "getent", "hosts", "example"]).code, 2);
    assert_eq!(getent(d, "theirs", "mine").0, "10.54.0.2");
    // On the default bridge, its own server is in its file.
    let out = d.netd(&["run", "--rm", "--dns", "203.0.113.5", "--", "cat", "/etc/resolv.conf"]).ok();
    assert_eq!(out, "# Generated by netd.\nnameserver 203.0.113.5\nsearch lab.test\noptions timeout:1\n");

    // Bad settings are refused, nothing made.
    d.netd(&["run", "--rm", "--dns", "nameserver", "--", "true"]).fails_with("nameserver is not an ip address");
    d.netd(&["run", "--rm", "--dns-search", "a b", "--", "true"]).fails_with("\"a b\" is not a valid domain");
    assert_eq!(d.netd(&["ps", "-q"]).ok().lines().count(), 2);
}

#[test]
fn sandboxes_of_a_release_without_names_get_them_when_the_daemon_is_upgraded() {
    let mut w = world();
    w.d.netd(&["network", "create", "--subnet", "10.55.0.0/24", "mynet"]).ok();
    let web = sandbox(&w.d, "web", "mynet", &[]);
    sandbox(&w.d, "db", "mynet", &[]);
    w.d.netd(&["run", "-d", "--name", "old", "--", "sleep", "300"]).ok();
    w.d.stop();
    // What the last release persisted: sandboxes without their files, host name or resolver.
    let mut state = w.d.state_json();
    for s in state["sandboxes"].as_object_mut().unwrap().values_mut() {
        for key in ["resolv_conf", "embedded_dns", "hosts", "hostname"] {
            s.as_object_mut().unwrap().remove(key);
        }
    }
    w.d.replace_state_json(&state);
    std::fs::remove_dir_all(w.d.exec_root().join("containers")).unwrap();
    w.d.restart();
    let d = &w.d;
    assert_eq!(getent(d, "db", "web"), addr("10.55.0.2 web"));
    assert_eq!(d.netd(&["exec", "web", "--", "hostname"]).ok(), format!("{}\n", &web[..12]));
    let conf = d.netd(&["exec", "old", "--", "cat", "/etc/resolv.conf"]).ok();
    assert!(conf.contains(&format!("nameserver {UPSTREAM}\n")), "{conf}");
    assert!(d.state_json()["sandboxes"].as_object().unwrap().values().all(|s| s["hosts"].is_string()));
}

#[test]
fn questions_show_in_netd_monitor_and_the_metrics() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.56.0.0/24", "mynet"]).ok();
    sandbox(d, "web", "mynet", &[]);
    sandbox(d, "db", "mynet", &[]);
    let monitor = d.netd_streaming(&["monitor", "--type", "dns", "--json", "--sandbox", "db"]);
    assert!(monitor.line(Duration::from_secs(10)).is_some_and(|l| l.contains("Listening")));

    assert_eq!(getent(d, "web", "db").0, "10.56.0.3", "not db's question");
    assert_eq!(getent(d, "db", "web").0, "10.56.0.2");
    assert_eq!(getent(d, "db", "example.test").0, FORWARDED);
    let mut seen = Vec::new();
    while let Some(line) = monitor.line(Duration::from_millis(500)) {
        let e: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
        assert_eq!((e["kind"].as_str(), e["endpoint"]["sandbox"].as_str()), (Some("dns"), Some("db")), "{e}");
        assert_eq!(e["dst"], "127.0.0.11:53");
        assert!(e["micros"].as_u64().is_some_and(|us| us > 0), "{e}");
        let upstream = e["upstream"].as_str().unwrap_or_default().to_owned();
        let what = [&e["reason"], &e["question"], &e["answer"]].map(|v| v.as_str().unwrap_or_default().to_owned());
        seen.push((what, upstream));
    }
    let find = |question: &str| seen.iter().find(|(w, _)| w[1] == question).cloned();
    let answered = |answer: &str| Some((["dns-answered".into(), "web A".into(), answer.into()], String::new()));
    assert_eq!(find("web A"), answered("10.56.0.2"), "{seen:?}");
    assert_eq!(find("web AAAA").map(|(w, _)| w[2].clone()), Some("NOERROR".into()), "{seen:?}");
    let forwarded = find("example.test A").expect("the forwarded question");
    assert_eq!((forwarded.0[0].as_str(), forwarded.0[2].as_str()), ("dns-forwarded", FORWARDED));
    assert_eq!(forwarded.1, format!("{UPSTREAM}:53"));
    assert!(seen.iter().all(|(w, _)| !w[1].starts_with("db ")), "web's questions are not db's: {seen:?}");

    let text = d.metrics();
    let count = |outcome: &str| metric_sample(&text, &format!("netd_dns_questions_total{{outcome=\"{outcome}\"}}"));
    assert!(count("answered") >= Some(4), "{text}");
    assert!(count("forwarded") >= Some(1), "{text}");
    assert_eq!(count("failed"), Some(0));
    assert_eq!(metric_sample(&text, "netd_dns_resolvers"), Some(2));
}

#[test]
fn port_53_stays_the_sandboxs_own_for_its_servers() {
    port_53_stays_free(&world());
}

#[test]
fn port_53_stays_the_sandboxs_own_with_clsact_filters_too() {
    port_53_stays_free(&world_with(&["--dns", UPSTREAM, "--tc-attach", "clsact"]));
}

/// A DNS server of a sandbox's own on port 53 beside the resolver.
fn port_53_stays_free(w: &World) {
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.57.0.0/24", "mynet"]).ok();
    sandbox(d, "ns1", "mynet", &[]);
    sandbox(d, "web", "mynet", &[]);
    // A DNS server of its own in ns1, on every address, UDP and TCP: it binds (the resolver
    // is elsewhere), and it echoes what it gets.
    let netns = d.sandbox_netns("ns1");
    let (udp, _tcp) = spawn_in_path(&netns, || {
        (
            UdpSocket::bind("0.0.0.0:53").expect("port 53 is free"),
            std::net::TcpListener::bind("0.0.0.0:53").expect("TCP too"),
        )
    })
    .join()
    .expect("binding");
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = uninterrupted(|| udp.recv_from(&mut buf)).expect("a datagram");
        udp.send_to(&buf[..n], from).expect("echo");
    });

    // The resolver still answers in ns1, over UDP and TCP.
    assert_eq!(getent(d, "ns1", "web"), addr("10.57.0.3 web"));
    let a = ask_resolver(&netns, query(9, "web", 1), true);
    assert_eq!(&a[a.len() - 4..], &[10, 57, 0, 3]);
    // And ns1's own server is reached on port 53 from web, by name.
    let echo = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5); \
                s.sendto(b'own', ('ns1', 53)); print(s.recv(64).decode())";
    assert_eq!(d.netd(&["exec", "web", "--", "python3", "-c", echo]).ok(), "own\n");
    server.join().expect("ns1's server");
}

#[test]
fn internal_networks_resolve_their_names_and_nothing_beyond() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--internal", "--subnet", "10.58.0.0/24", "priv"]).ok();
    d.netd(&["network", "create", "--subnet", "10.59.0.0/24", "pub"]).ok();
    for (name, alias) in [("a1", "front"), ("b1", "front")] {
        sandbox(d, name, "priv", &["--network-alias", alias]);
    }
    assert_eq!(getent(d, "a1", "b1"), addr("10.58.0.3 b1"));
    // Nothing is forwarded for a sandbox only on internal networks (Docker 26 on): REFUSED.
    assert_eq!(d.netd(&["exec", "a1", "--", "getent", "hosts", "example.test"]).code, 2);
    let netns = d.sandbox_netns("a1");
    let refused = ask_resolver(&netns, query(3, "example.test", 1), false);
    assert_eq!((refused[3] & 0x0f, &refused[6..8]), (5, &[0, 0][..]), "{refused:?}");
    assert!(w.upstream.asked().is_empty(), "{:?}", w.upstream.asked());
    let refusals = metric_sample(&d.metrics(), r#"netd_dns_questions_total{outcome="refused"}"#);
    assert!(refusals >= Some(2), "getent's and this one: {refusals:?}");
    // An alias of two containers: both, in either order (round-robin, as Docker's).
    let mut orders = std::collections::BTreeSet::new();
    for id in 0..20 {
        let a = ask_resolver(&netns, query(id, "front", 1), false);
        assert_eq!(&a[6..8], &[0, 2]);
        orders.insert((a[a.len() - 17], a[a.len() - 1]));
    }
    assert_eq!(orders, [(2, 3), (3, 2)].into_iter().collect(), "both orders");
    // Connected to a network that reaches beyond: forwarded.
    d.netd(&["network", "connect", "pub", "a1"]).ok();
    assert_eq!(getent(d, "a1", "example.test").0, FORWARDED);
}

#[test]
fn netd_inspect_shows_a_sandboxs_names_and_files() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.60.0.0/24", "mynet"]).ok();
    let id = sandbox(d, "web", "mynet", &["--network-alias", "www", "--hostname", "w1"]);
    let out = d.netd(&["inspect", "web"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let s = &v[0];
    assert_eq!(
        (s["Id"].as_str(), s["Name"].as_str(), s["Hostname"].as_str()),
        (Some(id.as_str()), Some("web"), Some("w1"))
    );
    assert_eq!(s["Networks"]["mynet"]["IPAddress"], "10.60.0.2");
    assert_eq!(s["Networks"]["mynet"]["Aliases"], serde_json::json!(["www"]));
    let conf = std::fs::read_to_string(s["ResolvConfPath"].as_str().unwrap()).unwrap();
    assert!(conf.contains("nameserver 127.0.0.11"), "{conf}");
    let hosts = std::fs::read_to_string(s["HostsPath"].as_str().unwrap()).unwrap();
    assert!(hosts.contains("10.60.0.2\tw1"), "{hosts}");
    // As docker inspect: the ones found, and an error for the others.
    let both = d.netd(&["inspect", "web", "nothere"]);
    assert_eq!(both.code, 1);
    assert!(both.stderr.contains("Error: No such object: nothere"), "{}", both.stderr);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&both.stdout).unwrap().as_array().map(Vec::len), Some(1));
}

#[test]
fn a_resolver_holds_at_most_64_tcp_clients_at_once() {
    let w = world();
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.61.0.0/24", "mynet"]).ok();
    sandbox(d, "web", "mynet", &[]);
    let netns = d.sandbox_netns("web");
    let refused = spawn_in_path(&netns, || {
        let connect = || {
            let s = TcpStream::connect("127.0.0.11:53").expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        };
        let held: Vec<TcpStream> = (0..64).map(|_| connect()).collect();
        // Served: a question on the last one is answered.
        let mut last = held.last().unwrap().try_clone().unwrap();
        let q = query(1, "web", 1);
        last.write_all(&[&u16::try_from(q.len()).unwrap().to_be_bytes()[..], &q].concat()).unwrap();
        let mut len = [0u8; 2];
        last.read_exact(&mut len).expect("the 64th is served");
        // The 65th is closed at once.
        let mut extra = connect();
        let mut byte = [0u8; 1];
        let refused = matches!(uninterrupted(|| extra.read(&mut byte)), Ok(0));
        drop(held);
        refused
    })
    .join()
    .expect("clients");
    assert!(refused, "the 65th connection was closed");
    // Once they are gone, TCP questions are answered again.
    std::thread::sleep(Duration::from_millis(200));
    let a = ask_resolver(&netns, query(2, "web", 1), true);
    assert_eq!(&a[a.len() - 4..], &[10, 61, 0, 2]);
}
