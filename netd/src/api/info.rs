//! `GET /info`, what `docker info` shows: Docker's system information, with what netd has in
//! place of containers (its sandboxes), its network drivers, and the host's facts (kernel, OS,
//! CPUs, memory, the daemon namespace's IPv4 forwarding). What only an engine has (images,
//! storage, runtimes, registries, swarm) is there empty, or inactive, so that clients that read
//! it find the fields they expect.

use crate::{
    daemon::Daemon,
    model::{ids, ProcessRef},
};

/// The body of `GET /info`.
pub async fn system_info(daemon: &Daemon) -> serde_json::Value {
    let state = daemon.snapshot().await;
    let sandboxes = state.sandboxes.len();
    let running = state.sandboxes.values().filter(|s| s.processes.iter().any(ProcessRef::is_running)).count();
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
    let forwarding = read("/proc/sys/net/ipv4/ip_forward") == "1";
    let mut info = serde_json::json!({
        "ID": state.engine_id,
        "Containers": sandboxes,
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": sandboxes - running,
        "Images": 0,
        "Driver": "",
        "DriverStatus": [],
        "Plugins": { "Volume": [], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": [] },
        "MemoryLimit": false,
        "SwapLimit": false,
        "CpuCfsPeriod": false,
        "CpuCfsQuota": false,
        "CPUShares": false,
        "CPUSet": false,
        "PidsLimit": false,
        "OomKillDisable": false,
        "IPv4Forwarding": forwarding,
        // netd moves bridged packets in eBPF: neither br_netfilter nor iptables is involved.
        "BridgeNfIptables": false,
        "BridgeNfIp6tables": false,
        "Debug": false,
        "NFd": open_files(),
        "NGoroutines": 0,
        "SystemTime": ids::now_rfc3339(),
        "LoggingDriver": "",
        "CgroupDriver": "",
        "CgroupVersion": "",
        "NEventsListener": 0,
    });
    // Two halves: one `json!` of all of it is past the macro's recursion limit.
    let host = serde_json::json!({
        "KernelVersion": read("/proc/sys/kernel/osrelease"),
        "OperatingSystem": os_release("PRETTY_NAME").unwrap_or_else(|| "Linux".into()),
        "OSVersion": os_release("VERSION_ID").unwrap_or_default(),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "",
        "RegistryConfig": null,
        "NCPU": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "MemTotal": mem_total_bytes(&read("/proc/meminfo")),
        "GenericResources": null,
        "DockerRootDir": daemon.cfg.state_dir.display().to_string(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": read("/proc/sys/kernel/hostname"),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null
        },
        // Sandboxes, their networks and the datapath outlive the daemon: a restarted one
        // takes them over, as a live-restore Docker daemon does its containers.
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "", "Expected": "" },
        "RuncCommit": { "ID": "", "Expected": "" },
        "InitCommit": { "ID": "", "Expected": "" },
        "SecurityOptions": [],
        "Warnings": [],
    });
    if let (Some(info), serde_json::Value::Object(host)) = (info.as_object_mut(), host) {
        info.extend(host);
    }
    info
}

/// How many files the daemon has open.
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// A field of `/etc/os-release` (quotes removed).
fn os_release(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// `MemTotal` of `/proc/meminfo` (`meminfo`), in bytes.
fn mem_total_bytes(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_memory_is_read_in_bytes() {
        assert_eq!(mem_total_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), 24_576_000 * 1024);
        assert_eq!(mem_total_bytes("nothing here"), 0);
    }
}
