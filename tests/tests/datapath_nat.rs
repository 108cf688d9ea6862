//! Masquerade under `BPF_PROG_TEST_RUN`: `netd_from_container` translating packets to the
//! outside and `netd_from_uplink` translating replies and ICMP errors back, compared byte for
//! byte with packets built independently (so every checksum is checked); port collisions; a
//! full table that recovers once flows expire; what is never translated.
//!
//! Each test has its own namespace ("host": endpoint veths and an uplink `up0`, 10.99.0.1/24,
//! forwarding on) and a second one behind the uplink (`out0`), and its own datapath.

use std::net::Ipv4Addr;

use netd::datapath::{Datapath, LoadOptions};
use netd_common::{
    EndpointInfo, Ipv4Tuple, NatEvent, NatTimeouts, NetworkFlags, NetworkInfo, Reason, UplinkInfo, EVENT_KIND_NAT_NEW,
    EVENT_KIND_TRACE,
};
use netd_tests::{
    bpf::{endpoint_on_24, from_container_on, from_uplink_on, set_traced, Outcome, TC_ACT_OK, TC_ACT_SHOT},
    netns::{Link, NetNs},
    packet::{
        docker_mac, icmp_echo, icmp_error, tcp, udp, Ethernet, Ipv4, ETH_P_IPV4, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
        TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
};

const TC_ACT_REDIRECT: u32 = 7;
const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x02];
const GATEWAY_MAC: [u8; 6] = [0x02, 0x42, 10, 1, 0, 1];
/// The NAT range of these tests: two ports, so collisions are easy to force.
const PORT_MIN: u16 = 2000;
const PORT_MAX: u16 = 2001;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn wire(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

struct Topology {
    dp: Datapath,
    host: NetNs,
    _outside: NetNs,
    _links: Vec<Link>,
    uplink: u32,
    /// Host-veth ifindex of endpoints a (10.1.0.2), b (10.1.0.3), c (10.1.0.4) of the
    /// masquerading network, and r (10.2.0.2) of a network without masquerade.
    ifindex: std::collections::BTreeMap<&'static str, u32>,
}

const ENDPOINTS: [(&str, &str); 4] = [("a", "10.1.0.2"), ("b", "10.1.0.3"), ("c", "10.1.0.4"), ("r", "10.2.0.2")];
const UPLINK_ADDR: &str = "10.99.0.1";
const SERVER: &str = "10.99.0.2";

fn topology(max_flows: Option<u32>) -> Topology {
    topology_with(max_flows, true)
}

/// [`topology`], traced at load time (`trace`: every packet reports its verdict) or, as the
/// daemon loads it, not.
fn topology_with(max_flows: Option<u32>, trace: bool) -> Topology {
    let host = NetNs::new("ndt-nat");
    let outside = NetNs::new("ndt-nato");
    let mut links = vec![Link::veth(&host, "up0", &outside, "out0")];
    host.ip(&["link", "set", "up0", "address", "02:00:00:00:99:01"]);
    outside.ip(&["link", "set", "out0", "address", "02:00:00:00:99:02"]);
    host.ip(&["addr", "add", "10.99.0.1/24", "dev", "up0"]);
    host.ip(&["neigh", "replace", SERVER, "lladdr", "02:00:00:00:99:02", "dev", "up0", "nud", "permanent"]);
    host.sysctl("net.ipv4.ip_forward", "1");
    let mut dp =
        Datapath::load(&LoadOptions { trace, pin_dir: None, nat_max_flows: max_flows, ..LoadOptions::default() })
            .expect("load");
    dp.set_nat_config(PORT_MIN, PORT_MAX).expect("nat config");
    let uplink = host.ifindex("up0");
    dp.set_uplink(uplink, ip(UPLINK_ADDR), 0).expect("uplink");
    let nets = [(1u32, "10.1.0.0", NetworkFlags::ICC | NetworkFlags::MASQUERADE), (2, "10.2.0.0", NetworkFlags::ICC)];
    for (id, subnet, flags) in nets {
        let gw = Ipv4Addr::from(u32::from(ip(subnet)) + 1);
        dp.set_network(ip(subnet), 24, &NetworkInfo { network: id, gateway: wire(gw), flags, snat_addr: 0 })
            .expect("net");
    }
    let mut ifindex = std::collections::BTreeMap::new();
    for (name, _) in ENDPOINTS {
        let h = format!("h{name}");
        links.push(Link::veth(&host, &h, &host, &format!("p{name}")));
        let index = host.ifindex(&h);
        let (_, _, flags) = if name == "r" { nets[1] } else { nets[0] };
        set_endpoint(&mut dp, name, index, flags);
        ifindex.insert(name, index);
    }
    Topology { dp, host, _outside: outside, _links: links, uplink, ifindex }
}

/// Puts endpoint `name` (host veth `ifindex`) into the datapath with its network's `flags`.
fn set_endpoint(dp: &mut Datapath, name: &str, ifindex: u32, flags: u32) {
    let (slot, (_, addr)) = (1u32..).zip(ENDPOINTS).find(|(_, e)| e.0 == name).expect("endpoint");
    let (net, subnet) = if name == "r" { (2, ip("10.2.0.0")) } else { (1, ip("10.1.0.0")) };
    dp.set_endpoint(&endpoint_on_24(ifindex, ip(addr), net, flags, subnet, slot)).expect("endpoint");
}

fn addr_of(name: &str) -> Ipv4Addr {
    ip(ENDPOINTS.iter().find(|e| e.0 == name).expect("endpoint").1)
}

/// The L4 part of a test packet from `src:sport` to `dst:dport` (`sport` is the identifier
/// for ICMP echo).
fn l4(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, icmp_type: u8) -> Vec<u8> {
    match protocol {
        PROTO_TCP => tcp(src, dst, sport, dport, 0x02, b"hello"),
        PROTO_UDP => udp(src, dst, sport, dport, b"hello"),
        _ => icmp_echo(icmp_type, sport, 9, b"hello"),
    }
}

fn packet(protocol: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, ttl: u8, icmp_type: u8) -> Vec<u8> {
    let mut h = Ipv4::new(src, dst, protocol);
    h.ttl = ttl;
    h.packet(&l4(protocol, src, dst, sport, dport, icmp_type))
}

/// What endpoint `from` sends to `dst:dport` from `sport` (TTL 64).
fn from_endpoint(from: &str, protocol: u8, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let src = addr_of(from);
    Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4).frame(&packet(protocol, src, dst, sport, dport, 64, 8))
}

/// What the uplink must emit for it: from the uplink's address and `nat_port`, TTL 63, MACs
/// of the uplink and the next hop.
fn translated(protocol: u8, nat_port: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let src = ip(UPLINK_ADDR);
    Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(protocol, src, dst, nat_port, dport, 63, 8))
}

fn send(t: &mut Topology, from: &str, frame: &[u8]) -> Outcome {
    let ifindex = t.ifindex[from];
    let Topology { dp, host, .. } = t;
    host.run(|| from_container_on(dp, ifindex, frame))
}

fn receive(t: &mut Topology, frame: &[u8]) -> Outcome {
    let ifindex = t.uplink;
    let Topology { dp, host, .. } = t;
    host.run(|| from_uplink_on(dp, ifindex, frame))
}

/// The NAT port the uplink's frame carries (source port, or ICMP identifier).
fn nat_port_of(frame: &[u8]) -> u16 {
    let off = 14 + 20 + if frame[14 + 9] == PROTO_ICMP { 4 } else { 0 };
    u16::from_be_bytes([frame[off], frame[off + 1]])
}

#[test]
fn tcp_udp_and_icmp_echo_are_rewritten_exactly_both_ways() {
    let mut t = topology(None);
    let server = ip(SERVER);
    // A port outside the NAT range (a NAT port is picked), then one inside it, which the flow
    // keeps (the checksums then change by the address alone), each to a server port of its own.
    for (sport, server_port) in [(40000, 80), (PORT_MAX, 81)] {
        for protocol in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
            rewritten_exactly_both_ways(&mut t, protocol, sport, server_port);
        }
    }
    let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
    assert_eq!(flows.len(), 6, "{flows:?}");
    let tcp_flow = flows.iter().find(|f| f.protocol == "tcp" && f.inside.1 == 40000).expect("tcp flow");
    assert_eq!(tcp_flow.inside, (addr_of("a"), 40000));
    assert_eq!(tcp_flow.remote, (server, 80));
    assert_eq!(tcp_flow.state, "established", "the SYN went out and an answer came back");
    assert!(flows.iter().all(|f| f.outside.0 == ip(UPLINK_ADDR)));
}

/// A flow of `protocol` from a's port `sport` to the server (port `server_port`; ICMP echo
/// has none): its egress and reply bytes are exactly the translation, checksums included.
fn rewritten_exactly_both_ways(t: &mut Topology, protocol: u8, sport: u16, server_port: u16) {
    let server = ip(SERVER);
    let dport = if protocol == PROTO_ICMP { 0 } else { server_port };
    let out = send(t, "a", &from_endpoint("a", protocol, sport, server, dport));
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectNat, TC_ACT_REDIRECT), "protocol {protocol}");
    assert_eq!(out.event().target, t.uplink, "leaves by the uplink");
    let nat_port = nat_port_of(&out.output);
    assert!((PORT_MIN..=PORT_MAX).contains(&nat_port), "NAT port {nat_port} in range");
    if (PORT_MIN..=PORT_MAX).contains(&sport) {
        assert_eq!(nat_port, sport, "protocol {protocol}: a free port in the range is kept");
    }
    assert_eq!(out.output, translated(protocol, nat_port, server, dport), "protocol {protocol}: egress bytes");

    // The same flow again: the same translation.
    let again = send(t, "a", &from_endpoint("a", protocol, sport, server, dport));
    assert_eq!(again.output, out.output, "protocol {protocol}: a flow keeps its port");

    // The reply, as the server sends it, comes back to the container.
    let reply_l3 = packet(protocol, server, ip(UPLINK_ADDR), dport, nat_port, 64, 0);
    let reply = if protocol == PROTO_ICMP {
        let mut h = Ipv4::new(server, ip(UPLINK_ADDR), PROTO_ICMP);
        h.ttl = 64;
        h.packet(&icmp_echo(0, nat_port, 9, b"hello"))
    } else {
        reply_l3
    };
    let back = receive(t, &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&reply));
    assert_eq!((back.reason(), back.verdict), (Reason::RedirectReverseNat, TC_ACT_REDIRECT), "protocol {protocol}");
    assert_eq!(back.event().target, t.ifindex["a"], "delivered to a's veth");
    let a = addr_of("a");
    let expected_l3 = if protocol == PROTO_ICMP {
        let mut h = Ipv4::new(server, a, PROTO_ICMP);
        h.ttl = 63;
        h.packet(&icmp_echo(0, sport, 9, b"hello"))
    } else {
        packet(protocol, server, a, dport, sport, 63, 0)
    };
    assert_eq!(
        back.output,
        Ethernet::new(ROUTER_MAC, docker_mac(a), ETH_P_IPV4).frame(&expected_l3),
        "protocol {protocol}: ingress bytes"
    );
}

#[test]
fn new_flows_are_reported_while_the_daemon_asks_and_only_then() {
    let mut t = topology(None);
    let (a, server) = (addr_of("a"), ip(SERVER));
    // Off, as loaded: a new flow is not reported.
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_TCP, 40000, server, 80));
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert!(out.nat_events.is_empty(), "{:?}", out.nat_events);

    // On (`netd monitor --type nat` watches): each new flow, as the container sent it and as
    // the outside sees it; a flow's later packets are not.
    t.dp.set_nat_events(true).expect("reports on");
    for (protocol, sport, dport) in [(PROTO_UDP, 40001, 53), (PROTO_ICMP, 40002, 0)] {
        let out = send(&mut t, "a", &from_endpoint("a", protocol, sport, server, dport));
        assert_eq!(out.reason(), Reason::RedirectNat, "protocol {protocol}");
        let nat_port = nat_port_of(&out.output);
        let expected = NatEvent {
            kind: EVENT_KIND_NAT_NEW,
            reason: Reason::RedirectNat as u8,
            pad: 0,
            ifindex: t.uplink,
            tuple: Ipv4Tuple::new(wire(a), wire(server), sport.to_be(), dport.to_be(), protocol),
            nat_addr: wire(ip(UPLINK_ADDR)),
            nat_port: nat_port.to_be(),
            pad2: 0,
        };
        assert_eq!(out.nat_events, vec![expected], "protocol {protocol}");
        let again = send(&mut t, "a", &from_endpoint("a", protocol, sport, server, dport));
        assert_eq!(again.output, out.output);
        assert!(again.nat_events.is_empty(), "protocol {protocol}: a known flow is no news");
    }

    // Off again: not reported, and the port range was left as it was.
    t.dp.set_nat_events(false).expect("reports off");
    let out = send(&mut t, "b", &from_endpoint("b", PROTO_UDP, 40003, server, 53));
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert!(out.nat_events.is_empty());
    assert!((PORT_MIN..=PORT_MAX).contains(&nat_port_of(&out.output)));
}

#[test]
fn replies_to_a_traced_container_are_reported_while_the_uplinks_are_marked() {
    let mut t = topology_with(None, false);
    let server = ip(SERVER);
    let traces = |out: &Outcome| out.events.iter().filter(|e| e.kind == EVENT_KIND_TRACE).copied().collect::<Vec<_>>();
    let mark = |t: &mut Topology, name: &str, on: bool| set_traced(&mut t.dp, t.ifindex[name], on);
    // a's flow, created before a was traced.
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40020, server, 53));
    assert_eq!((out.verdict, traces(&out).len()), (TC_ACT_REDIRECT, 0));
    let nat_port = nat_port_of(&out.output);
    let reply = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(
        PROTO_UDP,
        server,
        ip(UPLINK_ADDR),
        53,
        nat_port,
        64,
        0,
    ));
    mark(&mut t, "a", true);
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40020, server, 53));
    let sent = traces(&out);
    assert_eq!(sent.len(), 1, "a's masqueraded packet: {sent:?}");
    assert_eq!((Reason::decode(sent[0].reason), sent[0].target), (Some(Reason::RedirectNat), t.uplink));
    // The uplinks are not marked yet: replies take no endpoint lookup, and are not reported.
    let back = receive(&mut t, &reply);
    assert_eq!((back.verdict, traces(&back).len()), (TC_ACT_REDIRECT, 0));
    // Marked (someone traces): the reply to a is, with a's veth as where it went.
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::TRACE).expect("uplink");
    let back = receive(&mut t, &reply);
    let got = traces(&back);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (Reason::decode(got[0].reason), got[0].ifindex, got[0].target),
        (Some(Reason::RedirectReverseNat), t.uplink, t.ifindex["a"])
    );
    assert_eq!(back.output[14 + 16..14 + 20], addr_of("a").octets(), "translated as ever");
    // b's flow is not reported either way, nor is the host's own traffic.
    let out = send(&mut t, "b", &from_endpoint("b", PROTO_UDP, 40021, server, 53));
    assert!(traces(&out).is_empty());
    let b_reply = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(
        PROTO_UDP,
        server,
        ip(UPLINK_ADDR),
        53,
        nat_port_of(&out.output),
        64,
        0,
    ));
    let back = receive(&mut t, &b_reply);
    assert_eq!((back.verdict, traces(&back).len()), (TC_ACT_REDIRECT, 0));
    let host_own = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(
        PROTO_UDP,
        server,
        ip(UPLINK_ADDR),
        53,
        33333,
        64,
        0,
    ));
    let back = receive(&mut t, &host_own);
    assert_eq!((back.verdict, traces(&back).len()), (TC_ACT_OK, 0));
    // a unmarked: its replies are quiet again though the uplink still is marked.
    mark(&mut t, "a", false);
    assert!(traces(&receive(&mut t, &reply)).is_empty());
}

#[test]
fn a_flow_through_a_veth_uplink_is_marked_for_its_peer() {
    let mut t = topology(None);
    let server = ip(SERVER);
    let peer_flag = |t: &mut Topology, sport: u16| {
        let key = Ipv4Tuple::new(wire(addr_of("a")), wire(server), sport.to_be(), 53u16.to_be(), PROTO_UDP);
        let entries = t.dp.nat_entries().expect("entries");
        let (_, e) = entries.iter().find(|(k, _)| *k == key).expect("the flow's egress entry");
        e.flags & netd_common::NatFlags::PEER != 0
    };
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40010, server, 53));
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectNat, TC_ACT_REDIRECT));
    assert!(!peer_flag(&mut t, 40010), "a plain uplink: sent out of it");
    // The daemon found the uplink to be a veth: new flows go into its peer (the redirect
    // itself is `bpf_redirect_peer` at the exit; a test run does not carry it out).
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::PEER).expect("uplink");
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40011, server, 53));
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectNat, TC_ACT_REDIRECT));
    assert_eq!(out.event().target, t.uplink);
    assert_eq!(out.output, translated(PROTO_UDP, nat_port_of(&out.output), server, 53), "the same bytes");
    assert!(peer_flag(&mut t, 40011));
    assert!(!peer_flag(&mut t, 40010), "a flow keeps the path it started with");
}

#[test]
fn new_flows_share_a_route_for_a_second_only_while_the_daemon_says_no_rule_selects_by_port() {
    // Routes are kept per CPU: every run on one.
    netd_tests::bpf::stay_on_this_cpu();
    let mut t = topology(None);
    let server = ip(SERVER);
    let moved = [0x02, 0, 0, 0, 0x99, 0x03];
    let next_hop = |t: &Topology, mac: [u8; 6]| {
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        t.host.ip(&["neigh", "replace", SERVER, "lladdr", &mac, "dev", "up0", "nud", "permanent"]);
    };
    // The next hop's MAC that a new flow from `from` to the server's port `dport` leaves with.
    let leaves_to = |t: &mut Topology, from: &str, dport: u16| {
        let out = send(t, from, &from_endpoint(from, PROTO_UDP, 40020, server, dport));
        assert_eq!(out.reason(), Reason::RedirectNat, "to port {dport}");
        <[u8; 6]>::try_from(&out.output[..6]).expect("a MAC")
    };

    // Unless the daemon says so, each new flow looks up its own route.
    assert_eq!(leaves_to(&mut t, "a", 1), ROUTER_MAC);
    next_hop(&t, moved);
    assert_eq!(leaves_to(&mut t, "a", 2), moved, "its own lookup");
    next_hop(&t, ROUTER_MAC);

    // Once it does, a new flow from the same container to the same address takes the route
    // the last lookup found, for a second after it, as a flow keeps its own; another
    // container's looks up its own. (A test run held up for most of that second tries again.)
    t.dp.set_nat_shared_routes(true).expect("flag");
    let mut dport = 10;
    loop {
        next_hop(&t, ROUTER_MAC);
        // Past the routes found before (every lookup is kept, to be shared while allowed).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let start = std::time::Instant::now();
        assert_eq!(leaves_to(&mut t, "a", dport), ROUTER_MAC, "looked up");
        next_hop(&t, moved);
        let shared = leaves_to(&mut t, "a", dport + 1);
        if start.elapsed() < std::time::Duration::from_millis(900) {
            assert_eq!(shared, ROUTER_MAC, "the route a's last flow found");
            break;
        }
        dport += 2;
        assert!(dport < 20, "test runs a second apart");
    }
    assert_eq!(leaves_to(&mut t, "b", 30), moved, "b's own lookup");
    // A second on, the route is looked up again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(leaves_to(&mut t, "a", 31), moved, "a second on");

    // A rule that selects by port turns it off (the daemon clears the flag): a new flow looks
    // up its own route, though a second has not passed since a's last lookup.
    t.dp.set_nat_shared_routes(false).expect("flag");
    next_hop(&t, ROUTER_MAC);
    assert_eq!(leaves_to(&mut t, "a", 40), ROUTER_MAC, "its own lookup again");
}

#[test]
fn a_free_own_port_is_kept_and_collisions_get_another() {
    let mut t = topology(None);
    let server = ip(SERVER);
    // a and b both use port 2000 (inside the NAT range) to the same server port.
    let a = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 2000, server, 53));
    assert_eq!(a.reason(), Reason::RedirectNat);
    assert_eq!(nat_port_of(&a.output), 2000, "a keeps its own port");
    let b = send(&mut t, "b", &from_endpoint("b", PROTO_UDP, 2000, server, 53));
    assert_eq!(b.reason(), Reason::RedirectNat);
    assert_eq!(nat_port_of(&b.output), 2001, "b collides and gets the other port");
    // Both replies reach their own container.
    for (port, who) in [(2000, "a"), (2001, "b")] {
        let reply = packet(PROTO_UDP, server, ip(UPLINK_ADDR), 53, port, 64, 0);
        let back = receive(&mut t, &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&reply));
        assert_eq!(back.reason(), Reason::RedirectReverseNat);
        assert_eq!(back.event().target, t.ifindex[who], "reply to port {port}");
        assert_eq!(back.output[30..34], addr_of(who).octets(), "destination restored for {who}");
        assert_eq!(back.output[36..38], 2000u16.to_be_bytes(), "port restored for {who}");
    }
    // A third flow finds both ports taken: dropped and counted after the bounded attempts.
    let c = send(&mut t, "c", &from_endpoint("c", PROTO_UDP, 2000, server, 53));
    assert_eq!((c.reason(), c.verdict), (Reason::DropNatNoPort, TC_ACT_SHOT));
    // A port outside the range is first tried at its fixed image in it: 2000 + 40001 mod 2.
    let folded = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40001, server, 99));
    assert_eq!(nat_port_of(&folded.output), 2001, "ports outside the range fold into it");
    // Another server port is another tuple: the same NAT port is free there.
    let c2 = send(&mut t, "c", &from_endpoint("c", PROTO_UDP, 2000, server, 54));
    assert_eq!(c2.reason(), Reason::RedirectNat);
    assert_eq!(nat_port_of(&c2.output), 2000);
}

#[test]
fn icmp_errors_about_a_flow_are_translated_with_the_embedded_packet_both_ways() {
    let mut t = topology(None);
    let server = ip(SERVER);
    let a = addr_of("a");
    for (protocol, dport) in [(PROTO_UDP, 53), (PROTO_TCP, 443), (PROTO_ICMP, 0)] {
        let out = send(&mut t, "a", &from_endpoint("a", protocol, 40000, server, dport));
        assert_eq!(out.reason(), Reason::RedirectNat);
        let nat_port = nat_port_of(&out.output);
        // The router answers "port unreachable" (3/3) quoting the translated packet as it saw it.
        let quoted = &out.output[14..];
        let mut outer = Ipv4::new(server, ip(UPLINK_ADDR), PROTO_ICMP);
        outer.ttl = 64;
        let error = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&outer.packet(&icmp_error(3, 3, quoted)));
        let back = receive(&mut t, &error);
        assert_eq!((back.reason(), back.verdict), (Reason::RedirectReverseNat, TC_ACT_REDIRECT), "protocol {protocol}");
        assert_eq!(back.event().target, t.ifindex["a"]);
        // What the container must see: the error about its own packet (TTL 63 as it left).
        let own = packet(protocol, a, server, 40000, dport, 63, 8);
        let mut outer = Ipv4::new(server, a, PROTO_ICMP);
        outer.ttl = 63;
        let expected =
            Ethernet::new(ROUTER_MAC, docker_mac(a), ETH_P_IPV4).frame(&outer.packet(&icmp_error(3, 3, &own)));
        assert_eq!(back.output, expected, "protocol {protocol} (NAT port {nat_port}): translated error");
    }
    // The other way: a's UDP socket is gone when a late reply arrives, and a says "port
    // unreachable" about the reply it received (translated back). The server must get it about
    // the packet it sent: to the uplink's address and the NAT port.
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 41000, server, 53));
    let nat_port = nat_port_of(&out.output);
    let received = packet(PROTO_UDP, server, a, 53, 41000, 63, 0);
    let mut outer = Ipv4::new(a, server, PROTO_ICMP);
    outer.ttl = 64;
    let error =
        Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4).frame(&outer.packet(&icmp_error(3, 3, &received)));
    let out = send(&mut t, "a", &error);
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectNat, TC_ACT_REDIRECT));
    assert_eq!(out.event().target, t.uplink);
    let as_sent = packet(PROTO_UDP, server, ip(UPLINK_ADDR), 53, nat_port, 63, 0);
    let mut outer = Ipv4::new(ip(UPLINK_ADDR), server, PROTO_ICMP);
    outer.ttl = 63;
    let expected = Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&outer.packet(&icmp_error(3, 3, &as_sent)));
    assert_eq!(out.output, expected, "the container's error, translated");
    // An error about a packet of no flow cannot be translated.
    let stray = packet(PROTO_UDP, server, a, 53, 9, 63, 0);
    let error = Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(a, server, PROTO_ICMP).packet(&icmp_error(3, 3, &stray)));
    assert_eq!(send(&mut t, "a", &error).reason(), Reason::DropNatUnsupported);

    // An error quoting a packet no flow sent is the host's.
    let stranger = packet(PROTO_UDP, ip(UPLINK_ADDR), server, 2001, 9999, 63, 8);
    let mut outer = Ipv4::new(server, ip(UPLINK_ADDR), PROTO_ICMP);
    outer.ttl = 64;
    let frame = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&outer.packet(&icmp_error(3, 3, &stranger)));
    let out = receive(&mut t, &frame);
    assert_eq!((out.reason(), out.verdict), (Reason::PassFromUplink, TC_ACT_OK));
    assert_eq!(out.output, frame, "untouched");
}

/// Gives the masquerading network (a, b, c) an address of its own (`com.docker.network.host_ipv4`)
/// as the daemon does: in its trie entry and its endpoints' flags, the uplink marked.
fn masquerade_with(t: &mut Topology, addr: Ipv4Addr) {
    let flags = NetworkFlags::ICC | NetworkFlags::MASQUERADE | NetworkFlags::SNAT_ADDR;
    let info = NetworkInfo { network: 1, gateway: wire(ip("10.1.0.1")), flags, snat_addr: wire(addr) };
    t.dp.set_network(ip("10.1.0.0"), 24, &info).expect("net");
    for name in ["a", "b", "c"] {
        set_endpoint(&mut t.dp, name, t.ifindex[name], flags);
    }
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::SNAT_ADDRS).expect("uplink");
}

#[test]
fn a_network_with_an_address_of_its_own_masquerades_with_it_both_ways() {
    let mut t = topology(None);
    let own = ip("10.99.0.50");
    masquerade_with(&mut t, own);
    let (server, a) = (ip(SERVER), addr_of("a"));
    for (protocol, dport) in [(PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_ICMP, 0)] {
        let out = send(&mut t, "a", &from_endpoint("a", protocol, 40000, server, dport));
        assert_eq!((out.reason(), out.event().target), (Reason::RedirectNat, t.uplink), "protocol {protocol}");
        let nat_port = nat_port_of(&out.output);
        let expected = Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4)
            .frame(&packet(protocol, own, server, nat_port, dport, 63, 8));
        assert_eq!(out.output, expected, "protocol {protocol}: from the network's address");

        // The reply to that address comes back to the container (an echo reply carries the
        // identifier where the others carry the destination port).
        let reply_to = |dst: Ipv4Addr, port: u16, ttl: u8| {
            if protocol == PROTO_ICMP {
                let mut h = Ipv4::new(server, dst, PROTO_ICMP);
                h.ttl = ttl;
                h.packet(&icmp_echo(0, port, 9, b"hello"))
            } else {
                packet(protocol, server, dst, dport, port, ttl, 0)
            }
        };
        let back =
            receive(&mut t, &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&reply_to(own, nat_port, 64)));
        assert_eq!((back.reason(), back.verdict), (Reason::RedirectReverseNat, TC_ACT_REDIRECT), "protocol {protocol}");
        assert_eq!(back.event().target, t.ifindex["a"]);
        let expected = Ethernet::new(ROUTER_MAC, docker_mac(a), ETH_P_IPV4).frame(&reply_to(a, 40000, 63));
        assert_eq!(back.output, expected, "protocol {protocol}: back to the container");

        // An ICMP error about the translated packet is translated too.
        let mut outer = Ipv4::new(server, own, PROTO_ICMP);
        outer.ttl = 64;
        let error = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&outer.packet(&icmp_error(
            3,
            3,
            &out.output[14..],
        )));
        let back = receive(&mut t, &error);
        assert_eq!((back.reason(), back.event().target), (Reason::RedirectReverseNat, t.ifindex["a"]));
    }
    // The host's own traffic to that address and to the uplink's is the host's, untouched.
    for dst in [own, ip(UPLINK_ADDR)] {
        let frame =
            Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_TCP, server, dst, 22, 40001, 64, 0));
        let out = receive(&mut t, &frame);
        assert_eq!((out.reason(), out.verdict, &out.output), (Reason::PassFromUplink, TC_ACT_OK, &frame), "to {dst}");
    }
    // Straight to a container, whatever the protocol: still refused.
    for protocol in [PROTO_TCP, 47] {
        let l3 = Ipv4::new(server, a, protocol).packet(&l4(protocol, server, a, 80, 40000, 0));
        let out = receive(&mut t, &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&l3));
        assert_eq!((out.reason(), out.verdict), (Reason::DropUnsolicited, TC_ACT_SHOT), "protocol {protocol}");
    }
    // Unmarked (as before any network had an address of its own), the uplink leaves other
    // addresses to the host without a look.
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), 0).expect("uplink");
    let out = send(&mut t, "b", &from_endpoint("b", PROTO_UDP, 40002, server, 53));
    let reply = packet(PROTO_UDP, server, own, 53, nat_port_of(&out.output), 64, 0);
    let frame = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&reply);
    assert_eq!(receive(&mut t, &frame).reason(), Reason::PassFromUplink);
}

/// What the server sends to `dst` from the outside, as the uplink receives it: TCP or UDP
/// from and to `ports`, or an ICMP echo reply with identifier `ports.1`; TTL `ttl`, to MAC
/// `dst_mac`.
fn from_server(dst: Ipv4Addr, protocol: u8, ports: (u16, u16), ttl: u8, dst_mac: [u8; 6]) -> Vec<u8> {
    let (server, (sport, dport)) = (ip(SERVER), ports);
    let l3 = if protocol == PROTO_ICMP {
        let mut h = Ipv4::new(server, dst, PROTO_ICMP);
        h.ttl = ttl;
        h.packet(&icmp_echo(0, dport, 9, b"hello"))
    } else {
        packet(protocol, server, dst, sport, dport, ttl, 0)
    };
    Ethernet::new(ROUTER_MAC, dst_mac, ETH_P_IPV4).frame(&l3)
}

#[test]
fn a_network_without_masquerade_is_tracked_and_reached_only_by_replies_unless_unprotected() {
    let mut t = topology(None);
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::DIRECT).expect("uplink");
    let (server, r) = (ip(SERVER), addr_of("r"));
    let to_r = |protocol: u8, sport: u16, dport: u16, ttl: u8, dst_mac: [u8; 6]| {
        from_server(r, protocol, (sport, dport), ttl, dst_mac)
    };
    for (protocol, dport) in [(PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_ICMP, 0)] {
        // Routed, not translated: its own address and port, TTL and MACs as a router's.
        let out = send(&mut t, "r", &from_endpoint("r", protocol, 40000, server, dport));
        let routed =
            Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(protocol, r, server, 40000, dport, 63, 8));
        assert_eq!((out.reason(), out.verdict, &out.output), (Reason::RedirectNat, TC_ACT_REDIRECT, &routed));
        // Its reply comes back, into r's namespace, unchanged but for the TTL.
        let back = receive(&mut t, &to_r(protocol, dport, 40000, 64, UPLINK_MAC));
        assert_eq!((back.reason(), back.event().target), (Reason::RedirectReverseNat, t.ifindex["r"]), "{protocol}");
        assert_eq!(back.output, to_r(protocol, dport, 40000, 63, docker_mac(r)), "protocol {protocol}");
    }
    // The uplink's address changing forgets translated flows, not these: they have none.
    let a_flow = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40000, server, 53));
    let gone = t.dp.nat_forget_unless_outside_in(&[ip("10.99.0.77")], &[]).expect("forget");
    assert_eq!(gone.iter().map(|(k, _)| k.src_addr).collect::<Vec<_>>(), [wire(addr_of("a"))], "only a's");
    let back = receive(&mut t, &to_r(PROTO_UDP, 53, 40000, 64, UPLINK_MAC));
    assert_eq!(back.reason(), Reason::RedirectReverseNat, "r's flow stays");
    let a_reply = packet(PROTO_UDP, server, ip(UPLINK_ADDR), 53, nat_port_of(&a_flow.output), 64, 0);
    let out = receive(&mut t, &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&a_reply));
    assert_eq!(out.reason(), Reason::PassFromUplink, "a's is gone");
    // Unasked, nothing reaches it at its own address (Docker's `nat` gateway mode).
    for (protocol, sport, dport) in [(PROTO_TCP, 1234, 22), (PROTO_UDP, 1234, 40000), (PROTO_ICMP, 0, 77)] {
        let out = receive(&mut t, &to_r(protocol, sport, dport, 64, UPLINK_MAC));
        assert_eq!((out.reason(), out.verdict), (Reason::DropUnsolicited, TC_ACT_SHOT), "protocol {protocol}");
    }
    // What cannot be tracked is routed unchanged by the stack: other protocols, fragments.
    let gre = Ethernet::new(docker_mac(r), GATEWAY_MAC, ETH_P_IPV4).frame(&Ipv4::new(r, server, 47).packet(b"gre"));
    assert_eq!(send(&mut t, "r", &gre).reason(), Reason::PassToStack);

    // `nat-unprotected`: reached at its own address, any port; a connection from outside is
    // tracked so that its answers leave untranslated (here on a masquerading network: a's).
    let unprotected = NetworkFlags::ICC | NetworkFlags::MASQUERADE | NetworkFlags::UNPROTECTED;
    set_endpoint(&mut t.dp, "a", t.ifindex["a"], unprotected);
    let info = NetworkInfo { network: 1, gateway: wire(ip("10.1.0.1")), flags: unprotected, snat_addr: 0 };
    t.dp.set_network(ip("10.1.0.0"), 24, &info).expect("net");
    let a = addr_of("a");
    let syn = tcp_in(50000, a, 22, TCP_SYN, 64, UPLINK_MAC);
    let out = receive(&mut t, &syn);
    assert_eq!((out.reason(), out.event().target), (Reason::RedirectReverseNat, t.ifindex["a"]));
    assert_eq!(out.output, tcp_in(50000, a, 22, TCP_SYN, 63, docker_mac(a)), "delivered as sent");
    let answer = Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(a, server, PROTO_TCP).packet(&tcp(a, server, 22, 50000, TCP_SYN | TCP_ACK, b"")));
    let out = send(&mut t, "a", &answer);
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert_eq!(&out.output[14 + 12..14 + 16], &a.octets(), "the answer keeps a's own address");
    assert_eq!(nat_port_of(&out.output), 22, "and port");
    // A ping too (untracked, the stack delivers it), and a's echo reply goes back unchanged.
    let ping = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(server, a, PROTO_ICMP).packet(&icmp_echo(8, 7, 1, b"ping")));
    assert_eq!(receive(&mut t, &ping).reason(), Reason::PassFromUplink);
    let echo_reply = Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(a, server, PROTO_ICMP).packet(&icmp_echo(0, 7, 1, b"ping")));
    assert_eq!(send(&mut t, "a", &echo_reply).reason(), Reason::PassToStack);
}

#[test]
fn a_routed_network_is_reached_at_its_published_ports_and_with_icmp_only() {
    let mut t = topology(None);
    let routed = NetworkFlags::ICC | NetworkFlags::ROUTED;
    let info = NetworkInfo { network: 2, gateway: wire(ip("10.2.0.1")), flags: routed, snat_addr: 0 };
    t.dp.set_network(ip("10.2.0.0"), 24, &info).expect("net");
    set_endpoint(&mut t.dp, "r", t.ifindex["r"], routed);
    let (server, r) = (ip(SERVER), addr_of("r"));
    // Its port 80 published: keyed by its own address (the daemon does so on routed networks).
    publish(&mut t, Some(r), PROTO_TCP, 80, "r", 80);
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::DIRECT | UplinkInfo::PUBLISHED).expect("uplink");

    // A connection to it from outside: delivered as sent, its answers leave as they are.
    let out = receive(&mut t, &tcp_in(50000, r, 80, TCP_SYN, 64, UPLINK_MAC));
    assert_eq!((out.reason(), out.event().target), (Reason::RedirectReverseNat, t.ifindex["r"]));
    assert_eq!(out.output, tcp_in(50000, r, 80, TCP_SYN, 63, docker_mac(r)));
    let answer = Ethernet::new(docker_mac(r), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(r, server, PROTO_TCP).packet(&tcp(r, server, 80, 50000, TCP_SYN | TCP_ACK, b"")));
    let out = send(&mut t, "r", &answer);
    assert_eq!(out.reason(), Reason::RedirectNat);
    let mut h = Ipv4::new(r, server, PROTO_TCP);
    h.ttl = 63;
    let routed_answer = Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&h.packet(&tcp(
        r,
        server,
        80,
        50000,
        TCP_SYN | TCP_ACK,
        b"",
    )));
    assert_eq!(out.output, routed_answer, "untranslated");
    // Another port: refused. ICMP: the host's stack delivers it.
    let out = receive(&mut t, &tcp_in(50001, r, 22, TCP_SYN, 64, UPLINK_MAC));
    assert_eq!((out.reason(), out.verdict), (Reason::DropUnsolicited, TC_ACT_SHOT));
    let ping = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(server, r, PROTO_ICMP).packet(&icmp_echo(8, 7, 1, b"ping")));
    assert_eq!(receive(&mut t, &ping).reason(), Reason::PassFromUplink);
    // Its own flows out leave with its own address.
    let out = send(&mut t, "r", &from_endpoint("r", PROTO_UDP, 40000, server, 53));
    assert_eq!(
        out.output,
        Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, r, server, 40000, 53, 63, 8))
    );
}

/// Whether `t` lies within `[lo, hi]`, give or take a clock tick (the datapath reads its clock
/// from a cache that can lag by one; ticks are 10 ms at most).
fn within_a_tick(t: u64, (lo, hi): (u64, u64)) -> bool {
    const TICK: u64 = 10_000_000;
    t + TICK >= lo && t <= hi + TICK
}

#[test]
fn entry_times_are_on_the_collectors_clock_and_follow_it() {
    let mut t = topology(None);
    let server = ip(SERVER);
    let flow = || from_endpoint("a", PROTO_UDP, 40000, server, 53);
    let before = netd::datapath::monotonic_ns();
    assert_eq!(send(&mut t, "a", &flow()).reason(), Reason::RedirectNat);
    let window = (before, netd::datapath::monotonic_ns());
    let entries = t.dp.nat_entries().expect("entries");
    assert_eq!(entries.len(), 2, "one flow, two entries");
    for (k, e) in &entries {
        assert!(within_a_tick(e.created, window), "{k:?} created at {}, not in {window:?}", e.created);
        assert!(within_a_tick(e.last_seen, window), "{k:?} last seen at {}, not in {window:?}", e.last_seen);
    }
    // A packet more than the refresh interval later moves the egress entry's time on, to the
    // clock's new reading (the datapath's cached reading follows the clock).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let before = netd::datapath::monotonic_ns();
    assert_eq!(send(&mut t, "a", &flow()).reason(), Reason::RedirectNat);
    let window = (before, netd::datapath::monotonic_ns());
    let egress = t.dp.nat_entries().expect("entries").into_iter().find(|(k, _)| k.src_addr == wire(addr_of("a")));
    let (_, e) = egress.expect("the egress entry");
    assert!(within_a_tick(e.last_seen, window), "last seen at {}, not in {window:?}", e.last_seen);
    assert!(e.last_seen > e.created, "refreshed");
}

/// A UDP datagram from the server's port `sport` to the uplink's `nat_port`: an answer.
fn udp_to_uplink(sport: u16, nat_port: u16) -> Vec<u8> {
    let (src, dst) = (ip(SERVER), ip(UPLINK_ADDR));
    Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, src, dst, sport, nat_port, 64, 0))
}

/// Changes both entries of the flow of endpoint `from`'s port `sport` (`protocol`) with `edit`.
fn edit_flow(t: &mut Topology, from: &str, protocol: u8, sport: u16, edit: impl Fn(&mut netd_common::NatEntry)) {
    let (addr, port) = (wire(addr_of(from)), sport.to_be());
    for (k, mut e) in t.dp.nat_entries().expect("entries") {
        let egress = k.src_addr == addr && k.src_port == port;
        let ingress = e.addr == addr && e.port == port;
        if k.protocol == protocol && (egress || ingress) {
            edit(&mut e);
            t.dp.nat_set_entry(&k, &e).expect("edit");
        }
    }
}

/// Makes the UDP flow of endpoint `from`'s port `sport` a stream: it started 3 s ago and has
/// just carried a packet (it was answered before).
fn make_stream(t: &mut Topology, from: &str, sport: u16) {
    let now = netd::datapath::monotonic_ns();
    edit_flow(t, from, PROTO_UDP, sport, |e| {
        e.created = now - 3_000_000_000;
        e.last_seen = now;
    });
}

/// `netd nat ls`'s state of endpoint `from`'s flow from port `sport` (`protocol`), if listed.
fn state_of(t: &mut Topology, from: &str, protocol: &str, sport: u16) -> Option<String> {
    let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
    flows.iter().find(|f| f.protocol == protocol && f.inside == (addr_of(from), sport)).map(|f| f.state.clone())
}

#[test]
fn a_full_table_drops_new_flows_and_recovers_when_they_expire() {
    // Room for two flows, both UDP streams (assured: a full table does not evict them).
    let mut t = topology(Some(2));
    let server = ip(SERVER);
    for dport in [1, 2] {
        let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40000 + dport, server, dport));
        assert_eq!(out.reason(), Reason::RedirectNat, "flow {dport}");
        let back = receive(&mut t, &udp_to_uplink(dport, nat_port_of(&out.output)));
        assert_eq!(back.reason(), Reason::RedirectReverseNat);
        make_stream(&mut t, "a", 40000 + dport);
        assert_eq!(state_of(&mut t, "a", "udp", 40000 + dport).as_deref(), Some("stream"));
    }
    let full = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40003, server, 3));
    assert_eq!((full.reason(), full.verdict), (Reason::DropNatTableFull, TC_ACT_SHOT));
    // Live flows keep working while full.
    let live = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40001, server, 1));
    assert_eq!(live.reason(), Reason::RedirectNat);
    // Not expired yet: the collector keeps them, a minute later too (a stream lives 120 s).
    let now = netd::datapath::monotonic_ns();
    assert_eq!(t.dp.nat_collect(now).expect("collect").len(), 0);
    assert_eq!(t.dp.nat_collect(now + 60_000_000_000).expect("collect").len(), 0);
    // After that both are collected, and new flows fit again.
    assert_eq!(t.dp.nat_collect(now + 121_000_000_000).expect("collect").len(), 2);
    assert!(t.dp.nat_entries().expect("entries").is_empty());
    let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, 40003, server, 3));
    assert_eq!(out.reason(), Reason::RedirectNat, "recovered");
}

#[test]
fn a_query_and_its_answer_expire_after_30_s_and_a_stream_after_120_s() {
    let mut t = topology(None);
    let server = ip(SERVER);
    for (sport, dport) in [(40001, 53), (40002, 4500)] {
        let out = send(&mut t, "a", &from_endpoint("a", PROTO_UDP, sport, server, dport));
        let back = receive(&mut t, &udp_to_uplink(dport, nat_port_of(&out.output)));
        assert_eq!(back.reason(), Reason::RedirectReverseNat);
    }
    assert_eq!(state_of(&mut t, "a", "udp", 40001).as_deref(), Some("replied"));
    make_stream(&mut t, "a", 40002);
    assert_eq!(state_of(&mut t, "a", "udp", 40002).as_deref(), Some("stream"));
    let now = netd::datapath::monotonic_ns();
    assert_eq!(t.dp.nat_collect(now + 31_000_000_000).expect("collect").len(), 1, "the query and its answer");
    assert_eq!(state_of(&mut t, "a", "udp", 40001), None);
    assert_eq!(t.dp.nat_collect(now + 121_000_000_000).expect("collect").len(), 1, "the stream");
    assert!(t.dp.nat_entries().expect("entries").is_empty());
}

#[test]
fn the_daemons_timeouts_decide_when_flows_expire_in_the_datapath_and_the_collector() {
    let mut t = topology(None);
    let server = ip(SERVER);
    // a and b each take one of the two NAT ports to the server's port 53 (a query and its
    // answer), then their last packets go 40 s back.
    let mut ports = Vec::new();
    for (from, sport) in [("a", 40000), ("b", 40001)] {
        let out = send(&mut t, from, &from_endpoint(from, PROTO_UDP, sport, server, 53));
        assert_eq!(receive(&mut t, &udp_to_uplink(53, nat_port_of(&out.output))).reason(), Reason::RedirectReverseNat);
        edit_flow(&mut t, from, PROTO_UDP, sport, |e| e.last_seen -= 40_000_000_000);
        ports.push(nat_port_of(&out.output));
    }
    let c_query = from_endpoint("c", PROTO_UDP, 40002, server, 53);
    let now = netd::datapath::monotonic_ns;
    // UDP at 60 s: both live, the datapath has no port for c, the collector takes nothing.
    let long = NatTimeouts { udp: 60, ..NatTimeouts::DEFAULT };
    t.dp.set_nat_timeouts(&long).expect("timeouts");
    assert_eq!(t.dp.nat_timeouts().expect("timeouts"), long);
    assert_eq!(t.dp.nat_table_stats(now()).expect("stats").expired, 0);
    assert_eq!(send(&mut t, "c", &c_query).reason(), Reason::DropNatNoPort);
    let listed = t.dp.nat_flows(now()).expect("flows");
    assert!(listed.iter().all(|f| (15..=20).contains(&f.expires_in_secs)), "60 s after the last packet: {listed:?}");
    // At the default 30 s both have expired: the datapath gives c one of their ports.
    t.dp.set_nat_timeouts(&NatTimeouts::DEFAULT).expect("timeouts");
    assert_eq!(t.dp.nat_table_stats(now()).expect("stats").expired, 2);
    let out = send(&mut t, "c", &c_query);
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert!(ports.contains(&nat_port_of(&out.output)));
    // The collector judges by the same timeouts: at 60 s the remaining one stays, at 10 s it goes.
    t.dp.set_nat_timeouts(&long).expect("timeouts");
    assert!(t.dp.nat_collect(now()).expect("collect").is_empty());
    t.dp.set_nat_timeouts(&NatTimeouts { udp: 10, ..NatTimeouts::DEFAULT }).expect("timeouts");
    assert_eq!(t.dp.nat_collect(now()).expect("collect").len(), 1);
    assert_eq!(t.dp.nat_flows(now()).expect("flows").len(), 1, "c's flow, new");
}

#[test]
fn a_full_table_evicts_a_flow_that_is_not_assured_as_conntrack_early_drop_does() {
    // Room for three UDP flows of a: unanswered (port 40001), a stream (40002), a query and
    // its answer (40003), created in that order.
    let mut t = topology(Some(3));
    let server = ip(SERVER);
    let open = |t: &mut Topology, from: &str, sport: u16| {
        let out = send(t, from, &from_endpoint(from, PROTO_UDP, sport, server, sport));
        (out.reason(), nat_port_of(&out.output))
    };
    let answer = |t: &mut Topology, sport: u16, nat_port: u16| {
        assert_eq!(receive(t, &udp_to_uplink(sport, nat_port)).reason(), Reason::RedirectReverseNat);
    };
    assert_eq!(open(&mut t, "a", 40001).0, Reason::RedirectNat);
    for sport in [40002, 40003] {
        let (reason, port) = open(&mut t, "a", sport);
        assert_eq!(reason, Reason::RedirectNat);
        answer(&mut t, sport, port);
    }
    make_stream(&mut t, "a", 40002);

    // b's first new flow takes the unanswered flow's room (the oldest candidate).
    let (reason, b1) = open(&mut t, "b", 41001);
    assert_eq!(reason, Reason::RedirectNatEvicted);
    assert_eq!(state_of(&mut t, "a", "udp", 40001), None, "the unanswered flow was evicted");
    assert_eq!(t.dp.nat_entries().expect("entries").len(), 6, "both of its entries");
    // Its next passes the stream by and takes the room of the query and its answer.
    answer(&mut t, 41001, b1);
    make_stream(&mut t, "b", 41001);
    let (reason, b2) = open(&mut t, "b", 41002);
    assert_eq!(reason, Reason::RedirectNatEvicted);
    assert_eq!(state_of(&mut t, "a", "udp", 40002).as_deref(), Some("stream"), "a stream stays");
    assert_eq!(state_of(&mut t, "a", "udp", 40003), None, "the query and its answer were evicted");

    // Three streams: nothing to evict, a new flow is refused until one expires.
    answer(&mut t, 41002, b2);
    make_stream(&mut t, "b", 41002);
    assert_eq!(open(&mut t, "b", 41003).0, Reason::DropNatTableFull);
    let stats = t.dp.nat_table_stats(netd::datapath::monotonic_ns()).expect("stats");
    assert_eq!((stats.flows, stats.max_flows, stats.expired), (3, 3, 0));
    assert_eq!(stats.states, [("udp stream".to_owned(), 3)].into());
    assert_eq!((stats.port_min, stats.port_max), (PORT_MIN, PORT_MAX));
    for (from, sport) in [("a", 40002), ("b", 41001), ("b", 41002)] {
        assert_eq!(state_of(&mut t, from, "udp", sport).as_deref(), Some("stream"), "{from}:{sport}");
    }

    // ICMP echo is never assured: once a stream has expired (and was collected), a ping takes
    // its room, and the ping's flow makes room for the next new flow.
    edit_flow(&mut t, "b", PROTO_UDP, 41002, |e| e.last_seen -= 200_000_000_000);
    let stats = t.dp.nat_table_stats(netd::datapath::monotonic_ns()).expect("stats");
    assert_eq!((stats.flows, stats.expired), (2, 1), "an expired flow is counted apart until collected");
    assert_eq!(t.dp.nat_collect(netd::datapath::monotonic_ns()).expect("collect").len(), 1);
    let ping = send(&mut t, "c", &from_endpoint("c", PROTO_ICMP, 7, server, 0));
    assert_eq!(ping.reason(), Reason::RedirectNat, "the expired stream's room");
    assert_eq!(open(&mut t, "b", 41003).0, Reason::RedirectNatEvicted, "the ping's room");
    assert_eq!(t.dp.reason_counter(Reason::RedirectNatEvicted).expect("counter").packets, 3, "evictions are counted");
}

#[test]
fn what_is_never_translated() {
    let mut t = topology(None);
    let server = ip(SERVER);
    // The gateway is the host's.
    let frame = from_endpoint("a", PROTO_UDP, 40000, ip("10.1.0.1"), 53);
    let out = send(&mut t, "a", &frame);
    assert_eq!((out.reason(), &out.output), (Reason::PassToStack, &frame));
    // TTL 1: the stack must answer "time exceeded".
    let src = addr_of("a");
    let mut h = Ipv4::new(src, server, PROTO_UDP);
    h.ttl = 1;
    let frame = Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4).frame(&h.packet(&udp(src, server, 1, 2, b"x")));
    assert_eq!(send(&mut t, "a", &frame).reason(), Reason::PassToStack);
    // A later fragment whose first was not seen: it would leave with a's own address.
    let mut h = Ipv4::new(src, server, PROTO_UDP);
    h.frag = 8;
    let frame = Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4).frame(&h.packet(b"the rest"));
    assert_eq!(send(&mut t, "a", &frame).reason(), Reason::DropNatFragment);
    // ICMP other than echo requests cannot be tracked.
    let frame = Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(src, server, PROTO_ICMP).packet(&icmp_echo(13, 1, 1, b"timestamp")));
    assert_eq!(send(&mut t, "a", &frame).reason(), Reason::DropNatUnsupported);

    // From outside: straight to a container of a masquerading network, unsolicited.
    let frame =
        Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, server, src, 53, 40000, 64, 0));
    let out = receive(&mut t, &frame);
    assert_eq!((out.reason(), out.verdict), (Reason::DropUnsolicited, TC_ACT_SHOT));
    // The same port on the uplink address without a flow, the gateway: the host's, untouched.
    for dst in [ip(UPLINK_ADDR), ip("10.1.0.1")] {
        let frame =
            Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_TCP, server, dst, 80, 40000, 64, 0));
        let out = receive(&mut t, &frame);
        assert_eq!((out.reason(), out.verdict, &out.output), (Reason::PassFromUplink, TC_ACT_OK, &frame), "to {dst}");
    }
    // A later fragment whose first was not translated names nobody: to the uplink's address,
    // the host's (untouched); to a container's, unsolicited.
    for (dst, reason) in [(ip(UPLINK_ADDR), Reason::PassFromUplink), (src, Reason::DropUnsolicited)] {
        let mut later = Ipv4::new(server, dst, PROTO_UDP);
        later.frag = 8;
        let frame = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&later.packet(&[7; 64]));
        let out = receive(&mut t, &frame);
        assert_eq!((out.reason(), &out.output), (reason, &frame), "to {dst}");
    }

    // A ping to the host is the host's.
    let frame = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(server, ip(UPLINK_ADDR), PROTO_ICMP).packet(&icmp_echo(8, 2000, 1, b"ping")));
    assert_eq!(receive(&mut t, &frame).reason(), Reason::PassFromUplink);
}

/// A datagram (`l4`: its whole L4 part) from `src` to `dst` in two fragments, the first
/// carrying `split` bytes of it (a multiple of 8), with identification `id` and `ttl`, each in
/// a frame like `eth`.
#[expect(clippy::too_many_arguments, reason = "each is a header field of the fragments")]
fn fragments(
    eth: &Ethernet,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
    ttl: u8,
    l4: &[u8],
    split: usize,
) -> [Vec<u8>; 2] {
    let mut h = Ipv4::new(src, dst, protocol);
    h.id = id;
    h.ttl = ttl;
    h.frag = 0x2000;
    let first = eth.frame(&h.packet(&l4[..split]));
    h.frag = u16::try_from(split / 8).expect("offset");
    [first, eth.frame(&h.packet(&l4[split..]))]
}

#[test]
fn fragmented_datagrams_are_translated_by_their_first_fragment_both_ways() {
    let mut t = topology(None);
    let (a, r, server, uplink) = (addr_of("a"), addr_of("r"), ip(SERVER), ip(UPLINK_ADDR));
    let payload: Vec<u8> = (0..1600u32).map(|i| i.to_le_bytes()[0]).collect();
    let (from_a, out) =
        (Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4), Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4));
    let (back, to_a) =
        (Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4), Ethernet::new(ROUTER_MAC, docker_mac(a), ETH_P_IPV4));
    for (protocol, sport, dport, id) in [(PROTO_UDP, 40000, 53, 0x1234), (PROTO_ICMP, 77, 0, 0x1235)] {
        // A UDP datagram, or an ICMP echo (type `ty`) whose identifier is the port on the
        // container's side: the source's in a request, the destination's in a reply.
        let body = |src, dst, sport, dport, ty| {
            if protocol == PROTO_UDP {
                udp(src, dst, sport, dport, &payload)
            } else {
                icmp_echo(ty, if ty == 8 { sport } else { dport }, 1, &payload)
            }
        };
        // Out: the first fragment opens the flow, the later one follows it; what leaves is the
        // datagram as the uplink would have sent it, cut the same way (so the checksum, which
        // covers both pieces, is right once reassembled).
        let sent = fragments(&from_a, a, server, protocol, id, 64, &body(a, server, sport, dport, 8), 1000);
        let first = send(&mut t, "a", &sent[0]);
        assert_eq!((first.reason(), first.event().target), (Reason::RedirectNat, t.uplink), "{protocol}");
        let nat_port = nat_port_of(&first.output);
        let want = fragments(&out, uplink, server, protocol, id, 63, &body(uplink, server, nat_port, dport, 8), 1000);
        assert_eq!(first.output, want[0], "{protocol}");
        let later = send(&mut t, "a", &sent[1]);
        assert_eq!(
            (later.reason(), later.verdict, later.event().target),
            (Reason::RedirectNat, TC_ACT_REDIRECT, t.uplink)
        );
        assert_eq!(later.output, want[1], "{protocol}");

        // Back: the answer in fragments, both into a's namespace, restored whole.
        let id = id ^ 0x8000;
        let answer =
            fragments(&back, server, uplink, protocol, id, 64, &body(server, uplink, dport, nat_port, 0), 1000);
        let want = fragments(&to_a, server, a, protocol, id, 63, &body(server, a, dport, sport, 0), 1000);
        for (piece, want) in answer.iter().zip(&want) {
            let got = receive(&mut t, piece);
            assert_eq!((got.reason(), got.event().target), (Reason::RedirectReverseNat, t.ifindex["a"]), "{protocol}");
            assert_eq!(&got.output, want, "{protocol}");
        }
        // Another datagram's later fragment (another identification) is not the flow's.
        let other =
            fragments(&back, server, uplink, protocol, id ^ 1, 64, &body(server, uplink, dport, nat_port, 0), 1000);
        let got = receive(&mut t, &other[1]);
        assert_eq!((got.reason(), &got.output), (Reason::PassFromUplink, &other[1]), "{protocol}");
    }
    // On a network without masquerade a flow is tracked as it is: its fragments are routed
    // by the datapath unchanged but for the TTL and MACs, and so are its answer's (the uplink
    // marked as the daemon marks it while such a network exists).
    t.dp.set_uplink(t.uplink, uplink, UplinkInfo::DIRECT).expect("uplink");
    let from_r = Ethernet::new(docker_mac(r), [0x02, 0x42, 10, 2, 0, 1], ETH_P_IPV4);
    let datagram = udp(r, server, 40000, 53, &payload);
    let sent = fragments(&from_r, r, server, PROTO_UDP, 7, 64, &datagram, 1000);
    let want = fragments(&out, r, server, PROTO_UDP, 7, 63, &datagram, 1000);
    for (piece, want) in sent.iter().zip(&want) {
        let got = send(&mut t, "r", piece);
        assert_eq!((got.reason(), &got.output), (Reason::RedirectNat, want));
    }
    let answer = udp(server, r, 53, 40000, &payload);
    let to_r = Ethernet::new(ROUTER_MAC, docker_mac(r), ETH_P_IPV4);
    let (pieces, want) = (
        fragments(&back, server, r, PROTO_UDP, 8, 64, &answer, 1000),
        fragments(&to_r, server, r, PROTO_UDP, 8, 63, &answer, 1000),
    );
    for (piece, want) in pieces.iter().zip(&want) {
        let got = receive(&mut t, piece);
        assert_eq!((got.reason(), got.event().target, &got.output), (Reason::RedirectReverseNat, t.ifindex["r"], want));
    }
    // A later fragment from r whose first was not seen is routed unchanged by the stack.
    let lost = send(&mut t, "r", &fragments(&from_r, r, server, PROTO_UDP, 9, 64, &datagram, 1000)[1]);
    assert_eq!(lost.reason(), Reason::PassToStack);
    assert_eq!(t.dp.reason_counter(Reason::DropNatFragment).expect("counter").packets, 0, "nothing dropped");
}

/// A TCP segment from endpoint `from` (port `sport`) to the server's port 80 with `flags`.
fn tcp_from(from: &str, sport: u16, flags: u8) -> Vec<u8> {
    tcp_from_to(from, sport, 80, flags)
}

/// A TCP segment from endpoint `from` (port `sport`) to the server's port `dport` with `flags`.
fn tcp_from_to(from: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let (src, dst) = (addr_of(from), ip(SERVER));
    Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(src, dst, PROTO_TCP).packet(&tcp(src, dst, sport, dport, flags, b"")))
}

/// A TCP segment from the server's port 80 to the uplink's `nat_port` with `flags`.
fn tcp_to_uplink(nat_port: u16, flags: u8) -> Vec<u8> {
    let (src, dst) = (ip(SERVER), ip(UPLINK_ADDR));
    Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(src, dst, PROTO_TCP).packet(&tcp(src, dst, 80, nat_port, flags, b"")))
}

/// Makes both entries of every flow of endpoint `name` look quiet for `ns`.
fn age_flows_of(t: &mut Topology, name: &str, ns: u64) {
    let now = netd::datapath::monotonic_ns();
    let addr = u32::from_ne_bytes(addr_of(name).octets());
    for (k, mut e) in t.dp.nat_entries().expect("entries") {
        if k.src_addr == addr || e.addr == addr {
            e.last_seen = now - ns;
            t.dp.nat_set_entry(&k, &e).expect("age");
        }
    }
}

#[test]
fn tcp_state_follows_syn_fin_rst_and_ports_come_back_when_flows_expire() {
    const SYN: u8 = TCP_SYN;
    const SYN_ACK: u8 = TCP_SYN | TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;
    const RST: u8 = TCP_RST;
    let mut t = topology(None);
    let state = |t: &mut Topology, port: u16| {
        let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
        flows.iter().find(|f| f.protocol == "tcp" && f.inside.1 == port).map(|f| f.state.clone())
    };
    // Two connections take both NAT ports.
    let a = nat_port_of(&send(&mut t, "a", &tcp_from("a", 40000, SYN)).output);
    assert_eq!(state(&mut t, 40000).as_deref(), Some("syn-sent"));
    assert_eq!(receive(&mut t, &tcp_to_uplink(a, SYN_ACK)).reason(), Reason::RedirectReverseNat);
    assert_eq!(state(&mut t, 40000).as_deref(), Some("established"));
    let b = nat_port_of(&send(&mut t, "b", &tcp_from("b", 40001, SYN)).output);
    assert_ne!(a, b);

    // a closes (FIN both ways); b is reset by the server.
    assert_eq!(send(&mut t, "a", &tcp_from("a", 40000, FIN_ACK)).reason(), Reason::RedirectNat);
    assert_eq!(state(&mut t, 40000).as_deref(), Some("fin"));
    assert_eq!(receive(&mut t, &tcp_to_uplink(a, FIN_ACK)).reason(), Reason::RedirectReverseNat);
    assert_eq!(state(&mut t, 40000).as_deref(), Some("closed"));
    assert_eq!(receive(&mut t, &tcp_to_uplink(b, RST)).reason(), Reason::RedirectReverseNat);
    assert_eq!(state(&mut t, 40001).as_deref(), Some("closed"));

    // A third connection: closed flows keep their ports (the server may hold them in
    // TIME_WAIT)...
    assert_eq!(send(&mut t, "c", &tcp_from("c", 40002, SYN)).reason(), Reason::DropNatNoPort);
    // ...until they expire: age b's flow past its 10 s, and c takes b's port at once, without
    // waiting for the collector.
    age_flows_of(&mut t, "b", 11_000_000_000);
    let c = send(&mut t, "c", &tcp_from("c", 40002, SYN));
    assert_eq!(c.reason(), Reason::RedirectNat, "an expired flow's port was taken over");
    assert_eq!(nat_port_of(&c.output), b);
    assert_eq!(state(&mut t, 40001), None, "b's flow is gone");

    // a reuses its own port: a new SYN on a closed flow's tuple starts it over, same port.
    let again = send(&mut t, "a", &tcp_from("a", 40000, SYN));
    assert_eq!((again.reason(), nat_port_of(&again.output)), (Reason::RedirectNat, a));
    assert_eq!(state(&mut t, 40000).as_deref(), Some("syn-sent"), "a reopened its flow");

    // The same after a quiet while (as when a client's ports come round): closed again, quiet
    // for 2 s (past the refresh of the next hop, short of expiry), then reused.
    assert_eq!(send(&mut t, "a", &tcp_from("a", 40000, FIN_ACK)).reason(), Reason::RedirectNat);
    age_flows_of(&mut t, "a", 2_000_000_000);
    let again = send(&mut t, "a", &tcp_from("a", 40000, SYN));
    assert_eq!((again.reason(), nat_port_of(&again.output)), (Reason::RedirectNat, a));
    assert_eq!((&again.output[..6], &again.output[6..12]), (&ROUTER_MAC[..], &UPLINK_MAC[..]), "to the next hop");
    assert_eq!(state(&mut t, 40000).as_deref(), Some("syn-sent"), "a reopened its flow after a quiet while");
}

#[test]
fn a_full_table_makes_room_by_evicting_a_closed_or_unanswered_tcp_flow_as_conntrack_does() {
    const SYN: u8 = TCP_SYN;
    const SYN_ACK: u8 = TCP_SYN | TCP_ACK;
    const FIN_ACK: u8 = TCP_FIN | TCP_ACK;
    // Room for two flows: two established connections of a fill it.
    let mut t = topology(Some(2));
    let state = |t: &mut Topology, port: u16| {
        let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
        flows.iter().find(|f| f.protocol == "tcp" && f.inside.1 == port).map(|f| f.state.clone())
    };
    let mut ports = Vec::new();
    for sport in [40000, 40001] {
        let port = nat_port_of(&send(&mut t, "a", &tcp_from("a", sport, SYN)).output);
        assert_eq!(receive(&mut t, &tcp_to_uplink(port, SYN_ACK)).reason(), Reason::RedirectReverseNat);
        ports.push(port);
    }
    // b connects to other server ports: the two NAT ports are free there (the table is full,
    // not the ports).
    let open_port = |t: &mut Topology, sport: u16| {
        let out = send(t, "b", &tcp_from_to("b", sport, sport, SYN));
        (out.reason(), nat_port_of(&out.output))
    };
    let open = |t: &mut Topology, sport: u16| open_port(t, sport).0;
    let refused = |t: &mut Topology, sport| open(t, sport) == Reason::DropNatTableFull;
    assert!(refused(&mut t, 40002), "full of live flows");

    // Half-closed (a sent its FIN): the server may still send, so the flow stays.
    assert_eq!(send(&mut t, "a", &tcp_from("a", 40000, FIN_ACK)).reason(), Reason::RedirectNat);
    assert!(refused(&mut t, 40002), "a half-closed flow is not evicted");

    // Closed both ways: the next new flow takes its room, and the other flow is untouched.
    assert_eq!(receive(&mut t, &tcp_to_uplink(ports[0], FIN_ACK)).reason(), Reason::RedirectReverseNat);
    let (reason, port_40002) = open_port(&mut t, 40002);
    assert_eq!(reason, Reason::RedirectNatEvicted, "a closed flow made room");
    assert_eq!(state(&mut t, 40000), None, "the closed flow was evicted, both entries");
    assert_eq!(t.dp.nat_entries().expect("entries").len(), 4);
    assert_eq!(state(&mut t, 40001).as_deref(), Some("established"));
    assert_eq!(state(&mut t, 40002).as_deref(), Some("syn-sent"));
    // The server answers b (its reply comes from the port b connected to).
    let answer = |t: &mut Topology, sport: u16, port: u16| {
        let (src, dst) = (ip(SERVER), ip(UPLINK_ADDR));
        let syn_ack = Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4)
            .frame(&Ipv4::new(src, dst, PROTO_TCP).packet(&tcp(src, dst, sport, port, SYN_ACK, b"")));
        assert_eq!(receive(t, &syn_ack).reason(), Reason::RedirectReverseNat);
        assert_eq!(state(t, sport).as_deref(), Some("established"));
    };
    answer(&mut t, 40002, port_40002);

    // A reset flow makes room too.
    assert_eq!(receive(&mut t, &tcp_to_uplink(ports[1], TCP_RST)).reason(), Reason::RedirectReverseNat);
    assert_eq!(open(&mut t, 40003), Reason::RedirectNatEvicted);
    assert_eq!(state(&mut t, 40001), None, "the reset flow was evicted");
    assert_eq!(state(&mut t, 40002).as_deref(), Some("established"), "the established one stays");

    // An unanswered connection (SYN sent) is not assured: it makes room too.
    let (reason, port_40004) = open_port(&mut t, 40004);
    assert_eq!(reason, Reason::RedirectNatEvicted);
    assert_eq!(state(&mut t, 40003), None, "the unanswered connection was evicted");

    // Both connections in the table answered (established): nothing to evict, new flows are
    // refused.
    answer(&mut t, 40004, port_40004);
    assert!(refused(&mut t, 40005), "full of established connections");
    assert_eq!(t.dp.reason_counter(Reason::RedirectNatEvicted).expect("counter").packets, 3, "evictions are counted");
}

#[test]
fn packets_with_ip_options_are_rewritten_exactly_too() {
    let mut t = topology(None);
    let (a, server, up) = (addr_of("a"), ip(SERVER), ip(UPLINK_ADDR));
    // A 4-byte option (NOP NOP NOP EOL) moves the UDP header.
    let with_options = |src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, ttl: u8| {
        let mut h = Ipv4::new(src, dst, PROTO_UDP);
        h.ttl = ttl;
        h.options = vec![1, 1, 1, 0];
        h.packet(&udp(src, dst, sport, dport, b"options"))
    };
    let out = send(
        &mut t,
        "a",
        &Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4).frame(&with_options(a, server, 40000, 53, 64)),
    );
    assert_eq!(out.reason(), Reason::RedirectNat);
    let nat_port = u16::from_be_bytes([out.output[38], out.output[39]]);
    assert_eq!(
        out.output,
        Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&with_options(up, server, nat_port, 53, 63))
    );
    let back = receive(
        &mut t,
        &Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&with_options(server, up, 53, nat_port, 64)),
    );
    assert_eq!(back.reason(), Reason::RedirectReverseNat);
    assert_eq!(
        back.output,
        Ethernet::new(ROUTER_MAC, docker_mac(a), ETH_P_IPV4).frame(&with_options(server, a, 53, 40000, 63))
    );
}

/// A TCP segment from the server's (the client's, here) `sport` to `dst:dport` with `flags`.
fn tcp_in(sport: u16, dst: Ipv4Addr, dport: u16, flags: u8, ttl: u8, dst_mac: [u8; 6]) -> Vec<u8> {
    let src = ip(SERVER);
    let mut h = Ipv4::new(src, dst, PROTO_TCP);
    h.ttl = ttl;
    Ethernet::new(ROUTER_MAC, dst_mac, ETH_P_IPV4).frame(&h.packet(&tcp(src, dst, sport, dport, flags, b"")))
}

/// Publishes `protocol` port `host_port` (on `on`, or every uplink address) to `to:port`.
fn publish(t: &mut Topology, on: Option<Ipv4Addr>, protocol: u8, host_port: u16, to: &str, port: u16) {
    publish_with(t, on, protocol, (host_port, 0), to, port);
}

/// [`publish`] with the entry's `PublishedPort` flags: `(host_port, flags)`.
fn publish_with(t: &mut Topology, on: Option<Ipv4Addr>, protocol: u8, at: (u16, u16), to: &str, port: u16) {
    let (host_port, flags) = at;
    let key = netd_common::PublishedKey { addr: on.map_or(0, wire), port: host_port.to_be(), protocol, pad: 0 };
    let value = netd_common::PublishedPort {
        addr: wire(addr_of(to)),
        port: port.to_be(),
        flags,
        ifindex: t.ifindex[to],
        mac: docker_mac(addr_of(to)),
        pad2: [0; 2],
    };
    t.dp.set_published(&key, &value).expect("publish");
    let ep = t.dp.endpoints().expect("endpoints").into_iter().find(|e| e.ifindex == t.ifindex[to]).expect("endpoint");
    t.dp.set_endpoint(&EndpointInfo { flags: ep.flags | EndpointInfo::PUBLISHED, ..ep }).expect("endpoint");
}

#[test]
fn a_published_port_takes_connections_from_outside_to_the_container_and_its_answers_back() {
    let mut t = topology(None);
    let (server, uplink, a, r) = (ip(SERVER), ip(UPLINK_ADDR), addr_of("a"), addr_of("r"));
    publish(&mut t, None, PROTO_TCP, 8080, "a", 80);
    // Published, but the uplinks are not marked yet: the host's, untouched (no lookup).
    let syn = tcp_in(50000, uplink, 8080, TCP_SYN, 64, UPLINK_MAC);
    let out = receive(&mut t, &syn);
    assert_eq!((out.reason(), out.verdict, &out.output), (Reason::PassFromUplink, TC_ACT_OK, &syn));
    t.dp.set_uplink(t.uplink, uplink, UplinkInfo::PUBLISHED).expect("uplink");

    // The client's SYN to uplink:8080 goes to a:80, rewritten exactly, into a's namespace.
    let out = receive(&mut t, &syn);
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectReverseNat, TC_ACT_REDIRECT));
    assert_eq!(out.event().target, t.ifindex["a"]);
    assert_eq!(out.output, tcp_in(50000, a, 80, TCP_SYN, 63, docker_mac(a)), "the client's address stays");
    // a's answer leaves as uplink:8080, exactly.
    let syn_ack = Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(a, server, PROTO_TCP).packet(&tcp(a, server, 80, 50000, TCP_SYN | TCP_ACK, b"")));
    let out = send(&mut t, "a", &syn_ack);
    assert_eq!((out.reason(), out.verdict), (Reason::RedirectNat, TC_ACT_REDIRECT));
    let expected = Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&{
        let mut h = Ipv4::new(uplink, server, PROTO_TCP);
        h.ttl = 63;
        h.packet(&tcp(uplink, server, 8080, 50000, TCP_SYN | TCP_ACK, b""))
    });
    assert_eq!(out.output, expected);
    // The client's next segments follow the flow.
    let ack = receive(&mut t, &tcp_in(50000, uplink, 8080, TCP_ACK, 64, UPLINK_MAC));
    assert_eq!(
        (ack.reason(), ack.output),
        (Reason::RedirectReverseNat, tcp_in(50000, a, 80, TCP_ACK, 63, docker_mac(a)))
    );
    let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!((f.inside, f.outside, f.remote), ((a, 80), (uplink, 8080), (server, 50000)));
    assert_eq!((f.state.as_str(), f.inbound), ("established", true), "{f:?}");

    // What opens nothing: a segment without SYN (no flow), another port, another protocol.
    for frame in [
        tcp_in(50001, uplink, 8080, TCP_ACK, 64, UPLINK_MAC),
        tcp_in(50001, uplink, 8080, TCP_SYN | TCP_ACK, 64, UPLINK_MAC),
        tcp_in(50001, uplink, 8081, TCP_SYN, 64, UPLINK_MAC),
        Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, server, uplink, 50001, 8080, 64, 0)),
    ] {
        let out = receive(&mut t, &frame);
        assert_eq!((out.reason(), out.verdict, &out.output), (Reason::PassFromUplink, TC_ACT_OK, &frame));
    }

    // UDP published on the uplink's address, to r, on a network that does not masquerade:
    // r's answer still leaves as the published port (r is marked as publishing).
    publish(&mut t, Some(uplink), PROTO_UDP, 5353, "r", 53);
    let query =
        Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, server, uplink, 50002, 5353, 64, 0));
    let out = receive(&mut t, &query);
    assert_eq!(out.reason(), Reason::RedirectReverseNat);
    assert_eq!(
        out.output,
        Ethernet::new(ROUTER_MAC, docker_mac(r), ETH_P_IPV4).frame(&packet(PROTO_UDP, server, r, 50002, 53, 63, 0))
    );
    let answer = from_endpoint("r", PROTO_UDP, 53, server, 50002);
    let out = send(&mut t, "r", &answer);
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert_eq!(
        out.output,
        Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, uplink, server, 5353, 50002, 63, 8))
    );
    // Reported while `netd monitor --type nat` watches, as the container answers it and as
    // the outside sees it.
    t.dp.set_nat_events(true).expect("reports on");
    let query =
        Ethernet::new(ROUTER_MAC, UPLINK_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, server, uplink, 50004, 5353, 64, 0));
    let out = receive(&mut t, &query);
    let expected = NatEvent {
        kind: EVENT_KIND_NAT_NEW,
        reason: Reason::RedirectReverseNat as u8,
        pad: 0,
        ifindex: t.uplink,
        tuple: Ipv4Tuple::new(wire(r), wire(server), 53u16.to_be(), 50004u16.to_be(), PROTO_UDP),
        nat_addr: wire(uplink),
        nat_port: 5353u16.to_be(),
        pad2: 0,
    };
    assert_eq!(out.nat_events, vec![expected]);
    t.dp.set_nat_events(false).expect("reports off");
    // r's own traffic to the outside leaves with its own address (it does not masquerade).
    let out = send(&mut t, "r", &from_endpoint("r", PROTO_UDP, 40000, server, 53));
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert_eq!(
        out.output,
        Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, r, server, 40000, 53, 63, 8))
    );

    // Unpublished: a new connection is the host's; the live one goes on.
    t.dp.remove_published(&netd_common::PublishedKey { addr: 0, port: 8080u16.to_be(), protocol: PROTO_TCP, pad: 0 })
        .expect("unpublish");
    let syn = tcp_in(50003, uplink, 8080, TCP_SYN, 64, UPLINK_MAC);
    assert_eq!(receive(&mut t, &syn).reason(), Reason::PassFromUplink);
    let ack = receive(&mut t, &tcp_in(50000, uplink, 8080, TCP_ACK, 64, UPLINK_MAC));
    assert_eq!(ack.reason(), Reason::RedirectReverseNat);
}

#[test]
fn a_published_port_is_reached_on_every_address_of_the_host_and_only_there() {
    let mut t = topology(None);
    let (server, uplink) = (ip(SERVER), ip(UPLINK_ADDR));
    t.dp.set_uplink(t.uplink, uplink, UplinkInfo::PUBLISHED).expect("uplink");
    // Every address of the host, as Docker's `--dst-type LOCAL`: a second one on the uplink
    // reaches b's published port, and b answers as that address; an address the host routes
    // elsewhere, or a container's, is not the host's; an address the host had and no longer
    // has neither.
    t.host.ip(&["addr", "add", "10.99.0.5/24", "dev", "up0"]);
    let second = ip("10.99.0.5");
    // The daemon lists the host's addresses every 2 s; here, the test does.
    t.dp.set_host_addrs(&[uplink, second, ip("10.1.0.1")]).expect("host addresses");
    let b = addr_of("b");
    publish(&mut t, None, PROTO_TCP, 9090, "b", 80);
    let out = receive(&mut t, &tcp_in(50010, second, 9090, TCP_SYN, 64, UPLINK_MAC));
    assert_eq!(
        (out.reason(), out.output),
        (Reason::RedirectReverseNat, tcp_in(50010, b, 80, TCP_SYN, 63, docker_mac(b)))
    );
    let syn_ack = Ethernet::new(docker_mac(b), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(b, server, PROTO_TCP).packet(&tcp(b, server, 80, 50010, TCP_SYN | TCP_ACK, b"")));
    let out = send(&mut t, "b", &syn_ack);
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert_eq!(out.output[14 + 12..14 + 16], second.octets(), "answered as the address it was reached on");
    // The uplinks changing keep that flow while the host has the address, not after.
    let uplinks = [ip("10.99.0.77")];
    assert!(t.dp.nat_forget_unless_outside_in(&uplinks, &[uplink, second]).expect("forget").is_empty());
    let gone = t.dp.nat_forget_unless_outside_in(&uplinks, &[uplink]).expect("forget");
    assert_eq!(gone.iter().map(|(k, _)| k.src_addr).collect::<Vec<_>>(), [wire(b)], "b's, once the address went");
    t.dp.set_host_addrs(&[uplink, ip("10.1.0.1")]).expect("host addresses");
    for (dst, reason) in [
        (ip("10.99.0.77"), Reason::PassFromUplink),
        (addr_of("c"), Reason::DropUnsolicited),
        (second, Reason::PassFromUplink),
    ] {
        let frame = tcp_in(50011, dst, 9090, TCP_SYN, 64, UPLINK_MAC);
        let out = receive(&mut t, &frame);
        assert_eq!(out.reason(), reason, "to {dst}");
        if reason == Reason::PassFromUplink {
            assert_eq!(out.output, frame, "untouched");
        }
    }
}

/// What does not fit the uplink's MTU (here 1400) is not sent by the datapath. With DF it goes
/// to the stack untouched, which answers "fragmentation needed" (path MTU discovery). Without,
/// it leaves in fragments as through Docker's path: translated, to the stack, which cuts them
/// (`pass-nat-to-stack`), while the daemon says the stack takes translated packets from the
/// bridges; else it is dropped (`drop-nat-frag-needed`), and no flow is made for it. On a
/// network without masquerade it goes to the stack as it is. A known flow weighs its packets as
/// a new one does, a packet that fits exactly goes, and fragments are weighed one by one.
#[test]
fn packets_too_big_for_the_uplink_go_to_the_stack_translated_without_df_and_untouched_with() {
    let mut t = topology(None);
    t.host.ip(&["link", "set", "up0", "mtu", "1400"]);
    let (server, uplink) = (ip(SERVER), ip(UPLINK_ADDR));
    // A UDP datagram from `from`'s port 40100 to `dport` with `payload` bytes, DF or not (an IP
    // packet of 28 + `payload` bytes).
    let datagram = |from: &str, dport: u16, payload: usize, df: bool| {
        let src = addr_of(from);
        let mut h = Ipv4::new(src, server, PROTO_UDP);
        h.frag = if df { 0x4000 } else { 0 };
        let l4 = udp(src, server, 40100, dport, &vec![7; payload]);
        Ethernet::new(docker_mac(src), GATEWAY_MAC, ETH_P_IPV4).frame(&h.packet(&l4))
    };
    // Until the daemon says the stack takes them, translated packets too big are dropped.
    for (from, what, payload, df, reason) in [
        ("a", "a new flow, too big, DF", 1400, true, Reason::PassToStack),
        ("a", "a new flow, too big", 1400, false, Reason::DropNatFragNeeded),
        ("a", "a new flow", 100, true, Reason::RedirectNat),
        ("a", "known, too big, DF", 1373, true, Reason::PassToStack),
        ("a", "known, too big", 1373, false, Reason::DropNatFragNeeded),
        ("a", "known, exactly the MTU", 1372, true, Reason::RedirectNat),
        ("r", "no masquerade, a new flow, too big", 1400, false, Reason::PassToStack),
        ("r", "no masquerade, known", 100, false, Reason::RedirectNat),
        ("r", "no masquerade, known, too big", 1373, false, Reason::PassToStack),
    ] {
        let frame = datagram(from, 53, payload, df);
        let out = send(&mut t, from, &frame);
        assert_eq!(out.reason(), reason, "{what}");
        if reason != Reason::RedirectNat {
            assert_eq!(out.output, frame, "{what}: untouched");
        }
    }
    let flows = t.dp.nat_flows(netd::datapath::monotonic_ns()).expect("flows");
    assert_eq!(flows.len(), 2, "a's flow, made by the packet that fit, and r's: {flows:?}");

    // Once it does, they go to it translated: the uplink's address and the flow's port, the
    // TTL and MACs as they came (the stack routes them, to the bridge's MAC). A new flow's
    // first packet made the flow, whose packets that fit are redirected as any.
    t.dp.set_nat_stack_fragments(true).expect("flag");
    // What the stack gets: `payload` bytes from the uplink's address and `nat_port`, TTL 64.
    let for_stack = |nat_port: u16, dport: u16, payload: usize| {
        let l4 = udp(uplink, server, nat_port, dport, &vec![7; payload]);
        Ethernet::new(docker_mac(addr_of("a")), GATEWAY_MAC, ETH_P_IPV4)
            .frame(&Ipv4::new(uplink, server, PROTO_UDP).packet(&l4))
    };
    let first = send(&mut t, "a", &datagram("a", 54, 1400, false));
    assert_eq!(first.reason(), Reason::PassNatToStack, "a new flow, too big");
    let nat_port = nat_port_of(&first.output);
    assert!((PORT_MIN..=PORT_MAX).contains(&nat_port), "a NAT port: {nat_port}");
    assert_eq!(first.output, for_stack(nat_port, 54, 1400));
    let fits = send(&mut t, "a", &datagram("a", 54, 100, false));
    assert_eq!((fits.reason(), fits.output), (Reason::RedirectNat, translated_udp(nat_port, 54, 100)));
    let again = send(&mut t, "a", &datagram("a", 54, 1373, false));
    assert_eq!((again.reason(), again.output), (Reason::PassNatToStack, for_stack(nat_port, 54, 1373)), "known");
    let frame = datagram("a", 54, 1373, true);
    assert_eq!(send(&mut t, "a", &frame).output, frame, "with DF: untouched");
    let frame = datagram("r", 53, 1373, false);
    let out = send(&mut t, "r", &frame);
    assert_eq!((out.reason(), out.output), (Reason::PassToStack, frame), "no masquerade: as it came");

    // Fragments, weighed one by one: a too big first one goes to the stack translated and
    // leaves the flow for the later one, which fits and follows it; then a datagram whose
    // first fits and whose later one does not.
    let a = addr_of("a");
    let (from_a, out) =
        (Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4), Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4));
    for (id, len, split, verdicts) in [
        (0x4321, 2000, 1480, [Reason::PassNatToStack, Reason::RedirectNat]),
        (0x4322, 2900, 1000, [Reason::RedirectNat, Reason::PassNatToStack]),
    ] {
        let payload = vec![9u8; len];
        let sent = fragments(&from_a, a, server, PROTO_UDP, id, 64, &udp(a, server, 40100, 54, &payload), split);
        let l4 = udp(uplink, server, nat_port, 54, &payload);
        let (to_stack, redirected) = (
            fragments(&from_a, uplink, server, PROTO_UDP, id, 64, &l4, split),
            fragments(&out, uplink, server, PROTO_UDP, id, 63, &l4, split),
        );
        for (i, verdict) in verdicts.into_iter().enumerate() {
            let got = send(&mut t, "a", &sent[i]);
            let want = if verdict == Reason::PassNatToStack { &to_stack[i] } else { &redirected[i] };
            assert_eq!((got.reason(), &got.output), (verdict, want), "datagram {id:#x}, fragment {i}");
        }
    }
    assert_eq!(t.dp.reason_counter(Reason::PassNatToStack).expect("counter").packets, 4);
    assert_eq!(t.dp.reason_counter(Reason::DropNatFragNeeded).expect("counter").packets, 2, "only before");
}

/// A UDP datagram translated for the uplink: from its address and `nat_port` to the server's
/// `dport`, `payload` bytes of 7 (TTL 63, MACs of the uplink and the next hop).
fn translated_udp(nat_port: u16, dport: u16, payload: usize) -> Vec<u8> {
    let (uplink, server) = (ip(UPLINK_ADDR), ip(SERVER));
    let l4 = udp(uplink, server, nat_port, dport, &vec![7; payload]);
    let mut h = Ipv4::new(uplink, server, PROTO_UDP);
    h.ttl = 63;
    Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&h.packet(&l4))
}

/// A port published at a container's own address for its network's trusted interfaces only
/// (`trusted_host_interfaces`): a SYN from an uplink the network does not trust is unsolicited;
/// from one it trusts, it opens an untranslated flow to the container.
#[test]
fn a_port_published_for_trusted_interfaces_is_reached_from_those_only() {
    let mut t = topology(None);
    let b = addr_of("b");
    t.dp.set_uplink(t.uplink, ip(UPLINK_ADDR), UplinkInfo::PUBLISHED).expect("uplink");
    publish_with(&mut t, Some(b), PROTO_TCP, (80, netd_common::PublishedPort::TRUSTED_ONLY), "b", 80);
    let syn = tcp_in(50020, b, 80, TCP_SYN, 64, UPLINK_MAC);
    assert_eq!(receive(&mut t, &syn).reason(), Reason::DropUnsolicited, "not trusted");
    // b's network (id 1) trusts the uplink; another network trusting it changes nothing.
    t.dp.set_trusted(&[(2, t.uplink)]).expect("trusted");
    assert_eq!(receive(&mut t, &syn).reason(), Reason::DropUnsolicited, "another network's trust");
    t.dp.set_trusted(&[(1, t.uplink), (2, t.uplink)]).expect("trusted");
    assert_eq!(t.dp.trusted().expect("listed").len(), 2);
    let out = receive(&mut t, &syn);
    assert_eq!(
        (out.reason(), out.output),
        (Reason::RedirectReverseNat, tcp_in(50020, b, 80, TCP_SYN, 63, docker_mac(b))),
        "to the container, untranslated"
    );
    t.dp.set_trusted(&[]).expect("trusted");
    assert!(t.dp.trusted().expect("listed").is_empty());
    let syn = tcp_in(50021, b, 80, TCP_SYN, 64, UPLINK_MAC);
    assert_eq!(receive(&mut t, &syn).reason(), Reason::DropUnsolicited, "trusted no more");
}

#[test]
fn a_guarded_interface_tracks_what_leaves_by_it_untranslated_and_drops_the_unasked() {
    let mut t = topology(None);
    // No address of netd's (none, or left out by `--uplink`): guarded.
    t.dp.set_uplink(t.uplink, Ipv4Addr::UNSPECIFIED, UplinkInfo::GUARD).expect("guard");
    let server = ip(SERVER);
    let to = |dst: Ipv4Addr, protocol: u8, sport: u16, dport: u16, ttl: u8, dst_mac: [u8; 6]| {
        from_server(dst, protocol, (sport, dport), ttl, dst_mac)
    };
    // Out by it, from a masquerading network ("a") and from one without masquerade ("r"):
    // untranslated (there is no address to masquerade with), as the stack sent it before, but
    // tracked, so that the replies come in.
    for name in ["a", "r"] {
        let src = addr_of(name);
        for (protocol, dport) in [(PROTO_TCP, 80), (PROTO_UDP, 53), (PROTO_ICMP, 0)] {
            let out = send(&mut t, name, &from_endpoint(name, protocol, 40000, server, dport));
            let routed = Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4)
                .frame(&packet(protocol, src, server, 40000, dport, 63, 8));
            assert_eq!((out.reason(), out.verdict, &out.output), (Reason::RedirectNat, TC_ACT_REDIRECT, &routed));
            let back = receive(&mut t, &to(src, protocol, dport, 40000, 64, UPLINK_MAC));
            assert_eq!((back.reason(), back.event().target), (Reason::RedirectReverseNat, t.ifindex[name]));
            assert_eq!(back.output, to(src, protocol, dport, 40000, 63, docker_mac(src)), "{name} {protocol}");
        }
    }
    // Unasked, nothing reaches a container at its own address, masquerading or not.
    for name in ["a", "r"] {
        for (protocol, sport, dport) in [(PROTO_TCP, 1234, 22), (PROTO_UDP, 1234, 40001), (PROTO_ICMP, 0, 77)] {
            let out = receive(&mut t, &to(addr_of(name), protocol, sport, dport, 64, UPLINK_MAC));
            assert_eq!((out.reason(), out.verdict), (Reason::DropUnsolicited, TC_ACT_SHOT), "{name} {protocol}");
        }
    }
    // The host's own traffic passes untouched.
    let own = to(ip(UPLINK_ADDR), PROTO_UDP, 1234, 5353, 64, UPLINK_MAC);
    let out = receive(&mut t, &own);
    assert_eq!((out.reason(), out.verdict, &out.output), (Reason::PassFromUplink, TC_ACT_OK, &own));
    // A port published on the host's addresses is reached through it, and answered back.
    t.dp.set_host_addrs(&[ip(UPLINK_ADDR)]).expect("host addresses");
    publish(&mut t, None, PROTO_TCP, 8080, "a", 80);
    t.dp.set_uplink(t.uplink, Ipv4Addr::UNSPECIFIED, UplinkInfo::GUARD | UplinkInfo::PUBLISHED).expect("guard");
    let a = addr_of("a");
    let out = receive(&mut t, &tcp_in(50000, ip(UPLINK_ADDR), 8080, TCP_SYN, 64, UPLINK_MAC));
    assert_eq!((out.reason(), out.event().target), (Reason::RedirectReverseNat, t.ifindex["a"]));
    assert_eq!(out.output, tcp_in(50000, a, 80, TCP_SYN, 63, docker_mac(a)));
    let syn_ack = Ethernet::new(docker_mac(a), GATEWAY_MAC, ETH_P_IPV4)
        .frame(&Ipv4::new(a, server, PROTO_TCP).packet(&tcp(a, server, 80, 50000, TCP_SYN | TCP_ACK, b"")));
    let out = send(&mut t, "a", &syn_ack);
    assert_eq!(out.reason(), Reason::RedirectNat);
    assert_eq!(&out.output[14 + 12..14 + 16], &ip(UPLINK_ADDR).octets(), "answered as the host's address");

    // A network with an address of its own (`host_ipv4`) masquerades with it through a guarded
    // interface too, as Docker's SNAT rule does through any, and the reply comes back.
    let own = ip("10.99.0.50");
    masquerade_with(&mut t, own);
    t.dp.set_uplink(t.uplink, Ipv4Addr::UNSPECIFIED, UplinkInfo::GUARD | UplinkInfo::SNAT_ADDRS).expect("guard");
    let out = send(&mut t, "b", &from_endpoint("b", PROTO_UDP, 40000, server, 53));
    let nat_port = nat_port_of(&out.output);
    let expected =
        Ethernet::new(UPLINK_MAC, ROUTER_MAC, ETH_P_IPV4).frame(&packet(PROTO_UDP, own, server, nat_port, 53, 63, 8));
    assert_eq!((out.reason(), &out.output), (Reason::RedirectNat, &expected));
    let back = receive(&mut t, &to(own, PROTO_UDP, 53, nat_port, 64, UPLINK_MAC));
    assert_eq!((back.reason(), back.event().target), (Reason::RedirectReverseNat, t.ifindex["b"]));
    let b = addr_of("b");
    assert_eq!(back.output, to(b, PROTO_UDP, 53, 40000, 63, docker_mac(b)));
}
