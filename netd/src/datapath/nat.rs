//! Masquerade as the control plane sees it: the NAT settings, the uplinks, listing the
//! translation table and collecting expired flows (`netd_common::nat` has the layout and the
//! expiry rules, shared with the datapath).

use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap, MapData};
use netd_common::{
    nat::{assured, egress_key, flow_expired, reply_key, tcp_closed},
    Ipv4Tuple, NatConfig, NatEntry, NatFlags, UplinkInfo,
};

use super::{is_absent, map_err, Datapath, DatapathError, Result};

const NAT: &str = "NETD_NAT";
const UPLINKS: &str = "NETD_UPLINKS";
const NAT_CONFIG: &str = "NETD_NAT_CONFIG";

/// One translated flow, as `netd nat ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatFlow {
    /// "tcp", "udp", "icmp".
    pub protocol: String,
    /// The container's address and port (ICMP: identifier).
    pub inside: (Ipv4Addr, u16),
    /// What the outside sees: the uplink's address and the NAT port.
    pub outside: (Ipv4Addr, u16),
    /// The remote end (ICMP: port 0).
    pub remote: (Ipv4Addr, u16),
    /// TCP: "syn-sent", "established", "fin", "closed"; UDP: "unreplied", "replied", "stream"
    /// (answered and still going 2 s after its start: it lives 120 s, not 30); ICMP:
    /// "unreplied", "replied".
    pub state: String,
    /// Seconds since the flow was created / since its last packet, and until it expires.
    pub age_secs: u64,
    pub idle_secs: u64,
    pub expires_in_secs: u64,
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the clock of `bpf_ktime_get_coarse_ns`, which the datapath
/// stamps flows with (cheaper than the precise clock; a tick is plenty for timeouts).
#[expect(unsafe_code, reason = "clock_gettime(2) with a chosen clock has no safe std wrapper")]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// The translation table at a glance, as `netd nat stats` shows it (with the daemon's uplinks
/// and the datapath's counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatTableStats {
    /// Live flows, and how many the table holds (its size when it was created: a table adopted
    /// from a pin keeps its size).
    pub flows: u64,
    pub max_flows: u64,
    /// Flows that expired and wait for the collector (the datapath treats them as gone).
    pub expired: u64,
    /// Live flows by protocol and state, named as `netd nat ls` names them ("tcp established").
    pub states: std::collections::BTreeMap<String, u64>,
    /// The ports (and ICMP identifiers) masquerade hands out, inclusive.
    pub port_min: u16,
    pub port_max: u16,
}

fn addr(wire: u32) -> Ipv4Addr {
    Ipv4Addr::from(wire.to_ne_bytes())
}

fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn state_name(protocol: u8, egress: &NatEntry, ingress: &NatEntry) -> &'static str {
    let both = egress.flags | ingress.flags;
    let replied = ingress.flags & NatFlags::SEEN != 0;
    match protocol {
        6 if tcp_closed(egress.flags, ingress.flags) => "closed",
        6 if both & NatFlags::TCP_FIN != 0 => "fin",
        6 if replied => "established",
        6 => "syn-sent",
        17 if assured(protocol, egress, ingress) => "stream",
        _ if replied => "replied",
        _ => "unreplied",
    }
}

/// The flows of `entries` whose two entries are both there: egress key, egress entry and
/// ingress entry (a pair half-created or half-deleted is left out).
fn pairs(entries: &[(Ipv4Tuple, NatEntry)]) -> impl Iterator<Item = (&Ipv4Tuple, &NatEntry, NatEntry)> {
    let ingress: std::collections::HashMap<Ipv4Tuple, NatEntry> =
        entries.iter().filter(|(_, e)| e.flags & NatFlags::INGRESS != 0).copied().collect();
    entries
        .iter()
        .filter(|(_, e)| e.flags & NatFlags::INGRESS == 0)
        .filter_map(move |(k, e)| ingress.get(&reply_key(k, e.addr, e.port)).map(|i| (k, e, *i)))
}

impl Datapath {
    fn nat_table(&mut self) -> Result<HashMap<&mut MapData, Ipv4Tuple, NatEntry>> {
        let map = self.ebpf.map_mut(NAT).ok_or(DatapathError::MissingMap { name: NAT })?;
        HashMap::try_from(map).map_err(map_err(NAT))
    }

    /// Sets the ports (and ICMP identifiers) masquerade hands out, inclusive. Until it is set,
    /// the datapath masquerades nothing.
    pub fn set_nat_config(&mut self, port_min: u16, port_max: u16) -> Result<()> {
        let map = self.ebpf.map_mut(NAT_CONFIG).ok_or(DatapathError::MissingMap { name: NAT_CONFIG })?;
        let mut a = Array::<_, NatConfig>::try_from(map).map_err(map_err(NAT_CONFIG))?;
        a.set(0, NatConfig { port_min, port_max, pad: 0 }, 0).map_err(map_err(NAT_CONFIG))
    }

    /// Makes `ifindex` an uplink that masquerades with `address`.
    pub fn set_uplink(&mut self, ifindex: u32, address: Ipv4Addr) -> Result<()> {
        let map = self.ebpf.map_mut(UPLINKS).ok_or(DatapathError::MissingMap { name: UPLINKS })?;
        let mut m = HashMap::<_, u32, UplinkInfo>::try_from(map).map_err(map_err(UPLINKS))?;
        m.insert(ifindex, UplinkInfo { addr: u32::from_ne_bytes(address.octets()), pad: 0 }, 0)
            .map_err(map_err(UPLINKS))
    }

    /// Forgets uplink `ifindex` (absent is fine).
    pub fn remove_uplink(&mut self, ifindex: u32) -> Result<()> {
        let map = self.ebpf.map_mut(UPLINKS).ok_or(DatapathError::MissingMap { name: UPLINKS })?;
        let mut m = HashMap::<_, u32, UplinkInfo>::try_from(map).map_err(map_err(UPLINKS))?;
        match m.remove(&ifindex) {
            Err(e) if !is_absent(&e) => Err(map_err(UPLINKS)(e)),
            _ => Ok(()),
        }
    }

    /// The uplinks in the map: (ifindex, address).
    pub fn uplinks(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        let map = self.ebpf.map(UPLINKS).ok_or(DatapathError::MissingMap { name: UPLINKS })?;
        let m = HashMap::<_, u32, UplinkInfo>::try_from(map).map_err(map_err(UPLINKS))?;
        m.iter().map(|r| r.map(|(k, v)| (k, addr(v.addr))).map_err(map_err(UPLINKS))).collect()
    }

    /// Writes one entry of the translation table as is (tests and tools: e.g. ageing a flow).
    pub fn nat_set_entry(&mut self, key: &Ipv4Tuple, entry: &NatEntry) -> Result<()> {
        let mut t = self.nat_table()?;
        t.insert(key, entry, 0).map_err(map_err(NAT))
    }

    /// Every entry of the translation table (both directions).
    pub fn nat_entries(&mut self) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        if let Some(aya::maps::Map::HashMap(data)) = self.ebpf.map(NAT) {
            if let Ok(all) = super::batch::lookup_all(data, 4096) {
                return Ok(all);
            }
        }
        // Kernels without batch lookups: key by key. Entries may vanish while iterating (the
        // datapath and the collector delete): skip those.
        let t = self.nat_table()?;
        Ok(t.iter().filter_map(std::result::Result::ok).collect())
    }

    /// The live flows, one per egress entry, at `now` (see [`monotonic_ns`]).
    pub fn nat_flows(&mut self, now: u64) -> Result<Vec<NatFlow>> {
        let entries = self.nat_entries()?;
        let mut out = Vec::new();
        for (k, e, i) in pairs(&entries) {
            let i = &i;
            if flow_expired(k.protocol, e, i, now) {
                continue;
            }
            let last = e.last_seen.max(i.last_seen);
            let lifetime = netd_common::nat::flow_lifetime_ns(k.protocol, e, i);
            let secs = |ns: u64| ns / 1_000_000_000;
            out.push(NatFlow {
                protocol: protocol_name(k.protocol),
                inside: (addr(k.src_addr), u16::from_be(k.src_port)),
                outside: (addr(e.addr), u16::from_be(e.port)),
                remote: (addr(k.dst_addr), u16::from_be(k.dst_port)),
                state: state_name(k.protocol, e, i).into(),
                age_secs: secs(now.saturating_sub(e.created)),
                idle_secs: secs(now.saturating_sub(last)),
                expires_in_secs: secs((last + lifetime).saturating_sub(now)),
            });
        }
        out.sort_by(|a, b| (a.inside, a.remote, &a.protocol).cmp(&(b.inside, b.remote, &b.protocol)));
        Ok(out)
    }

    /// The table at `now`: live and expired flows, its size, the live flows' states and the
    /// NAT port range.
    pub fn nat_table_stats(&mut self, now: u64) -> Result<NatTableStats> {
        let max_flows = match self.ebpf.map(NAT) {
            Some(aya::maps::Map::HashMap(data)) => u64::from(data.info().map_err(map_err(NAT))?.max_entries() / 2),
            _ => return Err(DatapathError::MissingMap { name: NAT }),
        };
        let config = {
            let map = self.ebpf.map(NAT_CONFIG).ok_or(DatapathError::MissingMap { name: NAT_CONFIG })?;
            Array::<_, NatConfig>::try_from(map)
                .map_err(map_err(NAT_CONFIG))?
                .get(&0, 0)
                .map_err(map_err(NAT_CONFIG))?
        };
        let entries = self.nat_entries()?;
        let mut stats = NatTableStats {
            max_flows,
            port_min: config.port_min,
            port_max: config.port_max,
            ..NatTableStats::default()
        };
        for (k, e, i) in pairs(&entries) {
            if flow_expired(k.protocol, e, &i, now) {
                stats.expired += 1;
                continue;
            }
            stats.flows += 1;
            let name = format!("{} {}", protocol_name(k.protocol), state_name(k.protocol, e, &i));
            *stats.states.entry(name).or_default() += 1;
        }
        Ok(stats)
    }

    /// Deletes the flows (both entries) whose egress key and entry match `doomed`; returns how
    /// many went.
    pub fn nat_forget(&mut self, doomed: impl Fn(&Ipv4Tuple, &NatEntry) -> bool) -> Result<usize> {
        let entries = self.nat_entries()?;
        let all: std::collections::HashMap<Ipv4Tuple, NatEntry> = entries.iter().copied().collect();
        let mut t = self.nat_table()?;
        let mut removed = 0;
        for (k, e) in entries.iter().filter(|(k, e)| e.flags & NatFlags::INGRESS == 0 && doomed(k, e)) {
            let _ = t.remove(k);
            // The reply key, unless the datapath gave it to another flow since the snapshot.
            let rk = reply_key(k, e.addr, e.port);
            if let (Some(seen), Ok(current)) = (all.get(&rk), t.get(&rk, 0)) {
                if current.created == seen.created && current.addr == seen.addr && current.port == seen.port {
                    let _ = t.remove(&rk);
                }
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Deletes the flows of the container at `inside` (it is gone).
    pub fn nat_forget_inside(&mut self, inside: Ipv4Addr) -> Result<usize> {
        let wire = u32::from_ne_bytes(inside.octets());
        self.nat_forget(|k, _| k.src_addr == wire)
    }

    /// Deletes the flows to remotes inside `subnet/prefix` (a new local network: its addresses
    /// are no longer "outside").
    pub fn nat_forget_remote(&mut self, subnet: Ipv4Addr, prefix: u8) -> Result<usize> {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let net = u32::from(subnet) & mask;
        self.nat_forget(|k, _| u32::from(addr(k.dst_addr)) & mask == net)
    }

    /// Deletes the flows masqueraded with an address none of `uplinks` has any more.
    pub fn nat_forget_unless_outside_in(&mut self, uplinks: &[Ipv4Addr]) -> Result<usize> {
        self.nat_forget(|_, e| !uplinks.contains(&addr(e.addr)))
    }

    /// Deletes expired flows (both entries) and entries whose partner is gone, as of `now`.
    /// Returns how many flows were removed.
    ///
    /// Works from a snapshot, and the datapath keeps changing the table meanwhile (a port of
    /// an expired flow may already serve a new one): each entry is read again right before it
    /// is deleted, and left alone if it changed.
    pub fn nat_collect(&mut self, now: u64) -> Result<usize> {
        let entries = self.nat_entries()?;
        let all: std::collections::HashMap<Ipv4Tuple, NatEntry> = entries.iter().copied().collect();
        let mut t = self.nat_table()?;
        let unchanged = |t: &HashMap<&mut MapData, Ipv4Tuple, NatEntry>, k: &Ipv4Tuple, seen: Option<&NatEntry>| match (
            t.get(k, 0),
            seen,
        ) {
            (Ok(current), Some(seen)) => current == *seen,
            (Err(e), None) => is_absent(&e),
            _ => false,
        };
        let mut removed = 0;
        for (k, e) in &entries {
            if e.flags & NatFlags::INGRESS != 0 {
                // Handled with its egress entry, unless that is gone (a half-created or
                // half-deleted pair).
                let ek = egress_key(k, e);
                let partner = all.get(&ek);
                let orphan = partner.is_none_or(|eg| reply_key(&ek, eg.addr, eg.port) != *k);
                // An orphan is young while its creator is finishing the pair: give it a second.
                if orphan && now > e.created + 1_000_000_000 && unchanged(&t, k, Some(e)) && unchanged(&t, &ek, partner)
                {
                    let _ = t.remove(k);
                }
                continue;
            }
            let rk = reply_key(k, e.addr, e.port);
            let partner = all.get(&rk);
            let expired = match partner {
                Some(i) => flow_expired(k.protocol, e, i, now),
                None => now > e.created + 1_000_000_000,
            };
            if expired && unchanged(&t, k, Some(e)) && unchanged(&t, &rk, partner) {
                let _ = t.remove(k);
                if partner.is_some() {
                    let _ = t.remove(&rk);
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}
