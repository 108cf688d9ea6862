//! The DNS messages the embedded resolver reads and writes (RFC 1035): one question in, its
//! answers out. Only what a stub resolver sends is understood; the rest is answered with the
//! error a server gives (`FORMERR`, `NOTIMP`) or forwarded as it is.

use std::{fmt::Write as _, net::Ipv4Addr};

/// The header's length.
const HEADER_LEN: usize = 12;
/// The longest message over UDP without EDNS (RFC 1035 §4.2.1); longer answers are cut and
/// flagged truncated, and the client asks again over TCP.
pub const UDP_MAX: usize = 512;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
pub const CLASS_IN: u16 = 1;

/// Response codes.
pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const NOTIMP: u8 = 4;
pub const REFUSED: u8 = 5;

const QR: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
const AA: u16 = 0x0400;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;

/// A query's question, as the resolver needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lower case, without the trailing dot (`web`, `db.mynet`, `2.0.18.172.in-addr.arpa`).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

/// A query: its id and flags, the question, and the question's bytes as they came (echoed in
/// the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    flags: u16,
    pub question: Question,
    raw_question: Vec<u8>,
}

/// What cannot be answered: `Reply` carries the error answer to send (when the header could
/// be read), `Ignore` a message that gets none (an answer, or less than a header).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Reply(Vec<u8>),
    Ignore,
}

/// A record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    /// A name, for PTR.
    Ptr(String),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads the name at `at` (labels, without compression: a stub's question has none) and
/// returns it with the offset just past it.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            return Some((name, at));
        }
        // A pointer (0xc0) or a reserved label type: not in a question we take.
        if len & 0xc0 != 0 || name.len() + len + 1 > 255 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            // Names are compared ASCII case-insensitively (RFC 4343); other bytes are kept
            // as escapes so that nothing odd matches a container.
            match c {
                b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(char::from(c)),
                b'A'..=b'Z' => name.push(char::from(c.to_ascii_lowercase())),
                _ => {
                    let _ = write!(name, "\\{c:03}");
                }
            }
        }
        at += len;
    }
}

/// Encodes `name` (dot-separated) as labels. Names come from the daemon's state (container
/// names and aliases, checked when given), so every label fits.
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(u8::try_from(bytes.len()).unwrap_or(63));
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

/// Parses a query. A message that is no standard query with one question gets its error
/// answer.
pub fn parse(msg: &[u8]) -> Result<Query, Refused> {
    let (Some(id), Some(flags), Some(qdcount)) = (be16(msg, 0), be16(msg, 2), be16(msg, 4)) else {
        return Err(Refused::Ignore);
    };
    if flags & QR != 0 {
        return Err(Refused::Ignore);
    }
    let error = |rcode| Err(Refused::Reply(header(id, flags, rcode, 0, 0)));
    if flags & OPCODE != 0 {
        return error(NOTIMP);
    }
    if qdcount != 1 {
        return error(FORMERR);
    }
    let Some((name, end)) = read_name(msg, HEADER_LEN) else {
        return error(FORMERR);
    };
    let (Some(qtype), Some(qclass)) = (be16(msg, end), be16(msg, end + 2)) else {
        return error(FORMERR);
    };
    Ok(Query { id, flags, question: Question { name, qtype, qclass }, raw_question: msg[HEADER_LEN..end + 4].to_vec() })
}

/// A header answering a query with `flags` (its opcode and RD are kept).
fn header(id: u16, flags: u16, rcode: u8, qdcount: u16, ancount: u16) -> Vec<u8> {
    let flags = QR | (flags & (OPCODE | RD)) | RA | u16::from(rcode & 0x0f);
    let mut h = Vec::with_capacity(HEADER_LEN);
    for v in [id, flags, qdcount, ancount, 0, 0] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

impl Query {
    /// The answer to this query: `rcode` and `records` (with `ttl` seconds), authoritative
    /// (the resolver owns the names it answers for). Over UDP (`max` = [`UDP_MAX`]) records
    /// that do not fit are left out and the answer is flagged truncated.
    #[must_use]
    pub fn answer(&self, rcode: u8, records: &[Record], ttl: u32, max: usize) -> Vec<u8> {
        let mut body = self.raw_question.clone();
        let mut count: u16 = 0;
        let mut truncated = false;
        for r in records {
            // The owner name: a pointer to the question's (right after the header).
            let mut rr = vec![0xc0, 12];
            let (rtype, rdata) = match r {
                Record::A(ip) => (TYPE_A, ip.octets().to_vec()),
                Record::Ptr(name) => {
                    let mut d = Vec::new();
                    write_name(&mut d, name);
                    (TYPE_PTR, d)
                }
            };
            rr.extend_from_slice(&rtype.to_be_bytes());
            rr.extend_from_slice(&CLASS_IN.to_be_bytes());
            rr.extend_from_slice(&ttl.to_be_bytes());
            rr.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(u16::MAX).to_be_bytes());
            rr.extend_from_slice(&rdata);
            if HEADER_LEN + body.len() + rr.len() > max {
                truncated = true;
                break;
            }
            body.extend_from_slice(&rr);
            count += 1;
        }
        let mut out = header(self.id, self.flags, rcode, 1, count);
        let mut flags = u16::from_be_bytes([out[2], out[3]]) | AA;
        if truncated {
            flags |= TC;
        }
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// A record type's name (`A`, `AAAA`, …; `TYPE65` for those it does not know).
#[must_use]
pub fn type_name(t: u16) -> String {
    let known = [(1, "A"), (2, "NS"), (5, "CNAME"), (6, "SOA"), (12, "PTR"), (15, "MX"), (16, "TXT"), (28, "AAAA")];
    known.iter().find(|(n, _)| *n == t).map_or_else(|| format!("TYPE{t}"), |(_, name)| (*name).to_owned())
}

/// A response code's name.
#[must_use]
pub fn rcode_name(rcode: u8) -> String {
    let known = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
    known.get(usize::from(rcode)).map_or_else(|| format!("RCODE{rcode}"), |n| (*n).to_owned())
}

/// Reads a name anywhere in a message, following compression pointers (a bounded number);
/// returns it and the offset just past it where it started.
fn read_name_at(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..32 {
        let len = *msg.get(at)?;
        if len & 0xc0 == 0xc0 {
            end.get_or_insert(at + 2);
            at = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(at + 1)?]));
            continue;
        }
        if len == 0 {
            return Some((labels.join("."), end.unwrap_or(at + 1)));
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += 1 + usize::from(len);
    }
    None
}

/// What an answer says, in a few words: its addresses and names (A, AAAA, PTR, CNAME records),
/// or its response code when it has none.
#[must_use]
pub fn summary(msg: &[u8]) -> String {
    let (Some(rcode), Some(qd), Some(an)) = (msg.get(3).map(|b| b & 0x0f), be16(msg, 4), be16(msg, 6)) else {
        return "malformed".into();
    };
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        let Some((_, end)) = read_name_at(msg, at) else { return rcode_name(rcode) };
        at = end + 4;
    }
    let mut found = Vec::new();
    for _ in 0..an {
        let Some((_, end)) = read_name_at(msg, at) else { break };
        let (Some(rtype), Some(len)) = (be16(msg, end), be16(msg, end + 8)) else { break };
        let rdata_at = end + 10;
        let Some(rdata) = msg.get(rdata_at..rdata_at + usize::from(len)) else { break };
        match (rtype, rdata.len()) {
            (TYPE_A, 4) => found.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string()),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                found.push(std::net::Ipv6Addr::from(b).to_string());
            }
            (5 | TYPE_PTR, _) => found.extend(read_name_at(msg, rdata_at).map(|(n, _)| n)),
            _ => {}
        }
        at = rdata_at + usize::from(len);
    }
    if found.is_empty() {
        rcode_name(rcode)
    } else {
        found.join(",")
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`) stands for.
#[must_use]
pub fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for o in octets.iter_mut().rev() {
        let p = parts.next()?;
        if p.len() > 1 && p.starts_with('0') {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stub resolver's query (RD set), with an EDNS OPT record after the question as glibc
    /// sends with `options edns0`.
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [id, RD, 1, 0, 0, 1] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        write_name(&mut m, name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn a_query_is_read_with_its_name_in_lower_case() {
        let q = parse(&query(0x1234, "Web.MyNet", TYPE_A)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.question, Question { name: "web.mynet".into(), qtype: TYPE_A, qclass: CLASS_IN });
    }

    #[test]
    fn an_answer_echoes_the_question_and_carries_its_records() {
        let q = parse(&query(7, "web", TYPE_A)).unwrap();
        let ips = [Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(172, 18, 0, 3)];
        let a = q.answer(NOERROR, &[Record::A(ips[0]), Record::A(ips[1])], 600, UDP_MAX);
        assert_eq!(be16(&a, 0), Some(7));
        // QR, AA, RD (as asked), RA; NOERROR.
        assert_eq!(be16(&a, 2), Some(0x8580));
        assert_eq!((be16(&a, 4), be16(&a, 6), be16(&a, 8), be16(&a, 10)), (Some(1), Some(2), Some(0), Some(0)));
        // The question as asked: "\x03web\x00", A, IN.
        assert_eq!(&a[12..21], &[3, b'w', b'e', b'b', 0, 0, 1, 0, 1]);
        // Each record: a pointer to the question's name, A, IN, TTL 600, 4 bytes.
        assert_eq!(&a[21..37], &[0xc0, 12, 0, 1, 0, 1, 0, 0, 2, 0x58, 0, 4, 172, 18, 0, 2]);
        assert_eq!(&a[37 + 12..], &[172, 18, 0, 3]);
    }

    #[test]
    fn a_ptr_answer_names_the_container() {
        let q = parse(&query(9, "2.0.18.172.in-addr.arpa", TYPE_PTR)).unwrap();
        assert_eq!(reverse_v4(&q.question.name), Some(Ipv4Addr::new(172, 18, 0, 2)));
        let a = q.answer(NOERROR, &[Record::Ptr("web.mynet".into())], 600, UDP_MAX);
        let rdata = &a[a.len() - 11..];
        assert_eq!(rdata, b"\x03web\x05mynet\x00");
        assert_eq!(be16(&a, a.len() - 13), Some(11));
    }

    #[test]
    fn an_answer_too_long_for_udp_is_cut_and_flagged_truncated() {
        let q = parse(&query(1, "many", TYPE_A)).unwrap();
        let records: Vec<Record> = (0..40).map(|i| Record::A(Ipv4Addr::new(10, 0, 0, i))).collect();
        let a = q.answer(NOERROR, &records, 600, UDP_MAX);
        assert!(a.len() <= UDP_MAX);
        assert_eq!(be16(&a, 2).unwrap() & TC, TC);
        // 512 bytes: the header (12), the question (10), then 16 bytes a record.
        assert_eq!(be16(&a, 6), Some(30));
        let whole = q.answer(NOERROR, &records, 600, 65_535);
        assert_eq!((be16(&whole, 2).unwrap() & TC, be16(&whole, 6)), (0, Some(40)));
    }

    #[test]
    fn what_is_no_standard_query_gets_a_servers_error_or_nothing() {
        assert_eq!(parse(&[0; 5]), Err(Refused::Ignore));
        let mut answer = query(3, "web", TYPE_A);
        answer[2] |= 0x80;
        assert_eq!(parse(&answer), Err(Refused::Ignore));
        let rcode = |m: &[u8]| match parse(m) {
            Err(Refused::Reply(r)) => (be16(&r, 0), r[3] & 0x0f),
            other => panic!("{other:?}"),
        };
        let mut notify = query(4, "web", TYPE_A);
        notify[2] |= 4 << 3;
        assert_eq!(rcode(&notify), (Some(4), NOTIMP));
        let mut two = query(5, "web", TYPE_A);
        two[5] = 2;
        assert_eq!(rcode(&two), (Some(5), FORMERR));
        // A compression pointer in the question, a name cut short.
        let mut pointer = query(6, "web", TYPE_A);
        pointer[12] = 0xc0;
        assert_eq!(rcode(&pointer), (Some(6), FORMERR));
        assert_eq!(rcode(&query(8, "web", TYPE_A)[..15]), (Some(8), FORMERR));
    }

    #[test]
    fn odd_bytes_in_a_name_match_no_container() {
        let mut m = query(2, "web", TYPE_A);
        m[13] = b'.';
        assert_eq!(parse(&m).unwrap().question.name, "\\046eb");
    }

    #[test]
    fn a_summary_gives_addresses_names_or_the_response_code() {
        let q = parse(&query(7, "web", TYPE_A)).unwrap();
        let ips = [Record::A(Ipv4Addr::new(10, 0, 0, 2)), Record::A(Ipv4Addr::new(10, 0, 0, 3))];
        assert_eq!(summary(&q.answer(NOERROR, &ips, 600, UDP_MAX)), "10.0.0.2,10.0.0.3");
        assert_eq!(summary(&q.answer(NXDOMAIN, &[], 0, UDP_MAX)), "NXDOMAIN");
        assert_eq!(summary(&q.answer(NOERROR, &[], 0, UDP_MAX)), "NOERROR");
        assert_eq!(summary(&q.answer(NOERROR, &[Record::Ptr("web.mynet".into())], 600, UDP_MAX)), "web.mynet");
        // A name compressed against the question's (as servers write them).
        let mut ptr = q.answer(NOERROR, &[], 0, UDP_MAX);
        ptr[7] = 1;
        ptr.extend_from_slice(&[0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'a', b'p', b'i', 0xc0, 12]);
        assert_eq!(summary(&ptr), "api.web");
        assert_eq!(summary(&[0; 3]), "malformed");
        assert_eq!((type_name(28), type_name(65), rcode_name(3)), ("AAAA".into(), "TYPE65".into(), "NXDOMAIN".into()));
    }

    #[test]
    fn reverse_names_are_read_strictly() {
        assert_eq!(reverse_v4("4.3.2.1.in-addr.arpa"), Some(Ipv4Addr::new(1, 2, 3, 4)));
        for bad in
            ["3.2.1.in-addr.arpa", "5.4.3.2.1.in-addr.arpa", "04.3.2.1.in-addr.arpa", "256.3.2.1.in-addr.arpa", "web"]
        {
            assert_eq!(reverse_v4(bad), None, "{bad}");
        }
    }
}
