//! A sandbox's processes and what they use, as `docker stats` and `docker top` show a
//! container's. A sandbox has no cgroup: its processes are those in its network namespace
//! (every one there, whoever started it), or, for a sandbox on the host's network, those
//! `netd run` started and their descendants. Read from `/proc` when asked.

use std::{collections::BTreeMap, path::PathBuf, process::Command, sync::Arc};

use super::{sandboxes::sandbox_lookup_error, Daemon, Error, Result};
use crate::{
    model::{ids, ProcessRef, Sandbox, SandboxMode},
    procfs::{self, NetDev, ProcStat, Usage},
};

/// A sandbox at one moment, as one `docker stats` sample shows it.
#[derive(Clone, Debug)]
pub struct UsageSample {
    pub id: String,
    pub name: String,
    /// When it was read (RFC 3339).
    pub read: String,
    pub usage: Usage,
    /// The machine's CPU time (ns since boot) and online CPUs, against which CPU % is weighed.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// The memory its processes may use: the machine's (no limit is set).
    pub memory_limit: u64,
    /// Its interfaces' counters; `None` on the host's network (the host's are not its own).
    pub networks: Option<BTreeMap<String, NetDev>>,
}

/// The host's processes as last listed: `docker stats` streams one per sandbox, each a
/// sample a second, and one list serves them all (a list reads two files per process).
#[derive(Debug, Default)]
pub struct ProcessScan(std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<ProcStat>>)>>);

impl ProcessScan {
    /// How long a list serves.
    const FRESH: std::time::Duration = std::time::Duration::from_millis(500);

    /// Takes `list`, just read, as the last.
    fn set(&self, list: Vec<ProcStat>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), Arc::new(list)));
    }

    /// The processes now, or as listed within [`Self::FRESH`] (new ones may be missing
    /// then; [`Usage::of`] leaves out those that have exited).
    fn recent(&self) -> Arc<Vec<ProcStat>> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*held {
            Some((at, list)) if at.elapsed() < Self::FRESH => list.clone(),
            _ => {
                let list = Arc::new(procfs::all_processes());
                *held = Some((std::time::Instant::now(), list.clone()));
                list
            }
        }
    }
}

/// `ps` output kept to a sandbox's processes, as `docker top` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

impl Daemon {
    /// The sandbox `key` and the namespace it sees.
    async fn sandbox_and_netns(&self, key: &str) -> Result<(Sandbox, PathBuf)> {
        let state = self.state.lock().await;
        let s = state.find_sandbox(key).map_err(|e| sandbox_lookup_error(key, e))?;
        Ok((s.clone(), self.netns_path(s)))
    }

    /// Ends with SIGKILL whatever still runs in sandbox `s`'s own namespace once the processes
    /// netd started are gone, as the end of a container's init ends the rest of its processes
    /// (its PID namespace goes): orphans of theirs, processes someone joined to it. A sandbox on
    /// the host's network has no namespace of its own to go by. Returns those signalled.
    pub(super) fn kill_leftovers(&self, s: &Sandbox) -> Vec<ProcessRef> {
        if s.mode != SandboxMode::Private {
            return Vec::new();
        }
        let Ok(ns) = procfs::namespace_id(&self.netns_path(s)) else {
            return Vec::new();
        };
        let own = std::process::id();
        // A fresh list (not the shared one): a process just started must not be missed, and
        // each is checked again as it is taken, so a pid reused meanwhile is not killed.
        let all = procfs::all_processes();
        let rest: Vec<ProcessRef> = procfs::in_network_namespace(&all, ns)
            .iter()
            .filter(|p| p.pid != own)
            .filter_map(|p| ProcessRef::of(p.pid))
            .filter(|p| {
                procfs::namespace_id(std::path::Path::new(&format!("/proc/{}/ns/net", p.pid))).is_ok_and(|id| id == ns)
            })
            .collect();
        for p in &rest {
            crate::process::kill(*p);
        }
        // The list just read serves `docker stats` too (its samples skip what has exited).
        self.process_scan.set(all);
        rest
    }

    /// What sandbox `key` uses now (`docker stats`).
    pub async fn sandbox_usage(&self, key: &str) -> Result<UsageSample> {
        let (s, netns) = self.sandbox_and_netns(key).await?;
        let scan = self.process_scan.clone();
        tokio::task::spawn_blocking(move || sample(&s, &netns, &scan.recent()))
            .await
            .map_err(|e| Error::Io { what: "reading /proc".into(), source: std::io::Error::other(e) })?
    }

    /// `ps ps_args` (`-ef` when empty) kept to sandbox `key`'s processes (`docker top`).
    pub async fn sandbox_top(&self, key: &str, ps_args: &str) -> Result<Top> {
        check_ps_args(ps_args)?;
        let (s, netns) = self.sandbox_and_netns(key).await?;
        let ps_args = if ps_args.trim().is_empty() { "-ef".to_owned() } else { ps_args.to_owned() };
        tokio::task::spawn_blocking(move || {
            let pids: Vec<u32> = processes(&s, &netns, &procfs::all_processes()).iter().map(|p| p.pid).collect();
            if pids.is_empty() {
                return Err(Error::Conflict(format!("Container {} is not running", s.id)));
            }
            let out = Command::new("ps")
                .args(ps_args.split_ascii_whitespace())
                .output()
                .map_err(Error::io("running ps (procps)"))?;
            if !out.status.success() {
                let why = String::from_utf8_lossy(&out.stderr);
                return Err(Error::Io {
                    what: "ps".into(),
                    source: std::io::Error::other(why.lines().next().unwrap_or("failed").to_owned()),
                });
            }
            parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
        })
        .await
        .map_err(|e| Error::Io { what: "running ps".into(), source: std::io::Error::other(e) })?
    }
}

/// The processes of `s` among `all` (see the module's doc).
fn processes(s: &Sandbox, netns: &std::path::Path, all: &[ProcStat]) -> Vec<ProcStat> {
    match s.mode {
        SandboxMode::Private => match procfs::namespace_id(netns) {
            Ok(ns) => procfs::in_network_namespace(all, ns),
            // Its namespace is gone (being removed): nothing runs in it.
            Err(_) => Vec::new(),
        },
        SandboxMode::Host => {
            let roots: Vec<u32> = s.processes.iter().filter(|p| p.is_running()).map(|p| p.pid).collect();
            procfs::with_descendants(all, &roots)
        }
    }
}

fn sample(s: &Sandbox, netns: &std::path::Path, all: &[ProcStat]) -> Result<UsageSample> {
    let read = ids::now_rfc3339();
    let (system_cpu_ns, online_cpus) =
        procfs::parse_proc_stat(&std::fs::read_to_string("/proc/stat").map_err(Error::io("reading /proc/stat"))?);
    let memory_limit =
        procfs::parse_mem_total(&std::fs::read_to_string("/proc/meminfo").map_err(Error::io("reading /proc/meminfo"))?);
    let usage = Usage::of(&processes(s, netns, all));
    let networks = match s.mode {
        SandboxMode::Private => Some(procfs::net_dev_in(netns).unwrap_or_default()),
        SandboxMode::Host => None,
    };
    Ok(UsageSample {
        id: s.id.clone(),
        name: s.name.clone(),
        read,
        usage,
        system_cpu_ns,
        online_cpus,
        memory_limit,
        networks,
    })
}

/// Refuses what Docker refuses: a column renamed to `PID` (`-o user=PID`), which would pass for
/// the process id.
fn check_ps_args(args: &str) -> Result<()> {
    for word in args.split_ascii_whitespace().flat_map(|w| w.split(',')) {
        if let Some((key, header)) = word.split_once('=') {
            if header.starts_with("PID") && key != "pid" {
                return Err(Error::InvalidParameter(format!("specifying \"{key}={header}\" is not allowed")));
            }
        }
    }
    Ok(())
}

/// Keeps the rows of `ps` output whose `PID` column is one of `pids` (and the thread rows
/// after such a row, which `ps m` prints with `-` as their PID). The last column takes the rest
/// of a row (a command's arguments).
fn parse_ps(output: &str, pids: &[u32]) -> Result<Top> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_ascii_whitespace().map(str::to_owned).collect();
    let Some(at) = titles.iter().position(|t| t == "PID") else {
        return Err(Error::InvalidParameter("Couldn't find PID field in ps output".into()));
    };
    let mut processes = Vec::new();
    let mut after_ours = false;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(pid) = fields.get(at) else { continue };
        let ours = if *pid == "-" {
            after_ours
        } else {
            let pid: u32 = pid.parse().map_err(|_| Error::InvalidParameter(format!("Unexpected pid '{pid}'")))?;
            after_ours = pids.contains(&pid);
            after_ours
        };
        if ours {
            let last = titles.len() - 1;
            let mut row: Vec<String> = fields.iter().take(last).map(|f| (*f).to_owned()).collect();
            row.push(fields.get(last..).map(|rest| rest.join(" ")).unwrap_or_default());
            processes.push(row);
        }
    }
    Ok(Top { titles, processes })
}

#[cfg(test)]
mod tests {
    use super::{check_ps_args, parse_ps};

    #[test]
    fn ps_rows_are_kept_to_the_sandboxs_pids_with_the_command_whole() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 08:00 ?        00:00:01 /sbin/init splash\n\
                   root        4242       1  0 08:01 ?        00:00:00 sleep 300\n\
                   root        4243    4242  0 08:01 ?        00:00:00 sh -c while :; do :; done\n";
        let top = parse_ps(out, &[4242, 4243]).expect("parses");
        assert_eq!(top.titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[1][7], "sh -c while :; do :; done");
        // Threads (`ps m`) follow their process.
        let threads =
            "PID TTY STAT TIME COMMAND\n  7 ? - 0:00 worker\n  - - Sl 0:00 -\n  9 ? - 0:00 other\n  - - S 0:00 -\n";
        let top = parse_ps(threads, &[7]).expect("parses");
        assert_eq!(top.processes.len(), 2, "{top:?}");
        let e = parse_ps("USER COMMAND\nroot x\n", &[1]).unwrap_err();
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
    }

    #[test]
    fn a_column_may_not_pass_for_the_pid() {
        assert!(check_ps_args("-ef").is_ok());
        assert!(check_ps_args("-o pid=PID,comm").is_ok());
        let e = check_ps_args("-o user=PID").unwrap_err();
        assert_eq!(e.to_string(), "specifying \"user=PID\" is not allowed");
    }
}
