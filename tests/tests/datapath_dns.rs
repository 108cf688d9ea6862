//! `netd_dns_redirect` under `BPF_PROG_TEST_RUN`: on a sandbox's `lo`, what is sent to
//! `127.0.0.11:53` goes to the resolver's port, and what the resolver sends from there comes
//! from port 53, with valid checksums (compared byte for byte with packets built for the
//! result); everything else passes untouched.

use std::net::Ipv4Addr;

use netd_common::DNS_RESOLVER_PORT;
use netd_tests::{
    bpf::{datapath, dns_redirect, TC_ACT_OK},
    packet::{icmp_echo, tcp, udp, Ethernet, Ipv4, ETH_P_IPV4, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN},
};

const CLIENT: Ipv4Addr = Ipv4Addr::LOCALHOST;
const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// A frame as `lo` carries it (an Ethernet header of zeros).
fn frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    Ethernet::new([0; 6], [0; 6], ETH_P_IPV4).frame(&Ipv4::new(src, dst, protocol).packet(l4))
}

fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    frame(src, dst, PROTO_UDP, &udp(src, dst, sport, dport, b"\x12\x34\x01\x00\x00\x01"))
}

fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frame(src, dst, PROTO_TCP, &tcp(src, dst, sport, dport, flags, b""))
}

/// Runs `input` and checks that it passes (`TC_ACT_OK`) as `expected`.
fn passes_as(input: &[u8], expected: &[u8]) {
    let mut dp = datapath();
    let out = dns_redirect(&mut dp, input);
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(out.output, expected, "rewritten as expected, checksums included");
}

#[test]
fn questions_go_to_the_resolvers_port_and_answers_come_from_port_53() {
    let port = DNS_RESOLVER_PORT;
    passes_as(&udp_frame(CLIENT, RESOLVER, 40000, 53), &udp_frame(CLIENT, RESOLVER, 40000, port));
    passes_as(&udp_frame(RESOLVER, CLIENT, port, 40000), &udp_frame(RESOLVER, CLIENT, 53, 40000));
    // TCP, both ways, and from a client at another local address.
    let eth0 = Ipv4Addr::new(172, 18, 0, 2);
    passes_as(&tcp_frame(eth0, RESOLVER, 41000, 53, TCP_SYN), &tcp_frame(eth0, RESOLVER, 41000, port, TCP_SYN));
    passes_as(
        &tcp_frame(RESOLVER, eth0, port, 41000, TCP_SYN | TCP_ACK),
        &tcp_frame(RESOLVER, eth0, 53, 41000, TCP_SYN | TCP_ACK),
    );
}

#[test]
fn a_zero_udp_checksum_stays_zero() {
    let zero = |mut f: Vec<u8>| {
        // Ethernet 14 + IPv4 20, then the UDP checksum at 6.
        f[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        f
    };
    passes_as(
        &zero(udp_frame(CLIENT, RESOLVER, 40000, 53)),
        &zero(udp_frame(CLIENT, RESOLVER, 40000, DNS_RESOLVER_PORT)),
    );
}

#[test]
fn everything_else_passes_untouched() {
    let other = Ipv4Addr::new(127, 0, 0, 12);
    for f in [
        // Port 53 of another address: the sandbox's own server.
        udp_frame(CLIENT, other, 40000, 53),
        tcp_frame(CLIENT, Ipv4Addr::new(172, 18, 0, 2), 40000, 53, TCP_SYN),
        // Another port of the resolver's address, and the resolver's port of another one.
        udp_frame(CLIENT, RESOLVER, 40000, 54),
        udp_frame(other, CLIENT, DNS_RESOLVER_PORT, 40000),
        // Answers of a server on port 53 (no rewriting back), and what is not TCP or UDP.
        udp_frame(RESOLVER, CLIENT, 53, 40000),
        frame(CLIENT, RESOLVER, PROTO_ICMP, &icmp_echo(8, 1, 1, b"ping")),
    ] {
        passes_as(&f, &f);
    }
}
