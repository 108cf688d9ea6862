//! Control plane, sandboxes: `netd run/exec/ps/rm` and `network connect/disconnect` — the
//! namespaces, veth pairs, addresses, MACs, routes and traffic they give.

use netd_tests::daemon::TestDaemon;
use serde_json::Value;

fn inspect(d: &TestDaemon, name: &str) -> Value {
    let out = d.netd(&["network", "inspect", name]).ok();
    serde_json::from_str::<Value>(&out).expect("JSON")[0].clone()
}

/// `ip -o …` inside a sandbox.
fn ip_in(d: &TestDaemon, sandbox: &str, args: &[&str]) -> String {
    let mut full = vec!["exec", sandbox, "--", "ip", "-o"];
    full.extend_from_slice(args);
    d.netd(&full).ok()
}

fn host_links(d: &TestDaemon) -> String {
    String::from_utf8_lossy(&d.host().ip(&["-o", "link"]).stdout).into_owned()
}

fn netns_files(d: &TestDaemon) -> usize {
    std::fs::read_dir(d.exec_root().join("netns")).map_or(0, std::iter::Iterator::count)
}

#[test]
fn none_has_only_loopback_and_host_shares_the_daemon_namespace() {
    let d = TestDaemon::start(&[]);
    let out = d.netd(&["run", "--rm", "--network", "none", "--", "ip", "-o", "link"]).ok();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("lo: <LOOPBACK,UP"), "{out}");

    let out = d.netd(&["run", "--rm", "--network", "host", "--", "ip", "-o", "link"]).ok();
    assert!(out.contains("docker0"), "host mode sees the daemon's links: {out}");
    assert_eq!(d.netd(&["ps", "-q"]).ok(), "", "--rm removed both");

    // Exit codes of the command are returned.
    assert_eq!(d.netd(&["run", "--rm", "--network", "none", "--", "sh", "-c", "exit 7"]).code, 7);
    let missing = d.netd(&["run", "--rm", "--", "no-such-binary-xyz"]);
    assert_eq!(missing.code, 127);
    assert!(missing.stderr.contains("executable file not found"));
    assert_eq!(d.netd(&["ps", "-q"]).ok(), "", "a command that never started leaves no sandbox");
    // Detached too (the daemon starts it): Docker's 127 and words, and nothing left.
    let missing = d.netd(&["run", "-d", "--", "no-such-binary-xyz"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(missing.stderr.contains("executable file not found"));
    assert_eq!(d.netd(&["ps", "-q"]).ok(), "");
}

#[test]
fn two_containers_on_the_default_bridge_talk() {
    let d = TestDaemon::start(&[]);
    let id1 = d.netd(&["run", "-d", "--name", "c1", "--", "sleep", "60"]).ok().trim().to_owned();
    d.netd(&["run", "-d", "--name", "c2", "--", "sleep", "60"]).ok();
    assert_eq!(id1.len(), 64);

    let eth0 = ip_in(&d, "c1", &["addr", "show", "eth0"]);
    assert!(eth0.contains("inet 172.17.0.2/16"), "{eth0}");
    let link = ip_in(&d, "c2", &["link", "show", "eth0"]);
    assert!(link.contains("link/ether 02:42:ac:11:00:03"), "{link}");
    assert!(link.contains("mtu 1500"));
    let routes = ip_in(&d, "c1", &["route"]);
    assert!(routes.contains("default via 172.17.0.1 dev eth0"), "{routes}");
    assert!(ip_in(&d, "c1", &["link", "show", "lo"]).contains("UP"));
    // IPv4 networks: IPv6 is off inside sandboxes (no link-local chatter flooded by the bridge).
    assert_eq!(ip_in(&d, "c1", &["-6", "addr"]), "", "no IPv6 address in a sandbox");

    // The host ends are veth<7 hex> on docker0, up.
    let members =
        String::from_utf8_lossy(&d.host().ip(&["-o", "link", "show", "master", "docker0"]).stdout).into_owned();
    let names: Vec<&str> = members.lines().map(|l| l.split(": ").nth(1).unwrap().split('@').next().unwrap()).collect();
    assert_eq!(names.len(), 2, "{members}");
    for n in &names {
        assert!(n.starts_with("veth") && n.len() == 11, "{n}");
        assert!(n[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert!(members.lines().all(|l| l.contains("state UP")), "{members}");

    // Traffic: ping both ways, and to the gateway.
    d.netd(&["exec", "c1", "--", "ping", "-c", "2", "-W", "2", "172.17.0.3"]).ok();
    d.netd(&["exec", "c2", "--", "ping", "-c", "1", "-W", "2", "172.17.0.2"]).ok();
    d.netd(&["exec", "c1", "--", "ping", "-c", "1", "-W", "2", "172.17.0.1"]).ok();

    // inspect shows both, like the walk-through.
    let b = inspect(&d, "bridge");
    let c = &b["Containers"][&id1];
    assert_eq!(c["Name"], "c1");
    assert_eq!(c["MacAddress"], "02:42:ac:11:00:02");
    assert_eq!(c["IPv4Address"], "172.17.0.2/16");
    assert_eq!(c["IPv6Address"], "");
    assert_eq!(c["EndpointID"].as_str().unwrap().len(), 64);

    let ps = d.netd(&["ps"]).ok();
    assert!(ps.contains("c1") && ps.contains("172.17.0.2/16") && ps.contains("running"), "{ps}");

    // Names are unique and validated.
    d.netd(&["run", "-d", "--name", "c1", "--", "sleep", "1"])
        .fails_with("Conflict. The container name \"/c1\" is already in use by container");
    d.netd(&["run", "--name", "bad/name", "--", "true"]).fails_with("Invalid container name (bad/name)");
    // A running sandbox is not removed without -f.
    d.netd(&["rm", "c1"]).fails_with("You cannot remove a running container");
}

#[test]
fn static_ips_follow_dockers_rules() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "my_net"]).ok();
    d.netd(&[
        "network",
        "create",
        "--driver",
        "bridge",
        "--subnet",
        "172.22.16.0/24",
        "--gateway",
        "172.22.16.1",
        "my_net2",
    ])
    .ok();
    let out = d
        .netd(&[
            "run",
            "--rm",
            "--network",
            "my_net2",
            "--ip",
            "172.22.16.88",
            "--",
            "ip",
            "-o",
            "addr",
            "show",
            "eth0",
        ])
        .ok();
    assert!(out.contains("inet 172.22.16.88/24"), "{out}");
    let out = d.netd(&["run", "--rm", "--network", "my_net2", "--", "ip", "-o", "link", "show", "eth0"]).ok();
    assert!(out.contains("02:42:ac:16:10:02"), "first dynamic address .2: {out}");

    let before = (host_links(&d), netns_files(&d));
    let seed = "User specified IP address is supported only when connecting to networks with user configured subnets";
    d.netd(&["run", "--network", "my_net", "--ip", "172.22.16.88", "--", "true"]).fails_with(seed);
    d.netd(&["run", "--ip", "172.17.0.50", "--", "true"]).fails_with(seed);
    d.netd(&["run", "-d", "--name", "holder", "--network", "my_net2", "--ip", "172.22.16.88", "--", "sleep", "30"])
        .ok();
    let mid = (host_links(&d), netns_files(&d));
    d.netd(&["run", "--network", "my_net2", "--ip", "172.22.16.88", "--", "true"]).fails_with("Address already in use");
    d.netd(&["run", "--network", "my_net2", "--ip", "172.22.16.1", "--", "true"]).fails_with("Address already in use");
    d.netd(&["run", "--network", "my_net2", "--ip", "10.0.0.5", "--", "true"])
        .fails_with("Invalid address 10.0.0.5: It does not belong to any of this network's subnets");
    d.netd(&["run", "--network", "my_net2", "--mac-address", "zz", "--", "true"])
        .fails_with("zz is not a valid mac address");
    d.netd(&["run", "--network", "nosuch", "--", "true"]).fails_with("network nosuch not found");
    assert_eq!((host_links(&d), netns_files(&d)), mid, "failed runs leave no link and no namespace");
    assert_ne!(before, mid);

    // A chosen MAC is used as is.
    let out = d
        .netd(&[
            "run",
            "--rm",
            "--network",
            "my_net2",
            "--mac-address",
            "02:aa:bb:cc:dd:ee",
            "--",
            "ip",
            "-o",
            "link",
            "show",
            "eth0",
        ])
        .ok();
    assert!(out.contains("02:aa:bb:cc:dd:ee"), "{out}");
}

#[test]
fn addresses_are_released_reused_and_exhausted_with_dockers_message() {
    let d = TestDaemon::start(&[]);
    let id = d.netd(&["network", "create", "--subnet", "10.31.0.0/29", "small"]).ok().trim().to_owned();
    // .0 network, .1 gateway, .7 broadcast: five addresses.
    for i in 0..5 {
        d.netd(&["run", "-d", "--name", &format!("s{i}"), "--network", "small", "--", "sleep", "60"]).ok();
    }
    let ips: Vec<String> = inspect(&d, "small")["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["IPv4Address"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "no duplicate addresses: {ips:?}");
    d.netd(&["run", "--name", "s5", "--network", "small", "--", "true"])
        .fails_with(&format!("no available IPv4 addresses on this network's address pools: small ({id})"));

    // Removing a sandbox releases its address, its veth and its namespace.
    let veths_before = host_links(&d).matches("veth").count();
    let files_before = netns_files(&d);
    d.netd(&["rm", "-f", "s2"]).ok();
    assert_eq!(host_links(&d).matches("veth").count(), veths_before - 1);
    assert_eq!(netns_files(&d), files_before - 1);
    let out = d.netd(&["run", "--rm", "--network", "small", "--", "ip", "-o", "-4", "addr", "show", "eth0"]).ok();
    assert!(out.contains("10.31.0.4/29"), "the released .4 is handed out again: {out}");
}

#[test]
fn connect_and_disconnect_add_and_remove_interfaces() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--subnet", "10.40.0.0/24", "back"]).ok();
    d.netd(&["network", "create", "--internal", "--subnet", "10.41.0.0/24", "private"]).ok();
    d.netd(&["run", "-d", "--name", "app", "--", "sleep", "60"]).ok();
    d.netd(&["run", "-d", "--name", "db", "--network", "back", "--", "sleep", "60"]).ok();

    d.netd(&["network", "connect", "--ip", "10.40.0.50", "back", "app"]).ok();
    let eth1 = ip_in(&d, "app", &["-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("10.40.0.50/24"), "{eth1}");
    d.netd(&["exec", "app", "--", "ping", "-c", "1", "-W", "2", "10.40.0.2"]).ok();
    d.netd(&["network", "connect", "back", "app"]).fails_with("endpoint with name app already exists in network back");
    d.netd(&["network", "connect", "host", "app"])
        .fails_with("container cannot be disconnected from host network or connected to host network");
    d.netd(&["network", "rm", "back"]).fails_with("has active endpoints");

    // An internal network adds no default route.
    d.netd(&["network", "connect", "private", "db"]).ok();
    let routes = ip_in(&d, "db", &["route"]);
    assert!(routes.contains("default via 10.40.0.1"), "{routes}");
    assert!(!routes.contains("via 10.41.0.1"), "{routes}");

    // Disconnecting the network of the default route moves it to one that remains.
    d.netd(&["network", "disconnect", "bridge", "app"]).ok();
    let routes = ip_in(&d, "app", &["route"]);
    assert!(routes.contains("default via 10.40.0.1 dev eth1"), "{routes}");
    assert!(ip_in(&d, "app", &["link"]).lines().count() == 2, "lo and eth1 left");
    d.netd(&["network", "disconnect", "bridge", "app"]).fails_with("is not connected to network bridge");

    d.netd(&["run", "-d", "--name", "iso", "--network", "none", "--", "sleep", "60"]).ok();
    d.netd(&["network", "connect", "back", "iso"]).fails_with("private (none) mode");

    d.netd(&["network", "disconnect", "back", "app"]).ok();
    d.netd(&["network", "disconnect", "back", "db"]).ok();
    d.netd(&["network", "rm", "back"]).ok();
}

#[test]
fn a_networks_container_interface_prefix_names_its_interfaces() {
    let d = TestDaemon::start(&[]);
    let prefix = "com.docker.network.container_iface_prefix";
    d.netd(&["network", "create", "-o", &format!("{prefix}=ctr"), "--subnet", "10.42.0.0/24", "pre"]).ok();
    d.netd(&["network", "create", "-o", &format!("{prefix}=ctr"), "--subnet", "10.43.0.0/24", "pre2"]).ok();
    d.netd(&["run", "-d", "--name", "p1", "--network", "pre", "--", "sleep", "60"]).ok();
    let link = ip_in(&d, "p1", &["-4", "addr", "show", "ctr0"]);
    assert!(link.contains("10.42.0.2/24"), "{link}");
    assert!(ip_in(&d, "p1", &["route"]).contains("default via 10.42.0.1 dev ctr0"));
    // Numbered per prefix, as Docker's: the default prefix starts at eth0 beside ctr0.
    d.netd(&["network", "connect", "bridge", "p1"]).ok();
    d.netd(&["network", "connect", "pre2", "p1"]).ok();
    let links = ip_in(&d, "p1", &["-o", "link"]);
    for name in ["ctr0", "eth0", "ctr1"] {
        assert!(links.lines().any(|l| l.contains(&format!(" {name}@"))), "{name}: {links}");
    }
    assert!(ip_in(&d, "p1", &["-4", "addr", "show", "ctr1"]).contains("10.43.0.2/24"));
    d.netd(&["exec", "p1", "--", "ping", "-c", "1", "-W", "2", "10.43.0.1"]).ok();
    // A prefix that leaves no room for a number is refused, and nothing is created.
    let before = d.netd(&["network", "ls", "-q"]).ok();
    d.netd(&["network", "create", "-o", &format!("{prefix}=abcdefghijklm"), "long"])
        .fails_with("invalid com.docker.network.container_iface_prefix value \"abcdefghijklm\"");
    assert_eq!(d.netd(&["network", "ls", "-q"]).ok(), before);
}

#[test]
fn a_sandbox_has_its_host_name_and_hosts_file_as_a_docker_container() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--subnet", "10.44.0.0/24", "app"]).ok();
    let id = d.netd(&["run", "-d", "--name", "h1", "--", "sleep", "60"]).ok().trim().to_owned();
    let sh = |sandbox: &str, script: &str| d.netd(&["exec", sandbox, "--", "sh", "-c", script]).ok();
    // Docker's defaults: the short id as host name, found at the sandbox's address.
    assert_eq!(sh("h1", "hostname"), format!("{}\n", &id[..12]));
    assert_eq!(sh("h1", "cat /etc/hosts"), format!("127.0.0.1\tlocalhost\n172.17.0.2\t{}\n", &id[..12]));
    assert_eq!(sh("h1", "getent hosts $(hostname)"), format!("172.17.0.2      {}\n", &id[..12]));

    // Given: a host name, more lines (`host-gateway` is the default bridge's address).
    let args = ["--hostname", "web.local", "--add-host", "db.example:10.9.9.9", "--add-host", "gw:host-gateway"];
    let mut run = vec!["run", "-d", "--name", "h2", "--network", "app"];
    run.extend_from_slice(&args);
    run.extend_from_slice(&["--", "sleep", "60"]);
    d.netd(&run).ok();
    assert_eq!(sh("h2", "hostname"), "web.local\n");
    let base = "127.0.0.1\tlocalhost\n10.9.9.9\tdb.example\n172.17.0.1\tgw\n10.44.0.2\tweb.local\n";
    assert_eq!(sh("h2", "cat /etc/hosts"), base);
    let none = d.netd(&["run", "--rm", "--network", "none", "--", "cat", "/etc/hosts"]).ok();
    assert_eq!(none, "127.0.0.1\tlocalhost\n", "no address, no line of its own");

    // The file follows the networks, while the sandbox runs.
    d.netd(&["network", "connect", "bridge", "h2"]).ok();
    assert_eq!(sh("h2", "cat /etc/hosts"), format!("{base}172.17.0.3\tweb.local\n"));
    d.netd(&["network", "disconnect", "bridge", "h2"]).ok();
    assert_eq!(sh("h2", "cat /etc/hosts"), base);

    // The host's own name and files are untouched; host mode sees them.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(d.netd(&["run", "--rm", "--network", "host", "--", "hostname"]).ok(), host_name);
    assert!(!std::fs::read_to_string("/etc/hosts").unwrap_or_default().contains("web.local"));

    // Refused, nothing made.
    let before = d.netd(&["ps", "-q"]).ok();
    d.netd(&["run", "--rm", "--hostname", "bad_name", "--", "true"]).fails_with("invalid hostname format: bad_name");
    d.netd(&["run", "--rm", "--network", "host", "--hostname", "x", "--", "true"])
        .fails_with("conflicting options: hostname and the network mode");
    d.netd(&["run", "--rm", "--add-host", "nocolon", "--", "true"]).fails_with("bad format for add-host: \"nocolon\"");
    d.netd(&["run", "--rm", "--add-host", "a:999.1.1.1", "--", "true"])
        .fails_with("invalid IP address in add-host: \"999.1.1.1\"");
    assert_eq!(d.netd(&["ps", "-q"]).ok(), before);

    // Removed with the sandbox.
    d.netd(&["rm", "-f", "h1", "h2"]).ok();
    let left: Vec<_> = std::fs::read_dir(d.exec_root().join("containers")).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}
