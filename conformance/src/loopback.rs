//! A scripted broker on a loopback TCP socket, for the runtime crates' tests: it speaks the
//! real wire protocol through sansa's codecs, advertises every API sansa knows, lists itself
//! as broker 1 in Metadata, and answers anything else with that API's default response. A
//! `silent` broker accepts connections and never answers; a trickling one answers ListGroups
//! with about a megabyte and writes every answer in pieces, with pauses between them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use sansa::protocol::frame::{decode_request, encode_response, FrameDecoder};
use sansa::protocol::messages::api_versions::response::ApiVersion;
use sansa::protocol::messages::list_groups::response::ListedGroup;
use sansa::protocol::messages::metadata::response::MetadataResponseBroker;
use sansa::protocol::messages::{ApiVersionsResponse, ListGroupsResponse, MetadataResponse};
use sansa::protocol::{ApiKey, BrokerId, GroupId, RequestBody, ResponseBody};

/// A running scripted broker. Its threads live as long as the test process.
#[derive(Debug)]
pub struct ScriptedBroker {
    /// Where it listens.
    pub addr: SocketAddr,
    /// One message per connection that ended (closed by the client or failed).
    pub closed: mpsc::Receiver<()>,
    open: Arc<AtomicUsize>,
}

impl ScriptedBroker {
    /// Starts a broker on an ephemeral port of 127.0.0.1.
    pub fn start(silent: bool) -> ScriptedBroker {
        Self::start_as(if silent { Behaviour::Silent } else { Behaviour::Answer })
    }

    /// Starts a broker that answers ListGroups with [`TRICKLED_GROUPS`] groups (a frame of
    /// about a megabyte) and writes each answer in pieces of [`TRICKLE_PIECE`] bytes, 10 ms
    /// apart: a reader must get a large frame that comes slowly, to its last byte.
    pub fn start_trickling() -> ScriptedBroker {
        Self::start_as(Behaviour::Trickle)
    }

    fn start_as(behaviour: Behaviour) -> ScriptedBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, closed) = mpsc::channel();
        let open = Arc::new(AtomicUsize::new(0));
        let counter = open.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let tx = tx.clone();
                counter.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                thread::spawn(move || {
                    serve(stream, addr.port(), behaviour);
                    counter.fetch_sub(1, Ordering::SeqCst);
                    let _ = tx.send(());
                });
            }
        });
        ScriptedBroker { addr, closed, open }
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// An address where a connection is refused. The port comes from a listener on 127.0.0.2
/// that is closed again: the tests' brokers listen on 127.0.0.1 only, so none of them can take
/// that port meanwhile (an ephemeral port of 127.0.0.1 freed this way could go to a broker a
/// concurrent test starts), and a client cannot connect to itself there either.
pub fn refusing_address() -> SocketAddr {
    TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2:0").local_addr().expect("local address")
}

/// Groups in a trickling broker's ListGroups answer.
pub const TRICKLED_GROUPS: usize = 20_000;

/// Bytes a trickling broker writes at a time.
pub const TRICKLE_PIECE: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Answer,
    Silent,
    Trickle,
}

fn serve(mut stream: TcpStream, port: u16, behaviour: Behaviour) {
    let decoder = FrameDecoder::default();
    let mut inbound = BytesMut::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if behaviour == Behaviour::Silent {
            continue;
        }
        inbound.extend_from_slice(&buf[..n]);
        let mut out = BytesMut::new();
        loop {
            let frame = match decoder.decode(&mut inbound) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            let Ok((header, body)) = decode_request(frame) else { return };
            let version = header.request_api_version;
            let body = match body {
                RequestBody::ListGroups(_) if behaviour == Behaviour::Trickle => many_groups(),
                body => answer(&body, port),
            };
            if encode_response(&mut out, header.correlation_id, version, &body).is_err() {
                return;
            }
        }
        let piece = if behaviour == Behaviour::Trickle { TRICKLE_PIECE } else { usize::MAX };
        for (i, chunk) in out.chunks(piece).enumerate() {
            if i > 0 {
                thread::sleep(Duration::from_millis(10));
            }
            if stream.write_all(chunk).is_err() {
                return;
            }
        }
    }
}

/// A ListGroups answer of [`TRICKLED_GROUPS`] groups, about 50 bytes each.
fn many_groups() -> ResponseBody {
    let groups = (0..TRICKLED_GROUPS)
        .map(|i| {
            ListedGroup::default()
                .with_group_id(GroupId(format!("trickled-group-{i:08}-of-a-slow-broker").into()))
                .with_protocol_type("consumer".into())
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups).into()
}

fn answer(body: &RequestBody, port: u16) -> ResponseBody {
    match body {
        RequestBody::ApiVersions(_) => ApiVersionsResponse::default()
            .with_api_keys(
                ApiKey::ALL
                    .iter()
                    .filter(|k| !k.versions().is_empty())
                    .map(|k| {
                        ApiVersion::default()
                            .with_api_key(k.as_i16())
                            .with_min_version(k.versions().min)
                            .with_max_version(k.versions().max)
                    })
                    .collect(),
            )
            .into(),
        RequestBody::Metadata(_) => MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host("127.0.0.1".into())
                .with_port(i32::from(port))])
            .with_cluster_id(Some("loopback".into()))
            .with_controller_id(BrokerId(1))
            .into(),
        other => ResponseBody::default_for(other.api_key()),
    }
}
