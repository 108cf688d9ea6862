//! The daemon: owns the state, applies it to the kernel, serves the API.
//!
//! [`Daemon::start`] loads the persisted state (or creates the predefined networks) and
//! reconciles it with the kernel; [`run`] serves the API on a listener until `shutdown`
//! resolves. Lifecycle messages on stderr (`netd: listening on …`, `netd: stopped`) are stable.

mod config;
mod datapath;
pub mod dns;
pub mod error;
pub mod events;
pub mod exec;
mod kernel;
pub mod metrics;
pub mod monitor;
pub mod nat;
pub mod networks;
mod proxy;
mod reconcile;
pub mod sandboxes;
mod start;
pub mod stats;
pub mod usage;

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{net::UnixListener, sync::Mutex};

pub use config::{socket_path, Config};
pub use error::{Error, Result};

use crate::{
    datapath::{Datapath, LoadOptions},
    ipam::pools::{self, AddressPool},
    model::State,
    netlink::Netlink,
    store::Store,
};

/// The running daemon.
pub struct Daemon {
    pub(crate) cfg: Config,
    pub(crate) state: Mutex<State>,
    store: Store,
    nl: Netlink,
    /// The eBPF datapath (std mutex: never held across an await).
    datapath: std::sync::Mutex<Datapath>,
    pools: Vec<AddressPool>,
    /// The uplinks in use, described (`eth0 (192.0.2.10)`), as of the last sync.
    uplinks: std::sync::Mutex<Vec<String>>,
    /// The datapath's refusals of new flows (table full, no free port) when they were last
    /// reported (`None`: not read yet).
    nat_refused: std::sync::Mutex<Option<(u64, u64)>>,
    /// Why the stack does not take translated packets from the bridges (`None`: it does, as
    /// it is assumed to at start; see `Daemon::sync_stack_fragments`), as last said in the log.
    stack_refuses: std::sync::Mutex<Option<String>>,
    /// The routing rule that keeps new flows from sharing routes (`None`: none, as assumed at
    /// start; see `Daemon::sync_shared_routes`), as last said in the log.
    route_rule: std::sync::Mutex<Option<String>>,
    /// The sandboxes seen with a running process at the last look (`None`: not looked yet),
    /// for Docker's `start` and `die` events (see `Daemon::note_exits`).
    running_sandboxes: std::sync::Mutex<Option<std::collections::BTreeSet<String>>>,
    /// The last list of the host's processes, shared by `docker stats` samples within
    /// half a second of it (see `usage::ProcessScan`).
    process_scan: std::sync::Arc<usage::ProcessScan>,
    /// The shims `docker start` started, until the sweeper reaps them.
    started: std::sync::Mutex<Vec<std::process::Child>>,
    /// `docker exec`'s instances by id (see `exec`).
    execs: std::sync::Mutex<std::collections::HashMap<String, exec::Exec>>,
    /// The datapath's events, until [`run`] starts reading them.
    events: std::sync::Mutex<Option<aya::maps::RingBuf<aya::maps::MapData>>>,
    /// `netd monitor`'s subscribers.
    monitor: monitor::Monitor,
    /// Docker's `GET /events`: the log of network events and their subscribers.
    docker_events: events::Events,
    /// The published ports' relays (see `proxy`), by binding.
    relays: std::sync::Mutex<std::collections::BTreeMap<crate::model::PortBinding, proxy::Relay>>,
    /// The marks every uplink carries: `UplinkInfo::PUBLISHED` (some port is published),
    /// `UplinkInfo::SNAT_ADDRS` (some network masquerades with an address of its own).
    uplink_marks: std::sync::atomic::AtomicU32,
    /// Who the embedded resolvers find under which name (rebuilt on every change of state).
    names: Arc<dns::Directory>,
    /// The embedded resolvers, by sandbox id.
    resolvers: std::sync::Mutex<std::collections::BTreeMap<String, dns::Resolver>>,
    /// Their sandboxes' `lo` programs (`netd_dns_redirect`), by sandbox id.
    dns_redirects: std::sync::Mutex<std::collections::BTreeMap<String, aya::programs::tc::SchedClassifierLinkId>>,
    /// The DNS servers beyond netd, and what sandboxes' `resolv.conf` say.
    upstreams: dns::Upstreams,
    /// The resolvers' counts and events.
    dns_observer: Arc<dns::Observer>,
}

impl Daemon {
    /// Loads or initialises the state and makes the kernel match it.
    pub async fn start(cfg: Config) -> Result<Arc<Self>> {
        // Flags first: a bad one changes nothing.
        let (nat_ports, local) = nat::configured_port_range(&cfg)?;
        let dns_settings = cfg.dns_settings();
        dns_settings.check().map_err(Error::InvalidParameter)?;
        crate::process::raise_open_files_limit();
        let store = Store::open(&cfg.state_dir)?;
        std::fs::create_dir_all(cfg.netns_dir()).map_err(Error::io("creating the exec root"))?;
        let nl = Netlink::current()?;
        let pools = if cfg.default_address_pools.is_empty() {
            pools::default_pools()
        } else {
            cfg.default_address_pools.clone()
        };
        let loaded = store.load()?;
        let mut datapath = Datapath::load(&LoadOptions {
            trace: false,
            pin_dir: Some(cfg.bpffs.clone()),
            nat_max_flows: Some(cfg.nat_max_flows),
            tc_attach: cfg.tc_attach,
        })?;
        eprintln!(
            "netd: programs attached {}",
            if datapath.uses_clsact() { "as clsact filters (netlink)" } else { "with TCX links" }
        );
        datapath.set_nat_config(nat_ports.lo, nat_ports.hi)?;
        let timeouts = nat::nat_timeouts(&cfg.nat_timeout);
        datapath.set_nat_timeouts(&timeouts)?;
        if !cfg.nat_timeout.is_empty() {
            eprintln!("netd: masquerade timeouts {}", nat::describe_timeouts(&nat::timeout_secs(&timeouts)));
        }
        let events = datapath.take_events();
        eprintln!("netd: masquerade ports {nat_ports} (host ephemeral ports {local})");
        let upstreams = dns::Upstreams::new(&dns_settings, dns::HostResolvConf::read());
        let monitor = monitor::Monitor::default();
        let dns_observer = Arc::new(dns::Observer::new(monitor.sender()));
        let daemon = Arc::new(Self {
            cfg,
            state: Mutex::new(State::default()),
            store,
            nl,
            datapath: std::sync::Mutex::new(datapath),
            pools,
            uplinks: std::sync::Mutex::new(Vec::new()),
            nat_refused: std::sync::Mutex::new(None),
            stack_refuses: std::sync::Mutex::new(None),
            route_rule: std::sync::Mutex::new(None),
            running_sandboxes: std::sync::Mutex::new(None),
            process_scan: std::sync::Arc::default(),
            started: std::sync::Mutex::new(Vec::new()),
            execs: std::sync::Mutex::new(std::collections::HashMap::new()),
            events: std::sync::Mutex::new(events),
            monitor,
            docker_events: events::Events::default(),
            relays: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            uplink_marks: std::sync::atomic::AtomicU32::new(0),
            names: Arc::new(dns::Directory::default()),
            resolvers: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            dns_redirects: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            upstreams,
            dns_observer,
        });
        let mut state = if let Some(s) = loaded {
            s
        } else {
            let mut s = State::default();
            for n in daemon.predefined_networks() {
                s.networks.insert(n.id.clone(), n);
            }
            s
        };
        if state.engine_id.is_empty() {
            state.engine_id = crate::model::ids::new_uuid();
            daemon.persist(&state)?;
        }
        *daemon.state.lock().await = state;
        daemon.reconcile().await?;
        enable_ip_forwarding();
        daemon.sync_uplinks().await?;
        // The refusals counted so far are not news (pinned counters outlive a restart).
        daemon.report_nat_refusals()?;
        Ok(daemon)
    }

    /// The uplinks in use, described (`eth0 (192.0.2.10)`).
    pub fn uplinks(&self) -> Vec<String> {
        self.uplinks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn persist(&self, state: &State) -> Result<()> {
        self.store.save(state)?;
        self.names.update(state);
        Ok(())
    }

    /// A snapshot of the state.
    pub async fn snapshot(&self) -> State {
        self.state.lock().await.clone()
    }
}

/// Docker sets `net.ipv4.ip_forward=1` in its namespace so containers reach beyond the bridge.
fn enable_ip_forwarding() {
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        eprintln!("netd: warning: enabling net.ipv4.ip_forward: {e}");
    }
}

/// Serves the API on `listener` (and the metrics alone on `metrics`, `--metrics-addr`) until
/// `shutdown` resolves.
pub async fn run(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    metrics: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let sweeper = {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            for tick in 1u64.. {
                tokio::time::sleep(Duration::from_millis(500)).await;
                daemon.sweep_auto_remove().await;
                daemon.reap_started();
                if tick % 4 == 0 {
                    if let Err(e) = daemon.sync_uplinks().await {
                        eprintln!("netd: uplinks: {e}");
                    }
                    if let Err(e) = daemon.report_nat_refusals() {
                        eprintln!("netd: reading masquerade's counters: {e}");
                    }
                    if let Err(e) = daemon.sync_nat_reports() {
                        eprintln!("netd: monitor: turning off the reports of new flows: {e}");
                    }
                    if let Err(e) = daemon.sync_traces().await {
                        eprintln!("netd: monitor: marking the traced endpoints: {e}");
                    }
                }
                // Expired flows only hold memory (the datapath reuses their ports and treats
                // them as absent), so collecting every 10 s is enough.
                if tick % 20 == 0 {
                    if let Err(e) = daemon.collect_nat() {
                        eprintln!("netd: collecting expired translations: {e}");
                    }
                }
            }
        })
    };
    let events = daemon.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let reader = events.map(|ring| tokio::spawn(daemon.clone().read_events(ring)));
    let metrics = metrics.map(|l| {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(crate::api::serve_metrics(daemon.clone(), stream));
                    }
                    Err(e) => eprintln!("netd: metrics: accept: {e}"),
                }
            }
        })
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let daemon = daemon.clone();
                    tokio::spawn(crate::api::serve_connection(daemon, stream));
                }
                Err(e) => eprintln!("netd: accept: {e}"),
            },
        }
    }
    sweeper.abort();
    for task in [reader, metrics].into_iter().flatten() {
        task.abort();
    }
}
