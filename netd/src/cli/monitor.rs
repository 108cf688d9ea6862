//! `netd monitor`: the datapath's drops, masquerade's flows and (when asked) every packet of
//! the followed sandboxes as they happen, one line each, until interrupted.

use std::{io::Write as _, process::ExitCode};

use crate::{
    client::Client,
    daemon::monitor::{MonitorEndpoint, MonitorEvent, MonitorLine, MonitorType},
};

use super::fail;

#[derive(clap::Args)]
pub struct MonitorArgs {
    /// Only events about this sandbox: arriving on or going to its interfaces, or from or to its
    /// addresses.
    #[arg(long)]
    sandbox: Option<String>,
    /// Only these kinds of events: `drop` (dropped packets), `nat` (masquerade's flows created
    /// and removed, as `conntrack -E` shows), `trace` (every packet the sandbox, or every
    /// sandbox, sends or is delivered, with the datapath's verdict and where it went: for
    /// debugging, each packet costs an event), `dns` (the questions sandboxes ask their
    /// embedded resolvers, with the answers and who gave them). `drop` and `nat` by default.
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<MonitorType>,
    /// Print each event as a line of JSON.
    #[arg(long)]
    json: bool,
}

pub async fn exec(client: &Client, args: MonitorArgs) -> ExitCode {
    let mut query = Vec::new();
    if let Some(s) = &args.sandbox {
        query.push(format!("sandbox={}", urlencoding::encode(s)));
    }
    if !args.types.is_empty() {
        let names: Vec<&str> = args.types.iter().map(|t| t.name()).collect();
        query.push(format!("type={}", names.join(",")));
    }
    let path =
        if query.is_empty() { "/netd/v1/monitor".to_owned() } else { format!("/netd/v1/monitor?{}", query.join("&")) };
    let started = || eprintln!("Listening for datapath events. Press Ctrl-C to quit.");
    let mut stdout = std::io::stdout();
    let result = client
        .stream_lines(&path, started, |line| {
            let out = if args.json {
                line.to_owned()
            } else {
                match serde_json::from_str::<MonitorLine>(line) {
                    Ok(l) => render(&l),
                    Err(_) => line.to_owned(),
                }
            };
            // A closed stdout (`| head`) ends the command as it would any other.
            if writeln!(stdout, "{out}").and_then(|()| stdout.flush()).is_err() {
                std::process::exit(0);
            }
        })
        .await;
    match result {
        Ok(()) => {
            eprintln!("netd: the daemon ended the stream");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// One line of text: time, reason, where the packet arrived, what it was (and where it went).
pub fn render(line: &MonitorLine) -> String {
    let e: &MonitorEvent = match line {
        MonitorLine::Event(e) => e,
        MonitorLine::Lost { lost, in_datapath: false } => {
            return format!("… {lost} events lost (this client read too slowly)");
        }
        MonitorLine::Lost { lost, in_datapath: true } => {
            return format!("… {lost} events lost (the datapath's event ring was full)");
        }
    };
    // `2026-12-01T11:42:03.123456789Z` → `11:42:03.123`.
    let time = e.time.get(11..23).unwrap_or(&e.time);
    let described = |ep: &MonitorEndpoint| format!(" ({} {} on {})", ep.sandbox, ep.ip, ep.network);
    let endpoint = e.endpoint.as_ref().map(described);
    if e.kind == "dns" {
        let via = if e.upstream.is_empty() { String::new() } else { format!(" via {}", e.upstream) };
        // Microseconds, shown as milliseconds with three decimals.
        let ms = format!("{}.{:03}", e.micros / 1000, e.micros % 1000);
        return format!(
            "{time} {:<22} {}: {} {} -> {}{via} ({ms} ms, {})",
            e.reason,
            e.endpoint
                .as_ref()
                .map_or_else(|| "?".to_owned(), |ep| format!("{} {} on {}", ep.sandbox, ep.ip, ep.network)),
            e.protocol,
            e.question,
            e.answer,
            e.src
        );
    }
    if e.kind == "nat" {
        return format!(
            "{time} {:<22} {}{}: {} {} -> {} as {}",
            e.reason,
            e.interface,
            endpoint.unwrap_or_default(),
            e.protocol,
            e.src,
            e.dst,
            e.outside
        );
    }
    let what = if e.protocol.is_empty() { e.class.clone() } else { format!("{} {} -> {}", e.protocol, e.src, e.dst) };
    let vlan = if e.vlan == 0 { String::new() } else { format!(", vlan {}", e.vlan) };
    let fragment = if e.fragment { ", fragment" } else { "" };
    let to = if e.to.is_empty() {
        String::new()
    } else {
        format!(", to {}{}", e.to, e.to_endpoint.as_ref().map(described).unwrap_or_default())
    };
    format!(
        "{time} {:<22} {}{}: {what}, {} bytes{vlan}{fragment}{to}",
        e.reason,
        e.interface,
        endpoint.unwrap_or_default(),
        e.len
    )
}

#[cfg(test)]
mod tests {
    use super::render;
    use crate::daemon::monitor::{MonitorEndpoint, MonitorEvent, MonitorLine};

    fn event() -> MonitorEvent {
        MonitorEvent {
            time: "2026-12-01T11:42:03.123456789Z".into(),
            kind: "drop".into(),
            reason: "drop-spoofed-ip".into(),
            code: Some(79),
            class: "ipv4-icmp".into(),
            interface: "veth1a2b3c4".into(),
            ifindex: 7,
            endpoint: Some(MonitorEndpoint {
                sandbox: "web".into(),
                sandbox_id: "ab".repeat(32),
                network: "bridge".into(),
                ip: "172.17.0.2".parse().unwrap(),
            }),
            protocol: "icmp".into(),
            src: "172.17.0.200".into(),
            dst: "172.17.0.3".into(),
            outside: String::new(),
            to: String::new(),
            to_ifindex: 0,
            to_endpoint: None,
            len: 98,
            vlan: 0,
            fragment: false,
            ..MonitorEvent::default()
        }
    }

    #[test]
    fn a_dns_question_reads_as_one_line() {
        let dns = MonitorEvent {
            kind: "dns".into(),
            reason: "dns-forwarded".into(),
            code: None,
            protocol: "udp".into(),
            src: "127.0.0.1:40000".into(),
            dst: "127.0.0.11:53".into(),
            question: "example.com A".into(),
            answer: "192.0.2.99".into(),
            upstream: "198.18.0.2:53".into(),
            micros: 1234,
            ..event()
        };
        assert_eq!(
            render(&MonitorLine::Event(Box::new(dns))),
            "11:42:03.123 dns-forwarded          web 172.17.0.2 on bridge: udp example.com A -> 192.0.2.99 via \
             198.18.0.2:53 (1.234 ms, 127.0.0.1:40000)"
        );
    }

    #[test]
    fn a_drop_reads_as_one_line() {
        assert_eq!(
            render(&MonitorLine::Event(Box::new(event()))),
            "11:42:03.123 drop-spoofed-ip        veth1a2b3c4 (web 172.17.0.2 on bridge): icmp 172.17.0.200 -> \
             172.17.0.3, 98 bytes"
        );
        let arp = MonitorEvent {
            endpoint: None,
            interface: "uplink0".into(),
            class: "arp".into(),
            protocol: String::new(),
            vlan: 5,
            ..event()
        };
        assert_eq!(
            render(&MonitorLine::Event(Box::new(arp))),
            "11:42:03.123 drop-spoofed-ip        uplink0: arp, 98 bytes, vlan 5"
        );
        assert_eq!(
            render(&MonitorLine::Lost { lost: 3, in_datapath: false }),
            "… 3 events lost (this client read too slowly)"
        );
        assert_eq!(
            render(&MonitorLine::Lost { lost: 4, in_datapath: true }),
            "… 4 events lost (the datapath's event ring was full)"
        );
        let flow = MonitorEvent {
            kind: "nat".into(),
            reason: "nat-new".into(),
            code: None,
            class: String::new(),
            interface: "uplink0".into(),
            protocol: "tcp".into(),
            src: "172.17.0.2:40000".into(),
            dst: "10.0.0.1:80".into(),
            outside: "10.255.0.1:40000".into(),
            len: 0,
            ..event()
        };
        assert_eq!(
            render(&MonitorLine::Event(Box::new(flow))),
            "11:42:03.123 nat-new                uplink0 (web 172.17.0.2 on bridge): tcp 172.17.0.2:40000 -> \
             10.0.0.1:80 as 10.255.0.1:40000"
        );
        let traced = MonitorEvent {
            kind: "trace".into(),
            reason: "redirect-peer".into(),
            code: Some(4),
            src: "172.17.0.2".into(),
            to: "veth5d6e7f8".into(),
            to_ifindex: 9,
            to_endpoint: Some(MonitorEndpoint {
                sandbox: "db".into(),
                sandbox_id: "cd".repeat(32),
                network: "bridge".into(),
                ip: "172.17.0.3".parse().unwrap(),
            }),
            ..event()
        };
        assert_eq!(
            render(&MonitorLine::Event(Box::new(traced))),
            "11:42:03.123 redirect-peer          veth1a2b3c4 (web 172.17.0.2 on bridge): icmp 172.17.0.2 -> 172.17.0.3, \
             98 bytes, to veth5d6e7f8 (db 172.17.0.3 on bridge)"
        );
    }

    #[test]
    fn lines_decode_as_events_or_losses() {
        let json = serde_json::to_string(&MonitorLine::Event(Box::new(event()))).unwrap();
        assert_eq!(serde_json::from_str::<MonitorLine>(&json).unwrap(), MonitorLine::Event(Box::new(event())));
        assert_eq!(
            serde_json::from_str::<MonitorLine>(r#"{"lost":7}"#).unwrap(),
            MonitorLine::Lost { lost: 7, in_datapath: false }
        );
        let ring = MonitorLine::Lost { lost: 8, in_datapath: true };
        assert_eq!(serde_json::to_string(&ring).unwrap(), r#"{"lost":8,"in_datapath":true}"#);
        assert_eq!(serde_json::from_str::<MonitorLine>(r#"{"lost":8,"in_datapath":true}"#).unwrap(), ring);
    }
}
