//! `GET /containers/json` and `GET /containers/{id}/json`: netd's sandboxes as Docker's
//! containers, so that `docker ps`, `docker inspect` and `docker port` work against netd. A
//! sandbox is a container without an image: running while a process started in it lives,
//! exited after (with its command's exit code when `netd run` started it). Its networks, addresses, published ports, host
//! name, DNS settings and files are Docker's fields; what only an engine has (images, mounts,
//! logs, resources) is there empty.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{filters::Filters, types::SandboxResource};
use crate::model::{ids, Sandbox, SandboxMode, State};

/// The filters `docker ps -f` may give; those about what sandboxes never have (an image, a
/// volume, a label) match nothing; `exited` matches the exit codes netd knows.
pub const LIST_FILTERS: [&str; 10] =
    ["id", "name", "network", "status", "label", "publish", "expose", "ancestor", "volume", "exited"];

/// The states `status=` accepts, as Docker's.
const STATES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

/// Checks the values Docker checks.
pub fn check_list_filters(f: &Filters) -> Result<(), String> {
    for s in f.values("status") {
        if !STATES.contains(&s.as_str()) {
            return Err(format!("invalid filter 'status={s}'"));
        }
    }
    for e in f.values("exited") {
        if e.parse::<i32>().is_err() {
            return Err(format!("invalid filter 'exited={e}'"));
        }
    }
    Ok(())
}

/// One sandbox as the list of `GET /containers/json` shows it (`r`: its netd resource).
pub fn list_entry(s: &Sandbox, r: &SandboxResource, now_secs: i64) -> Value {
    let ports: Vec<Value> = r
        .ports
        .iter()
        .flat_map(|(spec, bindings)| {
            let (port, proto) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
            let port: u16 = port.parse().unwrap_or(0);
            bindings.iter().map(move |b| {
                json!({
                    "IP": b.host_ip,
                    "PrivatePort": port,
                    "PublicPort": b.host_port.parse::<u16>().unwrap_or(0),
                    "Type": proto,
                })
            })
        })
        .collect();
    let created = ids::unix_secs(&r.created).unwrap_or(0);
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": "",
        "ImageID": "",
        "Command": r.command.join(" "),
        "Created": created,
        "Ports": ports,
        "Labels": {},
        "State": state_name(r),
        "Status": status(r, now_secs - ids::unix_secs(&r.started_at).unwrap_or(created)),
        "HostConfig": { "NetworkMode": network_mode(s, r) },
        "NetworkSettings": { "Networks": endpoints(r) },
        "Mounts": [],
    })
}

/// Whether the sandbox passes `f` (the values of one key are alternatives; every key must
/// match), as `docker ps -f` filters containers.
pub fn passes(f: &Filters, r: &SandboxResource) -> bool {
    let published = |v: &str, host: bool| {
        let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
        r.ports.iter().any(|(spec, bindings)| {
            let (cport, cproto) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
            cproto == proto && if host { bindings.iter().any(|b| b.host_port == port) } else { cport == port }
        })
    };
    f.any("id", |v| r.id.starts_with(v))
        && f.any("name", |v| r.name.contains(v.trim_start_matches('/')))
        && f.any("network", |v| r.networks.iter().any(|(name, n)| name == v || n.network_id.starts_with(v)))
        && f.any("status", |v| v == state_name(r))
        && f.any("publish", |v| published(v, true))
        && f.any("expose", |v| published(v, false))
        && f.any("exited", |v| !r.running && r.exit_code.is_some_and(|c| v.parse() == Ok(c)))
        && ["label", "ancestor", "volume"].iter().all(|k| f.values(k).is_empty())
}

/// One sandbox as `GET /containers/{id}/json` shows it (`r`: its netd resource).
pub fn inspect(s: &Sandbox, r: &SandboxResource) -> Value {
    let running = r.running;
    let port_bindings: BTreeMap<&String, Vec<Value>> = r
        .ports
        .iter()
        .map(|(spec, b)| (spec, b.iter().map(|b| json!({ "HostIp": b.host_ip, "HostPort": b.host_port })).collect()))
        .collect();
    let exposed: BTreeMap<&String, Value> = r.ports.keys().map(|k| (k, json!({}))).collect();
    let extra_hosts: Vec<String> = s.extra_hosts.iter().map(|(name, ip)| format!("{name}:{ip}")).collect();
    let (path, args) = r.command.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
    let state = json!({
        "Status": state_name(r),
        "Running": running,
        "Paused": false,
        "Restarting": false,
        "OOMKilled": false,
        "Dead": false,
        "Pid": r.pids.first().copied().unwrap_or(0),
        "ExitCode": r.exit_code.unwrap_or(0),
        "Error": "",
        "StartedAt": r.started_at,
        "FinishedAt": r.finished_at.as_deref().unwrap_or("0001-01-01T00:00:00Z"),
    });
    let host_config = json!({
        "NetworkMode": network_mode(s, r),
        "PortBindings": port_bindings,
        "AutoRemove": r.auto_remove,
        "Dns": s.dns.servers,
        "DnsSearch": s.dns.search,
        "DnsOptions": s.dns.options,
        "ExtraHosts": extra_hosts,
        "RestartPolicy": { "Name": "no", "MaximumRetryCount": 0 },
    });
    let config = json!({
        "Hostname": r.hostname,
        "Domainname": "",
        "User": s.user,
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "ExposedPorts": exposed,
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": [],
        "Cmd": r.command,
        "Image": "",
        "Volumes": null,
        "WorkingDir": s.working_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
        "Entrypoint": null,
        "Labels": {},
    });
    let network_settings = json!({
        "Bridge": "",
        "SandboxID": r.id,
        "SandboxKey": r.netns_path,
        "HairpinMode": false,
        "Ports": r.ports,
        "Networks": endpoints(r),
    });
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": path,
        "Args": args,
        "State": state,
        "Image": "",
        "ResolvConfPath": r.resolv_conf_path,
        "HostnamePath": "",
        "HostsPath": r.hosts_path,
        "LogPath": r.log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": 0,
        "Driver": "",
        "Platform": "linux",
        "HostConfig": host_config,
        "Mounts": [],
        "Config": config,
        "NetworkSettings": network_settings,
    })
}

/// Newest first, as Docker lists containers.
pub fn newest_first(list: &mut [(&Sandbox, SandboxResource)]) {
    list.sort_by(|(_, a), (_, b)| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
}

/// The sandboxes of `state` with their resources (`netns`: a sandbox's namespace path).
pub fn resources(state: &State, netns: impl Fn(&Sandbox) -> String) -> Vec<(&Sandbox, SandboxResource)> {
    state.sandboxes.values().map(|s| (s, SandboxResource::from_model(s, state, netns(s)))).collect()
}

fn state_name(r: &SandboxResource) -> &'static str {
    if r.running {
        "running"
    } else {
        "exited"
    }
}

/// `Up 5 minutes` as Docker says it (`up_secs` since its run started), or `Exited (N) 3
/// seconds ago`.
fn status(r: &SandboxResource, up_secs: i64) -> String {
    if r.running {
        return format!("Up {}", human_duration(up_secs));
    }
    let started = ids::unix_secs(&r.started_at);
    match (r.exit_code, r.finished_at.as_deref().and_then(ids::unix_secs), started) {
        (Some(code), Some(at), Some(started)) => {
            format!("Exited ({code}) {} ago", human_duration(up_secs + started - at))
        }
        _ => "Exited".into(),
    }
}

/// Docker's `HostConfig.NetworkMode`: `host`, `none`, or the first network it is on.
fn network_mode(s: &Sandbox, r: &SandboxResource) -> String {
    match s.mode {
        SandboxMode::Host => "host".into(),
        SandboxMode::Private => r.networks.keys().next().cloned().unwrap_or_else(|| "none".into()),
    }
}

/// `NetworkSettings.Networks`: Docker's endpoint settings per network name.
fn endpoints(r: &SandboxResource) -> BTreeMap<&String, Value> {
    r.networks
        .iter()
        .map(|(name, n)| {
            (
                name,
                json!({
                    "IPAMConfig": null,
                    "Links": null,
                    "Aliases": n.aliases,
                    "MacAddress": n.mac_address,
                    "NetworkID": n.network_id,
                    "EndpointID": n.endpoint_id,
                    "Gateway": n.gateway,
                    "IPAddress": n.ip_address,
                    "IPPrefixLen": n.ip_prefix_len,
                    "IPv6Gateway": "",
                    "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0,
                    "DriverOpts": null,
                    "DNSNames": null,
                }),
            )
        })
        .collect()
}

/// A duration as Docker's `units.HumanDuration` says it.
fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    // Hours round to the nearest, as Docker's.
    let hours = (secs + 1800) / 3600;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        // Years from the whole hours, as Docker's.
        format!("{} years", secs / 3600 / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (15 * 86_400, "2 weeks"),
            (61 * 86_400, "2 months"),
            (800 * 86_400, "2 years"),
        ];
        for (secs, said) in cases {
            assert_eq!(human_duration(secs), said, "{secs}");
        }
    }

    #[test]
    fn bad_status_and_exit_code_filters_are_refused_as_dockers() {
        let f = Filters::parse_keys(Some(r#"{"status":{"sleeping":true}}"#), &LIST_FILTERS).expect("parse");
        assert_eq!(check_list_filters(&f), Err("invalid filter 'status=sleeping'".into()));
        let f = Filters::parse_keys(Some(r#"{"exited":["x"]}"#), &LIST_FILTERS).expect("parse");
        assert_eq!(check_list_filters(&f), Err("invalid filter 'exited=x'".into()));
        let f = Filters::parse_keys(Some(r#"{"status":["exited"],"exited":["0"]}"#), &LIST_FILTERS).expect("parse");
        assert_eq!(check_list_filters(&f), Ok(()));
    }
}
