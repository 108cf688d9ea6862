//! Start-up reconciliation: after a clean stop or a SIGKILL at any moment, make the kernel, the
//! datapath and the state agree. Intents that did not finish (`Creating`) are rolled back,
//! finished objects are re-created if their kernel side is missing (or adopted, with their
//! pinned datapath links, when present), and links, pins or namespaces netd made but no longer
//! knows are removed.

use std::collections::BTreeSet;

use crate::{
    model::{Lifecycle, Sandbox, SandboxMode, State},
    netns,
};

use super::{datapath::published_keys, error::Result, kernel, proxy, Daemon};

impl Daemon {
    pub(super) async fn reconcile(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        self.roll_back_unfinished(&mut state).await?;
        self.follow_default_bridge_flags(&mut state).await?;
        self.ensure_networks_and_endpoints(&state).await?;
        self.remove_orphans(&state).await?;
        let direct = self.cfg.allow_direct_routing;
        let known = state
            .published()
            .filter_map(|(n, s, p)| Some(published_keys(n, n.endpoints.get(s)?.link.as_ref()?, p, direct)))
            .flatten()
            .collect();
        self.datapath_forget_stale_published(&known)?;
        self.relay_published(&state);
        self.adopt_older_sandboxes(&mut state);
        self.persist(&state)?;
        self.serve_dns(&state);
        Ok(())
    }

    /// Sandboxes made by a release without names (no `/etc/hosts` of their own) get what a new
    /// one gets: the short id as host name, their own `/etc/hosts`, on a bridge network a
    /// `resolv.conf`, and on a user-defined one the embedded resolver. Processes already
    /// running keep the host's files; those `netd exec` starts see the new ones.
    fn adopt_older_sandboxes(&self, state: &mut State) {
        let older: Vec<Sandbox> =
            state.sandboxes.values().filter(|s| s.mode == SandboxMode::Private && s.hosts.is_none()).cloned().collect();
        for mut s in older {
            let networks = state.networks_of(&s.id);
            self.give_names(&mut s, &networks, None);
            state.sandboxes.insert(s.id.clone(), s);
        }
    }

    /// Writes the sandboxes' `resolv.conf` and `/etc/hosts` again (the flags may have changed,
    /// a reboot emptied `--exec-root`) and starts their resolvers (the last daemon's sockets
    /// went with it).
    fn serve_dns(&self, state: &State) {
        let warn = |s: &Sandbox, e: &super::Error| eprintln!("netd: warning: names of sandbox {}: {e}", s.name);
        for s in state.sandboxes.values() {
            // Without its resolver, a sandbox still gets its `/etc/hosts`.
            let sockets = self.prepare_resolv_conf(s).unwrap_or_else(|e| {
                warn(s, &e);
                None
            });
            if let Err(e) = self.serve_names(state, s, sockets) {
                warn(s, &e);
            }
        }
    }

    /// Binds and relays every published port again (a restarted daemon; the datapath carried
    /// the uplinks' connections meanwhile). A port the host took meanwhile stays published on
    /// the uplinks, and the log says that the rest cannot reach it.
    fn relay_published(&self, state: &State) {
        let mut relays = self.relays();
        for (n, sandbox_id, p) in state.published() {
            // A routed network's ports are reached at the container's address: no relay.
            if relays.contains_key(p) || n.routed() {
                continue;
            }
            let Some(link) = n.endpoints.get(sandbox_id).and_then(|e| e.link.as_ref()) else { continue };
            let to = std::net::SocketAddrV4::new(link.ip, p.container_port);
            match proxy::bind(p.protocol, p.host_ip, p.host_port).and_then(|b| proxy::start(b, to, *p)) {
                Ok(relay) => {
                    relays.insert(*p, relay);
                }
                Err(e) => {
                    eprintln!("netd: warning: published port {p}: {e}; only connections through the uplinks reach it");
                }
            }
        }
    }

    /// Sandboxes, endpoints and networks whose creation did not finish, sandboxes whose
    /// namespace is gone (reboot), endpoints of unknown sandboxes.
    async fn roll_back_unfinished(&self, state: &mut State) -> Result<()> {
        let dead: Vec<_> = state
            .sandboxes
            .values()
            .filter(|s| {
                s.lifecycle == Lifecycle::Creating
                    || (s.mode == SandboxMode::Private && !s.netns.as_deref().is_some_and(netns::is_pinned))
            })
            .cloned()
            .collect();
        for s in dead {
            eprintln!("netd: reconcile: removing unfinished or vanished sandbox {}", s.name);
            self.teardown_sandbox(state, &s).await?;
        }

        let stale_endpoints: Vec<(String, String)> = state
            .networks
            .values()
            .flat_map(|n| {
                n.endpoints
                    .values()
                    .filter(|e| e.lifecycle == Lifecycle::Creating || !state.sandboxes.contains_key(&e.sandbox_id))
                    .map(|e| (n.id.clone(), e.sandbox_id.clone()))
            })
            .collect();
        for (network_id, sandbox_id) in stale_endpoints {
            self.remove_endpoint(state, &network_id, &sandbox_id).await?;
        }

        let unfinished: Vec<_> =
            state.networks.values().filter(|n| n.lifecycle == Lifecycle::Creating).cloned().collect();
        for n in unfinished {
            eprintln!("netd: reconcile: rolling back unfinished network {}", n.name);
            self.datapath_remove_network(&n)?;
            if let Some(b) = &n.bridge {
                kernel::teardown_bridge(&self.nl, b).await?;
            }
            state.networks.remove(&n.id);
        }

        // Endpoints persisted without a counter slot get one.
        while let Some((network_id, sandbox_id)) = state.networks.values().find_map(|n| {
            n.endpoints
                .values()
                .find(|e| e.link.as_ref().is_some_and(|l| l.slot == 0))
                .map(|e| (n.id.clone(), e.sandbox_id.clone()))
        }) {
            let slot = state.next_endpoint_slot();
            let ep = state.networks.get_mut(&network_id).and_then(|n| n.endpoints.get_mut(&sandbox_id));
            if let Some(link) = ep.and_then(|e| e.link.as_mut()) {
                link.slot = slot;
            }
        }
        // Networks persisted without a datapath id (the predefined ones at first start) get one.
        let missing: Vec<String> =
            state.networks.values().filter(|n| n.datapath_id == 0).map(|n| n.id.clone()).collect();
        for id in missing {
            let next = state.next_datapath_id();
            state.networks.get_mut(&id).expect("listed").datapath_id = next;
        }
        Ok(())
    }

    /// The default bridge follows the daemon's flags while nothing is attached to it.
    async fn follow_default_bridge_flags(&self, state: &mut State) -> Result<()> {
        let wanted = self.predefined_networks();
        let Some(w) = wanted.iter().find(|w| w.name == "bridge") else {
            return Ok(());
        };
        let Some(current) = state.networks.values_mut().find(|n| n.predefined && n.name == "bridge") else {
            return Ok(());
        };
        if current.endpoints.is_empty() && (current.bridge != w.bridge || current.ipam != w.ipam) {
            self.datapath_remove_network(current)?;
            if let Some(old) = &current.bridge {
                kernel::teardown_bridge(&self.nl, old).await?;
            }
            current.bridge.clone_from(&w.bridge);
            current.ipam.clone_from(&w.ipam);
            current.options.clone_from(&w.options);
        }
        Ok(())
    }

    /// Every bridge and endpoint that should exist does, and is in the datapath: links pinned by
    /// an earlier daemon are adopted (traffic never stopped), missing ones are made.
    async fn ensure_networks_and_endpoints(&self, state: &State) -> Result<()> {
        for n in state.networks.values().filter(|n| n.bridge.is_some()) {
            kernel::setup_bridge(&self.nl, n).await?;
            self.datapath_set_network(n)?;
            for ep in n.endpoints.values() {
                let Some(link) = &ep.link else { continue };
                let Some(sandbox) = state.sandboxes.get(&ep.sandbox_id) else {
                    continue;
                };
                if let Some(host) = self.nl.link(&link.host_veth).await? {
                    self.datapath_adopt_endpoint(n, &ep.sandbox_id, link, host.index)?;
                } else {
                    eprintln!(
                        "netd: reconcile: re-creating endpoint {} of {} on {}",
                        link.ifname, sandbox.name, n.name
                    );
                    self.setup_endpoint(n, &self.netns_path(sandbox), &ep.sandbox_id, &ep.id, link).await?;
                }
            }
        }
        Ok(())
    }

    /// Links netd marked, pinned datapath links and entries, and pinned namespaces that the
    /// state does not know.
    async fn remove_orphans(&self, state: &State) -> Result<()> {
        let known_links: BTreeSet<String> = state
            .networks
            .values()
            .flat_map(|n| {
                let bridge = n.bridge.as_ref().map(|b| b.bridge_name.clone());
                let veths = n.endpoints.values().filter_map(|e| e.link.as_ref().map(|l| l.host_veth.clone()));
                bridge.into_iter().chain(veths)
            })
            .collect();
        let mut live = BTreeSet::new();
        for link in self.nl.links().await? {
            let ours = link.alias.as_deref().is_some_and(|a| a.starts_with(kernel::ALIAS_PREFIX));
            if ours && !known_links.contains(&link.name) {
                eprintln!("netd: reconcile: deleting orphan link {}", link.name);
                self.nl.delete_link(&link.name).await?;
            } else if known_links.contains(&link.name) {
                live.insert(link.index);
            }
        }
        self.datapath_forget_unknown(&known_links)?;
        self.datapath_forget_stale_endpoints(&live)?;

        let known_netns: BTreeSet<_> = state.sandboxes.values().filter_map(|s| s.netns.clone()).collect();
        if let Ok(dir) = std::fs::read_dir(self.cfg.netns_dir()) {
            for entry in dir.flatten() {
                let path = entry.path();
                if !known_netns.contains(&path) {
                    eprintln!("netd: reconcile: removing orphan namespace {}", path.display());
                    let _ = netns::remove(&path);
                }
            }
        }
        // The files of sandboxes it does not know (their namespaces went above).
        if let Ok(dir) = std::fs::read_dir(self.cfg.exec_root.join("containers")) {
            for entry in dir.flatten() {
                let name = entry.file_name();
                if !state.sandboxes.contains_key(name.to_string_lossy().as_ref()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(())
    }
}
