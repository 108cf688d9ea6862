//! What `/proc` says about processes and the machine, as `docker stats` and `docker top` show
//! a container: which processes a sandbox has, the CPU time, memory and disk I/O they use, and
//! its interfaces' counters. Reading only; the parsers are pure and tested on captured text.

use std::{collections::BTreeMap, io, path::Path};

/// Clock ticks per second of `/proc`'s times (`USER_HZ`, 100 on every Linux architecture;
/// what `sysconf(_SC_CLK_TCK)` returns).
const USER_HZ: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// One process as `/proc/PID/stat` gives it (times in clock ticks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// Field 3: `R`, `S`, `D`, `Z` (a zombie: exited, not yet reaped), …
    pub state: char,
    pub ppid: u32,
    /// Its own user and system time, and that of its children it has waited for.
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    pub threads: u64,
    /// Its network namespace ([`namespace_id`] of `/proc/PID/ns/net`), when listed by
    /// [`all_processes`] and readable.
    pub netns: Option<(u64, u64)>,
}

impl Default for ProcStat {
    fn default() -> Self {
        Self { pid: 0, state: 'S', ppid: 0, utime: 0, stime: 0, cutime: 0, cstime: 0, threads: 0, netns: None }
    }
}

/// Parses a `/proc/PID/stat` line (the command, field 2, may hold spaces and parentheses).
pub fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // Field 3 (state) on, after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let n = |field: usize| f.get(field - 3).and_then(|s| s.parse::<u64>().ok());
    let signed = |field: usize| f.get(field - 3).and_then(|s| s.parse::<i64>().ok()).map(|v| v.max(0).unsigned_abs());
    Some(ProcStat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(n(4)?).ok()?,
        utime: n(14)?,
        stime: n(15)?,
        cutime: signed(16)?,
        cstime: signed(17)?,
        threads: n(20)?,
        netns: None,
    })
}

/// Every process now, with its network namespace (tasks that vanish while listed are
/// skipped).
pub fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let mut p = parse_stat(pid, &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
            p.netns = namespace_id(Path::new(&format!("/proc/{pid}/ns/net"))).ok();
            Some(p)
        })
        .collect()
}

/// The identity of a namespace file (`/proc/PID/ns/net`, or a pinned one): its device and inode.
pub fn namespace_id(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The processes among `all` in the network namespace `ns` (see [`namespace_id`]).
pub fn in_network_namespace(all: &[ProcStat], ns: (u64, u64)) -> Vec<ProcStat> {
    all.iter().filter(|p| p.netns == Some(ns)).cloned().collect()
}

/// The processes among `all` that are `roots` or descend from one.
pub fn with_descendants(all: &[ProcStat], roots: &[u32]) -> Vec<ProcStat> {
    let mut children: BTreeMap<u32, Vec<&ProcStat>> = BTreeMap::new();
    for p in all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out: Vec<ProcStat> = all.iter().filter(|p| roots.contains(&p.pid)).cloned().collect();
    let mut i = 0;
    while i < out.len() {
        let kids = children.get(&out[i].pid).map(Vec::as_slice).unwrap_or_default();
        for k in kids {
            if !out.iter().any(|o| o.pid == k.pid) {
                out.push((*k).clone());
            }
        }
        i += 1;
    }
    out
}

/// Memory a process maps, shared pages split among their sharers (`Pss*` of
/// `/proc/PID/smaps_rollup`), in bytes: summed over processes, a page they share counts once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.anon + self.file + self.shmem
    }
}

/// Parses `/proc/PID/smaps_rollup`.
pub fn parse_smaps_rollup(text: &str) -> Memory {
    let mut m = Memory::default();
    for (key, kib) in kib_lines(text) {
        match key {
            "Pss_Anon" => m.anon = kib * 1024,
            "Pss_File" => m.file = kib * 1024,
            "Pss_Shmem" => m.shmem = kib * 1024,
            _ => {}
        }
    }
    m
}

/// `KEY: N kB` lines.
fn kib_lines(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|l| {
        let (key, rest) = l.split_once(':')?;
        Some((key.trim(), rest.trim().trim_end_matches("kB").trim().parse().ok()?))
    })
}

/// Bytes a process (with the children it waited for) had the storage layer read and write
/// (`read_bytes`, `write_bytes` of `/proc/PID/io`).
pub fn parse_io(text: &str) -> (u64, u64) {
    let mut io = (0, 0);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("read_bytes: ") {
            io.0 = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("write_bytes: ") {
            io.1 = v.trim().parse().unwrap_or(0);
        }
    }
    io
}

/// What a set of processes uses, summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time in ns, user and kernel (with the children they waited for).
    pub cpu_user_ns: u64,
    pub cpu_kernel_ns: u64,
    pub memory: Memory,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Tasks (threads), as a cgroup's `pids.current` counts them.
    pub tasks: u64,
}

impl Usage {
    /// Sums the usage of `procs` as they are now (times read again; those that have exited
    /// meanwhile, zombies included, left out).
    pub fn of(procs: &[ProcStat]) -> Self {
        let mut u = Self::default();
        let now = procs
            .iter()
            .filter_map(|p| parse_stat(p.pid, &std::fs::read_to_string(format!("/proc/{}/stat", p.pid)).ok()?));
        for p in now.filter(|p| !matches!(p.state, 'Z' | 'X')) {
            u.cpu_user_ns += (p.utime + p.cutime) * NS_PER_TICK;
            u.cpu_kernel_ns += (p.stime + p.cstime) * NS_PER_TICK;
            u.tasks += p.threads;
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", p.pid)) {
                let m = parse_smaps_rollup(&text);
                u.memory.anon += m.anon;
                u.memory.file += m.file;
                u.memory.shmem += m.shmem;
            }
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/io", p.pid)) {
                let (r, w) = parse_io(&text);
                u.read_bytes += r;
                u.write_bytes += w;
            }
        }
        u
    }

    pub fn cpu_ns(&self) -> u64 {
        self.cpu_user_ns + self.cpu_kernel_ns
    }
}

/// The machine's CPU time in ns since boot (the first seven fields of `/proc/stat`'s `cpu`
/// line, user to softirq, as dockerd sums them) and its online CPUs (the `cpuN` lines).
pub fn parse_proc_stat(text: &str) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for l in text.lines() {
        let mut f = l.split_ascii_whitespace();
        match f.next() {
            Some("cpu") => total = f.take(7).filter_map(|v| v.parse::<u64>().ok()).sum::<u64>() * NS_PER_TICK,
            Some(name) if name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`).
pub fn parse_mem_total(text: &str) -> u64 {
    kib_lines(text).find(|(k, _)| *k == "MemTotal").map_or(0, |(_, kib)| kib * 1024)
}

/// One interface's counters as `/proc/net/dev` gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetDev {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: each interface's counters by name, `lo` left out (as Docker's).
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetDev> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let v: Vec<u64> = rest.split_ascii_whitespace().map_while(|s| s.parse().ok()).collect();
            if v.len() < 12 || name.trim() == "lo" {
                return None;
            }
            let dev = NetDev {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            };
            Some((name.trim().to_owned(), dev))
        })
        .collect()
}

/// The counters of the interfaces of the network namespace at `netns` (`lo` left out).
pub fn net_dev_in(netns: &Path) -> io::Result<BTreeMap<String, NetDev>> {
    // `thread-self`: the namespace of the thread that reads, which `run_in` moved there.
    crate::netns::run_in(netns, || std::fs::read_to_string("/proc/thread-self/net/dev")).map(|t| parse_net_dev(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_times_and_threads_whatever_the_command_is_called() {
        let line = "4242 (my (odd) cmd) S 4200 4242 4200 0 -1 4194560 120 0 0 0 \
                    37 12 5 3 20 0 4 0 123456 1234567 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(4242, line).expect("parses");
        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                state: 'S',
                ppid: 4200,
                utime: 37,
                stime: 12,
                cutime: 5,
                cstime: 3,
                threads: 4,
                netns: None
            }
        );
        assert_eq!(parse_stat(1, "1 (init"), None);
        // This very process, as it is now.
        let me = std::process::id();
        let u = Usage::of(&[ProcStat { pid: me, ..ProcStat::default() }]);
        assert!(u.tasks >= 1 && u.memory.total() > 0, "{u:?}");
        assert_eq!(Usage::of(&[ProcStat { pid: u32::MAX, ..s }]), Usage::default(), "gone: nothing");
    }

    #[test]
    fn descendants_are_found_down_the_tree_and_nothing_else() {
        let p = |pid, ppid| ProcStat { pid, ppid, ..ProcStat::default() };
        let all = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1), p(21, 20)];
        let mut got: Vec<u32> = with_descendants(&all, &[10]).iter().map(|p| p.pid).collect();
        got.sort_unstable();
        assert_eq!(got, [10, 11, 12, 13]);
        assert!(with_descendants(&all, &[99]).is_empty(), "a root that is gone has none");
        let ns = |pid, netns| ProcStat { pid, netns, ..ProcStat::default() };
        let all = [ns(1, Some((4, 10))), ns(2, Some((4, 11))), ns(3, None), ns(4, Some((4, 11)))];
        let got: Vec<u32> = in_network_namespace(&all, (4, 11)).iter().map(|p| p.pid).collect();
        assert_eq!(got, [2, 4]);
    }

    #[test]
    fn memory_io_and_the_machine_are_read_from_their_files() {
        let rollup = "55d0-7ffc ---p 00000000 00:00 0 [rollup]\nRss: 1644 kB\nPss: 768 kB\n\
                      Pss_Anon: 112 kB\nPss_File: 656 kB\nPss_Shmem: 4 kB\nSwap: 0 kB\n";
        let m = parse_smaps_rollup(rollup);
        assert_eq!((m.anon, m.file, m.shmem, m.total()), (112 * 1024, 656 * 1024, 4096, 772 * 1024));
        let io = "rchar: 6976\nwchar: 10\nsyscr: 10\nsyscw: 0\nread_bytes: 8192\nwrite_bytes: 1048576\n\
                  cancelled_write_bytes: 0\n";
        assert_eq!(parse_io(io), (8192, 1_048_576));
        let stat = "cpu  100 1 200 300 4 5 6 7 0 0\ncpu0 50 0 100 150 2 2 3 3 0 0\ncpu1 50 1 100 150 2 3 3 4 0 0\n\
                    intr 1 2 3\nctxt 99\n";
        assert_eq!(parse_proc_stat(stat), (616 * NS_PER_TICK, 2));
        assert_eq!(parse_mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), 24_576_000 * 1024);
    }

    #[test]
    fn net_dev_gives_each_interface_but_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  \
             eth0:   52340      44    1    2    0     0          0         3    42290      41    4    5    0     0       0          0\n";
        let devs = parse_net_dev(text);
        assert_eq!(devs.len(), 1);
        assert_eq!(
            devs["eth0"],
            NetDev {
                rx_bytes: 52340,
                rx_packets: 44,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 42290,
                tx_packets: 41,
                tx_errors: 4,
                tx_dropped: 5
            }
        );
    }
}
