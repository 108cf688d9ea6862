//! Signals to processes netd recorded (by pid and start time, never by name), the daemon's
//! own limits, and pseudo-terminals for the commands `docker exec -t` runs.
#![expect(unsafe_code, reason = "kill(2), setrlimit(2) and the terminal calls have no safe std wrappers")]

use crate::model::ProcessRef;

/// Sends SIGKILL to `p` if it is still that very process.
pub fn kill(p: ProcessRef) {
    signal(p, libc::SIGKILL);
}

/// Sends signal `sig` to `p` if it is still that very process.
pub fn signal(p: ProcessRef, sig: i32) {
    if p.is_running() {
        let Ok(pid) = libc::pid_t::try_from(p.pid) else {
            return;
        };
        // SAFETY: kill(2) with a positive pid has no memory-safety effects (a bad signal
        // number is an error it returns).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A signal as Docker's `kill --signal` takes it: a number, or a name with or without `SIG`
/// (any case).
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        _ => return None,
    })
}

/// Raises this process's soft limit of open files to its hard limit, as Go's runtime does
/// for dockerd: each sandbox's resolver holds two sockets, each published port one, and a
/// default soft limit of 1024 would refuse sandboxes long before the host runs out.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit on this process with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}

/// Ignores the signals `docker stop` and `docker kill` send to a sandbox's processes (all but
/// SIGKILL and SIGSTOP, which cannot be): for `netd shim`, which must outlive its
/// command to report how it ended. Ignored signals stay ignored across `exec`, so call this
/// only after starting children that should not inherit it.
pub fn ignore_stop_signals() {
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGWINCH,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// What `netd shim` prints on its standard output, one line, for the daemon that started it
/// (`daemon/start.rs`).
pub enum Started {
    /// The command's pid and the shim's.
    Pids(u32, u32),
    /// The command was not found (`netd run -d` exits 127 as Docker's).
    NotFound,
    /// It could not be started otherwise.
    Failed(String),
}

impl Started {
    pub fn line(&self) -> String {
        match self {
            Started::Pids(command, shim) => format!("pids {command} {shim}"),
            Started::NotFound => "not-found".into(),
            Started::Failed(why) => format!("failed {}", why.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end();
        if line == "not-found" {
            return Some(Started::NotFound);
        }
        if let Some(why) = line.strip_prefix("failed ") {
            return Some(Started::Failed(why.to_owned()));
        }
        let mut pids = line.strip_prefix("pids ")?.split(' ').map(str::parse::<u32>);
        Some(Started::Pids(pids.next()?.ok()?, pids.next()?.ok()?))
    }
}

/// Waits for `child` while `output` (copying what it writes) runs; once the command has ended,
/// what it wrote last gets 200 ms to arrive: a process it left behind may hold its output open,
/// and its writes are not waited for.
pub async fn wait_while_copying(
    child: &mut tokio::process::Child,
    output: impl std::future::Future<Output = ()>,
) -> std::io::Result<std::process::ExitStatus> {
    tokio::pin!(output);
    let mut copied = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = &mut output, if !copied => copied = true,
        }
    };
    if !copied {
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), &mut output).await;
    }
    status
}

/// The exit code a shell would give `status`: its code, or 128 + the signal that ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A new pseudo-terminal of `rows` × `cols` (zero: the kernel's default): (master, slave).
pub fn open_pty(rows: u16, cols: u16) -> std::io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd as _;
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two fds into the ints given; no name buffer, a valid winsize.
    let r = unsafe {
        libc::openpty(&raw mut master, &raw mut slave, std::ptr::null_mut(), std::ptr::null(), &raw const size)
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just opened for us and are owned by nothing else.
    Ok(unsafe { (std::os::fd::OwnedFd::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) })
}

/// Sets the size of the terminal whose master is `master` (its foreground process group gets
/// `SIGWINCH`).
pub fn set_pty_size(master: &impl std::os::fd::AsRawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer given.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd`'s child drop to user `uid` and group `gid` (its only group) as the last thing
/// before it runs the program: after the namespaces and mounts that need root (see
/// `netns::with_view`), which `CommandExt::uid` would come before.
pub fn as_user(cmd: &mut std::process::Command, uid: u32, gid: u32) {
    // SAFETY: setgroups, setgid and setuid are async-signal-safe, and read only the array on
    // the stack.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let groups = [gid];
            if libc::setgroups(1, groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `cmd`'s child the leader of a session of its own whose controlling terminal is its
/// standard input (a pty's slave): a shell then has job control, and Ctrl-C reaches it.
pub fn with_controlling_terminal(cmd: &mut std::process::Command) {
    // SAFETY: setsid and ioctl are async-signal-safe; nothing is allocated after the fork.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The user a command runs as (`docker exec -u`, `netd run -u`): `""` (root, unchanged),
/// `uid[:gid]`, or names from `etc/passwd` and `etc/group` under `etc` (the host's `/etc`:
/// a sandbox has the host's files), as Docker reads the container's. The error is Docker's
/// message.
pub fn resolve_user(user: &str, etc: &std::path::Path) -> Result<Option<(u32, u32)>, String> {
    if user.is_empty() {
        return Ok(None);
    }
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[0] == name);
    let (uid, primary) = match (name.parse::<u32>(), &entry) {
        (Ok(uid), _) => (uid, entry_gid(&passwd, uid).unwrap_or(uid)),
        (Err(_), Some(f)) => (parse_id(f[2], user)?, parse_id(f[3], user)?),
        (Err(_), None) => {
            return Err(format!("unable to find user {name}: no matching entries in passwd file"));
        }
    };
    let gid = match group.map(|g| (g, g.parse::<u32>())) {
        None => primary,
        Some((_, Ok(gid))) => gid,
        Some((g, Err(_))) => {
            let groups = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
            let found = groups.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[0] == g);
            let Some(f) = found else {
                return Err(format!("unable to find group {g}: no matching entries in group file"));
            };
            parse_id(f[2], user)?
        }
    };
    Ok(Some((uid, gid)))
}

/// The primary group of `uid` in `passwd`, when it has an entry.
fn entry_gid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[2].parse() == Ok(uid))?[3]
        .parse()
        .ok()
}

fn parse_id(s: &str, user: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("unable to find user {user}: bad entry {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_as_dockers_kill_takes_them() {
        for (s, sig) in [("9", 9), ("SIGTERM", libc::SIGTERM), ("term", libc::SIGTERM), ("Hup", libc::SIGHUP)] {
            assert_eq!(parse_signal(s), Some(sig), "{s}");
        }
        for bad in ["", "0", "65", "SIGFOO", "-1"] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }

    #[test]
    fn users_are_numbers_or_names_from_the_files() {
        let dir = std::env::temp_dir().join(format!("netd-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("passwd"), "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
            .expect("passwd");
        std::fs::write(dir.join("group"), "root:x:0:\nstaff:x:50:\n").expect("group");
        assert_eq!(resolve_user("", &dir).ok(), Some(None));
        assert_eq!(resolve_user("nobody", &dir).ok(), Some(Some((65534, 65534))));
        assert_eq!(resolve_user("nobody:staff", &dir).ok(), Some(Some((65534, 50))));
        assert_eq!(resolve_user("1234", &dir).ok(), Some(Some((1234, 1234))), "a uid without an entry");
        assert_eq!(resolve_user("65534", &dir).ok(), Some(Some((65534, 65534))));
        assert_eq!(resolve_user("0:7", &dir).ok(), Some(Some((0, 7))));
        let e = resolve_user("ghost", &dir).expect_err("unknown");
        assert_eq!(e, "unable to find user ghost: no matching entries in passwd file");
        let e = resolve_user("root:nogroup", &dir).expect_err("unknown group");
        assert_eq!(e, "unable to find group nogroup: no matching entries in group file");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
