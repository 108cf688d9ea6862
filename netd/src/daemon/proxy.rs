//! The published ports' sockets, as Docker's `docker-proxy`: each published port is bound in
//! the daemon's namespace, which reserves it (a port the host uses cannot be published, and
//! the host cannot take a published one), and whatever reaches the socket is relayed to the
//! container: connections from the host itself (`localhost:8080`) and from containers to the
//! host's address (and from an interface beyond the 64 the datapath watches). What arrives on
//! an uplink or a guarded interface never gets here: the datapath sends it straight to the
//! container, with the client's address.

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream, UdpSocket},
    task::{AbortHandle, JoinSet},
};

use crate::model::{PortBinding, Protocol};

/// A UDP client's relay ends after this long without a datagram either way (as
/// `docker-proxy`'s UDP connection tracking).
const UDP_IDLE: Duration = Duration::from_secs(90);

/// A published port's socket, bound (the port is reserved) but not relaying yet.
pub enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl Bound {
    /// The port it is bound to (the kernel's choice when asked for port 0).
    pub fn port(&self) -> io::Result<u16> {
        match self {
            Bound::Tcp(l) => l.local_addr().map(|a| a.port()),
            Bound::Udp(s) => s.local_addr().map(|a| a.port()),
        }
    }
}

/// Binds `protocol` port `port` (0: any free one) on `addr`. Fails as `bind(2)` does when the
/// host or another published port holds it.
pub fn bind(protocol: Protocol, addr: std::net::Ipv4Addr, port: u16) -> io::Result<Bound> {
    let at = SocketAddrV4::new(addr, port);
    match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(at).map(Bound::Tcp),
        Protocol::Udp => std::net::UdpSocket::bind(at).map(Bound::Udp),
    }
}

/// A published port's relay, running until dropped (its connections end with it).
pub struct Relay(AbortHandle);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts relaying what reaches `bound` to the container's `to`.
pub fn start(bound: Bound, to: SocketAddrV4, binding: PortBinding) -> io::Result<Relay> {
    let task = match bound {
        Bound::Tcp(l) => {
            l.set_nonblocking(true)?;
            tokio::spawn(relay_tcp(TcpListener::from_std(l)?, to, binding))
        }
        Bound::Udp(s) => {
            s.set_nonblocking(true)?;
            tokio::spawn(relay_udp(Arc::new(UdpSocket::from_std(s)?), to, binding))
        }
    };
    Ok(Relay(task.abort_handle()))
}

async fn relay_tcp(listener: TcpListener, to: SocketAddrV4, binding: PortBinding) {
    // Aborting the relay drops the set, which aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((mut client, _)) => {
                    conns.spawn(async move {
                        let Ok(mut server) = TcpStream::connect(to).await else { return };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                }
                Err(e) => {
                    eprintln!("netd: published port {binding}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn relay_udp(socket: Arc<UdpSocket>, to: SocketAddrV4, binding: PortBinding) {
    // Each client gets a socket of its own towards the container, so answers find it.
    let mut clients: HashMap<SocketAddr, (Arc<UdpSocket>, AbortHandle)> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let (n, client) = match got {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("netd: published port {binding}: receive: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let live = clients.get(&client).filter(|(_, task)| !task.is_finished()).map(|(s, _)| s.clone());
                let upstream = if let Some(s) = live {
                    s
                } else {
                    let Ok(s) = UdpSocket::bind("0.0.0.0:0").await else { continue };
                    if s.connect(to).await.is_err() {
                        continue;
                    }
                    let s = Arc::new(s);
                    let task = tasks.spawn(answers(s.clone(), socket.clone(), client));
                    clients.insert(client, (s.clone(), task));
                    s
                };
                let _ = upstream.send(&buf[..n]).await;
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                clients.retain(|_, (_, task)| !task.is_finished());
            }
        }
    }
}

/// Relays the container's answers on `upstream` to `client` until both sides are quiet for
/// [`UDP_IDLE`].
async fn answers(upstream: Arc<UdpSocket>, socket: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buf)).await {
        let _ = socket.send_to(&buf[..n], client).await;
    }
}
