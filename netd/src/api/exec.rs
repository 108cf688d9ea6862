//! `docker exec` over the API: `POST /containers/{id}/exec` creates an exec, `POST
//! /exec/{id}/start` runs it and attaches the client, `GET /exec/{id}/json` tells how it
//! ended, `POST /exec/{id}/resize` sizes its terminal.
//!
//! Attached, the client asks to upgrade the connection (`Upgrade: tcp`, as the docker CLI
//! does) and gets `101`: from then on the connection carries what the command writes, framed
//! as Docker's multiplexed stream (an 8-byte header: the stream, 1 stdout or 2 stderr, and the
//! length) or raw with a terminal, and what the client writes goes to the command's input until
//! the client closes its side. A client that does not ask to upgrade gets the output as the
//! response's body. The exit code is recorded before the stream ends, so the client's next
//! `GET /exec/{id}/json` has it.

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::{body::Incoming, header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{body, empty, error_response, from_error, json, respond_with, Body};
use crate::daemon::{
    exec::{ExecConfig, Started},
    Daemon,
};

/// What `POST /exec/{id}/start` asks for (its `Tty` is the exec's own, given when it was
/// created, which decides).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStart {
    detach: bool,
}

const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";
const RAW: &str = "application/vnd.docker.raw-stream";

/// `POST /containers/{key}/exec`.
pub async fn create(daemon: &Daemon, key: &str, req: Request<Incoming>) -> Response<Body> {
    let config: ExecConfig = match body(req).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match daemon.create_exec(key, config).await {
        Ok(id) => json(StatusCode::CREATED, &serde_json::json!({ "Id": id })),
        Err(e) => from_error(&e),
    }
}

/// `GET /exec/{id}/json`.
pub fn inspect(daemon: &Daemon, id: &str) -> Response<Body> {
    match daemon.inspect_exec(id) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => from_error(&e),
    }
}

/// `POST /exec/{id}/resize?h=&w=`.
pub fn resize(daemon: &Daemon, id: &str, q: &std::collections::HashMap<String, String>) -> Response<Body> {
    let dim = |k: &str| q.get(k).map(|v| v.parse::<u16>());
    let (Some(Ok(rows)), Some(Ok(cols))) = (dim("h"), dim("w")) else {
        return error_response(400, "resize needs h and w, each a number".into());
    };
    match daemon.resize_exec(id, rows, cols) {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => from_error(&e),
    }
}

/// `POST /exec/{id}/start`.
pub async fn start(daemon: &Arc<Daemon>, id: &str, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req.headers().contains_key(header::UPGRADE).then(|| hyper::upgrade::on(&mut req));
    let start: ExecStart = match body(req).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let started = match daemon.start_exec(id, start.detach).await {
        Ok(s) => s,
        Err(e) => return from_error(&e),
    };
    let (daemon, id) = (daemon.clone(), id.to_owned());
    if start.detach {
        if let Started::Pipes(child) | Started::Pty { child, .. } = started {
            tokio::spawn(async move {
                let code = wait(child).await;
                daemon.exec_ended(&id, code).await;
            });
        }
        return empty(StatusCode::OK);
    }
    let raw = matches!(started, Started::Pty { .. } | Started::Failed { tty: true, .. });
    let content_type = if raw { RAW } else { MULTIPLEXED };
    if let Some(upgrade) = upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                attach(&daemon, &id, started, raw, TokioIo::new(upgraded)).await;
            } else {
                // The client went before the switch: the command runs unattached.
                let nobody = tokio::io::join(tokio::io::empty(), tokio::io::sink());
                attach(&daemon, &id, started, raw, nobody).await;
            }
        });
        let mut r =
            respond_with(StatusCode::SWITCHING_PROTOCOLS, http_body_util::Empty::new().boxed_unsync(), content_type);
        r.headers_mut().insert(header::CONNECTION, "Upgrade".parse().expect("valid header"));
        r.headers_mut().insert(header::UPGRADE, "tcp".parse().expect("valid header"));
        return r;
    }
    // The output as the body; nothing to read from the client.
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move { attach(&daemon, &id, started, raw, ours).await });
    let chunks = futures::stream::unfold(theirs, |mut theirs| async move {
        let mut buf = vec![0; 32 * 1024];
        match theirs.read(&mut buf).await {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                Some((Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(buf))), theirs))
            }
            _ => None,
        }
    });
    respond_with(StatusCode::OK, StreamBody::new(chunks).boxed_unsync(), content_type)
}

/// Connects a started exec to the client's connection `io` until the command has ended and its
/// output is written, then records its exit code and closes the output. `raw`: the stream is
/// not multiplexed (a terminal).
async fn attach<Io: AsyncRead + AsyncWrite + Send + 'static>(
    daemon: &Daemon,
    id: &str,
    started: Started,
    raw: bool,
    io: Io,
) {
    let (mut from_client, mut to_client) = tokio::io::split(io);
    let code = match started {
        Started::Failed { why, .. } => {
            let said = if raw { format!("{why}\r\n").into_bytes() } else { frame(2, format!("{why}\n").as_bytes()) };
            let _ = to_client.write_all(&said).await;
            // Recorded by `start_exec` already.
            let _ = to_client.shutdown().await;
            return;
        }
        Started::Pipes(mut child) => {
            let input = child.stdin.take().map(|mut stdin| {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut stdin).await;
                    // Dropped: the command reads the end of its input.
                })
            });
            let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
            let output = copy_framed(&mut to_client, stdout, stderr);
            let code = until_ended(child, output).await;
            if let Some(input) = input {
                input.abort();
            }
            code
        }
        Started::Pty { child, master } => {
            let files = std::os::fd::OwnedFd::try_clone(&master)
                .and_then(|r| Ok((r, std::os::fd::OwnedFd::try_clone(&master)?)));
            let Ok((reader, writer)) = files else {
                let code = wait(child).await;
                daemon.exec_ended(id, code).await;
                return;
            };
            let (mut reader, mut writer) =
                (tokio::fs::File::from_std(reader.into()), tokio::fs::File::from_std(writer.into()));
            let input = tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                while let Ok(n) = from_client.read(&mut buf).await {
                    if n == 0 || writer.write_all(&buf[..n]).await.is_err() || writer.flush().await.is_err() {
                        break;
                    }
                }
            });
            // A terminal's master reads EIO once every copy of its slave is closed: the end.
            let output = async {
                let _ = tokio::io::copy(&mut reader, &mut to_client).await;
            };
            let code = until_ended(child, output).await;
            input.abort();
            code
        }
    };
    daemon.exec_ended(id, code).await;
    let _ = to_client.flush().await;
    let _ = to_client.shutdown().await;
}

/// Waits for `child` while `output` is copied (see [`crate::process::wait_while_copying`]):
/// its exit code.
async fn until_ended(mut child: tokio::process::Child, output: impl std::future::Future<Output = ()>) -> i32 {
    crate::process::wait_while_copying(&mut child, output).await.map_or(126, crate::process::exit_code)
}

async fn wait(mut child: tokio::process::Child) -> i32 {
    child.wait().await.map_or(126, crate::process::exit_code)
}

/// Copies the command's output to `to`, each chunk in a frame of its stream, until both end.
async fn copy_framed<W: AsyncWrite + Unpin>(
    to: &mut W,
    mut stdout: Option<tokio::process::ChildStdout>,
    mut stderr: Option<tokio::process::ChildStderr>,
) {
    let (mut out_buf, mut err_buf) = (vec![0; 32 * 1024], vec![0; 32 * 1024]);
    loop {
        let (n, stream) = tokio::select! {
            r = read_some(stdout.as_mut(), &mut out_buf), if stdout.is_some() => {
                let Some(n) = r else {
                    stdout = None;
                    continue;
                };
                (n, 1)
            }
            r = read_some(stderr.as_mut(), &mut err_buf), if stderr.is_some() => {
                let Some(n) = r else {
                    stderr = None;
                    continue;
                };
                (n, 2)
            }
            else => return,
        };
        let data = if stream == 1 { &out_buf[..n] } else { &err_buf[..n] };
        if to.write_all(&frame(stream, data)).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
}

/// Reads what is there (`None` at the end or on an error).
async fn read_some(from: Option<&mut (impl AsyncRead + Unpin)>, buf: &mut [u8]) -> Option<usize> {
    match from?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// One frame of Docker's multiplexed stream: stream (1 stdout, 2 stderr), three zero bytes,
/// the length (big-endian), the data.
fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&[stream, 0, 0, 0]);
    f.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn frames_carry_their_stream_and_length() {
        assert_eq!(frame(1, b"hi"), [1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(frame(2, b""), [2, 0, 0, 0, 0, 0, 0, 0]);
    }
}
