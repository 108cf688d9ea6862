//! Published ports (`netd run -p`, Docker's `-p/--publish`): what is asked, in Docker's syntax,
//! and what is bound.

use std::{fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

/// The transport a port is published for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

/// A published port as bound: `host_ip:host_port` leads to the container's `container_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    pub protocol: Protocol,
    /// `0.0.0.0`: every address of the host.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
}

impl PortBinding {
    /// Whether both hold the same host port: the same port and protocol on the same address,
    /// or on any address where either is bound to all.
    pub fn overlaps(&self, other: &PortBinding) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip || self.host_ip.is_unspecified() || other.host_ip.is_unspecified())
    }
}

impl fmt::Display for PortBinding {
    /// As `docker ps` shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}->{}/{}", self.host_ip, self.host_port, self.container_port, self.protocol.name())
    }
}

/// One port asked for: the container's port, and where on the host (the address, or the
/// network's `host_binding_ipv4`; the first free port of `host_ports`, or any free port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
    /// Inclusive; `None`: a free port the kernel picks.
    pub host_ports: Option<(u16, u16)>,
    pub container_port: u16,
}

/// Parses Docker's `-p` syntax, `[ip:][host_port[-end]:]container_port[-end][/tcp|udp]`, into
/// one spec per container port: `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80` (any host
/// port), `80/udp`, `8000-8002:80-82` (one to one), `8000-8010:80` (the first free of them).
pub fn parse_publish(s: &str) -> Result<Vec<PortSpec>, String> {
    let (rest, protocol) = match s.rsplit_once('/') {
        None => (s, Protocol::Tcp),
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some((_, "sctp")) => return Err(format!("invalid publish {s}: netd publishes tcp and udp ports, not sctp")),
        Some((_, p)) => return Err(format!("invalid proto: {p}")),
    };
    if rest.starts_with('[') || rest.matches(':').count() > 2 {
        return Err(format!("invalid publish {s}: netd networks are IPv4 only"));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => unreachable!("at most two colons"),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| format!("invalid IP address: {ip}"))?),
    };
    let (c_lo, c_hi) = port_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(port_range(h).ok_or_else(|| format!("invalid hostPort: {h}"))?),
    };
    let count = c_hi - c_lo;
    match host {
        Some((h_lo, h_hi)) if h_hi - h_lo == count => Ok((0..=count)
            .map(|i| PortSpec { protocol, host_ip, host_ports: Some((h_lo + i, h_lo + i)), container_port: c_lo + i })
            .collect()),
        Some(range) if count == 0 => {
            Ok(vec![PortSpec { protocol, host_ip, host_ports: Some(range), container_port: c_lo }])
        }
        Some(_) => {
            Err(format!("invalid ranges specified for container and host Ports: {container} and {}", host_part(rest)))
        }
        None => Ok((c_lo..=c_hi)
            .map(|container_port| PortSpec { protocol, host_ip, host_ports: None, container_port })
            .collect()),
    }
}

fn host_part(rest: &str) -> &str {
    let mut parts = rest.rsplitn(3, ':');
    parts.next();
    parts.next().unwrap_or("")
}

/// `N` or `N-M` (N ≤ M), ports 1–65535.
fn port_range(s: &str) -> Option<(u16, u16)> {
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
    match s.split_once('-') {
        None => port(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            (a <= b).then_some((a, b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host_ip: Option<&str>, host_ports: Option<(u16, u16)>, container_port: u16, udp: bool) -> PortSpec {
        PortSpec {
            protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
            host_ip: host_ip.map(|ip| ip.parse().expect("ip")),
            host_ports,
            container_port,
        }
    }

    #[test]
    fn dockers_publish_syntax() {
        assert_eq!(parse_publish("80"), Ok(vec![spec(None, None, 80, false)]));
        assert_eq!(parse_publish("8080:80"), Ok(vec![spec(None, Some((8080, 8080)), 80, false)]));
        assert_eq!(parse_publish("8080:80/udp"), Ok(vec![spec(None, Some((8080, 8080)), 80, true)]));
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/tcp"),
            Ok(vec![spec(Some("127.0.0.1"), Some((8080, 8080)), 80, false)])
        );
        assert_eq!(parse_publish("127.0.0.1::80"), Ok(vec![spec(Some("127.0.0.1"), None, 80, false)]));
        assert_eq!(
            parse_publish("8000-8001:80-81"),
            Ok(vec![spec(None, Some((8000, 8000)), 80, false), spec(None, Some((8001, 8001)), 81, false)])
        );
        assert_eq!(parse_publish("8000-8010:80"), Ok(vec![spec(None, Some((8000, 8010)), 80, false)]));
        assert_eq!(parse_publish("80-81"), Ok(vec![spec(None, None, 80, false), spec(None, None, 81, false)]));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (s, e) in [
            ("", "invalid containerPort: "),
            ("8080:", "invalid containerPort: "),
            ("0:80", "invalid hostPort: 0"),
            ("x:80", "invalid hostPort: x"),
            ("8080:70000", "invalid containerPort: 70000"),
            ("81-80", "invalid containerPort: 81-80"),
            ("1.2.3:8080:80", "invalid IP address: 1.2.3"),
            ("8080:80/icmp", "invalid proto: icmp"),
            ("8080:80/sctp", "invalid publish 8080:80/sctp: netd publishes tcp and udp ports, not sctp"),
            ("[::1]:8080:80", "invalid publish [::1]:8080:80: netd networks are IPv4 only"),
            ("8000-8002:80-81", "invalid ranges specified for container and host Ports: 80-81 and 8000-8002"),
        ] {
            assert_eq!(parse_publish(s), Err(e.to_owned()), "{s}");
        }
    }

    #[test]
    fn bindings_overlap_on_one_address_or_all() {
        let b = |ip: &str, port, protocol| PortBinding {
            protocol,
            host_ip: ip.parse().expect("ip"),
            host_port: port,
            container_port: 80,
        };
        let any = b("0.0.0.0", 8080, Protocol::Tcp);
        assert!(any.overlaps(&b("127.0.0.1", 8080, Protocol::Tcp)));
        assert!(b("127.0.0.1", 8080, Protocol::Tcp).overlaps(&any));
        assert!(!b("127.0.0.1", 8080, Protocol::Tcp).overlaps(&b("127.0.0.2", 8080, Protocol::Tcp)));
        assert!(!any.overlaps(&b("0.0.0.0", 8080, Protocol::Udp)));
        assert!(!any.overlaps(&b("0.0.0.0", 8081, Protocol::Tcp)));
        assert_eq!(any.to_string(), "0.0.0.0:8080->80/tcp");
    }
}
