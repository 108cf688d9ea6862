//! The daemon's side of masquerade: the NAT port range (disjoint from the host's own
//! ephemeral ports), the uplinks (attached and kept in sync with their addresses), collecting
//! expired flows, and listing translations.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use netd_common::{
    nat::{
        ICMP_TIMEOUT_NS, TCP_ESTABLISHED_TIMEOUT_NS, TCP_FIN_TIMEOUT_NS, TCP_RST_TIMEOUT_NS, TCP_SYN_TIMEOUT_NS,
        UDP_STREAM_TIMEOUT_NS, UDP_TIMEOUT_NS,
    },
    NatTimeouts, Reason, UplinkInfo,
};

use crate::{
    api::filters::Filters,
    datapath::{monotonic_ns, NatFlow, NatTableStats},
    netlink::{LinkLayer, LinkSummary},
};

use super::{
    error::{Error, Result},
    Daemon,
};

/// `netd nat stats`: the translation table, the uplinks, and how often a full table made room
/// for a new flow or refused one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatStats {
    #[serde(flatten)]
    pub table: NatTableStats,
    /// The uplinks in use, described (`eth0 (192.0.2.10)`).
    pub uplinks: Vec<String>,
    /// New flows since the datapath was loaded that evicted another from a full table
    /// (`redirect-nat-evicted`), that a full table refused (`drop-nat-table-full`), and that
    /// found no free port (`drop-nat-no-port`): packets, a refused flow counts each retry.
    pub evicted: u64,
    pub refused_table_full: u64,
    pub refused_no_port: u64,
    /// How long flows live after their last packet, in seconds, by kind (`tcp-established`...):
    /// the defaults or `--nat-timeout`.
    #[serde(default)]
    pub timeouts: std::collections::BTreeMap<String, u64>,
}

/// The kinds of `--nat-timeout`, in the order they are shown, with their defaults.
pub const TIMEOUT_KINDS: [(&str, u64); 7] = [
    ("tcp-syn", TCP_SYN_TIMEOUT_NS),
    ("tcp-established", TCP_ESTABLISHED_TIMEOUT_NS),
    ("tcp-fin", TCP_FIN_TIMEOUT_NS),
    ("tcp-rst", TCP_RST_TIMEOUT_NS),
    ("udp", UDP_TIMEOUT_NS),
    ("udp-stream", UDP_STREAM_TIMEOUT_NS),
    ("icmp", ICMP_TIMEOUT_NS),
];

/// The longest timeout `--nat-timeout` takes.
const MAX_TIMEOUT_SECS: u32 = 365 * 86_400;

/// One `--nat-timeout KIND=DURATION`: `kind` indexes [`TIMEOUT_KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatTimeout {
    pub kind: usize,
    pub secs: u32,
}

impl FromStr for NatTimeout {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let kinds = || TIMEOUT_KINDS.map(|(k, _)| k).join(", ");
        let (kind, duration) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid NAT timeout {s:?}: expected KIND=DURATION, KIND one of {}", kinds()))?;
        let kind = TIMEOUT_KINDS
            .iter()
            .position(|(k, _)| *k == kind)
            .ok_or_else(|| format!("unknown NAT timeout {kind:?}: one of {}", kinds()))?;
        Ok(Self { kind, secs: parse_duration(duration)? })
    }
}

/// `30`, `30s`, `5m`, `6h`, `5d`: whole seconds, minutes, hours or days, from 1 s to 365 days.
fn parse_duration(s: &str) -> std::result::Result<u32, String> {
    let bad = || format!("invalid duration {s:?}: a whole number of seconds, or of s, m, h or d (1s to 365d)");
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u32 = number.parse().map_err(|_| bad())?;
    match n.checked_mul(scale) {
        Some(secs) if (1..=MAX_TIMEOUT_SECS).contains(&secs) => Ok(secs),
        _ => Err(bad()),
    }
}

/// `secs` in the largest unit that divides it: `6h`, `90s`.
fn human_secs(secs: u64) -> String {
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The datapath's timeouts for `--nat-timeout` (the last of a kind wins; the rest default).
pub fn nat_timeouts(given: &[NatTimeout]) -> NatTimeouts {
    let mut t = NatTimeouts::DEFAULT;
    for g in given {
        // In `TIMEOUT_KINDS` order, as `timeout_secs` reads them.
        let fields = [
            &mut t.tcp_syn,
            &mut t.tcp_established,
            &mut t.tcp_fin,
            &mut t.tcp_rst,
            &mut t.udp,
            &mut t.udp_stream,
            &mut t.icmp,
        ];
        *fields[g.kind] = g.secs;
    }
    t
}

/// Timeouts in seconds by kind, as `netd nat stats` and the log say them: `tcp-syn 1m, ...`,
/// in [`TIMEOUT_KINDS`] order.
pub fn describe_timeouts(secs: &std::collections::BTreeMap<String, u64>) -> String {
    let listed: Vec<String> = TIMEOUT_KINDS
        .iter()
        .filter_map(|(kind, _)| secs.get(*kind).map(|s| format!("{kind} {}", human_secs(*s))))
        .collect();
    listed.join(", ")
}

/// Every kind's timeout in seconds, as `t` sets it or by default.
pub fn timeout_secs(t: &NatTimeouts) -> std::collections::BTreeMap<String, u64> {
    let set = [t.tcp_syn, t.tcp_established, t.tcp_fin, t.tcp_rst, t.udp, t.udp_stream, t.icmp];
    TIMEOUT_KINDS
        .iter()
        .zip(set)
        .map(|((kind, default_ns), secs)| {
            (kind.to_string(), if secs == 0 { default_ns / 1_000_000_000 } else { u64::from(secs) })
        })
        .collect()
}

/// The keys of `netd nat ls -f KEY=VALUE`: `sandbox` (name or id: the flows of its addresses),
/// `protocol`, `state`, `remote` and `outside` (an address, or address and port), `kind` (see
/// `NatFlow::kind`).
pub const NAT_FILTERS: [&str; 6] = ["sandbox", "protocol", "state", "remote", "outside", "kind"];

/// The values the closed filter keys take.
const NAT_FILTER_VALUES: [(&str, &[&str]); 3] = [
    ("protocol", &["tcp", "udp", "icmp"]),
    ("state", &["syn-sent", "established", "fin", "closed", "unreplied", "replied", "stream"]),
    ("kind", &["masqueraded", "published", "inbound", "routed"]),
];

/// Refuses filter values that can match nothing by mistake (a misspelt state, a bad address).
fn check_nat_filters(f: &Filters) -> Result<()> {
    for (key, allowed) in NAT_FILTER_VALUES {
        if let Some(bad) = f.values(key).iter().find(|v| !allowed.contains(&v.as_str())) {
            return Err(Error::InvalidParameter(format!(
                "invalid filter '{key}={bad}': one of {}",
                allowed.join(", ")
            )));
        }
    }
    for key in ["remote", "outside"] {
        for v in f.values(key) {
            addr_and_port(v).map_err(|e| Error::InvalidParameter(format!("invalid filter '{key}={v}': {e}")))?;
        }
    }
    Ok(())
}

/// `ADDR` or `ADDR:PORT`.
fn addr_and_port(v: &str) -> std::result::Result<(Ipv4Addr, Option<u16>), String> {
    if let Ok(a) = v.parse::<Ipv4Addr>() {
        return Ok((a, None));
    }
    let at: std::net::SocketAddrV4 = v.parse().map_err(|_| "expected an IPv4 address, or ADDR:PORT".to_owned())?;
    Ok((*at.ip(), Some(at.port())))
}

/// Whether `flow` passes the filters `f` (checked), `inside` being the addresses of the
/// sandboxes they name (`None`: no `sandbox` filter).
fn nat_filters_keep(f: &Filters, inside: Option<&[Ipv4Addr]>, flow: &NatFlow) -> bool {
    let at = |(addr, port): (Ipv4Addr, u16)| {
        move |v: &str| addr_and_port(v).is_ok_and(|(a, p)| a == addr && p.is_none_or(|p| p == port))
    };
    inside.is_none_or(|ips| ips.contains(&flow.inside.0))
        && f.any("protocol", |v| v == flow.protocol)
        && f.any("state", |v| v == flow.state)
        && f.any("kind", |v| v == flow.kind())
        && f.any("remote", at(flow.remote))
        && f.any("outside", at(flow.outside))
}

/// A port range, inclusive: `LO-HI`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("invalid port range {s:?}: expected LO-HI with 1 <= LO <= HI <= 65535");
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo == 0 || lo > hi {
            return Err(bad());
        }
        Ok(Self { lo, hi })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.lo, self.hi)
    }
}

impl PortRange {
    fn overlaps(self, other: PortRange) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }

    fn len(self) -> u32 {
        u32::from(self.hi - self.lo) + 1
    }
}

/// The host's ephemeral ports in this namespace (`net.ipv4.ip_local_port_range`).
pub fn local_port_range() -> std::io::Result<PortRange> {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let mut it = s.split_whitespace().filter_map(|w| w.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo <= hi => Ok(PortRange { lo, hi }),
        _ => Err(std::io::Error::other(format!("unexpected ip_local_port_range {s:?}"))),
    }
}

/// Why the stack of this namespace would refuse a packet that arrives on `bridge` from one of
/// the host's own addresses (a translated one), or `None` if it takes it. Sets
/// `accept_local` on the bridge (netd's device) when it is off: without it the source is a
/// martian. A strict `rp_filter` (the larger of `all`'s and the bridge's is 1) refuses it
/// still: the route back to the source is not through the bridge. A bridge not made yet
/// carries nothing: `None`.
fn stack_refuses_translated(bridge: &str) -> Option<String> {
    let conf = |dev: &str, key: &str| format!("/proc/sys/net/ipv4/conf/{dev}/{key}");
    let read = |path: &str| std::fs::read_to_string(path).map(|v| v.trim().to_string());
    let accept_local = conf(bridge, "accept_local");
    match read(&accept_local) {
        Err(_) => return None,
        Ok(v) if v == "1" => {}
        Ok(_) => {
            if let Err(e) = std::fs::write(&accept_local, "1") {
                return Some(format!("setting {accept_local}: {e}"));
            }
        }
    }
    let rp_filter = |dev: &str| read(&conf(dev, "rp_filter")).ok().and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
    let strict = rp_filter("all").max(rp_filter(bridge)) == 1;
    strict.then(|| format!("net.ipv4.conf.all.rp_filter or net.ipv4.conf.{bridge}.rp_filter is 1 (strict)"))
}

/// The range masquerade hands out: `configured` if it avoids the host's ephemeral ports
/// `local`, else an error; by default the larger of the two ranges around `local` in
/// 1024–65535 (privileged ports are never handed out by default).
pub fn nat_port_range(configured: Option<PortRange>, local: PortRange) -> std::result::Result<PortRange, String> {
    if let Some(r) = configured {
        if r.overlaps(local) {
            return Err(format!(
                "--nat-port-range {r} overlaps net.ipv4.ip_local_port_range {local}: the host's own connections \
                 use those ports, choose a disjoint range"
            ));
        }
        return Ok(r);
    }
    let below = (local.lo > 1024).then(|| PortRange { lo: 1024, hi: local.lo - 1 });
    let above = (local.hi < 65535).then(|| PortRange { lo: local.hi.max(1023) + 1, hi: 65535 });
    match (below, above) {
        (Some(b), Some(a)) => Ok(if a.len() > b.len() { a } else { b }),
        (Some(r), None) | (None, Some(r)) => Ok(r),
        (None, None) => Err(format!(
            "net.ipv4.ip_local_port_range {local} leaves no ports for masquerade: narrow it or pass --nat-port-range"
        )),
    }
}

/// The NAT range `cfg` asks for, checked against this namespace's ephemeral ports; returns it
/// with those ports.
pub fn configured_port_range(cfg: &super::Config) -> Result<(PortRange, PortRange)> {
    let local = local_port_range().map_err(Error::io("reading net.ipv4.ip_local_port_range"))?;
    let range = nat_port_range(cfg.nat_port_range, local).map_err(Error::InvalidParameter)?;
    Ok((range, local))
}

/// An uplink as the daemon wants it.
struct Uplink {
    name: String,
    ifindex: u32,
    /// Its primary IPv4 address: what masquerade gives flows leaving by it.
    addr: Ipv4Addr,
    /// New flows go into its peer (a veth across namespaces, with the fast path on).
    peer: bool,
    /// No link-layer header (a tunnel).
    l3: bool,
    /// Guarded, not a way out (`UplinkInfo::GUARD`): it has no IPv4 address (`addr` is
    /// unspecified), or `--uplink` names others.
    guard: bool,
}

impl Uplink {
    /// How `netd nat stats` and the log show it.
    fn describe(&self) -> String {
        let how = match (self.peer, self.l3) {
            (true, _) => ", into its peer",
            (false, true) => ", no link layer",
            (false, false) => "",
        };
        match (self.guard, self.addr.is_unspecified()) {
            (false, _) => format!("{} ({}{how})", self.name, self.addr),
            (true, true) => format!("{} (guarded: no IPv4 address{how})", self.name),
            (true, false) => format!("{} (guarded: {}, not an --uplink{how})", self.name, self.addr),
        }
    }

    /// The address the datapath keeps for it (`NETD_UPLINKS`): none for a guarded one.
    fn datapath_addr(&self) -> Ipv4Addr {
        if self.guard {
            Ipv4Addr::UNSPECIFIED
        } else {
            self.addr
        }
    }

    /// Its flags in `NETD_UPLINKS`, with `marks`.
    fn datapath_flags(&self, marks: u32) -> u32 {
        (if self.peer { UplinkInfo::PEER } else { 0 })
            | if self.l3 { UplinkInfo::L3 } else { 0 }
            | if self.guard { UplinkInfo::GUARD } else { 0 }
            | marks
    }
}

/// The (network datapath id, ifindex) pairs of the interfaces the networks of `state` trust
/// (`com.docker.network.bridge.trusted_host_interfaces`) among `links`.
fn trusted_pairs(state: &super::State, links: &[LinkSummary]) -> Vec<(u32, u32)> {
    state
        .networks
        .values()
        .filter_map(|n| n.bridge.as_ref().map(|b| (n.datapath_id, &b.trusted_host_interfaces)))
        .flat_map(|(id, names)| names.iter().map(move |name| (id, name)))
        .filter_map(|(id, name)| links.iter().find(|l| l.name == *name).map(|l| (id, l.index)))
        .collect()
}

impl Daemon {
    /// The interfaces netd watches: each Ethernet interface of the namespace but the networks'
    /// own bridges and netd's veths, and each one without a link-layer header (a VPN's `tun`
    /// device, `WireGuard`, IP tunnels), each with whether it may be guarded. When `--uplink`
    /// names none, those with an IPv4 address are the uplinks, as Docker's `MASQUERADE` rule
    /// matches `! -o docker0` (containers reach what the host reaches through each, as the
    /// host's address there); the others are guarded (see [`Daemon::sync_uplinks`]). With
    /// more than the datapath holds, the default routes' come first, so they stay uplinks.
    async fn watched_interfaces(
        &self,
        bridges: &[String],
        all: &[LinkSummary],
        capacity: usize,
    ) -> Result<Vec<(LinkSummary, bool)>> {
        let netds =
            |alias: &Option<String>| alias.as_deref().is_some_and(|a| a.starts_with(super::kernel::ALIAS_PREFIX));
        // Not guarded: a device others sit on (a VLAN's or macvlan's parent), which sees their
        // frames first, tags and foreign MACs included (its traffic is theirs to judge), and a
        // bridge port or bond slave, whose traffic reaches the stack through its controller.
        // (As uplinks, with an address, they are as before.)
        let carriers: Vec<u32> = all.iter().filter_map(|l| l.lower).collect();
        let mut links: Vec<(LinkSummary, bool)> = all
            .iter()
            .filter(|l| l.link_layer != LinkLayer::Other && !netds(&l.alias) && !bridges.contains(&l.name))
            .map(|l| {
                let guardable = l.controller.is_none() && !carriers.contains(&l.index);
                (l.clone(), guardable)
            })
            .collect();
        if links.len() > capacity {
            let defaults = self.nl.default_route_interfaces().await?;
            links.sort_by_key(|(l, _)| !defaults.contains(&l.name));
        }
        Ok(links)
    }

    /// Makes the datapath's trusted interfaces (`com.docker.network.bridge.trusted_host_interfaces`)
    /// those of the networks of `state` that exist now (an interface made later is trusted from
    /// the next pass of [`Daemon::sync_uplinks`], one made again under its name too).
    pub(super) async fn sync_trusted(&self, state: &super::State) -> Result<()> {
        let any =
            state.networks.values().any(|n| n.bridge.as_ref().is_some_and(|b| !b.trusted_host_interfaces.is_empty()));
        let links = if any { self.nl.links().await? } else { Vec::new() };
        self.dp().set_trusted(&trusted_pairs(state, &links))?;
        Ok(())
    }

    /// `link` as an uplink with address `addr`, or guarded.
    fn uplink(&self, link: LinkSummary, addr: Ipv4Addr, guard: bool) -> Uplink {
        Uplink {
            // Into the peer only across namespaces (`bpf_redirect_peer` drops within one).
            peer: link.peer_elsewhere && self.cfg.uplink_fast_path,
            l3: link.link_layer == LinkLayer::None,
            name: link.name,
            ifindex: link.index,
            addr,
            guard,
        }
    }

    /// Makes the datapath's uplinks match the configured ones (`--uplink`) or else every
    /// watched interface with an IPv4 address (see [`Daemon::watched_interfaces`]), and guards
    /// the other watched interfaces: attaches `netd_from_uplink` (`netd_from_l3_uplink` to
    /// tunnels) to new ones, records each uplink's primary IPv4 address (changes are
    /// followed), forgets vanished ones, and syncs the networks' trusted interfaces. Called at
    /// start and every 2 s.
    ///
    /// A guarded interface (`UplinkInfo::GUARD`) is no way out, but what arrives on it for a
    /// container is judged as on an uplink, as Docker 28's rules drop it from every interface
    /// but the bridge: without it, an interface without an address (or one `--uplink` leaves
    /// out) let anyone with a route through the host reach containers at their own addresses.
    /// Flows that leave by it are tracked untranslated, as the stack sent them before, so that
    /// their replies come in.
    pub(super) async fn sync_uplinks(&self) -> Result<()> {
        // One dump of the links for the pass: trusted interfaces, uplinks and guards.
        let links = self.nl.links().await?;
        let (trusted, bridges) = {
            let state = self.state.lock().await;
            let bridges: Vec<String> =
                state.networks.values().filter_map(|n| n.bridge.as_ref().map(|b| b.bridge_name.clone())).collect();
            (trusted_pairs(&state, &links), bridges)
        };
        self.dp().set_trusted(&trusted)?;
        self.sync_stack_fragments(&bridges)?;
        self.sync_shared_routes().await?;
        let capacity = self.dp().uplinks_capacity()? as usize;
        let watched = self.watched_interfaces(&bridges, &links, capacity).await?;
        let named: Vec<&LinkSummary> = if self.cfg.uplink.is_empty() {
            watched.iter().map(|(l, _)| l).collect()
        } else {
            self.cfg.uplink.iter().filter_map(|name| links.iter().find(|l| l.name == *name)).collect()
        };
        let mut wanted: Vec<Uplink> = Vec::new();
        for link in named {
            if let Some((addr, _)) = self.nl.ipv4_addresses(link.index).await?.first() {
                wanted.push(self.uplink(link.clone(), *addr, false));
            }
        }
        for (link, guardable) in watched {
            if guardable && !wanted.iter().any(|u| u.ifindex == link.index) {
                let addr = self.nl.ipv4_addresses(link.index).await?.first().map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| *a);
                wanted.push(self.uplink(link, addr, true));
            }
        }
        let left_out = wanted.len().saturating_sub(capacity);
        wanted.truncate(capacity);
        // Published ports are reached on every address of the host.
        let host_addrs = self.nl.all_ipv4_addresses().await?;
        let mut gone = Vec::new();
        let changed = {
            let mut dp = self.dp();
            dp.set_host_addrs(&host_addrs)?;
            // Read under the datapath's lock, which `sync_traces` (and `uplink_marks_changed`) hold to change them.
            let marks = if self.tracing_any() { UplinkInfo::TRACE } else { 0 }
                | self.uplink_marks.load(std::sync::atomic::Ordering::Relaxed);
            let current = dp.uplinks()?;
            for (ifindex, _, _) in &current {
                if !wanted.iter().any(|u| u.ifindex == *ifindex) {
                    dp.remove_uplink(*ifindex)?;
                }
            }
            for name in dp.pinned_uplinks() {
                if !wanted.iter().any(|u| u.name == name) {
                    dp.detach_from_uplink(&name)?;
                }
            }
            for u in &wanted {
                // New, created again since it was attached, or an earlier daemon's.
                dp.attach_from_uplink(&u.name, u.l3)?;
                let (addr, flags) = (u.datapath_addr(), u.datapath_flags(marks));
                if !current.contains(&(u.ifindex, addr, flags)) {
                    dp.set_uplink(u.ifindex, addr, flags)?;
                }
            }
            let mut now: Vec<(u32, Ipv4Addr)> = wanted.iter().map(|u| (u.ifindex, u.datapath_addr())).collect();
            let mut before: Vec<(u32, Ipv4Addr)> = current.iter().map(|(i, a, _)| (*i, *a)).collect();
            now.sort();
            before.sort();
            if now != before {
                // Flows masqueraded with an address no uplink has now cannot get replies
                // (networks' own addresses stay: they are theirs, not the uplinks'; so do
                // flows to published ports at any address the host still has).
                let mut addrs: Vec<Ipv4Addr> = now.iter().map(|(_, a)| *a).collect();
                addrs.extend(dp.snat_addresses()?);
                gone = dp.nat_forget_unless_outside_in(&addrs, &host_addrs)?;
            }
            now != before
        };
        self.report_nat_gone("nat-removed", gone);
        let described: Vec<String> = wanted.iter().map(Uplink::describe).collect();
        let mut uplinks = self.uplinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if changed || *uplinks != described {
            let more =
                if left_out > 0 { format!(" ({left_out} more left out: at most {capacity})") } else { String::new() };
            eprintln!(
                "netd: uplinks: {}{more}",
                if described.is_empty() { "none".into() } else { described.join(", ") }
            );
        }
        *uplinks = described;
        Ok(())
    }

    /// Lets the stack take translated packets from the networks' bridges, so that those too
    /// big for their uplink, without DF, leave in fragments as through Docker's path (the
    /// datapath does not fragment; see `NatConfig::STACK_FRAGMENTS`): sets `accept_local` on
    /// each bridge (their source is now one of the host's addresses; the datapath has already
    /// refused containers' spoofed ones). Under a strict `rp_filter` the stack refuses them
    /// anyway: the datapath then drops them, counted (`drop-nat-frag-needed`), and the log
    /// says why. Called with the uplinks, every 2 s, which follows `rp_filter` changes.
    fn sync_stack_fragments(&self, bridges: &[String]) -> Result<()> {
        // Every bridge gets `accept_local`, whatever another's answer.
        let answers: Vec<Option<String>> = bridges.iter().map(|b| stack_refuses_translated(b)).collect();
        let refuses = answers.into_iter().flatten().next();
        self.dp().set_nat_stack_fragments(refuses.is_none())?;
        let mut said = self.stack_refuses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *said != refuses {
            match &refuses {
                Some(why) => eprintln!(
                    "netd: masqueraded packets too big for their uplink without DF are dropped \
                     (drop-nat-frag-needed), not fragmented: {why}"
                ),
                None => eprintln!(
                    "netd: masqueraded packets too big for their uplink without DF go to the stack, \
                     which fragments them"
                ),
            }
            *said = refuses;
        }
        Ok(())
    }

    /// Lets new flows share routes (`NatConfig::SHARED_ROUTES`: one from the same container
    /// to the same address takes the route another found less than a second before, as a
    /// flow keeps its own that long) unless a routing rule selects by protocol or port, where
    /// flows to one address may take different routes, or the rules cannot be read. Called
    /// with the uplinks, every 2 s; the log says when rules stop it, and when they no longer do.
    async fn sync_shared_routes(&self) -> Result<()> {
        // Not readable: as if a rule selected by port (the uplinks are synced all the same).
        let rule = self
            .nl
            .rule_selecting_by_port()
            .await
            .unwrap_or_else(|e| Some(format!("the routing rules could not be read ({e})")));
        self.dp().set_nat_shared_routes(rule.is_none())?;
        let mut said = self.route_rule.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *said != rule {
            let now = match &rule {
                Some(why) => format!("{why}: each new flow looks up its own route"),
                None => "no routing rule selects by protocol or port: new flows share routes".to_owned(),
            };
            eprintln!("netd: masquerade: {now}");
            *said = rule;
        }
        Ok(())
    }

    /// Deletes expired translations (and tells `netd monitor`).
    pub(super) fn collect_nat(&self) -> Result<()> {
        let gone = self.dp().nat_collect(monotonic_ns())?;
        self.report_nat_gone("nat-expired", gone);
        Ok(())
    }

    /// The table at a glance (`netd nat stats`).
    pub fn nat_stats(&self) -> Result<NatStats> {
        let uplinks = self.uplinks();
        let mut dp = self.dp();
        let table = dp.nat_table_stats(monotonic_ns())?;
        Ok(NatStats {
            table,
            uplinks,
            evicted: dp.reason_counter(Reason::RedirectNatEvicted)?.packets,
            refused_table_full: dp.reason_counter(Reason::DropNatTableFull)?.packets,
            refused_no_port: dp.reason_counter(Reason::DropNatNoPort)?.packets,
            timeouts: timeout_secs(&dp.nat_timeouts()?),
        })
    }

    /// Says in the log when new flows were refused since the last call, as the kernel logs
    /// `nf_conntrack: table full, dropping packet` for Docker: a full table
    /// (`drop-nat-table-full`), no free port (`drop-nat-no-port`). Called at start, where it only
    /// reads the counters (a restarted daemon's pinned counters hold older ones), then every 2 s.
    pub(super) fn report_nat_refusals(&self) -> Result<()> {
        let now = {
            let dp = self.dp();
            (dp.reason_counter(Reason::DropNatTableFull)?.packets, dp.reason_counter(Reason::DropNatNoPort)?.packets)
        };
        let mut last = self.nat_refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((full, no_port)) = *last {
            let (full, no_port) = (now.0.saturating_sub(full), now.1.saturating_sub(no_port));
            if full > 0 {
                eprintln!(
                    "netd: masquerade: NAT table full, {full} packets of new flows dropped (drop-nat-table-full); \
                     `netd nat stats` shows the table, --nat-max-flows sizes it"
                );
            }
            if no_port > 0 {
                eprintln!(
                    "netd: masquerade: no free NAT port, {no_port} packets of new flows dropped (drop-nat-no-port); \
                     --nat-port-range widens the range"
                );
            }
        }
        *last = Some(now);
        Ok(())
    }

    /// The live translations that pass Docker-style `filters` (`netd nat ls -f`, see
    /// [`NAT_FILTERS`]): the values of one key are alternatives, every key must match.
    pub async fn nat_flows(&self, filters: Option<&str>) -> Result<Vec<NatFlow>> {
        let f = Filters::parse_keys(filters, &NAT_FILTERS).map_err(Error::InvalidParameter)?;
        check_nat_filters(&f)?;
        let inside = if f.values("sandbox").is_empty() {
            None
        } else {
            let state = self.snapshot().await;
            let mut ips = Vec::new();
            for key in f.values("sandbox") {
                let s = state.find_sandbox(key).map_err(|_| super::sandboxes::no_such_container(key))?;
                let own = state.networks.values().flat_map(|n| n.endpoints.values()).filter(|e| e.sandbox_id == s.id);
                ips.extend(own.filter_map(|e| e.link.as_ref().map(|l| l.ip)));
            }
            Some(ips)
        };
        let flows = self.dp().nat_flows(monotonic_ns())?;
        Ok(flows.into_iter().filter(|flow| nat_filters_keep(&f, inside.as_deref(), flow)).collect())
    }

    /// Deletes the live translations that pass `filters` (all without any), as `conntrack -D`
    /// and `-F` do for Docker's: their next packet from the container starts a new flow, and
    /// what the outside sends on them meanwhile is no flow's. Returns how many went; `netd
    /// monitor` hears of them (`nat-removed`).
    pub async fn nat_remove(&self, filters: Option<&str>) -> Result<usize> {
        let listed = self.nat_flows(filters).await?;
        let gone = self.dp().nat_forget_listed(&listed)?;
        let n = gone.len();
        self.report_nat_gone("nat-removed", gone);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{
        check_nat_filters, human_secs, nat_filters_keep, nat_port_range, nat_timeouts, timeout_secs, Filters,
        NatTimeout, PortRange, NAT_FILTERS,
    };
    use crate::datapath::NatFlow;

    fn r(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn the_default_range_avoids_the_hosts_ephemeral_ports() {
        assert_eq!(nat_port_range(None, r(32768, 60999)), Ok(r(1024, 32767)));
        assert_eq!(nat_port_range(None, r(1024, 9999)), Ok(r(10000, 65535)));
        assert_eq!(nat_port_range(None, r(60000, 60999)), Ok(r(1024, 59999)));
        assert!(nat_port_range(None, r(1024, 65535)).unwrap_err().contains("leaves no ports"));
    }

    #[test]
    fn a_configured_range_must_not_overlap() {
        assert_eq!(nat_port_range(Some(r(61000, 65535)), r(32768, 60999)), Ok(r(61000, 65535)));
        let e = nat_port_range(Some(r(30000, 40000)), r(32768, 60999)).unwrap_err();
        assert!(e.contains("overlaps net.ipv4.ip_local_port_range 32768-60999"), "{e}");
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("10-5".parse::<PortRange>().is_err());
        assert!("x".parse::<PortRange>().is_err());
        assert_eq!("1024-2047".parse::<PortRange>(), Ok(r(1024, 2047)));
    }

    #[test]
    fn nat_timeouts_take_a_kind_and_a_duration_and_the_rest_default() {
        let given: Vec<NatTimeout> =
            ["tcp-established=5d", "udp=90", "icmp=2m", "udp=45s"].iter().map(|s| s.parse().expect(s)).collect();
        let t = nat_timeouts(&given);
        assert_eq!((t.tcp_established, t.udp, t.icmp, t.tcp_syn), (5 * 86_400, 45, 120, 0), "the last udp wins");
        let secs = timeout_secs(&t);
        assert_eq!((secs["tcp-established"], secs["udp"], secs["tcp-syn"], secs["tcp-rst"]), (432_000, 45, 60, 10));
        assert_eq!(secs.len(), 7);
        assert_eq!(
            ["1h", "1d", "12h", "1s"].map(|d| format!("udp={d}").parse::<NatTimeout>().expect(d).secs),
            [3_600, 86_400, 43_200, 1]
        );
        for (bad, says) in [
            ("udp", "expected KIND=DURATION"),
            ("tcp=30s", "unknown NAT timeout \"tcp\": one of tcp-syn, tcp-established"),
            ("udp=0", "invalid duration \"0\""),
            ("udp=366d", "1s to 365d"),
            ("udp=10x", "invalid duration"),
            ("udp=-5s", "invalid duration"),
            ("udp=", "invalid duration"),
            ("udp=99999999999", "invalid duration"),
        ] {
            let err = bad.parse::<NatTimeout>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!([0, 45, 60, 90, 3_600, 7_200, 86_400].map(human_secs), ["0s", "45s", "1m", "90s", "1h", "2h", "1d"]);
    }

    #[test]
    fn nat_filters_match_like_dockers_and_refuse_what_can_match_nothing() {
        let flow = |protocol: &str, inside: [u8; 4], outside: [u8; 4], port: u16, inbound: bool| NatFlow {
            protocol: protocol.into(),
            inside: (inside.into(), 40000),
            outside: (outside.into(), port),
            remote: ([198, 18, 0, 2].into(), 443),
            state: "established".into(),
            age_secs: 1,
            idle_secs: 0,
            expires_in_secs: 60,
            inbound,
        };
        let flows = [
            flow("tcp", [172, 17, 0, 2], [198, 18, 0, 1], 2000, false),
            flow("udp", [172, 17, 0, 2], [198, 18, 0, 1], 2001, false),
            flow("tcp", [172, 17, 0, 3], [172, 17, 0, 3], 40000, false),
            flow("tcp", [172, 17, 0, 4], [198, 18, 0, 1], 8080, true),
        ];
        let kept = |filters: &str, inside: Option<&[std::net::Ipv4Addr]>| -> Vec<usize> {
            let f = Filters::parse_keys(Some(filters), &NAT_FILTERS).expect(filters);
            check_nat_filters(&f).expect(filters);
            (0..flows.len()).filter(|i| nat_filters_keep(&f, inside, &flows[*i])).collect()
        };
        assert_eq!(kept("{}", None), [0, 1, 2, 3]);
        assert_eq!(kept(r#"{"protocol":{"tcp":true}}"#, None), [0, 2, 3]);
        assert_eq!(kept(r#"{"protocol":["tcp","udp"],"kind":["masqueraded"]}"#, None), [0, 1]);
        assert_eq!(kept(r#"{"kind":["routed","published"]}"#, None), [2, 3]);
        assert_eq!(kept(r#"{"outside":["198.18.0.1:2001"]}"#, None), [1]);
        assert_eq!(kept(r#"{"outside":["198.18.0.1"],"remote":["198.18.0.2:443"]}"#, None), [0, 1, 3]);
        assert_eq!(kept(r#"{"remote":["198.18.0.2:80"]}"#, None), Vec::<usize>::new());
        assert_eq!(kept(r#"{"state":["established"]}"#, Some(&[[172, 17, 0, 3].into()])), [2]);
        for (bad, says) in [
            (r#"{"protocol":["sctp"]}"#, "invalid filter 'protocol=sctp': one of tcp, udp, icmp"),
            (r#"{"state":["open"]}"#, "invalid filter 'state=open': one of syn-sent"),
            (r#"{"remote":["example.com"]}"#, "invalid filter 'remote=example.com': expected an IPv4 address"),
        ] {
            let f = Filters::parse_keys(Some(bad), &NAT_FILTERS).expect(bad);
            let err = check_nat_filters(&f).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(Filters::parse_keys(Some(r#"{"name":["x"]}"#), &NAT_FILTERS)
            .unwrap_err()
            .contains("invalid filter 'name'"));
    }
}
