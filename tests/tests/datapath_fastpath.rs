//! `netd_from_container` under `BPF_PROG_TEST_RUN` with seeded endpoint and network maps: every
//! verdict of the fast path and its policy (redirect target, pass to stack or bridge, each drop
//! reason), with crafted packets. Frames "arrive" on veths of a private namespace, whose
//! ifindexes the maps name.

use std::net::Ipv4Addr;

use netd::datapath::{Datapath, LoadOptions};
use netd_common::{EndpointInfo, NetworkFlags, NetworkInfo, Reason, EVENT_KIND_DROP, EVENT_KIND_TRACE};
use netd_tests::{
    bpf::{
        endpoint_on_24, from_container_on, from_container_repeated, set_traced, to_container, Outcome, TC_ACT_OK,
        TC_ACT_SHOT,
    },
    netns::{Link, NetNs},
    packet::{
        arp_request, docker_mac, icmp_echo, tcp, udp, Ethernet, Ipv4, ETH_P_ARP, ETH_P_IPV4, PROTO_ICMP, PROTO_TCP,
        PROTO_UDP,
    },
};

const TC_ACT_REDIRECT: u32 = 7;

/// Endpoints of the seeded topology: name, address, network.
const ENDPOINTS: [(&str, &str, u32); 5] = [
    ("a", "10.1.0.2", NET1),
    ("b", "10.1.0.3", NET1),
    ("c", "10.2.0.2", NET2),
    ("d", "10.2.0.3", NET2),
    ("i", "10.3.0.2", NET3),
];
const NET1: u32 = 1; // 10.1.0.0/24, icc on
const NET2: u32 = 2; // 10.2.0.0/24, icc off
const NET3: u32 = 3; // 10.3.0.0/24, internal

struct Topology {
    dp: Datapath,
    ns: NetNs,
    _links: Vec<Link>,
    /// ifindex of each endpoint's "host veth", by name.
    ifindex: std::collections::BTreeMap<&'static str, u32>,
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn wire(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

/// A fresh namespace with a veth per endpoint, and a datapath whose maps know them, traced
/// (every packet reports its verdict). Dropped (namespace and links removed) at the end of each
/// test.
fn topology() -> Topology {
    topology_with(true)
}

/// [`topology`], traced at load time (`trace`) or, as the daemon loads it, not.
fn topology_with(trace: bool) -> Topology {
    let ns = NetNs::new("ndt-dp");
    let mut links = Vec::new();
    let mut ifindex = std::collections::BTreeMap::new();
    let mut dp = Datapath::load(&LoadOptions { trace, pin_dir: None, ..LoadOptions::default() }).expect("load");
    let nets = [
        (NET1, "10.1.0.0", NetworkFlags::ICC),
        (NET2, "10.2.0.0", 0),
        (NET3, "10.3.0.0", NetworkFlags::ICC | NetworkFlags::INTERNAL),
    ];
    for (id, subnet, flags) in nets {
        let gw = ip(&subnet.replace(".0.0", ".0.1"));
        dp.set_network(ip(subnet), 24, &NetworkInfo { network: id, gateway: wire(gw), flags, snat_addr: 0 })
            .expect("network");
    }
    for (slot, (name, addr, net)) in (1u32..).zip(ENDPOINTS) {
        let host = format!("h{name}");
        links.push(Link::veth(&ns, &host, &ns, &format!("p{name}")));
        let index = ns.ifindex(&host);
        let (subnet, flags) = nets.iter().find(|n| n.0 == net).map(|n| (ip(n.1), n.2)).expect("net");
        dp.set_endpoint(&endpoint_on_24(index, ip(addr), net, flags, subnet, slot)).expect("endpoint");
        ifindex.insert(name, index);
    }
    Topology { dp, ns, _links: links, ifindex }
}

/// Runs `frame` from endpoint `from` inside the topology's namespace.
fn send(t: &mut Topology, from: &str, frame: &[u8]) -> Outcome {
    let ifindex = t.ifindex[from];
    let Topology { dp, ns, .. } = t;
    ns.run(|| from_container_on(dp, ifindex, frame))
}

/// The MAC of endpoint `name` (Docker's, from its address).
fn own_mac(name: &str) -> [u8; 6] {
    let addr = ENDPOINTS.iter().find(|e| e.0 == name).expect("endpoint").1;
    docker_mac(ip(addr))
}

/// A frame from the holder of `src`'s MAC (Docker's, from the address).
fn ipv4_frame(src: &str, dst: &str, dst_mac: [u8; 6], protocol: u8) -> Vec<u8> {
    ipv4_frame_from(docker_mac(ip(src)), src, dst, dst_mac, protocol)
}

fn ipv4_frame_from(src_mac: [u8; 6], src: &str, dst: &str, dst_mac: [u8; 6], protocol: u8) -> Vec<u8> {
    let (s, d) = (ip(src), ip(dst));
    let l4 = match protocol {
        PROTO_TCP => tcp(s, d, 40000, 80, 0x02, b"hi"),
        PROTO_UDP => udp(s, d, 5000, 53, b"q"),
        _ => icmp_echo(8, 7, 1, b"ping"),
    };
    Ethernet::new(src_mac, dst_mac, ETH_P_IPV4).frame(&Ipv4::new(s, d, protocol).packet(&l4))
}

/// Sends an IPv4 frame from endpoint `from` (its own MAC, source address `src`) to `dst`,
/// expecting `reason`.
fn expect(t: &mut Topology, from: &str, src: &str, dst: &str, reason: Reason) -> Outcome {
    let frame = ipv4_frame_from(own_mac(from), src, dst, docker_mac(ip(dst)), PROTO_UDP);
    let out = send(t, from, &frame);
    assert_eq!(out.reason(), reason, "{from} ({src}) -> {dst}");
    let expected = match reason {
        Reason::RedirectPeer => TC_ACT_REDIRECT,
        r if r.is_drop() => TC_ACT_SHOT,
        _ => TC_ACT_OK,
    };
    assert_eq!(out.verdict, expected, "{from} -> {dst}: TC action");
    out
}

#[test]
fn same_network_unicast_is_redirected_into_the_peer() {
    let mut t = topology();
    for protocol in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
        let frame = ipv4_frame("10.1.0.2", "10.1.0.3", docker_mac(ip("10.1.0.3")), protocol);
        let out = send(&mut t, "a", &frame);
        assert_eq!(out.reason(), Reason::RedirectPeer);
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        assert_eq!(out.event().target, t.ifindex["b"], "redirected to b's host veth");
        assert_eq!(out.output, frame, "nothing rewritten when the MAC is already b's");
    }
    // Endpoint "a" has counter slot 1 (seeding order).
    let forwarded = |t: &Topology| t.dp.endpoint_counters(1).expect("counters").counters.forwarded.packets;
    let before = forwarded(&t);
    expect(&mut t, "a", "10.1.0.2", "10.1.0.3", Reason::RedirectPeer);
    assert_eq!(forwarded(&t), before + 1, "per-endpoint counter of the sender");
}

#[test]
fn a_frame_addressed_to_another_mac_gets_the_peers_mac() {
    let mut t = topology();
    let gateway_mac = [0x02, 0x42, 0xaa, 0xbb, 0xcc, 0xdd];
    let frame = ipv4_frame("10.1.0.2", "10.1.0.3", gateway_mac, PROTO_TCP);
    let out = send(&mut t, "a", &frame);
    assert_eq!(out.reason(), Reason::RedirectPeer);
    assert_eq!(out.output[..6], docker_mac(ip("10.1.0.3")), "destination MAC rewritten");
    assert_eq!(out.output[6..], frame[6..], "the rest is untouched");
}

#[test]
fn the_hosts_unicast_to_an_endpoint_skips_the_bridge() {
    let mut t = topology();
    let bridge_mac = [0x02, 0x42, 0xaa, 0xbb, 0xcc, 0xdd];
    let from_host =
        |dst: &str, dst_mac: [u8; 6], protocol: u8| ipv4_frame_from(bridge_mac, "10.1.0.1", dst, dst_mac, protocol);
    for (dst, name) in [("10.1.0.3", "b"), ("10.2.0.2", "c"), ("10.3.0.2", "i")] {
        for protocol in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
            let frame = from_host(dst, docker_mac(ip(dst)), protocol);
            let out = t.ns.run(|| to_container(&mut t.dp, &frame));
            assert_eq!(out.reason(), Reason::RedirectFromHost, "to {dst}");
            assert_eq!(out.verdict, TC_ACT_REDIRECT, "to {dst}");
            assert_eq!(out.event().target, t.ifindex[name], "to {name}'s host veth");
            assert_eq!(out.output, frame, "nothing rewritten");
        }
    }
    // The bridge keeps everything else: an unknown address, a MAC that is not the endpoint's,
    // broadcast, ARP, IPv6.
    let others = [
        from_host("10.1.0.99", docker_mac(ip("10.1.0.99")), PROTO_UDP),
        from_host("10.1.0.3", docker_mac(ip("10.1.0.2")), PROTO_UDP),
        from_host("10.1.0.3", [0xff; 6], PROTO_UDP),
        Ethernet::new(bridge_mac, [0xff; 6], ETH_P_ARP).frame(&arp_request(bridge_mac, ip("10.1.0.1"), ip("10.1.0.3"))),
        Ethernet::new(bridge_mac, docker_mac(ip("10.1.0.3")), 0x86dd).frame(&[0x60; 40]),
    ];
    let before = netd_tests::bpf::reason_count(&t.dp, Reason::RedirectFromHost).packets;
    for frame in others {
        let out = t.ns.run(|| to_container(&mut t.dp, &frame));
        assert_eq!((out.verdict, out.events.len()), (TC_ACT_OK, 0), "{frame:02x?}");
        assert_eq!(out.output, frame, "untouched");
    }
    assert_eq!(netd_tests::bpf::reason_count(&t.dp, Reason::RedirectFromHost).packets, before, "not counted");
}

/// Marks endpoint `name` traced or not (`netd monitor --type trace` follows its sandbox).
fn mark_traced(t: &mut Topology, name: &str, on: bool) {
    set_traced(&mut t.dp, t.ifindex[name], on);
}

#[test]
fn only_traced_endpoints_report_their_packets_and_a_drop_is_reported_once() {
    let mut t = topology_with(false);
    let udp_to =
        |from: &str, src: &str, dst: &str| ipv4_frame_from(own_mac(from), src, dst, docker_mac(ip(dst)), PROTO_UDP);
    let kinds = |out: &Outcome| out.events.iter().map(|e| (e.kind, Reason::decode(e.reason))).collect::<Vec<_>>();
    // As the daemon loads it: a redirect and a pass say nothing, a drop is reported.
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.2", "10.1.0.3"));
    assert_eq!((out.verdict, kinds(&out)), (TC_ACT_REDIRECT, vec![]));
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.2", "10.1.0.1"));
    assert_eq!((out.verdict, kinds(&out)), (TC_ACT_OK, vec![]));
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.9", "10.1.0.3"));
    assert_eq!(kinds(&out), vec![(EVENT_KIND_DROP, Some(Reason::DropSpoofedIp))]);

    // a traced: what it sends, whatever the verdict, with where it went; a drop once, as a drop.
    mark_traced(&mut t, "a", true);
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.2", "10.1.0.3"));
    assert_eq!((out.verdict, kinds(&out)), (TC_ACT_REDIRECT, vec![(EVENT_KIND_TRACE, Some(Reason::RedirectPeer))]));
    let e = out.event();
    assert_eq!((e.ifindex, e.target), (t.ifindex["a"], t.ifindex["b"]));
    assert_eq!(
        (e.tuple.src_addr, e.tuple.dst_addr, u16::from_be(e.tuple.dst_port)),
        (wire(ip("10.1.0.2")), wire(ip("10.1.0.3")), 53)
    );
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.2", "10.1.0.1"));
    assert_eq!(kinds(&out), vec![(EVENT_KIND_TRACE, Some(Reason::PassToStack))]);
    assert_eq!(out.event().target, 0);
    let arp = Ethernet::new(own_mac("a"), [0xff; 6], ETH_P_ARP).frame(&arp_request(
        own_mac("a"),
        ip("10.1.0.2"),
        ip("10.1.0.3"),
    ));
    assert_eq!(kinds(&send(&mut t, "a", &arp)), vec![(EVENT_KIND_TRACE, Some(Reason::PassArp))]);
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.9", "10.1.0.3"));
    assert_eq!(kinds(&out), vec![(EVENT_KIND_DROP, Some(Reason::DropSpoofedIp))]);

    // What is delivered to a: from its peer (untraced), and from the host.
    let out = send(&mut t, "b", &udp_to("b", "10.1.0.3", "10.1.0.2"));
    assert_eq!(kinds(&out), vec![(EVENT_KIND_TRACE, Some(Reason::RedirectPeer))]);
    assert_eq!(out.event().target, t.ifindex["a"]);
    let from_host =
        ipv4_frame_from([0x02, 0x42, 0xaa, 0xbb, 0xcc, 0xdd], "10.1.0.1", "10.1.0.2", own_mac("a"), PROTO_TCP);
    let out = t.ns.run(|| to_container(&mut t.dp, &from_host));
    assert_eq!(kinds(&out), vec![(EVENT_KIND_TRACE, Some(Reason::RedirectFromHost))]);
    assert_eq!(out.event().target, t.ifindex["a"]);

    // Nothing of the others: b to the gateway, the host to b, c (another network).
    assert_eq!(kinds(&send(&mut t, "b", &udp_to("b", "10.1.0.3", "10.1.0.1"))), vec![]);
    let to_b = ipv4_frame_from([0x02, 0x42, 0xaa, 0xbb, 0xcc, 0xdd], "10.1.0.1", "10.1.0.3", own_mac("b"), PROTO_TCP);
    assert_eq!(kinds(&t.ns.run(|| to_container(&mut t.dp, &to_b))), vec![]);
    assert_eq!(kinds(&send(&mut t, "c", &udp_to("c", "10.2.0.2", "10.2.0.1"))), vec![]);

    // Unmarked: quiet again, and the verdicts never changed.
    mark_traced(&mut t, "a", false);
    let out = send(&mut t, "a", &udp_to("a", "10.1.0.2", "10.1.0.3"));
    assert_eq!((out.verdict, kinds(&out)), (TC_ACT_REDIRECT, vec![]));
    assert_eq!(kinds(&send(&mut t, "b", &udp_to("b", "10.1.0.3", "10.1.0.2"))), vec![]);
}

#[test]
fn every_drop_is_reported_or_counted_lost_when_the_event_ring_is_full() {
    let mut t = topology_with(false);
    let spoofed = ipv4_frame_from(own_mac("a"), "10.1.0.9", "10.1.0.3", own_mac("b"), PROTO_UDP);
    let lost_before = t.dp.events_lost().expect("lost events");
    // More drops than the 256 KiB ring holds (48 bytes each), with nobody reading meanwhile.
    let runs = 6000;
    let ifindex = t.ifindex["a"];
    let Topology { dp, ns, .. } = &mut t;
    let out = ns.run(|| from_container_repeated(dp, ifindex, &spoofed, runs));
    assert_eq!(out.verdict, TC_ACT_SHOT, "the verdict holds with the ring full");
    let lost = t.dp.events_lost().expect("lost events") - lost_before;
    assert!(lost > 0 && out.events.len() < 6000, "{lost} lost, {} read", out.events.len());
    assert_eq!(out.events.len() as u64 + lost, u64::from(runs), "each drop reported or counted");
    // Read: room again, and nothing more lost.
    let out = send(&mut t, "a", &spoofed);
    assert_eq!(out.events.len(), 1);
    assert_eq!(t.dp.events_lost().expect("lost events") - lost_before, lost);
}

#[test]
fn gateway_host_and_world_go_to_the_stack_and_the_rest_to_the_bridge() {
    let mut t = topology();
    expect(&mut t, "a", "10.1.0.2", "10.1.0.1", Reason::PassToStack);
    expect(&mut t, "a", "10.1.0.2", "198.51.100.7", Reason::PassToStack);
    expect(&mut t, "a", "10.1.0.2", "10.1.0.99", Reason::PassToBridge);
    expect(&mut t, "a", "10.1.0.2", "10.1.0.255", Reason::PassToBridge);
    expect(&mut t, "a", "10.1.0.2", "255.255.255.255", Reason::PassToBridge);
    expect(&mut t, "a", "10.1.0.2", "224.0.0.251", Reason::PassToBridge);
    // A frame to the Ethernet broadcast address goes to the bridge whatever its IP.
    let frame = ipv4_frame("10.1.0.2", "10.1.0.3", [0xff; 6], PROTO_UDP);
    assert_eq!(send(&mut t, "a", &frame).reason(), Reason::PassToBridge);
}

#[test]
fn other_networks_are_isolated_except_their_gateway() {
    let mut t = topology();
    expect(&mut t, "a", "10.1.0.2", "10.2.0.2", Reason::DropCrossNetwork);
    expect(&mut t, "c", "10.2.0.2", "10.1.0.3", Reason::DropCrossNetwork);
    expect(&mut t, "a", "10.1.0.2", "10.2.0.77", Reason::DropCrossNetwork);
    expect(&mut t, "a", "10.1.0.2", "10.2.0.1", Reason::PassToStack);
}

#[test]
fn icc_off_drops_endpoint_to_endpoint_but_keeps_the_gateway() {
    let mut t = topology();
    let out = expect(&mut t, "c", "10.2.0.2", "10.2.0.3", Reason::DropIccDisabled);
    assert_eq!(out.event().kind, netd_common::EVENT_KIND_DROP);
    expect(&mut t, "c", "10.2.0.2", "10.2.0.1", Reason::PassToStack);
    expect(&mut t, "d", "10.2.0.3", "198.51.100.7", Reason::PassToStack);
}

#[test]
fn internal_networks_reach_nothing_outside_their_subnet() {
    let mut t = topology();
    expect(&mut t, "i", "10.3.0.2", "10.3.0.1", Reason::PassToStack);
    expect(&mut t, "i", "10.3.0.2", "10.3.0.9", Reason::PassToBridge);
    expect(&mut t, "i", "10.3.0.2", "198.51.100.7", Reason::DropInternalNetwork);
    expect(&mut t, "i", "10.3.0.2", "10.2.0.1", Reason::DropInternalNetwork);
    expect(&mut t, "i", "10.3.0.2", "10.1.0.2", Reason::DropCrossNetwork);
    // Isolated (`gateway_mode_ipv4=isolated`): the gateway address is nobody's, the host has
    // none there; the subnet is as before.
    let (slot, (_, addr, net)) = (1u32..).zip(ENDPOINTS).find(|(_, e)| e.0 == "i").expect("i");
    let isolated = NetworkFlags::ICC | NetworkFlags::INTERNAL | NetworkFlags::ISOLATED;
    let info = endpoint_on_24(t.ifindex["i"], ip(addr), net, isolated, ip("10.3.0.0"), slot);
    t.dp.set_endpoint(&info).expect("endpoint");
    expect(&mut t, "i", "10.3.0.2", "10.3.0.1", Reason::DropInternalNetwork);
    expect(&mut t, "i", "10.3.0.2", "10.3.0.9", Reason::PassToBridge);
    expect(&mut t, "i", "10.3.0.2", "198.51.100.7", Reason::DropInternalNetwork);
}

#[test]
fn spoofed_sources_are_dropped() {
    let mut t = topology();
    // Another address than its own.
    expect(&mut t, "a", "10.1.0.50", "10.1.0.3", Reason::DropSpoofedIp);
    expect(&mut t, "a", "10.1.0.3", "10.1.0.1", Reason::DropSpoofedIp);
    // Its own address from another MAC.
    let mut frame = ipv4_frame("10.1.0.2", "10.1.0.3", docker_mac(ip("10.1.0.3")), PROTO_UDP);
    frame[6..12].copy_from_slice(&[0x02, 0x42, 0xde, 0xad, 0xbe, 0xef]);
    let out = send(&mut t, "a", &frame);
    assert_eq!((out.reason(), out.verdict), (Reason::DropSpoofedMac, TC_ACT_SHOT));
    // ARP: its own sender addresses pass (also a probe from 0.0.0.0); another's is dropped.
    let mac = docker_mac(ip("10.1.0.2"));
    for (spa, reason) in
        [("10.1.0.2", Reason::PassArp), ("0.0.0.0", Reason::PassArp), ("10.1.0.3", Reason::DropSpoofedIp)]
    {
        let frame = Ethernet::new(mac, [0xff; 6], ETH_P_ARP).frame(&arp_request(mac, ip(spa), ip("10.1.0.1")));
        assert_eq!(send(&mut t, "a", &frame).reason(), reason, "ARP from {spa}");
    }
    let frame = Ethernet::new(mac, [0xff; 6], ETH_P_ARP).frame(&arp_request(
        [2, 0x42, 1, 1, 1, 1],
        ip("10.1.0.2"),
        ip("10.1.0.1"),
    ));
    assert_eq!(send(&mut t, "a", &frame).reason(), Reason::DropSpoofedIp, "ARP with another sender MAC");
}

#[test]
fn frames_from_devices_that_are_not_endpoints_are_only_classified() {
    let mut t = topology();
    // lo (ifindex 1) is no endpoint: the old classify-and-pass behaviour.
    let frame = ipv4_frame("10.9.9.9", "10.1.0.3", docker_mac(ip("10.1.0.3")), PROTO_UDP);
    let Topology { dp, ns, .. } = &mut t;
    let out = ns.run(|| from_container_on(dp, 1, &frame));
    assert_eq!((out.reason(), out.verdict), (Reason::PassIpv4, TC_ACT_OK));
}

#[test]
fn removed_endpoints_are_no_longer_a_destination() {
    let mut t = topology();
    // A temporary endpoint on net1 at .20, then removed.
    let b = t.ifindex["b"];
    let info = EndpointInfo {
        ifindex: 999_999,
        ip: wire(ip("10.1.0.20")),
        mac: docker_mac(ip("10.1.0.20")),
        network: NET1,
        flags: NetworkFlags::ICC,
        subnet: wire(ip("10.1.0.0")),
        mask: wire(ip("255.255.255.0")),
        gateway: wire(ip("10.1.0.1")),
        ..EndpointInfo::default()
    };
    t.dp.set_endpoint(&info).expect("set");
    let out = expect(&mut t, "a", "10.1.0.2", "10.1.0.20", Reason::RedirectPeer);
    assert_eq!(out.event().target, 999_999);
    t.dp.remove_endpoint(ip("10.1.0.20"), 999_999).expect("remove");
    t.dp.remove_endpoint(ip("10.1.0.20"), 999_999).expect("removing twice is fine");
    expect(&mut t, "a", "10.1.0.2", "10.1.0.20", Reason::PassToBridge);
    assert_ne!(b, 999_999);
}

#[test]
fn endpoints_sharing_a_direct_mapped_slot_are_all_found() {
    let mut t = topology();
    // d (10.2.0.3) and i (10.3.0.2) land in the same slot of the by-address table: d, set
    // first, holds it; i is found in the hash map.
    assert_eq!(netd_common::ip_slot(wire(ip("10.2.0.3"))), netd_common::ip_slot(wire(ip("10.3.0.2"))));
    let bridge_mac = [0x02, 0x42, 0xaa, 0xbb, 0xcc, 0xdd];
    let to = |t: &mut Topology, dst: &str| {
        let frame = ipv4_frame_from(bridge_mac, "10.2.0.1", dst, docker_mac(ip(dst)), PROTO_UDP);
        let out = t.ns.run(|| to_container(&mut t.dp, &frame));
        (out.verdict, out.events.first().map(|e| e.target))
    };
    assert_eq!(to(&mut t, "10.2.0.3"), (TC_ACT_REDIRECT, Some(t.ifindex["d"])));
    assert_eq!(to(&mut t, "10.3.0.2"), (TC_ACT_REDIRECT, Some(t.ifindex["i"])));
    expect(&mut t, "c", "10.2.0.2", "10.2.0.3", Reason::DropIccDisabled);
    expect(&mut t, "i", "10.3.0.2", "10.3.0.1", Reason::PassToStack);
    // d leaves: its slot is emptied (not left pointing at it), i is still found, and takes the
    // slot when set again.
    let d = ip("10.2.0.3");
    t.dp.remove_endpoint(d, t.ifindex["d"]).expect("remove d");
    assert_eq!(to(&mut t, "10.2.0.3"), (TC_ACT_OK, None));
    assert_eq!(to(&mut t, "10.3.0.2"), (TC_ACT_REDIRECT, Some(t.ifindex["i"])));
    let i = t.dp.endpoints().expect("endpoints").into_iter().find(|e| e.ip == wire(ip("10.3.0.2"))).expect("i");
    t.dp.set_endpoint(&i).expect("set i again");
    assert_eq!(to(&mut t, "10.3.0.2"), (TC_ACT_REDIRECT, Some(t.ifindex["i"])));
    // Removing by address alone (its veth gone) finds the ifindex and empties both slots.
    t.dp.remove_endpoint(ip("10.3.0.2"), 0).expect("remove i by address");
    assert_eq!(to(&mut t, "10.3.0.2"), (TC_ACT_OK, None));
    expect(&mut t, "i", "10.3.0.2", "10.3.0.1", Reason::PassIpv4);
}
