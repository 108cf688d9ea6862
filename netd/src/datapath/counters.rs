//! Reading the datapath's per-CPU counters (summed over CPUs).

use aya::maps::{PerCpuArray, PerCpuHashMap, PerCpuValues};
use netd_common::{
    Counter, EndpointCounters, EndpointReasonKey, PacketClass, Reason, CLASS_SLOTS, MAX_ENDPOINTS, REASON_SLOTS,
};

use super::{map_err, Datapath, DatapathError, Result};

const VERDICTS: &str = "NETD_VERDICTS";
const ENDPOINT_COUNTERS: &str = "NETD_ENDPOINT_COUNTERS";
const ENDPOINT_DROPS: &str = "NETD_ENDPOINT_DROPS";
const EVENTS_LOST: &str = "NETD_EVENTS_LOST";

fn add(a: Counter, b: &Counter) -> Counter {
    Counter { packets: a.packets + b.packets, bytes: a.bytes + b.bytes }
}

/// One endpoint's counters: by outcome, and its drops by reason.
#[derive(Clone, Debug, Default)]
pub struct EndpointTotals {
    pub counters: EndpointCounters,
    pub drops: Vec<(u8, Counter)>,
}

impl Datapath {
    /// Records lost to a full event ring (`NETD_EVENTS`) since its counter was made.
    pub fn events_lost(&self) -> Result<u64> {
        let map = self.ebpf.map(EVENTS_LOST).ok_or(DatapathError::MissingMap { name: EVENTS_LOST })?;
        let array = PerCpuArray::<_, u64>::try_from(map).map_err(map_err(EVENTS_LOST))?;
        Ok(array.get(&0, 0).map_err(map_err(EVENTS_LOST))?.iter().sum())
    }

    /// Every (reason, class) counter with traffic.
    fn verdicts(&self) -> Result<Vec<(u8, u8, Counter)>> {
        let map = self.ebpf.map(VERDICTS).ok_or(DatapathError::MissingMap { name: VERDICTS })?;
        let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(VERDICTS))?;
        let mut out = Vec::new();
        for (index, values) in array.iter().enumerate() {
            let total = values.map_err(map_err(VERDICTS))?.iter().fold(Counter::default(), add);
            if total.packets != 0 {
                let index = u32::try_from(index).expect("map size fits u32");
                let reason = u8::try_from(index / CLASS_SLOTS).expect("reason slots fit u8");
                let class = u8::try_from(index % CLASS_SLOTS).expect("class slots fit u8");
                out.push((reason, class, total));
            }
        }
        Ok(out)
    }

    /// Per-reason counters with traffic (raw reason values: unknown ones included).
    pub fn reason_counters(&self) -> Result<Vec<(u8, Counter)>> {
        let mut sums = vec![Counter::default(); REASON_SLOTS as usize];
        for (reason, _, c) in self.verdicts()? {
            sums[usize::from(reason)] = add(sums[usize::from(reason)], &c);
        }
        Ok(sums
            .into_iter()
            .enumerate()
            .filter(|(_, c)| c.packets != 0)
            .map(|(r, c)| (u8::try_from(r).expect("u8 reasons"), c))
            .collect())
    }

    /// The counter of one reason.
    pub fn reason_counter(&self, reason: Reason) -> Result<Counter> {
        Ok(self.reason_counters()?.into_iter().find(|(r, _)| *r == reason as u8).map(|(_, c)| c).unwrap_or_default())
    }

    /// The counter of one packet class.
    pub fn class_counter(&self, class: PacketClass) -> Result<Counter> {
        Ok(self
            .verdicts()?
            .into_iter()
            .filter(|(_, c, _)| *c == class as u8)
            .fold(Counter::default(), |acc, (_, _, c)| add(acc, &c)))
    }

    /// The counters of the endpoint in `slot`.
    pub fn endpoint_counters(&self, slot: u32) -> Result<EndpointTotals> {
        let map = self.ebpf.map(ENDPOINT_COUNTERS).ok_or(DatapathError::MissingMap { name: ENDPOINT_COUNTERS })?;
        let array = PerCpuArray::<_, EndpointCounters>::try_from(map).map_err(map_err(ENDPOINT_COUNTERS))?;
        let counters = array.get(&slot, 0).map_err(map_err(ENDPOINT_COUNTERS))?.iter().fold(
            EndpointCounters::default(),
            |a, c| EndpointCounters {
                forwarded: add(a.forwarded, &c.forwarded),
                passed: add(a.passed, &c.passed),
                masqueraded: add(a.masqueraded, &c.masqueraded),
                dropped: add(a.dropped, &c.dropped),
            },
        );
        let map = self.ebpf.map(ENDPOINT_DROPS).ok_or(DatapathError::MissingMap { name: ENDPOINT_DROPS })?;
        let drops_map =
            PerCpuHashMap::<_, EndpointReasonKey, Counter>::try_from(map).map_err(map_err(ENDPOINT_DROPS))?;
        let mut drops = Vec::new();
        for entry in &drops_map {
            let (key, values) = entry.map_err(map_err(ENDPOINT_DROPS))?;
            if key.slot == slot {
                drops.push((key.reason, values.iter().fold(Counter::default(), add)));
            }
        }
        drops.sort_by_key(|(r, _)| *r);
        Ok(EndpointTotals { counters, drops })
    }

    /// Zeroes the counters of `slot` (a new endpoint starts from nothing; slots are reused).
    pub fn reset_endpoint_counters(&mut self, slot: u32) -> Result<()> {
        if slot >= MAX_ENDPOINTS {
            return Ok(());
        }
        let cpus = aya::util::nr_cpus().map_err(|(path, source)| DatapathError::Io {
            what: "counting CPUs in",
            path: path.into(),
            source,
        })?;
        let map = self.ebpf.map_mut(ENDPOINT_COUNTERS).ok_or(DatapathError::MissingMap { name: ENDPOINT_COUNTERS })?;
        let mut array = PerCpuArray::<_, EndpointCounters>::try_from(map).map_err(map_err(ENDPOINT_COUNTERS))?;
        let zeros = PerCpuValues::try_from(vec![EndpointCounters::default(); cpus]).map_err(|source| {
            DatapathError::Io { what: "zeroing the counters in", path: ENDPOINT_COUNTERS.into(), source }
        })?;
        array.set(slot, zeros, 0).map_err(map_err(ENDPOINT_COUNTERS))?;
        let map = self.ebpf.map_mut(ENDPOINT_DROPS).ok_or(DatapathError::MissingMap { name: ENDPOINT_DROPS })?;
        let mut drops =
            PerCpuHashMap::<_, EndpointReasonKey, Counter>::try_from(map).map_err(map_err(ENDPOINT_DROPS))?;
        let keys: Vec<EndpointReasonKey> =
            drops.keys().filter_map(std::result::Result::ok).filter(|k| k.slot == slot).collect();
        for k in keys {
            let _ = drops.remove(&k);
        }
        Ok(())
    }
}
