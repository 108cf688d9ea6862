//! Address pools for networks created without `--subnet`: Docker's defaults (172.17–31.0.0/16,
//! then 192.168.0.0/20 … 192.168.240.0/20) or `--default-address-pool base=CIDR,size=N`.

use std::str::FromStr;

use ipnetwork::Ipv4Network;

/// One `base=CIDR,size=N` pool: subnets of prefix `size` carved from `base` in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Ipv4Network,
    pub size: u8,
}

impl FromStr for AddressPool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut base = None;
        let mut size = None;
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => {
                    base = Some(v.parse::<Ipv4Network>().map_err(|e| format!("invalid base {v}: {e}"))?);
                }
                Some(("size", v)) => {
                    size = Some(v.parse::<u8>().map_err(|e| format!("invalid size {v}: {e}"))?);
                }
                _ => return Err(format!("invalid address pool field {part:?}: expected base=CIDR,size=N")),
            }
        }
        let (Some(base), Some(size)) = (base, size) else {
            return Err(format!("invalid address pool {s:?}: expected base=CIDR,size=N"));
        };
        if size < base.prefix() || size > 30 {
            return Err(format!("invalid address pool {s:?}: size must be between the base prefix and 30"));
        }
        if base.network() != base.ip() {
            return Err(format!("invalid address pool {s:?}: base has host bits set"));
        }
        Ok(Self { base, size })
    }
}

impl AddressPool {
    /// The subnets of this pool, in address order.
    pub fn subnets(self) -> impl Iterator<Item = Ipv4Network> {
        let step = 1u64 << (32 - u32::from(self.size));
        let start = u64::from(u32::from(self.base.network()));
        let count = 1u64 << (u32::from(self.size) - u32::from(self.base.prefix()));
        (0..count).map(move |i| {
            let addr = u32::try_from(start + i * step).expect("inside the IPv4 space");
            Ipv4Network::new(addr.into(), self.size).expect("valid prefix")
        })
    }
}

/// Docker 20.10's default pools.
pub fn default_pools() -> Vec<AddressPool> {
    let mut pools: Vec<AddressPool> = (17..=31)
        .map(|b| AddressPool { base: Ipv4Network::new([172, b, 0, 0].into(), 16).expect("valid"), size: 16 })
        .collect();
    pools.push(AddressPool { base: Ipv4Network::new([192, 168, 0, 0].into(), 16).expect("valid"), size: 20 });
    pools
}

/// The first subnet of the pools that overlaps none of `used`.
pub fn first_free(pools: &[AddressPool], used: &[Ipv4Network]) -> Option<Ipv4Network> {
    pools.iter().flat_map(|p| p.subnets()).find(|s| !used.iter().any(|u| overlaps(*s, *u)))
}

/// Whether two subnets share any address.
pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn docker_order() {
        let pools = default_pools();
        assert_eq!(first_free(&pools, &[net("172.17.0.0/16")]), Some(net("172.18.0.0/16")));
        let all172: Vec<_> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        assert_eq!(first_free(&pools, &all172), Some(net("192.168.0.0/20")));
        let mut more = all172.clone();
        more.push(net("192.168.0.0/24")); // a host route inside the first /20
        assert_eq!(first_free(&pools, &more), Some(net("192.168.16.0/20")));
    }

    #[test]
    fn parse_pool() {
        let p: AddressPool = "base=10.10.0.0/16,size=24".parse().unwrap();
        assert_eq!(p.subnets().nth(1), Some(net("10.10.1.0/24")));
        assert!("base=10.10.0.0/16".parse::<AddressPool>().is_err());
        assert!("base=10.10.0.0/16,size=8".parse::<AddressPool>().is_err());
        assert!("base=10.10.1.0/16,size=24".parse::<AddressPool>().is_err());
    }

    #[test]
    fn overlap() {
        assert!(overlaps(net("172.17.0.0/16"), net("172.17.5.0/24")));
        assert!(!overlaps(net("172.17.0.0/16"), net("172.18.0.0/16")));
    }
}
