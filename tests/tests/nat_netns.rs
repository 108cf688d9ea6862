//! Masquerade through the daemon, in namespaces: an "outside" namespace with servers sits behind
//! the uplink of the daemon's "host" namespace (the host's default route). Containers reach it
//! with ping, TCP and UDP; the servers see the uplink's address; two containers using the same
//! source port both work; masquerade off and `--internal` behave as Docker's; nothing from
//! outside reaches a container unasked; the host's own traffic is untouched; and the host's
//! nftables ruleset stays empty.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use netd_tests::{
    daemon::{http_get, metric_sample as sample, TestDaemon},
    netns::{spawn_in_path, uplinked, Link, NetNs},
    tun::TunWire,
    uninterrupted,
};

const DEADLINE: Duration = Duration::from_secs(10);
const UPLINK: &str = "198.18.0.1";
const SERVER: &str = "198.18.0.2";

/// The daemon's host namespace with uplink `uplink0` (198.18.0.1/24, the default route) to an
/// outside namespace (198.18.0.2/24) that knows no route to any container network; or (see
/// [`tunnel_world`]) a tunnel.
struct World {
    // First: the wire stops before the namespaces go.
    wire: Option<TunWire>,
    d: TestDaemon,
    outside: NetNs,
    _uplink: Option<Link>,
}

fn world(extra: &[&str]) -> World {
    let (host, outside, uplink) = uplinked(UPLINK, SERVER);
    let d = TestDaemon::start_in(host, extra);
    World { wire: None, d, outside, _uplink: Some(uplink) }
}

/// [`world`] with a tunnel for uplink, as a VPN's: `tun0` (198.18.0.1, peer 198.18.0.2, the
/// default route), no link-layer header, joined to the outside namespace's `tun0` (198.18.0.2,
/// peer 198.18.0.1) by a [`TunWire`].
fn tunnel_world(extra: &[&str]) -> World {
    tunnel_world_limited(extra, usize::MAX)
}

/// [`tunnel_world`] whose wire carries no packet longer than `max` bytes (see
/// [`TunWire::with_limit`]).
fn tunnel_world_limited(extra: &[&str], max: usize) -> World {
    let host = NetNs::new("ndt-host");
    let outside = NetNs::new("ndt-out");
    let wire = TunWire::with_limit(&host, "tun0", &outside, "tun0", max);
    host.ip(&["addr", "add", UPLINK, "peer", SERVER, "dev", "tun0"]);
    host.ip(&["route", "add", "default", "dev", "tun0"]);
    outside.ip(&["addr", "add", SERVER, "peer", UPLINK, "dev", "tun0"]);
    outside.ip(&["link", "set", "lo", "up"]);
    let d = TestDaemon::start_in(host, extra);
    World { wire: Some(wire), d, outside, _uplink: None }
}

fn sandbox(d: &TestDaemon, name: &str, network: &str) {
    d.netd(&["run", "-d", "--name", name, "--network", network, "--", "sleep", "300"]).ok();
}

fn ping(d: &TestDaemon, from: &str, to: &str) -> bool {
    d.netd(&["exec", from, "--", "ping", "-c", "2", "-i", "0.2", "-W", "1", to]).code == 0
}

/// A TCP echo server in the outside namespace: serves `n` connections, returns their peers.
fn tcp_echo_server(outside: &NetNs, port: u16, n: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let listener = outside.run(move || TcpListener::bind((SERVER, port)).expect("bind tcp"));
    std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let start = Instant::now();
        let mut peers = Vec::new();
        while peers.len() < n && start.elapsed() < DEADLINE {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
                    let mut buf = [0u8; 64];
                    let got = uninterrupted(|| s.read(&mut buf)).expect("read");
                    s.write_all(&buf[..got]).expect("echo");
                    peers.push(peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("accept: {e}"),
            }
        }
        peers
    })
}

/// A UDP echo server in the outside namespace: answers `n` datagrams, returns their senders.
fn udp_echo_server(outside: &NetNs, port: u16, n: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let sock = outside.run(move || UdpSocket::bind((SERVER, port)).expect("bind udp"));
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let start = Instant::now();
        let mut peers = Vec::new();
        let mut buf = vec![0u8; 65536];
        while peers.len() < n && start.elapsed() < DEADLINE {
            if let Ok((got, peer)) = uninterrupted(|| sock.recv_from(&mut buf)) {
                sock.send_to(&buf[..got], peer).expect("echo");
                peers.push(peer);
            }
        }
        peers
    })
}

/// From inside sandbox namespace `netns`: a TCP exchange with the server, from `local`.
fn tcp_exchange(
    netns: &str,
    local: SocketAddrV4,
    port: u16,
    message: &'static [u8],
) -> std::thread::JoinHandle<Vec<u8>> {
    spawn_in_path(netns, move || {
        let sock = socket2_connect(local, port);
        let mut s = sock;
        s.write_all(message).expect("write");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut buf = vec![0u8; message.len()];
        s.read_exact(&mut buf).expect("echo back");
        buf
    })
}

/// Connects to the server's `port` from an explicit local address and port.
fn socket2_connect(local: SocketAddrV4, port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&SocketAddr::V4(local).into()).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    let server = SocketAddr::V4(SocketAddrV4::new(SERVER.parse().expect("addr"), port));
    s.connect_timeout(&server.into(), DEADLINE).expect("connect");
    s.into()
}

fn nft_ruleset(ns: &NetNs) -> String {
    String::from_utf8_lossy(&ns.exec_ok("nft", &["list", "ruleset"]).stdout).trim().to_owned()
}

fn addr_of(d: &TestDaemon, sandbox: &str, network: &str) -> Ipv4Addr {
    let out = d.netd(&["network", "inspect", network]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    let containers = v[0]["Containers"].as_object().expect("containers");
    let c = containers.values().find(|c| c["Name"] == sandbox).unwrap_or_else(|| panic!("{sandbox} on {network}"));
    let cidr = c["IPv4Address"].as_str().expect("address");
    cidr.split('/').next().expect("cidr").parse().expect("ip")
}

#[test]
fn containers_reach_the_outside_as_the_uplink_address() {
    let w = world(&[]);
    let d = &w.d;
    assert!(d.log().contains(&format!("netd: uplinks: uplink0 ({UPLINK}, into its peer)")), "{}", d.log());
    d.netd(&["network", "create", "--subnet", "10.201.0.0/24", "n1"]).ok();
    sandbox(d, "c1", "n1");
    sandbox(d, "c2", "n1");
    let (c1, c2) = (addr_of(d, "c1", "n1"), addr_of(d, "c2", "n1"));

    assert!(ping(d, "c1", SERVER), "ping through masquerade");

    // TCP: both containers from the same source port to the same server port.
    let server = tcp_echo_server(&w.outside, 8080, 2);
    let from_c1 = tcp_exchange(&d.sandbox_netns("c1"), SocketAddrV4::new(c1, 40000), 8080, b"from c1");
    let from_c2 = tcp_exchange(&d.sandbox_netns("c2"), SocketAddrV4::new(c2, 40000), 8080, b"from c2");
    assert_eq!(from_c1.join().expect("c1"), b"from c1");
    assert_eq!(from_c2.join().expect("c2"), b"from c2");
    let peers = server.join().expect("server");
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers.iter().all(|p| p.ip().to_string() == UPLINK), "the server sees the uplink address: {peers:?}");
    assert_ne!(peers[0].port(), peers[1].port(), "the second flow got another port: {peers:?}");

    // UDP.
    let server = udp_echo_server(&w.outside, 5353, 3);
    let got = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let s = UdpSocket::bind((c1, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        let mut answers = 0;
        for _ in 0..3 {
            s.send_to(b"query", (SERVER, 5353)).expect("send");
            let mut buf = [0u8; 64];
            if matches!(uninterrupted(|| s.recv_from(&mut buf)), Ok((5, _))) {
                answers += 1;
            }
        }
        answers
    })
    .join()
    .expect("udp client");
    assert_eq!(got, 3, "every UDP answer came back");
    assert!(server.join().expect("server").iter().all(|p| p.ip().to_string() == UPLINK));

    // The translations are listed.
    let flows: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "ls", "--json"]).ok()).expect("JSON");
    let flows = flows.as_array().expect("list");
    for (proto, inside) in [("tcp", c1), ("tcp", c2), ("udp", c1), ("icmp", c1)] {
        assert!(
            flows
                .iter()
                .any(|f| f["protocol"] == proto && f["inside"][0] == inside.to_string() && f["outside"][0] == UPLINK),
            "{proto} flow of {inside} listed: {flows:?}"
        );
    }
    let table = d.netd(&["nat", "ls"]).ok();
    assert!(table.starts_with("PROTO"), "{table}");
    // At a glance: those flows in use of the default table, by state; the default ports (below
    // the namespace's ephemeral ports), the uplink; nothing evicted or refused.
    let stats: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "stats", "--json"]).ok()).expect("JSON");
    assert!(stats["flows"].as_u64().expect("flows") >= 4, "{stats}");
    assert_eq!(stats["max_flows"], netd_common::NAT_DEFAULT_FLOWS, "{stats}");
    assert_eq!(stats["states"]["udp replied"], 1, "a query and its answers: {stats}");
    assert!(stats["states"]["icmp replied"].as_u64() >= Some(1), "{stats}");
    let tcp: u64 = ["syn-sent", "established", "fin", "closed"]
        .iter()
        .filter_map(|s| stats["states"][format!("tcp {s}")].as_u64())
        .sum();
    assert_eq!(tcp, 2, "{stats}");
    assert_eq!((&stats["port_min"], &stats["port_max"]), (&1024.into(), &32767.into()), "{stats}");
    assert_eq!(stats["uplinks"], serde_json::json!([format!("uplink0 ({UPLINK}, into its peer)")]), "{stats}");
    assert_eq!((&stats["evicted"], &stats["refused_table_full"]), (&0.into(), &0.into()), "{stats}");
    let text = d.netd(&["nat", "stats"]).ok();
    assert!(text.starts_with("FLOWS") && text.contains("STATE"), "{text}");

    // The datapath carried it, both ways.
    assert!(d.count(Some("c1"), "redirect-nat") >= 2 + 2 + 3);
    assert!(d.count(None, "redirect-reverse-nat") >= 2 + 4 + 3);

    // The host's own connection to the same server is untouched.
    host_connection_is_echoed(&w, 8081);
    assert!(d.count(None, "pass-from-uplink") > 0);

    filter_and_remove_flows(d, c1, c2);

    assert_eq!(nft_ruleset(d.host()), "", "no nftables rules in the host namespace");
}

/// The host's own TCP connection to an echo server outside on `port`: echoed (asserted).
fn host_connection_is_echoed(w: &World, port: u16) {
    let server = tcp_echo_server(&w.outside, port, 1);
    let echoed = w.d.host().run(|| {
        let mut s = TcpStream::connect_timeout(&at(SERVER, port), DEADLINE).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        s.write_all(b"host").expect("write");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("read");
        buf
    });
    assert_eq!(&echoed, b"host");
    assert_eq!(server.join().expect("server").len(), 1);
}

/// `netd nat ls -f` and `netd nat rm` on the flows of
/// `containers_reach_the_outside_as_the_uplink_address`: c1's TCP, UDP and ping, c2's TCP.
fn filter_and_remove_flows(d: &TestDaemon, c1: Ipv4Addr, c2: Ipv4Addr) {
    // Filtered as `docker ps -f`: values of one key are alternatives, keys must all match.
    let only = |filters: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["nat", "ls", "--json"];
        for f in filters {
            args.extend(["-f", f]);
        }
        let listed: serde_json::Value = serde_json::from_str(&d.netd(&args).ok()).expect("JSON");
        listed.as_array().expect("list").clone()
    };
    let of_c2 = only(&["sandbox=c2"]);
    assert!(of_c2.len() == 1 && of_c2[0]["inside"][0] == c2.to_string(), "{of_c2:?}");
    let c1_tcp = only(&["sandbox=c1", "protocol=tcp"]);
    assert!(c1_tcp.len() == 1 && c1_tcp[0]["inside"][0] == c1.to_string(), "{c1_tcp:?}");
    assert_eq!(only(&["sandbox=c1", "protocol=udp", "protocol=icmp"]).len(), 2);
    assert_eq!(only(&["remote=198.18.0.2:8080", "outside=198.18.0.1"]).len(), 2, "both TCP flows");
    for (filter, says) in [("state=open", "invalid filter 'state=open'"), ("sandbox=nope", "No such container: nope")] {
        let refused = d.netd(&["nat", "ls", "-f", filter]);
        assert!(refused.code != 0 && refused.stderr.contains(says), "{filter}: {}", refused.stderr);
    }

    // Removed as `conntrack -D` does, by the same filters: c2's only; then all (`-F`); the
    // container's next packet starts a new flow.
    assert_eq!(d.netd(&["nat", "rm", "-f", "sandbox=c2"]).ok().trim(), "1 flow removed");
    assert!(only(&["sandbox=c2"]).is_empty());
    let left = only(&["sandbox=c1"]).len();
    assert!(left >= 3, "c1's stay");
    let refused = d.netd(&["nat", "rm"]);
    assert!(refused.code != 0 && refused.stderr.contains("--filter"), "{}", refused.stderr);
    assert_eq!(d.netd(&["nat", "rm", "--all"]).ok().trim(), format!("{left} flows removed"));
    assert!(only(&[]).is_empty());
    assert!(ping(d, "c1", SERVER), "a new flow");
    assert_eq!(only(&["sandbox=c1", "protocol=icmp"]).len(), 1);
}

#[test]
fn datagrams_larger_than_the_mtu_go_out_and_come_back_in_fragments() {
    let w = world(&[]);
    let d = &w.d;
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");
    let before = (d.count(Some("c1"), "redirect-nat"), d.count(None, "redirect-reverse-nat"));

    // A 4000-byte ping: three fragments each way, the request's from the container's stack,
    // the reply's from the server's.
    let big_ping = d.netd(&["exec", "c1", "--", "ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "4000", SERVER]);
    assert_eq!(big_ping.code, 0, "{}{}", big_ping.stdout, big_ping.stderr);

    // A 6000-byte UDP datagram, echoed whole, from the uplink's address.
    let server = udp_echo_server(&w.outside, 5353, 2);
    let echoed = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let s = UdpSocket::bind((c1, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let datagram: Vec<u8> = (0..6000u32).map(|i| i.to_le_bytes()[0] ^ 0x5a).collect();
        let mut echoed = 0;
        for _ in 0..2 {
            s.send_to(&datagram, (SERVER, 5353)).expect("send");
            let mut buf = vec![0u8; 65536];
            if let Ok((got, _)) = uninterrupted(|| s.recv_from(&mut buf)) {
                echoed += usize::from(buf[..got] == datagram[..]);
            }
        }
        echoed
    })
    .join()
    .expect("udp client");
    assert_eq!(echoed, 2, "both datagrams came back whole");
    let peers = server.join().expect("server");
    assert!(!peers.is_empty() && peers.iter().all(|p| p.ip().to_string() == UPLINK), "{peers:?}");

    // A published UDP port, the other way round: a 6000-byte datagram from outside opens the
    // flow with its first fragment, and the container's answer goes back in fragments too.
    d.netd(&["run", "-d", "--name", "udp1", "-p", "5354:5354/udp", "--", "sleep", "300"]).ok();
    // Bound before anything is sent (a socket keeps the namespace it was made in).
    let s = spawn_in_path(&d.sandbox_netns("udp1"), || UdpSocket::bind(("0.0.0.0", 5354)).expect("bind"))
        .join()
        .expect("bound");
    let echo = std::thread::spawn(move || {
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut buf = vec![0u8; 65536];
        let (got, peer) = uninterrupted(|| s.recv_from(&mut buf)).expect("a datagram");
        s.send_to(&buf[..got], peer).expect("echo");
        (got, peer)
    });
    let back = w.outside.run(|| {
        let s = UdpSocket::bind((SERVER, 0)).expect("bind");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let datagram: Vec<u8> = (0..6000u32).map(|i| i.to_le_bytes()[1]).collect();
        s.send_to(&datagram, (UPLINK, 5354)).expect("send");
        let mut buf = vec![0u8; 65536];
        let (got, _) = uninterrupted(|| s.recv_from(&mut buf)).expect("the echo");
        buf[..got] == datagram[..]
    });
    assert!(back, "echoed whole");
    let (got, peer) = echo.join().expect("echo server");
    assert_eq!((got, peer.ip().to_string()), (6000, SERVER.to_owned()), "whole, from the client's address");

    // The datapath carried every fragment, both ways (5 per datagram, 3 per ping), and dropped
    // none.
    let after = (d.count(Some("c1"), "redirect-nat"), d.count(None, "redirect-reverse-nat"));
    let (out, back) = (after.0 - before.0, after.1 - before.1);
    assert!(out >= 2 * 5 + 2 * 3 && back >= 2 * 5 + 2 * 3, "out {out}, back {back}");
    assert_eq!(d.count(None, "drop-nat-fragment"), 0);
    assert_eq!(nft_ruleset(d.host()), "", "no nftables rules in the host namespace");
}

/// A VPN's `tun0`, `WireGuard`, an IP tunnel: no link-layer header. Docker masquerades through
/// them (`! -o docker0`), and so does netd: its uplink program reads such a device's packets
/// from the IP header and gives those it sends into a container an Ethernet header.
#[test]
fn containers_reach_the_outside_through_a_tunnel_as_its_address() {
    let mut w = tunnel_world(&[]);
    let d = &w.d;
    assert!(d.log().contains(&format!("netd: uplinks: tun0 ({UPLINK}, no link layer)")), "{}", d.log());
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");

    // Ping, also 4000 bytes of it: three fragments each way.
    assert!(ping(d, "c1", SERVER), "ping through the tunnel");
    let big = d.netd(&["exec", "c1", "--", "ping", "-c", "1", "-W", "2", "-s", "4000", SERVER]);
    assert_eq!(big.code, 0, "{}{}", big.stdout, big.stderr);

    // TCP and UDP: the server sees the tunnel's address.
    let server = tcp_echo_server(&w.outside, 8080, 1);
    let echoed = tcp_exchange(&d.sandbox_netns("c1"), SocketAddrV4::new(c1, 40000), 8080, b"tunnel");
    assert_eq!(echoed.join().expect("client"), b"tunnel");
    let peers = server.join().expect("server");
    assert!(peers.len() == 1 && peers[0].ip().to_string() == UPLINK, "the tunnel's address: {peers:?}");
    let server = udp_echo_server(&w.outside, 5353, 1);
    let answered = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let s = UdpSocket::bind((c1, 0)).expect("bind");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        s.send_to(b"query", (SERVER, 5353)).expect("send");
        let mut buf = [0u8; 64];
        uninterrupted(|| s.recv_from(&mut buf)).is_ok_and(|(n, _)| buf[..n] == *b"query")
    });
    assert!(answered.join().expect("udp client"), "the answer came back");
    assert!(server.join().expect("server").iter().all(|p| p.ip().to_string() == UPLINK));

    // An ICMP error about a flow, through the tunnel: "port unreachable" for a closed port
    // reaches the container's connected socket.
    let refused = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let s = UdpSocket::bind((c1, 0)).expect("bind");
        s.connect((SERVER, 9)).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        s.send(b"anyone?").expect("send");
        uninterrupted(|| s.recv(&mut [0u8; 16])).map_err(|e| e.kind())
    });
    assert_eq!(refused.join().expect("client"), Err(std::io::ErrorKind::ConnectionRefused));

    // A published port, reached through the tunnel: the container sees the client.
    d.netd(&["run", "-d", "--name", "web", "-p", "8081:7000", "--", "sleep", "300"]).ok();
    let server = greet_once(listen_in(d, "web", Ipv4Addr::UNSPECIFIED, 7000), b"tunnel!");
    assert_eq!(&greeting_from_outside(&w, at(UPLINK, 8081)), b"tunnel!");
    assert_eq!(server.join().expect("server").ip().to_string(), SERVER, "the container sees the client");

    // Unasked, from outside, to the container's own address: nothing arrives.
    w.outside.ip(&["route", "add", "172.17.0.0/16", "dev", "tun0"]);
    assert!(!unsolicited_udp_arrives(&w, d, "c1", c1), "nothing came in unasked");
    assert!(d.count(None, "drop-unsolicited") >= 5);

    // The host's own connection through the tunnel is untouched.
    host_connection_is_echoed(&w, 8082);

    // The datapath carried it both ways, fragments included, and every packet for a container
    // got its Ethernet header.
    // Out: 2 pings, 3 fragments, at least 3 TCP segments, 2 datagrams; back the same and the
    // ICMP error, and at least 3 segments to the published port.
    let (out, back) = (d.count(Some("c1"), "redirect-nat"), d.count(None, "redirect-reverse-nat"));
    assert!(out >= 10 && back >= 13, "out {out}, back {back}");
    assert!(d.count(None, "pass-from-uplink") > 0);
    assert_eq!(d.count(None, "drop-no-ethernet"), 0);
    assert_eq!(d.count(None, "drop-nat-fragment"), 0);
    assert_eq!(nft_ruleset(d.host()), "", "no nftables rules in the host namespace");
    let stats: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "stats", "--json"]).ok()).expect("JSON");
    assert_eq!(stats["uplinks"], serde_json::json!([format!("tun0 ({UPLINK}, no link layer)")]), "{stats}");

    // A restarted daemon takes the tunnel's program over: replies still come in.
    w.d.stop();
    w.d.restart();
    assert!(ping(&w.d, "c1", SERVER), "ping after a restart");
}

/// A tunnel with a smaller MTU than the containers' (`WireGuard`'s 1420, Tailscale's 1280),
/// where the server far away offers a full-size MSS: the container's full-size segments (and
/// datagrams) must not be sent into it. As the kernel's forwarding does for Docker, netd leaves
/// what does not fit with "don't fragment" to the host's stack, which answers "fragmentation
/// needed": the container learns the path's MTU and the transfer goes on.
#[test]
fn a_tunnel_with_a_smaller_mtu_sends_fragmentation_needed_back_to_the_container() {
    const MTU: usize = 1400;
    const LEN: usize = 300_000;
    let w = tunnel_world_limited(&[], MTU);
    let d = &w.d;
    d.host().ip(&["link", "set", "tun0", "mtu", &MTU.to_string()]);
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");
    // The host's own traffic made the neighbour entry, as on any host that uses its VPN: new
    // flows find their next hop at once, and known ones look up no route.
    d.host().exec_ok("ping", &["-c", "1", "-W", "2", SERVER]);

    // A flow that carried small datagrams, then one that does not fit, with DF (Linux's
    // default for UDP): "fragmentation needed" comes back, and the next one goes in fragments.
    // The server answers with the length it got (short packets only).
    let sock = w.outside.run(|| UdpSocket::bind((SERVER, 5353)).expect("bind udp"));
    let server = std::thread::spawn(move || {
        sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut buf = vec![0u8; 65536];
        let mut peers = Vec::new();
        while peers.len() < 2 {
            let (n, peer) = uninterrupted(|| sock.recv_from(&mut buf)).expect("a datagram");
            sock.send_to(&u16::try_from(n).expect("short").to_be_bytes(), peer).expect("answer");
            peers.push(peer);
        }
        peers
    });
    let answered = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let s = UdpSocket::bind((c1, 0)).expect("bind");
        s.connect((SERVER, 5353)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 2];
        s.send(&[7u8; 100]).expect("send");
        let small = uninterrupted(|| s.recv(&mut buf)).is_ok_and(|n| n == 2 && u16::from_be_bytes(buf) == 100);
        // The first send after the error fails with EMSGSIZE (the socket heard it).
        small
            && (0..4).any(|_| {
                let _ = s.send(&[7u8; 1450]);
                uninterrupted(|| s.recv(&mut buf)).is_ok_and(|n| n == 2 && u16::from_be_bytes(buf) == 1450)
            })
    });
    assert!(answered.join().expect("udp client"), "a datagram arrived whole");
    assert!(server.join().expect("server").iter().all(|p| p.ip().to_string() == UPLINK));
    // TCP, to another address (the container learnt the path's MTU to the first one): a sink
    // outside reads everything (short packets back only). The container's segments are
    // full-size and GSO.
    let sink_addr = "198.18.0.3";
    w.outside.ip(&["addr", "add", sink_addr, "dev", "lo"]);
    let listener = w.outside.run(|| TcpListener::bind((sink_addr, 8090)).expect("bind"));
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut data = Vec::new();
        uninterrupted(|| s.read_to_end(&mut data)).expect("read");
        data.len()
    });
    let sent = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let mut s = TcpStream::connect_timeout(&at(sink_addr, 8090), DEADLINE).expect("connect");
        s.set_write_timeout(Some(DEADLINE)).expect("timeout");
        s.write_all(&vec![0x42; LEN]).is_ok()
    });
    assert!(sent.join().expect("client"), "written");
    assert_eq!(sink.join().expect("sink"), LEN, "everything arrived");

    assert!(d.count(None, "pass-to-stack") >= 2, "what did not fit went to the stack, both times");
    let wire = w.wire.as_ref().expect("a tunnel");
    assert_eq!(wire.too_long(), 0, "nothing longer than the tunnel's MTU was sent into it");
}

/// A datagram from container `sandbox` to `SERVER:port` of `len` bytes without DF (its socket
/// does no path MTU discovery, as DNS servers' do): whether the server's answer (the length it
/// got) comes back, within a few tries.
fn datagram_without_df_arrives(d: &TestDaemon, sandbox: &str, port: u16, len: usize) -> bool {
    let from = addr_of(d, sandbox, "bridge");
    spawn_in_path(&d.sandbox_netns(sandbox), move || {
        let s = UdpSocket::bind((from, 0)).expect("bind");
        let dont: libc::c_int = libc::IP_PMTUDISC_DONT;
        // SAFETY: a valid socket and option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw const dont).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("size"),
            )
        };
        assert_eq!(rc, 0, "IP_MTU_DISCOVER");
        s.connect((SERVER, port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut buf = [0u8; 2];
        (0..4).any(|_| {
            s.send(&vec![7u8; len]).expect("send");
            uninterrupted(|| s.recv(&mut buf)).is_ok_and(|n| n == 2 && usize::from(u16::from_be_bytes(buf)) == len)
        })
    })
    .join()
    .expect("udp client")
}

/// A packet without DF too big for the uplink leaves in fragments, as through Docker's path
/// (the kernel fragments what it forwards): netd translates it and hands it to the stack,
/// which cuts it (`pass-nat-to-stack`); the server gets the datagram whole, from the uplink's
/// address. A datagram the container cut itself, whose fragments are still too big, too.
/// Under a strict `rp_filter` the stack would refuse it translated: it is dropped and counted
/// (`drop-nat-frag-needed`), and goes again once `rp_filter` is loose.
#[test]
fn a_datagram_without_df_too_big_for_the_uplink_leaves_in_fragments_as_through_dockers_path() {
    const MTU: usize = 1400;
    let w = tunnel_world_limited(&[], MTU);
    let d = &w.d;
    d.host().ip(&["link", "set", "tun0", "mtu", &MTU.to_string()]);
    sandbox(d, "c1", "bridge");
    let sock = w.outside.run(|| UdpSocket::bind((SERVER, 5354)).expect("bind udp"));
    let server = std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut buf = vec![0u8; 65536];
        let mut peers = std::collections::BTreeSet::new();
        while let Ok((n, peer)) = uninterrupted(|| sock.recv_from(&mut buf)) {
            if n == 1 {
                break;
            }
            sock.send_to(&u16::try_from(n).expect("short").to_be_bytes(), peer).expect("answer");
            peers.insert(peer.ip().to_string());
        }
        peers
    });
    assert!(datagram_without_df_arrives(d, "c1", 5354, 1450), "one packet, too big for the tunnel");
    assert!(datagram_without_df_arrives(d, "c1", 5354, 3000), "in fragments the container cut, still too big");
    assert!(d.count(None, "pass-nat-to-stack") >= 3, "translated, to the stack");
    let wire = w.wire.as_ref().expect("a tunnel");
    assert_eq!(wire.too_long(), 0, "nothing longer than the tunnel's MTU was sent into it");

    // A strict rp_filter: the daemon notices within its 2-second pass.
    d.host().sysctl("net.ipv4.conf.all.rp_filter", "1");
    let deadline = Instant::now() + DEADLINE;
    while d.count(None, "drop-nat-frag-needed") == 0 {
        assert!(Instant::now() < deadline, "dropped, counted, under a strict rp_filter");
        let _ = datagram_without_df_arrives(d, "c1", 5354, 1450);
    }
    assert!(!datagram_without_df_arrives(d, "c1", 5354, 1450), "not while rp_filter is strict");
    d.host().sysctl("net.ipv4.conf.all.rp_filter", "2");
    let deadline = Instant::now() + DEADLINE;
    while !datagram_without_df_arrives(d, "c1", 5354, 1450) {
        assert!(Instant::now() < deadline, "goes again under a loose rp_filter");
    }
    let stop = w.outside.run(|| UdpSocket::bind((SERVER, 0)).expect("bind"));
    stop.send_to(&[0], (SERVER, 5354)).expect("stop the server");
    assert_eq!(server.join().expect("server").into_iter().collect::<Vec<_>>(), [UPLINK], "from the uplink's address");
}

/// `com.docker.network.bridge.trusted_host_interfaces` (Docker 28.2), the `WireGuard` mesh's
/// option: from the interfaces a network trusts, its containers' published ports are reached at
/// the containers' own addresses (direct routing); not from another interface, not another
/// port, not another network's containers.
#[test]
fn trusted_host_interfaces_reach_published_ports_at_the_containers_own_address() {
    let w = tunnel_world(&[]);
    let d = &w.d;
    let key = "com.docker.network.bridge.trusted_host_interfaces";
    // wg9 does not exist (yet): it is trusted once it does.
    d.netd(&["network", "create", "--subnet", "10.208.0.0/24", "-o", &format!("{key}=tun0:wg9"), "mesh"]).ok();
    d.netd(&["network", "create", "--subnet", "10.209.0.0/24", "other"]).ok();
    for (name, network, host_port) in [("t1", "mesh", "8080"), ("o1", "other", "8081")] {
        let publish = format!("{host_port}:7000");
        d.netd(&["run", "-d", "--name", name, "--network", network, "-p", &publish, "--", "sleep", "300"]).ok();
    }
    let (t1, o1) = (addr_of(d, "t1", "mesh"), addr_of(d, "o1", "other"));
    let inspect: serde_json::Value = serde_json::from_str(&d.netd(&["network", "inspect", "mesh"]).ok()).expect("JSON");
    assert_eq!(inspect[0]["Options"][key], "tun0:wg9");
    // A LAN beside the tunnel, told the way to the containers as the tunnel's far end is.
    let lan = NetNs::new("ndt-lan");
    let _lan0 = Link::veth(d.host(), "lan0", &lan, "eth0");
    d.host().ip(&["addr", "add", "10.77.0.1/24", "dev", "lan0"]);
    lan.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    lan.ip(&["route", "add", "10.208.0.0/15", "via", "10.77.0.1"]);
    w.outside.ip(&["route", "add", "10.208.0.0/15", "dev", "tun0"]);
    let start = Instant::now();
    while !d.log().contains("lan0 (10.77.0.1, into its peer)") {
        assert!(start.elapsed() < DEADLINE, "lan0 adopted: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let server = greet_once(listen_in(d, "t1", t1, 7000), b"trusted");
    let _unpublished = listen_in(d, "t1", t1, 7001);
    let _other = listen_in(d, "o1", o1, 7000);
    assert_eq!(&greeting_from_outside(&w, SocketAddr::from((t1, 7000))), b"trusted", "through the tunnel");
    assert_eq!(server.join().expect("server").ip().to_string(), SERVER, "the container sees the client");
    assert!(not_reached(&w, SocketAddr::from((t1, 7001))), "a port it does not publish");
    assert!(not_reached(&w, SocketAddr::from((o1, 7000))), "a network that does not trust the tunnel");
    let from_lan = lan.run(move || TcpStream::connect_timeout(&SocketAddr::from((t1, 7000)), Duration::from_secs(1)));
    assert!(from_lan.is_err(), "an interface the network does not trust");
    assert!(d.count(None, "drop-unsolicited") > 0);

    // Names that are no names: refused, nothing made.
    d.netd(&["network", "create", "-o", &format!("{key}=tun0:a/b"), "nope"])
        .fails_with("invalid com.docker.network.bridge.trusted_host_interfaces");
    assert!(!d.netd(&["network", "ls"]).ok().contains("nope"));
}

/// A LAN beside the default route, added while the daemon runs: `lan0` (10.77.0.1/24) in its
/// namespace, to a namespace at 10.77.0.2 (returned after the link, which goes first); once
/// the daemon has adopted lan0 as an uplink.
fn lan_beside(d: &TestDaemon) -> (Link, NetNs) {
    let lan = NetNs::new("ndt-lan");
    let lan0 = Link::veth(d.host(), "lan0", &lan, "eth0");
    d.host().ip(&["addr", "add", "10.77.0.1/24", "dev", "lan0"]);
    lan.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    lan.ip(&["link", "set", "lo", "up"]);
    wait_for_log(d, &format!("netd: uplinks: uplink0 ({UPLINK}, into its peer), lan0 (10.77.0.1, into its peer)"));
    (lan0, lan)
}

/// Waits (up to [`DEADLINE`]) for the daemon's log to hold `line`.
fn wait_for_log(d: &TestDaemon, line: &str) {
    let start = Instant::now();
    while !d.log().contains(line) {
        assert!(start.elapsed() < DEADLINE, "{line}: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_interface_with_an_address_is_an_uplink_as_in_dockers_masquerade_rule() {
    let w = world(&[]);
    let d = &w.d;
    // A second network beside the default route (a LAN on lan0), added while the daemon runs;
    // the LAN is told the way to the containers' network, as a router might be.
    let (_lan0, lan) = lan_beside(d);
    lan.ip(&["route", "add", "172.17.0.0/16", "via", "10.77.0.1"]);

    // A container reaches the LAN from lan0's address, as Docker's `! -o docker0` rule does,
    // and the default route's side from the uplink's.
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");
    let server = lan.run(|| TcpListener::bind("10.77.0.2:8080").expect("bind"));
    let greeter = greet_once(server, b"lan hi!");
    assert_eq!(&greeting_in(&d.sandbox_netns("c1"), at("10.77.0.2", 8080)), b"lan hi!");
    assert_eq!(greeter.join().expect("server").ip().to_string(), "10.77.0.1", "masqueraded with lan0's address");
    assert!(ping(d, "c1", "10.77.0.2"), "ping through lan0");
    let flows = d.netd(&["nat", "ls"]).ok();
    assert!(flows.lines().any(|l| l.contains(&format!("{c1}:")) && l.contains("10.77.0.1:")), "{flows}");

    // The LAN, with a route to it, still does not reach the container at its own address
    // (Docker 28's `nat` gateway mode, on every interface), while it listens.
    let _listener = listen_in(d, "c1", c1, 9090);
    let to = SocketAddr::from((c1, 9090));
    assert!(lan.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err()), "not from the LAN");
    assert!(d.count(None, "drop-unsolicited") > 0);
}

#[test]
fn a_routing_rule_that_selects_by_port_is_followed_by_each_new_flow() {
    let w = world(&[]);
    let d = &w.d;
    // A LAN on lan0 where the server's address answers too.
    let (_lan0, lan) = lan_beside(d);
    lan.ip(&["addr", "add", &format!("{SERVER}/32"), "dev", "eth0"]);
    let wait_for = |line: &str| wait_for_log(d, line);
    assert!(!d.log().contains("each new flow looks up its own route"), "the default rules select by address only");

    // TCP to the server's port 8081 goes by the LAN (table 100): the daemon stops new flows from
    // sharing routes.
    d.host().ip(&["route", "add", &format!("{SERVER}/32"), "via", "10.77.0.2", "dev", "lan0", "table", "100"]);
    let rule = ["rule", "add", "ipproto", "tcp", "dport", "8081", "table", "100", "pref", "100"];
    d.host().ip(&rule);
    wait_for("netd: masquerade: rule 100 selects by dport 8081, ipproto 6: each new flow looks up its own route");

    // One connection, then at once another to the same address: each goes its own way.
    sandbox(d, "c1", "bridge");
    let path = d.sandbox_netns("c1");
    let out = greet_once(w.outside.run(|| TcpListener::bind((SERVER, 8080)).expect("bind")), b"out hi!");
    let by_lan = greet_once(lan.run(|| TcpListener::bind((SERVER, 8081)).expect("bind")), b"lan hi!");
    assert_eq!(&greeting_in(&path, at(SERVER, 8080)), b"out hi!");
    assert_eq!(&greeting_in(&path, at(SERVER, 8081)), b"lan hi!", "the rule's way");
    assert_eq!(out.join().expect("server").ip().to_string(), UPLINK);
    assert_eq!(by_lan.join().expect("server").ip().to_string(), "10.77.0.1", "masqueraded with lan0's address");

    // Without the rule, new flows share routes again, and go the main table's way.
    let mut del = rule;
    del[1] = "del";
    d.host().ip(&del);
    wait_for("netd: masquerade: no routing rule selects by protocol or port: new flows share routes");
    let out = greet_once(w.outside.run(|| TcpListener::bind((SERVER, 8081)).expect("bind")), b"out hi!");
    assert_eq!(&greeting_in(&path, at(SERVER, 8081)), b"out hi!");
    assert_eq!(out.join().expect("server").ip().to_string(), UPLINK);
}

#[test]
fn an_interface_without_an_address_is_guarded_as_dockers_rules_guard_every_interface() {
    let w = world(&[]);
    lan_is_guarded(&w, None, false, "lan0 (guarded: no IPv4 address, into its peer)");
}

#[test]
fn an_interface_that_uplink_leaves_out_is_guarded_too() {
    let w = world(&["--uplink", "uplink0"]);
    lan_is_guarded(&w, Some("10.77.0.1/24"), false, "lan0 (guarded: 10.77.0.1, not an --uplink, into its peer)");
}

#[test]
fn a_bridge_port_is_left_to_its_bridge_which_is_guarded() {
    let w = world(&[]);
    lan_is_guarded(&w, None, true, "br9 (guarded: no IPv4 address)");
    assert!(!w.d.log().contains("lan0 ("), "the port is its bridge's: {}", w.d.log());
}

/// A host with many interfaces (VLANs, tunnels, another runtime's routed veths): all of them
/// are guarded, past the 64 the datapath held before, and the last one drops what its side
/// sends a container unasked.
#[test]
fn a_hundred_interfaces_are_all_guarded() {
    const N: usize = 100;
    let w = world(&[]);
    let d = &w.d;
    let far = NetNs::new("ndt-far");
    let _links: Vec<Link> = (0..N).map(|i| Link::veth(d.host(), &format!("g{i}"), &far, &format!("p{i}"))).collect();
    let last = format!("g{}", N - 1);
    let start = Instant::now();
    while !d.log().contains(&format!("{last} (guarded: no IPv4 address, into its peer)")) {
        assert!(start.elapsed() < DEADLINE, "all guarded within the next pass: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!d.log().contains("left out"), "{}", d.log());
    let stats = d.netd(&["nat", "stats"]).ok();
    assert_eq!(stats.matches("(guarded: no IPv4 address").count(), N, "{stats}");

    // The last one's side routes the containers' network through it.
    let (dev, peer) = (last.as_str(), format!("p{}", N - 1));
    d.host().ip(&["link", "set", dev, "address", "02:00:00:78:00:01"]);
    far.ip(&["link", "set", &peer, "address", "02:00:00:78:00:02"]);
    d.host().ip(&["route", "add", "10.78.0.0/24", "dev", dev]);
    d.host().ip(&["neigh", "replace", "10.78.0.2", "lladdr", "02:00:00:78:00:02", "dev", dev, "nud", "permanent"]);
    far.ip(&["addr", "add", "10.78.0.2/24", "dev", &peer]);
    far.ip(&["link", "set", "lo", "up"]);
    far.ip(&["neigh", "replace", "10.78.0.1", "lladdr", "02:00:00:78:00:01", "dev", &peer, "nud", "permanent"]);
    far.ip(&["route", "add", "172.17.0.0/16", "via", "10.78.0.1", "dev", &peer, "onlink"]);
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");
    assert!(!unsolicited_udp_arrives_from(&far, "10.78.0.2", d, "c1", c1), "UDP from the hundredth");
    assert!(d.count(None, "drop-unsolicited") > 0);
}

/// A LAN beside the default route, on `lan0` (with address `lan_addr`, else none; `bridged`:
/// a port of bridge `br9`, which has the address), that routes the containers' network through
/// the host, and the host the LAN through it (static neighbours: without an address, nothing
/// answers ARP). It is no uplink, so it must be guarded (`described` in the log): the LAN does
/// not reach a container at its own address, by TCP, UDP or ping, while a container's own
/// connection to the LAN leaves as it did before netd guarded it (with its own address) and
/// its answers come back, and a published port is reached with the client's address.
fn lan_is_guarded(w: &World, lan_addr: Option<&str>, bridged: bool, described: &str) {
    let d = &w.d;
    let lan = NetNs::new("ndt-lan");
    // A port from the start: never guarded on its own for a pass.
    let (_links, dev) = if bridged {
        let bridge = Link::bridge(d.host(), "br9");
        (vec![Link::veth_with(d.host(), "lan0", &["master", "br9"], &lan, "eth0"), bridge], "br9")
    } else {
        (vec![Link::veth(d.host(), "lan0", &lan, "eth0")], "lan0")
    };
    d.host().ip(&["link", "set", dev, "address", "02:00:00:77:00:01"]);
    lan.ip(&["link", "set", "eth0", "address", "02:00:00:77:00:02"]);
    match lan_addr {
        Some(a) => d.host().ip(&["addr", "add", a, "dev", dev]),
        None => d.host().ip(&["route", "add", "10.77.0.0/24", "dev", dev]),
    };
    d.host().ip(&["neigh", "replace", "10.77.0.2", "lladdr", "02:00:00:77:00:02", "dev", dev, "nud", "permanent"]);
    lan.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]);
    lan.ip(&["link", "set", "lo", "up"]);
    lan.ip(&["neigh", "replace", "10.77.0.1", "lladdr", "02:00:00:77:00:01", "dev", "eth0", "nud", "permanent"]);
    lan.ip(&["route", "add", "172.17.0.0/16", "via", "10.77.0.1", "dev", "eth0", "onlink"]);
    let start = Instant::now();
    while !d.log().contains(described) {
        assert!(start.elapsed() < DEADLINE, "{dev} guarded within the next pass: {}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    sandbox(d, "c1", "bridge");
    let c1 = addr_of(d, "c1", "bridge");

    // Unsolicited, at the container's own address: nothing arrives, and it is counted.
    let _listener = listen_in(d, "c1", c1, 9090);
    let to = SocketAddr::from((c1, 9090));
    assert!(lan.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err()), "TCP from the LAN");
    assert!(!unsolicited_udp_arrives_from(&lan, "10.77.0.2", d, "c1", c1), "UDP from the LAN");
    let pinged = lan.run(move || {
        Command::new("ping")
            .args(["-q", "-c", "1", "-W", "1", &c1.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("ping")
            .success()
    });
    assert!(!pinged, "ping from the LAN");
    assert!(d.count(None, "drop-unsolicited") >= 7, "{}", d.log());

    // The container's own connection to the LAN: tracked as it leaves untranslated, so the
    // answers come in.
    let server = lan.run(|| TcpListener::bind("10.77.0.2:8080").expect("bind"));
    let greeter = greet_once(server, b"lan hi!");
    assert_eq!(&greeting_in(&d.sandbox_netns("c1"), at("10.77.0.2", 8080)), b"lan hi!");
    assert_eq!(greeter.join().expect("server").ip(), c1, "leaves with its own address, as before");
    assert!(ping(d, "c1", "10.77.0.2"), "ping to the LAN");
    let flows = d.netd(&["nat", "ls"]).ok();
    assert!(flows.lines().any(|l| l.contains(&format!("{c1}:")) && l.contains("10.77.0.2:8080")), "{flows}");

    // A published port, at the host's address on the LAN's side (else the uplink's): the
    // datapath takes the connection to the container, which sees the LAN's own address (the
    // relay would show it the gateway's).
    d.netd(&["run", "-d", "--name", "web", "-p", "8080:80", "--", "sleep", "300"]).ok();
    let server = peer_server(&d.sandbox_netns("web"), 80);
    let host_addr = if lan_addr.is_some() { "10.77.0.1" } else { UPLINK };
    if lan_addr.is_none() {
        lan.ip(&["route", "add", UPLINK, "via", "10.77.0.1", "dev", "eth0", "onlink"]);
    }
    let seen = lan.run(|| ask(at(host_addr, 8080))).expect("from the LAN");
    assert!(seen.starts_with("10.77.0.2:"), "the container saw {seen}");
    lan.run(|| stop_peer_server(at(host_addr, 8080)));
    assert_eq!(server.join().expect("server"), 1);
}

#[test]
fn flows_survive_a_daemon_restart_and_go_with_their_container() {
    let mut w = world(&[]);
    w.d.netd(&["network", "create", "--subnet", "10.201.0.0/24", "n1"]).ok();
    sandbox(&w.d, "c1", "n1");
    let c1 = addr_of(&w.d, "c1", "n1");
    // A server that echoes every line of one connection.
    let listener = w.outside.run(|| TcpListener::bind((SERVER, 8443)).expect("bind"));
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        // The restart happens between two messages: under a full test run it may take a few
        // seconds.
        s.set_read_timeout(Some(3 * DEADLINE)).expect("timeout");
        let mut buf = [0u8; 16];
        let mut echoed = 0;
        // Why the connection ended, for the assertion below.
        let ended = loop {
            // Interrupted by a signal, a read with a timeout is not restarted (signal(7)): that
            // once ended the connection here, mid-restart.
            match uninterrupted(|| s.read(&mut buf)) {
                Ok(0) => break "the client closed".to_owned(),
                Ok(n) => {
                    s.write_all(&buf[..n]).expect("echo");
                    echoed += n;
                }
                Err(e) => break format!("read: {e}"),
            }
        };
        (peer, echoed, ended)
    });
    let (to_client, from_test) = std::sync::mpsc::channel::<()>();
    let client = spawn_in_path(&w.d.sandbox_netns("c1"), move || {
        let mut s = socket2_connect(SocketAddrV4::new(c1, 0), 8443);
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut exchange = |msg: &[u8]| {
            let name = String::from_utf8_lossy(msg);
            s.write_all(msg).unwrap_or_else(|e| panic!("write {name:?}: {e}"));
            let mut buf = vec![0u8; msg.len()];
            s.read_exact(&mut buf).unwrap_or_else(|e| panic!("echo of {name:?}: {e}"));
            assert_eq!(buf, msg);
        };
        exchange(b"before");
        from_test.recv().expect("go on");
        exchange(b"after");
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = w.d.netd(&["nat", "ls", "--json"]).ok();
    assert!(before.contains("established"), "{before}");
    let restart = Instant::now();
    w.d.stop();
    w.d.restart();
    let restart = restart.elapsed();
    to_client.send(()).expect("client");
    let survived = client.join();
    let (peer, echoed, ended) = server.join().expect("server");
    assert!(
        survived.is_ok(),
        "the connection did not survive a restart of {restart:?}: the server's side ended: {ended}"
    );
    assert_eq!((peer.ip().to_string().as_str(), echoed), (UPLINK, b"beforeafter".len()));

    // A removed container's translations go with it.
    let before_rm = w.d.netd(&["nat", "ls", "--json"]).ok();
    assert!(before_rm.contains(&c1.to_string()), "{before_rm}");
    w.d.netd(&["rm", "-f", "c1"]).ok();
    let after_rm = w.d.netd(&["nat", "ls", "--json"]).ok();
    assert!(!after_rm.contains(&c1.to_string()), "{after_rm}");
}

#[test]
fn an_uplink_created_again_is_adopted() {
    uplink_created_again(&[], |host| {
        netd_tests::bpf::tcx_ingress_programs(host, "uplink0").iter().any(|p| p.starts_with("netd_from_upl"))
    });
}

#[test]
fn an_uplink_created_again_is_adopted_with_clsact_filters() {
    uplink_created_again(&["--tc-attach", "clsact"], |host| {
        netd_tests::bpf::clsact_filters(host, "uplink0", "ingress").iter().any(|f| f.contains("netd_from_uplink"))
    });
}

/// Without TCX, the tunnel's program is a `clsact` filter, as the Ethernet uplinks' are, and
/// the right one: replies come in through it.
#[test]
fn a_tunnel_uplink_gets_its_program_as_a_clsact_filter_too() {
    let w = tunnel_world(&["--tc-attach", "clsact"]);
    let d = &w.d;
    let filters = netd_tests::bpf::clsact_filters(d.host(), "tun0", "ingress");
    assert!(filters.iter().any(|f| f.contains("netd_from_l3_up")), "{filters:?}");
    sandbox(d, "c1", "bridge");
    assert!(ping(d, "c1", SERVER), "ping through the tunnel");
    assert!(d.count(None, "redirect-reverse-nat") >= 2);
}

fn uplink_created_again(flags: &[&str], attached: impl Fn(&NetNs) -> bool) {
    let w = world(flags);
    let d = &w.d;
    assert!(attached(d.host()));
    sandbox(d, "c1", "bridge");
    assert!(ping(d, "c1", SERVER));
    // The uplink goes away and comes back under the same name (a NIC driver reload, a VM's
    // interface replaced): the daemon follows within its 2 s sync.
    d.host().ip(&["link", "del", "uplink0"]);
    d.host().ip(&["link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", w.outside.name()]);
    d.host().ip(&["addr", "add", &format!("{UPLINK}/24"), "dev", "uplink0"]);
    d.host().ip(&["link", "set", "uplink0", "up"]);
    w.outside.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "eth0"]);
    w.outside.ip(&["link", "set", "eth0", "up"]);
    d.host().ip(&["route", "add", "default", "via", SERVER]);
    let deadline = Instant::now() + DEADLINE;
    while !attached(d.host()) {
        assert!(Instant::now() < deadline, "netd_from_uplink never came back on the new uplink0");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ping(d, "c1", SERVER), "masquerade works through the new uplink");
}

#[test]
fn prometheus_metrics_on_the_api_socket_and_on_metrics_addr() {
    let w = world(&["--metrics-addr", "127.0.0.1:9323"]);
    let d = &w.d;
    assert!(d.log().contains("netd: metrics on http://127.0.0.1:9323/metrics"));
    sandbox(d, "c1", "bridge");
    assert!(ping(d, "c1", SERVER));

    // On TCP (in the daemon's namespace): the metrics, and nothing else.
    let get = |path: &'static str| {
        d.host().run(move || {
            let s = TcpStream::connect("127.0.0.1:9323").expect("connect to --metrics-addr");
            s.set_read_timeout(Some(DEADLINE)).expect("timeout");
            http_get(s, path)
        })
    };
    let (status, text) = get("/metrics");
    assert!(status.contains("200"), "{status}");
    assert!(text.contains("# TYPE netd_datapath_packets_total counter"), "{text}");
    assert!(
        sample(&text, r#"netd_datapath_packets_total{reason="redirect-nat",verdict="forward"}"#) >= Some(2),
        "{text}"
    );
    assert!(
        sample(&text, r#"netd_datapath_packets_total{reason="redirect-reverse-nat",verdict="forward"}"#) >= Some(2)
    );
    assert!(
        sample(
            &text,
            r#"netd_endpoint_packets_total{sandbox="c1",network="bridge",interface="eth0",reason="redirect-nat"}"#
        ) >= Some(2),
        "{text}"
    );
    assert_eq!(sample(&text, r#"netd_nat_flows{state="icmp replied"}"#), Some(1), "{text}");
    assert_eq!(sample(&text, "netd_nat_flows_max"), Some(u64::from(netd_common::NAT_DEFAULT_FLOWS)));
    assert_eq!(sample(&text, r#"netd_nat_refused_total{cause="drop-nat-table-full"}"#), Some(0));
    assert_eq!(sample(&text, "netd_sandboxes"), Some(1));
    assert_eq!(sample(&text, "netd_networks"), Some(3));
    let (status, _) = get("/networks");
    assert!(status.contains("404"), "the API is not on TCP: {status}");

    // The same on the API socket.
    let socket = std::os::unix::net::UnixStream::connect(d.socket().trim_start_matches("unix://")).expect("socket");
    socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let (status, text) = http_get(socket, "/metrics");
    assert!(status.contains("200") && text.contains("netd_nat_flows_max"), "{status}");

    // A taken address is refused before anything changes.
    let host = NetNs::new("ndt-host");
    let blocker = host.run(|| std::net::TcpListener::bind("127.0.0.1:9323").expect("bind"));
    let dir = std::path::PathBuf::from("/tmp").join(netd_tests::netns::unique_name("netd-test-"));
    let bpffs = std::path::PathBuf::from("/sys/fs/bpf").join(netd_tests::netns::unique_name("netd-test-"));
    let out = host.run(|| {
        std::process::Command::new(netd_tests::daemon::netd_binary())
            .args(["daemon", "--metrics-addr", "127.0.0.1:9323", "--state-dir"])
            .arg(dir.join("state"))
            .arg("--exec-root")
            .arg(dir.join("run"))
            .arg("--bpffs")
            .arg(&bpffs)
            .args(["-H", &format!("unix://{}/run/netd.sock", dir.display())])
            .output()
            .expect("netd daemon")
    });
    drop(blocker);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("binding --metrics-addr 127.0.0.1:9323"));
    assert!(!dir.exists() && !bpffs.exists(), "nothing was created");
}

/// Sends `n` datagrams from sandbox `from` to the server's `port` and waits for the echo server
/// to have answered them all; returns (uplink0's transmitted packets, the outside's eth0's
/// received packets) while they went.
fn udp_burst(w: &World, from: &str, port: u16, n: usize) -> (u64, u64) {
    let d = &w.d;
    let rx = |w: &World| {
        let out = w.outside.ip(&["-j", "-s", "link", "show", "dev", "eth0"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    };
    let (tx0, rx0) = (d.tx_packets("uplink0"), rx(w));
    let server = udp_echo_server(&w.outside, port, n);
    spawn_in_path(&d.sandbox_netns(from), move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
        let mut buf = [0u8; 64];
        for i in 0..n {
            s.send_to(format!("{i}").as_bytes(), (SERVER, port)).expect("send");
            let _ = uninterrupted(|| s.recv_from(&mut buf));
        }
    })
    .join()
    .expect("client");
    assert_eq!(server.join().expect("server").len(), n, "every datagram reached the server");
    (d.tx_packets("uplink0") - tx0, rx(w) - rx0)
}

#[test]
fn masquerade_through_a_veth_uplink_goes_straight_into_its_peer() {
    let w = world(&[]);
    sandbox(&w.d, "c1", "bridge");
    assert!(ping(&w.d, "c1", SERVER), "the next hop's MAC is known from here on");
    let (uplink_tx, peer_rx) = udp_burst(&w, "c1", 5400, 50);
    assert!(peer_rx >= 50, "the outside received them: {peer_rx}");
    assert!(uplink_tx < 5, "not sent out of the uplink: {uplink_tx} packets were");
}

#[test]
fn uplink_fast_path_off_sends_masquerade_out_of_the_uplink() {
    let w = world(&["--uplink-fast-path=false"]);
    assert!(w.d.log().contains(&format!("netd: uplinks: uplink0 ({UPLINK})\n")), "{}", w.d.log());
    sandbox(&w.d, "c1", "bridge");
    assert!(ping(&w.d, "c1", SERVER));
    let (uplink_tx, peer_rx) = udp_burst(&w, "c1", 5400, 50);
    assert!(peer_rx >= 50 && uplink_tx >= 50, "out of the uplink: {uplink_tx} sent, {peer_rx} received");
}

/// Whether the daemon's pinned `NETD_NAT_CONFIG` asks for new flows' reports
/// (`NatConfig::EVENTS`; its other flag says whether the stack fragments, see
/// `a_datagram_without_df_too_big_for_the_uplink_leaves_in_fragments_as_through_dockers_path`).
fn nat_events_on(d: &TestDaemon) -> bool {
    let data = aya::maps::MapData::from_pin(d.bpffs().join("maps/NETD_NAT_CONFIG")).expect("pinned NAT config");
    let config = aya::maps::Array::<_, netd_common::NatConfig>::try_from(aya::maps::Map::Array(data)).expect("array");
    config.get(&0, 0).expect("config").flags & netd_common::NatConfig::EVENTS != 0
}

#[test]
fn netd_monitor_shows_flows_come_and_go_as_conntrack_events_do() {
    let w = world(&[]);
    let d = &w.d;
    sandbox(d, "c1", "bridge");
    sandbox(d, "c2", "bridge");
    let c1 = addr_of(d, "c1", "bridge");
    assert!(!nat_events_on(d), "nobody asked: new flows are not reported");
    let json = |line: String| -> serde_json::Value { serde_json::from_str(&line).expect("a JSON event") };

    let nat = d.netd_streaming(&["monitor", "--type", "nat", "--json", "--sandbox", "c1"]);
    let drops = d.netd_streaming(&["monitor", "--type", "drop", "--json"]);
    for m in [&nat, &drops] {
        assert!(m.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    }
    assert!(nat_events_on(d));

    // c2's flow is not about c1; c1's is, with what the server sees.
    let server = tcp_echo_server(&w.outside, 7300, 2);
    let c2 = addr_of(d, "c2", "bridge");
    assert_eq!(
        tcp_exchange(&d.sandbox_netns("c2"), SocketAddrV4::new(c2, 41000), 7300, b"c2").join().expect("c2"),
        b"c2"
    );
    assert_eq!(
        tcp_exchange(&d.sandbox_netns("c1"), SocketAddrV4::new(c1, 41001), 7300, b"c1").join().expect("c1"),
        b"c1"
    );
    let peers = server.join().expect("server");
    let outside_port = peers[1].port();
    let e = json(nat.line(DEADLINE).expect("c1's new flow"));
    assert_eq!((e["kind"].as_str(), e["reason"].as_str()), (Some("nat"), Some("nat-new")), "{e}");
    assert_eq!(e["interface"], "uplink0");
    assert_eq!(e["endpoint"]["sandbox"], "c1");
    assert_eq!(e["protocol"], "tcp");
    assert_eq!(e["src"], format!("{c1}:41001"));
    assert_eq!(e["dst"], format!("{SERVER}:7300"));
    assert_eq!(e["outside"], format!("{UPLINK}:{outside_port}"), "what the server saw");

    // c1 goes: its flow is removed, and said so.
    d.netd(&["rm", "-f", "c1"]).ok();
    let e = json(nat.line(DEADLINE).expect("c1's flow removed"));
    assert_eq!((e["reason"].as_str(), e["src"].as_str()), (Some("nat-removed"), Some(format!("{c1}:41001").as_str())));
    assert_eq!(e["outside"], format!("{UPLINK}:{outside_port}"));
    // A drop monitor saw none of it.
    assert!(drops.line(Duration::from_millis(200)).is_none());

    // Once the NAT monitor is gone, the datapath stops reporting (within the daemon's 2 s tick).
    drop(nat);
    let deadline = Instant::now() + DEADLINE;
    while nat_events_on(d) {
        assert!(Instant::now() < deadline, "reports still on with no NAT subscriber");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The flags of the daemon's pinned endpoint entry for `ip`, and of uplink0's entry.
fn trace_marks(d: &TestDaemon, ip: Ipv4Addr) -> (bool, bool) {
    use aya::maps::{HashMap, Map, MapData};
    let pinned = |name: &str| MapData::from_pin(d.bpffs().join("maps").join(name)).expect("pinned map");
    let endpoints =
        HashMap::<_, u32, netd_common::EndpointInfo>::try_from(Map::HashMap(pinned("NETD_ENDPOINTS_BY_IP")))
            .expect("endpoints");
    let ep = endpoints.get(&u32::from_ne_bytes(ip.octets()), 0).expect("the endpoint");
    let uplinks =
        HashMap::<_, u32, netd_common::UplinkInfo>::try_from(Map::HashMap(pinned("NETD_UPLINKS"))).expect("uplinks");
    let uplink = uplinks.iter().next().expect("one uplink").expect("read").1;
    (ep.flags & netd_common::EndpointInfo::TRACE != 0, uplink.flags & netd_common::UplinkInfo::TRACE != 0)
}

#[test]
fn netd_monitor_traces_every_packet_of_the_followed_sandbox_and_no_other() {
    let mut w = world(&[]);
    let d = &w.d;
    sandbox(d, "t1", "bridge");
    sandbox(d, "t2", "bridge");
    let (t1, t2) = (addr_of(d, "t1", "bridge"), addr_of(d, "t2", "bridge"));
    let (t1_veth, t2_veth) = (d.host_veth("t1", "bridge"), d.host_veth("t2", "bridge"));
    // Neighbours resolved first, so that the lines below are the pings' and the datagram's.
    assert!(ping(d, "t1", &t2.to_string()) && ping(d, "t1", SERVER) && ping(d, "t2", "172.17.0.1"));
    assert_eq!(trace_marks(d, t1), (false, false), "nobody traces");
    d.netd(&["monitor", "--type", "trace,bogus"])
        .fails_with("invalid event type \"bogus\": expected drop, nat, trace or dns");

    let t1_trace = d.netd_streaming(&["monitor", "--type", "trace", "--json", "--sandbox", "t1"]);
    assert!(t1_trace.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    assert_eq!(trace_marks(d, t1), (true, true), "t1 followed, and replies from the uplink looked at");
    assert_eq!(trace_marks(d, t2), (false, true), "t2 is not followed");
    let next = |m: &netd_tests::daemon::Streaming| loop {
        let e: serde_json::Value = serde_json::from_str(&m.line(DEADLINE).expect("an event")).expect("a JSON event");
        if e["class"] != "arp" {
            return e;
        }
    };

    // t2 talks to its gateway: not about t1, not reported. Then t1 pings t2: the request, and
    // the reply t1 is delivered, each with where it went.
    assert_eq!(d.netd(&["exec", "t2", "--", "ping", "-c", "1", "-W", "1", "172.17.0.1"]).code, 0);
    assert_eq!(d.netd(&["exec", "t1", "--", "ping", "-c", "1", "-W", "1", &t2.to_string()]).code, 0);
    let e = next(&t1_trace);
    assert_eq!(
        (e["kind"].as_str(), e["reason"].as_str(), e["code"].as_u64()),
        (Some("trace"), Some("redirect-peer"), Some(4)),
        "{e}"
    );
    assert_eq!((e["interface"].as_str(), e["endpoint"]["sandbox"].as_str()), (Some(t1_veth.as_str()), Some("t1")));
    assert_eq!((e["src"].as_str(), e["dst"].as_str()), (Some(t1.to_string().as_str()), Some(t2.to_string().as_str())));
    assert_eq!((e["to"].as_str(), e["to_endpoint"]["sandbox"].as_str()), (Some(t2_veth.as_str()), Some("t2")), "{e}");
    let e = next(&t1_trace);
    assert_eq!((e["reason"].as_str(), e["interface"].as_str()), (Some("redirect-peer"), Some(t2_veth.as_str())), "{e}");
    assert_eq!((e["src"].as_str(), e["to"].as_str()), (Some(t2.to_string().as_str()), Some(t1_veth.as_str())));

    // t1's datagram to the outside, masqueraded out, and its answer translated back in.
    udp_burst(&w, "t1", 5500, 1);
    let e = next(&t1_trace);
    assert_eq!((e["reason"].as_str(), e["to"].as_str()), (Some("redirect-nat"), Some("uplink0")), "{e}");
    assert_eq!(e["dst"], format!("{SERVER}:5500"));
    let e = next(&t1_trace);
    assert_eq!((e["reason"].as_str(), e["interface"].as_str()), (Some("redirect-reverse-nat"), Some("uplink0")), "{e}");
    assert_eq!(
        (e["src"].as_str(), e["to_endpoint"]["sandbox"].as_str()),
        (Some(format!("{SERVER}:5500").as_str()), Some("t1"))
    );
    while let Some(line) = t1_trace.line(Duration::from_millis(300)) {
        assert!(line.contains(r#""class":"arp""#), "nothing else: {line}");
    }

    // Following every sandbox marks one made meanwhile as it is made; as text, each line says
    // where the packet went.
    let all = d.netd_streaming(&["monitor", "--type", "trace"]);
    assert!(all.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    sandbox(d, "t3", "bridge");
    let t3 = addr_of(d, "t3", "bridge");
    assert!(trace_marks(d, t3).0, "t3 is followed from its first packet");
    assert!(trace_marks(d, t2).0);
    assert_eq!(d.netd(&["exec", "t3", "--", "ping", "-c", "1", "-W", "1", &t2.to_string()]).code, 0);
    let t3_veth = d.host_veth("t3", "bridge");
    let line = loop {
        let l = all.line(DEADLINE).expect("a line");
        if l.contains("icmp") {
            break l;
        }
    };
    assert!(
        line.contains(&format!(
            "redirect-peer          {t3_veth} (t3 {t3} on bridge): icmp {t3} -> {t2}, 98 bytes, to {t2_veth} (t2 {t2} on bridge)"
        )),
        "{line}"
    );

    // Once the monitors go, the marks do too (the daemon's 2 s tick).
    drop((t1_trace, all));
    let deadline = Instant::now() + DEADLINE;
    while [t1, t2, t3].iter().any(|ip| trace_marks(d, *ip) != (false, false)) {
        assert!(Instant::now() < deadline, "still traced with nobody following");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ping(d, "t1", &t2.to_string()), "and the verdicts never changed");

    // A daemon killed while tracing leaves its marks behind; the next one clears them as it
    // starts, before anyone subscribes.
    let again = d.netd_streaming(&["monitor", "--type", "trace"]);
    assert!(again.line(DEADLINE).is_some_and(|l| l.contains("Listening")));
    assert_eq!(trace_marks(d, t1), (true, true));
    w.d.kill9();
    drop(again);
    w.d.restart();
    for ip in [t1, t2, t3] {
        assert_eq!(trace_marks(&w.d, ip), (false, false), "{ip} after a restart");
    }
}

/// One query from sandbox `name` (address `from`) to the server's UDP port 5353: whether an
/// answer came back within 2 s.
fn udp_query(d: &TestDaemon, name: &str, from: Ipv4Addr) -> bool {
    spawn_in_path(&d.sandbox_netns(name), move || {
        let s = UdpSocket::bind((from, 0)).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        s.send_to(b"query", (SERVER, 5353)).expect("send");
        let mut buf = [0u8; 64];
        uninterrupted(|| s.recv_from(&mut buf)).is_ok()
    })
    .join()
    .expect("udp client")
}

/// A TCP exchange with the server from sandbox `name` (any port): what came back.
fn tcp_from(d: &TestDaemon, name: &str, network: &str, port: u16) -> Vec<u8> {
    let local = SocketAddrV4::new(addr_of(d, name, network), 0);
    tcp_exchange(&d.sandbox_netns(name), local, port, b"hello").join().expect("client")
}

#[test]
fn a_network_with_host_ipv4_reaches_the_outside_from_that_address_as_dockers_snat() {
    const OWN: &str = "198.18.0.50";
    let mut w = world(&[]);
    w.d.host().ip(&["addr", "add", &format!("{OWN}/24"), "dev", "uplink0"]);
    let d = &w.d;
    let option = format!("com.docker.network.host_ipv4={OWN}");
    d.netd(&["network", "create", "--subnet", "10.204.0.0/24", "-o", &option, "own"]).ok();
    d.netd(&["network", "create", "--subnet", "10.201.0.0/24", "n1"]).ok();
    sandbox(d, "o1", "own");
    sandbox(d, "c1", "n1");
    let inspect: serde_json::Value = serde_json::from_str(&d.netd(&["network", "inspect", "own"]).ok()).expect("JSON");
    assert_eq!(inspect[0]["Options"]["com.docker.network.host_ipv4"], OWN, "{inspect}");

    // TCP, UDP and ping from the network leave from its address; the other network's from
    // the uplink's.
    let server = tcp_echo_server(&w.outside, 8080, 2);
    assert_eq!(tcp_from(d, "o1", "own", 8080), b"hello");
    assert_eq!(tcp_from(d, "c1", "n1", 8080), b"hello");
    let peers: Vec<String> = server.join().expect("server").iter().map(|p| p.ip().to_string()).collect();
    assert_eq!(peers, [OWN, UPLINK], "the server sees each network's address");
    let server = udp_echo_server(&w.outside, 5353, 1);
    let o1 = addr_of(d, "o1", "own");
    assert!(udp_query(d, "o1", o1), "the UDP answer came back");
    assert_eq!(server.join().expect("server").iter().map(|p| p.ip().to_string()).collect::<Vec<_>>(), [OWN]);
    assert!(ping(d, "o1", SERVER), "ping from the network's address");
    let flows: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "ls", "--json"]).ok()).expect("JSON");
    for proto in ["tcp", "udp", "icmp"] {
        let listed = flows
            .as_array()
            .expect("list")
            .iter()
            .any(|f| f["protocol"] == proto && f["inside"][0] == o1.to_string() && f["outside"][0] == OWN);
        assert!(listed, "{proto} flow of o1 from {OWN}: {flows}");
    }

    // The host's own connection from that address is its own, untouched.
    let server = tcp_echo_server(&w.outside, 8081, 1);
    let echoed = d.host().run(|| {
        let mut s = socket2_connect(SocketAddrV4::new(OWN.parse().expect("addr"), 0), 8081);
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        s.write_all(b"host").expect("write");
        let mut buf = [0u8; 4];
        uninterrupted(|| s.read_exact(&mut buf)).expect("read");
        buf
    });
    assert_eq!(&echoed, b"host");
    assert_eq!(server.join().expect("server").iter().map(|p| p.ip().to_string()).collect::<Vec<_>>(), [OWN]);

    // Bad addresses are refused with Docker's wording, and nothing is made.
    let bridges = || {
        String::from_utf8_lossy(&d.host().exec_ok("ip", &["-br", "link", "show", "type", "bridge"]).stdout).into_owned()
    };
    let before = bridges();
    for (bad, message) in [
        ("nope", "failed to parse com.docker.network.host_ipv4 value: nope (nil ip)"),
        ("0.0.0.0", "must be a unicast address"),
    ] {
        let option = format!("com.docker.network.host_ipv4={bad}");
        d.netd(&["network", "create", "-o", &option, "refused"]).fails_with(message);
    }
    // (Not "bad": ids are hex, and one may hold it.)
    assert!(!d.netd(&["network", "ls"]).ok().contains("refused"));
    assert_eq!(bridges(), before, "no bridge made");
    // The stock docker CLI sets and shows it the same way.
    if let Some(out) = d.docker(&["network", "create", "--subnet", "10.205.0.0/24", "-o", &option, "viadocker"]) {
        out.ok();
        let format = "{{index .Options \"com.docker.network.host_ipv4\"}}";
        let shown = d.docker(&["network", "inspect", "-f", format, "viadocker"]).expect("docker").ok();
        assert_eq!(shown.trim(), OWN);
        let refused =
            d.docker(&["network", "create", "-o", "com.docker.network.host_ipv4=nope", "bad"]).expect("docker");
        assert!(refused.code != 0 && refused.stderr.contains("(nil ip)"), "{}", refused.stderr);
    }

    // After a restart the network still leaves from its address.
    w.d.stop();
    w.d.restart();
    let d = &w.d;
    let server = tcp_echo_server(&w.outside, 8082, 1);
    assert_eq!(tcp_from(d, "o1", "own", 8082), b"hello");
    assert_eq!(server.join().expect("server").iter().map(|p| p.ip().to_string()).collect::<Vec<_>>(), [OWN]);
    assert_eq!(nft_ruleset(d.host()), "", "no nftables rules in the host namespace");
}

/// Connects from namespace `ns` to `to` and reads the 7-byte greeting its server sends.
fn greeting_from(ns: &NetNs, to: SocketAddr) -> [u8; 7] {
    greeting_in(&format!("/run/netns/{}", ns.name()), to)
}

/// [`greeting_from`] the namespace at `path` (a sandbox's).
fn greeting_in(path: &str, to: SocketAddr) -> [u8; 7] {
    spawn_in_path(path, move || {
        let mut s = TcpStream::connect_timeout(&to, DEADLINE).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut buf = [0u8; 7];
        uninterrupted(|| s.read_exact(&mut buf)).expect("read");
        buf
    })
    .join()
    .expect("client")
}

/// [`greeting_from`] the outside namespace.
fn greeting_from_outside(w: &World, to: SocketAddr) -> [u8; 7] {
    greeting_from(&w.outside, to)
}

/// A TCP listener on `addr:port` inside sandbox `name`.
fn listen_in(d: &TestDaemon, name: &str, addr: Ipv4Addr, port: u16) -> TcpListener {
    spawn_in_path(&d.sandbox_netns(name), move || TcpListener::bind((addr, port)).expect("bind"))
        .join()
        .expect("listener")
}

/// Serves one connection on `listener` with `greeting`; returns the client as it was seen.
fn greet_once(listener: TcpListener, greeting: &'static [u8]) -> std::thread::JoinHandle<SocketAddr> {
    std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        s.write_all(greeting).expect("write");
        peer
    })
}

/// Five datagrams from outside to sandbox `name` (address `addr`) port 6000, which it listens
/// on: whether any arrived within 2 s.
fn unsolicited_udp_arrives(w: &World, d: &TestDaemon, name: &str, addr: Ipv4Addr) -> bool {
    unsolicited_udp_arrives_from(&w.outside, SERVER, d, name, addr)
}

/// [`unsolicited_udp_arrives`] from namespace `from`, address `src`.
fn unsolicited_udp_arrives_from(from: &NetNs, src: &'static str, d: &TestDaemon, name: &str, addr: Ipv4Addr) -> bool {
    // Bound before anything is sent (a socket keeps the namespace it was made in).
    let s = spawn_in_path(&d.sandbox_netns(name), move || UdpSocket::bind((addr, 6000)).expect("bind"))
        .join()
        .expect("bound");
    let listener = std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut buf = [0u8; 64];
        uninterrupted(|| s.recv_from(&mut buf)).is_ok()
    });
    from.run(move || {
        let s = UdpSocket::bind((src, 0)).expect("bind");
        for _ in 0..5 {
            s.send_to(b"knock", (addr, 6000)).expect("send");
        }
    });
    listener.join().expect("listener")
}

#[test]
fn gateway_mode_nat_unprotected_lets_the_outside_reach_containers_at_their_own_addresses() {
    let w = world(&[]);
    let d = &w.d;
    let mode = "com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected";
    d.netd(&["network", "create", "--subnet", "10.206.0.0/24", "-o", mode, "open"]).ok();
    sandbox(d, "u1", "open");
    let u1 = addr_of(d, "u1", "open");
    w.outside.ip(&["route", "add", "10.206.0.0/24", "via", UPLINK]);
    let inspect: serde_json::Value = serde_json::from_str(&d.netd(&["network", "inspect", "open"]).ok()).expect("JSON");
    assert_eq!(inspect[0]["Options"]["com.docker.network.bridge.gateway_mode_ipv4"], "nat-unprotected");

    // Anything reaches it at its own address: datagrams, a ping, a TCP connection whose
    // answers leave with its own address although the network masquerades.
    assert!(unsolicited_udp_arrives(&w, d, "u1", u1), "the datagrams arrived");
    assert!(w.outside.exec("ping", &["-c", "1", "-W", "2", &u1.to_string()]).status.success(), "ping");
    let server = greet_once(listen_in(d, "u1", u1, 7000), b"welcome");
    let got = greeting_from_outside(&w, SocketAddr::from((u1, 7000)));
    assert_eq!(&got, b"welcome");
    assert_eq!(server.join().expect("server").ip().to_string(), SERVER, "the container sees the client");
    let flows = d.netd(&["nat", "ls"]).ok();
    assert!(flows.contains("(inbound)"), "the connection from outside is listed: {flows}");
    // Its own connections out are still masqueraded.
    let echo = tcp_echo_server(&w.outside, 8080, 1);
    assert_eq!(tcp_from(d, "u1", "open", 8080), b"hello");
    assert_eq!(echo.join().expect("server")[0].ip().to_string(), UPLINK);

    // Not a mode at all: refused, nothing made.
    let option = "com.docker.network.bridge.gateway_mode_ipv4=bogus";
    d.netd(&["network", "create", "-o", option, "nope"])
        .fails_with("invalid com.docker.network.bridge.gateway_mode_ipv4");
    assert!(!d.netd(&["network", "ls"]).ok().contains("nope"));
}

#[test]
fn gateway_mode_routed_reaches_published_ports_at_the_containers_address_without_masquerade() {
    let w = world(&[]);
    let d = &w.d;
    let mode = "com.docker.network.bridge.gateway_mode_ipv4=routed";
    d.netd(&["network", "create", "--subnet", "10.207.0.0/24", "-o", mode, "rt"]).ok();
    // The host part of a mapping is not used: two sandboxes may give the same one.
    for name in ["r1", "r2"] {
        d.netd(&["run", "-d", "--name", name, "--network", "rt", "-p", "8080:7000", "--", "sleep", "300"]).ok();
    }
    let r1 = addr_of(d, "r1", "rt");
    w.outside.ip(&["route", "add", "10.207.0.0/24", "via", UPLINK]);
    let server = greet_once(listen_in(d, "r1", r1, 7000), b"routed!");
    let _unpublished = listen_in(d, "r1", r1, 7001);
    // The published port, at the container's own address: the container sees the client.
    let got = greeting_from_outside(&w, SocketAddr::from((r1, 7000)));
    assert_eq!(&got, b"routed!");
    let peer = server.join().expect("server");
    assert_eq!(peer.ip().to_string(), SERVER, "the container sees the client");
    // Another port, although listened on: nothing. The host's port: not taken. ICMP: yes.
    assert!(not_reached(&w, SocketAddr::from((r1, 7001))), "an unpublished port is not reached");
    assert!(not_reached(&w, at(UPLINK, 8080)), "no host port");
    assert!(w.outside.exec("ping", &["-c", "1", "-W", "2", &r1.to_string()]).status.success(), "ping");
    // Its own flows are not masqueraded.
    let echo = tcp_echo_server(&w.outside, 8081, 1);
    assert_eq!(tcp_from(d, "r1", "rt", 8081), b"hello");
    assert_eq!(echo.join().expect("server")[0].ip(), std::net::IpAddr::V4(r1), "its own address");
    assert!(d.netd(&["port", "r1"]).ok().contains("7000/tcp"), "the mapping is listed");

    // After a restart, the published port is reached the same way.
    let mut w = w;
    w.d.stop();
    w.d.restart();
    let server = greet_once(listen_in(&w.d, "r1", r1, 7000), b"again!!");
    let got = greeting_from_outside(&w, SocketAddr::from((r1, 7000)));
    assert_eq!(&got, b"again!!");
    server.join().expect("server");

    // The host port the routed mapping names stays free: a sandbox of a nat network takes
    // it, and removing a routed sandbox with the same mapping leaves its relay alone.
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.209.0.0/24", "natnet"]).ok();
    d.netd(&["run", "-d", "--name", "n1", "--network", "natnet", "-p", "8080:7000", "--", "sleep", "300"]).ok();
    d.netd(&["rm", "-f", "r2"]).ok();
    let n1 = addr_of(d, "n1", "natnet");
    let server = greet_once(listen_in(d, "n1", n1, 7000), b"relayed");
    // n1's published port is not reached at its own address, even with a route (Docker's
    // `nat` gateway mode, without `--allow-direct-routing`), while it listens.
    w.outside.ip(&["route", "add", "10.209.0.0/24", "via", UPLINK]);
    assert!(not_reached(&w, SocketAddr::from((n1, 7000))));
    let got = greeting_from(d.host(), at("127.0.0.1", 8080));
    assert_eq!(&got, b"relayed", "the host's own connection, through n1's relay");
    server.join().expect("server");
}

#[test]
fn gateway_mode_isolated_keeps_even_the_host_out_of_an_internal_network() {
    let w = world(&[]);
    let d = &w.d;
    let mode = "com.docker.network.bridge.gateway_mode_ipv4=isolated";
    d.netd(&["network", "create", "--subnet", "10.208.0.0/24", "-o", mode, "iso"]).fails_with("internal networks only");
    assert!(!d.netd(&["network", "ls"]).ok().contains("iso"), "nothing made");
    let id = d.netd(&["network", "create", "--internal", "--subnet", "10.208.0.0/24", "-o", mode, "iso"]).ok();
    let bridge = format!("br-{}", &id.trim()[..12]);
    let addrs = d.host().exec_ok("ip", &["-4", "-o", "addr", "show", "dev", &bridge]).stdout;
    assert!(addrs.is_empty(), "no address on {bridge}: {}", String::from_utf8_lossy(&addrs));
    sandbox(d, "i1", "iso");
    sandbox(d, "i2", "iso");
    // The containers reach each other (by name too), and nothing else: not the gateway, and
    // the host does not reach them.
    assert!(ping(d, "i1", "i2"), "i1 → i2 by name");
    assert!(!ping(d, "i1", "10.208.0.1"), "the gateway is nobody's");
    let i1 = addr_of(d, "i1", "iso").to_string();
    assert!(!d.host().exec("ping", &["-c", "1", "-W", "1", &i1]).status.success(), "the host is out");
}

#[test]
fn masquerade_off_internal_and_unsolicited_behave_like_docker() {
    let w = world(&[]);
    let d = &w.d;
    d.netd(&["network", "create", "--subnet", "10.201.0.0/24", "n1"]).ok();
    d.netd(&[
        "network",
        "create",
        "--subnet",
        "10.202.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "plain",
    ])
    .ok();
    d.netd(&["network", "create", "--internal", "--subnet", "10.203.0.0/24", "int"]).ok();
    sandbox(d, "c1", "n1");
    sandbox(d, "p1", "plain");
    sandbox(d, "i1", "int");
    let (c1, p1) = (addr_of(d, "c1", "n1"), addr_of(d, "p1", "plain"));

    // Without masquerade the packet is routed unchanged: the server sees the container's own
    // address, and answers reach it once the outside has a route back (the flow is tracked:
    // its answers are let in, as Docker's conntrack rule does).
    w.outside.ip(&["route", "add", "10.202.0.0/24", "via", UPLINK]);
    let server = udp_echo_server(&w.outside, 5353, 1);
    let answered = udp_query(d, "p1", p1);
    let peers = server.join().expect("server");
    assert_eq!(peers.iter().map(SocketAddr::ip).collect::<Vec<_>>(), vec![std::net::IpAddr::V4(p1)], "routed as is");
    assert!(answered, "the answer came back by routing");
    assert_eq!(d.count(Some("p1"), "redirect-nat"), 1, "tracked");
    let flows = d.netd(&["nat", "ls"]).ok();
    assert!(flows.contains(&format!("{p1}:")) && flows.contains("(routed)"), "listed with its own address: {flows}");
    // But unasked, the outside reaches it no more than a masquerading network's containers
    // (Docker's `nat` gateway mode): not even a ping.
    assert!(!unsolicited_udp_arrives(&w, d, "p1", p1), "nothing reached p1");
    assert!(w.outside.exec("ping", &["-c", "1", "-W", "1", &p1.to_string()]).status.code() != Some(0));

    // An internal network reaches nothing outside (it has no default route; the datapath
    // drops what is sent anyway, see datapath_fastpath).
    assert!(!ping(d, "i1", SERVER));

    // Unsolicited: even with a route to the masquerading network, the outside reaches no
    // container (while the gateway, a host address, still answers). `netd monitor` shows
    // those drops as about c1: they were addressed to it.
    let monitor = d.netd_streaming(&["monitor", "--json", "--sandbox", "c1"]);
    assert!(monitor.line(Duration::from_secs(10)).is_some_and(|l| l.contains("Listening")));
    w.outside.ip(&["route", "add", "10.201.0.0/24", "via", UPLINK]);
    assert!(!unsolicited_udp_arrives(&w, d, "c1", c1), "nothing reached the container");
    assert!(w.outside.exec("ping", &["-c", "1", "-W", "1", &c1.to_string()]).status.code() != Some(0));
    assert!(d.count(None, "drop-unsolicited") >= 5);
    let knock: serde_json::Value =
        serde_json::from_str(&monitor.line(Duration::from_secs(10)).expect("an event")).expect("JSON");
    assert_eq!(knock["reason"], "drop-unsolicited");
    assert_eq!(knock["interface"], "uplink0");
    assert!(knock.get("endpoint").is_none(), "an uplink is no endpoint: {knock}");
    assert_eq!(knock["protocol"], "udp");
    assert!(knock["src"].as_str().is_some_and(|s| s.starts_with("198.18.0.2:")), "{knock}");
    assert_eq!(knock["dst"], format!("{c1}:6000"));
    assert!(w.outside.exec("ping", &["-c", "1", "-W", "1", "10.201.0.1"]).status.success(), "the gateway answers");

    assert_eq!(nft_ruleset(d.host()), "", "no nftables rules in the host namespace");
}

#[test]
fn nat_timeouts_are_set_on_the_daemon_as_conntracks_sysctls_and_bad_ones_refused() {
    let w = world(&["--nat-timeout", "udp=1s", "--nat-timeout", "tcp-established=5d"]);
    let d = &w.d;
    let all = "tcp-syn 1m, tcp-established 5d, tcp-fin 2m, tcp-rst 10s, udp 1s, udp-stream 2m, icmp 30s";
    assert!(d.log().contains(&format!("netd: masquerade timeouts {all}")), "{}", d.log());
    let stats: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "stats", "--json"]).ok()).expect("JSON");
    assert_eq!((&stats["timeouts"]["tcp-established"], &stats["timeouts"]["udp"]), (&432_000.into(), &1.into()));
    assert_eq!(stats["timeouts"]["tcp-syn"], 60, "the rest default: {stats}");
    assert!(d.netd(&["nat", "stats"]).ok().contains(&format!("TIMEOUTS   {all}")));
    let metrics = d.metrics();
    for (kind, secs) in [("udp", 1), ("tcp-established", 432_000), ("icmp", 30)] {
        assert_eq!(sample(&metrics, &format!(r#"netd_nat_timeout_seconds{{kind="{kind}"}}"#)), Some(secs), "{metrics}");
    }

    // A query and its answer: listed, then gone a second after its last packet, then collected.
    sandbox(d, "c1", "bridge");
    let server = udp_echo_server(&w.outside, 5353, 1);
    assert!(udp_query(d, "c1", addr_of(d, "c1", "bridge")));
    server.join().expect("server");
    let udp_flows = || {
        let flows: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "ls", "--json"]).ok()).expect("JSON");
        flows.as_array().expect("list").iter().filter(|f| f["protocol"] == "udp").count()
    };
    assert_eq!(udp_flows(), 1);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(udp_flows(), 0, "expired");
    let start = Instant::now();
    loop {
        let stats: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "stats", "--json"]).ok()).expect("JSON");
        if stats["expired"] == 0 && stats["flows"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "collected by the collector's next pass: {stats}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Bad values stop the daemon at its flags, before it makes anything.
    for (timeout, message) in [
        ("udp", "expected KIND=DURATION"),
        ("sctp=30s", "unknown NAT timeout \"sctp\""),
        ("udp=0s", "invalid duration \"0s\""),
        ("tcp-fin=400d", "1s to 365d"),
    ] {
        let stderr = refused_at_flags(&["--nat-timeout", timeout]);
        assert!(stderr.contains(message), "{timeout}: {stderr}");
    }
}

/// What the daemon says when `flags` stop it at its flags (exit 2), before it makes anything
/// (run in a namespace of its own, with a state directory that must never appear).
fn refused_at_flags(flags: &[&str]) -> String {
    let host = NetNs::new("ndt-flags");
    let binary = netd_tests::daemon::netd_binary();
    let mut args = vec!["daemon", "--state-dir", "/nonexistent/netd-never"];
    args.extend(flags);
    let out = host.command(binary.to_str().expect("path"), &args).output().expect("netd daemon");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
    assert!(!std::path::Path::new("/nonexistent/netd-never").exists());
    stderr
}

#[test]
fn daemon_ip_binds_the_default_bridges_published_ports_to_that_address_as_dockerds() {
    let w = world(&["--ip", "127.0.0.1"]);
    let d = &w.d;
    let inspect: serde_json::Value =
        serde_json::from_str(&d.netd(&["network", "inspect", "bridge"]).ok()).expect("JSON");
    assert_eq!(inspect[0]["Options"]["com.docker.network.bridge.host_binding_ipv4"], "127.0.0.1", "{inspect}");
    d.netd(&["run", "-d", "--name", "web", "-p", "8080:80", "-p", "0.0.0.0:8081:80", "--", "sleep", "300"]).ok();
    let ports = d.netd(&["port", "web"]).ok();
    assert!(ports.contains("80/tcp -> 127.0.0.1:8080") && ports.contains("80/tcp -> 0.0.0.0:8081"), "{ports}");
    let server = peer_server(&d.sandbox_netns("web"), 80);
    // The host reaches the port at 127.0.0.1; the outside does not (it is not published there),
    // but does reach the one published on every address.
    assert!(d.host().run(|| ask(at("127.0.0.1", 8080))).is_ok(), "from the host");
    assert!(not_reached(&w, at(UPLINK, 8080)), "not from outside");
    assert!(w.outside.run(|| ask(at(UPLINK, 8081))).is_ok(), "0.0.0.0:8081 from outside");
    w.outside.run(|| stop_peer_server(at(UPLINK, 8081)));
    assert_eq!(server.join().expect("server"), 2);

    // Not an address to bind to: refused at the flags, nothing made.
    for (ip, says) in [("224.0.0.1", "is not an address to bind published ports to"), ("localhost", "invalid IPv4")] {
        let stderr = refused_at_flags(&["--ip", ip]);
        assert!(stderr.contains(says), "{ip}: {stderr}");
    }
}

#[test]
fn a_nat_port_range_overlapping_the_hosts_ports_is_refused() {
    let host = NetNs::new("ndt-host");
    host.sysctl("net.ipv4.ip_local_port_range", "32768 60999");
    let dir = std::path::PathBuf::from("/tmp").join(netd_tests::netns::unique_name("netd-test-"));
    let state = dir.join("state");
    let out = host
        .command(
            netd_tests::daemon::netd_binary().to_str().expect("path"),
            &[
                "daemon",
                "--nat-port-range",
                "30000-40000",
                "--state-dir",
                state.to_str().expect("utf-8"),
                "--exec-root",
                dir.join("run").to_str().expect("utf-8"),
                "--bpffs",
                "/sys/fs/bpf/netd-never-created",
                "-H",
                &format!("unix://{}/netd.sock", dir.display()),
            ],
        )
        .output()
        .expect("netd daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--nat-port-range 30000-40000 overlaps net.ipv4.ip_local_port_range 32768-60999"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing was created");
    assert!(!std::path::Path::new("/sys/fs/bpf/netd-never-created").exists());
}

#[test]
fn a_full_table_refuses_new_connections_says_so_and_keeps_the_live_ones() {
    // Room for two flows.
    let w = world(&["--nat-max-flows", "2"]);
    let d = &w.d;
    sandbox(d, "c1", "bridge");
    // The server's kernel completes handshakes into the listen backlog: connections stay
    // established without an accept.
    let listener = w.outside.run(|| TcpListener::bind((SERVER, 8090)).expect("bind"));
    let server = SocketAddr::from((SERVER.parse::<Ipv4Addr>().expect("addr"), 8090));
    let (held, third) = spawn_in_path(&d.sandbox_netns("c1"), move || {
        let held: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect_timeout(&server, DEADLINE).expect("connect")).collect();
        // Both flows are established (assured): a full table may not evict them.
        (held, TcpStream::connect_timeout(&server, Duration::from_secs(2)).map(drop))
    })
    .join()
    .expect("client");
    assert_eq!(third.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut), "the third SYN was dropped");

    // The daemon says so within its 2 s period, as the kernel logs "nf_conntrack: table full".
    let start = Instant::now();
    while !d.log().contains("NAT table full") && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(d.log().contains("masquerade: NAT table full"), "{}", d.log());
    let stats: serde_json::Value = serde_json::from_str(&d.netd(&["nat", "stats", "--json"]).ok()).expect("JSON");
    assert_eq!((&stats["flows"], &stats["max_flows"]), (&2.into(), &2.into()), "{stats}");
    assert!(stats["refused_table_full"].as_u64() >= Some(1), "{stats}");
    assert_eq!(stats["evicted"], 0, "{stats}");

    // The live connections still work.
    let (mut a, _) = w.outside.run(|| listener.accept().expect("accept"));
    let mut c = held.into_iter().next().expect("held");
    c.write_all(b"still").expect("write");
    let mut buf = [0u8; 5];
    a.set_read_timeout(Some(DEADLINE)).expect("timeout");
    a.read_exact(&mut buf).expect("read");
    assert_eq!(&buf, b"still");
}

/// A TCP server in a sandbox's namespace on `port`: answers each connection with the peer's
/// address as it saw it (`ip:port`), until a client says `stop`; returns how many it answered.
fn peer_server(netns: &str, port: u16) -> std::thread::JoinHandle<usize> {
    let (ready, wait) = std::sync::mpsc::channel();
    let server = spawn_in_path(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind in the sandbox");
        ready.send(()).expect("ready");
        let mut served = 0;
        for conn in listener.incoming() {
            let mut s = conn.expect("accept");
            let peer = s.peer_addr().expect("peer");
            // A client that speaks first ends the server.
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            let mut word = [0u8; 4];
            if matches!(uninterrupted(|| s.read(&mut word)), Ok(4)) && &word == b"stop" {
                return served;
            }
            let _ = s.write_all(peer.to_string().as_bytes());
            served += 1;
        }
        served
    });
    wait.recv_timeout(DEADLINE).expect("the server listens");
    server
}

#[test]
fn allow_direct_routing_reaches_published_ports_at_the_containers_own_address() {
    let w = world(&["--allow-direct-routing"]);
    let d = &w.d;
    d.netd(&["run", "-d", "--name", "web", "-p", "8080:80", "--", "sleep", "300"]).ok();
    let web = addr_of(d, "web", "bridge");
    let server = peer_server(&d.sandbox_netns("web"), 80);
    w.outside.ip(&["route", "add", "172.17.0.0/16", "via", UPLINK]);
    // At the container's address, the client's own address seen; through the host's too.
    let direct = SocketAddr::from((web, 80));
    let seen = w.outside.run(move || ask(direct)).expect("direct");
    assert!(seen.starts_with(&format!("{SERVER}:")), "the container saw {seen}");
    let seen = w.outside.run(|| ask(at(UPLINK, 8080))).expect("through the host");
    assert!(seen.starts_with(&format!("{SERVER}:")), "the container saw {seen}");
    // Only published ports: another one is not reached, although listened on.
    let _unpublished = listen_in(d, "web", web, 81);
    assert!(not_reached(&w, SocketAddr::from((web, 81))));
    w.outside.run(move || stop_peer_server(direct));
    assert_eq!(server.join().expect("server"), 2);
}

/// Whether a TCP connection from outside to `to` fails within a second.
fn not_reached(w: &World, to: SocketAddr) -> bool {
    w.outside.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err())
}

/// Ends a [`peer_server`] reached at `to`.
fn stop_peer_server(to: SocketAddr) {
    let mut s = TcpStream::connect_timeout(&to, DEADLINE).expect("connect to stop");
    s.write_all(b"stop").expect("stop");
}

/// Connects to `to` and returns what the server said (its view of our address).
fn ask(to: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    let mut got = String::new();
    s.read_to_string(&mut got)?;
    Ok(got)
}

fn at(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("addr"), port)
}

#[test]
fn published_ports_reach_the_container_with_the_clients_address_and_survive_a_restart() {
    let mut w = world(&[]);
    let run = w.d.netd(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "5300:53/udp",
        "-p",
        "127.0.0.1::80",
        "--",
        "sleep",
        "300",
    ]);
    run.ok();
    let ports = w.d.netd(&["port", "web"]).ok();
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 3, "{ports}");
    assert_eq!(&lines[..2], ["53/udp -> 0.0.0.0:5300", "80/tcp -> 0.0.0.0:8080"], "{ports}");
    let local: u16 = lines[2].strip_prefix("80/tcp -> 127.0.0.1:").and_then(|p| p.parse().ok()).expect("any port");
    assert_eq!(w.d.netd(&["port", "web", "53/udp"]).ok().trim(), "0.0.0.0:5300");
    w.d.netd(&["port", "web", "81"]).fails_with("No public port '81/tcp' published for web");
    assert!(w.d.netd(&["ps"]).ok().contains("0.0.0.0:8080->80/tcp"));
    let socket = std::os::unix::net::UnixStream::connect(w.d.socket().trim_start_matches("unix://")).expect("socket");
    let (_, metrics) = http_get(socket, "/metrics");
    assert_eq!(sample(&metrics, r#"netd_published_ports{protocol="tcp"}"#), Some(2), "{metrics}");
    assert_eq!(sample(&metrics, r#"netd_published_ports{protocol="udp"}"#), Some(1), "{metrics}");
    let web = addr_of(&w.d, "web", "bridge");
    let netns = w.d.sandbox_netns("web");
    let server = peer_server(&netns, 80);

    // From outside, through the uplink: the datapath takes it to the container, which sees the
    // client's own address (no proxy in between).
    let seen = w.outside.run(|| ask(at(UPLINK, 8080))).expect("from outside");
    assert!(seen.starts_with(&format!("{SERVER}:")), "the container saw {seen}");
    let flows: serde_json::Value = serde_json::from_str(&w.d.netd(&["nat", "ls", "--json"]).ok()).expect("JSON");
    let inbound = flows.as_array().expect("list").iter().find(|f| f["inbound"] == true).expect("an inbound flow");
    assert_eq!(
        (&inbound["inside"], &inbound["outside"], &inbound["remote"][0]),
        (&serde_json::json!([web.to_string(), 80]), &serde_json::json!([UPLINK, 8080]), &SERVER.into()),
        "{inbound}"
    );
    assert!(w.d.count(None, "redirect-reverse-nat") >= 2, "the datapath carried it");
    // On the host's other addresses too (the daemon lists them every 2 s; meanwhile the relay
    // answers).
    w.d.host().ip(&["addr", "add", "198.18.0.9/24", "dev", "uplink0"]);
    let deadline = Instant::now() + DEADLINE;
    let seen = loop {
        let seen = w.outside.run(|| ask(at("198.18.0.9", 8080))).expect("to the second address");
        if seen.starts_with(&format!("{SERVER}:")) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(seen.starts_with(&format!("{SERVER}:")), "through the datapath, the container saw {seen}");
    // From the host itself, to the uplink's address and to localhost (the port only published
    // there): relayed, as Docker's proxy does; the container sees its gateway.
    for to in [at(UPLINK, 8080), at("127.0.0.1", 8080), at("127.0.0.1", local)] {
        let seen = w.d.host().run(|| ask(to)).unwrap_or_else(|e| panic!("from the host to {to}: {e}"));
        assert!(seen.starts_with("172.17.0.1:"), "to {to}, the container saw {seen}");
    }
    // UDP from outside: the answer comes back from the published address and port.
    let udp = spawn_in_path(&netns, || {
        let s = UdpSocket::bind(("0.0.0.0", 53)).expect("bind");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut peers = Vec::new();
        for _ in 0..2 {
            let mut buf = [0u8; 64];
            let (n, peer) = uninterrupted(|| s.recv_from(&mut buf)).expect("query");
            s.send_to(&buf[..n], peer).expect("answer");
            peers.push(peer);
        }
        peers
    });
    std::thread::sleep(Duration::from_millis(100));
    let query = |to: SocketAddr| {
        move || {
            let s = UdpSocket::bind(("0.0.0.0", 0)).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            s.send_to(b"query", to).expect("send");
            let mut buf = [0u8; 64];
            let (n, from) = uninterrupted(|| s.recv_from(&mut buf)).expect("an answer");
            (buf[..n].to_vec(), from)
        }
    };
    let (answer, from) = w.outside.run(query(at(UPLINK, 5300)));
    assert_eq!((answer.as_slice(), from), (&b"query"[..], at(UPLINK, 5300)));
    // From the host, through the relay (a socket of its own towards the container).
    let (answer, from) = w.d.host().run(query(at("127.0.0.1", 5300)));
    assert_eq!((answer.as_slice(), from), (&b"query"[..], at("127.0.0.1", 5300)));
    let peers: Vec<String> = udp.join().expect("udp server").iter().map(|p| p.ip().to_string()).collect();
    assert_eq!(peers, [SERVER, "172.17.0.1"], "the client's address, then the relay's");

    refusals_change_nothing(&w);
    hairpin_is_relayed(&w);

    // The daemon stopped: the datapath still takes connections from outside; restarted, the
    // host's relays are back.
    w.d.stop();
    let seen = w.outside.run(|| ask(at(UPLINK, 8080))).expect("from outside, the daemon stopped");
    assert!(seen.starts_with(&format!("{SERVER}:")), "{seen}");
    w.d.restart();
    let seen = w.d.host().run(|| ask(at("127.0.0.1", 8080))).expect("from the host after the restart");
    assert!(seen.starts_with("172.17.0.1:"), "{seen}");

    w.outside.run(|| stop_peer_server(at(UPLINK, 8080)));
    assert!(server.join().expect("server") >= 7, "every connection reached the container");

    // Removed with its sandbox: the host's port is free, and nothing from outside gets in.
    w.d.netd(&["rm", "-f", "web"]).ok();
    drop(w.d.host().run(|| TcpListener::bind(("0.0.0.0", 8080)).expect("8080 is free again")));
    let refused = w.outside.run(|| ask(at(UPLINK, 8080)));
    assert!(refused.is_err(), "{refused:?}");
}

/// With `web` publishing 0.0.0.0:8080: taken ports are refused and nothing is made, by another
/// sandbox and by the host; networks that cannot publish and bad protocols are refused too;
/// a network's `host_binding_ipv4` is used when no address is given.
fn refusals_change_nothing(w: &World) {
    // Taken ports are refused and nothing is made: by another sandbox, and by the host.
    let before = w.d.netd(&["network", "inspect", "bridge"]).ok();
    w.d.netd(&["run", "-d", "--name", "web2", "-p", "8080:80", "--", "sleep", "300"])
        .fails_with("Bind for 0.0.0.0:8080 failed: port is already allocated");
    w.d.netd(&["run", "-d", "--name", "web2", "-p", "127.0.0.1:8080:80", "--", "sleep", "300"])
        .fails_with("Bind for 127.0.0.1:8080 failed: port is already allocated");
    let host_socket = w.d.host().run(|| TcpListener::bind(("0.0.0.0", 9090)).expect("the host's own port"));
    w.d.netd(&["run", "-d", "--name", "web2", "-p", "9090:80", "--", "sleep", "300"])
        .fails_with("Bind for 0.0.0.0:9090 failed: port is already allocated");
    drop(host_socket);
    w.d.netd(&["run", "-d", "--name", "web2", "--network", "none", "-p", "9090:80", "--", "sleep", "300"])
        .fails_with("published ports need a bridge network");
    w.d.netd(&["run", "-d", "--name", "web2", "-p", "80/sctp", "--", "sleep", "300"])
        .fails_with("netd publishes tcp and udp ports, not sctp");
    assert_eq!(w.d.netd(&["ps", "-q"]).ok().lines().count(), 1, "no sandbox made");
    assert_eq!(w.d.netd(&["network", "inspect", "bridge"]).ok(), before, "no address taken");
    // Without an address, a network's `host_binding_ipv4` is where its ports are published.
    w.d.netd(&["network", "create", "-o", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1", "local"]).ok();
    w.d.netd(&["run", "-d", "--name", "web3", "--network", "local", "-p", "8088:80", "--", "sleep", "300"]).ok();
    assert_eq!(w.d.netd(&["port", "web3"]).ok().trim(), "80/tcp -> 127.0.0.1:8088");
    w.d.netd(&["rm", "-f", "web3"]).ok();
    w.d.netd(&["network", "rm", "local"]).ok();
}

/// With `web` publishing 0.0.0.0:8080: containers reach it at the host's address (hairpin, as
/// with Docker's default proxy), also the publishing container itself; the relay carries it.
fn hairpin_is_relayed(w: &World) {
    sandbox(&w.d, "cli", "bridge");
    for from in ["cli", "web"] {
        let seen = spawn_in_path(&w.d.sandbox_netns(from), || ask(at(UPLINK, 8080))).join().expect("client");
        assert!(seen.as_deref().is_ok_and(|s| s.starts_with("172.17.0.1:")), "from {from}: {seen:?}");
    }
    w.d.netd(&["rm", "-f", "cli"]).ok();
}
