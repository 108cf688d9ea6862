//! The eBPF datapath as the control plane sees it: the compiled object, loading it, and reading
//! its counters and events.

use aya::{
    maps::{MapData, MapError, PerCpuArray, RingBuf},
    programs::{tc::SchedClassifierLinkId, ProgramError, SchedClassifier, TcAttachType},
    Ebpf, EbpfError, EbpfLoader,
};
use netd_common::{Counter, Event, PacketClass, Reason, CLASS_SLOTS, REASON_SLOTS};

/// The eBPF object built by `build.rs` from `netd-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"));

/// Name of the program attached to the host side of every endpoint veth.
pub const PROG_FROM_CONTAINER: &str = "netd_from_container";

/// Errors of the datapath layer.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object failed")]
    Load(#[source] Box<EbpfError>),
    #[error("program {name} is missing from the eBPF object or has the wrong type")]
    MissingProgram { name: &'static str },
    #[error("loading program {name} into the kernel failed")]
    LoadProgram {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("attaching program {name} to {ifname} failed")]
    Attach {
        name: &'static str,
        ifname: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("map {name} is missing from the eBPF object")]
    MissingMap { name: &'static str },
    #[error("map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<MapError>,
    },
}

/// How to load the datapath.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Emit a trace event for every packet (tests and debugging; costs a ring-buffer write per
    /// packet, removed by the verifier when off).
    pub trace: bool,
}

/// The loaded datapath: programs verified and loaded, maps created, nothing attached.
pub struct Datapath {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
}

impl Datapath {
    /// Loads the object and every program into the kernel.
    pub fn load(options: LoadOptions) -> Result<Self, DatapathError> {
        let trace = u8::from(options.trace);
        let mut ebpf = EbpfLoader::new()
            .override_global("NETD_TRACE", &trace, true)
            .load(EBPF_OBJECT)
            .map_err(|e| DatapathError::Load(Box::new(e)))?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(PROG_FROM_CONTAINER)
            .and_then(|p| p.try_into().ok())
            .ok_or(DatapathError::MissingProgram {
                name: PROG_FROM_CONTAINER,
            })?;
        program.load().map_err(|e| DatapathError::LoadProgram {
            name: PROG_FROM_CONTAINER,
            source: Box::new(e),
        })?;
        let events = ebpf
            .take_map("NETD_EVENTS")
            .ok_or(DatapathError::MissingMap {
                name: "NETD_EVENTS",
            })?;
        let events = RingBuf::try_from(events).map_err(|e| DatapathError::Map {
            name: "NETD_EVENTS",
            source: Box::new(e),
        })?;
        Ok(Self { ebpf, events })
    }

    /// The program for the host side of endpoint veths.
    pub fn from_container(&self) -> &SchedClassifier {
        self.ebpf
            .program(PROG_FROM_CONTAINER)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    /// Attaches `netd_from_container` to the ingress of `ifname` (TCX; netlink clsact only on
    /// kernels without TCX). The interface is looked up in the calling thread's namespace.
    pub fn attach_from_container(
        &mut self,
        ifname: &str,
    ) -> Result<SchedClassifierLinkId, DatapathError> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROG_FROM_CONTAINER)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load");
        program
            .attach(ifname, TcAttachType::Ingress)
            .map_err(|e| DatapathError::Attach {
                name: PROG_FROM_CONTAINER,
                ifname: ifname.to_owned(),
                source: Box::new(e),
            })
    }

    /// Per-reason counters summed over CPUs; only reasons with traffic, unknown values included.
    pub fn reason_counters(&self) -> Result<Vec<(u8, Counter)>, DatapathError> {
        self.sum_counters("NETD_REASONS", REASON_SLOTS)
    }

    /// The counter of one reason summed over CPUs.
    pub fn reason_counter(&self, reason: Reason) -> Result<Counter, DatapathError> {
        Ok(self
            .reason_counters()?
            .into_iter()
            .find(|(r, _)| *r == reason as u8)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    /// The counter of one packet class summed over CPUs.
    pub fn class_counter(&self, class: PacketClass) -> Result<Counter, DatapathError> {
        Ok(self
            .sum_counters("NETD_CLASSES", CLASS_SLOTS)?
            .into_iter()
            .find(|(c, _)| *c == class as u8)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    /// Takes every event waiting in the ring buffer.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<Event>() {
                out.push(bytemuck::pod_read_unaligned(&item[..size_of::<Event>()]));
            }
        }
        out
    }

    fn sum_counters(
        &self,
        name: &'static str,
        slots: u32,
    ) -> Result<Vec<(u8, Counter)>, DatapathError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or(DatapathError::MissingMap { name })?;
        let array = PerCpuArray::<_, Counter>::try_from(map).map_err(|e| DatapathError::Map {
            name,
            source: Box::new(e),
        })?;
        let mut out = Vec::new();
        for index in 0..slots {
            let per_cpu = array.get(&index, 0).map_err(|e| DatapathError::Map {
                name,
                source: Box::new(e),
            })?;
            let total = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                packets: acc.packets + c.packets,
                bytes: acc.bytes + c.bytes,
            });
            if total.packets != 0 {
                out.push((u8::try_from(index).expect("slots fit in u8"), total));
            }
        }
        Ok(out)
    }
}
