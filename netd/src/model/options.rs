//! Bridge driver options: Docker's string keys parsed once into a typed struct.

use std::{collections::BTreeMap, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

/// A driver option key netd understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKey {
    DefaultBridge,
    BridgeName,
    EnableIcc,
    EnableIpMasquerade,
    HostBindingIpv4,
    HostIpv4,
    GatewayModeIpv4,
    TrustedHostInterfaces,
    Mtu,
    ContainerIfacePrefix,
}

impl OptionKey {
    pub const ALL: [OptionKey; 10] = [
        OptionKey::DefaultBridge,
        OptionKey::EnableIcc,
        OptionKey::EnableIpMasquerade,
        OptionKey::HostBindingIpv4,
        OptionKey::HostIpv4,
        OptionKey::GatewayModeIpv4,
        OptionKey::TrustedHostInterfaces,
        OptionKey::BridgeName,
        OptionKey::Mtu,
        OptionKey::ContainerIfacePrefix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OptionKey::DefaultBridge => "com.docker.network.bridge.default_bridge",
            OptionKey::BridgeName => "com.docker.network.bridge.name",
            OptionKey::EnableIcc => "com.docker.network.bridge.enable_icc",
            OptionKey::EnableIpMasquerade => "com.docker.network.bridge.enable_ip_masquerade",
            OptionKey::HostBindingIpv4 => "com.docker.network.bridge.host_binding_ipv4",
            OptionKey::HostIpv4 => "com.docker.network.host_ipv4",
            OptionKey::GatewayModeIpv4 => "com.docker.network.bridge.gateway_mode_ipv4",
            OptionKey::TrustedHostInterfaces => "com.docker.network.bridge.trusted_host_interfaces",
            OptionKey::Mtu => "com.docker.network.driver.mtu",
            OptionKey::ContainerIfacePrefix => "com.docker.network.container_iface_prefix",
        }
    }
}

impl FromStr for OptionKey {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        OptionKey::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// The bridge driver's settings of one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeOptions {
    /// The Linux bridge device (`docker0`, `br-<id12>`, or `com.docker.network.bridge.name`).
    pub bridge_name: String,
    pub default_bridge: bool,
    pub enable_icc: bool,
    pub enable_ip_masquerade: bool,
    pub host_binding_ipv4: Ipv4Addr,
    /// `com.docker.network.host_ipv4`: the address masqueraded flows leave with, instead of
    /// their uplink's (Docker's `SNAT --to-source` in place of `MASQUERADE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ipv4: Option<Ipv4Addr>,
    /// `com.docker.network.bridge.gateway_mode_ipv4`.
    #[serde(default, skip_serializing_if = "GatewayMode::is_nat")]
    pub gateway_mode_ipv4: GatewayMode,
    /// `com.docker.network.bridge.trusted_host_interfaces` (colon-separated): from these host
    /// interfaces the containers' published ports are reached at their own addresses (direct
    /// routing, as `--allow-direct-routing` allows from every interface).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_host_interfaces: Vec<String>,
    pub mtu: u32,
}

/// How the outside reaches a network's containers (Docker 28's gateway modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayMode {
    /// Through the host's addresses (published ports) and as replies of the containers' own
    /// flows; never at the containers' own addresses.
    #[default]
    Nat,
    /// Also at the containers' own addresses, any port (Docker's legacy default).
    NatUnprotected,
    /// Not masqueraded: at the containers' own addresses, their published ports (the host
    /// part of a mapping is not used) and ICMP; replies of their own flows.
    Routed,
    /// `--internal` networks only: not even the host reaches them (no address on the bridge).
    Isolated,
}

impl GatewayMode {
    #[must_use]
    pub fn is_nat(&self) -> bool {
        *self == GatewayMode::Nat
    }

    fn parse(key: &str, value: &str) -> Result<Self, String> {
        match value {
            "nat" => Ok(GatewayMode::Nat),
            "nat-unprotected" => Ok(GatewayMode::NatUnprotected),
            "routed" => Ok(GatewayMode::Routed),
            "isolated" => Ok(GatewayMode::Isolated),
            _ => Err(format!("invalid {key} value {value:?}: nat, nat-unprotected, routed or isolated")),
        }
    }
}

impl BridgeOptions {
    /// Parses Docker driver options over defaults. Unknown keys are kept (shown by inspect)
    /// but have no effect, as in Docker. Errors use Docker's wording.
    pub fn parse(options: &BTreeMap<String, String>, default_name: String, default_mtu: u32) -> Result<Self, String> {
        let mut o = BridgeOptions {
            bridge_name: default_name,
            default_bridge: false,
            enable_icc: true,
            enable_ip_masquerade: true,
            host_binding_ipv4: Ipv4Addr::UNSPECIFIED,
            host_ipv4: None,
            gateway_mode_ipv4: GatewayMode::Nat,
            trusted_host_interfaces: Vec::new(),
            mtu: default_mtu,
        };
        for (key, value) in options {
            let Ok(k) = key.parse::<OptionKey>() else {
                continue;
            };
            match k {
                OptionKey::DefaultBridge => {
                    if parse_bool(key, value)? {
                        return Err("default_bridge option is reserved for the daemon's bridge network".into());
                    }
                }
                OptionKey::BridgeName => {
                    validate_ifname(value)?;
                    o.bridge_name.clone_from(value);
                }
                OptionKey::EnableIcc => o.enable_icc = parse_bool(key, value)?,
                OptionKey::EnableIpMasquerade => o.enable_ip_masquerade = parse_bool(key, value)?,
                OptionKey::HostBindingIpv4 => {
                    o.host_binding_ipv4 = value
                        .parse()
                        .map_err(|_| format!("failed to parse {key} value: {value} is not a valid IPv4 address"))?;
                }
                OptionKey::HostIpv4 => o.host_ipv4 = Some(parse_snat_address(key, value)?),
                OptionKey::GatewayModeIpv4 => o.gateway_mode_ipv4 = GatewayMode::parse(key, value)?,
                OptionKey::TrustedHostInterfaces => o.trusted_host_interfaces = parse_interfaces(key, value)?,
                OptionKey::Mtu => o.mtu = parse_mtu(value)?,
                // Applied when an endpoint is made (see `container_iface_prefix`).
                OptionKey::ContainerIfacePrefix => validate_iface_prefix(value)?,
            }
        }
        Ok(o)
    }
}

/// Interface names separated by colons (Docker's form for `trusted_host_interfaces`); empty
/// names (an empty value, a doubled colon) are none.
fn parse_interfaces(key: &str, value: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(':').filter(|n| !n.is_empty()) {
        if name.len() > 15 || name.contains('/') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid {key} value {value:?}: interface names are 1 to 15 characters without '/' or spaces"
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The prefix of the interfaces a network's endpoints get inside their sandboxes:
/// `com.docker.network.container_iface_prefix` (as Docker's, e.g. `ctr` gives `ctr0`), else
/// `eth`.
pub fn container_iface_prefix(options: &BTreeMap<String, String>) -> &str {
    options.get(OptionKey::ContainerIfacePrefix.as_str()).map_or("eth", String::as_str)
}

/// A prefix that leaves room for an interface's number (up to three digits) in Linux's 15.
fn validate_iface_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty()
        || prefix.len() > 12
        || prefix.contains(['/', ':', '%'])
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "invalid {} value {prefix:?}: 1 to 12 characters without '/', ':', '%' or spaces",
            OptionKey::ContainerIfacePrefix.as_str()
        ));
    }
    Ok(())
}

/// A source address for masquerade: an IPv4 unicast address (Docker's wording for what is no
/// address at all). An address the host does not have yet is taken: it may come, or be routed
/// to the host; replies reach the containers once they arrive on an uplink.
fn parse_snat_address(key: &str, value: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = value.parse().map_err(|_| format!("failed to parse {key} value: {value} (nil ip)"))?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(format!("invalid {key} value {ip}: the source of masqueraded flows must be a unicast address"));
    }
    Ok(ip)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("failed to parse {key} value: strconv.ParseBool: parsing {value:?}: invalid syntax")),
    }
}

/// Parses an MTU with Docker's errors (`invalid MTU number: -1`).
pub fn parse_mtu(value: &str) -> Result<u32, String> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("failed to parse com.docker.network.driver.mtu value: {value} is not a number"))?;
    if !(68..=65535).contains(&n) {
        return Err(format!("invalid MTU number: {n}"));
    }
    Ok(u32::try_from(n).expect("checked range"))
}

/// A Linux interface name: 1..=15 bytes, no '/', ':', whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        return Err(format!("invalid bridge name {name:?}: names are 1 to 15 characters without '/', ':' or spaces"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn trusted_host_interfaces_are_colon_separated_names() {
        let key = "com.docker.network.bridge.trusted_host_interfaces";
        let trusted =
            |v: &str| BridgeOptions::parse(&opts(&[(key, v)]), "b".into(), 1500).map(|o| o.trusted_host_interfaces);
        assert_eq!(trusted("wg0:eth1"), Ok(vec!["wg0".to_owned(), "eth1".to_owned()]));
        assert_eq!(trusted("vxlan.1::eth3:eth3:"), Ok(vec!["vxlan.1".to_owned(), "eth3".to_owned()]));
        assert_eq!(trusted(""), Ok(vec![]));
        assert_eq!(BridgeOptions::parse(&opts(&[]), "b".into(), 1500).map(|o| o.trusted_host_interfaces), Ok(vec![]));
        for bad in ["wg0:a/b", "eth 1", "a-name-longer-than-15"] {
            assert!(
                trusted(bad).unwrap_err().contains("invalid com.docker.network.bridge.trusted_host_interfaces"),
                "{bad}"
            );
        }
    }

    #[test]
    fn container_interface_prefixes_leave_room_for_a_number() {
        let ok = opts(&[("com.docker.network.container_iface_prefix", "ctr")]);
        assert!(BridgeOptions::parse(&ok, "br-x".into(), 1500).is_ok());
        assert_eq!(container_iface_prefix(&ok), "ctr");
        assert_eq!(container_iface_prefix(&opts(&[])), "eth");
        for bad in ["", "abcdefghijklm", "a/b", "a b", "a%d"] {
            let o = opts(&[("com.docker.network.container_iface_prefix", bad)]);
            let e = BridgeOptions::parse(&o, "br-x".into(), 1500).unwrap_err();
            assert!(e.contains("invalid com.docker.network.container_iface_prefix value"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let d = BridgeOptions::parse(&opts(&[]), "br-x".into(), 1500).unwrap();
        assert!(d.enable_icc && d.enable_ip_masquerade && !d.default_bridge);
        assert_eq!((d.bridge_name.as_str(), d.mtu), ("br-x", 1500));
        let o = BridgeOptions::parse(
            &opts(&[
                ("com.docker.network.bridge.enable_icc", "false"),
                ("com.docker.network.bridge.name", "mybr"),
                ("com.docker.network.driver.mtu", "9000"),
                ("com.example.unknown", "kept"),
            ]),
            "br-x".into(),
            1500,
        )
        .unwrap();
        assert!(!o.enable_icc);
        assert_eq!((o.bridge_name.as_str(), o.mtu), ("mybr", 9000));
    }

    #[test]
    fn errors_use_docker_wording() {
        let e = BridgeOptions::parse(&opts(&[("com.docker.network.driver.mtu", "-1")]), "b".into(), 1500);
        assert_eq!(e.unwrap_err(), "invalid MTU number: -1");
        let e = BridgeOptions::parse(&opts(&[("com.docker.network.bridge.enable_icc", "maybe")]), "b".into(), 1500);
        assert!(e.unwrap_err().contains("invalid syntax"));
        assert!(validate_ifname("sixteen-chars-xx").is_err());
    }

    #[test]
    fn gateway_modes() {
        let key = "com.docker.network.bridge.gateway_mode_ipv4";
        let mode = |v: &str| BridgeOptions::parse(&opts(&[(key, v)]), "b".into(), 1500).map(|o| o.gateway_mode_ipv4);
        assert_eq!(BridgeOptions::parse(&opts(&[]), "b".into(), 1500).unwrap().gateway_mode_ipv4, GatewayMode::Nat);
        assert_eq!(mode("nat"), Ok(GatewayMode::Nat));
        assert_eq!(mode("nat-unprotected"), Ok(GatewayMode::NatUnprotected));
        assert_eq!(mode("routed"), Ok(GatewayMode::Routed));
        assert_eq!(mode("isolated"), Ok(GatewayMode::Isolated));
        assert!(mode("bogus").unwrap_err().contains("invalid com.docker.network.bridge.gateway_mode_ipv4 value"));
    }

    #[test]
    fn host_ipv4_is_a_unicast_ipv4_address() {
        let key = "com.docker.network.host_ipv4";
        let d = BridgeOptions::parse(&opts(&[]), "b".into(), 1500).unwrap();
        assert_eq!(d.host_ipv4, None);
        let o = BridgeOptions::parse(&opts(&[(key, "192.0.2.10")]), "b".into(), 1500).unwrap();
        assert_eq!(o.host_ipv4, Some(Ipv4Addr::new(192, 0, 2, 10)));
        let e = BridgeOptions::parse(&opts(&[(key, "nope")]), "b".into(), 1500).unwrap_err();
        assert_eq!(e, "failed to parse com.docker.network.host_ipv4 value: nope (nil ip)");
        assert!(BridgeOptions::parse(&opts(&[(key, "2001:db8::1")]), "b".into(), 1500).is_err());
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            let e = BridgeOptions::parse(&opts(&[(key, bad)]), "b".into(), 1500).unwrap_err();
            assert!(e.contains("must be a unicast address"), "{bad}: {e}");
        }
    }
}
