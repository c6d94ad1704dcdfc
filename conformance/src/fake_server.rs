//! The fake cluster served over loopback TCP: one listener per broker, one thread per
//! connection, all sharing one [`FakeCluster`] behind a mutex. For tests in any runtime and
//! for `sansa fake-cluster`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use bytes::BytesMut;
use sansa::protocol::frame::FrameDecoder;

use crate::fake_cluster::{FakeCluster, FakeClusterConfig};

/// A running fake cluster on loopback. Its threads live as long as the process.
#[derive(Debug)]
pub struct FakeServer {
    bootstrap: String,
    addresses: Vec<SocketAddr>,
    cluster: Arc<Mutex<FakeCluster>>,
}

impl FakeServer {
    /// Binds one listener per broker on `host` (ports from `first_port` upwards, or ephemeral
    /// ports when `None`) and starts serving.
    pub fn start(config: FakeClusterConfig, host: &str, first_port: Option<u16>) -> io::Result<FakeServer> {
        let mut cluster = FakeCluster::new(config);
        let ids = cluster.broker_ids();
        let mut listeners = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let port = first_port.map_or(0, |p| p.saturating_add(i as u16));
            let listener = TcpListener::bind((host, port))?;
            let addr = listener.local_addr()?;
            cluster.set_address(*id, &addr.ip().to_string(), addr.port());
            listeners.push((*id, listener, addr));
        }
        let cluster = Arc::new(Mutex::new(cluster));
        let addresses: Vec<SocketAddr> = listeners.iter().map(|(_, _, a)| *a).collect();
        for (id, listener, _) in listeners {
            let cluster = cluster.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let cluster = cluster.clone();
                    thread::spawn(move || serve(stream, id, &cluster));
                }
            });
        }
        let bootstrap = addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",");
        Ok(FakeServer { bootstrap, addresses, cluster })
    }

    /// The bootstrap list, `host:port,...`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Each broker's address, by broker order.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The cluster, to inspect or to change while it serves.
    pub fn cluster(&self) -> Arc<Mutex<FakeCluster>> {
        self.cluster.clone()
    }
}

fn serve(mut stream: TcpStream, broker: i32, cluster: &Mutex<FakeCluster>) {
    let _ = stream.set_nodelay(true);
    let decoder = FrameDecoder::default();
    let mut inbound = BytesMut::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        inbound.extend_from_slice(&buf[..n]);
        loop {
            let frame = match decoder.decode(&mut inbound) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            let answer = {
                let Ok(mut c) = cluster.lock() else { return };
                c.handle_frame(Instant::now(), broker, frame)
            };
            match answer {
                Ok(Some(bytes)) => {
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    }
}
