//! `cargo xtask`: the project's development commands.
//!
//! - `setup`: installs every prerequisite that is missing (idempotent, near-instant when done);
//! - `build`: setup, then builds the eBPF programs and the workspace;
//! - `test`: setup, then every test tier (unit, `BPF_PROG_TEST_RUN`, netns integration);
//! - `run -- <daemon flags>`: setup, build, then `netd daemon <flags>` in this namespace;
//! - `demo`: the Docker networking walk-through against netd, in throw-away namespaces;
//! - `bench [--quick] [--rounds N] [--out DIR] [--scale N,..] [--cost-only] [--workloads W,..]
//!   [--columns C,..]`: netd against the kernel bridge and Docker's dataplane, side by side.

mod demo;
mod setup;
mod step;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use crate::step::{cargo, workspace_root};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netd development commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing: nightly rust-src, Debian packages, bpf-linker, bpffs.
    Setup,
    /// Build the eBPF programs and the workspace.
    Build {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Run every test tier; fails on any failure.
    Test {
        /// Extra arguments passed to the test binaries (e.g. a name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Replay the Docker networking walk-through against netd in throw-away namespaces.
    Demo,
    /// Measure netd against the kernel bridge, Docker's dataplane, veth and loopback.
    Bench {
        /// A short run for development (under 3 minutes).
        #[arg(long)]
        quick: bool,
        /// Rounds of interleaved measurements.
        #[arg(long)]
        rounds: Option<u32>,
        /// Output directory for bench.md, runs.jsonl and bench.svg.
        #[arg(long, default_value = "target/bench")]
        out: String,
        /// Endpoint counts for the scale section, e.g. 2,100,1000.
        #[arg(long)]
        scale: Option<String>,
        /// Only the eBPF programs' costs under `BPF_PROG_TEST_RUN` (seconds).
        #[arg(long)]
        cost_only: bool,
        /// A focused run: only these workloads, e.g. crr,rr (rounds, ratios to docker, bridge, veth; live eBPF cost).
        #[arg(long)]
        workloads: Option<String>,
        /// A focused run: only these columns, e.g. docker-nat,netd-nat.
        #[arg(long)]
        columns: Option<String>,
    },
    /// Build, then start the daemon in the current network namespace.
    Run {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
        /// Flags for `netd daemon`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::run(),
        Command::Build { release } => {
            setup::run()?;
            build(release)
        }
        Command::Test { args } => {
            setup::run()?;
            test(&args)
        }
        Command::Bench { quick, rounds, out, scale, cost_only, workloads, columns } => {
            setup::run()?;
            step::say("building netd and the bench (release)");
            cargo(&["build", "--locked", "--release", "-p", "netd", "-p", "netd-bench"])?;
            let bin = workspace_root()?.join("target/release/netd-bench");
            let mut cmd = std::process::Command::new(bin);
            cmd.current_dir(workspace_root()?).arg("--out").arg(out);
            if quick {
                cmd.arg("--quick");
            }
            if cost_only {
                cmd.arg("--cost-only");
            }
            if let Some(r) = rounds {
                cmd.arg("--rounds").arg(r.to_string());
            }
            if let Some(s) = scale {
                cmd.arg("--scale").arg(s);
            }
            if let Some(w) = workloads {
                cmd.arg("--workloads").arg(w);
            }
            if let Some(c) = columns {
                cmd.arg("--columns").arg(c);
            }
            step::run(&mut cmd)
        }
        Command::Demo => {
            setup::run()?;
            build(false)?;
            demo::run()
        }
        Command::Run { release, args } => {
            setup::run()?;
            build(release)?;
            let profile = if release { "release" } else { "debug" };
            let netd = workspace_root()?.join("target").join(profile).join("netd");
            step::say(&format!("starting {} daemon {}", netd.display(), args.join(" ")));
            let status = std::process::Command::new(netd).arg("daemon").args(&args).status()?;
            if !status.success() {
                bail!("netd daemon exited with {status}");
            }
            Ok(())
        }
    }
}

fn build(release: bool) -> Result<()> {
    step::say("building the eBPF programs and the workspace");
    // The default members: netd-ebpf is built for BPF by netd's build script, not for the host.
    let mut args = vec!["build", "--locked"];
    if release {
        args.push("--release");
    }
    cargo(&args)
}

fn test(extra: &[String]) -> Result<()> {
    if !step::is_root() {
        bail!("the datapath and namespace tests need root (BPF, network namespaces)");
    }
    // The integration tests drive the real `netd` binary.
    step::say("building netd");
    cargo(&["build", "--locked", "-p", "netd", "--bins"])?;
    step::say("running every test tier: unit, BPF_PROG_TEST_RUN datapath, netns integration");
    let mut args = vec!["test", "--locked", "--workspace", "--exclude", "xtask", "--tests", "--no-fail-fast"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args)
}
