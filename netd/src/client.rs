//! A client of the daemon's API over its unix socket (used by the `netd` CLI and by tests).

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::UnixStream;

use crate::api::{types::ErrorResponse, API_VERSION};

/// Client errors, worded like docker's.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the netd daemon at unix://{}. Is the netd daemon running?", socket.display())]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error status.
    #[error("Error response from daemon: {message}")]
    Daemon { status: u16, message: String },
    #[error("talking to the daemon: {0}")]
    Protocol(String),
}

/// Connection parameters of the daemon's API.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for `unix://PATH`.
    pub fn new(host: &str) -> Result<Self, String> {
        Ok(Self { socket: crate::daemon::socket_path(host)? })
    }

    /// Sends one request (the path without the version prefix) and returns status and body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends a GET whose answer is a stream of lines (`/netd/v1/monitor`) and calls `on_line`
    /// with each, as it comes, until the daemon ends the stream. `on_start` runs once the
    /// daemon has accepted the request.
    pub async fn stream_lines(
        &self,
        path: &str,
        on_start: impl FnOnce(),
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let mut pending = Vec::new();
        self.stream(path, on_start, |data| {
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                on_line(String::from_utf8_lossy(&line[..end]).as_ref());
            }
        })
        .await
    }

    /// Sends a GET whose answer is a stream and calls `on_data` with its bytes as they come,
    /// until the daemon ends it. `on_start` runs once the daemon has accepted the request.
    pub async fn stream(
        &self,
        path: &str,
        on_start: impl FnOnce(),
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(), ClientError> {
        let mut resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_bytes();
            return Err(daemon_error(status, &bytes));
        }
        on_start();
        while let Some(frame) = resp.body_mut().frame().await {
            let frame = frame.map_err(|e| ClientError::Protocol(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                on_data(&data);
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect { socket: self.socket.clone(), source })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::spawn(conn);
        let uri = if path.starts_with("/netd/") { path.to_owned() } else { format!("/v{API_VERSION}{path}") };
        let mut builder = Request::builder().method(method).uri(uri).header("Host", "netd");
        if body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sender.send_request(req).await.map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends a request with an optional JSON body; decodes a JSON answer or the daemon's error.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("request types serialise"));
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            return Err(daemon_error(status, &bytes));
        }
        let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"null") } else { bytes };
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("decoding the answer: {e}")))
    }
}

/// The daemon's error answer, as docker words it.
pub fn daemon_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorResponse>(bytes)
        .map_or_else(|_| String::from_utf8_lossy(bytes).trim().to_owned(), |e| e.message);
    ClientError::Daemon { status: status.as_u16(), message }
}
