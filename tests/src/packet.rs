//! Crafted frames for datapath tests: Ethernet (optionally 802.1Q-tagged), ARP, IPv4 with options
//! and fragments, TCP, UDP and ICMP, with valid checksums unless a test breaks them on purpose.

use std::net::Ipv4Addr;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flags, as `tcp(..)` takes them.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Docker-style MAC for an IPv4 address: `02:42:` + the four address bytes.
#[must_use]
pub fn docker_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// The Internet checksum (RFC 1071) of `data`, folded and complemented.
#[must_use]
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

/// An Ethernet header, optionally with one 802.1Q tag.
#[derive(Clone, Debug)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub vlan: Option<u16>,
    pub ethertype: u16,
}

impl Ethernet {
    #[must_use]
    pub fn new(src: [u8; 6], dst: [u8; 6], ethertype: u16) -> Self {
        Self { dst, src, vlan: None, ethertype }
    }

    /// The header followed by `payload`.
    #[must_use]
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + payload.len());
        out.extend_from_slice(&self.dst);
        out.extend_from_slice(&self.src);
        if let Some(vid) = self.vlan {
            out.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            out.extend_from_slice(&vid.to_be_bytes());
        }
        out.extend_from_slice(&self.ethertype.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// An IPv4 header; `header` computes the checksum.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub id: u16,
    /// Raw flags + fragment offset word (host order): `0x2000` = MF, low 13 bits = offset/8.
    pub frag: u16,
    /// Options, padded by the caller to a multiple of 4 bytes.
    pub options: Vec<u8>,
}

impl Ipv4 {
    #[must_use]
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8) -> Self {
        Self { src, dst, protocol, ttl: 64, id: 1, frag: 0, options: Vec::new() }
    }

    /// The header (with a valid checksum) followed by `payload`.
    #[must_use]
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        assert_eq!(hlen % 4, 0, "options must be padded to 4 bytes");
        let total = u16::try_from(hlen + payload.len()).expect("fits an IPv4 packet");
        let mut h = Vec::with_capacity(hlen + payload.len());
        h.push(0x40 | u8::try_from(hlen / 4).expect("IHL"));
        h.push(0);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.id.to_be_bytes());
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.protocol);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        let csum = checksum(&h);
        h[10..12].copy_from_slice(&csum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(12 + l4.len());
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.push(0);
    buf.push(protocol);
    buf.extend_from_slice(&u16::try_from(l4.len()).expect("L4 length").to_be_bytes());
    buf.extend_from_slice(l4);
    checksum(&buf)
}

/// A TCP segment with a valid checksum for `src` → `dst`.
#[must_use]
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&1000u32.to_be_bytes());
    s.extend_from_slice(&0u32.to_be_bytes());
    s.push(5 << 4);
    s.push(flags);
    s.extend_from_slice(&65535u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]);
    s.extend_from_slice(payload);
    let csum = pseudo_header_sum(src, dst, PROTO_TCP, &s);
    s[16..18].copy_from_slice(&csum.to_be_bytes());
    s
}

/// A UDP datagram with a valid checksum for `src` → `dst`.
#[must_use]
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("UDP length");
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&sport.to_be_bytes());
    d.extend_from_slice(&dport.to_be_bytes());
    d.extend_from_slice(&len.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    let csum = pseudo_header_sum(src, dst, PROTO_UDP, &d);
    d[6..8].copy_from_slice(&(if csum == 0 { 0xffff } else { csum }).to_be_bytes());
    d
}

/// An ICMP echo request (`ty` 8) or reply (`ty` 0) with a valid checksum.
#[must_use]
pub fn icmp_echo(ty: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let csum = checksum(&m);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// An ICMP error (`ty`/`code`, e.g. 3/3 "port unreachable") quoting `offending` (an IPv4
/// packet, header first), with a valid checksum.
#[must_use]
pub fn icmp_error(ty: u8, code: u8, offending: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(offending);
    let csum = checksum(&m);
    m[2..4].copy_from_slice(&csum.to_be_bytes());
    m
}

/// An ARP request for IPv4 over Ethernet (the payload of an `ETH_P_ARP` frame).
#[must_use]
pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa.octets());
    a
}
