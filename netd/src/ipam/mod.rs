//! IPv4 address management: per-network allocation and the choice of subnets.

pub mod pools;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// The address plan of one network and what is handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// Dynamic allocation stays inside this range when set (`--ip-range`).
    pub ip_range: Option<Ipv4Network>,
    /// `--aux-address name=IP`: reserved, never handed out.
    pub aux: BTreeMap<String, Ipv4Addr>,
    /// Created with `--subnet` (static `--ip` is allowed only then).
    pub user_subnet: bool,
    /// Addresses of endpoints.
    pub allocated: BTreeSet<Ipv4Addr>,
}

/// IPAM failures, with Docker's messages.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("Address already in use")]
    InUse,
    #[error("no available IPv4 addresses on this network's address pools: {name} ({id})")]
    Exhausted { name: String, id: String },
    #[error("Invalid address {0}: It does not belong to any of this network's subnets")]
    OutsideSubnet(Ipv4Addr),
    #[error("User specified IP address is supported only when connecting to networks with user configured subnets")]
    StaticIpNotAllowed,
}

impl Ipam {
    /// Whether `ip` can never be handed out: network, broadcast, gateway, aux addresses.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.subnet.network()
            || (self.subnet.prefix() < 31 && ip == self.subnet.broadcast())
            || ip == self.gateway
            || self.aux.values().any(|a| *a == ip)
    }

    /// Hands out `requested` if given (it must be inside the subnet and free), else the lowest
    /// free address (inside the ip-range when there is one).
    pub fn allocate(&mut self, requested: Option<Ipv4Addr>, name: &str, id: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = requested {
            if !self.user_subnet {
                return Err(IpamError::StaticIpNotAllowed);
            }
            if !self.subnet.contains(ip) {
                return Err(IpamError::OutsideSubnet(ip));
            }
            if self.is_reserved(ip) || self.allocated.contains(&ip) {
                return Err(IpamError::InUse);
            }
            self.allocated.insert(ip);
            return Ok(ip);
        }
        let range = self.ip_range.unwrap_or(self.subnet);
        let free =
            range.iter().find(|ip| self.subnet.contains(*ip) && !self.is_reserved(*ip) && !self.allocated.contains(ip));
        let ip = free.ok_or_else(|| IpamError::Exhausted { name: name.to_owned(), id: id.to_owned() })?;
        self.allocated.insert(ip);
        Ok(ip)
    }

    /// Returns an address to the pool.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(subnet: &str, gw: &str, user: bool) -> Ipam {
        Ipam {
            subnet: subnet.parse().unwrap(),
            gateway: gw.parse().unwrap(),
            ip_range: None,
            aux: BTreeMap::new(),
            user_subnet: user,
            allocated: BTreeSet::new(),
        }
    }

    #[test]
    fn lowest_free_skipping_reserved_and_reusing_released() {
        let mut i = ipam("172.22.16.0/24", "172.22.16.1", true);
        i.aux.insert("printer".into(), "172.22.16.3".parse().unwrap());
        let a = i.allocate(None, "n", "id").unwrap();
        let b = i.allocate(None, "n", "id").unwrap();
        assert_eq!((a.to_string(), b.to_string()), ("172.22.16.2".into(), "172.22.16.4".into()));
        i.release(a);
        assert_eq!(i.allocate(None, "n", "id").unwrap(), a);
    }

    #[test]
    fn static_addresses() {
        let mut i = ipam("172.22.16.0/24", "172.22.16.1", true);
        let ip = "172.22.16.88".parse().unwrap();
        assert_eq!(i.allocate(Some(ip), "n", "id"), Ok(ip));
        assert_eq!(i.allocate(Some(ip), "n", "id"), Err(IpamError::InUse));
        assert_eq!(i.allocate(Some("172.22.16.1".parse().unwrap()), "n", "id"), Err(IpamError::InUse));
        assert_eq!(i.allocate(Some("172.22.16.255".parse().unwrap()), "n", "id"), Err(IpamError::InUse));
        let out = "10.0.0.1".parse().unwrap();
        assert_eq!(i.allocate(Some(out), "n", "id"), Err(IpamError::OutsideSubnet(out)));
        let mut auto = ipam("172.18.0.0/16", "172.18.0.1", false);
        assert_eq!(auto.allocate(Some("172.18.0.9".parse().unwrap()), "n", "id"), Err(IpamError::StaticIpNotAllowed));
        assert_eq!(
            IpamError::StaticIpNotAllowed.to_string(),
            "User specified IP address is supported only when connecting to networks with user configured subnets"
        );
    }

    #[test]
    fn range_and_exhaustion() {
        let mut i = ipam("10.9.0.0/29", "10.9.0.1", true);
        i.ip_range = Some("10.9.0.4/30".parse().unwrap());
        let got: Vec<String> = (0..3).map(|_| i.allocate(None, "small", "abc").unwrap().to_string()).collect();
        assert_eq!(got, ["10.9.0.4", "10.9.0.5", "10.9.0.6"]);
        // .7 is the subnet's broadcast: reserved, so the range is full.
        assert!(matches!(i.allocate(None, "small", "abc"), Err(IpamError::Exhausted { .. })));
    }

    #[test]
    fn exhaustion_message() {
        let mut i = ipam("10.9.0.0/30", "10.9.0.1", true);
        assert_eq!(i.allocate(None, "tiny", "abc").unwrap().to_string(), "10.9.0.2");
        assert_eq!(
            i.allocate(None, "tiny", "abc").unwrap_err().to_string(),
            "no available IPv4 addresses on this network's address pools: tiny (abc)"
        );
    }
}
