//! `netd run | exec | ps | rm`: sandboxes are containers without images. The daemon creates and
//! connects the namespace; the CLI starts the command in it, so stdio is the CLI's own.

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
};

use hyper::Method;

use crate::{
    api::types::{ExitRequest, ProcessRequest, SandboxCreateRequest, SandboxResource},
    client::Client,
    netns,
};

use super::{fail, table};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the sandbox id.
    #[arg(short, long)]
    detach: bool,
    /// Remove the sandbox when the command exits.
    #[arg(long)]
    rm: bool,
    #[arg(long)]
    name: Option<String>,
    /// Network name or id (`bridge`, `host`, `none`, or a user network).
    #[arg(long, default_value = "bridge")]
    network: String,
    /// Static IPv4 address (networks created with --subnet only).
    #[arg(long)]
    ip: Option<String>,
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Publish a port, as docker -p: [IP:][HOST_PORT:]PORT[/udp] (N-M ranges too)
    #[arg(short, long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Another name for the sandbox on the network's DNS (user-defined networks; repeatable).
    #[arg(long = "network-alias", value_name = "NAME")]
    network_alias: Vec<String>,
    /// Its host name (default: the short id).
    #[arg(long)]
    hostname: Option<String>,
    /// A line of its /etc/hosts: NAME:IP (host-gateway: the default bridge's address; repeatable).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// Its own DNS server (repeatable; over the daemon's).
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// Its own DNS search domain (repeatable).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Its own DNS resolver option (repeatable).
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "OPTION")]
    dns_option: Vec<String>,
    #[command(flatten)]
    with: CommandOpts,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct ExecArgs {
    /// Leave the command running in the background (its output goes nowhere), as `docker exec -d`.
    #[arg(short, long)]
    detach: bool,
    sandbox: String,
    #[command(flatten)]
    with: CommandOpts,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// What a command runs with besides its sandbox, as `docker run`'s and `docker exec`'s `-e`,
/// `--env-file`, `-w` and `-u` say: on top of the environment and directory `netd` has.
#[derive(clap::Args)]
struct CommandOpts {
    /// Set an environment variable: KEY=VALUE, or KEY for the value it has here (repeatable).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    env: Vec<String>,
    /// Read environment variables from a file: KEY=VALUE or KEY lines, # comments (repeatable).
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Its working directory (an absolute path; default: the current one).
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// The user it runs as: a name or UID from /etc/passwd, optionally :GROUP or :GID.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Keep its standard input: netd's (without, it reads nothing, as Docker's).
    #[arg(short, long)]
    interactive: bool,
    /// Run it on netd's terminal, which its standard input must be (with -i it reads it too).
    #[arg(short, long)]
    tty: bool,
}

/// [`CommandOpts`] checked: the variables to set, the directory, the user and group, and
/// whether it reads netd's standard input.
struct Launch {
    env: Vec<(String, String)>,
    dir: Option<PathBuf>,
    ids: Option<(u32, u32)>,
    stdin: bool,
    /// Left running on its own: no output, a process group of its own (a terminal's signals
    /// to netd's group do not reach it).
    detached: bool,
}

impl CommandOpts {
    /// Checks every option for a command run in the foreground or (`detached`) left running,
    /// with Docker's messages: nothing is created when one is wrong.
    fn check(&self, detached: bool) -> Result<Launch, String> {
        if detached && (self.interactive || self.tty) {
            // Its output goes to a log or nowhere, and nothing can attach to it later.
            return Err("-i and -t are for a command in the foreground (netd has no attach)".into());
        }
        let mut env = Vec::new();
        for file in &self.env_file {
            let text = std::fs::read_to_string(file).map_err(|e| format!("open {}: {e}", file.display()))?;
            for line in text.lines().map(str::trim_start).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let (key, value) = line.split_once('=').map_or((line, None), |(k, v)| (k, Some(v)));
                if key.is_empty() {
                    return Err(format!("no variable name on line '{line}'"));
                }
                if key.contains(char::is_whitespace) {
                    return Err(format!("variable '{key}' contains whitespaces"));
                }
                push_var(&mut env, key, value);
            }
        }
        for var in &self.env {
            let (key, value) = var.split_once('=').map_or((var.as_str(), None), |(k, v)| (k, Some(v)));
            if key.is_empty() {
                return Err(format!("invalid environment variable: {var}"));
            }
            push_var(&mut env, key, value);
        }
        let dir = match &self.workdir {
            None => None,
            Some(d) if !d.starts_with('/') => {
                return Err(format!("the working directory '{d}' is invalid, it needs to be an absolute path"));
            }
            Some(d) if !std::path::Path::new(d).is_dir() => {
                return Err(format!("the working directory '{d}' is invalid: no such directory"));
            }
            Some(d) => Some(PathBuf::from(d)),
        };
        let user = self.user.as_deref().unwrap_or_default();
        let ids = crate::process::resolve_user(user, std::path::Path::new("/etc"))?;
        if self.tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err("the input device is not a TTY".into());
        }
        Ok(Launch { env, dir, ids, stdin: self.interactive, detached })
    }
}

/// Sets `key` in `env` (a later setting wins), to `value` or, without one, to the value it has
/// in this process (none: it is left out, as Docker does).
fn push_var(env: &mut Vec<(String, String)>, key: &str, value: Option<&str>) {
    let Some(value) = value.map(str::to_owned).or_else(|| std::env::var(key).ok()) else {
        return;
    };
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value));
}

#[derive(clap::Args)]
pub struct PsArgs {
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(clap::Args)]
pub struct PortArgs {
    sandbox: String,
    /// Only this container port (`80`, `53/udp`).
    private_port: Option<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Kill running processes first.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

/// Spawns `command` in sandbox `s`: inside its namespace (the spawning thread enters it and
/// the child inherits it; the CLI's other threads never change namespace), seeing its
/// `resolv.conf`, `/etc/hosts` and host name.
fn spawn_in(s: &SandboxResource, command: &[String], with: &Launch) -> std::io::Result<std::process::Child> {
    let path = PathBuf::from(&s.netns_path);
    let mut view = netns::SandboxView::default();
    for (file, at) in [(&s.resolv_conf_path, "/etc/resolv.conf"), (&s.hosts_path, "/etc/hosts")] {
        if !file.is_empty() {
            view.files.push((PathBuf::from(file), at));
        }
    }
    view.hostname = Some(s.hostname.clone()).filter(|h| !h.is_empty());
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).envs(with.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &with.dir {
        cmd.current_dir(dir);
    }
    if !with.stdin {
        cmd.stdin(std::process::Stdio::null());
    }
    if with.detached {
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    }
    let ids = with.ids;
    std::thread::spawn(move || {
        netns::enter_this_thread(&path)?;
        netns::with_view(&mut cmd, &view)?;
        if let Some((uid, gid)) = ids {
            crate::process::as_user(&mut cmd, uid, gid);
        }
        cmd.spawn()
    })
    .join()
    .expect("spawning thread panicked")
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn spawn_error(command: &str, e: &std::io::Error) -> ExitCode {
    if e.kind() == std::io::ErrorKind::NotFound {
        eprintln!("netd: exec: \"{command}\": executable file not found in $PATH");
        ExitCode::from(127)
    } else {
        eprintln!("netd: exec: \"{command}\": {e}");
        ExitCode::from(126)
    }
}

/// A detached command the daemon could not start, as the docker CLI words and counts it: 127
/// when it is not found, 126 when it cannot be run.
fn start_error(e: &crate::client::ClientError) -> ExitCode {
    eprintln!("{e}");
    let said = e.to_string();
    if said.contains("executable file not found") {
        ExitCode::from(127)
    } else if said.contains("exec: ") {
        ExitCode::from(126)
    } else {
        ExitCode::from(1)
    }
}

pub async fn run(client: &Client, a: RunArgs) -> ExitCode {
    let with = match a.with.check(a.detach) {
        Ok(w) => w,
        Err(e) => return fail(&format!("netd: {e}")),
    };
    // The command's environment: this one's, with what `-e` and `--env-file` set.
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .filter(|(k, _)| !with.env.iter().any(|(set, _)| set == k))
        .collect();
    env.extend(with.env.iter().cloned());
    let working_dir = with.dir.clone().or_else(|| std::env::current_dir().ok());
    let req = SandboxCreateRequest {
        name: a.name.clone(),
        network: a.network.clone(),
        ipv4_address: a.ip.clone(),
        mac_address: a.mac_address.clone(),
        auto_remove: a.rm && a.detach,
        command: a.command.clone(),
        ports: a.publish.clone(),
        aliases: a.network_alias.clone(),
        hostname: a.hostname.clone(),
        extra_hosts: a.add_host.clone(),
        dns: a.dns.clone(),
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: working_dir.map(|d| d.display().to_string()).unwrap_or_default(),
        user: a.with.user.clone().unwrap_or_default(),
    };
    let s: SandboxResource = match client.call(Method::POST, "/netd/v1/sandboxes", Some(&req)).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let remove = |client: Client, id: String| async move {
        let path = format!("/netd/v1/sandboxes/{id}?force=1");
        let _ = client.call::<serde_json::Value>(Method::DELETE, &path, None::<&()>).await;
    };
    if a.detach {
        // The daemon starts it, under netd's shim, as it does for `docker start`
        // (`daemon/start.rs`), with the environment and directory sent above.
        let path = format!("/containers/{}/start", s.id);
        if let Err(e) = client.call::<serde_json::Value>(Method::POST, &path, None::<&()>).await {
            // Nothing runs: leave nothing behind.
            remove(client.clone(), s.id.clone()).await;
            return start_error(&e);
        }
        println!("{}", s.id);
        return ExitCode::SUCCESS;
    }
    let signals = SignalProxy::install();
    let mut child = match spawn_in(&s, &a.command, &with) {
        Ok(c) => c,
        Err(e) => {
            // Nothing ran: leave nothing behind.
            remove(client.clone(), s.id.clone()).await;
            return spawn_error(&a.command[0], &e);
        }
    };
    // The daemon knows the process (in the foreground too): `ps` shows the sandbox running,
    // and `docker events` its start and its end.
    let path = format!("/netd/v1/sandboxes/{}/processes", s.id);
    if let Err(e) =
        client.call::<serde_json::Value>(Method::POST, &path, Some(&ProcessRequest { pid: child.id() })).await
    {
        let _ = child.kill();
        let _ = child.wait();
        remove(client.clone(), s.id.clone()).await;
        return fail(&e);
    }
    let status = signals.wait(child).await;
    if a.rm {
        remove(client.clone(), s.id.clone()).await;
    } else if let Ok(st) = status {
        // How it ended, for `docker ps`, `inspect` and `wait`.
        let path = format!("/netd/v1/sandboxes/{}/exit", s.id);
        let body = ExitRequest { code: crate::process::exit_code(st) };
        let _ = client.call::<serde_json::Value>(Method::POST, &path, Some(&body)).await;
    }
    match status {
        Ok(st) => exit_code(st),
        Err(e) => fail(&format!("waiting for the command: {e}")),
    }
}

/// Sandbox `key` (id, name or id prefix) as the daemon's API shows it.
async fn get<T: serde::de::DeserializeOwned>(client: &Client, key: &str) -> Result<T, crate::client::ClientError> {
    let path = format!("/netd/v1/sandboxes/{}", urlencoding::encode(key));
    client.call(Method::GET, &path, None::<&()>).await
}

pub async fn exec(client: &Client, a: ExecArgs) -> ExitCode {
    let with = match a.with.check(a.detach) {
        Ok(w) => w,
        Err(e) => return fail(&format!("netd: {e}")),
    };
    let s: SandboxResource = match get(client, &a.sandbox).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let signals = SignalProxy::install();
    let child = match spawn_in(&s, &a.command, &with) {
        Ok(c) => c,
        Err(e) => return spawn_error(&a.command[0], &e),
    };
    if a.detach {
        // Its own from now on: when netd exits, init adopts and reaps it.
        return ExitCode::SUCCESS;
    }
    match signals.wait(child).await {
        Ok(st) => exit_code(st),
        Err(e) => fail(&format!("waiting for the command: {e}")),
    }
}

/// What `netd run` and `netd exec` do with signals while a command runs in the foreground, as
/// `docker run`'s proxy: SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to netd go to the command.
/// SIGINT and SIGQUIT are not passed on (a terminal's Ctrl-C and Ctrl-\\ reach the command
/// already: it is in netd's process group) and no longer end netd, which stays to report how
/// the command ended. Installed before the command starts (what comes meanwhile waits), and
/// gone from the command itself, which starts with the default handlers.
struct SignalProxy(Vec<(tokio::signal::unix::Signal, Option<i32>)>);

impl SignalProxy {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let kinds = [
            (SignalKind::terminate(), Some(libc::SIGTERM)),
            (SignalKind::hangup(), Some(libc::SIGHUP)),
            (SignalKind::user_defined1(), Some(libc::SIGUSR1)),
            (SignalKind::user_defined2(), Some(libc::SIGUSR2)),
            (SignalKind::interrupt(), None),
            (SignalKind::quit(), None),
        ];
        Self(kinds.into_iter().filter_map(|(kind, pass)| Some((signal(kind).ok()?, pass))).collect())
    }

    /// Waits for `child`, passing signals on while it runs.
    async fn wait(self, mut child: std::process::Child) -> std::io::Result<std::process::ExitStatus> {
        // `ProcessRef` tells a recycled pid apart: nothing reaches another process.
        let command = crate::model::ProcessRef::of(child.id());
        for (mut stream, pass) in self.0 {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if let (Some(sig), Some(p)) = (pass, command) {
                        crate::process::signal(p, sig);
                    }
                }
            });
        }
        tokio::task::spawn_blocking(move || child.wait()).await.expect("wait task")
    }
}

pub async fn ps(client: &Client, a: PsArgs) -> ExitCode {
    let list: Vec<SandboxResource> = match client.call(Method::GET, "/netd/v1/sandboxes", None::<&()>).await {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let id = |s: &SandboxResource| {
        if a.no_trunc {
            s.id.clone()
        } else {
            s.id[..12.min(s.id.len())].to_owned()
        }
    };
    if a.quiet {
        for s in &list {
            println!("{}", id(s));
        }
        return ExitCode::SUCCESS;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let networks: Vec<&str> = s.networks.keys().map(String::as_str).collect();
            let ips: Vec<String> = s
                .networks
                .values()
                .filter(|n| !n.ip_address.is_empty())
                .map(|n| format!("{}/{}", n.ip_address, n.ip_prefix_len))
                .collect();
            let status = if s.running {
                format!("running ({})", s.pids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
            } else {
                "idle".to_owned()
            };
            let ports: Vec<String> = port_lines(s).into_iter().map(|(c, h)| format!("{h}->{c}")).collect();
            vec![
                id(s),
                s.name.clone(),
                networks.join(","),
                ips.join(","),
                status,
                ports.join(", "),
                s.command.join(" "),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["SANDBOX ID", "NAME", "NETWORKS", "IP ADDRESSES", "STATUS", "PORTS", "COMMAND"], &rows)
    );
    ExitCode::SUCCESS
}

/// A sandbox's published ports as (`80/tcp`, `0.0.0.0:8080`), in container port order.
fn port_lines(s: &SandboxResource) -> Vec<(String, String)> {
    let mut lines: Vec<(u16, String, String)> = s
        .ports
        .iter()
        .flat_map(|(c, hosts)| {
            let n = c.split('/').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            hosts.iter().map(move |h| (n, c.clone(), format!("{}:{}", h.host_ip, h.host_port)))
        })
        .collect();
    lines.sort();
    lines.into_iter().map(|(_, c, h)| (c, h)).collect()
}

/// `netd port SANDBOX [PORT[/PROTO]]`, as `docker port`: `80/tcp -> 0.0.0.0:8080` per
/// published port, or the host addresses of one.
pub async fn port(client: &Client, a: PortArgs) -> ExitCode {
    let s: SandboxResource = match get(client, &a.sandbox).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let lines = port_lines(&s);
    let Some(want) = a.private_port else {
        for (c, h) in lines {
            println!("{c} -> {h}");
        }
        return ExitCode::SUCCESS;
    };
    let want = if want.contains('/') { want } else { format!("{want}/tcp") };
    let found: Vec<String> = lines.into_iter().filter(|(c, _)| *c == want).map(|(_, h)| h).collect();
    if found.is_empty() {
        return fail(&format!("No public port '{want}' published for {}", a.sandbox));
    }
    for h in found {
        println!("{h}");
    }
    ExitCode::SUCCESS
}

/// Prints the sandboxes found as a JSON array, as `docker inspect` does, and says which were
/// not (`Error: No such object: …`, exit status 1).
pub async fn inspect(client: &Client, a: InspectArgs) -> ExitCode {
    let mut found = Vec::new();
    let mut code = ExitCode::SUCCESS;
    for key in &a.sandboxes {
        // As the daemon wrote it, every field.
        match get::<serde_json::Value>(client, key).await {
            Ok(s) => found.push(s),
            Err(crate::client::ClientError::Daemon { status: 404, .. }) => {
                eprintln!("Error: No such object: {key}");
                code = ExitCode::from(1);
            }
            Err(e) => return fail(&e),
        }
    }
    println!("{}", serde_json::to_string_pretty(&found).unwrap_or_else(|_| "[]".into()));
    code
}

pub async fn rm(client: &Client, a: RmArgs) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for name in &a.sandboxes {
        let path = format!("/netd/v1/sandboxes/{}?force={}", urlencoding::encode(name), u8::from(a.force));
        match client.call::<serde_json::Value>(Method::DELETE, &path, None::<&()>).await {
            Ok(_) => println!("{name}"),
            Err(e) => code = fail(&e),
        }
    }
    code
}
