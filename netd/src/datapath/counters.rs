//! Reading the datapath's per-CPU counters (summed over CPUs).

use aya::maps::{PerCpuArray, PerCpuHashMap};
use netd_common::{Counter, EndpointReasonKey, PacketClass, Reason, CLASS_SLOTS, REASON_SLOTS};

use super::{map_err, Datapath, DatapathError, Result};

fn add(a: Counter, b: &Counter) -> Counter {
    Counter {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    }
}

impl Datapath {
    /// Per-reason counters with traffic (raw reason values: unknown ones included).
    pub fn reason_counters(&self) -> Result<Vec<(u8, Counter)>> {
        self.sum_array("NETD_REASONS", REASON_SLOTS)
    }

    /// The counter of one reason.
    pub fn reason_counter(&self, reason: Reason) -> Result<Counter> {
        Ok(self
            .reason_counters()?
            .into_iter()
            .find(|(r, _)| *r == reason as u8)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    /// The counter of one packet class.
    pub fn class_counter(&self, class: PacketClass) -> Result<Counter> {
        Ok(self
            .sum_array("NETD_CLASSES", CLASS_SLOTS)?
            .into_iter()
            .find(|(c, _)| *c == class as u8)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    /// Per-reason counters of the endpoint whose host veth is `ifindex`.
    pub fn endpoint_counters(&self, ifindex: u32) -> Result<Vec<(u8, Counter)>> {
        const NAME: &str = "NETD_ENDPOINT_STATS";
        let map = self
            .ebpf
            .map(NAME)
            .ok_or(DatapathError::MissingMap { name: NAME })?;
        let m =
            PerCpuHashMap::<_, EndpointReasonKey, Counter>::try_from(map).map_err(map_err(NAME))?;
        let mut out = Vec::new();
        for entry in &m {
            let (key, values) = entry.map_err(map_err(NAME))?;
            if key.ifindex == ifindex {
                out.push((key.reason, values.iter().fold(Counter::default(), add)));
            }
        }
        out.sort_by_key(|(r, _)| *r);
        Ok(out)
    }

    /// Forgets the per-endpoint counters of `ifindex` (its endpoint is gone; ifindexes are reused).
    pub fn clear_endpoint_counters(&mut self, ifindex: u32) -> Result<()> {
        const NAME: &str = "NETD_ENDPOINT_STATS";
        let map = self
            .ebpf
            .map_mut(NAME)
            .ok_or(DatapathError::MissingMap { name: NAME })?;
        let mut m =
            PerCpuHashMap::<_, EndpointReasonKey, Counter>::try_from(map).map_err(map_err(NAME))?;
        let keys: Vec<EndpointReasonKey> = m
            .keys()
            .filter_map(std::result::Result::ok)
            .filter(|k| k.ifindex == ifindex)
            .collect();
        for k in keys {
            let _ = m.remove(&k);
        }
        Ok(())
    }

    fn sum_array(&self, name: &'static str, slots: u32) -> Result<Vec<(u8, Counter)>> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(name))?;
        let mut out = Vec::new();
        for index in 0..slots {
            let total = array
                .get(&index, 0)
                .map_err(map_err(name))?
                .iter()
                .fold(Counter::default(), add);
            if total.packets != 0 {
                out.push((u8::try_from(index).expect("slots fit in u8"), total));
            }
        }
        Ok(out)
    }
}
