//! `netd nat ls`: masquerade's live translations.

use std::process::ExitCode;

use hyper::Method;

use crate::{client::Client, datapath::NatFlow};

use super::{fail, network::pretty, table};

#[derive(clap::Subcommand)]
pub enum NatCommand {
    /// List active translations: the container's address, what the outside sees, the remote.
    #[command(alias = "list")]
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn exec(client: &Client, cmd: NatCommand) -> ExitCode {
    let NatCommand::Ls { json } = cmd;
    let flows: Vec<NatFlow> = match client.call(Method::GET, "/netd/v1/nat", None::<&()>).await {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    if json {
        println!("{}", pretty(&flows));
        return ExitCode::SUCCESS;
    }
    let ep = |(a, p): (std::net::Ipv4Addr, u16)| format!("{a}:{p}");
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            vec![
                f.protocol.clone(),
                ep(f.inside),
                ep(f.outside),
                ep(f.remote),
                f.state.clone(),
                format!("{}s", f.age_secs),
                format!("{}s", f.idle_secs),
                format!("{}s", f.expires_in_secs),
            ]
        })
        .collect();
    print!("{}", table::render(&["PROTO", "INSIDE", "OUTSIDE", "REMOTE", "STATE", "AGE", "IDLE", "EXPIRES IN"], &rows));
    ExitCode::SUCCESS
}
