//! The `netd` command line: the daemon, and a client of its API with docker's verbs and output.

mod daemon;
mod lifecycle;
mod logs;
mod monitor;
mod nat;
mod network;
mod sandbox;
mod shim;
mod stats;
pub mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{client::Client, daemon::Config};

#[derive(Parser)]
#[command(name = "netd", version, about = "Docker-compatible container networking with an eBPF datapath")]
pub struct Cli {
    /// Daemon socket to connect to.
    #[arg(short = 'H', long = "host", global = true, env = "NETD_HOST", default_value = "unix:///run/netd/netd.sock")]
    host: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the current network namespace.
    Daemon(Box<Config>),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Create a sandbox (a named network namespace), connect it, and run a command in it.
    Run(sandbox::RunArgs),
    /// Run a command in an existing sandbox.
    Exec(sandbox::ExecArgs),
    /// List sandboxes.
    Ps(sandbox::PsArgs),
    /// List a sandbox's published ports (`docker port`).
    Port(sandbox::PortArgs),
    /// Show sandboxes as JSON (`docker inspect`): networks, addresses, aliases, ports, files.
    Inspect(sandbox::InspectArgs),
    /// Show what a sandbox's detached command wrote (`docker logs`).
    Logs(logs::LogsArgs),
    /// Remove sandboxes (their endpoints, addresses and namespace).
    Rm(sandbox::RmArgs),
    /// Start sandboxes' commands again (`docker start`).
    Start(lifecycle::StartArgs),
    /// Stop sandboxes' commands: SIGTERM, then SIGKILL after -t seconds (`docker stop`).
    Stop(lifecycle::StopArgs),
    /// Stop and start sandboxes' commands again (`docker restart`).
    Restart(lifecycle::StopArgs),
    /// Send a signal to sandboxes' processes, SIGKILL by default (`docker kill`).
    Kill(lifecycle::KillArgs),
    /// Wait for sandboxes' commands to end and print their exit codes (`docker wait`).
    Wait(lifecycle::WaitArgs),
    /// Show the datapath's counters by reason, overall and per endpoint.
    Stats(stats::StatsArgs),
    /// Masquerade's translations.
    #[command(subcommand)]
    Nat(nat::NatCommand),
    /// Show the datapath's drops, NAT flows and (`--type trace`) every packet as they happen.
    Monitor(monitor::MonitorArgs),
    /// Show client and daemon versions.
    Version,
    /// What `netd run -d` leaves with a command, to report how it ended.
    #[command(hide = true)]
    Shim(shim::ShimArgs),
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Daemon(cfg) = cli.command {
        return daemon::main(*cfg);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let client = match Client::new(&cli.host) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netd: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Daemon(_) => unreachable!("handled above"),
            Command::Network(cmd) => network::exec(&client, cmd).await,
            Command::Run(args) => sandbox::run(&client, args).await,
            Command::Exec(args) => sandbox::exec(&client, args).await,
            Command::Ps(args) => sandbox::ps(&client, args).await,
            Command::Port(args) => sandbox::port(&client, args).await,
            Command::Inspect(args) => sandbox::inspect(&client, args).await,
            Command::Rm(args) => sandbox::rm(&client, args).await,
            Command::Start(args) => lifecycle::start(&client, args).await,
            Command::Stop(args) => lifecycle::stop(&client, args).await,
            Command::Restart(args) => lifecycle::restart(&client, args).await,
            Command::Kill(args) => lifecycle::kill(&client, args).await,
            Command::Wait(args) => lifecycle::wait(&client, args).await,
            Command::Logs(args) => logs::logs(&client, args).await,
            Command::Stats(args) => stats::exec(&client, args).await,
            Command::Nat(cmd) => nat::exec(&client, cmd).await,
            Command::Monitor(args) => monitor::exec(&client, args).await,
            Command::Version => version(&client).await,
            Command::Shim(args) => shim::shim(&client, args).await,
        }
    })
}

async fn version(client: &Client) -> ExitCode {
    println!("Client:\n Version:     {}\n API version: {}", env!("CARGO_PKG_VERSION"), crate::api::API_VERSION);
    match client.call::<serde_json::Value>(hyper::Method::GET, "/version", None::<&()>).await {
        Ok(v) => {
            println!(
                "\nServer:\n Version:     {}\n API version: {} (minimum version {})\n Kernel:      {}",
                v["Version"].as_str().unwrap_or(""),
                v["ApiVersion"].as_str().unwrap_or(""),
                v["MinAPIVersion"].as_str().unwrap_or(""),
                v["KernelVersion"].as_str().unwrap_or("")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Prints an error like docker does and returns exit code 1.
pub fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(1)
}
