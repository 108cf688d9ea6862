//! Results: raw samples (`runs.jsonl`), a markdown table (`bench.md`) and a chart of the ratios
//! (`bench.svg`). Ratios are medians of per-round ratios, so machine noise that hits a round
//! hits every column of it alike.

use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub round: u32,
    pub topology: String,
    pub metric: String,
    pub value: f64,
    /// 1-minute load average when the round started.
    pub load1: f64,
}

/// A metric: its key, label, unit and direction.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Shown in the chart.
    pub charted: bool,
}

pub const METRICS: &[Metric] = &[
    Metric {
        key: "tcp_gbps",
        label: "TCP throughput, 1 stream",
        unit: "Gbit/s",
        higher_is_better: true,
        charted: true,
    },
    Metric { key: "udp_pps", label: "UDP 64-byte frames received", unit: "pps", higher_is_better: true, charted: true },
    Metric {
        key: "rr_tps",
        label: "TCP request/response (pinned)",
        unit: "trans/s",
        higher_is_better: true,
        charted: true,
    },
    Metric { key: "rr_mean_us", label: "TCP RR mean latency", unit: "µs", higher_is_better: false, charted: false },
    Metric { key: "rr_p99_us", label: "TCP RR p99 latency", unit: "µs", higher_is_better: false, charted: false },
    Metric {
        key: "crr_cps",
        label: "TCP connections/s (pinned)",
        unit: "conn/s",
        higher_is_better: true,
        charted: true,
    },
    Metric {
        key: "host_udp_pps",
        label: "Host → container: UDP 64-byte frames received",
        unit: "pps",
        higher_is_better: true,
        charted: false,
    },
    Metric {
        key: "host_rr_tps",
        label: "Host → container: TCP request/response (pinned)",
        unit: "trans/s",
        higher_is_better: true,
        charted: false,
    },
];

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        f64::midpoint(v[m - 1], v[m])
    }
}

/// Summary of one metric on one topology.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Median over rounds of this/bridge (for lower-is-better metrics: bridge/this), so > 1 is
    /// always better than the bridge.
    pub vs_bridge: f64,
    pub vs_docker: f64,
}

/// metric → topology → cell.
pub type Summary = BTreeMap<String, BTreeMap<String, Cell>>;

/// Median over rounds of `metric` on `topo` divided by the same round's value on `base`.
pub fn ratio(samples: &[Sample], metric: &str, topo: &str, base: &str) -> f64 {
    let of = |t: &str| -> BTreeMap<u32, f64> {
        samples.iter().filter(|s| s.metric == metric && s.topology == t).map(|s| (s.round, s.value)).collect()
    };
    let base = of(base);
    let mut r: Vec<f64> = of(topo).iter().filter_map(|(round, v)| Some(v / base.get(round)?)).collect();
    median(&mut r)
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let mut out = Summary::new();
    for m in METRICS {
        let of = |topo: &str| -> BTreeMap<u32, f64> {
            samples.iter().filter(|s| s.metric == m.key && s.topology == topo).map(|s| (s.round, s.value)).collect()
        };
        let (bridge, docker) = (of("bridge"), of("docker"));
        let topologies: Vec<String> = {
            let mut t: Vec<String> = samples.iter().filter(|s| s.metric == m.key).map(|s| s.topology.clone()).collect();
            t.dedup();
            t
        };
        for topo in topologies {
            let values = of(&topo);
            if values.is_empty() {
                continue;
            }
            let ratio = |reference: &BTreeMap<u32, f64>| {
                let mut r: Vec<f64> = values
                    .iter()
                    .filter_map(|(round, v)| {
                        let base = reference.get(round)?;
                        Some(if m.higher_is_better { v / base } else { base / v })
                    })
                    .collect();
                median(&mut r)
            };
            let mut v: Vec<f64> = values.values().copied().collect();
            let cell = Cell {
                min: v.iter().copied().fold(f64::INFINITY, f64::min),
                max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                median: median(&mut v),
                vs_bridge: ratio(&bridge),
                vs_docker: ratio(&docker),
            };
            out.entry(m.key.to_owned()).or_default().insert(topo, cell);
        }
    }
    out
}

pub fn fmt_value(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The markdown table: one row per metric and topology.
pub fn markdown(summary: &Summary, order: &[&str]) -> String {
    table(summary, order, true)
}

/// The markdown table of a section measured against Docker alone (masquerade, published
/// ports): one row per metric and topology, in `order`.
pub fn markdown_vs_docker(summary: &Summary, order: &[&str]) -> String {
    table(summary, order, false)
}

/// One row per metric and topology, in `order`: min, median, max, then the ratios to the
/// bridge (`vs_bridge`) and to Docker.
fn table(summary: &Summary, order: &[&str], vs_bridge: bool) -> String {
    let mut s = if vs_bridge {
        String::from("| metric | path | min | median | max | vs bridge | vs docker |\n|---|---|---|---|---|---|---|\n")
    } else {
        String::from("| metric | path | min | median | max | vs docker |\n|---|---|---|---|---|---|\n")
    };
    for m in METRICS {
        let Some(cells) = summary.get(m.key) else { continue };
        for topo in order {
            let Some(c) = cells.get(*topo) else { continue };
            let bridge = if vs_bridge { format!(" {:.2}× |", c.vs_bridge) } else { String::new() };
            let _ = writeln!(
                s,
                "| {} ({}) | {topo} | {} | {} | {} |{bridge} {:.2}× |",
                m.label,
                m.unit,
                fmt_value(c.min),
                fmt_value(c.median),
                fmt_value(c.max),
                c.vs_docker
            );
        }
    }
    s
}

/// Grouped bars: per charted metric, each path's median ratio to the kernel bridge.
#[expect(clippy::many_single_char_names, reason = "SVG coordinates read best as x, y, w, h")]
pub fn svg(summary: &Summary, order: &[&str]) -> String {
    let colors = ["#9e9e9e", "#ef6c00", "#1565c0", "#2e7d32", "#6a1b9a", "#00838f"];
    let metrics: Vec<&Metric> = METRICS.iter().filter(|m| m.charted && summary.contains_key(m.key)).collect();
    let (w, h, left, top, bottom) = (920.0, 420.0, 60.0, 40.0, 90.0);
    let plot_h = h - top - bottom;
    let max = metrics
        .iter()
        .flat_map(|m| summary[m.key].values().map(|c| c.vs_bridge))
        .filter(|v| v.is_finite())
        .fold(1.0_f64, f64::max)
        .max(1.5)
        .ceil();
    let group_w = (w - left - 20.0) / metrics.len().max(1) as f64;
    let bar_w = group_w * 0.8 / order.len() as f64;
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"15\">Median ratio to the kernel bridge (higher is better)</text>\n"
    );
    let mut tick = 0.0;
    while tick <= max + 1e-9 {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"{stroke}\"/><text x=\"{lx}\" y=\"{ly:.1}\" text-anchor=\"end\">{tick:.1}×</text>",
            x2 = w - 20.0,
            ty = y(tick),
            stroke = if (tick - 1.0).abs() < 1e-9 { "#444" } else { "#ddd" },
            lx = left - 6.0,
            ly = y(tick) + 4.0
        );
        tick += 0.5;
    }
    for (i, m) in metrics.iter().enumerate() {
        let gx = left + group_w * i as f64 + group_w * 0.1;
        for (j, topo) in order.iter().enumerate() {
            let Some(c) = summary[m.key].get(*topo) else {
                continue;
            };
            if !c.vs_bridge.is_finite() {
                continue;
            }
            let x = gx + bar_w * j as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{topo}: {:.2}×</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{:.2}</text>",
                y(c.vs_bridge),
                bar_w - 2.0,
                plot_h - (y(c.vs_bridge) - top),
                colors[j % colors.len()],
                c.vs_bridge,
                x + bar_w / 2.0 - 1.0,
                y(c.vs_bridge) - 3.0,
                c.vs_bridge
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            gx + group_w * 0.4,
            h - bottom + 18.0,
            m.label
        );
    }
    for (j, topo) in order.iter().enumerate() {
        let x = left + 120.0 * j as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{topo}</text>",
            h - 40.0,
            colors[j % colors.len()],
            x + 16.0,
            h - 30.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(round: u32, topo: &str, metric: &str, value: f64) -> Sample {
        Sample { round, topology: topo.into(), metric: metric.into(), value, load1: 0.0 }
    }

    #[test]
    fn ratios_are_medians_of_per_round_ratios() {
        let s = vec![
            sample(0, "bridge", "udp_pps", 100.0),
            sample(0, "docker", "udp_pps", 50.0),
            sample(0, "netd", "udp_pps", 150.0),
            sample(1, "bridge", "udp_pps", 200.0),
            sample(1, "docker", "udp_pps", 100.0),
            sample(1, "netd", "udp_pps", 260.0),
            sample(2, "bridge", "udp_pps", 100.0),
            sample(2, "docker", "udp_pps", 80.0),
            sample(2, "netd", "udp_pps", 120.0),
            sample(0, "bridge", "rr_mean_us", 20.0),
            sample(0, "netd", "rr_mean_us", 10.0),
        ];
        let sum = summarize(&s);
        let netd = &sum["udp_pps"]["netd"];
        assert!((netd.vs_bridge - 1.3).abs() < 1e-9, "{netd:?}");
        assert!((netd.vs_docker - 2.6).abs() < 1e-9, "{netd:?}");
        assert_eq!((netd.min, netd.median, netd.max), (120.0, 150.0, 260.0));
        // Lower is better: bridge/netd.
        assert!((sum["rr_mean_us"]["netd"].vs_bridge - 2.0).abs() < 1e-9);
        let md = markdown(&sum, &["bridge", "docker", "netd"]);
        assert!(md.contains("| UDP 64-byte frames received (pps) | netd | 120 | 150 | 260 | 1.30× | 2.60× |"), "{md}");
        assert!(svg(&sum, &["bridge", "docker", "netd"]).starts_with("<svg"));
    }
}
