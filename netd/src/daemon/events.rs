//! Docker's `GET /events`, for what netd does: networks created and destroyed, sandboxes
//! connected to and disconnected from them, and sandboxes as containers (created, started,
//! signalled, exited, stopped, removed), in Docker's format, so that `docker events` (and tools
//! that watch the stream) see netd's networks and sandboxes as Docker's.
//!
//! The last [`LOG_LEN`] events are kept for `since` (as dockerd keeps its last 1024); an event
//! is logged and sent under one lock, so a subscriber that replays the log and then listens
//! misses none and sees none twice.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::sync::broadcast;

use super::Daemon;
use crate::model::{Network, ProcessRef, Sandbox, State};

/// Events kept for `since`.
pub const LOG_LEN: usize = 1024;
/// Events a subscriber may fall behind by before the stream ends (Docker's ends too).
const BACKLOG: usize = 1024;

/// One event, as Docker's API writes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DockerEvent {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    /// Seconds since the epoch, and nanoseconds.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// What the event is about: the network (id), its name and driver, and the container (the
/// sandbox's id) of a connect or disconnect; or the container (the sandbox's id), its name and,
/// for a `kill`, the signal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// The events' log and their subscribers.
pub(super) struct Events {
    tx: broadcast::Sender<Arc<DockerEvent>>,
    log: Mutex<VecDeque<Arc<DockerEvent>>>,
}

impl Default for Events {
    fn default() -> Self {
        Self { tx: broadcast::channel(BACKLOG).0, log: Mutex::new(VecDeque::with_capacity(LOG_LEN)) }
    }
}

/// A subscription: the logged events since the time asked (oldest first), then the live ones.
pub struct EventSubscription {
    pub past: Vec<Arc<DockerEvent>>,
    pub live: broadcast::Receiver<Arc<DockerEvent>>,
}

impl Daemon {
    /// Records and sends a network event: `action` is "create", "destroy", "connect" or
    /// "disconnect"; `container` the sandbox's id for the last two.
    pub(super) fn network_event(&self, action: &str, n: &Network, container: Option<&str>) {
        let time_nano = unix_now_nanos();
        let mut attributes =
            BTreeMap::from([("name".to_owned(), n.name.clone()), ("type".to_owned(), n.driver.name().to_owned())]);
        if let Some(c) = container {
            attributes.insert("container".to_owned(), c.to_owned());
        }
        self.publish_event("network", action, Actor { id: n.id.clone(), attributes }, time_nano);
    }

    /// Records and sends a container event about sandbox `s`, as Docker's about a container:
    /// `action` is "create", "start", "kill" (with the signal's number in `signal`), "stop" or
    /// "destroy". (`die`, with the exit code when netd knows it, is `container_die`'s.)
    pub(super) fn container_event(&self, action: &str, s: &Sandbox, signal: Option<i32>) {
        let signal: Vec<(&str, String)> = signal.iter().map(|sig| ("signal", sig.to_string())).collect();
        self.container_event_with(action, s, &signal);
    }

    /// A container event with more attributes than its name.
    pub(super) fn container_event_with(&self, action: &str, s: &Sandbox, more: &[(&str, String)]) {
        let mut attributes = BTreeMap::from([("name".to_owned(), s.name.clone())]);
        attributes.extend(more.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.publish_event("container", action, Actor { id: s.id.clone(), attributes }, unix_now_nanos());
    }

    /// Docker's `die`, with the exit code when netd knows it.
    fn container_die(&self, s: &Sandbox) {
        let code: Vec<(&str, String)> = s.exit.iter().map(|e| ("exitCode", e.code.to_string())).collect();
        self.container_event_with("die", s, &code);
    }

    /// Notes which sandboxes' processes stopped running since the last call (`die`), as
    /// dockerd learns of a container's exit. Called by the sweeper twice a second, and before a
    /// stop or a removal says it is done, so that `die` comes first, as Docker's. The
    /// first call (at start) only takes note: sandboxes that exited while no daemon ran were
    /// never seen running. What an exited sandbox's processes left running in its namespace is
    /// ended (see `kill_leftovers`). Returns the sandboxes with a running process.
    pub(super) fn note_exits(&self, state: &State) -> BTreeSet<String> {
        let running: BTreeSet<String> = state
            .sandboxes
            .values()
            .filter(|s| s.processes.iter().any(ProcessRef::is_running))
            .map(|s| s.id.clone())
            .collect();
        let mut seen = self.running_sandboxes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = seen.as_ref() {
            for id in before.difference(&running) {
                if let Some(s) = state.sandboxes.get(id) {
                    self.container_die(s);
                    // What its processes left running in it goes with them.
                    self.kill_leftovers(s);
                }
            }
        }
        *seen = Some(running.clone());
        running
    }

    /// Notes that sandbox `s` runs (a process was added): `start` if it did not before.
    pub(super) fn note_start(&self, s: &Sandbox) {
        let mut seen = self.running_sandboxes.lock().unwrap_or_else(PoisonError::into_inner);
        let running = seen.get_or_insert_with(BTreeSet::new);
        if running.insert(s.id.clone()) {
            self.container_event("start", s, None);
        }
    }

    /// Logs `action` about `actor` (of type `kind`) and sends it to the subscribers.
    fn publish_event(&self, kind: &str, action: &str, actor: Actor, time_nano: i64) {
        let event = Arc::new(DockerEvent {
            kind: kind.into(),
            action: action.into(),
            actor,
            scope: "local".into(),
            time: time_nano / 1_000_000_000,
            time_nano,
        });
        let mut log = self.docker_events.log.lock().unwrap_or_else(PoisonError::into_inner);
        if log.len() == LOG_LEN {
            log.pop_front();
        }
        log.push_back(event.clone());
        // Nobody listening is fine.
        let _ = self.docker_events.tx.send(event);
    }

    /// The events from `since_nanos` on (none of the past without it), then the live ones.
    pub fn subscribe_events(&self, since_nanos: Option<i64>) -> EventSubscription {
        let log = self.docker_events.log.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.docker_events.tx.subscribe();
        let past =
            since_nanos.map_or_else(Vec::new, |since| log.iter().filter(|e| e.time_nano >= since).cloned().collect());
        EventSubscription { past, live }
    }
}

/// Now, in nanoseconds since the epoch (the clock of events' `timeNano`).
#[must_use]
pub fn unix_now_nanos() -> i64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

/// A Docker timestamp as the CLI sends it (`1700000000`, `1700000000.123456789`), in
/// nanoseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid timestamp {s:?}: expected seconds since the epoch (with an optional fraction)");
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
    secs.checked_mul(1_000_000_000).and_then(|n| n.checked_add(nanos)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::parse_timestamp;

    #[test]
    fn timestamps_parse_as_the_docker_cli_sends_them() {
        assert_eq!(parse_timestamp("1700000000"), Ok(1_700_000_000_000_000_000));
        assert_eq!(parse_timestamp("1700000000.5"), Ok(1_700_000_000_500_000_000));
        assert_eq!(parse_timestamp("1700000000.000000001"), Ok(1_700_000_000_000_000_001));
        assert!(parse_timestamp("10m").is_err());
        assert!(parse_timestamp("1.0000000001").is_err());
        assert!(parse_timestamp("").is_err());
    }
}
