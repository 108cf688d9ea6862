//! `netd daemon`: start, serve until SIGTERM/SIGINT, stop cleanly (networks and sandboxes stay).

use std::process::ExitCode;

use tokio::{
    net::UnixListener,
    signal::unix::{signal, SignalKind},
};

use crate::daemon::{self as d, Config, Daemon};

pub fn main(cfg: Config) -> ExitCode {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    match runtime.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netd: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(cfg: Config) -> Result<(), String> {
    let socket = cfg.socket_path()?;
    // Flags first: a bad one changes nothing (not even the socket's directory).
    d::nat::configured_port_range(&cfg).map_err(|e| format!("starting: {e}"))?;
    // A taken metrics address too.
    let metrics = match cfg.metrics_addr {
        Some(addr) => {
            Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("binding --metrics-addr {addr}: {e}"))?)
        }
        None => None,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(format!("another daemon is listening on unix://{}", socket.display()));
        }
        std::fs::remove_file(&socket).map_err(|e| format!("removing stale socket {}: {e}", socket.display()))?;
    }
    let metrics_addr = cfg.metrics_addr;
    let daemon = Daemon::start(cfg).await.map_err(|e| format!("starting: {e}"))?;
    if let Some(addr) = metrics_addr {
        eprintln!("netd: metrics on http://{addr}/metrics");
    }
    let listener = UnixListener::bind(&socket).map_err(|e| format!("binding {}: {e}", socket.display()))?;
    // Whoever can write to the socket controls the host's networking: root and its group only,
    // as dockerd's socket (whatever the umask the daemon was started with).
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o660))
        .map_err(|e| format!("restricting {}: {e}", socket.display()))?;
    eprintln!("netd: listening on unix://{}", socket.display());
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("netd: shutting down");
    };
    d::run(daemon, listener, metrics, shutdown).await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("netd: stopped");
    Ok(())
}
