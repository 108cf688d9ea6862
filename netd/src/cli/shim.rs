//! `netd shim` (hidden): what the daemon leaves in a sandbox with a detached command (`netd
//! run -d`, `docker start`; see `daemon/start.rs`), so that netd learns how the command ended, which only its parent
//! can (dockerd has containerd's shims for this), and keeps its output. It starts the command
//! as its child, prints both pids for its starter to register (and waits until they are),
//! ignores the signals `docker stop` and `docker kill` send (they reach the command itself),
//! copies the command's output to the sandbox's log, waits for the command, and reports its
//! exit code to the daemon before exiting. Being one of the sandbox's processes, it keeps the
//! sandbox running until the report is in, so Docker's `die` comes with the code. SIGKILL
//! ends it with its command; netd, which sent it, knows.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::Mutex,
    time::Duration,
};

use hyper::Method;
use tokio::io::AsyncReadExt as _;

use crate::{
    api::types::{ExitRequest, LogEntry},
    client::Client,
    model::ids,
    process::{exit_code, Started},
};

#[derive(clap::Args)]
pub struct ShimArgs {
    /// The sandbox the command runs in (its id).
    #[arg(long)]
    sandbox: String,
    /// Where its output goes (Docker's `json-file` log); without, nowhere.
    #[arg(long)]
    log: Option<PathBuf>,
    /// The user and group the command runs as (numbers; the shim stays root to report).
    #[arg(long, value_name = "UID:GID", value_parser = parse_ids)]
    user: Option<(u32, u32)>,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn shim(client: &Client, a: ShimArgs) -> ExitCode {
    let log = match a.log.as_deref().map(open_log).transpose() {
        Ok(log) => log,
        Err(e) => {
            println!("{}", Started::Failed(format!("opening its log: {e}")).line());
            return ExitCode::from(1);
        }
    };
    let output = || if log.is_some() { Stdio::piped() } else { Stdio::null() };
    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..]).stdin(Stdio::null()).stdout(output()).stderr(output());
    if let Some((uid, gid)) = a.user {
        crate::process::as_user(&mut cmd, uid, gid);
    }
    let spawned = tokio::process::Command::from(cmd).spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let started = if e.kind() == std::io::ErrorKind::NotFound {
                Started::NotFound
            } else {
                Started::Failed(e.to_string())
            };
            println!("{}", started.line());
            return ExitCode::from(1);
        }
    };
    crate::process::ignore_stop_signals();
    let mut out = std::io::stdout();
    // The daemon reads this line, registers both pids and closes our input; nothing is
    // written after it. Until then the command is not reaped: ended, it stays a zombie, whose
    // pid can still be registered.
    let pid = child.id().unwrap_or(0);
    let _ = writeln!(out, "{}", Started::Pids(pid, std::process::id()).line()).and_then(|()| out.flush());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    // One thread (it shows as one task in `docker stats`): the output is copied as it comes,
    // until both pipes close, and the command reaped.
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let copy = async {
        if let Some(log) = &log {
            tokio::join!(copy_lines(stdout, "stdout", log), copy_lines(stderr, "stderr", log));
        }
    };
    // A process it left holds the pipes open (and goes with the sandbox's end).
    let Ok(status) = crate::process::wait_while_copying(&mut child, copy).await else {
        return ExitCode::from(1);
    };
    let body = ExitRequest { code: exit_code(status) };
    let path = format!("/netd/v1/sandboxes/{}/exit", a.sandbox);
    // A daemon restarting meanwhile gets a few seconds to come back.
    for _ in 0..10 {
        if client.call::<serde_json::Value>(Method::POST, &path, Some(&body)).await.is_ok() {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ExitCode::from(1)
}

fn parse_ids(s: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = s.split_once(':').ok_or_else(|| format!("{s}: not UID:GID"))?;
    Ok((uid.parse().map_err(|e| format!("{uid}: {e}"))?, gid.parse().map_err(|e| format!("{gid}: {e}"))?))
}

/// The log at `path`, appended to (its directory made if need be).
fn open_log(path: &Path) -> std::io::Result<Mutex<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path).map(Mutex::new)
}

/// Docker cuts a line this long (its `json-file` driver's buffer): the rest is the next entry.
const MAX_LINE: usize = 16 * 1024;

/// Copies `from` to `log` line by line as Docker's `json-file` driver writes a container's
/// output: `{"log":"…\n","stream":"stdout","time":"…"}` per line (the last may lack its `\n`).
async fn copy_lines(from: Option<impl tokio::io::AsyncRead + Unpin>, stream: &str, log: &Mutex<std::fs::File>) {
    use tokio::io::AsyncBufReadExt as _;
    let Some(from) = from else { return };
    let mut reader = tokio::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let entry = LogEntry {
                    log: String::from_utf8_lossy(&line).into_owned(),
                    stream: stream.into(),
                    time: ids::now_rfc3339(),
                };
                let mut text = serde_json::to_vec(&entry).expect("a log entry serialises");
                text.push(b'\n');
                let mut f = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = std::io::Write::write_all(&mut *f, &text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::process::Started;

    #[test]
    fn the_shims_line_reads_back() {
        assert!(matches!(Started::parse(&Started::Pids(12, 34).line()), Some(Started::Pids(12, 34))));
        assert!(matches!(Started::parse("not-found\n"), Some(Started::NotFound)));
        assert!(
            matches!(Started::parse(&Started::Failed("no\nway".into()).line()), Some(Started::Failed(w)) if w == "no way")
        );
        assert!(Started::parse("pids 1").is_none());
        assert!(Started::parse("").is_none());
    }
}
