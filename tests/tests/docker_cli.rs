//! The stock docker CLI against netd's API: `DOCKER_HOST=unix://… docker network …`.

use netd_tests::daemon::{Run, TestDaemon};
use serde_json::Value;

fn docker(d: &TestDaemon, args: &[&str]) -> Run {
    d.docker(args).expect("the docker CLI is installed by `cargo xtask setup`")
}

#[test]
fn docker_network_verbs_work_against_netd() {
    let d = TestDaemon::start(&[]);
    let version = docker(&d, &["version", "--format", "{{.Server.APIVersion}}"]).ok();
    assert_eq!(version.trim(), "1.41");

    let ls = docker(&d, &["network", "ls"]).ok();
    let mut lines = ls.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows.iter().map(|r| (r[1], r[2])).collect::<Vec<_>>(),
        [("bridge", "bridge"), ("host", "host"), ("none", "null")]
    );
    // Docker 28's IPv4 column: every netd network has IPv4 (and no IPv6).
    let families = docker(&d, &["network", "ls", "--format", "{{.Name}} {{.IPv4}} {{.IPv6}}"]).ok();
    assert_eq!(families.lines().collect::<Vec<_>>(), ["bridge true false", "host true false", "none true false"]);

    let id = docker(&d, &["network", "create", "my_net"]).ok().trim().to_owned();
    assert_eq!(id.len(), 64);
    docker(
        &d,
        &[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            "172.22.16.0/24",
            "--gateway",
            "172.22.16.1",
            "--ip-range",
            "172.22.16.128/25",
            "--aux-address",
            "a=172.22.16.130",
            "--label",
            "team=x",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "my_net2",
        ],
    )
    .ok();
    // The same network is visible through netd's own CLI.
    assert!(d.netd(&["network", "ls"]).ok().contains("my_net2"));

    let inspect: Value = serde_json::from_str(&docker(&d, &["network", "inspect", "my_net2"]).ok()).unwrap();
    let n = &inspect[0];
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "172.22.16.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "172.22.16.128/25");
    assert_eq!(n["IPAM"]["Config"][0]["AuxiliaryAddresses"]["a"], "172.22.16.130");
    assert_eq!(n["Labels"]["team"], "x");
    assert_eq!(n["Options"]["com.docker.network.bridge.enable_icc"], "false");
    let subnet = docker(&d, &["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "my_net"]).ok();
    assert_eq!(subnet.trim(), "172.18.0.0/16");

    let filtered = docker(&d, &["network", "ls", "-q", "--filter", "name=my_net2"]).ok();
    assert_eq!(filtered.trim(), &n["Id"].as_str().unwrap()[..12]);
    let custom = docker(&d, &["network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"]).ok();
    assert_eq!(custom.lines().collect::<Vec<_>>(), ["my_net", "my_net2"]);

    // connect / disconnect a netd sandbox.
    d.netd(&["run", "-d", "--name", "web", "--", "sleep", "60"]).ok();
    docker(&d, &["network", "connect", "--ip", "172.22.16.200", "my_net2", "web"]).ok();
    let members =
        docker(&d, &["network", "inspect", "-f", "{{range .Containers}}{{.Name}}={{.IPv4Address}} {{end}}", "my_net2"])
            .ok();
    assert_eq!(members.trim(), "web=172.22.16.200/24");
    let dangling = docker(&d, &["network", "ls", "--filter", "dangling=true", "--format", "{{.Name}}"]).ok();
    assert_eq!(dangling.trim(), "my_net", "my_net2 has web, the predefined networks never dangle");
    let eth1 = d.netd(&["exec", "web", "--", "ip", "-o", "-4", "addr", "show", "eth1"]).ok();
    assert!(eth1.contains("172.22.16.200/24"));
    docker(&d, &["network", "rm", "my_net2"]).fails_with("has active endpoints");
    docker(&d, &["network", "disconnect", "my_net2", "web"]).ok();
    assert!(d.netd(&["exec", "web", "--", "ip", "-o", "link"]).ok().lines().count() == 2);

    assert_eq!(docker(&d, &["network", "rm", "my_net2", "my_net"]).ok(), "my_net2\nmy_net\n");
    let pruned = docker(&d, &["network", "prune", "-f"]).ok();
    assert_eq!(pruned, "", "nothing left to prune");
}

#[test]
fn docker_cli_shows_netds_errors() {
    let d = TestDaemon::start(&[]);
    docker(&d, &["network", "create", "--subnet", "172.30.0.0/16", "n1"]).ok();
    for (args, message) in [
        (vec!["network", "create", "n1"], "Error response from daemon: network with name n1 already exists"),
        (
            vec!["network", "create", "--subnet", "172.30.1.0/24", "n2"],
            "Error response from daemon: Pool overlaps with other one on this address space",
        ),
        (
            vec!["network", "rm", "bridge"],
            "Error response from daemon: bridge is a pre-defined network and cannot be removed",
        ),
        (
            vec!["network", "create", "-d", "host", "h"],
            "Error response from daemon: only one instance of \"host\" network is allowed",
        ),
        (
            vec!["network", "create", "-o", "com.docker.network.driver.mtu=-1", "m"],
            "Error response from daemon: invalid MTU number: -1",
        ),
        (
            vec!["network", "create", "--ipv4=false", "v6only"],
            "Error response from daemon: IPv6-only networks are not supported by netd: its networks are IPv4",
        ),
        (vec!["network", "inspect", "nosuch"], "network nosuch not found"),
        (vec!["network", "rm", "nosuch"], "network nosuch not found"),
        (vec!["network", "connect", "n1", "nosuch"], "No such container: nosuch"),
    ] {
        docker(&d, &args).fails_with(message);
    }
    // Address errors through `docker network connect`.
    let auto = docker(&d, &["network", "create", "auto"]).ok();
    assert_eq!(auto.trim().len(), 64);
    d.netd(&["run", "-d", "--name", "holder", "--network", "n1", "--ip", "172.30.0.9", "--", "sleep", "60"]).ok();
    d.netd(&["run", "-d", "--name", "other", "--network", "none", "--", "sleep", "60"]).ok();
    d.netd(&["run", "-d", "--name", "third", "--", "sleep", "60"]).ok();
    docker(&d, &["network", "connect", "--ip", "172.30.0.9", "n1", "third"])
        .fails_with("Error response from daemon: Address already in use");
    docker(&d, &["network", "connect", "--ip", "172.19.0.9", "auto", "third"]).fails_with(
        "Error response from daemon: User specified IP address is supported only when connecting to networks with user configured subnets",
    );
    docker(&d, &["network", "connect", "--ip", "10.9.9.9", "n1", "third"]).fails_with(
        "Error response from daemon: Invalid address 10.9.9.9: It does not belong to any of this network's subnets",
    );
    docker(&d, &["network", "connect", "n1", "other"]).fails_with("private (none) mode");
    docker(&d, &["network", "connect", "n1", "holder"])
        .fails_with("endpoint with name holder already exists in network n1");
    docker(&d, &["network", "disconnect", "bridge", "holder"]).fails_with("is not connected to network bridge");
    docker(&d, &["network", "rm", "n1"]).fails_with("has active endpoints");
    // A /30 has one address besides its gateway.
    let tiny = docker(&d, &["network", "create", "--subnet", "10.33.0.0/30", "tiny"]).ok().trim().to_owned();
    docker(&d, &["network", "connect", "tiny", "third"]).ok();
    docker(&d, &["network", "connect", "tiny", "holder"]).fails_with(&format!(
        "Error response from daemon: no available IPv4 addresses on this network's address pools: tiny ({tiny})"
    ));
    docker(&d, &["network", "create", "--subnet", "10.34.0.7/24", "hostbits"])
        .fails_with("invalid subnet 10.34.0.7/24: it should be 10.34.0.0/24");
    docker(&d, &["network", "disconnect", "tiny", "third"]).ok();
    docker(&d, &["network", "rm", "tiny"]).ok();
    d.netd(&["rm", "-f", "holder", "other", "third"]).ok();
    docker(&d, &["network", "rm", "auto"]).ok();

    // The CLI's own checks still apply, before any request.
    docker(&d, &["network", "create", "--subnet", "10.1.0.0/24", "--gateway", "10.2.0.1", "g"])
        .fails_with("no matching subnet for gateway 10.2.0.1");
    assert_eq!(docker(&d, &["network", "ls", "-q"]).ok().lines().count(), 4, "bridge, host, none, n1");
}

#[test]
fn docker_info_shows_netds_sandboxes_drivers_and_a_lasting_id() {
    let mut d = TestDaemon::start(&[]);
    d.netd(&["run", "-d", "--name", "up", "--", "sleep", "60"]).ok();
    d.netd(&["run", "-d", "--name", "done", "--", "true"]).ok();
    let format = "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.Plugins.Network}} \
                  {{.Swarm.LocalNodeState}} {{.OSType}} {{.LiveRestoreEnabled}} {{.IPv4Forwarding}}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let summary = loop {
        let summary = docker(&d, &["info", "--format", format]).ok();
        // `true` exits at once; `sleep` runs on.
        if summary.starts_with("2 1 1") || std::time::Instant::now() > deadline {
            break summary;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(summary.trim(), "2 1 1 0 [bridge host null] inactive linux true true");
    let id = docker(&d, &["info", "--format", "{{.ID}}"]).ok().trim().to_owned();
    assert_eq!(id.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12], "a UUID: {id}");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel");
    assert_eq!(docker(&d, &["info", "--format", "{{.KernelVersion}}"]).ok().trim(), kernel.trim());
    // The same daemon after a restart: the same ID.
    d.stop();
    d.restart();
    assert_eq!(docker(&d, &["info", "--format", "{{.ID}}"]).ok().trim(), id);
}

#[test]
fn docker_ps_inspect_and_port_show_netds_sandboxes_as_containers() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--subnet", "172.31.5.0/24", "web"]).ok();
    let run = ["run", "-d", "--name", "api", "--network", "web", "--ip", "172.31.5.9", "-p", "127.0.0.1:8080:80"];
    d.netd(&[&run[..], &["--", "sleep", "60"]].concat()).ok();
    d.netd(&["run", "-d", "--name", "gone", "--", "true"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let all = loop {
        let all = docker(&d, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]).ok();
        if all.contains("gone exited") || std::time::Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(all.lines().collect::<Vec<_>>(), ["gone exited", "api running"], "newest first");

    // Running ones only, by default; Docker's columns.
    let ps = docker(&d, &["ps", "--format", "{{.Names}}|{{.Ports}}|{{.Networks}}|{{.Command}}"]).ok();
    assert_eq!(ps.trim(), "api|127.0.0.1:8080->80/tcp|web|\"sleep 60\"");
    assert!(docker(&d, &["ps", "--format", "{{.Status}}"]).ok().starts_with("Up "));
    let api_id = d.netd(&["inspect", "api"]).ok();
    let api_id = serde_json::from_str::<Value>(&api_id).expect("JSON")[0]["Id"].as_str().expect("id").to_owned();
    for (filter, shown) in [
        ("status=exited", "gone"),
        ("network=web", "api"),
        ("publish=8080", "api"),
        ("expose=80/tcp", "api"),
        ("publish=9999", ""),
        ("name=gon", "gone"),
        (&format!("id={}", &api_id[..10]), "api"),
        ("label=a=b", ""),
    ] {
        let got = docker(&d, &["ps", "-a", "-f", filter, "--format", "{{.Names}}"]).ok();
        assert_eq!(got.trim(), shown, "{filter}");
    }
    docker(&d, &["ps", "-f", "status=sleeping"]).fails_with("invalid filter 'status=sleeping'");

    let format = "{{.Name}} {{.NetworkSettings.Networks.web.IPAddress}} {{.State.Status}} {{.HostConfig.NetworkMode}}";
    assert_eq!(docker(&d, &["inspect", "-f", format, "api"]).ok().trim(), "/api 172.31.5.9 running web");
    assert_eq!(docker(&d, &["inspect", "-f", "{{.State.Running}} {{.Path}}", "gone"]).ok().trim(), "false true");
    assert_eq!(docker(&d, &["port", "api"]).ok().trim(), "80/tcp -> 127.0.0.1:8080");
    docker(&d, &["inspect", "nosuch"]).fails_with("No such object: nosuch");
    docker(&d, &["inspect", "--type", "container", "nosuch"]).fails_with("No such container: nosuch");

    // `docker kill`, `stop` and `rm` act on sandboxes as on containers.
    d.netd(&["run", "-d", "--name", "killed", "--", "sleep", "60"]).ok();
    assert_eq!(docker(&d, &["kill", "--signal", "TERM", "killed"]).ok().trim(), "killed");
    let state_of = |name: &str| docker(&d, &["inspect", "-f", "{{.State.Status}}", name]).ok().trim().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state_of("killed") != "exited" {
        assert!(std::time::Instant::now() < deadline, "killed exits on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    docker(&d, &["kill", "killed"]).fails_with("is not running");
    docker(&d, &["kill", "--signal", "NOPE", "api"]).fails_with("Invalid signal: NOPE");
    assert_eq!(docker(&d, &["stop", "-t", "1", "api"]).ok().trim(), "api");
    assert_eq!(state_of("api"), "exited");
    assert_eq!(docker(&d, &["stop", "api"]).ok().trim(), "api", "stopped already: nothing to do");
    assert_eq!(docker(&d, &["rm", "api", "killed"]).ok().lines().collect::<Vec<_>>(), ["api", "killed"]);
    let web: Value = serde_json::from_str(&docker(&d, &["network", "inspect", "web"]).ok()).expect("JSON");
    assert_eq!(web[0]["Containers"], serde_json::json!({}), "api's endpoint went with it");
    d.netd(&["run", "-d", "--name", "busy", "--", "sleep", "60"]).ok();
    docker(&d, &["rm", "busy"]).fails_with("Stop the container before attempting removal or force remove");
    assert_eq!(docker(&d, &["rm", "-f", "busy"]).ok().trim(), "busy");
    assert_eq!(docker(&d, &["ps", "-aq"]).ok().lines().count(), 1, "gone is left");
    docker(&d, &["stop", "nosuch"]).fails_with("No such container: nosuch");
}

#[test]
fn docker_events_shows_netds_network_events() {
    let d = TestDaemon::start(&[]);
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    // `--since` replays from then on and the stream goes on: nothing is missed before the CLI
    // has connected.
    let since = (now() - 1).to_string();
    let live = d
        .docker_streaming(&[
            "events",
            "--since",
            &since,
            "--filter",
            "type=network",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .expect("the docker CLI is installed by `cargo xtask setup`");
    d.netd(&["network", "create", "n1"]).ok();
    d.netd(&["run", "-d", "--name", "s1", "--network", "n1", "--", "sleep", "60"]).ok();
    d.netd(&["network", "disconnect", "n1", "s1"]).ok();
    d.netd(&["network", "rm", "n1"]).ok();
    let deadline = std::time::Duration::from_secs(10);
    let lines: Vec<String> = (0..4).map(|_| live.line(deadline).expect("an event")).collect();
    assert_eq!(lines, ["create n1", "connect n1", "disconnect n1", "destroy n1"]);

    // Replayed up to `--until`, then the stream ends; as JSON, with the container connected.
    let until = (now() + 1).to_string();
    let out = docker(
        &d,
        &["events", "--since", &since, "--until", &until, "--filter", "event=connect", "--format", "{{json .}}"],
    )
    .ok();
    let e: Value = serde_json::from_str(out.trim()).expect("one JSON event");
    let sandbox = d.netd(&["ps", "-q", "--no-trunc"]).ok();
    assert_eq!(e["Type"], "network");
    assert_eq!(e["Action"], "connect");
    assert_eq!(e["Actor"]["Attributes"]["name"], "n1");
    assert_eq!(e["Actor"]["Attributes"]["type"], "bridge");
    assert_eq!(e["Actor"]["Attributes"]["container"].as_str(), Some(sandbox.trim()));
    assert_eq!(e["scope"], "local");
    // By network, and nothing for filters about other kinds of objects.
    let by_network = docker(
        &d,
        &["events", "--since", &since, "--until", &until, "--filter", "network=n1", "--format", "{{.Action}}"],
    )
    .ok();
    assert_eq!(by_network.lines().count(), 4, "{by_network}");
    let others = docker(&d, &["events", "--since", &since, "--until", &until, "--filter", "image=n1"]).ok();
    assert_eq!(others, "");
    docker(&d, &["events", "--filter", "bogus=1"]).fails_with("invalid filter 'bogus'");
}

/// Sandboxes come and go in `docker events` as Docker's containers do: `create` and `start`
/// from `netd run -d`; `kill` (with the signal), `die` and `stop` from `docker stop`; `kill`
/// from `docker kill`; `die` when the process ends by itself; `destroy` from `docker rm` and
/// for a `--rm` sandbox. Filters by container (the front of its name or id), by type and by
/// event, as Docker's.
#[test]
fn docker_events_shows_sandboxes_as_containers_come_and_go() {
    let d = TestDaemon::start(&[]);
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.signal}}";
    // From a second ago: nothing is missed before the CLI has connected.
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let since = (now() - 1).to_string();
    let live = d
        .docker_streaming(&["events", "--since", &since, "--filter", "type=container", "--format", format])
        .expect("the docker CLI is installed by `cargo xtask setup`");
    let deadline = std::time::Duration::from_secs(10);
    let next = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| live.line(deadline).expect("an event").trim().replace("<no value>", "").trim().to_owned())
            .collect()
    };
    d.netd(&["run", "-d", "--name", "web", "--", "sleep", "300"]).ok();
    assert_eq!(next(2), ["container create web", "container start web"]);
    // A signal sleep ignores: it goes on.
    docker(&d, &["kill", "-s", "WINCH", "web"]).ok();
    assert_eq!(next(1), ["container kill web 28"]);
    docker(&d, &["stop", "-t", "5", "web"]).ok();
    assert_eq!(next(3), ["container kill web 15", "container die web", "container stop web"]);
    docker(&d, &["rm", "web"]).ok();
    assert_eq!(next(1), ["container destroy web"]);
    // A process that ends by itself, in a sandbox that goes with it.
    d.netd(&["run", "-d", "--rm", "--name", "brief", "--", "sleep", "0.3"]).ok();
    assert_eq!(
        next(4),
        ["container create brief", "container start brief", "container die brief", "container destroy brief"]
    );
    // Forced removal of a running one.
    d.netd(&["run", "-d", "--name", "busy", "--", "sleep", "300"]).ok();
    assert_eq!(next(2), ["container create busy", "container start busy"]);
    docker(&d, &["rm", "-f", "busy"]).ok();
    assert_eq!(next(3), ["container kill busy 9", "container die busy", "container destroy busy"]);

    // Replayed, with Docker's filters: a container's events by the front of its name, network
    // events kept out by type, and an event filter.
    let until = (now() + 1).to_string();
    let replay = |filters: &[&str]| {
        let mut args = vec![
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ];
        for f in filters {
            args.extend(["--filter", f]);
        }
        docker(&d, &args).ok()
    };
    let web = replay(&["container=we"]);
    assert_eq!(web.lines().filter(|l| l.starts_with("container ")).count(), 7, "{web}");
    assert!(web.lines().all(|l| l.ends_with(" web")), "{web}");
    let dies = replay(&["type=container", "event=die"]);
    assert_eq!(dies.lines().collect::<Vec<_>>(), ["container die web", "container die brief", "container die busy"]);
    let by_id = docker(&d, &["ps", "-aq"]).ok();
    assert!(by_id.trim().is_empty(), "all gone: {by_id}");
    assert_eq!(replay(&["type=container", "image=web"]), "", "sandboxes have no image");
}

/// A process of the test's own, killed and reaped on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on the daemon's API, as JSON.
fn api_json(d: &TestDaemon, path: &str) -> (String, Value) {
    let socket = std::os::unix::net::UnixStream::connect(d.socket().trim_start_matches("unix://")).expect("API socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let (status, body) = netd_tests::daemon::http_get(socket, path);
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// The first `n` objects of a streamed JSON answer (chunked, one object a line).
fn api_stream(d: &TestDaemon, path: &str, n: usize) -> Vec<Value> {
    use std::io::{BufRead as _, Write as _};
    let mut socket =
        std::os::unix::net::UnixStream::connect(d.socket().trim_start_matches("unix://")).expect("API socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    write!(socket, "GET {path} HTTP/1.1\r\nHost: netd\r\n\r\n").expect("request");
    let lines = std::io::BufReader::new(socket).lines();
    lines
        .map(|l| l.expect("a line within 10 s"))
        .filter(|l| l.starts_with('{'))
        .take(n)
        .map(|l| serde_json::from_str(&l).expect("a JSON object"))
        .collect()
}

/// `docker stats` and `docker top` show a sandbox as a container: the processes in its network
/// namespace (whoever started them) and only those, the CPU a busy one burns, its memory, and
/// its `eth0`'s counters as the kernel keeps them; streamed a sample a second, or once. A
/// stopped one runs nothing.
#[test]
fn docker_stats_and_top_show_a_sandboxs_processes_and_traffic() {
    let d = TestDaemon::start(&[]);
    d.netd(&["run", "-d", "--name", "web", "--", "sh", "-c", "sleep 300 & sleep 300 & wait"]).ok();
    d.netd(&["run", "-d", "--name", "busy", "--", "sh", "-c", "while :; do :; done"]).ok();
    let ip = docker(&d, &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web"]).ok();
    // Traffic to web from the host: five 1,000-byte pings and their answers.
    d.host().exec_ok("ping", &["-c", "5", "-i", "0.2", "-s", "1000", ip.trim()]);
    // A process netd did not start, in web's namespace, is one of web's.
    let netns = d.sandbox_netns("web");
    let joined = Reaped(
        std::process::Command::new("nsenter")
            .args([&format!("--net={netns}"), "sleep", "300"])
            .spawn()
            .expect("nsenter"),
    );

    // The kernel's own counters of web's eth0, read inside its namespace.
    let kernel = || -> [u64; 3] {
        let out = std::process::Command::new("nsenter")
            .args([&format!("--net={netns}"), "ip", "-j", "-s", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        let k = &v[0]["stats64"];
        [&k["rx"]["bytes"], &k["tx"]["bytes"], &k["rx"]["packets"]].map(|c| c.as_u64().expect("a counter"))
    };
    let before = kernel();
    let (status, web) = api_json(&d, "/containers/web/stats?stream=0");
    let after = kernel();
    assert!(status.contains("200"), "{status}");
    assert_eq!(web["name"], "/web");
    assert_eq!(web["pids_stats"]["current"], 5, "sh, two sleeps, the joined one and netd's shim: {web}");
    let eth0 = &web["networks"]["eth0"];
    // Between the reads before and after (an ARP probe may come meanwhile).
    let shown = [&eth0["rx_bytes"], &eth0["tx_bytes"], &eth0["rx_packets"]].map(|c| c.as_u64().expect("a counter"));
    for i in 0..3 {
        assert!(before[i] <= shown[i] && shown[i] <= after[i], "{before:?} {shown:?} {after:?}");
    }
    assert!(eth0["rx_packets"].as_u64() >= Some(5) && eth0["tx_bytes"].as_u64() >= Some(5 * 1042), "{eth0}");
    assert!(web["networks"].get("lo").is_none());
    let mem_total: u64 = std::fs::read_to_string("/proc/meminfo")
        .expect("meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    assert_eq!(web["memory_stats"]["limit"], mem_total * 1024);
    assert!(web["memory_stats"]["usage"].as_u64() > Some(0));

    // The busy loop burned CPU between the two samples a second apart; web's sleeps did not.
    let (_, busy) = api_json(&d, "/containers/busy/stats?stream=false");
    let burned = |v: &Value| {
        v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().expect("cpu")
            - v["precpu_stats"]["cpu_usage"]["total_usage"].as_u64().expect("precpu")
    };
    assert!(burned(&busy) > 100_000_000, "{busy}");
    assert!(burned(&web) < burned(&busy), "{web}");
    assert!(busy["cpu_stats"]["system_cpu_usage"].as_u64() > busy["precpu_stats"]["system_cpu_usage"].as_u64());

    // Streamed: a sample a second, each with the one before as its `precpu_stats`.
    let samples = api_stream(&d, "/containers/busy/stats", 2);
    assert_eq!(samples[1]["precpu_stats"]["cpu_usage"], samples[0]["cpu_stats"]["cpu_usage"]);
    assert_eq!(samples[1]["preread"], samples[0]["read"]);

    // The stock CLI's columns.
    let shown =
        docker(&d, &["stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.CPUPerc}}", "web", "busy"]).ok();
    let rows: Vec<Vec<&str>> = shown.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 2, "{shown}");
    let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap_or_else(|| panic!("{name}: {shown}"));
    assert_eq!(row("web")[1], "5");
    let busy_cpu: f64 = row("busy")[2].trim_end_matches('%').parse().expect("a percentage");
    assert!(busy_cpu > 10.0, "{shown}");
    let top = docker(&d, &["top", "web"]).ok();
    assert!(top
        .lines()
        .next()
        .is_some_and(|h| h.split_whitespace().eq(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"])));
    assert_eq!(top.lines().filter(|l| l.ends_with("sleep 300")).count(), 3, "{top}");
    assert!(top.contains(&joined.0.id().to_string()), "{top}");
    assert_eq!(top.lines().count(), 6, "a header and web's five: {top}");
    assert_eq!(top.lines().filter(|l| l.contains(" shim --sandbox ")).count(), 1, "netd's shim is one: {top}");
    let custom = docker(&d, &["top", "busy", "-o", "pid,args"]).ok();
    assert!(custom.lines().nth(1).is_some_and(|l| l.ends_with("sh -c while :; do :; done")), "{custom}");
    docker(&d, &["top", "busy", "-o", "user=PID"]).fails_with("specifying \"user=PID\" is not allowed");

    // Stopped: nothing runs, nothing to list.
    docker(&d, &["stop", "-t", "1", "busy"]).ok();
    docker(&d, &["top", "busy"]).fails_with("is not running");
    let (_, stopped) = api_json(&d, "/containers/busy/stats?stream=0&one-shot=1");
    assert_eq!(stopped["pids_stats"]["current"], 0);
    assert_eq!(stopped["memory_stats"]["usage"], 0);
    let (status, e) = api_json(&d, "/containers/busy/stats?stream=1&one-shot=1");
    assert!(status.contains("400") && e["message"] == "cannot have stream=true and one-shot=true", "{status} {e}");
    docker(&d, &["stats", "--no-stream", "nosuch"]).fails_with("No such container: nosuch");

    // As a container's init takes the rest with it: stopping web ends its sleeps (sh's
    // children) and the joined process too; a sandbox whose process exits by itself leaves no
    // orphan running in it.
    let mut joined = joined;
    docker(&d, &["stop", "-t", "5", "web"]).ok();
    let status = joined.0.try_wait().expect("try_wait").expect("the joined process has ended");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    let (_, web) = api_json(&d, "/containers/web/stats?one-shot=1&stream=0");
    assert_eq!(web["pids_stats"]["current"], 0, "{web}");
    d.netd(&["run", "-d", "--name", "brief", "--", "sh", "-c", "sleep 300 & exit 0"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // `docker top` lists what runs in its namespace now: nothing, once the orphan is gone.
    while docker(&d, &["top", "brief"]).code == 0 {
        assert!(std::time::Instant::now() < deadline, "the orphan still runs");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(docker(&d, &["ps", "-q", "-f", "name=brief"]).ok().trim().is_empty(), "brief has exited");
}

/// How a sandbox's command ended, as Docker tells a container's: `docker wait` (also while it
/// runs), `Exited (N)` in `docker ps`, `-f exited=N`, `State.ExitCode`, and `die` with its
/// `exitCode`: an exit code, 128 + the signal that ended it (SIGTERM from `docker stop`,
/// SIGKILL after its grace or from `docker kill`), and a command run in the foreground.
#[test]
fn docker_wait_ps_inspect_and_events_tell_how_a_sandboxs_command_ended() {
    let d = TestDaemon::start(&[]);
    let die_events = d
        .docker_streaming(&[
            "events",
            "--filter",
            "event=die",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ])
        .expect("docker");
    // The stream is up before anything happens.
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.netd(&["run", "-d", "--name", "three", "--", "sh", "-c", "exit 3"]).ok();
    assert_eq!(docker(&d, &["wait", "three"]).ok().trim(), "3");
    d.netd(&["run", "-d", "--name", "term", "--", "sleep", "300"]).ok();
    // Waiting while it runs: the answer comes when it ends.
    let waiter = d.docker_streaming(&["wait", "term"]).expect("docker");
    std::thread::sleep(std::time::Duration::from_millis(300));
    docker(&d, &["stop", "-t", "5", "term"]).ok();
    assert_eq!(waiter.line(std::time::Duration::from_secs(10)).as_deref(), Some("143"));
    d.netd(&["run", "-d", "--name", "stubborn", "--", "sh", "-c", "trap '' TERM; while :; do sleep 1; done"]).ok();
    std::thread::sleep(std::time::Duration::from_millis(300));
    docker(&d, &["stop", "-t", "1", "stubborn"]).ok();
    assert_eq!(docker(&d, &["wait", "stubborn"]).ok().trim(), "137");
    d.netd(&["run", "-d", "--name", "killed", "--", "sleep", "300"]).ok();
    docker(&d, &["kill", "killed"]).ok();
    assert_eq!(docker(&d, &["wait", "killed"]).ok().trim(), "137");
    let fg = d.netd(&["run", "--name", "fg", "--", "sh", "-c", "exit 4"]);
    assert_eq!(fg.code, 4, "{fg:?}");
    assert_eq!(docker(&d, &["wait", "fg"]).ok().trim(), "4");

    let ps = docker(&d, &["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).ok();
    for (name, code) in [("three", 3), ("term", 143), ("stubborn", 137), ("killed", 137), ("fg", 4)] {
        let line = ps.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {ps}"));
        assert!(line.starts_with(&format!("{name} Exited ({code}) ")) && line.ends_with(" ago"), "{line}");
        let inspected = docker(&d, &["inspect", "-f", "{{.State.ExitCode}} {{.State.Running}}", name]).ok();
        assert_eq!(inspected.trim(), format!("{code} false"));
    }
    let exited = docker(&d, &["ps", "-a", "-f", "exited=137", "--format", "{{.Names}}"]).ok();
    let mut exited: Vec<&str> = exited.lines().collect();
    exited.sort_unstable();
    assert_eq!(exited, ["killed", "stubborn"]);
    // Each `die` with its code (the sweeper notices them in its own time: in any order).
    let mut died: Vec<String> =
        (0..5).map(|_| die_events.line(std::time::Duration::from_secs(10)).expect("a die event")).collect();
    died.sort_unstable();
    assert_eq!(died, ["fg 4", "killed 137", "stubborn 137", "term 143", "three 3"]);
    docker(&d, &["wait", "nosuch"]).fails_with("No such container: nosuch");
}

/// `docker logs` shows what a detached command wrote, as Docker's `json-file` log keeps a
/// container's: stdout and stderr apart, `--tail`, `-t`, and `-f` following it while it runs
/// and ending when it stops.
#[test]
fn docker_logs_shows_what_a_detached_command_wrote() {
    let d = TestDaemon::start(&[]);
    d.netd(&["run", "-d", "--name", "talk", "--", "sh", "-c", "echo hello; echo oops >&2; sleep 0.3; echo later"]).ok();
    // Followed: it ends when the command has.
    let all = docker(&d, &["logs", "-f", "talk"]);
    assert_eq!((all.code, all.stdout.as_str(), all.stderr.as_str()), (0, "hello\nlater\n", "oops\n"), "{all:?}");
    assert_eq!(docker(&d, &["logs", "--tail", "1", "talk"]).ok(), "later\n");
    let own = d.netd(&["logs", "talk"]);
    assert_eq!(
        (own.code, own.stdout.as_str(), own.stderr.as_str()),
        (0, "hello\nlater\n", "oops\n"),
        "netd logs: {own:?}"
    );
    d.netd(&["logs", "nosuch"]).fails_with("No such container: nosuch");
    let stamped = docker(&d, &["logs", "-t", "talk"]).ok();
    let first = stamped.lines().next().expect("a line");
    let (time, line) = first.split_once(' ').expect("a time");
    assert!(time.len() == 30 && time.ends_with('Z') && line == "hello", "{stamped}");
    let path = docker(&d, &["inspect", "-f", "{{.LogPath}}", "talk"]).ok();
    let log = std::fs::read_to_string(path.trim()).expect("the log file");
    let entries: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(entries.len(), 3, "{log}");
    assert!(entries.iter().any(|e| e["log"] == "hello\n" && e["stream"] == "stdout"), "{log}");
    assert!(entries.iter().any(|e| e["log"] == "oops\n" && e["stream"] == "stderr"), "{log}");

    // Following a running one: lines as they come.
    d.netd(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "--",
        "sh",
        "-c",
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ])
    .ok();
    let follow = d.docker_streaming(&["logs", "-f", "ticker"]).expect("docker");
    let ticks: Vec<String> =
        (0..3).map(|_| follow.line(std::time::Duration::from_secs(10)).expect("a line as it comes")).collect();
    assert_eq!(ticks, ["tick 0", "tick 1", "tick 2"]);
    docker(&d, &["stop", "-t", "5", "ticker"]).ok();
    docker(&d, &["logs", "nosuch"]).fails_with("No such container: nosuch");
}

/// `docker start` and `docker restart` run a sandbox's command again as `netd run -d` first did:
/// with the environment and directory `netd run` had, seeing the sandbox's host name, its
/// output in the same log and its exit code known.
#[test]
fn docker_start_and_restart_run_a_sandboxs_command_again() {
    let d = TestDaemon::start(&[]);
    let dir = std::env::temp_dir().join(format!("netd-start-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let out = std::process::Command::new(netd_tests::daemon::netd_binary())
        .args(["-H", d.socket(), "run", "-d", "--name", "again", "--hostname", "box", "--"])
        .args(["sh", "-c", "echo $NETD_TEST_GREETING $(pwd) $(hostname); exit 5"])
        .env("NETD_TEST_GREETING", "hi")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("netd run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(docker(&d, &["wait", "again"]).ok().trim(), "5");
    assert_eq!(docker(&d, &["start", "again"]).ok().trim(), "again");
    assert_eq!(docker(&d, &["wait", "again"]).ok().trim(), "5");
    let said = format!("hi {} box\n", dir.display());
    assert_eq!(docker(&d, &["logs", "again"]).ok(), format!("{said}{said}"), "the same, twice");

    d.netd(&["run", "-d", "--name", "loop", "--", "sh", "-c", "echo started; sleep 300"]).ok();
    let pid = || docker(&d, &["inspect", "-f", "{{.State.Pid}}", "loop"]).ok().trim().to_owned();
    let before = pid();
    // Running already: nothing to do, as Docker's.
    assert_eq!(docker(&d, &["start", "loop"]).ok().trim(), "loop");
    assert_eq!(pid(), before);
    let started = || docker(&d, &["inspect", "-f", "{{.State.StartedAt}}", "loop"]).ok().trim().to_owned();
    let first_start = started();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    docker(&d, &["restart", "-t", "5", "loop"]).ok();
    let after = pid();
    assert!(after != before && after != "0", "{before} → {after}");
    assert!(started() > first_start, "a new run starts now: {first_start} → {}", started());
    let status = docker(&d, &["ps", "--format", "{{.Names}} {{.Status}}", "-f", "name=loop"]).ok();
    assert!(status.starts_with("loop Up "), "{status}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while docker(&d, &["logs", "loop"]).ok() != "started\nstarted\n" {
        assert!(std::time::Instant::now() < deadline, "{}", docker(&d, &["logs", "loop"]).ok());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    docker(&d, &["stop", "-t", "5", "loop"]).ok();
    assert_eq!(docker(&d, &["wait", "loop"]).ok().trim(), "143");
    docker(&d, &["start", "nosuch"]).fails_with("No such container: nosuch");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `netd run` and `netd exec` take `docker run`'s `-e`, `--env-file`, `-w` and `-u`: in the
/// foreground, detached and started again (`docker start`), shown by `docker inspect`
/// (`Config.User`, `Config.WorkingDir`); a wrong one is refused in Docker's words before
/// anything is made.
#[test]
fn run_and_exec_take_environment_directory_and_user_as_docker_run() {
    let d = TestDaemon::start(&[]);
    let dir = std::env::temp_dir().join(format!("netd-run-opts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let env_file = dir.join("env");
    std::fs::write(&env_file, "# comment\n\n  FROM_FILE=a b\nBOTH=file\nNETD_TEST_SURELY_UNSET\n").expect("env file");
    let (e, w) = (env_file.to_str().expect("utf-8"), dir.to_str().expect("utf-8"));
    let say = "echo $FROM_FILE/$BOTH/${NETD_TEST_SURELY_UNSET-unset} $(pwd) $(id -u):$(id -g)";
    let opts = ["--env-file", e, "-e", "BOTH=flag", "-w", w, "-u", "1234:5678"];
    let said = format!("a b/flag/unset {w} 1234:5678\n");

    let foreground = [&["run", "--rm"][..], &opts, &["--", "sh", "-c", say]].concat();
    assert_eq!(d.netd(&foreground).ok(), said);
    let detached = [&["run", "-d", "--name", "opts"][..], &opts, &["--", "sh", "-c", say]].concat();
    d.netd(&detached).ok();
    assert_eq!(docker(&d, &["wait", "opts"]).ok().trim(), "0");
    assert_eq!(docker(&d, &["start", "opts"]).ok().trim(), "opts");
    assert_eq!(docker(&d, &["wait", "opts"]).ok().trim(), "0");
    assert_eq!(docker(&d, &["logs", "opts"]).ok(), format!("{said}{said}"), "the same, twice");
    let config = docker(&d, &["inspect", "-f", "{{.Config.User}} {{.Config.WorkingDir}}", "opts"]).ok();
    assert_eq!(config.trim(), format!("1234:5678 {w}"));

    d.netd(&["run", "-d", "--name", "box", "--", "sleep", "300"]).ok();
    let exec = ["exec", "-e", "X=1", "-w", "/", "-u", "root", "box", "--", "sh", "-c", "echo $X $(pwd) $(id -u)"];
    assert_eq!(d.netd(&exec).ok(), "1 / 0\n");
    let exec = ["exec", "-u", "4321", "box", "--", "id", "-u"];
    assert_eq!(d.netd(&exec).ok(), "4321\n");

    let before = docker(&d, &["ps", "-aq"]).ok();
    let refused = [
        (&["-w", "relative"][..], "the working directory 'relative' is invalid, it needs to be an absolute path"),
        (&["-w", "/no/such/dir"], "the working directory '/no/such/dir' is invalid: no such directory"),
        (&["-u", "ghost-user"], "unable to find user ghost-user: no matching entries in passwd file"),
        (&["-u", "root:ghost-group"], "unable to find group ghost-group: no matching entries in group file"),
        (&["-e", "=x"], "invalid environment variable: =x"),
        (&["--env-file", "/no/such/file"], "open /no/such/file"),
    ];
    for (flags, message) in refused {
        for detach in [&[][..], &["-d"]] {
            let args = [&["run"][..], detach, flags, &["--", "true"]].concat();
            d.netd(&args).fails_with(message);
        }
        let args = [&["exec"][..], flags, &["box", "--", "true"]].concat();
        d.netd(&args).fails_with(message);
    }
    std::fs::write(&env_file, "A B=1\n").expect("env file");
    d.netd(&["run", "--env-file", e, "--", "true"]).fails_with("variable 'A B' contains whitespaces");
    assert_eq!(docker(&d, &["ps", "-aq"]).ok(), before, "nothing was made");
    // The daemon checks what other clients send too.
    let (status, body) =
        api_post(&d, "/netd/v1/sandboxes", r#"{"Network":"bridge","Command":["true"],"User":"ghost-user"}"#);
    assert!(status.contains(" 400 "), "{status}");
    assert!(
        String::from_utf8_lossy(&body).contains("unable to find user ghost-user"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let relative = r#"{"Network":"bridge","Command":["true"],"WorkingDir":"rel"}"#;
    assert!(api_post(&d, "/netd/v1/sandboxes", relative).0.contains(" 400 "));
    assert_eq!(docker(&d, &["ps", "-aq"]).ok(), before, "nothing was made");
    docker(&d, &["rm", "-f", "box"]).ok();
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// `netd run` in the foreground passes signals on as `docker run`'s proxy does: SIGTERM sent to
/// netd reaches the command; a Ctrl-C (SIGINT to the whole process group) ends the command but
/// not netd, which stays to report how it ended. Either way the code is netd's own, `docker
/// wait`'s and `docker inspect`'s.
#[test]
fn netd_run_in_the_foreground_passes_signals_on_and_reports_the_end() {
    use std::io::BufRead as _;
    let d = TestDaemon::start(&[]);
    // A foreground `netd run` in a process group of its own (a terminal's foreground group),
    // once its command said it is ready.
    let start = |name: &str, script: &str| {
        let mut cmd = std::process::Command::new(netd_tests::daemon::netd_binary());
        cmd.args(["-H", d.socket(), "run", "--name", name, "--", "sh", "-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut netd = cmd.spawn().expect("netd run");
        let mut out = std::io::BufReader::new(netd.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
        assert_eq!(line, "ready\n");
        (netd, out)
    };
    let end = |mut netd: std::process::Child| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = netd.try_wait().expect("wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = netd.kill();
                let _ = netd.wait();
                panic!("netd run did not end");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let pid = |c: &std::process::Child| libc::pid_t::try_from(c.id()).expect("a pid");

    let (netd, mut out) = start("termed", "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done");
    // SAFETY: kill(2) on the process this test started.
    unsafe { libc::kill(pid(&netd), libc::SIGTERM) };
    assert_eq!(end(netd), Some(7));
    let mut said = String::new();
    std::io::Read::read_to_string(&mut out, &mut said).expect("the rest");
    assert_eq!(said, "got TERM\n");
    assert_eq!(docker(&d, &["wait", "termed"]).ok().trim(), "7");

    let (netd, _out) = start("ctrl-c", "echo ready; while :; do sleep 0.1; done");
    // SAFETY: kill(2) on the process group this test made (netd and its command).
    unsafe { libc::kill(-pid(&netd), libc::SIGINT) };
    assert_eq!(end(netd), Some(130), "the command's end, 128 + SIGINT");
    assert_eq!(docker(&d, &["wait", "ctrl-c"]).ok().trim(), "130");
    assert_eq!(docker(&d, &["inspect", "-f", "{{.State.ExitCode}}", "ctrl-c"]).ok().trim(), "130");
}

/// `netd run` and `netd exec` give the command netd's standard input with `-i` only (without,
/// it reads nothing, as Docker's), and run it on netd's terminal with `-t`, which needs one;
/// a detached command (`run -d`, `exec -d`) can have neither.
#[test]
fn netd_run_and_exec_read_input_with_i_and_run_on_the_terminal_with_t() {
    use std::os::fd::FromRawFd as _;
    let d = TestDaemon::start(&[]);
    let with_input = |args: &[&str]| {
        let mut netd = std::process::Command::new(netd_tests::daemon::netd_binary())
            .args(["-H", d.socket()])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("netd");
        std::io::Write::write_all(&mut netd.stdin.take().expect("stdin"), b"hello\n").expect("input");
        let out = netd.wait_with_output().expect("netd");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(with_input(&["run", "--rm", "-i", "--", "cat"]), "hello\n");
    assert_eq!(with_input(&["run", "--rm", "--", "cat"]), "");
    d.netd(&["run", "-d", "--name", "box", "--", "sleep", "300"]).ok();
    assert_eq!(with_input(&["exec", "-i", "box", "--", "cat"]), "hello\n");
    assert_eq!(with_input(&["exec", "box", "--", "cat"]), "");

    // netd on a terminal: a pty's slave as its standard input, output and error.
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the ints given; no name, no settings, no size.
    let r = unsafe {
        libc::openpty(&raw mut master, &raw mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null())
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both fds were just opened for this test and are owned by nothing else.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::os::fd::OwnedFd::from_raw_fd(slave)) };
    let script = "test -t 0 && test -t 1 && echo on-a-terminal";
    let status = std::process::Command::new(netd_tests::daemon::netd_binary())
        .args(["-H", d.socket(), "run", "--rm", "-it", "--", "sh", "-c", script])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .status()
        .expect("netd");
    assert!(status.success(), "{status:?}");
    // Every slave is closed: the master reads what was written, then fails (EIO).
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n @ 1..) = std::io::Read::read(&mut &master, &mut buf) {
        said.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&said), "on-a-terminal\r\n");

    let before = docker(&d, &["ps", "-aq"]).ok();
    d.netd(&["run", "-t", "--", "true"]).fails_with("the input device is not a TTY");
    d.netd(&["exec", "-it", "box", "--", "true"]).fails_with("the input device is not a TTY");
    for flag in ["-i", "-t"] {
        d.netd(&["run", "-d", flag, "--", "true"]).fails_with("-i and -t are for a command in the foreground");
        d.netd(&["exec", "-d", flag, "box", "--", "true"]).fails_with("-i and -t are for a command in the foreground");
    }
    assert_eq!(docker(&d, &["ps", "-aq"]).ok(), before, "nothing was made");

    // `exec -d` leaves the command running, its output nowhere, and says nothing.
    let file = std::env::temp_dir().join(format!("netd-exec-d-{}", std::process::id()));
    let script = format!("sleep 0.3; echo from-exec; hostname > {0}.new && mv {0}.new {0}", file.display());
    assert_eq!(d.netd(&["exec", "-d", "box", "--", "sh", "-c", &script]).ok(), "");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "the detached command never wrote");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let host = docker(&d, &["inspect", "-f", "{{.Config.Hostname}}", "box"]).ok();
    assert_eq!(std::fs::read_to_string(&file).expect("written"), host, "in the sandbox");
    std::fs::remove_file(&file).expect("cleanup");
    docker(&d, &["rm", "-f", "box"]).ok();
}

/// `netd start | stop | restart | kill | wait` act on sandboxes as the docker CLI's verbs do
/// on containers (through the same API): each names what it acted on, "nothing to do" is done,
/// and an unknown sandbox is an error that leaves the others done.
#[test]
fn netd_start_stop_restart_kill_and_wait_act_as_dockers_verbs() {
    let d = TestDaemon::start(&[]);
    let script = "trap 'exit 3' TERM; echo up; while :; do sleep 0.1; done";
    d.netd(&["run", "-d", "--name", "svc", "--", "sh", "-c", script]).ok();
    // Once its trap is set (it says so), as after every start below.
    let up = |times: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while d.netd(&["logs", "svc"]).ok() != "up\n".repeat(times) {
            assert!(std::time::Instant::now() < deadline, "{}", d.netd(&["logs", "svc"]).ok());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let running = || docker(&d, &["inspect", "-f", "{{.State.Running}} {{.State.Pid}}", "svc"]).ok();
    up(1);
    assert_eq!(d.netd(&["stop", "-t", "5", "svc"]).ok(), "svc\n");
    assert_eq!(d.netd(&["wait", "svc"]).ok(), "3\n");
    assert_eq!(d.netd(&["stop", "svc"]).ok(), "svc\n", "stopped already");
    assert_eq!(d.netd(&["start", "svc"]).ok(), "svc\n");
    up(2);
    assert!(running().starts_with("true "), "{}", running());
    assert_eq!(d.netd(&["start", "svc"]).ok(), "svc\n", "running already");
    assert_eq!(d.netd(&["kill", "-s", "TERM", "svc"]).ok(), "svc\n");
    assert_eq!(d.netd(&["wait", "svc"]).ok(), "3\n");
    d.netd(&["start", "svc"]).ok();
    up(3);
    let before = running();
    assert_eq!(d.netd(&["restart", "-t", "5", "svc"]).ok(), "svc\n");
    let after = running();
    assert!(after.starts_with("true ") && after != before, "{before} → {after}");
    up(4);
    assert_eq!(d.netd(&["kill", "svc"]).ok(), "svc\n");
    assert_eq!(d.netd(&["wait", "svc"]).ok(), "137\n");

    let both = d.netd(&["stop", "svc", "nosuch"]);
    assert_eq!((both.code, both.stdout.as_str()), (1, "svc\n"));
    assert!(both.stderr.contains("No such container: nosuch"), "{}", both.stderr);
    d.netd(&["kill", "-s", "NOPE", "svc"]).fails_with("Invalid signal: NOPE");
    d.netd(&["wait", "nosuch"]).fails_with("No such container: nosuch");
    d.netd(&["stop", "-t", "soon", "svc"]).fails_with("invalid value 'soon'");
}

/// `docker container prune` removes the sandboxes that do not run, as Docker's the containers
/// that are stopped; `until` keeps the newer ones, a `label` filter matches none.
#[test]
fn docker_container_prune_removes_the_sandboxes_that_do_not_run() {
    let d = TestDaemon::start(&[]);
    let done = d.netd(&["run", "-d", "--name", "done", "--", "true"]).ok().trim().to_owned();
    d.netd(&["run", "-d", "--name", "live", "--", "sleep", "300"]).ok();
    assert_eq!(docker(&d, &["wait", "done"]).ok().trim(), "0");
    assert_eq!(
        docker(&d, &["container", "prune", "-f", "--filter", "until=1h"]).ok().lines().next(),
        Some("Total reclaimed space: 0B")
    );
    assert!(!docker(&d, &["container", "prune", "-f", "--filter", "label=x"]).ok().contains(&done));
    let pruned = docker(&d, &["container", "prune", "-f"]).ok();
    assert!(pruned.contains("Deleted Containers:") && pruned.contains(&done), "{pruned}");
    let left = docker(&d, &["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(left.trim(), "live");
    docker(&d, &["container", "prune", "-f", "--filter", "until=soon"]).fails_with("invalid filter 'until=soon'");
}

/// `docker rename` renames a sandbox as Docker's container: its network's DNS answers for the
/// new name at once and no longer for the old; Docker's `rename` event says both; names in use
/// or invalid are refused.
#[test]
fn docker_rename_gives_a_sandbox_a_new_name_on_its_networks_dns() {
    let d = TestDaemon::start(&[]);
    let since =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() - 1).to_string();
    d.netd(&["network", "create", "names"]).ok();
    for name in ["web", "asker"] {
        d.netd(&["run", "-d", "--name", name, "--network", "names", "--", "sleep", "300"]).ok();
    }
    let ip = docker(&d, &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "web"]).ok();
    let getent = |name: &str| d.netd(&["exec", "asker", "--", "getent", "hosts", name]);
    assert!(getent("web").ok().starts_with(ip.trim()));
    docker(&d, &["rename", "web", "site"]).ok();
    assert!(getent("site").ok().starts_with(ip.trim()), "the new name resolves");
    assert_ne!(getent("web").code, 0, "the old one does not");
    assert_eq!(docker(&d, &["ps", "--format", "{{.Names}}", "-f", "name=site"]).ok().trim(), "site");
    docker(&d, &["rename", "site", "asker"]).fails_with("The container name \"/asker\" is already in use");
    docker(&d, &["rename", "site", "bad/name"]).fails_with("Invalid container name");
    docker(&d, &["rename", "nosuch", "other"]).fails_with("No such container: nosuch");
    let until =
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 1).to_string();
    let renamed = docker(
        &d,
        &[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=rename",
            "--format",
            "{{.Actor.Attributes.name}} {{.Actor.Attributes.oldName}}",
        ],
    )
    .ok();
    assert_eq!(renamed.trim(), "site /web");
}

/// `docker exec` runs more commands in a running sandbox: in its namespace, with its host name,
/// its environment and the exec's own, in another directory or as another user; stdout and
/// stderr apart, the input passed on (`-i`), a terminal given (`-t`), detached (`-d`), and the
/// command's exit code the CLI's. Events say so. A sandbox that does not run, a command that is
/// not there and a user unknown fail as Docker's.
#[test]
fn docker_exec_runs_more_commands_in_a_running_sandbox() {
    let d = TestDaemon::start(&[]);
    let exec_events = d
        .docker_streaming(&["events", "--filter", "event=exec_die", "--format", "{{.Actor.Attributes.exitCode}}"])
        .expect("docker");
    std::thread::sleep(std::time::Duration::from_millis(500));
    // `netd run` gives the command its own environment.
    let out = std::process::Command::new(netd_tests::daemon::netd_binary())
        .args(["-H", d.socket(), "run", "-d", "--name", "box", "--hostname", "boxhost", "--", "sleep", "300"])
        .env("FROM_RUN", "yes")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("netd run");
    assert!(out.status.success(), "{out:?}");
    let ip = docker(&d, &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "box"]).ok();
    let addrs = docker(&d, &["exec", "box", "ip", "-4", "-o", "addr", "show", "eth0"]).ok();
    assert!(!ip.trim().is_empty() && addrs.contains(&format!("inet {}/", ip.trim())), "in its namespace: {ip} {addrs}");
    assert_eq!(docker(&d, &["exec", "box", "hostname"]).ok(), "boxhost\n");
    let both = docker(&d, &["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((both.code, both.stdout.as_str(), both.stderr.as_str()), (3, "out\n", "err\n"), "{both:?}");
    let env =
        docker(&d, &["exec", "-e", "GREETING=hi", "-w", "/tmp", "box", "sh", "-c", "echo $FROM_RUN $GREETING $(pwd)"]);
    assert_eq!(env.ok(), "yes hi /tmp\n");
    assert_eq!(docker(&d, &["exec", "-u", "65534", "box", "id", "-u"]).ok(), "65534\n");
    let upper = d.docker_with_input(&["exec", "-i", "box", "tr", "a-z", "A-Z"], Some(b"hello\n")).expect("docker");
    assert_eq!(upper.ok(), "HELLO\n");
    let tty = docker(&d, &["exec", "-t", "box", "tty"]).ok();
    assert!(tty.starts_with("/dev/pts/"), "a terminal: {tty:?}");
    assert_eq!(docker(&d, &["inspect", "-f", "{{json .ExecIDs}}", "box"]).ok(), "null\n", "none runs");

    let file = std::env::temp_dir().join(format!("netd-exec-test-{}", std::process::id()));
    let write = format!("sleep 1; hostname > {}", file.display());
    assert_eq!(docker(&d, &["exec", "-d", "box", "sh", "-c", &write]).ok(), "");
    let running = docker(&d, &["inspect", "-f", "{{len .ExecIDs}}", "box"]).ok();
    assert_eq!(running, "1\n", "the detached one runs a while");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&file).unwrap_or_default() != "boxhost\n" {
        assert!(std::time::Instant::now() < deadline, "the detached command ran");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::remove_file(&file).expect("cleanup");

    let missing = docker(&d, &["exec", "box", "nosuchcommand"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(missing.stderr.contains("exec: \"nosuchcommand\": executable file not found in $PATH"), "{missing:?}");
    docker(&d, &["exec", "-u", "ghost", "box", "true"]).fails_with("unable to find user ghost");
    docker(&d, &["exec", "nosuch", "true"]).fails_with("No such container: nosuch");
    // Every exec that ran ended with its code, in order: hostname, ip, sh (3), sh, id, tr, tty,
    // the detached one, the missing command (127).
    let codes: Vec<String> =
        (0..9).map(|_| exec_events.line(std::time::Duration::from_secs(10)).expect("an exec_die event")).collect();
    assert_eq!(codes, ["0", "0", "3", "0", "0", "0", "0", "0", "127"]);

    // Through the API: the terminal takes the size the client gives; a client that does not
    // upgrade its connection gets the output as the answer's body; an exec runs once.
    let create = r#"{"Cmd":["stty","size"],"Tty":true,"AttachStdout":true,"ConsoleSize":[30,100]}"#;
    let (status, created) = api_post(&d, "/containers/box/exec", create);
    assert!(status.contains(" 201 "), "{status}");
    let id = serde_json::from_slice::<Value>(&created).expect("JSON")["Id"].as_str().expect("an id").to_owned();
    let (status, output) = api_post(&d, &format!("/exec/{id}/start"), r#"{"Tty":true}"#);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(String::from_utf8_lossy(&output), "30 100\r\n");
    let (_, inspected) = api_json(&d, &format!("/exec/{id}/json"));
    assert_eq!((&inspected["Running"], &inspected["ExitCode"]), (&Value::Bool(false), &Value::from(0)));
    let (status, again) = api_post(&d, &format!("/exec/{id}/start"), "{}");
    assert!(status.contains(" 409 ") && String::from_utf8_lossy(&again).contains("has already run"), "{status}");
    let (status, _) = api_post(&d, "/exec/nosuch/resize?h=10&w=10", "");
    assert!(status.contains(" 404 "), "{status}");

    docker(&d, &["stop", "-t", "1", "box"]).ok();
    docker(&d, &["exec", "box", "true"]).fails_with("is not running");
}

/// A POST to the API (HTTP/1.0: a streamed answer ends with the connection): the status line
/// and the body.
fn api_post(d: &TestDaemon, path: &str, body: &str) -> (String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut socket =
        std::os::unix::net::UnixStream::connect(d.socket().trim_start_matches("unix://")).expect("API socket");
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    write!(
        socket,
        "POST {path} HTTP/1.0\r\nHost: netd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).expect("response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head and a body");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    (head.lines().next().unwrap_or_default().to_owned(), raw[split + 4..].to_vec())
}
