//! Name resolution for containers, as Docker's embedded DNS server. A sandbox created on a
//! user-defined network has a resolver of its own at `127.0.0.11:53` (UDP and TCP, sockets the
//! daemon binds inside the sandbox's namespace, on `DNS_RESOLVER_PORT`, where the sandbox's
//! `lo` program moves port 53) and a `resolv.conf` naming it. The resolver
//! answers for the containers of the networks the sandbox is on: their names, short ids and
//! aliases, also qualified by the network (`web.mynet`), with their address on that network,
//! and the reverse names of those addresses; it forwards every other question to the upstream
//! servers (`--dns`, else the host's `resolv.conf`), from the daemon's namespace. Sandboxes of
//! the default `bridge` get the upstream servers in their `resolv.conf` and no resolver, as in
//! Docker, where containers there do not find each other by name.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::broadcast,
    task::{AbortHandle, JoinSet},
};

use netd_common::DNS_RESOLVER_ADDR;

use super::monitor::{MonitorEndpoint, MonitorEvent, MonitorLine};
use crate::{
    dns::{self, Query, Record, Refused},
    model::{ids::now_rfc3339, DnsSettings, Driver, Lifecycle, State},
};

/// Where containers on user-defined networks find the resolver (Docker's address).
pub const ADDRESS: Ipv4Addr =
    Ipv4Addr::new(DNS_RESOLVER_ADDR[0], DNS_RESOLVER_ADDR[1], DNS_RESOLVER_ADDR[2], DNS_RESOLVER_ADDR[3]);
/// The TTL of the resolver's own answers (Docker's).
const TTL: u32 = 600;
/// How long an upstream server has to answer before the next one is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Questions forwarded at once by one resolver; more get `SERVFAIL` at once (a flood of
/// unanswerable questions must not pile up tasks).
const MAX_FORWARDS: usize = 256;
/// TCP connections one resolver serves at once.
const MAX_TCP_CLIENTS: usize = 64;
/// A TCP client's connection is closed after this long without a query.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// What a container on the default bridge is given when the host names no usable server
/// (Docker's fallback).
const FALLBACK_SERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

/// One container's names on one network.
struct Entry {
    /// Lower case: its name, short id and aliases.
    names: Vec<String>,
    ip: Ipv4Addr,
}

/// The names of a user-defined network's containers.
struct NetworkNames {
    /// Lower case.
    name: String,
    entries: Vec<Entry>,
}

/// Who is found under which name, built from the state after each change.
#[derive(Default)]
pub struct Names {
    networks: HashMap<String, NetworkNames>,
    /// Each sandbox's user-defined networks (ids), in name order.
    of_sandbox: HashMap<String, Vec<String>>,
    /// Each sandbox on a bridge network, as `netd monitor` describes it (its first address).
    about: HashMap<String, MonitorEndpoint>,
    /// Sandboxes that reach beyond their networks (one of them is not `--internal`): only their
    /// questions are forwarded, as Docker's resolver does since 26.0, so that an internal
    /// network's containers cannot reach the outside through the resolver either.
    forwards: std::collections::HashSet<String>,
}

/// Whether containers on `n` find each other by name: user-defined bridge networks.
fn resolves(n: &crate::model::Network) -> bool {
    n.driver == Driver::Bridge && !n.predefined
}

impl Names {
    #[must_use]
    pub fn from_state(state: &State) -> Self {
        let mut names = Self::default();
        let mut first: HashMap<&str, (u32, MonitorEndpoint)> = HashMap::new();
        for n in state.networks.values() {
            for (sandbox_id, ep) in &n.endpoints {
                let (Some(link), Some(s)) = (&ep.link, state.sandboxes.get(sandbox_id)) else { continue };
                let about = MonitorEndpoint {
                    sandbox: s.name.clone(),
                    sandbox_id: s.id.clone(),
                    network: n.name.clone(),
                    ip: link.ip,
                };
                if !n.internal {
                    names.forwards.insert(sandbox_id.clone());
                }
                let entry = first.entry(sandbox_id.as_str()).or_insert((link.slot, about.clone()));
                if link.slot < entry.0 {
                    *entry = (link.slot, about);
                }
            }
        }
        names.about = first.into_iter().map(|(id, (_, about))| (id.to_owned(), about)).collect();
        let mut networks: Vec<_> = state.networks.values().filter(|n| resolves(n)).collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        for n in networks {
            let mut entries = Vec::new();
            for (sandbox_id, ep) in &n.endpoints {
                let (Some(link), Some(s)) = (&ep.link, state.sandboxes.get(sandbox_id)) else { continue };
                if ep.lifecycle != Lifecycle::Ready {
                    continue;
                }
                let mut own = vec![s.name.to_ascii_lowercase(), s.id[..12].to_owned()];
                own.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
                entries.push(Entry { names: own, ip: link.ip });
                names.of_sandbox.entry(sandbox_id.clone()).or_default().push(n.id.clone());
            }
            names.networks.insert(n.id.clone(), NetworkNames { name: n.name.to_ascii_lowercase(), entries });
        }
        names
    }

    /// The answer to `q` from sandbox `asker`, when the name is one of its networks'
    /// (`None`: the upstream servers answer).
    #[must_use]
    pub fn resolve(&self, asker: &str, q: &dns::Question) -> Option<Vec<Record>> {
        let networks: Vec<&NetworkNames> =
            self.of_sandbox.get(asker)?.iter().filter_map(|id| self.networks.get(id)).collect();
        if q.qclass != dns::CLASS_IN {
            return None;
        }
        if q.qtype == dns::TYPE_PTR {
            let ip = dns::reverse_v4(&q.name)?;
            return networks.iter().find_map(|n| {
                let e = n.entries.iter().find(|e| e.ip == ip)?;
                Some(vec![Record::Ptr(format!("{}.{}", e.names[0], n.name))])
            });
        }
        let mut found: Vec<Ipv4Addr> = Vec::new();
        for n in &networks {
            let bare = q.name.strip_suffix(n.name.as_str()).and_then(|s| s.strip_suffix('.'));
            for e in &n.entries {
                if e.names.iter().any(|x| *x == q.name || Some(x.as_str()) == bare) && !found.contains(&e.ip) {
                    found.push(e.ip);
                }
            }
        }
        if found.is_empty() {
            return None;
        }
        // The name is a container's: other types have no records (netd networks are IPv4).
        Some(if q.qtype == dns::TYPE_A { found.into_iter().map(Record::A).collect() } else { Vec::new() })
    }
}

/// The current [`Names`], shared by every resolver.
#[derive(Default)]
pub struct Directory(RwLock<Arc<Names>>);

impl Directory {
    pub fn update(&self, state: &State) {
        let names = Arc::new(Names::from_state(state));
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = names;
    }

    fn get(&self) -> Arc<Names> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// How a question went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The resolver answered (a container's name).
    Answered,
    /// An upstream server answered.
    Forwarded(SocketAddr),
    /// No upstream server answered: `SERVFAIL`.
    Failed,
    /// Not a standard query with one question: a server's error (`FORMERR`, `NOTIMP`).
    Malformed,
    /// Not a container's name, from a sandbox only on `--internal` networks: `REFUSED`, not
    /// forwarded.
    Refused,
}

impl Outcome {
    /// Its index in [`Observer`]'s counts and [`OUTCOMES`].
    fn slot(self) -> usize {
        match self {
            Self::Answered => 0,
            Self::Forwarded(_) => 1,
            Self::Failed => 2,
            Self::Malformed => 3,
            Self::Refused => 4,
        }
    }

    /// Its name in `netd monitor` (`dns-answered`, …).
    fn reason(self) -> &'static str {
        ["dns-answered", "dns-forwarded", "dns-failed", "dns-malformed", "dns-refused"][self.slot()]
    }
}

/// The outcomes as the metrics name them, by [`Outcome::slot`].
const OUTCOMES: [&str; 5] = ["answered", "forwarded", "failed", "malformed", "refused"];

/// What every resolver reports: counts of its outcomes (the metrics), and, while `netd monitor
/// --type dns` listens, each question and its answer.
pub struct Observer {
    counts: [AtomicU64; OUTCOMES.len()],
    events: broadcast::Sender<Arc<MonitorLine>>,
}

impl Observer {
    pub(super) fn new(events: broadcast::Sender<Arc<MonitorLine>>) -> Self {
        Self { counts: Default::default(), events }
    }

    /// Questions so far, by outcome (`answered`, `forwarded`, …).
    #[must_use]
    pub fn counts(&self) -> [(&'static str, u64); OUTCOMES.len()] {
        std::array::from_fn(|i| (OUTCOMES[i], self.counts[i].load(Ordering::Relaxed)))
    }
}

/// One question handled, for the [`Observer`].
struct Handled<'a> {
    query: Option<&'a Query>,
    transport: &'static str,
    client: SocketAddr,
    outcome: Outcome,
    answer: &'a [u8],
    started: Instant,
}

/// The host's `resolv.conf`, the parts containers inherit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    pub nameservers: Vec<IpAddr>,
    /// The `search` line's domains.
    pub search: Vec<String>,
    /// The `options` lines' options.
    pub options: Vec<String>,
}

impl HostResolvConf {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (`fe80::1%eth0`) names an interface of the host.
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search" | "domain") => conf.search = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The host's, or an empty one when it has none.
    #[must_use]
    pub fn read() -> Self {
        std::fs::read_to_string("/etc/resolv.conf").map(|t| Self::parse(&t)).unwrap_or_default()
    }
}

/// What the embedded resolvers forward to and what sandboxes' `resolv.conf` say.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Asked from the daemon's namespace, so the host's own (`127.0.0.53`) work too.
    pub servers: Arc<[SocketAddr]>,
    /// What a default-bridge container asks itself, from its namespace: the servers but those
    /// on the host's loopback (Docker's rule), or Docker's fallback.
    pub for_containers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
    /// The options were given (`--dns-opt`, `--dns-option`), not the host's: an `ndots` among
    /// them stays with the embedded resolver.
    options_given: bool,
}

impl Upstreams {
    /// The daemon's `--dns`, `--dns-search` and `--dns-opt`, each replacing the host's
    /// `resolv.conf` line when given.
    #[must_use]
    pub fn new(given: &DnsSettings, host: HostResolvConf) -> Self {
        let base = Self::from_parts(host.nameservers, host.search, host.options, false);
        base.with(given)
    }

    fn from_parts(servers: Vec<IpAddr>, search: Vec<String>, options: Vec<String>, options_given: bool) -> Self {
        let mut for_containers: Vec<IpAddr> = servers.iter().copied().filter(|ip| !ip.is_loopback()).collect();
        if for_containers.is_empty() {
            for_containers = FALLBACK_SERVERS.iter().copied().map(IpAddr::V4).collect();
        }
        Self {
            servers: servers.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect(),
            for_containers,
            search,
            options,
            options_given,
        }
    }

    /// These, with `own` settings (a sandbox's `--dns`, `--dns-search`, `--dns-option`)
    /// replacing theirs where given.
    #[must_use]
    pub fn with(&self, own: &DnsSettings) -> Self {
        if own.is_empty() {
            return self.clone();
        }
        let servers = if own.servers.is_empty() {
            self.servers.iter().map(SocketAddr::ip).collect()
        } else {
            own.servers.clone()
        };
        let search = if own.search.is_empty() { self.search.clone() } else { own.search.clone() };
        let (options, given) = if own.options.is_empty() {
            (self.options.clone(), self.options_given)
        } else {
            (own.options.clone(), true)
        };
        Self::from_parts(servers, search, options, given)
    }

    /// A sandbox's `resolv.conf`: the embedded resolver (with `ndots:0` unless an `ndots` was
    /// given, as Docker: a bare container name is asked as it is first), or the upstream
    /// servers.
    #[must_use]
    pub fn resolv_conf(&self, embedded: bool) -> String {
        let mut lines = vec!["# Generated by netd.".to_owned()];
        if embedded {
            lines.push(format!("nameserver {ADDRESS}"));
        } else {
            lines.extend(self.for_containers.iter().map(|ip| format!("nameserver {ip}")));
        }
        if !self.search.is_empty() {
            lines.push(format!("search {}", self.search.join(" ")));
        }
        let mut options: Vec<String> = self.options.clone();
        let has_ndots = |o: &Vec<String>| o.iter().any(|o| o.starts_with("ndots:"));
        if embedded && !(self.options_given && has_ndots(&options)) {
            options.retain(|o| !o.starts_with("ndots:"));
            options.push("ndots:0".into());
        }
        if !options.is_empty() {
            lines.push(format!("options {}", options.join(" ")));
        }
        lines.join("\n") + "\n"
    }
}

/// A resolver's sockets, bound in the sandbox's namespace but not serving yet.
pub struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

/// Binds `127.0.0.11:port`, UDP and TCP, in the namespace at `netns`.
pub fn bind(netns: &Path, port: u16) -> io::Result<Sockets> {
    crate::netns::run_in(netns, || {
        let at = SocketAddrV4::new(ADDRESS, port);
        Ok(Sockets { udp: std::net::UdpSocket::bind(at)?, tcp: std::net::TcpListener::bind(at)? })
    })
}

/// A sandbox's resolver, serving until dropped.
pub struct Resolver(Vec<AbortHandle>);

impl Drop for Resolver {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Starts serving sandbox `sandbox_id` on `sockets`.
pub fn start(
    sockets: Sockets,
    sandbox_id: &str,
    names: Arc<Directory>,
    upstreams: &Upstreams,
    observer: Arc<Observer>,
) -> io::Result<Resolver> {
    sockets.udp.set_nonblocking(true)?;
    sockets.tcp.set_nonblocking(true)?;
    let udp = UdpSocket::from_std(sockets.udp)?;
    let tcp = TcpListener::from_std(sockets.tcp)?;
    let ctx =
        Arc::new(Context { sandbox_id: sandbox_id.to_owned(), names, servers: upstreams.servers.clone(), observer });
    let tasks = vec![
        tokio::spawn(serve_udp(Arc::new(udp), ctx.clone())).abort_handle(),
        tokio::spawn(serve_tcp(tcp, ctx)).abort_handle(),
    ];
    Ok(Resolver(tasks))
}

struct Context {
    sandbox_id: String,
    names: Arc<Directory>,
    servers: Arc<[SocketAddr]>,
    observer: Arc<Observer>,
}

/// What to do with a message.
enum Next {
    /// Send this answer: the resolver's own (to this query), or a server's error.
    Answer(Vec<u8>, Outcome, Option<Query>),
    Forward(Query),
    Ignore,
}

impl Context {
    fn handle(&self, msg: &[u8], max: usize) -> Next {
        let q = match dns::parse(msg) {
            Ok(q) => q,
            Err(Refused::Reply(r)) => return Next::Answer(r, Outcome::Malformed, None),
            Err(Refused::Ignore) => return Next::Ignore,
        };
        let names = self.names.get();
        match names.resolve(&self.sandbox_id, &q.question) {
            Some(mut records) => {
                // Several containers under one name: in another order each time, as Docker's
                // resolver gives them (round-robin DNS over an alias).
                rand::seq::SliceRandom::shuffle(records.as_mut_slice(), &mut rand::rng());
                Next::Answer(q.answer(dns::NOERROR, &records, TTL, max), Outcome::Answered, Some(q))
            }
            None if names.forwards.contains(&self.sandbox_id) => Next::Forward(q),
            None => Next::Answer(q.answer(dns::REFUSED, &[], 0, max), Outcome::Refused, Some(q)),
        }
    }

    /// Counts a question, and describes it to `netd monitor` subscribers if there are any.
    fn report(&self, h: &Handled<'_>) {
        self.observer.counts[h.outcome.slot()].fetch_add(1, Ordering::Relaxed);
        if self.observer.events.receiver_count() == 0 {
            return;
        }
        let question = h.query.map(|q| format!("{} {}", q.question.name, dns::type_name(q.question.qtype)));
        let event = MonitorEvent {
            time: now_rfc3339(),
            kind: "dns".into(),
            reason: h.outcome.reason().into(),
            endpoint: self.names.get().about.get(&self.sandbox_id).cloned(),
            protocol: h.transport.into(),
            src: h.client.to_string(),
            dst: format!("{ADDRESS}:53"),
            question: question.unwrap_or_default(),
            answer: dns::summary(h.answer),
            upstream: match h.outcome {
                Outcome::Forwarded(server) => server.to_string(),
                _ => String::new(),
            },
            micros: u64::try_from(h.started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1),
            ..MonitorEvent::default()
        };
        let _ = self.observer.events.send(Arc::new(MonitorLine::Event(Box::new(event))));
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, ctx: Arc<Context>) {
    let mut forwards = JoinSet::new();
    // Queries are small (a question, an EDNS record); one buffer per resolver.
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let Ok((n, client)) = got else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let started = Instant::now();
                match ctx.handle(&buf[..n], dns::UDP_MAX) {
                    Next::Answer(a, outcome, q) => {
                        let _ = socket.send_to(&a, client).await;
                        ctx.report(&Handled { query: q.as_ref(), transport: "udp", client, outcome, answer: &a, started });
                    }
                    Next::Forward(q) if forwards.len() >= MAX_FORWARDS => {
                        let a = q.answer(dns::SERVFAIL, &[], 0, dns::UDP_MAX);
                        let _ = socket.send_to(&a, client).await;
                        let outcome = Outcome::Failed;
                        ctx.report(&Handled { query: Some(&q), transport: "udp", client, outcome, answer: &a, started });
                    }
                    Next::Forward(q) => {
                        let (socket, ctx, msg) = (socket.clone(), ctx.clone(), buf[..n].to_vec());
                        forwards.spawn(async move {
                            let (a, outcome) = match forward_udp(&ctx.servers, &msg).await {
                                Some((a, server)) => (a, Outcome::Forwarded(server)),
                                None => (q.answer(dns::SERVFAIL, &[], 0, dns::UDP_MAX), Outcome::Failed),
                            };
                            let _ = socket.send_to(&a, client).await;
                            let h = Handled { query: Some(&q), transport: "udp", client, outcome, answer: &a, started };
                            ctx.report(&h);
                        });
                    }
                    Next::Ignore => {}
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, ctx: Arc<Context>) {
    // Dropping the set (the resolver stopped) ends every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // Beyond the limit a connection is closed at once: a sandbox cannot make its
                // resolver hold more sockets than that.
                Ok((stream, _)) if conns.len() < MAX_TCP_CLIENTS => {
                    conns.spawn(serve_tcp_client(stream, ctx.clone()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Answers the queries of one TCP connection (each prefixed by its length) in turn.
async fn serve_tcp_client(mut stream: TcpStream, ctx: Arc<Context>) {
    let Ok(client) = stream.peer_addr() else { return };
    loop {
        let Ok(Some(msg)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await else { return };
        let started = Instant::now();
        let max = usize::from(u16::MAX);
        let (query, answer, outcome) = match ctx.handle(&msg, max) {
            Next::Answer(a, outcome, q) => (q, a, outcome),
            Next::Forward(q) => {
                if let Some((a, server)) = forward_tcp(&ctx.servers, &msg).await {
                    (Some(q), a, Outcome::Forwarded(server))
                } else {
                    let a = q.answer(dns::SERVFAIL, &[], 0, max);
                    (Some(q), a, Outcome::Failed)
                }
            }
            Next::Ignore => return,
        };
        let sent = write_framed(&mut stream, &answer).await;
        ctx.report(&Handled { query: query.as_ref(), transport: "tcp", client, outcome, answer: &answer, started });
        if sent.is_err() {
            return;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

async fn write_framed(stream: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}

/// Asks the servers in turn over UDP; the first answer to this query wins (with the server
/// that gave it).
async fn forward_udp(servers: &[SocketAddr], msg: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    for server in servers {
        let local: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(socket) = UdpSocket::bind(local).await else { continue };
        if socket.connect(server).await.is_err() || socket.send(msg).await.is_err() {
            continue;
        }
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        // A late answer to an earlier query (another id) is skipped.
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            if n >= 2 && buf[..2] == msg[..2] {
                return Some((buf[..n].to_vec(), *server));
            }
        }
    }
    None
}

/// Asks the servers in turn over TCP.
async fn forward_tcp(servers: &[SocketAddr], msg: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    for server in servers {
        let ask = async {
            let mut stream = TcpStream::connect(server).await.ok()?;
            write_framed(&mut stream, msg).await.ok()?;
            read_framed(&mut stream).await
        };
        if let Ok(Some(answer)) = tokio::time::timeout(UPSTREAM_TIMEOUT, ask).await {
            return Some((answer, *server));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        dns::Question,
        model::{Endpoint, EndpointLink, Network, Sandbox, SandboxMode},
    };

    fn network(id: &str, name: &str, predefined: bool) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            driver: Driver::Bridge,
            created: String::new(),
            predefined,
            internal: false,
            attachable: false,
            ipam: None,
            bridge: None,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            lifecycle: Lifecycle::Ready,
            datapath_id: 1,
        }
    }

    fn attach(state: &mut State, net: &str, sandbox: &str, name: &str, ip: [u8; 4], aliases: &[&str]) {
        state.sandboxes.entry(sandbox.to_owned()).or_insert_with(|| Sandbox {
            id: sandbox.to_owned(),
            name: name.to_owned(),
            created: String::new(),
            mode: SandboxMode::Private,
            netns: None,
            processes: Vec::new(),
            auto_remove: false,
            command: Vec::new(),
            lifecycle: Lifecycle::Ready,
            resolv_conf: None,
            embedded_dns: true,
            hosts: None,
            hostname: String::new(),
            extra_hosts: Vec::new(),
            dns: DnsSettings::default(),
            exit: None,
            started_at: None,
            log: None,
            env: Vec::new(),
            working_dir: None,
            user: String::new(),
        });
        let link = EndpointLink {
            ip: Ipv4Addr::from(ip),
            prefix: 16,
            mac: [2, 0x42, ip[0], ip[1], ip[2], ip[3]],
            host_veth: String::new(),
            ifname: "eth0".into(),
            static_ip: false,
            slot: 1,
        };
        let ep = Endpoint {
            id: format!("ep-{sandbox}"),
            sandbox_id: sandbox.to_owned(),
            link: Some(link),
            lifecycle: Lifecycle::Ready,
            ports: Vec::new(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        };
        state.networks.get_mut(net).expect("network").endpoints.insert(sandbox.to_owned(), ep);
    }

    const WEB: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
    const DB: &str = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";
    const OTHER: &str = "cccccccccccc3333333333333333333333333333333333333333333333333333";
    const OLD: &str = "dddddddddddd4444444444444444444444444444444444444444444444444444";

    fn state() -> State {
        let mut s = State::default();
        for n in [network("n1", "MyNet", false), network("n2", "other", false), network("b", "bridge", true)] {
            s.networks.insert(n.id.clone(), n);
        }
        attach(&mut s, "n1", WEB, "Web", [172, 18, 0, 2], &["www", "front"]);
        attach(&mut s, "n1", DB, "db", [172, 18, 0, 3], &["front"]);
        attach(&mut s, "n2", DB, "db", [172, 19, 0, 3], &[]);
        attach(&mut s, "n2", OTHER, "other", [172, 19, 0, 4], &[]);
        attach(&mut s, "b", OLD, "old", [172, 17, 0, 2], &[]);
        s
    }

    fn ask(names: &Names, asker: &str, name: &str, qtype: u16) -> Option<Vec<Record>> {
        names.resolve(asker, &Question { name: name.into(), qtype, qclass: dns::CLASS_IN })
    }

    fn a(ips: &[[u8; 4]]) -> Vec<Record> {
        ips.iter().map(|ip| Record::A(Ipv4Addr::from(*ip))).collect()
    }

    #[test]
    fn containers_find_the_containers_of_their_networks_by_name_id_and_alias() {
        let names = Names::from_state(&state());
        assert_eq!(ask(&names, DB, "web", dns::TYPE_A), Some(a(&[[172, 18, 0, 2]])));
        assert_eq!(ask(&names, DB, "www", dns::TYPE_A), Some(a(&[[172, 18, 0, 2]])));
        assert_eq!(ask(&names, DB, "aaaaaaaaaaaa", dns::TYPE_A), Some(a(&[[172, 18, 0, 2]])));
        assert_eq!(ask(&names, DB, "web.mynet", dns::TYPE_A), Some(a(&[[172, 18, 0, 2]])));
        // Itself too, and an alias two containers share gives both.
        assert_eq!(ask(&names, WEB, "web", dns::TYPE_A), Some(a(&[[172, 18, 0, 2]])));
        assert_eq!(ask(&names, WEB, "front", dns::TYPE_A), Some(a(&[[172, 18, 0, 2], [172, 18, 0, 3]])));
        // A container on two networks: its address on each network the asker shares.
        assert_eq!(ask(&names, WEB, "db", dns::TYPE_A), Some(a(&[[172, 18, 0, 3]])));
        assert_eq!(ask(&names, OTHER, "db", dns::TYPE_A), Some(a(&[[172, 19, 0, 3]])));
        assert_eq!(ask(&names, OTHER, "db.mynet", dns::TYPE_A), None);
        // A name of the network exists, with no IPv6 record.
        assert_eq!(ask(&names, DB, "web", 28), Some(Vec::new()));
    }

    #[test]
    fn other_networks_the_default_bridge_and_unknown_names_are_for_upstream() {
        let names = Names::from_state(&state());
        assert_eq!(ask(&names, OTHER, "web", dns::TYPE_A), None);
        assert_eq!(ask(&names, WEB, "other", dns::TYPE_A), None);
        assert_eq!(ask(&names, WEB, "old", dns::TYPE_A), None);
        assert_eq!(ask(&names, OLD, "web", dns::TYPE_A), None);
        assert_eq!(ask(&names, WEB, "example.com", dns::TYPE_A), None);
        let chaos = Question { name: "web".into(), qtype: dns::TYPE_A, qclass: 3 };
        assert_eq!(names.resolve(DB, &chaos), None);
    }

    #[test]
    fn reverse_names_of_containers_give_name_and_network() {
        let names = Names::from_state(&state());
        assert_eq!(
            ask(&names, DB, "2.0.18.172.in-addr.arpa", dns::TYPE_PTR),
            Some(vec![Record::Ptr("web.mynet".into())])
        );
        assert_eq!(ask(&names, OTHER, "2.0.18.172.in-addr.arpa", dns::TYPE_PTR), None);
        assert_eq!(ask(&names, DB, "9.0.18.172.in-addr.arpa", dns::TYPE_PTR), None);
    }

    #[test]
    fn an_endpoint_not_ready_is_not_found() {
        let mut s = state();
        s.networks.get_mut("n1").unwrap().endpoints.get_mut(WEB).unwrap().lifecycle = Lifecycle::Creating;
        assert_eq!(ask(&Names::from_state(&s), DB, "web", dns::TYPE_A), None);
    }

    #[test]
    fn resolv_conf_follows_the_host_and_the_flags() {
        let host = HostResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\nsearch corp.example lab\noptions edns0 ndots:2\n",
        );
        assert_eq!(host.nameservers, vec![IpAddr::from([127, 0, 0, 53]), IpAddr::from([192, 0, 2, 53])]);
        let u = Upstreams::new(&DnsSettings::default(), host);
        assert_eq!(u.servers.len(), 2);
        assert_eq!(
            u.resolv_conf(true),
            "# Generated by netd.\nnameserver 127.0.0.11\nsearch corp.example lab\noptions edns0 ndots:0\n"
        );
        assert_eq!(
            u.resolv_conf(false),
            "# Generated by netd.\nnameserver 192.0.2.53\nsearch corp.example lab\noptions edns0 ndots:2\n"
        );
        let only_local = Upstreams::new(&DnsSettings::default(), HostResolvConf::parse("nameserver 127.0.0.53\n"));
        assert!(only_local.resolv_conf(false).contains("nameserver 8.8.8.8\nnameserver 8.8.4.4\n"));
        let given = DnsSettings { servers: vec![IpAddr::from([198, 51, 100, 1])], ..DnsSettings::default() };
        let flags = Upstreams::new(&given, HostResolvConf::parse("nameserver 192.0.2.53\nsearch lab\n"));
        assert_eq!(&*flags.servers, &[SocketAddr::from(([198, 51, 100, 1], 53))]);
        assert_eq!(flags.resolv_conf(false), "# Generated by netd.\nnameserver 198.51.100.1\nsearch lab\n");
        // A sandbox's own settings replace those they name; a given ndots stays.
        let own = DnsSettings {
            servers: Vec::new(),
            search: vec!["corp".into()],
            options: vec!["ndots:3".into(), "timeout:1".into()],
        };
        let mine = flags.with(&own);
        assert_eq!(&*mine.servers, &*flags.servers);
        assert_eq!(
            mine.resolv_conf(true),
            "# Generated by netd.\nnameserver 127.0.0.11\nsearch corp\noptions ndots:3 timeout:1\n"
        );
    }
}
