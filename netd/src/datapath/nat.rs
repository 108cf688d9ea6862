//! Masquerade as the control plane sees it: the NAT settings, the uplinks, listing the
//! translation table and collecting expired flows (`netd_common::nat` has the layout and the
//! expiry rules, shared with the datapath).

use std::net::Ipv4Addr;

use aya::maps::{Array, HashMap, MapData};
use netd_common::{
    nat::{assured, egress_key, flow_expired, replied, reply_key, tcp_closed},
    Ipv4Tuple, NatConfig, NatEntry, NatFlags, NatTimeouts, PublishedKey, PublishedPort, UplinkInfo,
};

use super::{is_absent, map_err, Datapath, DatapathError, Result};

const NAT: &str = "NETD_NAT";
const UPLINKS: &str = "NETD_UPLINKS";
const NAT_CONFIG: &str = "NETD_NAT_CONFIG";
const NAT_TIMEOUTS: &str = "NETD_NAT_TIMEOUTS";
const PUBLISHED: &str = "NETD_PUBLISHED";
const HOST_ADDRS: &str = "NETD_HOST_ADDRS";
const TRUSTED: &str = "NETD_TRUSTED";

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
    /// Opened from outside, to a published port (`remote` is the client).
    #[serde(default)]
    pub inbound: bool,
}

impl NatFlow {
    /// How the flow came to be: `masqueraded` (a container's, translated), `published` (opened
    /// from outside through a published port), `inbound` (opened at the container's own
    /// address: `nat-unprotected`, routed networks, direct routing), `routed` (a container's on
    /// a network without masquerade, untranslated).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match (self.inbound, self.inside == self.outside) {
            (true, false) => "published",
            (true, true) => "inbound",
            (false, true) => "routed",
            (false, false) => "masqueraded",
        }
    }
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

/// An IP protocol's name as `netd nat ls` and `netd monitor` show it ("tcp", or its number).
pub fn protocol_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn state_name(protocol: u8, egress: &NatEntry, ingress: &NatEntry) -> &'static str {
    let both = egress.flags | ingress.flags;
    let replied = replied(egress, ingress);
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

/// A key as one integer, ordered as its fields (for sorting and merging).
fn packed(t: &Ipv4Tuple) -> u128 {
    (u128::from(t.src_addr) << 96)
        | (u128::from(t.dst_addr) << 64)
        | (u128::from(t.src_port) << 48)
        | (u128::from(t.dst_port) << 32)
        | u128::from(t.protocol)
}

/// The flows of a snapshot of the table, found by a merge join of the egress entries' reply
/// keys with the ingress entries' keys: two sorts, no hashing, so the time is O(n log n)
/// whatever tuples the containers and the outside chose (a hash map keyed by them could be made
/// to collide). On a full default table (524,288 entries) it takes ~25 ms, against ~180 ms for a
/// hash map of every entry; reading the table takes 150–165 ms of kernel time.
struct Flows {
    /// Each egress entry's index, with its ingress partner's (`None`: absent, as in a pair
    /// half-created or half-deleted).
    egress: Vec<(usize, Option<usize>)>,
    /// Ingress entries no egress entry names, or that name another egress entry.
    orphans: Vec<usize>,
}

impl Flows {
    fn of(entries: &[(Ipv4Tuple, NatEntry)]) -> Self {
        let is_ingress = |e: &NatEntry| e.flags & NatFlags::INGRESS != 0;
        let mut replies: Vec<(u128, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| !is_ingress(e))
            .map(|(i, (k, e))| (packed(&reply_key(k, e.addr, e.port)), i))
            .collect();
        let mut ingress: Vec<(u128, usize)> =
            entries.iter().enumerate().filter(|(_, (_, e))| is_ingress(e)).map(|(i, (k, _))| (packed(k), i)).collect();
        replies.sort_unstable();
        ingress.sort_unstable();
        let mut flows = Flows { egress: Vec::with_capacity(replies.len()), orphans: Vec::new() };
        let (mut a, mut b) = (0, 0);
        while a < replies.len() || b < ingress.len() {
            let order = match (replies.get(a), ingress.get(b)) {
                (Some(r), Some(i)) => r.0.cmp(&i.0),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    flows.egress.push((replies[a].1, None));
                    a += 1;
                }
                std::cmp::Ordering::Greater => {
                    flows.orphans.push(ingress[b].1);
                    b += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (eg, ing) = (replies[a].1, ingress[b].1);
                    flows.egress.push((eg, Some(ing)));
                    // The ingress entry must name this egress entry back to be its partner.
                    let (ik, ie) = &entries[ing];
                    if egress_key(ik, ie) != entries[eg].0 {
                        flows.orphans.push(ing);
                    }
                    a += 1;
                    b += 1;
                }
            }
        }
        flows
    }
}

/// The flows of `entries` whose two entries are both there: egress key, egress entry and
/// ingress entry (a pair half-created or half-deleted is left out).
fn pairs(entries: &[(Ipv4Tuple, NatEntry)]) -> impl Iterator<Item = (&Ipv4Tuple, &NatEntry, NatEntry)> {
    Flows::of(entries)
        .egress
        .into_iter()
        .filter_map(move |(e, i)| i.map(|i| (&entries[e].0, &entries[e].1, entries[i].1)))
}

impl Datapath {
    fn nat_table(&mut self) -> Result<HashMap<&mut MapData, Ipv4Tuple, NatEntry>> {
        let map = self.ebpf.map_mut(NAT).ok_or(DatapathError::MissingMap { name: NAT })?;
        HashMap::try_from(map).map_err(map_err(NAT))
    }

    /// Sets the ports (and ICMP identifiers) masquerade hands out, inclusive. Until it is set,
    /// the datapath masquerades nothing. Clears the flags: the reports of new flows are off
    /// (a daemon killed while a monitor ran may have left them on).
    pub fn set_nat_config(&mut self, port_min: u16, port_max: u16) -> Result<()> {
        let map = self.ebpf.map_mut(NAT_CONFIG).ok_or(DatapathError::MissingMap { name: NAT_CONFIG })?;
        let mut a = Array::<_, NatConfig>::try_from(map).map_err(map_err(NAT_CONFIG))?;
        a.set(0, NatConfig { port_min, port_max, flags: 0 }, 0).map_err(map_err(NAT_CONFIG))
    }

    /// Sets how long flows live after their last packet (zero fields: the defaults), for the
    /// datapath and for this side's collector and listings alike. Applies to the flows there
    /// are too: each is judged by its last packet and the timeouts of the moment.
    pub fn set_nat_timeouts(&mut self, timeouts: &NatTimeouts) -> Result<()> {
        let map = self.ebpf.map_mut(NAT_TIMEOUTS).ok_or(DatapathError::MissingMap { name: NAT_TIMEOUTS })?;
        let mut a = Array::<_, NatTimeouts>::try_from(map).map_err(map_err(NAT_TIMEOUTS))?;
        a.set(0, *timeouts, 0).map_err(map_err(NAT_TIMEOUTS))
    }

    /// The timeouts the datapath judges flows by (see [`Datapath::set_nat_timeouts`]).
    pub fn nat_timeouts(&self) -> Result<NatTimeouts> {
        let map = self.ebpf.map(NAT_TIMEOUTS).ok_or(DatapathError::MissingMap { name: NAT_TIMEOUTS })?;
        Array::<_, NatTimeouts>::try_from(map).map_err(map_err(NAT_TIMEOUTS))?.get(&0, 0).map_err(map_err(NAT_TIMEOUTS))
    }

    /// Turns the report of every new flow (a `NatEvent` in the events' ring) on or off.
    pub fn set_nat_events(&mut self, on: bool) -> Result<()> {
        self.set_nat_flag(NatConfig::EVENTS, on)
    }

    /// Says whether the stack takes translated packets from the bridges
    /// ([`NatConfig::STACK_FRAGMENTS`]: those too big for their uplink, without DF, go to it).
    pub fn set_nat_stack_fragments(&mut self, on: bool) -> Result<()> {
        self.set_nat_flag(NatConfig::STACK_FRAGMENTS, on)
    }

    fn set_nat_flag(&mut self, flag: u32, on: bool) -> Result<()> {
        let map = self.ebpf.map_mut(NAT_CONFIG).ok_or(DatapathError::MissingMap { name: NAT_CONFIG })?;
        let mut a = Array::<_, NatConfig>::try_from(map).map_err(map_err(NAT_CONFIG))?;
        let mut cfg = a.get(&0, 0).map_err(map_err(NAT_CONFIG))?;
        cfg.flags = if on { cfg.flags | flag } else { cfg.flags & !flag };
        a.set(0, cfg, 0).map_err(map_err(NAT_CONFIG))
    }

    /// Says whether new flows may share routes ([`NatConfig::SHARED_ROUTES`]: no routing rule
    /// selects by protocol or port).
    pub fn set_nat_shared_routes(&mut self, on: bool) -> Result<()> {
        self.set_nat_flag(NatConfig::SHARED_ROUTES, on)
    }

    /// Makes `ifindex` an uplink that masquerades with `address`, with `flags`
    /// ([`UplinkInfo::PEER`]: a veth uplink whose new flows are delivered into its peer;
    /// [`UplinkInfo::TRACE`]: some endpoint is traced).
    pub fn set_uplink(&mut self, ifindex: u32, address: Ipv4Addr, flags: u32) -> Result<()> {
        let map = self.ebpf.map_mut(UPLINKS).ok_or(DatapathError::MissingMap { name: UPLINKS })?;
        let mut m = HashMap::<_, u32, UplinkInfo>::try_from(map).map_err(map_err(UPLINKS))?;
        m.insert(ifindex, UplinkInfo { addr: u32::from_ne_bytes(address.octets()), flags }, 0).map_err(map_err(UPLINKS))
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

    /// The uplinks in the map: (ifindex, address, flags).
    pub fn uplinks(&self) -> Result<Vec<(u32, Ipv4Addr, u32)>> {
        let map = self.ebpf.map(UPLINKS).ok_or(DatapathError::MissingMap { name: UPLINKS })?;
        let m = HashMap::<_, u32, UplinkInfo>::try_from(map).map_err(map_err(UPLINKS))?;
        m.iter().map(|r| r.map(|(k, v)| (k, addr(v.addr), v.flags)).map_err(map_err(UPLINKS))).collect()
    }

    /// How many uplinks and guarded interfaces the datapath holds: `MAX_UPLINKS`, or less in a
    /// map pinned by an earlier daemon, which this one adopted.
    pub fn uplinks_capacity(&self) -> Result<u32> {
        match self.ebpf.map(UPLINKS) {
            Some(aya::maps::Map::HashMap(data)) => Ok(data.info().map_err(map_err(UPLINKS))?.max_entries()),
            _ => Err(DatapathError::MissingMap { name: UPLINKS }),
        }
    }

    /// Publishes a port: what arrives on an uplink for `key` goes to `to`.
    pub fn set_published(&mut self, key: &PublishedKey, to: &PublishedPort) -> Result<()> {
        let map = self.ebpf.map_mut(PUBLISHED).ok_or(DatapathError::MissingMap { name: PUBLISHED })?;
        let mut m = HashMap::<_, PublishedKey, PublishedPort>::try_from(map).map_err(map_err(PUBLISHED))?;
        m.insert(key, to, 0).map_err(map_err(PUBLISHED))
    }

    /// Unpublishes a port (absent is fine). Its live flows stay until they end.
    pub fn remove_published(&mut self, key: &PublishedKey) -> Result<()> {
        let map = self.ebpf.map_mut(PUBLISHED).ok_or(DatapathError::MissingMap { name: PUBLISHED })?;
        let mut m = HashMap::<_, PublishedKey, PublishedPort>::try_from(map).map_err(map_err(PUBLISHED))?;
        match m.remove(key) {
            Err(e) if !is_absent(&e) => Err(map_err(PUBLISHED)(e)),
            _ => Ok(()),
        }
    }

    /// Makes the host's addresses in the map `addrs` (published ports are reached on each);
    /// writes only what changed.
    pub fn set_host_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let wanted = addrs.iter().map(|a| u32::from_ne_bytes(a.octets())).collect();
        self.set_keys::<u32>(HOST_ADDRS, &wanted)
    }

    /// Makes the interfaces each network trusts (`com.docker.network.bridge.trusted_host_interfaces`)
    /// in the map: `pairs` of (network id, ifindex); writes only what changed.
    pub fn set_trusted(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        let wanted = pairs.iter().map(|&(network, ifindex)| netd_common::nat::trusted_key(network, ifindex)).collect();
        self.set_keys::<u64>(TRUSTED, &wanted)
    }

    /// The (network id, ifindex) pairs in `NETD_TRUSTED`.
    pub fn trusted(&self) -> Result<Vec<(u32, u32)>> {
        let map = self.ebpf.map(TRUSTED).ok_or(DatapathError::MissingMap { name: TRUSTED })?;
        let m = HashMap::<_, u64, u32>::try_from(map).map_err(map_err(TRUSTED))?;
        let keys: Vec<u64> = m.keys().collect::<std::result::Result<_, _>>().map_err(map_err(TRUSTED))?;
        #[expect(clippy::cast_possible_truncation, reason = "the key's two halves")]
        Ok(keys.into_iter().map(|k| ((k >> 32) as u32, k as u32)).collect())
    }

    /// Makes the keys of the set map `name` (values unused) `wanted`; writes only what changed.
    fn set_keys<K: aya::Pod + Ord>(
        &mut self,
        name: &'static str,
        wanted: &std::collections::BTreeSet<K>,
    ) -> Result<()> {
        let map = self.ebpf.map_mut(name).ok_or(DatapathError::MissingMap { name })?;
        let mut m = HashMap::<_, K, u32>::try_from(map).map_err(map_err(name))?;
        let current: std::collections::BTreeSet<K> =
            m.keys().collect::<std::result::Result<_, _>>().map_err(map_err(name))?;
        for gone in current.difference(wanted) {
            match m.remove(gone) {
                Err(e) if !is_absent(&e) => return Err(map_err(name)(e)),
                _ => {}
            }
        }
        for new in wanted.difference(&current) {
            m.insert(new, 1, 0).map_err(map_err(name))?;
        }
        Ok(())
    }

    /// Whether any port is published (the first key settles it).
    pub fn any_published(&self) -> Result<bool> {
        let map = self.ebpf.map(PUBLISHED).ok_or(DatapathError::MissingMap { name: PUBLISHED })?;
        let m = HashMap::<_, PublishedKey, PublishedPort>::try_from(map).map_err(map_err(PUBLISHED))?;
        m.keys().next().transpose().map(|k| k.is_some()).map_err(map_err(PUBLISHED))
    }

    /// The published ports in the map.
    pub fn published(&self) -> Result<Vec<(PublishedKey, PublishedPort)>> {
        let map = self.ebpf.map(PUBLISHED).ok_or(DatapathError::MissingMap { name: PUBLISHED })?;
        let m = HashMap::<_, PublishedKey, PublishedPort>::try_from(map).map_err(map_err(PUBLISHED))?;
        m.iter().collect::<std::result::Result<_, _>>().map_err(map_err(PUBLISHED))
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
        let timeouts = self.nat_timeouts()?;
        let entries = self.nat_entries()?;
        let mut out = Vec::new();
        for (k, e, i) in pairs(&entries) {
            let i = &i;
            if flow_expired(k.protocol, e, i, now, &timeouts) {
                continue;
            }
            let last = e.last_seen.max(i.last_seen);
            let lifetime = netd_common::nat::flow_lifetime_ns(k.protocol, e, i, &timeouts);
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
                inbound: (e.flags | i.flags) & NatFlags::INBOUND != 0,
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
        let timeouts = self.nat_timeouts()?;
        let entries = self.nat_entries()?;
        let mut stats = NatTableStats {
            max_flows,
            port_min: config.port_min,
            port_max: config.port_max,
            ..NatTableStats::default()
        };
        // Counted by (protocol, state), named once at the end.
        let mut by_state: std::collections::BTreeMap<(u8, &str), u64> = std::collections::BTreeMap::new();
        for (k, e, i) in pairs(&entries) {
            if flow_expired(k.protocol, e, &i, now, &timeouts) {
                stats.expired += 1;
                continue;
            }
            stats.flows += 1;
            *by_state.entry((k.protocol, state_name(k.protocol, e, &i))).or_default() += 1;
        }
        stats.states =
            by_state.into_iter().map(|((p, state), n)| (format!("{} {state}", protocol_name(p)), n)).collect();
        Ok(stats)
    }

    /// Deletes the flows (both entries) whose egress key and entry match `doomed`; returns them
    /// (egress key and entry).
    pub fn nat_forget(&mut self, doomed: impl Fn(&Ipv4Tuple, &NatEntry) -> bool) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        let entries = self.nat_entries()?;
        let flows = Flows::of(&entries);
        let mut t = self.nat_table()?;
        let mut removed = Vec::new();
        for (e, i) in flows.egress {
            let (k, entry) = &entries[e];
            if !doomed(k, entry) {
                continue;
            }
            let _ = t.remove(k);
            // The reply key, unless the datapath gave it to another flow since the snapshot.
            if let Some((rk, seen)) = i.map(|i| &entries[i]) {
                if let Ok(current) = t.get(rk, 0) {
                    if current.created == seen.created && current.addr == seen.addr && current.port == seen.port {
                        let _ = t.remove(rk);
                    }
                }
            }
            removed.push((*k, *entry));
        }
        Ok(removed)
    }

    /// Deletes the flows `listed` (as [`Datapath::nat_flows`] gave them: by protocol, inside and
    /// remote end), those still there.
    pub fn nat_forget_listed(&mut self, listed: &[NatFlow]) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        type Listed<'a> = (&'a str, (Ipv4Addr, u16), (Ipv4Addr, u16));
        let doomed: std::collections::HashSet<Listed<'_>> =
            listed.iter().map(|f| (f.protocol.as_str(), f.inside, f.remote)).collect();
        self.nat_forget(|k, _| {
            let inside = (addr(k.src_addr), u16::from_be(k.src_port));
            let remote = (addr(k.dst_addr), u16::from_be(k.dst_port));
            doomed.contains(&(protocol_name(k.protocol).as_str(), inside, remote))
        })
    }

    /// Deletes the flows of the container at `inside` (it is gone).
    pub fn nat_forget_inside(&mut self, inside: Ipv4Addr) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        let wire = u32::from_ne_bytes(inside.octets());
        self.nat_forget(|k, _| k.src_addr == wire)
    }

    /// Deletes the flows to remotes inside `subnet/prefix` (a new local network: its addresses
    /// are no longer "outside").
    pub fn nat_forget_remote(&mut self, subnet: Ipv4Addr, prefix: u8) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        let net = u32::from(subnet) & mask;
        self.nat_forget(|k, _| u32::from(addr(k.dst_addr)) & mask == net)
    }

    /// Deletes the flows translated to an address that is not among `outside` any more (the
    /// uplinks', the networks' own). Untranslated flows (the container's own address: a network
    /// without masquerade, a connection opened at it) stay, and so do flows opened from outside
    /// to a published port at an address the host still has (among `host`).
    pub fn nat_forget_unless_outside_in(
        &mut self,
        outside: &[Ipv4Addr],
        host: &[Ipv4Addr],
    ) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        self.nat_forget(|k, e| {
            let to = addr(e.addr);
            let published = e.flags & NatFlags::INBOUND != 0 && host.contains(&to);
            e.addr != k.src_addr && !outside.contains(&to) && !published
        })
    }

    /// Deletes expired flows (both entries) and entries whose partner is gone, as of `now`.
    /// Returns the flows removed (egress key and entry).
    ///
    /// Works from a snapshot, and the datapath keeps changing the table meanwhile (a port of
    /// an expired flow may already serve a new one): each entry is read again right before it
    /// is deleted, and left alone if it changed.
    pub fn nat_collect(&mut self, now: u64) -> Result<Vec<(Ipv4Tuple, NatEntry)>> {
        let timeouts = self.nat_timeouts()?;
        let entries = self.nat_entries()?;
        let flows = Flows::of(&entries);
        let mut t = self.nat_table()?;
        let unchanged = |t: &HashMap<&mut MapData, Ipv4Tuple, NatEntry>, k: &Ipv4Tuple, seen: Option<&NatEntry>| match (
            t.get(k, 0),
            seen,
        ) {
            (Ok(current), Some(seen)) => current == *seen,
            (Err(e), None) => is_absent(&e),
            _ => false,
        };
        // An orphan is young while its creator is finishing the pair: give it a second.
        for (k, e) in flows.orphans.into_iter().map(|i| &entries[i]) {
            if now > e.created + 1_000_000_000 {
                let ek = egress_key(k, e);
                if unchanged(&t, k, Some(e)) && t.get(&ek, 0).map_or(true, |eg| reply_key(&ek, eg.addr, eg.port) != *k)
                {
                    let _ = t.remove(k);
                }
            }
        }
        let mut removed = Vec::new();
        for (e, i) in flows.egress {
            let (k, entry) = &entries[e];
            let partner = i.map(|i| &entries[i]);
            let expired = match partner {
                Some((_, ingress)) => flow_expired(k.protocol, entry, ingress, now, &timeouts),
                None => now > entry.created + 1_000_000_000,
            };
            let rk = reply_key(k, entry.addr, entry.port);
            if expired && unchanged(&t, k, Some(entry)) && unchanged(&t, &rk, partner.map(|(_, i)| i)) {
                let _ = t.remove(k);
                if partner.is_some() {
                    let _ = t.remove(&rk);
                }
                removed.push((*k, *entry));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use netd_common::{
        nat::{egress_key, reply_key},
        Ipv4Tuple, NatEntry, NatFlags,
    };

    use super::Flows;

    /// A flow's two entries: egress key and entry, reply key and ingress entry.
    fn flow(container: u8, port: u16, nat_port: u16) -> [(Ipv4Tuple, NatEntry); 2] {
        let eg =
            Ipv4Tuple::new(u32::from_ne_bytes([172, 17, 0, container]), 0x0100_000a, port.to_be(), 80u16.to_be(), 6);
        let uplink = 0x0100_a8c0;
        let e = NatEntry { addr: uplink, port: nat_port.to_be(), ..NatEntry::default() };
        let rk = reply_key(&eg, uplink, nat_port.to_be());
        let i = NatEntry { addr: eg.src_addr, port: eg.src_port, flags: NatFlags::INGRESS, ..NatEntry::default() };
        assert_eq!(egress_key(&rk, &i), eg);
        [(eg, e), (rk, i)]
    }

    #[test]
    fn flows_pair_each_egress_entry_with_the_ingress_entry_that_names_it() {
        let [a_eg, a_in] = flow(2, 40000, 1024);
        let [b_eg, _] = flow(3, 40000, 1025);
        let [_, c_in] = flow(4, 40001, 1026);
        // An ingress entry at a's reply key that names another container: not a's partner
        // either way round, so it counts as an orphan too.
        let [_, d_in] = flow(5, 40002, 1024);
        let stray = (a_in.0, d_in.1);
        let entries = vec![c_in, b_eg, a_in, a_eg];
        let f = Flows::of(&entries);
        let mut egress = f.egress.clone();
        egress.sort_unstable();
        assert_eq!(egress, vec![(1, None), (3, Some(2))], "b has no partner, a has its own");
        assert_eq!(f.orphans, vec![0], "c's ingress entry has no egress entry");

        let entries = vec![a_eg, stray];
        let f = Flows::of(&entries);
        assert_eq!(f.egress, vec![(0, Some(1))]);
        assert_eq!(f.orphans, vec![1]);
    }
}
