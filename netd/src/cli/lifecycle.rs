//! `netd start | stop | restart | kill | wait`: a sandbox's command as `docker` handles a
//! container's, through the daemon's Docker API (`/containers/{id}/…`). Each names the
//! sandboxes it acted on as it goes, and says why for those it could not (the exit status is
//! then 1), as the docker CLI does.

use std::process::ExitCode;

use hyper::{Method, StatusCode};

use crate::client::Client;

#[derive(clap::Args)]
pub struct StartArgs {
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for the command to end after SIGTERM before SIGKILL (-1: for good).
    #[arg(short, long, default_value_t = 10, allow_negative_numbers = true)]
    time: i64,
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// The signal to send: a name (`TERM`, `SIGHUP`) or number.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

#[derive(clap::Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    sandboxes: Vec<String>,
}

pub async fn start(client: &Client, a: StartArgs) -> ExitCode {
    each(client, &a.sandboxes, "start").await
}

pub async fn stop(client: &Client, a: StopArgs) -> ExitCode {
    each(client, &a.sandboxes, &format!("stop?t={}", a.time)).await
}

pub async fn restart(client: &Client, a: StopArgs) -> ExitCode {
    each(client, &a.sandboxes, &format!("restart?t={}", a.time)).await
}

pub async fn kill(client: &Client, a: KillArgs) -> ExitCode {
    each(client, &a.sandboxes, &format!("kill?signal={}", urlencoding::encode(&a.signal))).await
}

/// Waits for each sandbox's command to end (at once when it does not run) and prints its exit
/// code, as `docker wait`.
pub async fn wait(client: &Client, a: WaitArgs) -> ExitCode {
    #[derive(serde::Deserialize)]
    struct Waited {
        #[serde(rename = "StatusCode")]
        code: i64,
    }
    let mut status = ExitCode::SUCCESS;
    for name in &a.sandboxes {
        let path = format!("/containers/{}/wait", urlencoding::encode(name));
        match client.call::<Waited>(Method::POST, &path, None::<&()>).await {
            Ok(w) => println!("{}", w.code),
            Err(e) => status = super::fail(&e),
        }
    }
    status
}

/// POSTs `/containers/{name}/{action}` for each name; "nothing to do" (304: started
/// already, stopped already) is done as well.
async fn each(client: &Client, names: &[String], action: &str) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for name in names {
        let path = format!("/containers/{}/{action}", urlencoding::encode(name));
        match client.raw(Method::POST, &path, None).await {
            Ok((code, _)) if code.is_success() || code == StatusCode::NOT_MODIFIED => println!("{name}"),
            Ok((code, body)) => status = super::fail(&crate::client::daemon_error(code, &body)),
            Err(e) => status = super::fail(&e),
        }
    }
    status
}
