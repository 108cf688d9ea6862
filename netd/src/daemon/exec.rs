//! `docker exec`: more commands in a running sandbox, beside its own (Docker's exec
//! instances). An exec is created (`POST /containers/{id}/exec`), started once (`POST
//! /exec/{id}/start`), and its exit code kept for `GET /exec/{id}/json`, which is how the CLI
//! learns it. It runs as the sandbox's command does: in its network namespace, seeing its
//! files and host name, with its environment (and the exec's own on top) and directory. The
//! API attaches the client to it (see `api::exec`); this module starts and records.

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

use serde::Deserialize;

use super::{sandboxes::no_such_container, Daemon, Error, Result};
use crate::{
    model::{ids, ProcessRef, Sandbox},
    netns,
};

/// How long an exec that ended, or was never started, is kept (Docker keeps them until the
/// container goes; a sandbox may run for months).
const KEEP: Duration = Duration::from_mins(5);

/// What `POST /containers/{id}/exec` asks for (Docker's `ExecConfig`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
#[expect(clippy::struct_excessive_bools, reason = "Docker's ExecConfig, field for field")]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub detach_keys: String,
    /// Height and width of the client's terminal (`-t`).
    pub console_size: Option<[u16; 2]>,
}

/// Where an exec is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Created,
    Running { pid: u32 },
    Ended { pid: u32, code: i32 },
}

/// One exec instance.
#[derive(Debug)]
pub struct Exec {
    id: String,
    sandbox_id: String,
    config: ExecConfig,
    /// The user it runs as (`User`, resolved when it is created).
    ids: Option<(u32, u32)>,
    state: State,
    /// Its terminal's master (`Tty`), for `POST /exec/{id}/resize`.
    pty: Option<Arc<OwnedFd>>,
    /// When it was created, or ended: one not started or ended is forgotten [`KEEP`] later.
    since: Instant,
}

/// A started exec: what the API attaches to the client.
pub enum Started {
    /// Standard streams as asked (pipes, or nothing).
    Pipes(tokio::process::Child),
    /// A terminal: the command's three streams are its slave; read and write the master.
    Pty { child: tokio::process::Child, master: Arc<OwnedFd> },
    /// The command could not be started: what to tell the client (on a terminal's raw stream
    /// with `tty`); the exec has ended with 126 or 127, as Docker's.
    Failed { why: String, tty: bool },
}

impl Daemon {
    /// Creates an exec of `config` in sandbox `key`, which must be running. Returns its id.
    pub async fn create_exec(&self, key: &str, config: ExecConfig) -> Result<String> {
        let cmd = config.cmd.clone().unwrap_or_default();
        if cmd.is_empty() {
            return Err(Error::InvalidParameter("No exec command specified".into()));
        }
        let s = {
            let state = self.state.lock().await;
            state.find_sandbox(key).map_err(|_| no_such_container(key))?.clone()
        };
        if !s.processes.iter().any(ProcessRef::is_running) {
            return Err(Error::Conflict(format!("Container {} is not running", s.id)));
        }
        let ids = crate::process::resolve_user(&config.user, Path::new("/etc")).map_err(Error::InvalidParameter)?;
        let id = ids::new_id();
        let exec = Exec {
            id: id.clone(),
            sandbox_id: s.id.clone(),
            config,
            ids,
            state: State::Created,
            pty: None,
            since: Instant::now(),
        };
        {
            let mut execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
            execs.retain(|_, e| matches!(e.state, State::Running { .. }) || e.since.elapsed() < KEEP);
            execs.insert(id.clone(), exec);
        }
        self.container_event_with(&format!("exec_create: {}", cmd.join(" ")), &s, &[("execID", id.clone())]);
        Ok(id)
    }

    /// Starts exec `id` (once). `detach`: its streams go nowhere (`docker exec -d`).
    pub async fn start_exec(&self, id: &str, detach: bool) -> Result<Started> {
        let (config, ids, sandbox_id) = {
            let mut execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
            let e = execs.get_mut(id).ok_or_else(|| no_such_exec(id))?;
            match e.state {
                // Claimed at once: a second start finds it running.
                State::Created => e.state = State::Running { pid: 0 },
                State::Running { .. } => {
                    return Err(Error::Conflict(format!("Error: Exec command {id} is already running")));
                }
                State::Ended { .. } => {
                    return Err(Error::Conflict(format!("Error: Exec command {id} has already run")))
                }
            }
            (e.config.clone(), e.ids, e.sandbox_id.clone())
        };
        let sandbox = {
            let state = self.state.lock().await;
            match state.sandboxes.get(&sandbox_id) {
                Some(s) if s.processes.iter().any(ProcessRef::is_running) => Ok((s.clone(), self.netns_path(s))),
                Some(s) => Err(Error::Conflict(format!("Container {} is not running", s.id))),
                None => Err(no_such_container(&sandbox_id)),
            }
        };
        let (s, netns) = match sandbox {
            Ok(found) => found,
            Err(e) => {
                // Not started: it may be, once the sandbox runs again.
                self.set_exec_state(id, State::Created);
                return Err(e);
            }
        };
        let cmd = config.cmd.clone().unwrap_or_default();
        let spawned = tokio::task::spawn_blocking({
            let (config, s) = (config.clone(), s.clone());
            move || spawn(&s, &netns, &config, ids, detach)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let (child, pty) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let (code, why) = if e.kind() == std::io::ErrorKind::NotFound {
                    (127, format!("exec: \"{}\": executable file not found in $PATH", cmd[0]))
                } else {
                    (126, format!("exec: \"{}\": {e}", cmd[0]))
                };
                self.exec_ended(id, code).await;
                if detach {
                    return Err(Error::InvalidParameter(why));
                }
                return Ok(Started::Failed { why, tty: config.tty });
            }
        };
        let pid = child.id().unwrap_or(0);
        {
            let mut execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = execs.get_mut(id) {
                e.state = State::Running { pid };
                e.pty.clone_from(&pty);
            }
        }
        self.container_event_with(&format!("exec_start: {}", cmd.join(" ")), &s, &[("execID", id.to_owned())]);
        Ok(match pty {
            Some(master) => Started::Pty { child, master },
            None => Started::Pipes(child),
        })
    }

    /// Records that exec `id` ended with `code` (Docker's `exec_die`).
    pub async fn exec_ended(&self, id: &str, code: i32) {
        let sandbox_id = {
            let mut execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(e) = execs.get_mut(id) else {
                return;
            };
            let pid = match e.state {
                State::Running { pid } => pid,
                _ => 0,
            };
            e.state = State::Ended { pid, code };
            e.pty = None;
            e.since = Instant::now();
            e.sandbox_id.clone()
        };
        let state = self.state.lock().await;
        if let Some(s) = state.sandboxes.get(&sandbox_id) {
            self.exec_die(s, id, code);
        }
    }

    fn exec_die(&self, s: &Sandbox, id: &str, code: i32) {
        self.container_event_with("exec_die", s, &[("execID", id.to_owned()), ("exitCode", code.to_string())]);
    }

    fn set_exec_state(&self, id: &str, state: State) {
        if let Some(e) = self.execs.lock().unwrap_or_else(PoisonError::into_inner).get_mut(id) {
            e.state = state;
        }
    }

    /// `GET /exec/{id}/json`, as Docker's.
    pub fn inspect_exec(&self, id: &str) -> Result<serde_json::Value> {
        let execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
        let e = execs.get(id).ok_or_else(|| no_such_exec(id))?;
        let cmd = e.config.cmd.clone().unwrap_or_default();
        let (running, pid, code) = match e.state {
            State::Created => (false, 0, None),
            State::Running { pid } => (true, pid, None),
            State::Ended { pid, code } => (false, pid, Some(code)),
        };
        Ok(serde_json::json!({
            "ID": e.id,
            "Running": running,
            "ExitCode": code,
            "ProcessConfig": {
                "tty": e.config.tty,
                "entrypoint": cmd.first(),
                "arguments": cmd.get(1..).unwrap_or_default(),
                "privileged": e.config.privileged,
                "user": e.config.user,
            },
            "OpenStdin": e.config.attach_stdin,
            "OpenStderr": e.config.attach_stderr,
            "OpenStdout": e.config.attach_stdout,
            "CanRemove": false,
            "ContainerID": e.sandbox_id,
            "DetachKeys": e.config.detach_keys,
            "Pid": pid,
        }))
    }

    /// `POST /exec/{id}/resize`: the terminal's new size (nothing to do without one).
    pub fn resize_exec(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
        let e = execs.get(id).ok_or_else(|| no_such_exec(id))?;
        if let Some(master) = &e.pty {
            crate::process::set_pty_size(master.as_ref(), rows, cols)
                .map_err(Error::io("resizing the exec's terminal"))?;
        }
        Ok(())
    }

    /// The running execs of sandbox `sandbox_id` (`docker inspect`'s `ExecIDs`; `None` when
    /// there are none, as Docker's `null`).
    pub fn running_execs(&self, sandbox_id: &str) -> Option<Vec<String>> {
        let execs = self.execs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<String> = execs
            .values()
            .filter(|e| e.sandbox_id == sandbox_id && matches!(e.state, State::Running { .. }))
            .map(|e| e.id.clone())
            .collect();
        ids.sort_unstable();
        (!ids.is_empty()).then_some(ids)
    }

    /// Forgets the execs of a sandbox that went.
    pub(super) fn forget_execs(&self, sandbox_id: &str) {
        self.execs.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, e| e.sandbox_id != sandbox_id);
    }
}

fn no_such_exec(id: &str) -> Error {
    Error::NotFound(format!("No such exec instance: {id}"))
}

/// Starts exec `config` in sandbox `s` (namespace `netns`) as `ids`. Returns the child and,
/// with `Tty`, its terminal's master.
fn spawn(
    s: &Sandbox,
    netns: &Path,
    config: &ExecConfig,
    ids: Option<(u32, u32)>,
    detach: bool,
) -> std::io::Result<(tokio::process::Child, Option<Arc<OwnedFd>>)> {
    let cmd_line = config.cmd.clone().unwrap_or_default();
    let view = super::start::view_of(s);
    let dir = if config.working_dir.is_empty() {
        s.working_dir.clone().filter(|d| d.is_dir()).unwrap_or_else(|| PathBuf::from("/"))
    } else {
        let dir = PathBuf::from(&config.working_dir);
        if !dir.is_absolute() || !dir.is_dir() {
            return Err(std::io::Error::other(format!(
                "working directory {}: no such directory here",
                config.working_dir
            )));
        }
        dir
    };
    let mut cmd = std::process::Command::new(&cmd_line[0]);
    cmd.args(&cmd_line[1..]).env_clear().current_dir(dir);
    let mut env: HashMap<String, String> = HashMap::new();
    for kv in s.env.iter().chain(config.env.iter().flatten()) {
        if let Some((k, v)) = kv.split_once('=') {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env.entry("PATH".into()).or_insert_with(|| super::start::DEFAULT_PATH["PATH=".len()..].into());
    if config.tty {
        env.entry("TERM".into()).or_insert_with(|| "xterm".into());
    }
    cmd.envs(env);
    let mut master = None;
    if config.tty && !detach {
        let [rows, cols] = config.console_size.unwrap_or([0, 0]);
        let (m, slave) = crate::process::open_pty(rows, cols)?;
        cmd.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
        crate::process::with_controlling_terminal(&mut cmd);
        master = Some(Arc::new(m));
    } else {
        let pipe = |attached: bool| if attached && !detach { Stdio::piped() } else { Stdio::null() };
        cmd.stdin(pipe(config.attach_stdin)).stdout(pipe(config.attach_stdout)).stderr(pipe(config.attach_stderr));
        // Not in the daemon's process group: a signal to it is not one to the exec.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let handle = tokio::runtime::Handle::current();
    let child = netns::run_in(netns, move || {
        // The child is reaped by the runtime's SIGCHLD handling, entered from this thread.
        let _runtime = handle.enter();
        netns::with_view(&mut cmd, &view)?;
        if let Some((uid, gid)) = ids {
            crate::process::as_user(&mut cmd, uid, gid);
        }
        tokio::process::Command::from(cmd).kill_on_drop(false).spawn()
    })?;
    Ok((child, master))
}
