//! `netd logs`: a sandbox's log as `docker logs` shows a container's (see `api/logs.rs`).

use std::{io::Write as _, process::ExitCode};

use crate::client::Client;

use super::fail;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow it until the sandbox stops.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (`all`: every one).
    #[arg(short = 'n', long, value_name = "N")]
    tail: Option<String>,
    /// Each line with the time it was written.
    #[arg(short, long)]
    timestamps: bool,
    sandbox: String,
}

/// Splits Docker's frames (`[stream, 0, 0, 0, length]` and the bytes) in `pending` as they
/// complete: stdout's to `out`, stderr's to `err`.
fn demux(pending: &mut Vec<u8>, out: &mut impl std::io::Write, err: &mut impl std::io::Write) {
    while pending.len() >= 8 {
        let len = u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]]) as usize;
        if pending.len() < 8 + len {
            return;
        }
        let to: &mut dyn std::io::Write = if pending[0] == 2 { err } else { out };
        let _ = to.write_all(&pending[8..8 + len]).and_then(|()| to.flush());
        pending.drain(..8 + len);
    }
}

pub async fn logs(client: &Client, a: LogsArgs) -> ExitCode {
    let mut path = format!("/containers/{}/logs?stdout=1&stderr=1", urlencoding::encode(&a.sandbox));
    for (on, flag) in [(a.follow, "&follow=1"), (a.timestamps, "&timestamps=1")] {
        if on {
            path.push_str(flag);
        }
    }
    if let Some(n) = &a.tail {
        path.push_str("&tail=");
        path.push_str(&urlencoding::encode(n));
    }
    let mut pending = Vec::new();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let shown = client
        .stream(
            &path,
            || {},
            |data| {
                pending.extend_from_slice(data);
                demux(&mut pending, &mut out, &mut err);
            },
        )
        .await;
    let _ = out.flush();
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::demux;

    #[test]
    fn frames_go_to_their_stream_once_whole() {
        let mut pending = vec![1, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'\n', 2, 0, 0, 0, 0, 0, 0, 2, b'e'];
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&mut pending, &mut out, &mut err);
        assert_eq!((out.as_slice(), err.as_slice()), (&b"ab\n"[..], &b""[..]));
        pending.push(b'\n');
        demux(&mut pending, &mut out, &mut err);
        assert_eq!(err, b"e\n");
        assert!(pending.is_empty());
    }
}
