//! `GET /containers/{id}/stats` and `GET /containers/{id}/top`: what a sandbox's processes
//! use, and which they are, in Docker's shapes, so that `docker stats` and `docker top` work
//! against netd (see `daemon/usage.rs` for which processes are a sandbox's).

use serde_json::{json, Map, Value};

use crate::daemon::usage::{Top, UsageSample};

/// How often a stream of stats says more, as dockerd's collector.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The CPU fields of one sample (`cpu_stats`, or `precpu_stats` for the one before).
fn cpu_stats(s: Option<&UsageSample>) -> Value {
    let Some(s) = s else {
        // No sample before (`one-shot`, a stream's first): zeros, as Docker's.
        return json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        });
    };
    json!({
        "cpu_usage": {
            "total_usage": s.usage.cpu_ns(),
            "usage_in_kernelmode": s.usage.cpu_kernel_ns,
            "usage_in_usermode": s.usage.cpu_user_ns,
        },
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
    })
}

/// One stats object (`s`, with `pre` the sample before it if any), as dockerd writes it on
/// cgroup v2.
pub fn stats_json(s: &UsageSample, pre: Option<&UsageSample>) -> Value {
    let u = &s.usage;
    let mut v = json!({
        "name": format!("/{}", s.name),
        "id": s.id,
        "read": s.read,
        "preread": pre.map_or("0001-01-01T00:00:00Z", |p| p.read.as_str()),
        "pids_stats": { "current": u.tasks },
        "blkio_stats": {
            "io_service_bytes_recursive": [
                { "major": 0, "minor": 0, "op": "read", "value": u.read_bytes },
                { "major": 0, "minor": 0, "op": "write", "value": u.write_bytes },
            ],
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats(Some(s)),
        "precpu_stats": cpu_stats(pre),
        "memory_stats": {
            "usage": u.memory.total(),
            "stats": { "anon": u.memory.anon, "file": u.memory.file, "shmem": u.memory.shmem },
            "limit": s.memory_limit,
        },
    });
    if let Some(networks) = &s.networks {
        let by_name: Map<String, Value> = networks
            .iter()
            .map(|(name, d)| {
                let counters = json!({
                    "rx_bytes": d.rx_bytes,
                    "rx_packets": d.rx_packets,
                    "rx_errors": d.rx_errors,
                    "rx_dropped": d.rx_dropped,
                    "tx_bytes": d.tx_bytes,
                    "tx_packets": d.tx_packets,
                    "tx_errors": d.tx_errors,
                    "tx_dropped": d.tx_dropped,
                });
                (name.clone(), counters)
            })
            .collect();
        v["networks"] = Value::Object(by_name);
    }
    v
}

/// `docker top`'s answer.
pub fn top_json(t: &Top) -> Value {
    json!({ "Titles": t.titles, "Processes": t.processes })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::stats_json;
    use crate::{
        daemon::usage::UsageSample,
        procfs::{Memory, NetDev, Usage},
    };

    fn sample(cpu: u64, system: u64) -> UsageSample {
        UsageSample {
            id: "abc".into(),
            name: "web".into(),
            read: format!("2026-12-02T10:00:0{}.000000000Z", system / 1000),
            usage: Usage {
                cpu_user_ns: cpu,
                cpu_kernel_ns: 5,
                memory: Memory { anon: 100, file: 20, shmem: 3 },
                read_bytes: 7,
                write_bytes: 9,
                tasks: 3,
            },
            system_cpu_ns: system,
            online_cpus: 2,
            memory_limit: 1 << 30,
            networks: Some(BTreeMap::from([(
                "eth0".to_owned(),
                NetDev { rx_bytes: 1000, tx_bytes: 500, ..NetDev::default() },
            )])),
        }
    }

    /// The fields the docker CLI reads for its columns, where it reads them.
    #[test]
    fn stats_carry_what_the_docker_cli_computes_its_columns_from() {
        let (pre, now) = (sample(100, 1000), sample(600, 2000));
        let v = stats_json(&now, Some(&pre));
        assert_eq!(v["name"], "/web");
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 605);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 105);
        assert_eq!(v["cpu_stats"]["system_cpu_usage"], 2000);
        assert_eq!(v["precpu_stats"]["system_cpu_usage"], 1000);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["preread"], pre.read);
        assert_eq!(v["memory_stats"]["usage"], 123);
        assert_eq!(v["memory_stats"]["limit"], 1 << 30);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 1000);
        assert_eq!(v["networks"]["eth0"]["tx_bytes"], 500);
        let ops: Vec<(&str, u64)> = v["blkio_stats"]["io_service_bytes_recursive"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["op"].as_str().expect("op"), e["value"].as_u64().expect("value")))
            .collect();
        assert_eq!(ops, [("read", 7), ("write", 9)]);
        // Without a sample before: zeros, and no network on the host's.
        let mut host = sample(1, 1);
        host.networks = None;
        let v = stats_json(&host, None);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert!(v["precpu_stats"].get("system_cpu_usage").is_none());
        assert!(v.get("networks").is_none());
    }
}
