//! `netd nat ls`: masquerade's live translations; `netd nat stats`: the table at a glance.

use std::process::ExitCode;

use hyper::Method;

use crate::{
    client::Client,
    daemon::nat::{describe_timeouts, NatStats},
    datapath::NatFlow,
};

use super::{fail, network::pretty, table};

#[derive(clap::Subcommand)]
pub enum NatCommand {
    /// List active translations: the container's address, what the outside sees, the remote.
    #[command(alias = "list")]
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only flows that match (repeatable; values of one key are alternatives, keys must all
        /// match, as `docker ps -f`): sandbox=NAME|ID, protocol=tcp|udp|icmp, state=STATE,
        /// remote=ADDR[:PORT], outside=ADDR[:PORT], kind=masqueraded|published|inbound|routed.
        #[arg(short, long = "filter", value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Remove translations, as `conntrack -D` (with filters) and `-F` (`--all`): the container's
    /// next packet starts a new flow.
    Rm {
        /// The flows to remove, as `ls -f` selects them (repeatable).
        #[arg(short, long = "filter", value_name = "KEY=VALUE", required_unless_present = "all")]
        filter: Vec<String>,
        /// Every flow.
        #[arg(long, conflicts_with = "filter")]
        all: bool,
    },
    /// The table at a glance: flows in use of how many, by state; the port range and uplinks;
    /// how often a full table made room or refused a new flow.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn exec(client: &Client, cmd: NatCommand) -> ExitCode {
    let (json, filter) = match cmd {
        NatCommand::Ls { json, filter } => (json, filter),
        NatCommand::Stats { json } => return stats(client, json).await,
        NatCommand::Rm { filter, .. } => return remove(client, &filter).await,
    };
    let path = match super::network::filters_query(&filter) {
        Ok(q) => format!("/netd/v1/nat{q}"),
        Err(e) => return fail(&e),
    };
    let flows: Vec<NatFlow> = match client.call(Method::GET, &path, None::<&()>).await {
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
                format!("{}{}", f.state, flow_kind(f)),
                format!("{}s", f.age_secs),
                format!("{}s", f.idle_secs),
                format!("{}s", f.expires_in_secs),
            ]
        })
        .collect();
    print!("{}", table::render(&["PROTO", "INSIDE", "OUTSIDE", "REMOTE", "STATE", "AGE", "IDLE", "EXPIRES IN"], &rows));
    ExitCode::SUCCESS
}

/// How a flow came to be, after its state: opened from outside through a published port, or
/// at the container's own address (`nat-unprotected`, routed networks, direct routing); or the
/// container's own, untranslated (a network without masquerade).
fn flow_kind(f: &NatFlow) -> String {
    match f.kind() {
        "masqueraded" => String::new(),
        kind => format!(" ({kind})"),
    }
}

async fn remove(client: &Client, filter: &[String]) -> ExitCode {
    let path = match super::network::filters_query(filter) {
        Ok(q) => format!("/netd/v1/nat{q}"),
        Err(e) => return fail(&e),
    };
    match client.call::<serde_json::Value>(Method::DELETE, &path, None::<&()>).await {
        Ok(v) => {
            let n = v["Removed"].as_u64().unwrap_or(0);
            println!("{n} flow{} removed", if n == 1 { "" } else { "s" });
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

async fn stats(client: &Client, json: bool) -> ExitCode {
    let s: NatStats = match client.call(Method::GET, "/netd/v1/nat/stats", None::<&()>).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if json {
        println!("{}", pretty(&s));
        return ExitCode::SUCCESS;
    }
    print!("{}", render_stats(&s));
    ExitCode::SUCCESS
}

/// `netd nat stats` as text: the figures, then the live flows by state.
fn render_stats(s: &NatStats) -> String {
    let t = &s.table;
    #[expect(clippy::cast_precision_loss, reason = "a percentage to one decimal")]
    let full = if t.max_flows == 0 { 0.0 } else { t.flows as f64 * 100.0 / t.max_flows as f64 };
    let uplinks = if s.uplinks.is_empty() { "none".to_owned() } else { s.uplinks.join(", ") };
    let mut rows = vec![
        vec!["FLOWS".into(), format!("{} of {} ({full:.1}% full)", t.flows, t.max_flows)],
        vec!["EXPIRED".into(), format!("{} (gone at the collector's next pass)", t.expired)],
        vec!["PORTS".into(), format!("{}-{}", t.port_min, t.port_max)],
        vec!["UPLINKS".into(), uplinks],
        vec!["EVICTED".into(), format!("{} (new flows that made room in a full table)", s.evicted)],
        vec!["REFUSED".into(), format!("{} (table full), {} (no free port)", s.refused_table_full, s.refused_no_port)],
    ];
    if !s.timeouts.is_empty() {
        rows.push(vec!["TIMEOUTS".into(), describe_timeouts(&s.timeouts)]);
    }
    let mut out = table::render(&["", ""], &rows).trim_start_matches('\n').to_owned();
    if !t.states.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = t.states.iter().map(|(state, n)| vec![state.clone(), n.to_string()]).collect();
        out.push_str(&table::render(&["STATE", "FLOWS"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::NatTableStats;

    #[test]
    fn stats_render_the_figures_then_the_states() {
        let s = NatStats {
            table: NatTableStats {
                flows: 3,
                max_flows: 131_072,
                expired: 1,
                states: [("tcp established".to_owned(), 2), ("udp stream".to_owned(), 1)].into(),
                port_min: 1024,
                port_max: 32767,
            },
            uplinks: vec!["eth0 (192.0.2.10)".into()],
            evicted: 4,
            refused_table_full: 0,
            refused_no_port: 2,
            timeouts: crate::daemon::nat::timeout_secs(&netd_common::NatTimeouts {
                tcp_established: 5 * 86_400,
                udp: 90,
                ..netd_common::NatTimeouts::DEFAULT
            }),
        };
        let text = render_stats(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "FLOWS      3 of 131072 (0.0% full)");
        assert!(lines.contains(&"PORTS      1024-32767"), "{text}");
        assert!(lines.contains(&"UPLINKS    eth0 (192.0.2.10)"), "{text}");
        assert!(lines.contains(&"REFUSED    0 (table full), 2 (no free port)"), "{text}");
        assert!(
            lines.contains(
                &"TIMEOUTS   tcp-syn 1m, tcp-established 5d, tcp-fin 2m, tcp-rst 10s, udp 90s, udp-stream 2m, icmp 30s"
            ),
            "{text}"
        );
        assert!(text.ends_with("STATE             FLOWS\ntcp established   2\nudp stream        1\n"), "{text}");
    }
}
