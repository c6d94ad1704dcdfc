//! Simulated tests of the client: a virtual clock and a scripted broker that speaks the real
//! wire protocol through the generated codecs. No sockets, no sleeps.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::protocol::frame::{decode_request, encode_response, FrameDecoder};
use crate::protocol::messages::api_versions::response::ApiVersion;
use crate::protocol::messages::metadata::response::{MetadataResponseBroker, MetadataResponseTopic};
use crate::protocol::messages::{
    ApiVersionsResponse, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, RequestHeader,
};
use crate::protocol::ApiKey;

/// A broker that answers what the client sends, by API.
struct Broker {
    /// Versions advertised; by default everything sansa speaks.
    versions: Vec<(i16, i16, i16)>,
    decoder: FrameDecoder,
    inbound: BytesMut,
    /// Requests seen, in order.
    seen: Vec<(RequestHeader, RequestBody)>,
    /// Answers held back instead of sent.
    mute: bool,
    /// Requests of this API are never answered.
    hold: Option<ApiKey>,
    /// Answers used instead of the default for an API.
    answers: Vec<(ApiKey, ResponseBody)>,
    brokers: Vec<(i32, u16)>,
}

impl Broker {
    fn new() -> Self {
        Broker {
            versions: ApiKey::ALL
                .iter()
                .filter(|k| !k.versions().is_empty())
                .map(|k| (k.as_i16(), k.versions().min, k.versions().max))
                .collect(),
            decoder: FrameDecoder::default(),
            inbound: BytesMut::new(),
            seen: Vec::new(),
            mute: false,
            hold: None,
            answers: Vec::new(),
            brokers: vec![(1, 9092), (2, 9093)],
        }
    }

    /// Takes the client's bytes, returns the broker's answer bytes.
    fn receive(&mut self, bytes: &[u8]) -> Bytes {
        self.inbound.extend_from_slice(bytes);
        let mut out = BytesMut::new();
        while let Some(frame) = self.decoder.decode(&mut self.inbound).unwrap() {
            let (header, body) = decode_request(frame).unwrap();
            let version = header.request_api_version;
            let answer: Option<ResponseBody> = match &body {
                RequestBody::ApiVersions(_) => {
                    let ours = self.versions.iter().find(|v| v.0 == 18).map_or(0, |v| v.2);
                    let keys = self
                        .versions
                        .iter()
                        .map(|(k, lo, hi)| {
                            ApiVersion::default().with_api_key(*k).with_min_version(*lo).with_max_version(*hi)
                        })
                        .collect();
                    if version > ours {
                        // As a real broker does: v0 body, UNSUPPORTED_VERSION, its ranges.
                        let r = ApiVersionsResponse::default()
                            .with_error_code(ErrorCode::UnsupportedVersion)
                            .with_api_keys(keys);
                        let mut b = BytesMut::new();
                        encode_response(&mut b, header.correlation_id, 0, &r.into()).unwrap();
                        out.extend_from_slice(&b);
                        self.seen.push((header, body));
                        continue;
                    }
                    Some(ApiVersionsResponse::default().with_api_keys(keys).into())
                }
                RequestBody::Metadata(_) => Some(
                    MetadataResponse::default()
                        .with_brokers(
                            self.brokers
                                .iter()
                                .map(|(id, port)| {
                                    MetadataResponseBroker::default()
                                        .with_node_id(BrokerId(*id))
                                        .with_host("127.0.0.1".into())
                                        .with_port(i32::from(*port))
                                })
                                .collect(),
                        )
                        .with_controller_id(BrokerId(1))
                        .with_topics(vec![MetadataResponseTopic::default().with_name(Some(TopicName::from("t")))])
                        .into(),
                ),
                RequestBody::FindCoordinator(_) => {
                    let coordinator = crate::protocol::messages::find_coordinator::response::Coordinator::default()
                        .with_key("g".into())
                        .with_node_id(BrokerId(2))
                        .with_host("127.0.0.1".into())
                        .with_port(9093);
                    let r = FindCoordinatorResponse::default();
                    Some(if version >= 4 {
                        r.with_coordinators(vec![coordinator]).into()
                    } else {
                        r.with_node_id(BrokerId(2)).with_host("127.0.0.1".into()).with_port(9093).into()
                    })
                }
                RequestBody::Heartbeat(_) => Some(HeartbeatResponse::default().into()),
                RequestBody::Produce(p) if p.acks == 0 => None,
                other => Some(ResponseBody::default_for(other.api_key())),
            };
            let answer = match self.answers.iter().find(|(api, _)| *api == body.api_key()) {
                Some((_, a)) => Some(a.clone()),
                None => answer,
            };
            let mute = (self.mute && !matches!(body, RequestBody::ApiVersions(_))) || self.hold == Some(body.api_key());
            self.seen.push((header.clone(), body));
            if let (Some(a), false) = (answer, mute) {
                encode_response(&mut out, header.correlation_id, version, &a).unwrap();
            }
        }
        out.freeze()
    }
}

/// The client, a clock, and brokers by address.
struct Sim {
    client: Client,
    now: Instant,
    brokers: BTreeMap<BrokerAddress, Broker>,
    /// Addresses that refuse connections.
    dead: Vec<BrokerAddress>,
    /// Addresses that accept and then hang up (brokers older than 0.10).
    hang_up: Vec<BrokerAddress>,
    conns: BTreeMap<ConnId, BrokerAddress>,
    events: Vec<Event>,
    /// Answers chopped into pieces of this many bytes (0 = whole).
    chunk: usize,
    /// Deliver the answers of different connections byte by byte, alternating between them.
    interleave: bool,
    opened: Vec<BrokerAddress>,
    /// The connection and API of every request the brokers read, in order.
    carried: Vec<(ConnId, ApiKey)>,
    /// Every piece the client handed out to send, in order.
    sent: Vec<Bytes>,
}

impl Sim {
    fn new(bootstrap: &str, configure: impl FnOnce(Config) -> Config) -> Self {
        let config = configure(Config::new(bootstrap).unwrap());
        let now = crate::test_origin();
        let mut brokers = BTreeMap::new();
        for a in ["127.0.0.1:9092", "127.0.0.1:9093", "127.0.0.1:9094"] {
            brokers.insert(BrokerAddress::parse(a).unwrap(), Broker::new());
        }
        Sim {
            client: Client::new(config, now),
            now,
            brokers,
            dead: Vec::new(),
            hang_up: Vec::new(),
            conns: BTreeMap::new(),
            events: Vec::new(),
            chunk: 0,
            interleave: false,
            opened: Vec::new(),
            carried: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Delivers everything until the client is quiet, without moving the clock.
    fn run(&mut self) {
        loop {
            let mut inputs = Vec::new();
            while let Some(t) = self.client.poll_transmit(self.now) {
                match t {
                    Transmit::Open { conn, address } => {
                        self.opened.push(address.clone());
                        if self.dead.contains(&address) || !self.brokers.contains_key(&address) {
                            inputs.push(Input::Closed { conn, cause: CloseCause::Refused });
                        } else {
                            self.conns.insert(conn, address);
                            inputs.push(Input::Connected { conn });
                        }
                    }
                    Transmit::Send { conn, bytes } => {
                        self.sent.push(bytes.clone());
                        let Some(addr) = self.conns.get(&conn).cloned() else { continue };
                        if self.hang_up.contains(&addr) {
                            self.conns.remove(&conn);
                            inputs.push(Input::Closed { conn, cause: CloseCause::PeerClosed });
                            continue;
                        }
                        let broker = self.brokers.get_mut(&addr).unwrap();
                        let before = broker.seen.len();
                        let answer = broker.receive(&bytes);
                        for (h, _) in &broker.seen[before..] {
                            self.carried.push((conn, ApiKey::from_i16(h.request_api_key).unwrap()));
                        }
                        if answer.is_empty() {
                            continue;
                        }
                        if self.chunk == 0 {
                            inputs.push(Input::Received { conn, data: answer });
                        } else {
                            for piece in answer.chunks(self.chunk) {
                                inputs.push(Input::Received { conn, data: Bytes::copy_from_slice(piece) });
                            }
                        }
                    }
                    Transmit::Close { conn } => {
                        self.conns.remove(&conn);
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if inputs.is_empty() {
                return;
            }
            if self.interleave {
                inputs = interleave_bytes(inputs);
            }
            for i in inputs {
                self.client.handle_input(self.now, i);
            }
        }
    }

    /// Moves the clock to the client's next deadline (at most `limit` ahead) and runs.
    fn advance(&mut self, limit: Duration) -> bool {
        let Some(t) = self.client.poll_timeout() else { return false };
        let t = t.min(self.now + limit).max(self.now);
        self.now = t;
        self.client.handle_timeout(t);
        self.run();
        true
    }

    fn response(&self, id: RequestId) -> Option<&Result<Response, RequestError>> {
        self.events.iter().find_map(|e| match e {
            Event::Response { id: i, result } if *i == id => Some(result),
            _ => None,
        })
    }
}

/// Splits every `Received` into single bytes and alternates between connections, keeping
/// each connection's own order; other inputs come first.
fn interleave_bytes(inputs: Vec<Input>) -> Vec<Input> {
    let mut out = Vec::new();
    let mut streams: Vec<(ConnId, VecDeque<u8>)> = Vec::new();
    for i in inputs {
        match i {
            Input::Received { conn, data } => match streams.iter_mut().find(|(c, _)| *c == conn) {
                Some((_, q)) => q.extend(data.iter()),
                None => streams.push((conn, data.iter().copied().collect())),
            },
            other => out.push(other),
        }
    }
    while streams.iter().any(|(_, q)| !q.is_empty()) {
        for (conn, q) in streams.iter_mut().rev() {
            if let Some(b) = q.pop_front() {
                out.push(Input::Received { conn: *conn, data: Bytes::copy_from_slice(&[b]) });
            }
        }
    }
    out
}

fn heartbeat() -> RequestBody {
    HeartbeatRequest::default().with_group_id("g".into()).with_member_id("m".into()).into()
}

#[test]
fn handshake_then_request_at_the_highest_common_version() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    let r = sim.response(id).unwrap().as_ref().unwrap();
    assert_eq!(r.version, ApiKey::Heartbeat.versions().max);
    assert!(matches!(r.body, Some(ResponseBody::Heartbeat(_))));
    let seen = &sim.brokers[&BrokerAddress::parse("127.0.0.1:9092").unwrap()].seen;
    assert_eq!(seen[0].0.request_api_version, ApiKey::ApiVersions.versions().max);
    assert_eq!(seen[0].0.client_id.as_deref(), Some("sansa"));
    let RequestBody::ApiVersions(av) = &seen[0].1 else { panic!("first request is ApiVersions") };
    assert_eq!(av.client_software_name.as_str(), "sansa");
}

#[test]
fn older_broker_is_negotiated_down() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let b = sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap();
    for v in &mut b.versions {
        if v.0 == ApiKey::ApiVersions.as_i16() {
            v.2 = 2;
        }
        if v.0 == ApiKey::Heartbeat.as_i16() {
            v.2 = 1;
        }
    }
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    assert_eq!(sim.response(id).unwrap().as_ref().unwrap().version, 1);
    let seen = &sim.brokers[&BrokerAddress::parse("127.0.0.1:9092").unwrap()].seen;
    let av: Vec<i16> =
        seen.iter().filter(|(h, _)| h.request_api_key == 18).map(|(h, _)| h.request_api_version).collect();
    assert_eq!(av, vec![ApiKey::ApiVersions.versions().max, 2], "retried at the broker's ApiVersions version");
}

#[test]
fn missing_api_and_pinned_versions_are_typed_errors() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let b = sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap();
    b.versions.retain(|v| v.0 != ApiKey::Heartbeat.as_i16());
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    let pinned = sim.client.request(sim.now, Target::AnyBroker, MetadataRequest::default().into(), Some(99));
    sim.run();
    assert!(matches!(
        sim.response(id),
        Some(Err(RequestError::Version { error: VersionError::ApiNotSupported(ApiKey::Heartbeat), .. }))
    ));
    assert!(matches!(sim.response(pinned), Some(Err(RequestError::Version { .. }))));
}

#[test]
fn responses_split_at_every_byte_boundary() {
    for chunk in 1..40 {
        let mut sim = Sim::new("127.0.0.1:9092", |c| c);
        sim.chunk = chunk;
        let ids: Vec<RequestId> =
            (0..3).map(|_| sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None)).collect();
        sim.run();
        for id in ids {
            assert!(sim.response(id).unwrap().is_ok(), "chunk {chunk}");
        }
    }
}

#[test]
fn many_requests_pipeline_within_the_in_flight_limit() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c.with_max_in_flight_per_connection(5));
    let ids: Vec<RequestId> =
        (0..200).map(|_| sim.client.request(sim.now, Target::Bootstrap(0), heartbeat(), None)).collect();
    sim.run();
    let done: Vec<RequestId> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Response { id, result: Ok(_) } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(done, ids, "every request answered, in order");
    assert_eq!(sim.opened.len(), 1, "one connection");
}

#[test]
fn produce_with_acks_zero_completes_without_a_response() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let id = sim.client.request(sim.now, Target::AnyBroker, ProduceRequest::default().with_acks(0).into(), None);
    sim.run();
    let r = sim.response(id).unwrap().as_ref().unwrap();
    assert_eq!(r.body, None);
    // The connection is still usable afterwards.
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    assert!(sim.response(id).unwrap().is_ok());
}

#[test]
fn large_record_sets_go_out_from_their_own_memory() {
    use crate::protocol::messages::produce::request::{PartitionProduceData, TopicProduceData};
    let large = Bytes::from(vec![7u8; 100_000]);
    let small = Bytes::from(vec![8u8; 100]);
    let partitions = [(0, large.clone()), (1, small.clone()), (2, large.slice(..50_000))]
        .map(|(index, records)| PartitionProduceData::default().with_index(index).with_records(Some(records)));
    let request = ProduceRequest::default().with_acks(1).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName::from("t"))
        .with_partition_data(partitions.to_vec())]);
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let id = sim.client.request(sim.now, Target::AnyBroker, request.clone().into(), None);
    sim.run();
    assert!(sim.response(id).unwrap().is_ok());
    // The broker read the request whole ...
    let seen = sim.brokers.values().flat_map(|b| &b.seen).find_map(|(_, body)| match body {
        RequestBody::Produce(p) => Some(p.clone()),
        _ => None,
    });
    let records = |r: &ProduceRequest| -> Vec<Option<Bytes>> {
        r.topic_data.iter().flat_map(|t| t.partition_data.iter().map(|p| p.records.clone())).collect()
    };
    assert!(seen.as_ref().map(records) == Some(records(&request)), "the record sets as sent");
    // ... though the large record sets were handed out as they are, not copied, and the
    // small one travelled inside the frame.
    let shares = |piece: &Bytes, records: &Bytes| piece.as_ptr() == records.as_ptr() && piece.len() == records.len();
    assert!(sim.sent.iter().any(|p| shares(p, &large)), "the first large record set");
    assert!(sim.sent.iter().any(|p| shares(p, &large.slice(..50_000))), "the second");
    assert!(!sim.sent.iter().any(|p| p.len() == small.len()), "the small one is not a piece of its own");
}

#[test]
fn request_timeout_fails_the_request_and_closes_the_connection() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c.with_request_timeout(Duration::from_secs(2)));
    sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap().mute = true;
    let start = sim.now;
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    while sim.response(id).is_none() && sim.advance(Duration::from_secs(60)) {}
    assert!(matches!(sim.response(id), Some(Err(RequestError::Timeout(_)))));
    assert!(sim.now - start <= Duration::from_secs(2), "failed at the deadline, not later");
    assert!(sim.conns.is_empty(), "connection closed");
}

#[test]
fn dead_first_bootstrap_address_is_skipped() {
    let mut sim = Sim::new("127.0.0.1:9999,127.0.0.1:9092", |c| c);
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    for _ in 0..10 {
        if sim.response(id).is_some() {
            break;
        }
        sim.advance(Duration::from_secs(1));
    }
    assert!(sim.response(id).unwrap().is_ok());
    assert_eq!(sim.opened[0].port, 9999);
}

#[test]
fn refused_connection_backs_off_within_bounds_then_reports_why() {
    let mut sim = Sim::new("127.0.0.1:9999", |c| {
        c.with_request_timeout(Duration::from_secs(5))
            .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
    });
    let start = sim.now;
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    let mut attempts = vec![sim.now];
    while sim.response(id).is_none() && sim.advance(Duration::from_secs(60)) {
        if sim.opened.len() > attempts.len() {
            attempts.push(sim.now);
        }
    }
    assert!(matches!(sim.response(id), Some(Err(RequestError::Unreachable { cause: CloseCause::Refused, .. }))));
    assert_eq!(sim.now - start, Duration::from_secs(5));
    let (lo, hi) = sim.client.config().reconnect_backoff.bounds();
    for w in attempts.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap >= lo && gap <= hi, "backoff {gap:?} outside {lo:?}..{hi:?}");
    }
    assert!(attempts.len() >= 10, "kept retrying: {} attempts", attempts.len());
}

#[test]
fn metadata_then_broker_and_coordinator_targets() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let m = sim.client.refresh_metadata(sim.now, None);
    sim.run();
    let md = sim
        .events
        .iter()
        .find_map(|e| match e {
            Event::Metadata { id, result } if *id == m => Some(result.clone()),
            _ => None,
        })
        .unwrap()
        .unwrap();
    assert_eq!(md.brokers.len(), 2);
    assert_eq!(md.controller, Some(BrokerId(1)));
    assert!(md.topic("t").is_some());
    let to_broker = sim.client.request(sim.now, Target::Broker(BrokerId(2)), heartbeat(), None);
    let to_coordinator = sim.client.request(sim.now, Target::GroupCoordinator("g".into()), heartbeat(), None);
    let to_unknown = sim.client.request(sim.now, Target::Broker(BrokerId(42)), heartbeat(), None);
    sim.run();
    assert_eq!(sim.response(to_broker).unwrap().as_ref().unwrap().address.port, 9093);
    assert_eq!(sim.response(to_coordinator).unwrap().as_ref().unwrap().node, Node::Broker(BrokerId(2)));
    assert!(matches!(sim.response(to_unknown), Some(Err(RequestError::UnknownBroker(BrokerId(42))))));
}

#[test]
fn check_version_reports_old_brokers_that_hang_up() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    sim.hang_up.push(BrokerAddress::parse("127.0.0.1:9092").unwrap());
    let id = sim.client.check_version(sim.now, Target::AnyBroker);
    sim.run();
    let v = sim.events.iter().find_map(|e| match e {
        Event::Versions { id: i, result } if *i == id => Some(result.clone()),
        _ => None,
    });
    assert_eq!(v.unwrap().unwrap().release, ReleaseGuess::OlderThan0_10);
}

#[test]
fn idle_connections_close_and_close_drains_first() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c.with_connections_max_idle(Duration::from_secs(10)));
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    assert!(sim.response(id).is_some());
    assert_eq!(sim.conns.len(), 1);
    sim.advance(Duration::from_secs(11));
    assert!(sim.conns.is_empty(), "idle connection closed");
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.client.close(sim.now);
    let late = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.run();
    assert!(sim.response(id).unwrap().is_ok(), "in-flight request finished");
    assert!(matches!(sim.response(late), Some(Err(RequestError::ClientClosed))));
    assert!(matches!(sim.events.last(), Some(Event::Closed)));
    assert!(sim.conns.is_empty());
}

#[test]
fn spurious_timeouts_do_nothing_and_time_only_moves_forward() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    let id = sim.client.request(sim.now, Target::AnyBroker, heartbeat(), None);
    sim.client.handle_timeout(sim.now);
    sim.client.handle_timeout(sim.now);
    sim.run();
    assert!(sim.response(id).unwrap().is_ok());
    assert_eq!(sim.events.len(), 1);
}

#[test]
fn responses_interleaved_across_connections_reach_their_requests() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    sim.client.refresh_metadata(sim.now, None);
    sim.run();
    sim.interleave = true;
    let mut ids = Vec::new();
    for _ in 0..5 {
        for target in [Target::Broker(BrokerId(1)), Target::Broker(BrokerId(2)), Target::Bootstrap(0)] {
            ids.push((target.clone(), sim.client.request(sim.now, target, heartbeat(), None)));
        }
    }
    sim.run();
    assert!(sim.opened.len() >= 3, "three connections: {:?}", sim.opened);
    for (target, id) in ids {
        let r = sim.response(id).unwrap().as_ref().unwrap();
        match target {
            Target::Broker(b) => assert_eq!(r.node, Node::Broker(b)),
            _ => assert_eq!(r.node, Node::Bootstrap(0)),
        }
    }
}

#[test]
fn an_expired_reconnect_backoff_is_not_a_deadline_forever() {
    // Bootstrap #0 refuses, so it backs off; the refresh goes to #1, which never answers, and
    // a controller-bound request waits for it. Once #0's backoff has passed, the next deadline
    // must lie in the future, or a driver would spin on it.
    let mut sim = Sim::new("127.0.0.1:9999,127.0.0.1:9092", |c| c);
    sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap().mute = true;
    let id = sim.client.request(sim.now, Target::Controller, heartbeat(), None);
    sim.run();
    assert_eq!(sim.opened.len(), 2, "refused by #0, then #1: {:?}", sim.opened);
    for _ in 0..3 {
        assert!(sim.advance(Duration::from_secs(60)));
        if sim.response(id).is_some() {
            break;
        }
        let next = sim.client.poll_timeout().expect("the request's deadline");
        assert!(next > sim.now, "deadline {:?} is not after now", next - sim.now);
    }
}

fn fetch(max_wait_ms: i32) -> RequestBody {
    crate::protocol::messages::FetchRequest::default().with_max_wait_ms(max_wait_ms).into()
}

#[test]
fn a_fetch_travels_on_its_own_connection_so_nothing_waits_behind_it() {
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap().hold = Some(ApiKey::Fetch);
    let parked = sim.client.request(sim.now, Target::Bootstrap(0), fetch(30_000), None);
    let beats: Vec<RequestId> =
        (0..3).map(|_| sim.client.request(sim.now, Target::Bootstrap(0), heartbeat(), None)).collect();
    sim.run();
    assert!(sim.response(parked).is_none(), "the broker holds the fetch");
    for id in beats {
        assert!(sim.response(id).unwrap().is_ok(), "heartbeats answered while the fetch waits");
    }
    let conn_of = |api| sim.carried.iter().find(|(_, a)| *a == api).map(|(c, _)| *c).unwrap();
    assert_ne!(conn_of(ApiKey::Fetch), conn_of(ApiKey::Heartbeat));
    assert_eq!(sim.opened.len(), 2, "one connection per role: {:?}", sim.opened);
}

#[test]
fn each_request_gets_its_own_deadline() {
    let timeout = Duration::from_secs(2);
    let join = crate::protocol::messages::JoinGroupRequest::default()
        .with_group_id("g".into())
        .with_rebalance_timeout_ms(10_000)
        .into();
    // One request per run: a request that times out closes its connection, failing the
    // others on it as disconnected, as the Java client does.
    let cases =
        [(heartbeat(), timeout), (fetch(5_000), timeout + Duration::from_secs(5)), (join, Duration::from_secs(15))];
    for (body, deadline) in cases {
        let mut sim = Sim::new("127.0.0.1:9092", |c| c.with_request_timeout(timeout));
        sim.brokers.get_mut(&BrokerAddress::parse("127.0.0.1:9092").unwrap()).unwrap().mute = true;
        let start = sim.now;
        let api = body.api_key();
        let id = sim.client.request(sim.now, Target::Bootstrap(0), body, None);
        sim.run();
        while sim.response(id).is_none() && sim.advance(Duration::from_secs(60)) {}
        assert!(matches!(sim.response(id), Some(Err(RequestError::Timeout(t))) if *t == deadline), "{api:?}");
        assert_eq!(sim.now - start, deadline, "{api:?} failed at its own deadline");
    }
}

#[test]
fn not_coordinator_inside_an_offset_commit_makes_the_coordinator_be_looked_up_again() {
    use crate::protocol::messages::offset_commit::response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use crate::protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
    let mut sim = Sim::new("127.0.0.1:9092", |c| c);
    sim.client.refresh_metadata(sim.now, None);
    sim.run();
    // The coordinator (broker 2) answers a commit with NOT_COORDINATOR for one partition only:
    // the response has no top-level error code.
    let stale = OffsetCommitResponse::default().with_topics(vec![OffsetCommitResponseTopic::default()
        .with_name("t".into())
        .with_partitions(vec![
            OffsetCommitResponsePartition::default().with_partition_index(0),
            OffsetCommitResponsePartition::default().with_partition_index(1).with_error_code(ErrorCode::NotCoordinator),
        ])]);
    let coordinator = BrokerAddress::parse("127.0.0.1:9093").unwrap();
    sim.brokers.get_mut(&coordinator).unwrap().answers.push((ApiKey::OffsetCommit, stale.into()));
    let lookups = |sim: &Sim| sim.carried.iter().filter(|(_, a)| *a == ApiKey::FindCoordinator).count();
    let target = Target::GroupCoordinator("g".into());
    let commit = sim.client.request(sim.now, target.clone(), OffsetCommitRequest::default().into(), None);
    sim.run();
    assert!(sim.response(commit).unwrap().is_ok());
    assert_eq!(lookups(&sim), 1);
    let beat = sim.client.request(sim.now, target, heartbeat(), None);
    sim.run();
    assert!(sim.response(beat).unwrap().is_ok());
    assert_eq!(lookups(&sim), 2, "the coordinator was looked up again");
}
