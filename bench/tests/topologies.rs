//! The bench's topologies, functionally (not by timing): each carries every workload, and the
//! netd column really goes through netd's datapath (its counters move).

use netd_bench::{
    cost,
    topology::{Kind, Topology},
    workload,
};

#[test]
fn every_topology_carries_every_workload() {
    for kind in Kind::ALL.into_iter().chain(Kind::NAT).chain(Kind::PUBLISH) {
        let t = Topology::build(kind).unwrap_or_else(|e| panic!("building {kind:?}: {e:#}"));
        let counted = match kind {
            Kind::NetdNat | Kind::NetdNatXdp => "redirect-nat",
            Kind::NetdPublish => "redirect-reverse-nat",
            _ => "redirect-peer",
        };
        let before = t.daemon().map(|d| d.count(None, counted));
        let tcp = workload::tcp_throughput(&t.a, &t.b, 0.3).expect("tcp");
        let udp = workload::udp_rate(&t.a, &t.b, 0.2).expect("udp");
        let rr = workload::tcp_rr(&t.a, &t.b, 0.2).expect("rr");
        let crr = workload::tcp_crr(&t.a, &t.b, 0.2).expect("crr");
        assert!(tcp > 0.0 && udp > 0.0 && rr.tps > 0.0 && crr > 0.0, "{kind:?}: {tcp} {udp} {rr:?} {crr}");
        assert!(rr.p99_us >= rr.mean_us * 0.5);
        if let (Some(d), Some(before)) = (t.daemon(), before) {
            let moved = d.count(None, counted) - before;
            assert!(moved > 1000, "{kind:?} used netd's datapath ({moved} packets {counted})");
        }
    }
}

#[test]
fn many_flows_through_both_masquerades() {
    for kind in [Kind::DockerNat, Kind::NetdNat] {
        let t = Topology::build(kind).unwrap_or_else(|e| panic!("building {kind:?}: {e:#}"));
        let f = workload::udp_flows(&t.a, &t.b, 64, 4).expect("flows");
        assert_eq!((f.flows, f.first_pass, f.second_pass), (256, 256, 256), "{kind:?}");
    }
}

#[test]
fn the_masquerade_cost_is_measured() {
    let c = cost::nat_cost(50, 1).expect("test run");
    assert!(c.egress_ns > 0.0 && c.egress_new_ns > 0.0 && c.ingress_ns > 0.0 && c.host_ns > 0.0, "{c:?}");
    assert!(c.egress_repeated_ns > 0.0 && c.ingress_repeated_ns > 0.0, "{c:?}");
}

#[test]
fn the_program_cost_is_measured() {
    let c = cost::test_run_cost(1000, 1).expect("test run");
    assert!(c.floor_ns > 0.0 && c.redirect_ns > 0.0 && c.pass_ns > 0.0 && c.drop_ns > 0.0, "{c:?}");
}
