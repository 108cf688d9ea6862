//! Datapath counters as the API shows them: per reason for the whole datapath, and per reason
//! for each endpoint (by the host veth that sends its traffic into the datapath).

use netd_common::{Counter, Reason};
use serde::{Deserialize, Serialize};

use super::{
    error::{Error, Result},
    Daemon,
};

/// One reason's counter (per endpoint, passes are summed as `pass`, code 255).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReasonCount {
    #[serde(rename = "Reason")]
    pub reason: String,
    #[serde(rename = "Code")]
    pub code: u8,
    #[serde(rename = "Packets")]
    pub packets: u64,
    #[serde(rename = "Bytes")]
    pub bytes: u64,
}

/// One endpoint's counters.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndpointStats {
    #[serde(rename = "Sandbox")]
    pub sandbox: String,
    #[serde(rename = "SandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "Interface")]
    pub interface: String,
    #[serde(rename = "HostVeth")]
    pub host_veth: String,
    #[serde(rename = "Reasons")]
    pub reasons: Vec<ReasonCount>,
}

/// `GET /netd/v1/stats`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    #[serde(rename = "Reasons")]
    pub reasons: Vec<ReasonCount>,
    #[serde(rename = "Endpoints")]
    pub endpoints: Vec<EndpointStats>,
}

/// A reason code's name (`drop-spoofed-ip`), or `unknown-N` for one newer than this build.
pub(super) fn reason_name(code: u8) -> String {
    Reason::decode(code).map_or_else(|| format!("unknown-{code}"), |r| r.name().to_owned())
}

fn named(raw: Vec<(u8, Counter)>) -> Vec<ReasonCount> {
    raw.into_iter()
        .map(|(code, c)| ReasonCount { reason: reason_name(code), code, packets: c.packets, bytes: c.bytes })
        .collect()
}

impl Daemon {
    /// The datapath's counters, for every endpoint or for one sandbox's.
    pub async fn stats(&self, sandbox: Option<&str>) -> Result<Stats> {
        let state = self.snapshot().await;
        let only = match sandbox {
            Some(key) => {
                Some(state.find_sandbox(key).map_err(|_| super::sandboxes::no_such_container(key))?.id.clone())
            }
            None => None,
        };
        let dp = self.datapath.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let reasons = named(dp.reason_counters().map_err(Error::from)?);
        let mut endpoints = Vec::new();
        for n in state.networks.values() {
            for ep in n.endpoints.values() {
                let Some(link) = &ep.link else { continue };
                if only.as_ref().is_some_and(|id| *id != ep.sandbox_id) {
                    continue;
                }
                let Some(s) = state.sandboxes.get(&ep.sandbox_id) else {
                    continue;
                };
                let totals = dp.endpoint_counters(link.slot).map_err(Error::from)?;
                let c = totals.counters;
                let mut reasons =
                    named(vec![(Reason::RedirectPeer as u8, c.forwarded), (Reason::RedirectNat as u8, c.masqueraded)]);
                reasons.push(ReasonCount {
                    reason: "pass".into(),
                    code: u8::MAX,
                    packets: c.passed.packets,
                    bytes: c.passed.bytes,
                });
                reasons.extend(named(totals.drops));
                reasons.retain(|r| r.packets != 0);
                endpoints.push(EndpointStats {
                    sandbox: s.name.clone(),
                    sandbox_id: s.id.clone(),
                    network: n.name.clone(),
                    interface: link.ifname.clone(),
                    host_veth: link.host_veth.clone(),
                    reasons,
                });
            }
        }
        endpoints.sort_by(|a, b| (&a.sandbox, &a.network).cmp(&(&b.sandbox, &b.network)));
        Ok(Stats { reasons, endpoints })
    }
}
