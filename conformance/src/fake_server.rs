//! The fake cluster served over loopback TCP, for tests in any runtime and for
//! `sansa fake-cluster` and `sansa demo`: one listener per broker, one reader thread per
//! connection, and a timer thread, all sharing one [`FakeCluster`] behind a mutex. The real
//! clock drives the cluster's timers here. With [`FakeClusterConfig::tls`] every connection
//! is TLS ([`ServerTls`]); SASL is the cluster's own business.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use sansa::protocol::frame::FrameDecoder;

use crate::fake_cluster::{FakeCluster, FakeClusterConfig, FakeConnId, FakeOutput};
use crate::fake_tls::ServerTls;

/// How often the timer thread looks for due timers (fetch max-wait, delays, session timeouts).
const TICK: Duration = Duration::from_millis(2);

/// A running fake cluster on loopback. It serves until dropped.
#[derive(Debug)]
pub struct FakeServer {
    bootstrap: String,
    addresses: Vec<SocketAddr>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    next_conn: AtomicU64,
    stopped: AtomicBool,
}

#[derive(Debug)]
struct State {
    cluster: FakeCluster,
    writers: BTreeMap<FakeConnId, TcpStream>,
    /// Each connection's TLS session, on a TLS listener.
    tls: BTreeMap<FakeConnId, ServerTls>,
}

impl State {
    /// Carries out what the cluster asked for.
    fn flush(&mut self) {
        while let Some(out) = self.cluster.poll_output() {
            match out {
                FakeOutput::Send { conn, bytes } => {
                    let bytes = match self.tls.get_mut(&conn) {
                        Some(tls) => {
                            tls.send(&bytes);
                            tls.take_output().unwrap_or_default()
                        }
                        None => bytes.to_vec(),
                    };
                    if !self.write(conn, &bytes) {
                        self.cluster.handle_disconnect(conn);
                        self.hang_up(conn);
                    }
                }
                FakeOutput::Close { conn } => self.hang_up(conn),
            }
        }
    }
}

impl State {
    /// Writes to `conn`; false when that failed.
    fn write(&mut self, conn: FakeConnId, bytes: &[u8]) -> bool {
        bytes.is_empty() || self.writers.get_mut(&conn).is_none_or(|w| w.write_all(bytes).is_ok())
    }

    fn hang_up(&mut self, conn: FakeConnId) {
        self.tls.remove(&conn);
        if let Some(w) = self.writers.remove(&conn) {
            let _ = w.shutdown(Shutdown::Both);
        }
    }

    /// Decrypts what arrived on `conn` (and writes the handshake's answer); `None`: the TLS
    /// session failed, its alert is written and the connection must close.
    fn unwrap_tls(&mut self, conn: FakeConnId, data: &[u8]) -> Option<Vec<u8>> {
        let Some(tls) = self.tls.get_mut(&conn) else { return Some(data.to_vec()) };
        let plain = tls.receive(data);
        let out = tls.take_output().unwrap_or_default();
        let written = self.write(conn, &out);
        plain.ok().filter(|_| written)
    }
}

impl FakeServer {
    /// Binds one listener per broker on `host` (ports from `first_port` upwards, or ephemeral
    /// ports when `None`) and starts serving. Wall-clock times start at the real time.
    pub fn start(mut config: FakeClusterConfig, host: &str, first_port: Option<u16>) -> io::Result<FakeServer> {
        // Real wall-clock time is the point of serving over TCP; the simulator keeps the fixed one.
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        config.start_time_ms = i64::try_from(wall).unwrap_or(i64::MAX);
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
        let shared = Arc::new(Shared {
            state: Mutex::new(State { cluster, writers: BTreeMap::new(), tls: BTreeMap::new() }),
            next_conn: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
        });
        let addresses: Vec<SocketAddr> = listeners.iter().map(|(_, _, a)| *a).collect();
        for (id, listener, _) in listeners {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(&listener, id, &shared));
        }
        let timer = shared.clone();
        thread::spawn(move || timer_loop(&timer));
        let bootstrap = addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",");
        Ok(FakeServer { bootstrap, addresses, shared })
    }

    /// The bootstrap list, `host:port,...`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Each broker's address, by broker order.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// Runs `f` on the cluster (to inspect it, inject faults, stop or start brokers), then
    /// carries out whatever that asked for on the connections.
    pub fn with_cluster<R>(&self, f: impl FnOnce(&mut FakeCluster) -> R) -> R {
        let mut state = lock(&self.shared);
        let r = f(&mut state.cluster);
        state.flush();
        r
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let mut state = lock(&self.shared);
        for (conn, w) in std::mem::take(&mut state.writers) {
            let _ = w.shutdown(Shutdown::Both);
            state.cluster.handle_disconnect(conn);
        }
        drop(state);
        // Wake the accept loops so that they see the flag and release their ports.
        for addr in &self.addresses {
            let _ = TcpStream::connect_timeout(addr, Duration::from_millis(100));
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking reader thread must not take the whole server down with it.
    shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, broker: i32, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn = FakeConnId(shared.next_conn.fetch_add(1, Ordering::SeqCst));
        let Ok(writer) = stream.try_clone() else { continue };
        {
            let mut state = lock(shared);
            // A stopped broker cannot refuse at the TCP level here (its port stays bound), so
            // it accepts and hangs up at once.
            if state.cluster.handle_connect(Instant::now(), broker, conn).is_err() {
                let _ = stream.shutdown(Shutdown::Both);
                continue;
            }
            state.writers.insert(conn, writer);
            if let Some(config) = state.cluster.config().tls.clone() {
                state.tls.insert(conn, ServerTls::new(config));
            }
        }
        let shared = shared.clone();
        thread::spawn(move || read_loop(stream, conn, &shared));
    }
}

fn read_loop(mut stream: TcpStream, conn: FakeConnId, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let decoder = FrameDecoder::default();
    let mut inbound = BytesMut::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut state = lock(shared);
        let Some(plain) = state.unwrap_tls(conn, &buf[..n]) else { break };
        inbound.extend_from_slice(&plain);
        loop {
            match decoder.decode(&mut inbound) {
                Ok(Some(frame)) => {
                    let _ = state.cluster.handle_frame(Instant::now(), conn, frame);
                }
                Ok(None) => break,
                Err(_) => {
                    state.cluster.handle_disconnect(conn);
                    break;
                }
            }
        }
        state.flush();
        if !state.cluster.is_connected(conn) {
            break;
        }
    }
    let mut state = lock(shared);
    state.cluster.handle_disconnect(conn);
    state.hang_up(conn);
    state.flush();
}

fn timer_loop(shared: &Shared) {
    while !shared.stopped.load(Ordering::SeqCst) {
        thread::sleep(TICK);
        let mut state = lock(shared);
        let now = Instant::now();
        if state.cluster.poll_timeout().is_some_and(|t| t <= now) {
            state.cluster.handle_timeout(now);
        }
        state.flush();
    }
}
