//! Sandboxes (containers without images) and their endpoints: connect, disconnect, create,
//! remove. Every operation persists its intent (`Lifecycle::Creating`) before touching the
//! kernel and rolls back on failure, so bad input or a crash leaves nothing half made.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    model::{
        ids, options::container_iface_prefix, Driver, Endpoint, EndpointLink, Exit, Lifecycle, Lookup, Network,
        PortBinding, PortSpec, ProcessRef, Sandbox, SandboxMode, State,
    },
    netns, process,
};

use netd_common::DNS_RESOLVER_PORT;

use super::{
    dns,
    error::{Error, Result},
    kernel,
    networks::lookup_error,
    proxy, Daemon,
};

/// A sandbox as requested by `netd run`.
#[derive(Clone, Debug, Default)]
pub struct CreateSandbox {
    pub name: Option<String>,
    /// Network name or id; `bridge` when empty.
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    pub auto_remove: bool,
    pub command: Vec<String>,
    /// What its command runs with when netd starts it again (`docker start`).
    pub env: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// The user it runs as (`-u`; empty: root).
    pub user: String,
    /// Ports to publish on the network (`-p`).
    pub ports: Vec<PortSpec>,
    /// More names on the network's DNS (`--network-alias`).
    pub aliases: Vec<String>,
    /// `--hostname` (default: the short id).
    pub hostname: Option<String>,
    /// `--add-host NAME:IP` (`host-gateway` for the default bridge's address).
    pub extra_hosts: Vec<String>,
    /// Its own `--dns`, `--dns-search`, `--dns-option`.
    pub dns: crate::model::DnsSettings,
}

pub fn no_such_container(key: &str) -> Error {
    Error::NotFound(format!("No such container: {key}"))
}

pub(super) fn sandbox_lookup_error(key: &str, e: Lookup) -> Error {
    match e {
        Lookup::NotFound => no_such_container(key),
        Lookup::Ambiguous => Error::NotFound(format!("multiple containers found with provided prefix: {key}")),
    }
}

const HOST_MODE_CONFLICT: &str = "container cannot be disconnected from host network or connected to host network";
const NONE_MODE_CONFLICT: &str =
    "container cannot be connected to multiple networks with one of the networks in private (none) mode";

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() >= 2
}

impl Daemon {
    /// The namespace a sandbox's processes run in.
    pub fn netns_path(&self, s: &Sandbox) -> PathBuf {
        match s.mode {
            SandboxMode::Host => PathBuf::from(format!("/proc/{}/ns/net", std::process::id())),
            SandboxMode::Private => s.netns.clone().expect("private sandboxes have a namespace"),
        }
    }

    /// Creates a sandbox attached to one network. Nothing is left behind on failure.
    pub async fn create_sandbox(&self, req: CreateSandbox) -> Result<Sandbox> {
        let mut state = self.state.lock().await;
        let network_key = if req.network.is_empty() { "bridge" } else { req.network.as_str() };
        let network = state.find_network(network_key).map_err(|e| lookup_error(network_key, e))?.clone();
        let name = sandbox_name(&state, req.name)?;
        if network.driver != Driver::Bridge && req.mac.is_some() {
            return Err(Error::InvalidParameter("conflicting options: mac-address and the network mode".into()));
        }
        if network.driver != Driver::Bridge && req.ip.is_some() {
            return Err(Error::InvalidParameter(
                "User specified IP address is supported on user defined networks only".into(),
            ));
        }
        if let (Some(_), Some(ipam)) = (req.ip, &network.ipam) {
            if !ipam.user_subnet {
                return Err(Error::InvalidParameter(crate::ipam::IpamError::StaticIpNotAllowed.to_string()));
            }
        }
        check_aliases(&network, &req.aliases)?;
        let extra_hosts = check_identity(&network, req.hostname.as_deref(), &req.extra_hosts, self.cfg.bip.ip())?;
        req.dns.check().map_err(Error::InvalidParameter)?;
        check_command(&req.user, req.working_dir.as_deref())?;
        // The ports are bound first (that reserves them): one that is taken changes nothing.
        let reserved = reserve_ports(&state, &network, &req.ports)?;
        let ports: Vec<PortBinding> = reserved.iter().map(|(b, _)| *b).collect();
        let id = ids::new_id();
        let mode = if network.driver == Driver::Host { SandboxMode::Host } else { SandboxMode::Private };
        let netns = (mode == SandboxMode::Private).then(|| self.cfg.netns_dir().join(&id[..12]));
        let mut sandbox = Sandbox {
            id: id.clone(),
            name,
            created: ids::now_rfc3339(),
            mode,
            netns: netns.clone(),
            processes: Vec::new(),
            auto_remove: req.auto_remove,
            command: req.command,
            lifecycle: Lifecycle::Creating,
            resolv_conf: None,
            embedded_dns: false,
            hosts: None,
            hostname: String::new(),
            extra_hosts,
            dns: req.dns,
            exit: None,
            started_at: None,
            log: Some(self.cfg.sandbox_dir(&id).join(format!("{id}-json.log"))),
            env: req.env,
            working_dir: req.working_dir,
            user: req.user,
        };
        if mode == SandboxMode::Private {
            self.give_names(&mut sandbox, &[&network], req.hostname);
        }
        state.sandboxes.insert(id.clone(), sandbox.clone());
        self.persist(&state)?;
        self.container_event("create", &sandbox, None);

        let result = async {
            if let Some(path) = &netns {
                std::fs::create_dir_all(self.cfg.netns_dir()).map_err(Error::io("creating the netns directory"))?;
                netns::create(path).map_err(Error::io(format!("creating namespace {}", path.display())))?;
                kernel::setup_sandbox(path).await?;
            }
            let resolver = self.prepare_resolv_conf(&sandbox)?;
            let attach = Attach { ip: req.ip, mac: req.mac, ports, aliases: req.aliases };
            self.connect_locked(&mut state, &network.id, &id, attach).await?;
            Ok(resolver)
        }
        .await;
        let resolver = match result {
            Ok(r) => r,
            Err(e) => {
                self.stop_resolver(&id);
                if let Some(path) = &netns {
                    let _ = netns::remove(path);
                }
                let _ = std::fs::remove_dir_all(self.cfg.sandbox_dir(&id));
                state.sandboxes.remove(&id);
                self.persist(&state)?;
                self.container_event("destroy", &sandbox, None);
                return Err(e);
            }
        };
        if let Err(e) = self.serve_names(&state, &sandbox, resolver) {
            self.teardown_sandbox(&mut state, &sandbox).await?;
            return Err(e);
        }
        if let Err(e) = self.start_relays(&state, &network.id, &id, reserved) {
            let s = state.sandboxes[&id].clone();
            self.teardown_sandbox(&mut state, &s).await?;
            return Err(e);
        }
        let s = state.sandboxes.get_mut(&id).expect("inserted above");
        s.lifecycle = Lifecycle::Ready;
        let out = s.clone();
        self.persist(&state)?;
        Ok(out)
    }

    /// Starts relaying the published ports of sandbox `sandbox_id` on network `network_id`
    /// from their sockets (see `proxy`).
    fn start_relays(
        &self,
        state: &State,
        network_id: &str,
        sandbox_id: &str,
        reserved: Vec<(PortBinding, Option<proxy::Bound>)>,
    ) -> Result<()> {
        let Some(link) = state.networks[network_id].endpoints.get(sandbox_id).and_then(|e| e.link.as_ref()) else {
            return Ok(());
        };
        let mut relays = self.relays();
        // A routed network's ports have nothing bound (reached at the container's address).
        for (binding, bound) in reserved.into_iter().filter_map(|(b, bound)| Some((b, bound?))) {
            let to = std::net::SocketAddrV4::new(link.ip, binding.container_port);
            let relay = proxy::start(bound, to, binding).map_err(Error::io(format!("relaying {binding}")))?;
            relays.insert(binding, relay);
        }
        Ok(())
    }

    /// Gives private sandbox `s`, on `networks`, what names it has: its host name (`hostname`,
    /// else the short id, as Docker's), its own `/etc/hosts`, on a bridge network a
    /// `resolv.conf`, and on a user-defined one the embedded resolver.
    pub(super) fn give_names(&self, s: &mut Sandbox, networks: &[&Network], hostname: Option<String>) {
        let dir = self.cfg.sandbox_dir(&s.id);
        let bridged = networks.iter().any(|n| n.driver == Driver::Bridge);
        s.hosts = Some(dir.join("hosts"));
        s.hostname = hostname.unwrap_or_else(|| s.id[..12].to_owned());
        s.resolv_conf = bridged.then(|| dir.join("resolv.conf"));
        s.embedded_dns = networks.iter().any(|n| n.driver == Driver::Bridge && !n.predefined);
    }

    /// Starts sandbox `sandbox`'s resolver on `sockets` (when it has one) and writes its
    /// `/etc/hosts`.
    pub(super) fn serve_names(&self, state: &State, sandbox: &Sandbox, sockets: Option<dns::Sockets>) -> Result<()> {
        if let Some(sockets) = sockets {
            let upstreams = self.upstreams.with(&sandbox.dns);
            let r = dns::start(sockets, &sandbox.id, self.names.clone(), &upstreams, self.dns_observer.clone())
                .map_err(Error::io("starting the DNS resolver"))?;
            self.resolvers().insert(sandbox.id.clone(), r);
        }
        write_hosts(state, &sandbox.id)
    }

    /// Writes sandbox `s`'s `resolv.conf` and, when it has the embedded resolver, binds the
    /// resolver's sockets in its namespace (see [`Daemon::bind_resolver`]).
    pub(super) fn prepare_resolv_conf(&self, s: &Sandbox) -> Result<Option<dns::Sockets>> {
        let Some(path) = &s.resolv_conf else {
            return Ok(None);
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("creating the sandbox's directory"))?;
        }
        // Written in place: processes that run see the file they bind-mounted change.
        std::fs::write(path, self.upstreams.with(&s.dns).resolv_conf(s.embedded_dns))
            .map_err(Error::io(format!("writing {}", path.display())))?;
        if !s.embedded_dns {
            return Ok(None);
        }
        self.bind_resolver(s).map(Some)
    }

    /// Binds the resolver's sockets in sandbox `s`'s namespace, on [`DNS_RESOLVER_PORT`], with
    /// `netd_dns_redirect` on the sandbox's `lo` moving port 53 there (port 53 stays the
    /// sandbox's).
    fn bind_resolver(&self, s: &Sandbox) -> Result<dns::Sockets> {
        let netns = self.netns_path(s);
        let mut guard = self.dp();
        let dp: &mut crate::datapath::Datapath = &mut guard;
        let link = netns::run_in(&netns, || Ok(dp.attach_dns_redirect()))
            .map_err(Error::io("entering the sandbox's namespace"))??;
        drop(guard);
        if let Some(link) = link {
            self.dns_redirects().insert(s.id.clone(), link);
        }
        let port = DNS_RESOLVER_PORT;
        dns::bind(&netns, port).map_err(Error::io(format!("binding the DNS resolver at {}:{port}", dns::ADDRESS)))
    }

    /// The `lo` programs of the sandboxes' resolvers, by sandbox id.
    pub(super) fn dns_redirects(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, aya::programs::tc::SchedClassifierLinkId>> {
        self.dns_redirects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops sandbox `id`'s resolver and detaches its `lo` program.
    fn stop_resolver(&self, id: &str) {
        self.resolvers().remove(id);
        let link = self.dns_redirects().remove(id);
        if let Some(link) = link {
            self.dp().detach_dns_redirect(link);
        }
    }

    /// The embedded resolvers, by sandbox id.
    pub(super) fn resolvers(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, dns::Resolver>> {
        self.resolvers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The published ports that are relayed, by binding.
    pub(super) fn relays(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<PortBinding, proxy::Relay>> {
        self.relays.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects a sandbox to a network (`docker network connect`).
    pub async fn connect(
        &self,
        network_key: &str,
        sandbox_key: &str,
        ip: Option<Ipv4Addr>,
        aliases: Vec<String>,
    ) -> Result<()> {
        let mut state = self.state.lock().await;
        let network = state.find_network(network_key).map_err(|e| lookup_error(network_key, e))?;
        check_aliases(network, &aliases)?;
        let network_id = network.id.clone();
        let sandbox_id = state.find_sandbox(sandbox_key).map_err(|e| sandbox_lookup_error(sandbox_key, e))?.id.clone();
        let attach = Attach { ip, mac: None, ports: Vec::new(), aliases };
        self.connect_locked(&mut state, &network_id, &sandbox_id, attach).await
    }

    async fn connect_locked(
        &self,
        state: &mut State,
        network_id: &str,
        sandbox_id: &str,
        attach: Attach,
    ) -> Result<()> {
        let Attach { ip, mac, ports, aliases } = attach;
        let network = state.networks[network_id].clone();
        let sandbox = state.sandboxes[sandbox_id].clone();
        if network.endpoints.contains_key(sandbox_id) {
            return Err(Error::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                sandbox.name, network.name
            )));
        }
        let current = state.networks_of(sandbox_id);
        if (network.driver == Driver::Host) != (sandbox.mode == SandboxMode::Host) {
            return Err(Error::Forbidden(HOST_MODE_CONFLICT.into()));
        }
        if (network.driver == Driver::Null && !current.is_empty()) || current.iter().any(|n| n.driver == Driver::Null) {
            return Err(Error::Forbidden(NONE_MODE_CONFLICT.into()));
        }
        let endpoint_id = ids::new_id();
        let mut endpoint = Endpoint {
            id: endpoint_id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            link: None,
            lifecycle: Lifecycle::Creating,
            ports,
            aliases,
        };

        if network.driver != Driver::Bridge {
            if ip.is_some() {
                return Err(Error::InvalidParameter(
                    "User specified IP address is supported on user defined networks only".into(),
                ));
            }
            endpoint.lifecycle = Lifecycle::Ready;
            state.networks.get_mut(network_id).expect("exists").endpoints.insert(sandbox_id.to_owned(), endpoint);
            self.persist(state)?;
            self.network_event("connect", &network, Some(sandbox_id));
            return Ok(());
        }

        // Bridge: allocate, record the intent, then build the veth pair.
        let mut ipam = network.ipam.clone().expect("bridge networks have IPAM");
        let addr = ipam.allocate(ip, &network.name, &network.id).map_err(|e| match e {
            crate::ipam::IpamError::InUse => Error::Forbidden(e.to_string()),
            _ => Error::InvalidParameter(e.to_string()),
        })?;
        let ifname = next_ifname(state, sandbox_id, container_iface_prefix(&network.options));
        let link = EndpointLink {
            ip: addr,
            prefix: ipam.subnet.prefix(),
            mac: mac.unwrap_or_else(|| ids::docker_mac(addr)),
            host_veth: new_host_veth_name(state),
            ifname,
            static_ip: ip.is_some(),
            slot: state.next_endpoint_slot(),
        };
        endpoint.link = Some(link.clone());
        {
            let n = state.networks.get_mut(network_id).expect("exists");
            n.ipam = Some(ipam.clone());
            n.endpoints.insert(sandbox_id.to_owned(), endpoint);
        }
        self.persist(state)?;

        let netns = self.netns_path(&sandbox);
        let network = state.networks[network_id].clone();
        if let Err(e) = self.setup_endpoint(&network, &netns, sandbox_id, &endpoint_id, &link).await {
            let _ = self.teardown_endpoint(&network, &link, &endpoint_ports(state, network_id, sandbox_id)).await;
            ipam.release(addr);
            let n = state.networks.get_mut(network_id).expect("exists");
            n.ipam = Some(ipam);
            n.endpoints.remove(sandbox_id);
            self.persist(state)?;
            return Err(e);
        }
        let n = state.networks.get_mut(network_id).expect("exists");
        n.endpoints.get_mut(sandbox_id).expect("inserted").lifecycle = Lifecycle::Ready;
        self.persist(state)?;
        if let Err(e) = write_hosts(state, sandbox_id) {
            eprintln!("netd: warning: {e}");
        }
        self.network_event("connect", &network, Some(sandbox_id));
        Ok(())
    }

    /// Disconnects a sandbox from a network (`docker network disconnect`).
    pub async fn disconnect(&self, network_key: &str, sandbox_key: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let network = state.find_network(network_key).map_err(|e| lookup_error(network_key, e))?.clone();
        let sandbox = state.find_sandbox(sandbox_key).map_err(|e| sandbox_lookup_error(sandbox_key, e))?.clone();
        if !network.endpoints.contains_key(&sandbox.id) {
            return Err(Error::Forbidden(format!(
                "container {} is not connected to network {}",
                sandbox.id, network.name
            )));
        }
        if network.driver == Driver::Host {
            return Err(Error::Forbidden(HOST_MODE_CONFLICT.into()));
        }
        self.remove_endpoint(&mut state, &network.id, &sandbox.id).await?;
        // Like Docker: keep a default route through a remaining network if there is one.
        if let Some(path) = &sandbox.netns {
            let next = state
                .networks_of(&sandbox.id)
                .into_iter()
                .find(|n| !n.internal && n.ipam.is_some())
                .and_then(|n| n.ipam.as_ref().map(|i| i.gateway));
            if let Some(gw) = next {
                kernel::ensure_default_route(path, gw).await?;
            }
        }
        Ok(())
    }

    /// Deletes an endpoint's links, releases its address, forgets it.
    pub(super) async fn remove_endpoint(&self, state: &mut State, network_id: &str, sandbox_id: &str) -> Result<()> {
        let Some(n) = state.networks.get_mut(network_id) else {
            return Ok(());
        };
        let Some(ep) = n.endpoints.get(sandbox_id).cloned() else {
            return Ok(());
        };
        // Its published ports are released with it (a routed network's have no relay, and
        // the same mapping may be another sandbox's relayed one).
        if !n.routed() {
            let mut relays = self.relays();
            for p in &ep.ports {
                relays.remove(p);
            }
        }
        if let Some(link) = &ep.link {
            self.teardown_endpoint(n, link, &ep.ports).await?;
            if let Some(ipam) = n.ipam.as_mut() {
                ipam.release(link.ip);
            }
        }
        n.endpoints.remove(sandbox_id);
        self.persist(state)?;
        if let Err(e) = write_hosts(state, sandbox_id) {
            eprintln!("netd: warning: {e}");
        }
        self.network_event("disconnect", &state.networks[network_id], Some(sandbox_id));
        Ok(())
    }

    /// Sandbox `key`, and those of its processes that still run (none: it is stopped).
    async fn running_processes(&self, key: &str) -> Result<(Sandbox, Vec<ProcessRef>)> {
        let state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?;
        Ok((s.clone(), s.processes.iter().copied().filter(ProcessRef::is_running).collect()))
    }

    /// Takes note of the sandboxes whose processes exited (Docker's `die`) now.
    async fn note_exits_now(&self) {
        let state = self.state.lock().await;
        self.note_exits(&state);
    }

    /// Stops sandbox `key` as `docker stop` does a container: SIGTERM to its processes, then
    /// SIGKILL to those still running after `grace`. The sandbox stays (exited), unless it was
    /// made with `--rm`. Returns whether anything ran. The state is not held meanwhile.
    pub async fn stop_sandbox(&self, key: &str, grace: Duration) -> Result<bool> {
        let (s, running) = self.running_processes(key).await?;
        if running.is_empty() {
            return Ok(false);
        }
        self.container_event("kill", &s, Some(libc::SIGTERM));
        for p in &running {
            process::signal(*p, libc::SIGTERM);
        }
        gone_within(&running, grace).await;
        if running.iter().any(ProcessRef::is_running) {
            self.container_event("kill", &s, Some(libc::SIGKILL));
            self.note_sigkill(&s.id).await;
            for p in &running {
                process::kill(*p);
            }
            gone_within(&running, Duration::from_secs(2)).await;
        }
        gone_within(&self.kill_leftovers(&s), Duration::from_secs(2)).await;
        self.note_exits_now().await;
        self.container_event("stop", &s, None);
        Ok(true)
    }

    /// Sends `sig` to the processes of sandbox `key`, as `docker kill` to a container's; a
    /// sandbox with none running is refused (Docker's words).
    pub async fn signal_sandbox(&self, key: &str, sig: i32) -> Result<()> {
        let (s, running) = self.running_processes(key).await?;
        if running.is_empty() {
            return Err(Error::Conflict(format!("cannot kill container: {key}: container {key} is not running")));
        }
        self.container_event("kill", &s, Some(sig));
        if sig == libc::SIGKILL {
            self.note_sigkill(&s.id).await;
        }
        for p in running {
            process::signal(p, sig);
        }
        Ok(())
    }

    /// Removes a sandbox: its processes (with `force`), endpoints and namespace.
    pub async fn remove_sandbox(&self, key: &str, force: bool) -> Result<String> {
        let mut state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?.clone();
        let running: Vec<ProcessRef> = s.processes.iter().copied().filter(ProcessRef::is_running).collect();
        if !running.is_empty() {
            if !force {
                return Err(Error::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    s.id
                )));
            }
            self.container_event("kill", &s, Some(libc::SIGKILL));
            if let Some(s) = state.sandboxes.get_mut(&s.id) {
                s.exit.get_or_insert_with(|| Exit { code: 128 + libc::SIGKILL, at: ids::now_rfc3339() });
            }
            for p in &running {
                process::kill(*p);
            }
            gone_within(&running, Duration::from_secs(2)).await;
        }
        // Its end, if the sweeper has not seen it yet: before `destroy`, as Docker's order.
        self.note_exits(&state);
        self.teardown_sandbox(&mut state, &s).await?;
        Ok(s.id)
    }

    /// Removes a sandbox's endpoints and namespace and forgets it (the processes netd started
    /// already handled; what else runs in its namespace is ended here).
    pub(super) async fn teardown_sandbox(&self, state: &mut State, s: &Sandbox) -> Result<()> {
        gone_within(&self.kill_leftovers(s), Duration::from_secs(2)).await;
        let networks: Vec<String> = state.networks_of(&s.id).iter().map(|n| n.id.clone()).collect();
        for network_id in networks {
            self.remove_endpoint(state, &network_id, &s.id).await?;
        }
        self.stop_resolver(&s.id);
        if let Some(path) = &s.netns {
            netns::remove(path).map_err(Error::io(format!("removing namespace {}", path.display())))?;
        }
        match std::fs::remove_dir_all(self.cfg.sandbox_dir(&s.id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing the sandbox's directory")(e));
            }
            _ => {}
        }
        state.sandboxes.remove(&s.id);
        self.persist(state)?;
        self.forget_execs(&s.id);
        self.container_event("destroy", s, None);
        Ok(())
    }

    /// Records how sandbox `key`'s command ended (`code`: its exit code, or 128 + the signal
    /// that ended it), as it is reported: by `netd run` in the foreground, or by the shim the
    /// daemon leaves with a detached command (see `cli::shim`), which stays one of the
    /// sandbox's processes until it has reported, so the sandbox's `die` comes with its code.
    pub async fn record_exit(&self, key: &str, code: i32) -> Result<()> {
        let mut state = self.state.lock().await;
        let id = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?.id.clone();
        let s = state.sandboxes.get_mut(&id).expect("found");
        s.exit = Some(Exit { code, at: ids::now_rfc3339() });
        self.persist(&state)
    }

    /// Renames sandbox `key` to `name` (`docker rename`): its names on its networks' DNS follow
    /// at once; its host name stays, as a container's does.
    pub async fn rename_sandbox(&self, key: &str, name: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?.clone();
        if s.name == name {
            return Err(Error::InvalidParameter("Renaming a container with the same name as its current name".into()));
        }
        let name = sandbox_name(&state, Some(name.to_owned()))?;
        state.sandboxes.get_mut(&s.id).expect("found").name.clone_from(&name);
        self.persist(&state)?;
        let renamed = &state.sandboxes[&s.id];
        self.container_event_with("rename", renamed, &[("oldName", format!("/{}", s.name))]);
        Ok(())
    }

    /// Removes the sandboxes that do not run, made before `until` (seconds since the epoch) if
    /// given (`docker container prune`); returns their ids. One that cannot be removed stays.
    pub async fn prune_sandboxes(&self, until: Option<i64>) -> Vec<String> {
        let candidates: Vec<String> = {
            let state = self.state.lock().await;
            state
                .sandboxes
                .values()
                .filter(|s| !s.processes.iter().any(ProcessRef::is_running))
                .filter(|s| until.is_none_or(|u| ids::unix_secs(&s.created).is_some_and(|c| c < u)))
                .map(|s| s.id.clone())
                .collect()
        };
        let mut removed = Vec::new();
        for id in candidates {
            match self.remove_sandbox(&id, false).await {
                Ok(id) => removed.push(id),
                Err(e) => eprintln!("netd: prune: keeping sandbox {}: {e}", &id[..12]),
            }
        }
        removed
    }

    /// Sandbox `key`'s id and log (none for sandboxes of older releases).
    pub async fn sandbox_log(&self, key: &str) -> Result<(String, Option<PathBuf>)> {
        let state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?;
        Ok((s.id.clone(), s.log.clone()))
    }

    /// Sandbox `key`'s id, whether it runs, and how its last run ended if netd knows.
    pub async fn sandbox_run(&self, key: &str) -> Result<(String, bool, Option<i32>)> {
        let state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?;
        Ok((s.id.clone(), s.processes.iter().any(ProcessRef::is_running), s.exit.as_ref().map(|e| e.code)))
    }

    /// Takes note that netd itself ends sandbox `id`'s processes with SIGKILL, which no shim
    /// outlives to report: its code is 128 + 9, as Docker's, unless one was reported.
    async fn note_sigkill(&self, id: &str) {
        let mut state = self.state.lock().await;
        if let Some(s) = state.sandboxes.get_mut(id) {
            if s.exit.is_none() {
                s.exit = Some(Exit { code: 128 + libc::SIGKILL, at: ids::now_rfc3339() });
                let _ = self.persist(&state);
            }
        }
    }

    /// Records a process started in a sandbox (by `netd run` in the foreground, or a detached
    /// command and its shim).
    pub async fn add_process(&self, key: &str, pid: u32) -> Result<()> {
        let mut state = self.state.lock().await;
        let id = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?.id.clone();
        let p = ProcessRef::of(pid).ok_or_else(|| Error::InvalidParameter(format!("no process with pid {pid}")))?;
        let s = state.sandboxes.get_mut(&id).expect("found");
        if !s.processes.iter().any(ProcessRef::is_running) {
            // A new run: how the last one ended is history.
            s.started_at = Some(ids::now_rfc3339());
        }
        s.processes.push(p);
        s.exit = None;
        let s = s.clone();
        self.persist(&state)?;
        self.note_start(&s);
        Ok(())
    }

    /// Takes note of sandboxes whose processes exited (Docker's `die`), and removes the
    /// `--rm` ones.
    pub async fn sweep_auto_remove(&self) {
        let mut state = self.state.lock().await;
        let running = self.note_exits(&state);
        let done: Vec<Sandbox> = state
            .sandboxes
            .values()
            .filter(|s| s.auto_remove && !s.processes.is_empty() && !running.contains(&s.id))
            .cloned()
            .collect();
        for s in done {
            if let Err(e) = self.teardown_sandbox(&mut state, &s).await {
                eprintln!("netd: removing exited sandbox {}: {e}", s.name);
            }
        }
    }
}

/// The name a new sandbox gets: `name` if it is valid and free (Docker's rules and
/// messages), else a generated one.
fn sandbox_name(state: &State, name: Option<String>) -> Result<String> {
    match name {
        Some(n) => {
            if !valid_name(&n) {
                return Err(Error::InvalidParameter(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            if let Some(other) = state.sandboxes.values().find(|s| s.name == n) {
                return Err(Error::Conflict(format!(
                    "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                    other.id
                )));
            }
            Ok(n)
        }
        None => Ok(ids::generate_name(|n| state.sandboxes.values().any(|s| s.name == n))),
    }
}

/// Writes sandbox `id`'s `/etc/hosts` (Docker's: `localhost`, the `--add-host` lines, then
/// its host name at each of its addresses, the first network's first), in place: running
/// processes see it change as networks are connected and disconnected.
pub(super) fn write_hosts(state: &State, id: &str) -> Result<()> {
    let Some(s) = state.sandboxes.get(id) else { return Ok(()) };
    let Some(path) = &s.hosts else { return Ok(()) };
    let mut addresses: Vec<&EndpointLink> =
        state.networks_of(id).iter().filter_map(|n| n.endpoints[id].link.as_ref()).collect();
    addresses.sort_by_key(|l| l.slot);
    let mut lines = vec!["127.0.0.1\tlocalhost".to_owned()];
    lines.extend(s.extra_hosts.iter().map(|(name, ip)| format!("{ip}\t{name}")));
    lines.extend(addresses.iter().map(|l| format!("{}\t{}", l.ip, s.hostname)));
    let text = lines.join("\n") + "\n";
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io("creating the sandbox's directory"))?;
    }
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
}

/// Checks a new sandbox's `--hostname` on `network` and parses its `--add-host` lines.
fn check_identity(
    network: &Network,
    hostname: Option<&str>,
    extra_hosts: &[String],
    host_gateway: Ipv4Addr,
) -> Result<Vec<(String, std::net::IpAddr)>> {
    if let Some(h) = hostname {
        if network.driver == Driver::Host {
            return Err(Error::InvalidParameter("conflicting options: hostname and the network mode".into()));
        }
        if !valid_hostname(h) {
            return Err(Error::InvalidParameter(format!("invalid hostname format: {h}")));
        }
    }
    extra_hosts.iter().map(|h| parse_extra_host(h, host_gateway)).collect()
}

/// A host name as Linux takes it (at most 64 bytes) and RFC 1123 allows it: labels of letters,
/// digits and hyphens, neither starting nor ending with a hyphen.
fn valid_hostname(h: &str) -> bool {
    h.len() <= 64
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// `--add-host NAME:IP` (or `NAME=IP`, as newer Docker takes IPv6 addresses): `host-gateway`
/// stands for the default bridge's address, as Docker's.
fn parse_extra_host(s: &str, host_gateway: Ipv4Addr) -> Result<(String, std::net::IpAddr)> {
    let Some((name, ip)) = s.split_once('=').or_else(|| s.split_once(':')) else {
        return Err(Error::InvalidParameter(format!("bad format for add-host: {s:?}")));
    };
    if name.is_empty() || name.len() > 253 || name.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return Err(Error::InvalidParameter(format!("bad format for add-host: {s:?}")));
    }
    let ip = if ip == "host-gateway" {
        std::net::IpAddr::V4(host_gateway)
    } else {
        ip.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| Error::InvalidParameter(format!("invalid IP address in add-host: {ip:?}")))?
    };
    Ok((name.to_owned(), ip))
}

/// How a sandbox is attached to a network.
struct Attach {
    ip: Option<Ipv4Addr>,
    mac: Option<[u8; 6]>,
    ports: Vec<PortBinding>,
    aliases: Vec<String>,
}

/// The user a command runs as must be one (a number, or a name of the host's files) and its
/// directory absolute, as Docker's; both in Docker's words.
fn check_command(user: &str, working_dir: Option<&Path>) -> Result<()> {
    crate::process::resolve_user(user, Path::new("/etc")).map_err(Error::InvalidParameter)?;
    match working_dir.filter(|d| !d.is_absolute()) {
        Some(d) => Err(Error::InvalidParameter(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            d.display()
        ))),
        None => Ok(()),
    }
}

/// Aliases are names on a user-defined network's DNS (Docker's rule and message), and must be
/// names a DNS label can carry.
fn check_aliases(network: &Network, aliases: &[String]) -> Result<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    if network.driver != Driver::Bridge || network.predefined {
        return Err(Error::InvalidParameter(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    for a in aliases {
        let valid = !a.is_empty()
            && a.len() <= 253
            && a.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            });
        if !valid {
            return Err(Error::InvalidParameter(format!("invalid network alias {a:?}: not a DNS name")));
        }
    }
    Ok(())
}

fn endpoint_ports(state: &State, network_id: &str, sandbox_id: &str) -> Vec<PortBinding> {
    state.networks[network_id].endpoints.get(sandbox_id).map(|e| e.ports.clone()).unwrap_or_default()
}

/// Binds the ports `specs` asks to publish on `network` (see `proxy`), in order: the address
/// given, else the network's `host_binding_ipv4`; the first free port of a range, or any free
/// one. Refused, with nothing bound, on a network that cannot publish, or when a port is taken
/// (by another sandbox, as Docker says it, or by the host). On a routed network nothing is
/// bound: the container's port is reached at its own address, and the mapping is kept as
/// given (as Docker's, whose routed mode does not use the host part).
fn reserve_ports(
    state: &State,
    network: &Network,
    specs: &[PortSpec],
) -> Result<Vec<(PortBinding, Option<proxy::Bound>)>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let Some(bridge) = &network.bridge else {
        return Err(Error::InvalidParameter(format!(
            "published ports need a bridge network: the {} network has none of its own (the sandbox uses the host's ports, or none)",
            network.name
        )));
    };
    if network.internal {
        return Err(Error::InvalidParameter(format!(
            "published ports cannot be reached on network {}: it is internal",
            network.name
        )));
    }
    if network.routed() {
        return Ok(specs
            .iter()
            .map(|spec| {
                let host_ip = spec.host_ip.unwrap_or(bridge.host_binding_ipv4);
                let host_port = spec.host_ports.map_or(0, |(lo, _)| lo);
                (PortBinding { protocol: spec.protocol, host_ip, host_port, container_port: spec.container_port }, None)
            })
            .collect());
    }
    let mut out: Vec<(PortBinding, Option<proxy::Bound>)> = Vec::new();
    for spec in specs {
        let host_ip = spec.host_ip.unwrap_or(bridge.host_binding_ipv4);
        let candidates: Vec<u16> = match spec.host_ports {
            Some((lo, hi)) => (lo..=hi).collect(),
            None => vec![0],
        };
        let mut last_err = None;
        for port in candidates {
            let mut binding =
                PortBinding { protocol: spec.protocol, host_ip, host_port: port, container_port: spec.container_port };
            // Routed networks' mappings hold no host port.
            let taken = port != 0
                && (state.published().any(|(n, _, p)| !n.routed() && p.overlaps(&binding))
                    || out.iter().any(|(p, _)| p.overlaps(&binding)));
            if taken {
                last_err = Some(already_allocated(&binding));
                continue;
            }
            match proxy::bind(spec.protocol, host_ip, port) {
                Ok(bound) => {
                    binding.host_port = bound.port().map_err(Error::io("reading a bound port"))?;
                    out.push((binding, Some(bound)));
                    last_err = None;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(already_allocated(&binding)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    last_err = Some(Error::InvalidParameter(format!(
                        "Bind for {host_ip}:{port} failed: {host_ip} is not an address of the host"
                    )));
                    break;
                }
                Err(e) => last_err = Some(Error::io(format!("binding {host_ip}:{port}"))(e)),
            }
        }
        if let Some(e) = last_err {
            return Err(e);
        }
    }
    Ok(out)
}

/// Docker's words for a host port that is taken.
fn already_allocated(b: &PortBinding) -> Error {
    Error::Conflict(format!("Bind for {}:{} failed: port is already allocated", b.host_ip, b.host_port))
}

/// A fresh `veth<7 hex>` name for an endpoint's host end.
fn new_host_veth_name(state: &State) -> String {
    loop {
        let name = format!("veth{}", ids::random_hex(7));
        let taken = state
            .networks
            .values()
            .flat_map(|n| n.endpoints.values())
            .any(|e| e.link.as_ref().is_some_and(|l| l.host_veth == name));
        if !taken {
            return name;
        }
    }
}

fn next_ifname(state: &State, sandbox_id: &str, prefix: &str) -> String {
    let used: Vec<String> = state
        .networks_of(sandbox_id)
        .iter()
        .filter_map(|n| n.endpoints.get(sandbox_id).and_then(|e| e.link.as_ref()).map(|l| l.ifname.clone()))
        .collect();
    // One more candidate than there are interfaces: one of them is free.
    (0..=used.len()).map(|i| format!("{prefix}{i}")).find(|n| !used.contains(n)).expect("pigeonhole")
}

/// Waits until none of `processes` runs, or `limit` has passed.
async fn gone_within(processes: &[ProcessRef], limit: Duration) {
    let deadline = tokio::time::Instant::now().checked_add(limit);
    while processes.iter().any(ProcessRef::is_running) && deadline.is_none_or(|d| tokio::time::Instant::now() < d) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
