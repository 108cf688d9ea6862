//! `netd stats [SANDBOX]`: the datapath's counters by reason, overall and per endpoint.

use std::process::ExitCode;

use hyper::Method;

use crate::{client::Client, daemon::stats::Stats};

use super::{fail, network::pretty, table};

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Only this sandbox's endpoints.
    sandbox: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn exec(client: &Client, a: StatsArgs) -> ExitCode {
    let path = match &a.sandbox {
        Some(s) => format!("/netd/v1/stats?sandbox={}", urlencoding::encode(s)),
        None => "/netd/v1/stats".to_owned(),
    };
    let stats: Stats = match client.call(Method::GET, &path, None::<&()>).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if a.json {
        println!("{}", pretty(&stats));
        return ExitCode::SUCCESS;
    }
    if a.sandbox.is_none() {
        let rows: Vec<Vec<String>> =
            stats.reasons.iter().map(|r| vec![r.reason.clone(), r.packets.to_string(), r.bytes.to_string()]).collect();
        print!("{}", table::render(&["REASON", "PACKETS", "BYTES"], &rows));
        println!();
    }
    let mut rows = Vec::new();
    for e in &stats.endpoints {
        for r in &e.reasons {
            rows.push(vec![
                e.sandbox.clone(),
                e.network.clone(),
                e.interface.clone(),
                e.host_veth.clone(),
                r.reason.clone(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]);
        }
    }
    print!("{}", table::render(&["SANDBOX", "NETWORK", "INTERFACE", "HOST VETH", "REASON", "PACKETS", "BYTES"], &rows));
    ExitCode::SUCCESS
}
