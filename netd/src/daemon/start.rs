//! Detached commands (`netd run -d`, `docker start`, `docker restart`): the daemon starts a
//! sandbox's command under `netd shim` (this very binary), with the environment and directory
//! `netd run` had, inside the sandbox's namespace and seeing its files and host name. The shim
//! is the daemon's child: the sweeper reaps it ([`Daemon::reap_started`]).

use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{Daemon, Error, Result};
use crate::{
    model::{ProcessRef, Sandbox},
    netns,
    process::Started,
};

/// What a command runs with when its sandbox has no environment of its own (older releases):
/// Docker's default `PATH`.
pub(super) const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Daemon {
    /// Starts sandbox `key`'s command (`netd run -d`, and again `docker start`). Returns
    /// whether it did: not when it runs already.
    pub async fn start_sandbox(&self, key: &str) -> Result<bool> {
        let (s, netns) = {
            let state = self.state.lock().await;
            let s = state.find_sandbox(key).map_err(|e| super::sandboxes::sandbox_lookup_error(key, e))?;
            (s.clone(), self.netns_path(s))
        };
        if s.processes.iter().any(ProcessRef::is_running) {
            return Ok(false);
        }
        if s.command.is_empty() {
            return Err(Error::Conflict(format!("container {} has no command to start", s.id)));
        }
        let exe = std::env::current_exe().map_err(Error::io("finding the netd binary"))?;
        let host = self.cfg.host.clone();
        let id = s.id.clone();
        let (mut shim, pids) = tokio::task::spawn_blocking(move || spawn_shim(&s, &netns, &exe, &host))
            .await
            .map_err(|e| Error::Io { what: "starting the command".into(), source: std::io::Error::other(e) })??;
        // The command first (`docker inspect`'s `Pid`), then its shim; then the shim goes on.
        for pid in pids {
            if let Err(e) = self.add_process(&id, pid).await {
                for p in pids.iter().filter_map(|p| ProcessRef::of(*p)) {
                    crate::process::kill(p);
                }
                let _ = shim.wait();
                return Err(e);
            }
        }
        drop(shim.stdin.take());
        self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(shim);
        Ok(true)
    }

    /// `docker restart`: stops sandbox `key` (SIGTERM, SIGKILL after `grace`) if it runs, and
    /// starts its command again.
    pub async fn restart_sandbox(&self, key: &str, grace: Duration) -> Result<()> {
        self.stop_sandbox(key, grace).await?;
        self.start_sandbox(key).await?;
        let state = self.state.lock().await;
        if let Ok(s) = state.find_sandbox(key) {
            self.container_event("restart", s, None);
        }
        Ok(())
    }

    /// Reaps the shims the daemon started that have exited (called by the sweeper).
    pub(super) fn reap_started(&self) {
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        started.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }
}

/// What sandbox `s`'s commands see of it besides its namespace: its files and host name.
pub(super) fn view_of(s: &Sandbox) -> netns::SandboxView {
    let mut view = netns::SandboxView::default();
    for (file, at) in [(&s.resolv_conf, "/etc/resolv.conf"), (&s.hosts, "/etc/hosts")] {
        if let Some(file) = file {
            view.files.push((file.clone(), at));
        }
    }
    view.hostname = Some(s.hostname.clone()).filter(|h| !h.is_empty());
    view
}

/// Starts `netd shim` for sandbox `s` (namespace `netns`) and reads the pids it prints.
fn spawn_shim(s: &Sandbox, netns: &Path, exe: &Path, host: &str) -> Result<(Child, [u32; 2])> {
    let view = view_of(s);
    let mut cmd = Command::new(exe);
    cmd.args(["-H", host, "shim", "--sandbox", &s.id]);
    if let Some(log) = &s.log {
        cmd.arg("--log").arg(log);
    }
    // Looked up now, as Docker's runtime does at each start.
    if let Some((uid, gid)) =
        crate::process::resolve_user(&s.user, Path::new("/etc")).map_err(Error::InvalidParameter)?
    {
        cmd.arg("--user").arg(format!("{uid}:{gid}"));
    }
    cmd.arg("--").args(&s.command);
    cmd.env_clear();
    if s.env.is_empty() {
        cmd.env("PATH", &DEFAULT_PATH["PATH=".len()..]);
    }
    for kv in &s.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let dir = s.working_dir.clone().filter(|d| d.is_dir()).unwrap_or_else(|| PathBuf::from("/"));
    cmd.current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = netns::run_in(netns, || {
        netns::with_view(&mut cmd, &view)?;
        cmd.spawn()
    })
    .map_err(Error::io("starting netd shim in the sandbox"))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    match Started::parse(&line) {
        Some(Started::Pids(command, shim)) => Ok((child, [command, shim])),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let why = match other {
                Some(Started::NotFound) => format!("exec: \"{}\": executable file not found in $PATH", s.command[0]),
                Some(Started::Failed(why)) => format!("exec: \"{}\": {why}", s.command[0]),
                _ => "netd shim did not start the command".into(),
            };
            Err(Error::Conflict(why))
        }
    }
}
