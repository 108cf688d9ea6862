//! Attaching the programs: `netd_from_container` on the ingress of every endpoint's host veth,
//! `netd_to_container` on the egress of every bridge, `netd_from_uplink` on the ingress of
//! every uplink (`netd_from_l3_uplink` on those without a link-layer header). TCX links are pinned as `links/<veth>`, `links/bridge:<bridge>` and
//! `links/uplink:<uplink>`; `clsact` filters (kernels without TCX, see `clsact`) are marked as
//! `links/<pin name>@clsact-<ifindex>`.
//!
//! A datapath makes each attachment its own once. Where an earlier daemon's program sits, it
//! swaps its own in atomically (a TCX link update, a netlink filter replace): a restarted or
//! upgraded daemon's programs take over with no gap, and no packet meets neither.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    LinkOrder, SchedClassifier, TcAttachType,
};

use super::{
    clsact, Datapath, DatapathError, Result, PROG_DNS_REDIRECT, PROG_FROM_CONTAINER, PROG_FROM_L3_UPLINK,
    PROG_FROM_UPLINK, PROG_TO_CONTAINER,
};

/// Prefix of an uplink's pin name (`uplink:<ifname>`); endpoint veths have their name.
const UPLINK_PIN_PREFIX: &str = "uplink:";
/// Prefix of a bridge's pin name (`bridge:<ifname>`).
const BRIDGE_PIN_PREFIX: &str = "bridge:";

/// Where a program goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    FromContainer,
    ToBridge,
    FromUplink,
    /// An uplink without a link-layer header (same pin name as [`Hook::FromUplink`]: an
    /// uplink has one of the two).
    FromL3Uplink,
}

impl Hook {
    fn program(self) -> &'static str {
        match self {
            Hook::FromContainer => PROG_FROM_CONTAINER,
            Hook::ToBridge => PROG_TO_CONTAINER,
            Hook::FromUplink => PROG_FROM_UPLINK,
            Hook::FromL3Uplink => PROG_FROM_L3_UPLINK,
        }
    }

    fn tc(self) -> TcAttachType {
        match self {
            Hook::ToBridge => TcAttachType::Egress,
            Hook::FromContainer | Hook::FromUplink | Hook::FromL3Uplink => TcAttachType::Ingress,
        }
    }

    fn pin_name(self, ifname: &str) -> String {
        match self {
            Hook::FromContainer => ifname.to_owned(),
            Hook::ToBridge => format!("{BRIDGE_PIN_PREFIX}{ifname}"),
            Hook::FromUplink | Hook::FromL3Uplink => format!("{UPLINK_PIN_PREFIX}{ifname}"),
        }
    }
}

/// What sits on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attached {
    Tcx,
    Clsact,
}

/// The pin names whose programs this datapath attached or took over.
#[derive(Debug, Default)]
pub(super) struct Owned(HashSet<String>);

impl Datapath {
    fn program(&self, name: &'static str) -> &SchedClassifier {
        self.ebpf.program(name).and_then(|p| p.try_into().ok()).expect("checked at load")
    }

    fn program_mut(&mut self, name: &'static str) -> &mut SchedClassifier {
        self.ebpf.program_mut(name).and_then(|p| p.try_into().ok()).expect("checked at load")
    }

    /// The program for the host side of endpoint veths.
    pub fn from_container(&self) -> &SchedClassifier {
        self.program(PROG_FROM_CONTAINER)
    }

    /// The program for Ethernet uplinks.
    pub fn from_uplink(&self) -> &SchedClassifier {
        self.program(PROG_FROM_UPLINK)
    }

    /// The program for the egress of bridges.
    pub fn to_container(&self) -> &SchedClassifier {
        self.program(PROG_TO_CONTAINER)
    }

    /// The program for the `lo` of sandboxes with the embedded resolver.
    pub fn dns_redirect(&self) -> &SchedClassifier {
        self.program(PROG_DNS_REDIRECT)
    }

    /// Attaches `netd_dns_redirect` to the ingress of `lo` in the calling thread's namespace (a
    /// sandbox's). With TCX, a link this datapath holds (returned): it goes when detached, when
    /// the daemon exits (a restarted daemon attaches it again, with the resolver it redirects
    /// to) or with the namespace; never pinned. As a `clsact` filter (no link to hold), it
    /// stays with the device and replaces the one a former daemon left.
    pub fn attach_dns_redirect(&mut self) -> Result<Option<aya::programs::tc::SchedClassifierLinkId>> {
        let clsact = self.clsact;
        let program = self.program_mut(PROG_DNS_REDIRECT);
        let attach_err =
            |e| DatapathError::Attach { name: PROG_DNS_REDIRECT, ifname: "lo".into(), source: Box::new(e) };
        if clsact {
            clsact::attach(program, "lo", TcAttachType::Ingress, true).map_err(attach_err)?;
            return Ok(None);
        }
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        program.attach_with_options("lo", TcAttachType::Ingress, options).map(Some).map_err(attach_err)
    }

    /// Detaches the link [`Datapath::attach_dns_redirect`] made. A link whose namespace went
    /// already is released all the same.
    pub fn detach_dns_redirect(&mut self, id: aya::programs::tc::SchedClassifierLinkId) {
        let _ = self.program_mut(PROG_DNS_REDIRECT).detach(id);
    }

    /// Whether new attachments are `clsact` filters (see [`super::TcAttach`]).
    #[must_use]
    pub fn uses_clsact(&self) -> bool {
        self.clsact
    }

    /// Makes `netd_from_container` on the ingress of `ifname` (looked up in the calling
    /// thread's namespace) this datapath's: attached, or taken over from an earlier daemon.
    /// With a pin directory the attachment outlives this process; otherwise it lives as long
    /// as `self`.
    pub fn attach_from_container(&mut self, ifname: &str) -> Result<()> {
        self.ensure(Hook::FromContainer, ifname)
    }

    /// Makes `netd_to_container` on the egress of bridge `ifname` this datapath's (see
    /// [`Datapath::attach_from_container`]).
    pub fn attach_to_bridge(&mut self, ifname: &str) -> Result<()> {
        self.ensure(Hook::ToBridge, ifname)
    }

    /// Makes `netd_from_uplink` on the ingress of uplink `ifname` this datapath's (see
    /// [`Datapath::attach_from_container`]); `netd_from_l3_uplink` when the uplink has no
    /// link-layer header (`l3`). Both go by the same pin name: a device made again as the
    /// other kind under the same name has neither program, and gets the right one.
    pub fn attach_from_uplink(&mut self, ifname: &str, l3: bool) -> Result<()> {
        self.ensure(if l3 { Hook::FromL3Uplink } else { Hook::FromUplink }, ifname)
    }

    /// Removes the program from endpoint veth `ifname` (its pinned link or filter and
    /// marker). Already gone is success.
    pub fn detach_from_container(&mut self, ifname: &str) -> Result<()> {
        self.detach(Hook::FromContainer, ifname)
    }

    /// Removes the program from bridge `ifname` (see [`Datapath::detach_from_container`]).
    pub fn detach_from_bridge(&mut self, ifname: &str) -> Result<()> {
        self.detach(Hook::ToBridge, ifname)
    }

    /// Removes the program from uplink `ifname` (see [`Datapath::detach_from_container`]).
    pub fn detach_from_uplink(&mut self, ifname: &str) -> Result<()> {
        self.detach(Hook::FromUplink, ifname)
    }

    /// Names of the endpoint veths with pinned programs (to find those of vanished endpoints).
    pub fn pinned_links(&self) -> Vec<String> {
        self.pinned_names()
            .into_iter()
            .filter(|n| !n.starts_with(UPLINK_PIN_PREFIX) && !n.starts_with(BRIDGE_PIN_PREFIX))
            .collect()
    }

    /// Names of the bridges with pinned programs.
    pub fn pinned_bridges(&self) -> Vec<String> {
        self.pinned_names().into_iter().filter_map(|n| n.strip_prefix(BRIDGE_PIN_PREFIX).map(str::to_owned)).collect()
    }

    /// Names of the uplinks with pinned programs.
    pub fn pinned_uplinks(&self) -> Vec<String> {
        self.pinned_names().into_iter().filter_map(|n| n.strip_prefix(UPLINK_PIN_PREFIX).map(str::to_owned)).collect()
    }

    fn ensure(&mut self, hook: Hook, ifname: &str) -> Result<()> {
        let pin_name = hook.pin_name(ifname);
        let found = self.attached(hook, ifname);
        // Without a pin directory, nothing can have been left by another daemon.
        if self.owned.0.contains(&pin_name) && (found.is_some() || self.links_dir.is_none()) {
            return Ok(());
        }
        // An earlier daemon's program: swapped for this one's. Should that fail, a fresh
        // attachment below replaces it (with a moment where neither runs).
        let taken_over = found.is_some_and(|a| self.take_over(hook, ifname, a).is_ok());
        if !taken_over {
            // What is left (a pin whose device was made anew, a marker) goes first.
            self.detach(hook, ifname)?;
            self.attach_new(hook, ifname)?;
        }
        self.owned.0.insert(pin_name);
        Ok(())
    }

    /// What of ours sits on `ifname` for `hook`: a `clsact` filter whose marker names the
    /// device's current ifindex, or a pinned TCX link with our program on the device (a pin
    /// outlives its device: one made again under the same name has a pin and no program).
    fn attached(&self, hook: Hook, ifname: &str) -> Option<Attached> {
        let dir = self.links_dir.as_deref()?;
        let pin_name = hook.pin_name(ifname);
        if clsact::ifindex(ifname).is_some_and(|i| clsact::marker(dir, &pin_name, i).exists()) {
            return Some(Attached::Clsact);
        }
        (dir.join(&pin_name).exists() && tcx_program_present(ifname, hook)).then_some(Attached::Tcx)
    }

    /// Swaps this datapath's program into an earlier daemon's attachment, atomically.
    fn take_over(&mut self, hook: Hook, ifname: &str, attached: Attached) -> Result<()> {
        let dir = self.links_dir.clone().expect("attached() needs a pin directory");
        let pin_name = hook.pin_name(ifname);
        let name = hook.program();
        let program = self.program_mut(name);
        let attach_err = |e| DatapathError::Attach { name, ifname: ifname.to_owned(), source: Box::new(e) };
        match attached {
            Attached::Tcx => {
                let pin = dir.join(&pin_name);
                let link = PinnedLink::from_pin(&pin).map_err(|e| pin_err(ifname, Box::new(e)))?;
                let link =
                    SchedClassifierLink::try_from(FdLink::from(link)).map_err(|e| pin_err(ifname, Box::new(e)))?;
                let id = program.attach_to_link(link).map_err(attach_err)?;
                // The pin keeps the link; this process's descriptor goes.
                drop(program.take_link(id).map_err(attach_err)?);
            }
            Attached::Clsact => {
                clsact::replace(program, ifname, hook.tc()).map_err(attach_err)?;
                mark_clsact(program, &dir, &pin_name, ifname)?;
            }
        }
        Ok(())
    }

    /// Attaches `hook`'s program to `ifname` in this datapath's mode.
    fn attach_new(&mut self, hook: Hook, ifname: &str) -> Result<()> {
        let (clsact, dir) = (self.clsact, self.links_dir.clone());
        let name = hook.program();
        let program = self.program_mut(name);
        let attach_err = |e| DatapathError::Attach { name, ifname: ifname.to_owned(), source: Box::new(e) };
        let pin_name = hook.pin_name(ifname);
        if clsact {
            clsact::attach(program, ifname, hook.tc(), dir.is_some()).map_err(attach_err)?;
            if let Some(dir) = dir {
                mark_clsact(program, &dir, &pin_name, ifname)?;
            }
            return Ok(());
        }
        let id = program
            .attach_with_options(ifname, hook.tc(), TcAttachOptions::TcxOrder(LinkOrder::default()))
            .map_err(attach_err)?;
        if let Some(dir) = dir {
            let pin = dir.join(&pin_name);
            let link = program.take_link(id).map_err(attach_err)?;
            let link: FdLink =
                link.try_into().map_err(|e: aya::programs::links::LinkError| pin_err(ifname, Box::new(e)))?;
            let _ = std::fs::remove_file(&pin);
            link.pin(&pin).map_err(|e| pin_err(ifname, Box::new(e)))?;
        }
        Ok(())
    }

    /// Removes `hook`'s program from `ifname`: unpins its TCX link (which detaches it), detaches
    /// its `clsact` filter and removes the markers. Already gone is success.
    fn detach(&mut self, hook: Hook, ifname: &str) -> Result<()> {
        let pin_name = hook.pin_name(ifname);
        self.owned.0.remove(&pin_name);
        let Some(dir) = self.links_dir.clone() else {
            return Ok(());
        };
        let markers = clsact::markers(&dir, &pin_name);
        if !markers.is_empty() {
            clsact::detach(ifname, hook.tc()).map_err(|e| DatapathError::Attach {
                name: hook.program(),
                ifname: ifname.to_owned(),
                source: Box::new(e),
            })?;
        }
        for path in markers.iter().chain([&dir.join(&pin_name)]) {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DatapathError::Io { what: "unpinning", path: path.clone(), source: e })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Pin names of the links and `clsact` markers in the links directory.
    fn pinned_names(&self) -> Vec<String> {
        let Some(dir) = &self.links_dir else {
            return Vec::new();
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|r| r.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        for n in &mut names {
            if let Some(pin_name) = clsact::pin_name_of_marker(n) {
                *n = pin_name.to_owned();
            }
        }
        names.sort();
        names.dedup();
        names
    }
}

fn pin_err(ifname: &str, source: Box<dyn std::error::Error + Send + Sync>) -> DatapathError {
    DatapathError::Pin { ifname: ifname.to_owned(), source }
}

/// Marks `program`'s filter on `ifname` (see `clsact`): the program pinned under the device's
/// current ifindex, replacing older markers.
fn mark_clsact(program: &mut SchedClassifier, dir: &Path, pin_name: &str, ifname: &str) -> Result<()> {
    for old in clsact::markers(dir, pin_name) {
        let _ = std::fs::remove_file(old);
    }
    let ifindex = clsact::ifindex(ifname).ok_or_else(|| pin_err(ifname, format!("{ifname} is gone").into()))?;
    let marker: PathBuf = clsact::marker(dir, pin_name, ifindex);
    program.pin(marker).map_err(|e| pin_err(ifname, Box::new(e)))
}

/// Whether `hook`'s program sits on `ifname`'s TCX hook (the kernel keeps 15 characters of a
/// name). When the kernel cannot say (no TCX), assume it is there.
fn tcx_program_present(ifname: &str, hook: Hook) -> bool {
    let prefix = &hook.program()[..15];
    SchedClassifier::query_tcx(ifname, hook.tc())
        .map_or(true, |(_, programs)| programs.iter().any(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix))))
}
