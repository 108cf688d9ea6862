//! Prometheus metrics (`GET /metrics`, and on TCP with `--metrics-addr`, as dockerd's): the
//! datapath's counters by reason, each endpoint's, masquerade's table, the embedded resolvers'
//! questions, and how many networks, sandboxes, endpoints, published ports and resolvers there
//! are. Text exposition format 0.0.4.

use std::fmt::Write as _;

use netd_common::Reason;

use super::{error::Result, Daemon};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the format asks (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// What a reason does with a packet: "forward" (redirected), "pass" (to the kernel), "drop".
fn verdict(reason: &str) -> &'static str {
    if reason.starts_with("drop-") {
        "drop"
    } else if reason.starts_with("redirect-") {
        "forward"
    } else {
        "pass"
    }
}

/// One metric family: its help and type lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

impl Daemon {
    /// The metrics, in the text exposition format.
    pub async fn metrics(&self) -> Result<String> {
        let counters = self.stats(None).await?;
        let nat = self.nat_stats()?;
        let state = self.snapshot().await;
        let mut out = String::new();

        for (name, help, bytes) in [
            ("netd_datapath_packets_total", "Packets the datapath handled, by reason.", false),
            ("netd_datapath_bytes_total", "Bytes the datapath handled, by reason.", true),
        ] {
            let mut f = Family::new(&mut out, name, "counter", help);
            for r in counters.reasons.iter().filter(|r| r.packets != 0) {
                let v = if bytes { r.bytes } else { r.packets };
                f.sample(name, &[("reason", &r.reason), ("verdict", verdict(&r.reason))], v);
            }
        }
        for (name, help, bytes) in [
            ("netd_endpoint_packets_total", "Packets each endpoint sent into the datapath, by reason.", false),
            ("netd_endpoint_bytes_total", "Bytes each endpoint sent into the datapath, by reason.", true),
        ] {
            let mut f = Family::new(&mut out, name, "counter", help);
            for e in &counters.endpoints {
                for r in &e.reasons {
                    let v = if bytes { r.bytes } else { r.packets };
                    let labels = [
                        ("sandbox", e.sandbox.as_str()),
                        ("network", e.network.as_str()),
                        ("interface", e.interface.as_str()),
                        ("reason", r.reason.as_str()),
                    ];
                    f.sample(name, &labels, v);
                }
            }
        }

        let mut f = Family::new(&mut out, "netd_nat_flows", "gauge", "Live masqueraded flows, by protocol and state.");
        for (state, n) in &nat.table.states {
            f.sample("netd_nat_flows", &[("state", state)], *n);
        }
        let mut f = Family::new(
            &mut out,
            "netd_nat_timeout_seconds",
            "gauge",
            "How long a flow lives after its last packet, by kind (--nat-timeout).",
        );
        for (kind, secs) in &nat.timeouts {
            f.sample("netd_nat_timeout_seconds", &[("kind", kind)], *secs);
        }
        for (name, help, value) in [
            ("netd_nat_flows_max", "Flows the translation table holds.", nat.table.max_flows),
            ("netd_nat_flows_expired", "Expired flows waiting for the collector.", nat.table.expired),
        ] {
            Family::new(&mut out, name, "gauge", help).sample(name, &[], value);
        }
        Family::new(
            &mut out,
            "netd_nat_evicted_total",
            "counter",
            "New flows that evicted another from a full table (packets).",
        )
        .sample("netd_nat_evicted_total", &[], nat.evicted);
        let mut f =
            Family::new(&mut out, "netd_nat_refused_total", "counter", "Packets of new flows refused, by cause.");
        f.sample("netd_nat_refused_total", &[("cause", Reason::DropNatTableFull.name())], nat.refused_table_full);
        f.sample("netd_nat_refused_total", &[("cause", Reason::DropNatNoPort.name())], nat.refused_no_port);

        let mut f =
            Family::new(&mut out, "netd_published_ports", "gauge", "Published ports (netd run -p), by protocol.");
        for protocol in [crate::model::Protocol::Tcp, crate::model::Protocol::Udp] {
            let n = state.published().filter(|(_, _, p)| p.protocol == protocol).count();
            f.sample("netd_published_ports", &[("protocol", protocol.name())], n as u64);
        }

        let name = "netd_dns_questions_total";
        let help = "Questions the sandboxes' embedded resolvers were asked, by outcome: answered (a container's name), forwarded (an upstream server answered), failed (none did: SERVFAIL), malformed, refused (not forwarded for a sandbox only on internal networks).";
        let mut f = Family::new(&mut out, name, "counter", help);
        for (outcome, n) in self.dns_observer.counts() {
            f.sample(name, &[("outcome", outcome)], n);
        }
        let resolvers = self.resolvers().len();

        let endpoints: usize = state.networks.values().map(|n| n.endpoints.len()).sum();
        for (name, help, value) in [
            (
                "netd_dns_resolvers",
                "Embedded DNS resolvers serving (one a sandbox of a user-defined network).",
                resolvers,
            ),
            ("netd_networks", "Networks, the predefined ones included.", state.networks.len()),
            ("netd_sandboxes", "Sandboxes.", state.sandboxes.len()),
            ("netd_endpoints", "Endpoints (a sandbox's connection to a network).", endpoints),
        ] {
            Family::new(&mut out, name, "gauge", help).sample(name, &[], value as u64);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{escape, verdict, Family};

    #[test]
    fn samples_follow_the_text_format() {
        let mut out = String::new();
        let mut f = Family::new(&mut out, "netd_x_total", "counter", "X.");
        f.sample("netd_x_total", &[("sandbox", "a\"b\\c\nd"), ("reason", "drop-spoofed-ip")], 3);
        f.sample("netd_x_total", &[], 4);
        assert_eq!(
            out,
            "# HELP netd_x_total X.\n# TYPE netd_x_total counter\n\
             netd_x_total{sandbox=\"a\\\"b\\\\c\\nd\",reason=\"drop-spoofed-ip\"} 3\nnetd_x_total 4\n"
        );
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            (verdict("redirect-peer"), verdict("pass-arp"), verdict("drop-icc-disabled")),
            ("forward", "pass", "drop")
        );
    }
}
