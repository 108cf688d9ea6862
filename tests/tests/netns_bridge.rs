//! Integration tests in network namespaces: the harness itself, a kernel bridge carrying TCP and
//! UDP between two "containers", and the datapath program attached to a live veth.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use netd_common::{PacketClass, Reason};
use netd_tests::{
    bpf::tcx_ingress_programs,
    netns::{Link, NetNs},
    uninterrupted,
};

/// A "host" namespace with a bridge and two container namespaces on veth pairs.
struct TwoOnABridge {
    // Field order is drop order: links, then namespaces.
    _veths: [Link; 2],
    _bridge: Link,
    c1: NetNs,
    c2: NetNs,
    _host: NetNs,
}

fn two_on_a_bridge() -> TwoOnABridge {
    let host = NetNs::new("ndt-host");
    host.sysctl("net.bridge.bridge-nf-call-iptables", "0");
    let bridge = Link::bridge(&host, "br0");
    host.ip(&["addr", "add", "10.251.0.1/24", "dev", "br0"]);
    let c1 = NetNs::new("ndt-c1");
    let c2 = NetNs::new("ndt-c2");
    let mut veths = Vec::new();
    for (i, c) in [&c1, &c2].into_iter().enumerate() {
        let host_end = format!("veth{i}");
        veths.push(Link::veth(&host, &host_end, c, "eth0"));
        host.ip(&["link", "set", &host_end, "master", "br0"]);
        c.ip(&["addr", "add", &format!("10.251.0.{}/24", i + 2), "dev", "eth0"]);
    }
    TwoOnABridge { _veths: veths.try_into().expect("two veths"), _bridge: bridge, c1, c2, _host: host }
}

#[test]
fn namespaces_and_links_are_gone_after_drop_even_on_panic() {
    let names = std::panic::catch_unwind(|| {
        let t = two_on_a_bridge();
        let names = [t.c1.name().to_owned(), t.c2.name().to_owned()];
        // Unwind with everything alive: the guards must still clean up.
        std::panic::panic_any(names);
    })
    .expect_err("the closure panics");
    let names = names.downcast::<[String; 2]>().expect("names");
    let listed =
        String::from_utf8(std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip").stdout)
            .expect("utf8");
    for name in names.iter() {
        assert!(!listed.contains(name.as_str()), "{name} leaked: {listed}");
    }
}

#[test]
fn tcp_and_udp_cross_the_bridge() {
    let t = two_on_a_bridge();
    let server_addr: SocketAddr = "10.251.0.3:7000".parse().expect("addr");

    // TCP: an echo server in c2, a client in c1.
    let listener = t.c2.run(|| TcpListener::bind(server_addr).expect("bind tcp"));
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        let n = uninterrupted(|| conn.read(&mut buf)).expect("read");
        conn.write_all(&buf[..n]).expect("echo");
        peer
    });
    let reply = t.c1.run(|| {
        let mut s = TcpStream::connect_timeout(&server_addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"over the bridge").expect("write");
        let mut buf = [0u8; 64];
        let n = uninterrupted(|| s.read(&mut buf)).expect("read");
        buf[..n].to_vec()
    });
    assert_eq!(reply, b"over the bridge");
    assert_eq!(server.join().expect("server").ip().to_string(), "10.251.0.2");

    // UDP: one datagram each way.
    let server = t.c2.run(|| UdpSocket::bind(server_addr).expect("bind udp"));
    server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let client = t.c1.run(|| UdpSocket::bind("10.251.0.2:0").expect("bind client"));
    client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    client.send_to(b"datagram", server_addr).expect("send");
    let mut buf = [0u8; 64];
    let (n, from) = uninterrupted(|| server.recv_from(&mut buf)).expect("server recv");
    assert_eq!(&buf[..n], b"datagram");
    server.send_to(b"reply", from).expect("reply");
    let (n, _) = uninterrupted(|| client.recv_from(&mut buf)).expect("client recv");
    assert_eq!(&buf[..n], b"reply");
}

#[test]
fn a_9000_byte_frame_through_the_attached_program() {
    // Two namespaces on a veth with MTU 9000; netd_from_container on the receiving end's ingress.
    let a = NetNs::new("ndt-ja");
    let b = NetNs::new("ndt-jb");
    let _veth = Link::veth(&a, "eth0", &b, "eth0");
    for (ns, ip) in [(&a, "10.252.0.1/24"), (&b, "10.252.0.2/24")] {
        ns.ip(&["link", "set", "eth0", "mtu", "9000"]);
        ns.ip(&["addr", "add", ip, "dev", "eth0"]);
    }
    let mut dp = netd::datapath::Datapath::load(&netd::datapath::LoadOptions {
        trace: true,
        pin_dir: None,
        ..netd::datapath::LoadOptions::default()
    })
    .expect("load");
    b.run(|| dp.attach_from_container("eth0").expect("attach"));
    assert_eq!(tcx_ingress_programs(&b, "eth0"), ["netd_from_conta"], "attached with TCX (names are cut to 15 bytes)");
    dp.drain_events();

    let receiver = b.run(|| UdpSocket::bind("10.252.0.2:9000").expect("bind"));
    receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let payload = vec![0x42u8; 9000 - 20 - 8];
    a.run(|| {
        let s = UdpSocket::bind("10.252.0.1:0").expect("bind");
        s.send_to(&payload, "10.252.0.2:9000").expect("send");
    });
    let mut buf = vec![0u8; 10000];
    let (n, _) = uninterrupted(|| receiver.recv_from(&mut buf)).expect("the jumbo datagram arrives");
    assert_eq!(n, payload.len());

    // The frame (9000 bytes of IP + 14 of Ethernet) was parsed as one UDP packet, not dropped.
    let events = dp.drain_events();
    let jumbo: Vec<_> = events.iter().filter(|e| e.len == 9014).collect();
    assert_eq!(jumbo.len(), 1, "one 9014-byte frame traced: {events:?}");
    assert_eq!(jumbo[0].reason, Reason::PassIpv4 as u8);
    assert_eq!(jumbo[0].class, PacketClass::Ipv4Udp as u8);
    assert_eq!(u16::from_be(jumbo[0].tuple.dst_port), 9000);
    assert!(dp.reason_counter(Reason::PassIpv4).expect("counters").bytes >= 9014);
    drop(dp);
    // Closing the link's last fd detaches it; the kernel may finish the release asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !tcx_ingress_programs(&b, "eth0").is_empty() {
        assert!(std::time::Instant::now() < deadline, "dropping the datapath detaches it");
        std::thread::sleep(Duration::from_millis(20));
    }
}
