//! `netd_from_container` under `BPF_PROG_TEST_RUN`: every parser verdict, with crafted frames.

use std::net::Ipv4Addr;

use netd_common::{PacketClass, PacketFlags, Reason};
use netd_tests::{
    bpf::{class_count, datapath, from_container, reason_count, Outcome, TC_ACT_OK, TC_ACT_SHOT},
    packet::{
        arp_request, docker_mac, icmp_echo, tcp, udp, Ethernet, Ipv4, ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, PROTO_ICMP,
        PROTO_TCP, PROTO_UDP,
    },
};

const A: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

fn eth(ethertype: u16) -> Ethernet {
    Ethernet::new(docker_mac(A), docker_mac(B), ethertype)
}

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_TCP).packet(&tcp(A, B, 40000, 80, 0x02, payload)))
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_UDP).packet(&udp(A, B, 5353, 53, payload)))
}

/// Runs `frame`, expects a drop with `reason`, and checks the drop was counted and reported.
fn assert_dropped(frame: &[u8], reason: Reason) {
    let mut dp = datapath();
    let before = reason_count(&dp, reason);
    let out = from_container(&mut dp, frame);
    assert_eq!(out.verdict, TC_ACT_SHOT, "{}-byte frame should be dropped as {reason:?}", frame.len());
    assert_eq!(out.reason(), reason, "drop reason of a {}-byte frame", frame.len());
    assert_eq!(out.event().kind, netd_common::EVENT_KIND_DROP);
    let after = reason_count(&dp, reason);
    assert_eq!(after.packets, before.packets + 1, "{reason:?} counted once");
    assert_eq!(after.bytes, before.bytes + frame.len() as u64, "{reason:?} bytes counted");
}

/// Runs `frame`, expects it passed unchanged with `reason` and `class`, and returns the outcome.
fn assert_passed(frame: &[u8], reason: Reason, class: PacketClass) -> Outcome {
    let mut dp = datapath();
    let reason_before = reason_count(&dp, reason);
    let class_before = class_count(&dp, class);
    let out = from_container(&mut dp, frame);
    assert_eq!(out.verdict, TC_ACT_OK, "{}-byte frame should pass", frame.len());
    assert_eq!(out.output, frame, "a passed frame leaves unchanged");
    assert_eq!(out.reason(), reason);
    assert_eq!(out.class(), class);
    assert_eq!(reason_count(&dp, reason).packets, reason_before.packets + 1);
    assert_eq!(class_count(&dp, class).packets, class_before.packets + 1);
    out
}

#[test]
fn empty_and_sub_ethernet_frames_are_refused_by_the_kernel_before_the_program() {
    // An skb test run needs at least an Ethernet header; shorter frames (the parser's
    // DropShortEthernet case) are covered by the host unit tests of `netd_ebpf::parse`.
    let dp = datapath();
    for len in [0usize, 13] {
        let frame = vec![0u8; len];
        let mut out = vec![0u8; 64];
        let r = aya::programs::TestRun::test_run(
            dp.from_container(),
            aya::programs::TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), ..Default::default() },
        );
        assert!(r.is_err(), "a {len}-byte skb must be refused");
    }
}

#[test]
fn tcp_is_classified_with_its_tuple() {
    let out = assert_passed(&tcp_frame(b"hello"), Reason::PassIpv4, PacketClass::Ipv4Tcp);
    let t = out.event().tuple;
    assert_eq!(t.src_addr, u32::from_ne_bytes(A.octets()));
    assert_eq!(t.dst_addr, u32::from_ne_bytes(B.octets()));
    assert_eq!(u16::from_be(t.src_port), 40000);
    assert_eq!(u16::from_be(t.dst_port), 80);
    assert_eq!(t.protocol, PROTO_TCP);
    assert_eq!(out.event().flags, 0);
}

#[test]
fn udp_is_classified_with_its_tuple() {
    let out = assert_passed(&udp_frame(b"query"), Reason::PassIpv4, PacketClass::Ipv4Udp);
    let t = out.event().tuple;
    assert_eq!((u16::from_be(t.src_port), u16::from_be(t.dst_port)), (5353, 53));
    assert_eq!(t.protocol, PROTO_UDP);
}

#[test]
fn icmp_echo_uses_the_identifier_as_source_port() {
    let frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_ICMP).packet(&icmp_echo(8, 0x1234, 1, b"ping")));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Icmp);
    assert_eq!(u16::from_be(out.event().tuple.src_port), 0x1234);
    assert_eq!(out.event().tuple.dst_port, 0);
}

#[test]
fn other_ipv4_protocols_have_no_ports() {
    let frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, 47).packet(&[0u8; 24]));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Other);
    assert_eq!(out.event().tuple.protocol, 47);
    assert_eq!((out.event().tuple.src_port, out.event().tuple.dst_port), (0, 0));
}

#[test]
fn arp_passes_to_the_bridge() {
    let frame = Ethernet::new(docker_mac(A), [0xff; 6], ETH_P_ARP).frame(&arp_request(docker_mac(A), A, B));
    assert_passed(&frame, Reason::PassArp, PacketClass::Arp);
}

#[test]
fn truncated_arp_is_dropped() {
    let frame = Ethernet::new(docker_mac(A), [0xff; 6], ETH_P_ARP).frame(&arp_request(docker_mac(A), A, B)[..20]);
    assert_dropped(&frame, Reason::DropShortArp);
}

#[test]
fn ipv6_is_recognised_and_passed() {
    let mut v6 = vec![0u8; 40 + 8];
    v6[0] = 0x60;
    v6[6] = 17;
    assert_passed(&eth(ETH_P_IPV6).frame(&v6), Reason::PassIpv6, PacketClass::Ipv6);
}

#[test]
fn unknown_ethertypes_pass_unchanged() {
    assert_passed(&eth(0x88cc).frame(&[0u8; 46]), Reason::PassOtherL2, PacketClass::OtherL2);
}

#[test]
fn vlan_tagged_frames_are_parsed_behind_the_tag() {
    let mut e = eth(ETH_P_IPV4);
    e.vlan = Some(0x2064); // PCP 1, VID 100
    let frame = e.frame(&Ipv4::new(A, B, PROTO_UDP).packet(&udp(A, B, 1000, 2000, b"x")));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Udp);
    assert_eq!(out.event().vlan_id, 100);
    assert_eq!(out.event().flags & PacketFlags::VLAN, PacketFlags::VLAN);
    assert_eq!(u16::from_be(out.event().tuple.dst_port), 2000);

    // A tag with nothing behind it.
    let mut cut = frame.clone();
    cut.truncate(16);
    assert_dropped(&cut, Reason::DropShortVlan);
}

#[test]
fn truncation_at_every_length_is_dropped_with_the_right_reason() {
    // Cut inside the IPv4 header (14..34 bytes) the kernel refuses the skb test run itself, so
    // those lengths are covered by the host unit tests of `netd_ebpf::parse`; from 34 bytes on
    // the IPv4 total length claims more than the frame holds.
    let full = tcp_frame(b"0123456789");
    for len in 34..full.len() {
        assert_dropped(&full[..len], Reason::DropIpv4TotalLength);
    }
    assert_passed(&full, Reason::PassIpv4, PacketClass::Ipv4Tcp);
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_accepted() {
    let mut frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_UDP).packet(&udp(A, B, 1, 2, b"")));
    frame.resize(60, 0);
    assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Udp);
}

#[test]
fn bad_ipv4_headers_are_dropped() {
    let good = udp_frame(b"payload");

    let mut version6 = good.clone();
    version6[14] = 0x65;
    assert_dropped(&version6, Reason::DropIpv4Version);

    for ihl in 0..5u8 {
        let mut small = good.clone();
        small[14] = 0x40 | ihl;
        assert_dropped(&small, Reason::DropIpv4IhlTooSmall);
    }

    // IHL 15 (60 bytes) but the frame holds 20 + 15 bytes of IP.
    let mut long_ihl = good.clone();
    long_ihl[14] = 0x4f;
    assert_dropped(&long_ihl, Reason::DropIpv4IhlPastFrame);

    // Total length beyond the frame, and below the header length.
    let mut past = good.clone();
    past[16..18].copy_from_slice(&200u16.to_be_bytes());
    assert_dropped(&past, Reason::DropIpv4TotalLength);
    let mut short = good;
    short[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_dropped(&short, Reason::DropIpv4TotalLength);
}

#[test]
fn ip_options_move_the_l4_header() {
    let mut ip = Ipv4::new(A, B, PROTO_TCP);
    // Record Route (7), length 11, pointer 4, two empty slots, padded with End-of-list.
    ip.options = vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let frame = eth(ETH_P_IPV4).frame(&ip.packet(&tcp(A, B, 1234, 443, 0x10, b"data")));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Tcp);
    assert_eq!(out.event().flags & PacketFlags::IP_OPTIONS, PacketFlags::IP_OPTIONS);
    assert_eq!(u16::from_be(out.event().tuple.src_port), 1234);
    assert_eq!(u16::from_be(out.event().tuple.dst_port), 443);
}

#[test]
fn fragments_first_has_ports_later_ones_do_not() {
    let datagram = udp(A, B, 7000, 8000, &[0xab; 64]);

    let mut first = Ipv4::new(A, B, PROTO_UDP);
    first.frag = 0x2000; // MF, offset 0
    let frame = eth(ETH_P_IPV4).frame(&first.packet(&datagram[..32]));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Udp);
    assert_eq!(
        out.event().flags & (PacketFlags::FRAGMENT | PacketFlags::FIRST_FRAGMENT),
        PacketFlags::FRAGMENT | PacketFlags::FIRST_FRAGMENT
    );
    assert_eq!(u16::from_be(out.event().tuple.src_port), 7000);

    let mut later = Ipv4::new(A, B, PROTO_UDP);
    later.frag = 32 / 8; // offset 32 bytes, last fragment
    let frame = eth(ETH_P_IPV4).frame(&later.packet(&datagram[32..]));
    let out = assert_passed(&frame, Reason::PassIpv4, PacketClass::Ipv4Fragment);
    assert_eq!(out.event().flags & PacketFlags::FIRST_FRAGMENT, 0);
    assert_eq!((out.event().tuple.src_port, out.event().tuple.dst_port), (0, 0));
    assert_eq!(out.event().tuple.protocol, PROTO_UDP);
}

#[test]
fn tcp_data_offset_below_five_or_past_the_segment_is_dropped() {
    for doff in [0u8, 4] {
        let mut frame = tcp_frame(b"");
        frame[14 + 20 + 12] = doff << 4;
        assert_dropped(&frame, Reason::DropTcpDataOffset);
    }
    let mut frame = tcp_frame(b"");
    frame[14 + 20 + 12] = 6 << 4; // 24 bytes of header in a 20-byte segment
    assert_dropped(&frame, Reason::DropTcpDataOffset);

    // An IP payload too short for the fixed TCP header.
    let frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_TCP).packet(&[0u8; 10]));
    assert_dropped(&frame, Reason::DropShortTcp);
}

#[test]
fn udp_length_mismatch_is_dropped() {
    let mut longer = udp_frame(b"abc");
    longer[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&100u16.to_be_bytes());
    assert_dropped(&longer, Reason::DropUdpLength);

    let mut below_header = udp_frame(b"abc");
    below_header[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&7u16.to_be_bytes());
    assert_dropped(&below_header, Reason::DropUdpLength);

    let frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_UDP).packet(&[0u8; 6]));
    assert_dropped(&frame, Reason::DropShortUdp);
    let frame = eth(ETH_P_IPV4).frame(&Ipv4::new(A, B, PROTO_ICMP).packet(&[8u8, 0, 0, 0]));
    assert_dropped(&frame, Reason::DropShortIcmp);
}

#[test]
fn the_untraced_program_verifies_and_gives_the_same_verdicts() {
    let dp = netd::datapath::Datapath::load(&netd::datapath::LoadOptions {
        trace: false,
        pin_dir: None,
        ..netd::datapath::LoadOptions::default()
    })
    .expect("loading without tracing");
    for (frame, verdict) in [(tcp_frame(b"x"), TC_ACT_OK), (tcp_frame(b"x")[..40].to_vec(), TC_ACT_SHOT)] {
        let mut out = vec![0u8; frame.len() + 64];
        let r = aya::programs::TestRun::test_run(
            dp.from_container(),
            aya::programs::TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), ..Default::default() },
        )
        .expect("test run");
        assert_eq!(r.return_value, verdict);
    }
    assert_eq!(dp.reason_counter(Reason::PassIpv4).expect("counters").packets, 1);
    assert_eq!(dp.reason_counter(Reason::DropIpv4TotalLength).expect("counters").packets, 1);
}
