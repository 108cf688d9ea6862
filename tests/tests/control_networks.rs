//! Control plane, networks: the predefined networks, user networks and their subnets, IPAM
//! settings, and every error Docker names — through the netd CLI. Each test runs its own daemon
//! in its own namespace.

use netd_tests::daemon::TestDaemon;
use serde_json::Value;

fn inspect(d: &TestDaemon, name: &str) -> Value {
    let out = d.netd(&["network", "inspect", name]).ok();
    let v: Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

fn links(d: &TestDaemon) -> String {
    String::from_utf8_lossy(&d.host().ip(&["-o", "link"]).stdout).into_owned()
}

fn addrs(d: &TestDaemon, dev: &str) -> String {
    String::from_utf8_lossy(&d.host().ip(&["-4", "-o", "addr", "show", "dev", dev]).stdout).into_owned()
}

#[test]
fn exactly_three_predefined_networks_like_docker() {
    let d = TestDaemon::start(&[]);
    // Whoever can write to the API socket controls the host's networking: as dockerd's, it is
    // for root and its group only, whatever the umask.
    let socket = d.socket().trim_start_matches("unix://");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(socket).expect("socket").permissions());
    assert_eq!(mode & 0o777, 0o660, "{mode:o}");
    let ls = d.netd(&["network", "ls"]).ok();
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0], "NETWORK ID     NAME      DRIVER    SCOPE");
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{ls}");
    assert_eq!(
        rows.iter().map(|r| (r[1], r[2], r[3])).collect::<Vec<_>>(),
        [("bridge", "bridge", "local"), ("host", "host", "local"), ("none", "null", "local")]
    );
    assert!(rows.iter().all(|r| r[0].len() == 12));

    let bridge = inspect(&d, "bridge");
    assert_eq!(bridge["Id"].as_str().unwrap().len(), 64);
    assert_eq!(bridge["Driver"], "bridge");
    assert_eq!(bridge["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16");
    assert_eq!(bridge["IPAM"]["Config"][0]["Gateway"], "172.17.0.1");
    assert_eq!(bridge["IPAM"]["Options"], Value::Null);
    let opts = bridge["Options"].as_object().unwrap();
    assert_eq!(opts.len(), 6, "{opts:?}");
    for (k, v) in [
        ("com.docker.network.bridge.default_bridge", "true"),
        ("com.docker.network.bridge.enable_icc", "true"),
        ("com.docker.network.bridge.enable_ip_masquerade", "true"),
        ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
        ("com.docker.network.bridge.name", "docker0"),
        ("com.docker.network.driver.mtu", "1500"),
    ] {
        assert_eq!(opts[k], v, "{k}");
    }
    // The gateway lives on docker0, which is up.
    assert!(addrs(&d, "docker0").contains("172.17.0.1/16"));
    assert!(links(&d).contains("docker0: <"));
    assert!(links(&d).lines().any(|l| l.contains("docker0:") && l.contains(",UP")));

    // Field order as Docker prints it.
    let text = d.netd(&["network", "inspect", "none"]).ok();
    let name_at = text.find("\"Name\"").unwrap();
    let id_at = text.find("\"Id\"").unwrap();
    let labels_at = text.find("\"Labels\"").unwrap();
    assert!(name_at < id_at && id_at < labels_at, "{text}");
    assert_eq!(inspect(&d, "host")["Driver"], "host");
    assert_eq!(inspect(&d, "none")["Driver"], "null");
}

#[test]
fn predefined_networks_cannot_be_created_or_removed() {
    let d = TestDaemon::start(&[]);
    for name in ["bridge", "host", "none"] {
        d.netd(&["network", "rm", name])
            .fails_with(&format!("Error response from daemon: {name} is a pre-defined network and cannot be removed"));
        d.netd(&["network", "create", name]).fails_with(&format!("network with name {name} already exists"));
    }
    d.netd(&["network", "create", "-d", "host", "h2"]).fails_with("only one instance of \"host\" network is allowed");
    d.netd(&["network", "create", "-d", "null", "n2"]).fails_with("only one instance of \"null\" network is allowed");
    d.netd(&["network", "create", "-d", "overlay2x", "o"]).fails_with("plugin \"overlay2x\" not found");
    assert_eq!(d.netd(&["network", "ls", "-q"]).ok().lines().count(), 3);
}

#[test]
fn user_networks_take_docker_subnets_in_order_and_get_their_bridge() {
    let d = TestDaemon::start(&[]);
    let id = d.netd(&["network", "create", "my_net"]).ok().trim().to_owned();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let n = inspect(&d, "my_net");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "172.18.0.0/16");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "172.18.0.1");
    assert_eq!(n["IPAM"]["Options"], serde_json::json!({}));
    assert_eq!(n["Options"], serde_json::json!({}));
    let dev = format!("br-{}", &id[..12]);
    assert!(addrs(&d, &dev).contains("172.18.0.1/16"), "{}", links(&d));

    // A link-scope route of the host namespace takes 172.19.0.0/16 out of the pool.
    d.host().ip(&["link", "add", "lr0", "type", "veth", "peer", "name", "lr1"]);
    d.host().ip(&["addr", "add", "172.19.5.1/24", "dev", "lr0"]);
    d.host().ip(&["link", "set", "lr0", "up"]);
    d.host().ip(&["link", "set", "lr1", "up"]);
    d.netd(&["network", "create", "second"]).ok();
    assert_eq!(inspect(&d, "second")["IPAM"]["Config"][0]["Subnet"], "172.20.0.0/16");

    // Explicit subnet and gateway, as in the walk-through.
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
    let n2 = inspect(&d, "my_net2");
    assert_eq!(n2["IPAM"]["Config"][0]["Subnet"], "172.22.16.0/24");
    assert_eq!(n2["IPAM"]["Config"][0]["Gateway"], "172.22.16.1");
    let dev2 = format!("br-{}", &n2["Id"].as_str().unwrap()[..12]);
    assert!(addrs(&d, &dev2).contains("172.22.16.1/24"));

    // Options, labels, internal, range, aux addresses are kept and shown.
    d.netd(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--ip-range",
        "10.77.0.128/25",
        "--aux-address",
        "printer=10.77.0.130",
        "--internal",
        "--label",
        "team=net",
        "-o",
        "com.docker.network.bridge.name=custombr0",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "fancy",
    ])
    .ok();
    let f = inspect(&d, "fancy");
    assert_eq!(f["Internal"], true);
    assert_eq!(f["Labels"]["team"], "net");
    assert_eq!(f["IPAM"]["Config"][0]["IPRange"], "10.77.0.128/25");
    assert_eq!(f["IPAM"]["Config"][0]["AuxiliaryAddresses"]["printer"], "10.77.0.130");
    assert_eq!(f["Options"]["com.docker.network.bridge.name"], "custombr0");
    assert!(links(&d).lines().any(|l| l.contains("custombr0:") && l.contains("mtu 1400")), "{}", links(&d));

    // ls: sorted by name, filters.
    let names: Vec<String> = d
        .netd(&["network", "ls"])
        .ok()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(names, ["bridge", "fancy", "host", "my_net", "my_net2", "none", "second"]);
    let custom = d.netd(&["network", "ls", "--filter", "type=custom", "--format-ignored"]);
    assert_ne!(custom.code, 0, "unknown flags are refused");
    let custom = d.netd(&["network", "ls", "-q", "--filter", "type=custom"]).ok();
    assert_eq!(custom.lines().count(), 4);
    let by_name = d.netd(&["network", "ls", "--filter", "name=my_"]).ok();
    assert_eq!(by_name.lines().count(), 3, "{by_name}");
    let by_id = d.netd(&["network", "ls", "-q", "--filter", &format!("id={}", &id[..5])]).ok();
    assert_eq!(by_id.trim(), &id[..12]);
    let builtin = d.netd(&["network", "ls", "-q", "--filter", "type=builtin", "--filter", "driver=bridge"]).ok();
    assert_eq!(builtin.lines().count(), 1);

    // Lookup by full id, name, and unique prefix; removal deletes the bridge.
    assert_eq!(inspect(&d, &id)["Name"], "my_net");
    assert_eq!(inspect(&d, &id[..6])["Name"], "my_net");
    assert_eq!(d.netd(&["network", "rm", &id[..8]]).ok().trim(), &id[..8]);
    assert!(!links(&d).contains(&dev));
    d.netd(&["network", "rm", "my_net"]).fails_with("Error response from daemon: network my_net not found");
    d.netd(&["network", "inspect", "my_net"]).fails_with("network my_net not found");
}

#[test]
fn network_ls_filters_as_docker_does() {
    let d = TestDaemon::start(&[]);
    for args in [
        &["--label", "team=net", "--label", "tier=web", "fancy"][..],
        &["--label", "team=db", "my_net"],
        &["my_net2"],
        &["second"],
    ] {
        let mut create = vec!["network", "create"];
        create.extend(args);
        d.netd(&create).ok();
    }
    let ls_names = |filters: &[&str]| -> Vec<String> {
        let mut args = vec!["network", "ls"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let out = d.netd(&args);
        assert_eq!(out.code, 0, "{filters:?}: {}", out.stderr);
        out.stdout.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned()).collect()
    };
    // Labels must all match (Docker's MatchKVList); the values of other keys are alternatives.
    assert_eq!(ls_names(&["label=team=net"]), ["fancy"]);
    assert_eq!(ls_names(&["label=team"]), ["fancy", "my_net"]);
    assert_eq!(ls_names(&["label=team=net", "label=tier=web"]), ["fancy"]);
    assert_eq!(ls_names(&["label=team=net", "label=nosuch"]), Vec::<String>::new());
    assert_eq!(ls_names(&["name=fancy", "name=second"]), ["fancy", "second"]);
    assert_eq!(ls_names(&["scope=local", "driver=null"]), ["none"]);
    // Dangling: the custom networks no container uses (what `prune` would remove).
    d.netd(&["run", "-d", "--name", "user", "--network", "second", "--", "sleep", "300"]).ok();
    assert_eq!(ls_names(&["dangling=true"]), ["fancy", "my_net", "my_net2"]);
    assert_eq!(ls_names(&["dangling=false"]), ["bridge", "host", "none", "second"]);
    assert_eq!(ls_names(&["dangling=1", "label=team"]), ["fancy", "my_net"]);
    d.netd(&["network", "ls", "--filter", "dangling=maybe"]).fails_with(
        r#"Error response from daemon: invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")"#,
    );
    d.netd(&["network", "ls", "--filter", "dangling=true", "--filter", "dangling=false"])
        .fails_with(r#"got more than one value for filter key "dangling""#);
}

#[test]
fn bad_input_gets_docker_errors_and_changes_nothing() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--subnet", "172.22.16.0/24", "taken"]).ok();
    let links_before = links(&d);
    let ls_before = d.netd(&["network", "ls", "-q"]).ok();
    let state_before = d.state_json()["networks"].as_object().unwrap().len();

    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "taken"], "network with name taken already exists"),
        (&["network", "create", "--subnet", "172.22.0.0/16", "x"], "Pool overlaps with other one on this address space"),
        (&["network", "create", "--subnet", "172.17.5.0/24", "x"], "Pool overlaps with other one on this address space"),
        (&["network", "create", "--subnet", "10.1.0.0/24", "--gateway", "10.2.0.1", "x"], "no matching subnet for gateway 10.2.0.1"),
        (&["network", "create", "--subnet", "10.1.0.0/24", "--ip-range", "10.2.0.0/25", "x"], "no matching subnet for range 10.2.0.0/25"),
        (&["network", "create", "--subnet", "10.1.0.0/24", "--aux-address", "a=10.9.0.1", "x"], "no matching subnet for aux-address 10.9.0.1"),
        (&["network", "create", "--subnet", "10.1.0.5/16", "x"], "invalid subnet 10.1.0.5/16: it should be 10.1.0.0/16"),
        (&["network", "create", "--subnet", "10.1.0.0/33", "x"], "invalid CIDR address: 10.1.0.0/33"),
        (&["network", "create", "--gateway", "10.1.0.1", "x"], "every ip-range or gateway must have a corresponding subnet"),
        (&["network", "create", "-o", "com.docker.network.driver.mtu=-1", "x"], "invalid MTU number: -1"),
        (
            &["network", "create", "-o", "com.docker.network.bridge.enable_icc=maybe", "x"],
            "failed to parse com.docker.network.bridge.enable_icc value: strconv.ParseBool: parsing \"maybe\": invalid syntax",
        ),
        (&["network", "create", "-o", "com.docker.network.bridge.name=docker0", "x"], "networks have same bridge name"),
        (&["network", "create", "-d", "macvlan9", "x"], "plugin \"macvlan9\" not found"),
        (&["network", "rm", "nosuch"], "network nosuch not found"),
        (&["network", "connect", "nosuch", "c"], "network nosuch not found"),
        (&["network", "connect", "bridge", "nosuch"], "No such container: nosuch"),
    ];
    for (args, message) in cases {
        let run = d.netd(args);
        run.fails_with(message);
        assert!(run.stderr.starts_with("Error response from daemon: "), "{}", run.stderr);
    }
    assert_eq!(links(&d), links_before, "no link was created or removed");
    assert_eq!(d.netd(&["network", "ls", "-q"]).ok(), ls_before);
    assert_eq!(d.state_json()["networks"].as_object().unwrap().len(), state_before, "nothing persisted");
}

#[test]
fn daemon_flags_shape_the_default_bridge_and_pools() {
    let d = TestDaemon::start(&[
        "--bridge",
        "netd0",
        "--bip",
        "10.99.0.1/24",
        "--mtu",
        "1400",
        "--icc=false",
        "--ip-masq=false",
        "--default-address-pool",
        "base=10.200.0.0/16,size=24",
    ]);
    let b = inspect(&d, "bridge");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "10.99.0.0/24");
    assert_eq!(b["IPAM"]["Config"][0]["Gateway"], "10.99.0.1");
    assert_eq!(b["Options"]["com.docker.network.bridge.name"], "netd0");
    assert_eq!(b["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(b["Options"]["com.docker.network.bridge.enable_icc"], "false");
    assert_eq!(b["Options"]["com.docker.network.bridge.enable_ip_masquerade"], "false");
    assert!(addrs(&d, "netd0").contains("10.99.0.1/24"));
    d.netd(&["network", "create", "a"]).ok();
    d.netd(&["network", "create", "b"]).ok();
    assert_eq!(inspect(&d, "a")["IPAM"]["Config"][0]["Subnet"], "10.200.0.0/24");
    assert_eq!(inspect(&d, "b")["IPAM"]["Config"][0]["Subnet"], "10.200.1.0/24");
}

#[test]
fn default_network_opts_apply_to_new_networks_unless_they_give_their_own() {
    let d = TestDaemon::start(&[
        "--default-network-opt",
        "bridge=com.docker.network.driver.mtu=1450",
        "--default-network-opt",
        "bridge=com.docker.network.bridge.enable_icc=false",
    ]);
    d.netd(&["network", "create", "a"]).ok();
    d.netd(&["network", "create", "-o", "com.docker.network.driver.mtu=1400", "b"]).ok();
    let (a, b) = (inspect(&d, "a"), inspect(&d, "b"));
    assert_eq!(a["Options"]["com.docker.network.driver.mtu"], "1450", "{a}");
    assert_eq!(a["Options"]["com.docker.network.bridge.enable_icc"], "false", "{a}");
    assert_eq!(b["Options"]["com.docker.network.driver.mtu"], "1400", "its own wins: {b}");
    assert_eq!(b["Options"]["com.docker.network.bridge.enable_icc"], "false", "{b}");
    let bridge = |n: &Value| format!("br-{}:", &n["Id"].as_str().expect("id")[..12]);
    assert!(links(&d).lines().any(|l| l.contains(&bridge(&a)) && l.contains("mtu 1450")), "{}", links(&d));
    assert!(links(&d).lines().any(|l| l.contains(&bridge(&b)) && l.contains("mtu 1400")), "{}", links(&d));
    // The default bridge is the daemon's own flags' (as dockerd's).
    assert_eq!(inspect(&d, "bridge")["Options"]["com.docker.network.driver.mtu"], "1500");
}

#[test]
fn bad_default_network_opts_stop_the_daemon_before_it_makes_anything() {
    for (opt, message) in [
        ("bridge=com.docker.network.driver.mtu=-1", "invalid MTU number: -1"),
        ("overlay=com.docker.network.driver.mtu=1400", "only bridge networks do"),
        ("bridge=com.docker.network.bridge.name=same", "every network needs a bridge of its own"),
        ("bridge", "is not DRIVER=OPT=VALUE"),
    ] {
        // In a namespace of the test's own, whatever happens.
        let host = netd_tests::netns::NetNs::new("ndt-dno");
        let binary = netd_tests::daemon::netd_binary();
        let out = host
            .command(
                binary.to_str().expect("path"),
                &["daemon", "--default-network-opt", opt, "--state-dir", "/nonexistent/netd-never"],
            )
            .output()
            .expect("netd daemon");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opt}: {stderr}");
        assert!(stderr.contains(message), "{opt}: {stderr}");
    }
    assert!(!std::path::Path::new("/nonexistent/netd-never").exists());
}

#[test]
fn prune_removes_only_unused_custom_networks() {
    let d = TestDaemon::start(&[]);
    d.netd(&["network", "create", "--label", "keep=yes", "kept"]).ok();
    d.netd(&["network", "create", "unused"]).ok();
    d.netd(&["network", "create", "busy"]).ok();
    d.netd(&["run", "-d", "--name", "s1", "--network", "busy", "--", "sleep", "30"]).ok();
    let out = d.netd(&["network", "prune", "-f", "--filter", "label=keep=yes"]).ok();
    assert_eq!(out, "Deleted Networks:\nkept\n");
    let out = d.netd(&["network", "prune", "-f"]).ok();
    assert_eq!(out, "Deleted Networks:\nunused\n");
    let left = d.netd(&["network", "ls"]).ok();
    assert!(left.contains("busy") && left.contains("bridge") && !left.contains("unused"));
    // Without -f and without a "y" on stdin nothing is removed.
    d.netd(&["rm", "-f", "s1"]).ok();
    d.netd(&["network", "prune"]).ok();
    assert!(d.netd(&["network", "ls"]).ok().contains("busy"));
}
