//! The HTTP API on the daemon's unix socket: Docker Engine API v1.41 for networks (so the stock
//! docker CLI works against it) and netd's own sandbox operations under `/netd/v1`.

mod containers;
mod exec;
pub mod filters;
mod info;
mod logs;
pub mod types;
mod usage;

use std::{collections::HashMap, convert::Infallible, net::Ipv4Addr, sync::Arc};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt as _, Full, Limited, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    header, Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;

use crate::{
    daemon::{
        events::{self, parse_timestamp, unix_now_nanos, DockerEvent},
        monitor::{MonitorLine, MonitorType},
        networks::{lookup_error, CreateNetwork, IpamRequest},
        sandboxes::{no_such_container, CreateSandbox},
        usage::UsageSample,
        Daemon, Error,
    },
    model::ids,
};
use filters::Filters;
use types::{
    ErrorResponse, ExitRequest, NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkResource, NetworksPruneResponse, ProcessRequest, SandboxCreateRequest,
    SandboxResource,
};

/// The API version served (Docker 20.10).
pub const API_VERSION: &str = "1.41";
/// The oldest API version accepted in a versioned path.
pub const MIN_API_VERSION: &str = "1.12";

const MAX_BODY: usize = 1 << 20;

/// A whole answer, or a stream (`/netd/v1/monitor`).
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves one connection until the client closes it.
pub async fn serve_connection(daemon: Arc<Daemon>, stream: UnixStream) {
    let service = hyper::service::service_fn(move |req| {
        let daemon = daemon.clone();
        async move { Ok::<_, Infallible>(handle(&daemon, req).await) }
    });
    // A client going away mid-request is not the daemon's problem. Upgrades: `docker exec`
    // takes the connection over.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// Serves the metrics alone (`GET /metrics`) on one connection of `--metrics-addr`.
pub async fn serve_metrics(daemon: Arc<Daemon>, stream: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let daemon = daemon.clone();
        async move {
            Ok::<_, Infallible>(match (req.method(), req.uri().path()) {
                (&Method::GET, "/metrics") => metrics(&daemon).await,
                _ => error_response(404, format!("page not found: {} {}", req.method(), req.uri().path())),
            })
        }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

async fn metrics(daemon: &Daemon) -> Response<Body> {
    match daemon.metrics().await {
        Ok(text) => respond(StatusCode::OK, text.into(), crate::daemon::metrics::CONTENT_TYPE),
        Err(e) => from_error(&e),
    }
}

fn respond(status: StatusCode, body: Bytes, content_type: &str) -> Response<Body> {
    respond_with(status, Full::new(body).boxed_unsync(), content_type)
}

fn respond_with(status: StatusCode, body: Body, content_type: &str) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.parse().expect("valid header"));
    h.insert("Api-Version", API_VERSION.parse().expect("valid header"));
    h.insert("Docker-Experimental", "false".parse().expect("valid header"));
    h.insert("Ostype", "linux".parse().expect("valid header"));
    h.insert(header::SERVER, concat!("netd/", env!("CARGO_PKG_VERSION")).parse().expect("valid header"));
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("API types serialise");
    body.push(b'\n');
    respond(status, body.into(), "application/json")
}

fn empty(status: StatusCode) -> Response<Body> {
    respond(status, Bytes::new(), "text/plain; charset=utf-8")
}

fn error_response(status: u16, message: String) -> Response<Body> {
    json(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &ErrorResponse { message })
}

fn from_error(e: &Error) -> Response<Body> {
    error_response(e.status(), e.to_string())
}

/// Splits `/v1.41/networks` into the optional version and `/networks`.
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        if let Some(slash) = rest.find('/') {
            let (version, tail) = rest.split_at(slash);
            if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return (Some(version), tail);
            }
        }
    }
    (None, path)
}

fn version_tuple(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|x| x.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                urlencoding::decode(&s.replace('+', " ")).map(std::borrow::Cow::into_owned).unwrap_or_default()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

async fn body<T: DeserializeOwned + Default>(req: Request<Incoming>) -> Result<T, Response<Body>> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| error_response(400, format!("reading the request body: {e}")))?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| error_response(400, format!("invalid JSON: {e}")))
}

async fn handle(daemon: &Arc<Daemon>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let (version, route) = split_version(&path);
    if let Some(v) = version {
        if version_tuple(v) > version_tuple(API_VERSION) {
            return error_response(
                400,
                format!("client version {v} is too new. Maximum supported API version is {API_VERSION}"),
            );
        }
        if version_tuple(v) < version_tuple(MIN_API_VERSION) {
            return error_response(
                400,
                format!("client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"),
            );
        }
    }
    let segments: Vec<String> = route
        .trim_matches('/')
        .split('/')
        .map(|s| urlencoding::decode(s).map_or_else(|_| s.to_owned(), std::borrow::Cow::into_owned))
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => {
            let mut r = respond(
                StatusCode::OK,
                if method == Method::HEAD { Bytes::new() } else { "OK".into() },
                "text/plain; charset=utf-8",
            );
            r.headers_mut()
                .insert(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate".parse().expect("valid"));
            r.headers_mut().insert(header::PRAGMA, "no-cache".parse().expect("valid"));
            r
        }
        (&Method::GET, ["version"]) => json(StatusCode::OK, &version_info()),
        (&Method::GET, ["info"]) => json(StatusCode::OK, &info::system_info(daemon).await),
        (&Method::POST, ["containers", key, "exec"]) => exec::create(daemon, key, req).await,
        (method, ["containers", rest @ ..]) => containers_api(daemon, method, rest, &query(&req)).await,
        (&Method::POST, ["exec", id, "start"]) => exec::start(daemon, id, req).await,
        (&Method::POST, ["exec", id, "resize"]) => exec::resize(daemon, id, &query(&req)),
        (&Method::GET, ["exec", id, "json"]) => exec::inspect(daemon, id),
        (&Method::GET, ["metrics"]) => metrics(daemon).await,
        (&Method::GET, ["events"]) => events(daemon, &query(&req)),
        (&Method::GET, ["networks"]) => list_networks(daemon, &query(&req)).await,
        (&Method::POST, ["networks", "create"]) => create_network(daemon, req).await,
        (&Method::POST, ["networks", "prune"]) => prune_networks(daemon, &query(&req)).await,
        (&Method::GET, ["networks", key]) => inspect_network(daemon, key).await,
        (&Method::DELETE, ["networks", key]) => match daemon.remove_network(key).await {
            Ok(()) => empty(StatusCode::NO_CONTENT),
            Err(e) => from_error(&e),
        },
        (&Method::POST, ["networks", key, "connect"]) => connect(daemon, (*key).to_owned(), req).await,
        (&Method::POST, ["networks", key, "disconnect"]) => disconnect(daemon, (*key).to_owned(), req).await,
        (&Method::GET, ["netd", "v1", "sandboxes"]) => list_sandboxes(daemon).await,
        (&Method::GET, ["netd", "v1", "stats"]) => {
            let q = query(&req);
            match daemon.stats(q.get("sandbox").map(String::as_str)).await {
                Ok(s) => json(StatusCode::OK, &s),
                Err(e) => from_error(&e),
            }
        }
        (&Method::GET, ["netd", "v1", "nat"]) => {
            match daemon.nat_flows(query(&req).get("filters").map(String::as_str)).await {
                Ok(flows) => json(StatusCode::OK, &flows),
                Err(e) => from_error(&e),
            }
        }
        (&Method::DELETE, ["netd", "v1", "nat"]) => {
            match daemon.nat_remove(query(&req).get("filters").map(String::as_str)).await {
                Ok(n) => json(StatusCode::OK, &serde_json::json!({ "Removed": n })),
                Err(e) => from_error(&e),
            }
        }
        (&Method::GET, ["netd", "v1", "nat", "stats"]) => match daemon.nat_stats() {
            Ok(stats) => json(StatusCode::OK, &stats),
            Err(e) => from_error(&e),
        },
        (&Method::GET, ["netd", "v1", "monitor"]) => monitor(daemon, &query(&req)).await,
        (&Method::POST, ["netd", "v1", "sandboxes"]) => create_sandbox(daemon, req).await,
        (&Method::GET, ["netd", "v1", "sandboxes", key]) => inspect_sandbox(daemon, key).await,
        (&Method::DELETE, ["netd", "v1", "sandboxes", key]) => {
            let force = truthy(query(&req).get("force"));
            match daemon.remove_sandbox(key, force).await {
                Ok(id) => json(StatusCode::OK, &serde_json::json!({ "Id": id })),
                Err(e) => from_error(&e),
            }
        }
        (&Method::POST, ["netd", "v1", "sandboxes", key, what @ ("exit" | "processes")]) => {
            sandbox_run_report(daemon, key, what, req).await
        }
        _ => error_response(404, format!("page not found: {method} {path}")),
    }
}

/// `GET /netd/v1/monitor[?sandbox=…][&type=drop,nat,trace]`: the datapath's events from now
/// on, one JSON [`MonitorLine`] per line, until the client goes away.
async fn monitor(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let types: Result<Vec<MonitorType>, String> =
        q.get("type").map_or(Ok(Vec::new()), |t| t.split(',').map(str::parse).collect());
    let types = match types {
        Ok(t) => t,
        Err(e) => return error_response(400, e),
    };
    let sub = match daemon.subscribe_monitor(q.get("sandbox").map(String::as_str), &types).await {
        Ok(s) => s,
        Err(e) => return from_error(&e),
    };
    let lines = futures::stream::unfold(sub, |mut sub| async move {
        // An event is written as it is (a `MonitorLine::Event` serialises as its event).
        let mut bytes = loop {
            match sub.events.recv().await {
                Ok(line) if sub.filter.passes(&line) => break serde_json::to_vec(&*line),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    break serde_json::to_vec(&MonitorLine::Lost { lost: n, in_datapath: false })
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
        .expect("monitor lines serialise");
        bytes.push(b'\n');
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))), sub))
    });
    respond_with(StatusCode::OK, StreamBody::new(lines).boxed_unsync(), "application/x-ndjson")
}

/// The filter keys Docker's `GET /events` knows. netd's events are about networks and
/// containers (sandboxes): a key about anything else (an image, a volume, a label...), given,
/// lets none of them through, as Docker's filter would.
const EVENT_FILTERS: [&str; 14] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// `GET /events[?since=…][&until=…][&filters=…]`: Docker's event stream, one JSON object per
/// line: the logged events since `since`, then the live ones until `until` (or the client
/// leaves).
fn events(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let filters = match Filters::parse_keys(q.get("filters").map(String::as_str), &EVENT_FILTERS) {
        Ok(f) => f,
        Err(e) => return error_response(400, e),
    };
    let time = |key: &str| q.get(key).filter(|s| !s.is_empty()).map(|s| parse_timestamp(s)).transpose();
    let (since, until) = match (time("since"), time("until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return error_response(400, e),
    };
    let passes = move |e: &DockerEvent| {
        // As Docker's: `container` and `network` match the front of any event's actor's id or
        // name (a network event's id is no container's).
        let actor = |key: &str| {
            filters.any(key, |v| {
                e.actor.id.starts_with(v) || e.actor.attributes.get("name").is_some_and(|name| name.starts_with(v))
            })
        };
        filters.any("type", |t| t == e.kind)
            && filters.any("event", |a| a == e.action)
            && filters.any("scope", |s| s == e.scope)
            && actor("network")
            && actor("container")
            && EVENT_FILTERS
                .iter()
                .filter(|k| !["type", "event", "scope", "network", "container"].contains(k))
                .all(|k| filters.any(k, |_| false))
    };
    let sub = daemon.subscribe_events(since);
    let until_ok = move |e: &DockerEvent| until.is_none_or(|u| e.time_nano <= u);
    let past: std::collections::VecDeque<_> = sub.past.into_iter().filter(|e| passes(e) && until_ok(e)).collect();
    // The stream ends at `until`: at once when it is past.
    let deadline = until.map(|u| {
        let left = u64::try_from(u.saturating_sub(unix_now_nanos())).unwrap_or(0);
        tokio::time::Instant::now() + std::time::Duration::from_nanos(left)
    });
    let passes = Arc::new(passes);
    let lines = futures::stream::unfold((past, sub.live), move |(mut past, mut live)| {
        let passes = passes.clone();
        async move {
            let event = if let Some(e) = past.pop_front() {
                e
            } else {
                loop {
                    let next = live.recv();
                    let got = match deadline {
                        Some(d) => tokio::time::timeout_at(d, next).await.ok()?,
                        None => next.await,
                    };
                    match got {
                        Ok(e) if passes(&e) => break e,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            };
            let mut bytes = serde_json::to_vec(&*event).expect("events serialise");
            bytes.push(b'\n');
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))), (past, live)))
        }
    });
    respond_with(StatusCode::OK, StreamBody::new(lines).boxed_unsync(), "application/json")
}

fn version_info() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let version = env!("CARGO_PKG_VERSION");
    serde_json::json!({
        "Platform": { "Name": "netd" },
        "Components": [{
            "Name": "netd",
            "Version": version,
            "Details": { "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "KernelVersion": kernel }
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

async fn list_networks(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let filters = match Filters::parse(
        q.get("filters").map(String::as_str),
        &["name", "id", "driver", "type", "label", "scope", "dangling"],
    ) {
        Ok(f) => f,
        Err(m) => return error_response(400, m),
    };
    let state = daemon.snapshot().await;
    let mut list: Vec<NetworkResource> = state
        .networks
        .values()
        .filter(|n| filters.matches(n))
        .map(|n| NetworkResource::from_model(n, &state, false))
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    json(StatusCode::OK, &list)
}

async fn inspect_network(daemon: &Daemon, key: &str) -> Response<Body> {
    let state = daemon.snapshot().await;
    match state.find_network(key) {
        Ok(n) => json(StatusCode::OK, &NetworkResource::from_model(n, &state, true)),
        Err(e) => from_error(&lookup_error(key, e)),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

async fn create_network(daemon: &Daemon, req: Request<Incoming>) -> Response<Body> {
    let r: NetworkCreateRequest = match body(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if r.ingress || r.config_only {
        return error_response(400, "ingress and config-only networks are not supported by netd".into());
    }
    let ipam = r.ipam.unwrap_or_default();
    let create = CreateNetwork {
        name: r.name,
        driver: r.driver,
        internal: r.internal,
        attachable: r.attachable,
        ipv6_only: r.enable_ipv4 == Some(false),
        enable_ipv6: r.enable_ipv6,
        ipam_driver: ipam.driver,
        ipam_config: ipam
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|c| IpamRequest {
                subnet: non_empty(c.subnet),
                ip_range: non_empty(c.ip_range),
                gateway: non_empty(c.gateway),
                aux: c.aux.unwrap_or_default(),
            })
            .collect(),
        options: r.options.unwrap_or_default(),
        labels: r.labels.unwrap_or_default(),
    };
    match daemon.create_network(create).await {
        Ok(id) => json(StatusCode::CREATED, &NetworkCreateResponse { id, warning: String::new() }),
        Err(e) => from_error(&e),
    }
}

async fn prune_networks(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let filters = match Filters::parse(q.get("filters").map(String::as_str), &["label", "until"]) {
        Ok(f) => f,
        Err(m) => return error_response(400, m),
    };
    match daemon.prune_networks(&filters.labels()).await {
        Ok(names) => json(StatusCode::OK, &NetworksPruneResponse { networks_deleted: names }),
        Err(e) => from_error(&e),
    }
}

/// `docker container prune`: removes the sandboxes that do not run (made before `until`, a
/// timestamp or a duration back from now such as `24h`); a `label` filter matches none
/// (sandboxes have no labels).
async fn prune_containers(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let filters = match Filters::parse(q.get("filters").map(String::as_str), &["label", "label!", "until"]) {
        Ok(f) => f,
        Err(m) => return error_response(400, m),
    };
    let until = match filters.values("until").iter().map(|u| prune_until(u)).collect::<Result<Vec<i64>, String>>() {
        Ok(u) => u.into_iter().min(),
        Err(e) => return error_response(400, e),
    };
    let deleted = if filters.values("label").is_empty() { daemon.prune_sandboxes(until).await } else { Vec::new() };
    json(StatusCode::OK, &serde_json::json!({ "ContainersDeleted": deleted, "SpaceReclaimed": 0 }))
}

/// Seconds since the epoch of a prune's `until`: a timestamp, or a duration (`90s`, `10m`,
/// `24h`, `1h30m`) back from now.
fn prune_until(v: &str) -> Result<i64, String> {
    if let Ok(ns) = parse_timestamp(v) {
        return Ok(ns / 1_000_000_000);
    }
    let bad = || format!("invalid filter 'until={v}'");
    let (mut secs, mut digits) = (0i64, String::new());
    for c in v.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        secs += digits.parse::<i64>().map_err(|_| bad())? * unit;
        digits.clear();
    }
    if !digits.is_empty() || secs == 0 {
        return Err(bad());
    }
    Ok(unix_now_nanos() / 1_000_000_000 - secs)
}

fn parse_ipv4(s: &str) -> Result<Option<Ipv4Addr>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| format!("invalid IPv4 address: {s}"))
}

async fn connect(daemon: &Daemon, key: String, req: Request<Incoming>) -> Response<Body> {
    let r: NetworkConnectRequest = match body(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let config = r.endpoint_config.unwrap_or_default();
    let aliases = config.aliases.unwrap_or_default();
    let ip = config.ipam_config.map(|c| c.ipv4_address).unwrap_or_default();
    let ip = match parse_ipv4(&ip) {
        Ok(ip) => ip,
        Err(m) => return error_response(400, m),
    };
    if r.container.is_empty() {
        return from_error(&no_such_container(""));
    }
    match daemon.connect(&key, &r.container, ip, aliases).await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => from_error(&e),
    }
}

async fn disconnect(daemon: &Daemon, key: String, req: Request<Incoming>) -> Response<Body> {
    let r: NetworkDisconnectRequest = match body(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match daemon.disconnect(&key, &r.container).await {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => from_error(&e),
    }
}

/// `docker ps`: the sandboxes as containers, newest first; only running ones unless `all`
/// (or `limit`, or a `status` filter), as Docker's.
async fn list_containers(daemon: &Daemon, q: &HashMap<String, String>) -> Response<Body> {
    let filters = match Filters::parse_keys(q.get("filters").map(String::as_str), &containers::LIST_FILTERS) {
        Ok(f) => f,
        Err(m) => return error_response(400, m),
    };
    if let Err(m) = containers::check_list_filters(&filters) {
        return error_response(400, m);
    }
    let limit = q.get("limit").and_then(|l| l.parse::<i64>().ok()).filter(|l| *l > 0);
    let all = matches!(q.get("all").map(String::as_str), Some("1" | "true" | "True"))
        || limit.is_some()
        || !filters.values("status").is_empty();
    let state = daemon.snapshot().await;
    let mut list = containers::resources(&state, |s| daemon.netns_path(s).display().to_string());
    containers::newest_first(&mut list);
    let now = unix_now_nanos() / 1_000_000_000;
    let shown: Vec<serde_json::Value> = list
        .iter()
        .filter(|(_, r)| (all || r.running) && containers::passes(&filters, r))
        .take(limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)))
        .map(|(s, r)| containers::list_entry(s, r, now))
        .collect();
    json(StatusCode::OK, &shown)
}

/// `/containers/…`: netd's sandboxes as Docker's containers (see `containers.rs`).
async fn containers_api(
    daemon: &Arc<Daemon>,
    method: &Method,
    route: &[&str],
    q: &HashMap<String, String>,
) -> Response<Body> {
    match (method, route) {
        (&Method::GET, ["json"]) => list_containers(daemon, q).await,
        (&Method::POST, ["prune"]) => prune_containers(daemon, q).await,
        (&Method::GET, [key, "json"]) => inspect_container(daemon, key).await,
        (&Method::GET, [key, "stats"]) => container_stats(daemon, key, q).await,
        (&Method::POST, [key, "wait"]) => wait_container(daemon, key, q).await,
        (&Method::POST, [key, "rename"]) => match q.get("name").filter(|n| !n.is_empty()) {
            None => error_response(400, "Neither old nor new names may be empty".into()),
            Some(name) => match daemon.rename_sandbox(key, name.trim_start_matches('/')).await {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => from_error(&e),
            },
        },
        (&Method::GET, [key, "logs"]) => container_logs(daemon, key, q).await,
        (&Method::GET, [key, "top"]) => {
            match daemon.sandbox_top(key, q.get("ps_args").map_or("", String::as_str)).await {
                Ok(top) => json(StatusCode::OK, &usage::top_json(&top)),
                Err(e) => from_error(&e),
            }
        }
        (&Method::POST, [key, "stop"]) => stop_container(daemon, key, q).await,
        (&Method::POST, [key, "start"]) => match daemon.start_sandbox(key).await {
            Ok(true) => empty(StatusCode::NO_CONTENT),
            Ok(false) => empty(StatusCode::NOT_MODIFIED),
            Err(e) => from_error(&e),
        },
        (&Method::POST, [key, "restart"]) => match grace(q) {
            Ok(grace) => match daemon.restart_sandbox(key, grace).await {
                Ok(()) => empty(StatusCode::NO_CONTENT),
                Err(e) => from_error(&e),
            },
            Err(e) => error_response(400, e),
        },
        (&Method::POST, [key, "kill"]) => kill_container(daemon, key, q).await,
        (&Method::DELETE, [key]) => match daemon.remove_sandbox(key, truthy(q.get("force"))).await {
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(e) => from_error(&e),
        },
        _ => error_response(404, format!("page not found: {method} /containers/{}", route.join("/"))),
    }
}

/// What `netd run` tells of a sandbox's run: a process it started (`processes`), or how its
/// command ended (`exit`).
async fn sandbox_run_report(daemon: &Daemon, key: &str, what: &str, req: Request<Incoming>) -> Response<Body> {
    let done = if what == "exit" {
        match body::<ExitRequest>(req).await {
            Ok(e) => daemon.record_exit(key, e.code).await,
            Err(r) => return r,
        }
    } else {
        match body::<ProcessRequest>(req).await {
            Ok(p) => daemon.add_process(key, p.pid).await,
            Err(r) => return r,
        }
    };
    match done {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => from_error(&e),
    }
}

/// `docker logs`: what a sandbox's detached commands wrote (see `logs.rs`); with `follow`, what
/// they write after, until the sandbox stops or goes (or the client leaves).
async fn container_logs(daemon: &Arc<Daemon>, key: &str, q: &HashMap<String, String>) -> Response<Body> {
    const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
    let query = match logs::LogQuery::parse(q, |k| flag(q, k, false)) {
        Ok(query) => query,
        Err(e) => return error_response(400, e),
    };
    let (id, path) = match daemon.sandbox_log(key).await {
        Ok((id, Some(path))) => (id, path),
        Ok((_, None)) => return error_response(501, "configured logging driver does not support reading".into()),
        Err(e) => return from_error(&e),
    };
    let (first, offset) = logs::read_from(&path, 0, &query, true);
    if !query.follow {
        return respond(StatusCode::OK, first, RAW_STREAM);
    }
    let daemon = daemon.clone();
    let frames = futures::stream::unfold((Some(first), offset, false), move |(first, offset, last)| {
        let (daemon, id, path, query) = (daemon.clone(), id.clone(), path.clone(), query.clone());
        async move {
            if let Some(first) = first.filter(|f| !f.is_empty()) {
                return Some((Ok::<_, Infallible>(Frame::data(first)), (None, offset, false)));
            }
            loop {
                if last {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                // Stopped (or gone): what it wrote last is read once more, then the stream ends.
                let stopped = daemon.sandbox_run(&id).await.map_or(true, |(_, running, _)| !running);
                let past = query.until.is_some_and(|u| u < events::unix_now_nanos());
                let (more, next) = logs::read_from(&path, offset, &query, false);
                if !more.is_empty() {
                    return Some((Ok(Frame::data(more)), (None, next, stopped || past)));
                }
                if stopped || past {
                    return None;
                }
            }
        }
    });
    respond_with(StatusCode::OK, StreamBody::new(frames).boxed_unsync(), RAW_STREAM)
}

/// `docker wait`: answers when sandbox `key` is not running (`condition=not-running`, the
/// default: at once if it is not), has ended a run that is going on now (`next-exit`), or is
/// gone (`removed`), with its exit code. One netd does not know is an error, as Docker would
/// have one.
async fn wait_container(daemon: &Daemon, key: &str, q: &HashMap<String, String>) -> Response<Body> {
    let condition = q.get("condition").map_or("not-running", String::as_str);
    if !["not-running", "next-exit", "removed", ""].contains(&condition) {
        return error_response(400, format!("invalid condition: \"{condition}\""));
    }
    let id = match daemon.sandbox_run(key).await {
        Ok((id, ..)) => id,
        Err(e) => return from_error(&e),
    };
    let look = || async { daemon.sandbox_run(&id).await.ok().map(|(_, running, code)| (running, code)) };
    let next_exit = condition == "next-exit";
    let mut saw_running = false;
    let code = loop {
        match look().await {
            None if condition == "removed" => break None,
            None => return from_error(&no_such_container(key)),
            Some((true, _)) => saw_running = true,
            Some((false, code)) if condition != "removed" && (!next_exit || saw_running) => break code,
            Some((false, _)) => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let error = if code.is_none() && condition != "removed" {
        serde_json::json!({ "Message": "netd does not know how the sandbox's process ended (it was not started by netd run, or ended while no daemon ran)" })
    } else {
        serde_json::Value::Null
    };
    json(StatusCode::OK, &serde_json::json!({ "StatusCode": code.unwrap_or(-1), "Error": error }))
}

/// A query's boolean as dockerd reads it: absent, `default`; else anything but empty, `0`,
/// `no`, `false` or `none` (any case) is true.
fn flag(q: &HashMap<String, String>, key: &str, default: bool) -> bool {
    q.get(key)
        .map_or(default, |v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"))
}

/// `docker stats`: a sample a second (`stream`, the default) until the client leaves or the
/// sandbox goes; else one sample, with the one a second before it as `precpu_stats` (so that
/// CPU % can be told), or alone (`one-shot`).
async fn container_stats(daemon: &Arc<Daemon>, key: &str, q: &HashMap<String, String>) -> Response<Body> {
    let (stream, one_shot) = (flag(q, "stream", true), flag(q, "one-shot", false));
    if stream && one_shot {
        return error_response(400, "cannot have stream=true and one-shot=true".into());
    }
    let first = match daemon.sandbox_usage(key).await {
        Ok(s) => s,
        Err(e) => return from_error(&e),
    };
    if one_shot {
        return json(StatusCode::OK, &usage::stats_json(&first, None));
    }
    if !stream {
        tokio::time::sleep(usage::INTERVAL).await;
        return match daemon.sandbox_usage(&first.id).await {
            Ok(s) => json(StatusCode::OK, &usage::stats_json(&s, Some(&first))),
            Err(e) => from_error(&e),
        };
    }
    let daemon = daemon.clone();
    let lines =
        futures::stream::unfold((Some(first), None), move |(next, pre): (Option<UsageSample>, Option<UsageSample>)| {
            let daemon = daemon.clone();
            async move {
                let s = match (next, &pre) {
                    (Some(s), _) => s,
                    (None, Some(p)) => {
                        tokio::time::sleep(usage::INTERVAL).await;
                        // The sandbox went: the stream ends.
                        daemon.sandbox_usage(&p.id).await.ok()?
                    }
                    (None, None) => return None,
                };
                let mut bytes = serde_json::to_vec(&usage::stats_json(&s, pre.as_ref())).expect("stats serialise");
                bytes.push(b'\n');
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))), (None, Some(s))))
            }
        });
    respond_with(StatusCode::OK, StreamBody::new(lines).boxed_unsync(), "application/json")
}

/// How long `docker stop` and `restart` wait before SIGKILL (`t` seconds, 10 by default; -1:
/// for good).
fn grace(q: &HashMap<String, String>) -> Result<std::time::Duration, String> {
    match q.get("t").map(|t| t.parse::<i64>()) {
        None => Ok(std::time::Duration::from_secs(10)),
        Some(Ok(t)) if t < 0 => Ok(std::time::Duration::MAX),
        Some(Ok(t)) => Ok(std::time::Duration::from_secs(t.unsigned_abs())),
        Some(Err(_)) => Err(format!("invalid value for t: {}", q["t"])),
    }
}

/// `docker stop`: SIGTERM, then SIGKILL after `t` seconds (10 by default; -1: wait for
/// good); 304 when nothing ran, as Docker's.
async fn stop_container(daemon: &Daemon, key: &str, q: &HashMap<String, String>) -> Response<Body> {
    let grace = match grace(q) {
        Ok(g) => g,
        Err(e) => return error_response(400, e),
    };
    match daemon.stop_sandbox(key, grace).await {
        Ok(true) => empty(StatusCode::NO_CONTENT),
        Ok(false) => empty(StatusCode::NOT_MODIFIED),
        Err(e) => from_error(&e),
    }
}

/// `docker kill [--signal S]`: SIGKILL by default.
async fn kill_container(daemon: &Daemon, key: &str, q: &HashMap<String, String>) -> Response<Body> {
    let sig = match q.get("signal").filter(|s| !s.is_empty()) {
        None => libc::SIGKILL,
        Some(s) => match crate::process::parse_signal(s) {
            Some(sig) => sig,
            None => return error_response(400, format!("Invalid signal: {s}")),
        },
    };
    match daemon.signal_sandbox(key, sig).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => from_error(&e),
    }
}

/// `docker inspect` of a sandbox, as Docker's container.
async fn inspect_container(daemon: &Daemon, key: &str) -> Response<Body> {
    let state = daemon.snapshot().await;
    match state.find_sandbox(key) {
        Ok(s) => {
            let r = SandboxResource::from_model(s, &state, daemon.netns_path(s).display().to_string());
            let mut v = containers::inspect(s, &r);
            v["ExecIDs"] = serde_json::json!(daemon.running_execs(&s.id));
            json(StatusCode::OK, &v)
        }
        Err(_) => from_error(&no_such_container(key)),
    }
}

async fn list_sandboxes(daemon: &Daemon) -> Response<Body> {
    let state = daemon.snapshot().await;
    let mut list: Vec<SandboxResource> = state
        .sandboxes
        .values()
        .map(|s| SandboxResource::from_model(s, &state, daemon.netns_path(s).display().to_string()))
        .collect();
    list.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    json(StatusCode::OK, &list)
}

async fn inspect_sandbox(daemon: &Daemon, key: &str) -> Response<Body> {
    let state = daemon.snapshot().await;
    match state.find_sandbox(key) {
        Ok(s) => {
            json(StatusCode::OK, &SandboxResource::from_model(s, &state, daemon.netns_path(s).display().to_string()))
        }
        Err(_) => from_error(&no_such_container(key)),
    }
}

async fn create_sandbox(daemon: &Daemon, req: Request<Incoming>) -> Response<Body> {
    let r: SandboxCreateRequest = match body(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ip = match parse_ipv4(r.ipv4_address.as_deref().unwrap_or("")) {
        Ok(ip) => ip,
        Err(m) => return error_response(400, m),
    };
    let mac = match r.mac_address.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match ids::parse_mac(m) {
            Some(mac) if mac[0] & 1 == 0 => Some(mac),
            _ => return error_response(400, format!("{m} is not a valid mac address")),
        },
    };
    let mut ports = Vec::new();
    for spec in &r.ports {
        match crate::model::ports::parse_publish(spec) {
            Ok(p) => ports.extend(p),
            Err(m) => return error_response(400, m),
        }
    }
    let mut servers = Vec::new();
    for d in &r.dns {
        match d.parse() {
            Ok(ip) => servers.push(ip),
            Err(_) => return error_response(400, format!("{d} is not an ip address")),
        }
    }
    let dns = crate::model::DnsSettings { servers, search: r.dns_search, options: r.dns_options };
    let create = CreateSandbox {
        dns,
        ports,
        name: non_empty(r.name),
        network: r.network,
        ip,
        mac,
        auto_remove: r.auto_remove,
        command: r.command,
        aliases: r.aliases,
        hostname: non_empty(r.hostname),
        extra_hosts: r.extra_hosts,
        env: r.env,
        working_dir: non_empty(Some(r.working_dir)).map(std::path::PathBuf::from),
        user: r.user,
    };
    match daemon.create_sandbox(create).await {
        Ok(s) => {
            let state = daemon.snapshot().await;
            json(
                StatusCode::CREATED,
                &SandboxResource::from_model(&s, &state, daemon.netns_path(&s).display().to_string()),
            )
        }
        Err(e) => from_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths() {
        assert_eq!(split_version("/v1.41/networks"), (Some("1.41"), "/networks"));
        assert_eq!(split_version("/networks/abc"), (None, "/networks/abc"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert!(version_tuple("1.47") > version_tuple(API_VERSION));
        assert!(version_tuple("1.9") < version_tuple(MIN_API_VERSION));
    }
}
