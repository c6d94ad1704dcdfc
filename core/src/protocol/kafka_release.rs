//! Which Apache Kafka release is a broker running? An answer from its ApiVersions response.
//!
//! Kafka brokers do not report their version number on the wire, but every feature release
//! changes the API version ranges they advertise: a new API here, a higher maximum there, and
//! in 4.0 raised minimums. This module keeps a table of those ranges for every feature release
//! from 0.10.0 (the first to answer ApiVersions) to 4.4, and [`infer_release`] matches a
//! broker's answer against it.
//!
//! # The table
//!
//! There are two lines of descent. ZooKeeper-mode brokers run from 0.10.0 to 3.9; KRaft-mode
//! brokers from 2.8 (early access) to 4.4, and 4.0 dropped ZooKeeper altogether. The two
//! advertise different sets on their client listeners: a ZooKeeper-mode broker lists the
//! controller-to-broker APIs (LeaderAndIsr, StopReplica, UpdateMetadata, ControlledShutdown),
//! while a KRaft broker lists only APIs in scope for the `broker` listener, and lists an API it
//! forwards to the controller (CreateTopics, CreateAcls, …) only when the controller serves it
//! too. [`advertised_by`] expands either line for a release.
//!
//! Each entry is what a broker of that release lists with its default configuration: unstable
//! versions hidden (`unstable.api.versions.enable=false`), and without GetTelemetrySubscriptions
//! and PushTelemetry (keys 71 and 72), which a broker lists only when a client-metrics plugin
//! is configured. Patch releases do not change the ranges, so `3.7` stands for 3.7.0, 3.7.1, ….
//!
//! The ranges were computed from Apache Kafka's own sources for each release: the request
//! schemas and the `ApiKeys` table at the release tags (the Java schema arrays up to 2.1, the
//! JSON message specs from 2.2, including each spec's listener scope and unstable-version flag,
//! and the broker's ApiVersions code for the forwarding, Envelope and Produce-minimum special
//! cases), and the specs inside the published `kafka-clients` jars for 3.9.0 through 4.4.0.
//! They were then checked against the per-release version table of franz-go's `kversion`
//! package, which agrees on every maximum except where noted in the step comments below.
//!
//! # Inference
//!
//! Each release has a few *markers*: API versions that no earlier release advertised in either
//! mode, chosen among the client APIs every broker of that release lists in either mode
//! (Produce, Fetch, Metadata, the group and transaction APIs; never an API the broker forwards
//! to its controller, whose range follows the controller's release during an upgrade, nor an
//! API a feature flag or plugin switches on). The guess is the
//! newest release whose markers the broker shows. Matching on markers rather than on the whole
//! set keeps the answer stable when a broker adds an optional API or a plugin, or is a close
//! re-implementation, and never depends on the order of the list.
//!
//! A KRaft broker of 3.4 advertises exactly what a KRaft 3.3 broker does (3.4's changes only
//! touched ZooKeeper-mode and controller APIs), so such a broker gets
//! [`ReleaseGuess::OneOf`]`{ oldest: 3.3, newest: 3.4 }`; in ZooKeeper mode the two differ.

use std::fmt;

use Change::{Add, Max, Min, Remove};

/// An Apache Kafka feature release, such as 2.8 or 0.10.2.
///
/// From 1.0 on a release is named by two numbers; before that by three (0.10.0, 0.10.1, 0.10.2,
/// 0.11.0), the first of which is always 0. `micro` holds that third number and is 0 for 1.0
/// and later. Patch releases (the last number of 3.7.1) are not told apart: they never change
/// the advertised API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KafkaRelease {
    /// First number: 0, 1, 2, 3 or 4 so far.
    pub major: u8,
    /// Second number.
    pub minor: u8,
    /// Third number of a pre-1.0 release name (the 2 of 0.10.2); 0 from 1.0 on.
    pub micro: u8,
}

impl KafkaRelease {
    /// A release named by two numbers, e.g. `KafkaRelease::new(3, 9)` for 3.9.
    pub const fn new(major: u8, minor: u8) -> KafkaRelease {
        KafkaRelease { major, minor, micro: 0 }
    }

    /// A pre-1.0 release named `0.minor.micro`, e.g. `KafkaRelease::pre_1_0(10, 2)` for 0.10.2.
    pub const fn pre_1_0(minor: u8, micro: u8) -> KafkaRelease {
        KafkaRelease { major: 0, minor, micro }
    }

    /// 0.10.0, the first release that answers ApiVersions.
    pub const V0_10_0: KafkaRelease = KafkaRelease::pre_1_0(10, 0);
    /// 0.10.1.
    pub const V0_10_1: KafkaRelease = KafkaRelease::pre_1_0(10, 1);
    /// 0.10.2.
    pub const V0_10_2: KafkaRelease = KafkaRelease::pre_1_0(10, 2);
    /// 0.11.0.
    pub const V0_11_0: KafkaRelease = KafkaRelease::pre_1_0(11, 0);
    /// 1.0.
    pub const V1_0: KafkaRelease = KafkaRelease::new(1, 0);
    /// 1.1.
    pub const V1_1: KafkaRelease = KafkaRelease::new(1, 1);
    /// 2.0.
    pub const V2_0: KafkaRelease = KafkaRelease::new(2, 0);
    /// 2.1.
    pub const V2_1: KafkaRelease = KafkaRelease::new(2, 1);
    /// 2.2.
    pub const V2_2: KafkaRelease = KafkaRelease::new(2, 2);
    /// 2.3.
    pub const V2_3: KafkaRelease = KafkaRelease::new(2, 3);
    /// 2.4.
    pub const V2_4: KafkaRelease = KafkaRelease::new(2, 4);
    /// 2.5.
    pub const V2_5: KafkaRelease = KafkaRelease::new(2, 5);
    /// 2.6.
    pub const V2_6: KafkaRelease = KafkaRelease::new(2, 6);
    /// 2.7.
    pub const V2_7: KafkaRelease = KafkaRelease::new(2, 7);
    /// 2.8, the first with a (preview) KRaft mode.
    pub const V2_8: KafkaRelease = KafkaRelease::new(2, 8);
    /// 3.0.
    pub const V3_0: KafkaRelease = KafkaRelease::new(3, 0);
    /// 3.1.
    pub const V3_1: KafkaRelease = KafkaRelease::new(3, 1);
    /// 3.2.
    pub const V3_2: KafkaRelease = KafkaRelease::new(3, 2);
    /// 3.3.
    pub const V3_3: KafkaRelease = KafkaRelease::new(3, 3);
    /// 3.4.
    pub const V3_4: KafkaRelease = KafkaRelease::new(3, 4);
    /// 3.5.
    pub const V3_5: KafkaRelease = KafkaRelease::new(3, 5);
    /// 3.6.
    pub const V3_6: KafkaRelease = KafkaRelease::new(3, 6);
    /// 3.7.
    pub const V3_7: KafkaRelease = KafkaRelease::new(3, 7);
    /// 3.8.
    pub const V3_8: KafkaRelease = KafkaRelease::new(3, 8);
    /// 3.9, the last with a ZooKeeper mode.
    pub const V3_9: KafkaRelease = KafkaRelease::new(3, 9);
    /// 4.0, KRaft only.
    pub const V4_0: KafkaRelease = KafkaRelease::new(4, 0);
    /// 4.1.
    pub const V4_1: KafkaRelease = KafkaRelease::new(4, 1);
    /// 4.2.
    pub const V4_2: KafkaRelease = KafkaRelease::new(4, 2);
    /// 4.3.
    pub const V4_3: KafkaRelease = KafkaRelease::new(4, 3);
    /// 4.4.
    pub const V4_4: KafkaRelease = KafkaRelease::new(4, 4);

    /// The newest release in this module's table.
    pub const NEWEST: KafkaRelease = KafkaRelease::V4_4;
}

impl fmt::Display for KafkaRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.major == 0 {
            write!(f, "0.{}.{}", self.minor, self.micro)
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// Every release in the table, oldest first.
pub const RELEASES: &[KafkaRelease] = &[
    KafkaRelease::V0_10_0,
    KafkaRelease::V0_10_1,
    KafkaRelease::V0_10_2,
    KafkaRelease::V0_11_0,
    KafkaRelease::V1_0,
    KafkaRelease::V1_1,
    KafkaRelease::V2_0,
    KafkaRelease::V2_1,
    KafkaRelease::V2_2,
    KafkaRelease::V2_3,
    KafkaRelease::V2_4,
    KafkaRelease::V2_5,
    KafkaRelease::V2_6,
    KafkaRelease::V2_7,
    KafkaRelease::V2_8,
    KafkaRelease::V3_0,
    KafkaRelease::V3_1,
    KafkaRelease::V3_2,
    KafkaRelease::V3_3,
    KafkaRelease::V3_4,
    KafkaRelease::V3_5,
    KafkaRelease::V3_6,
    KafkaRelease::V3_7,
    KafkaRelease::V3_8,
    KafkaRelease::V3_9,
    KafkaRelease::V4_0,
    KafkaRelease::V4_1,
    KafkaRelease::V4_2,
    KafkaRelease::V4_3,
    KafkaRelease::V4_4,
];

/// How a broker keeps its cluster metadata, which decides the APIs its client listeners list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterMode {
    /// Metadata in ZooKeeper: every release from 0.10.0 to 3.9.
    ZooKeeper,
    /// Metadata in a Raft quorum of controllers: 2.8 (early access) to 4.4.
    KRaft,
}

/// What [`infer_release`] concludes from a broker's advertised API versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReleaseGuess {
    /// The broker advertises what this release advertises, and nothing that marks a later one.
    Exact(KafkaRelease),
    /// The broker matches each release from `oldest` to `newest`, which advertise the same
    /// versions in the broker's mode (KRaft 3.3 and 3.4 are the one such pair).
    OneOf {
        /// The oldest release that fits.
        oldest: KafkaRelease,
        /// The newest release that fits.
        newest: KafkaRelease,
    },
    /// The broker shows everything the newest release in the table does, and more: a higher
    /// version of an API or an API key the table does not know. A release after the table's
    /// end, a development build, or a broker with unstable API versions enabled.
    AtLeast(KafkaRelease),
    /// The broker does not answer ApiVersions. Releases before 0.10.0 close the connection on
    /// an API key they do not know; the caller reports that by passing an empty list.
    OlderThan0_10,
    /// The list is not shaped like a broker listener's answer: it lacks Produce or ApiVersions
    /// (a KRaft controller listener, an ApiVersions error reply, another service), or it shows
    /// none of the markers even of 0.10.0.
    Unrecognized,
}

impl ReleaseGuess {
    /// The oldest release the broker may be running, when there is a guess.
    pub const fn oldest(&self) -> Option<KafkaRelease> {
        match *self {
            ReleaseGuess::Exact(r) | ReleaseGuess::AtLeast(r) | ReleaseGuess::OneOf { oldest: r, .. } => Some(r),
            ReleaseGuess::OlderThan0_10 | ReleaseGuess::Unrecognized => None,
        }
    }
}

impl fmt::Display for ReleaseGuess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseGuess::Exact(r) => write!(f, "Apache Kafka {r}"),
            ReleaseGuess::OneOf { oldest, newest } => {
                let next = RELEASES.iter().find(|&r| r > oldest);
                let joiner = if next == Some(newest) { "or" } else { "to" };
                write!(f, "Apache Kafka {oldest} {joiner} {newest}")
            }
            ReleaseGuess::AtLeast(r) => write!(f, "Apache Kafka {r} or newer"),
            ReleaseGuess::OlderThan0_10 => f.write_str("older than Apache Kafka 0.10"),
            ReleaseGuess::Unrecognized => f.write_str("not a recognizable Apache Kafka broker"),
        }
    }
}

/// The ranges `(api key, min version, max version)` that a broker of `release` running in
/// `mode` lists in its ApiVersions answer, sorted by key; `None` if that release has no such
/// mode (ZooKeeper after 3.9, KRaft before 2.8) or is not in the table.
pub fn advertised_by(release: KafkaRelease, mode: ClusterMode) -> Option<Vec<(i16, i16, i16)>> {
    let line = lineage(mode);
    if !line.iter().any(|step| step.release == release) {
        return None;
    }
    let mut apis: Vec<(i16, i16, i16)> = Vec::new();
    for step in line.iter().take_while(|step| step.release <= release) {
        for change in step.changes {
            apply(&mut apis, *change);
        }
    }
    Some(apis)
}

/// Guesses a broker's Apache Kafka release from the `(api key, min version, max version)`
/// triples of its ApiVersions answer, in any order.
///
/// The answer is the newest release whose markers all show (see the module documentation);
/// [`ReleaseGuess::AtLeast`] when that is the newest release in the table and the broker
/// advertises more than it; [`ReleaseGuess::OneOf`] when later releases advertise the same
/// in the broker's mode. An empty list means the broker did not answer ApiVersions and gives
/// [`ReleaseGuess::OlderThan0_10`]. A list without Produce or ApiVersions gives
/// [`ReleaseGuess::Unrecognized`].
///
/// The broker's mode is read from the list itself: ZooKeeper-mode brokers, and only they,
/// list LeaderAndIsr. The function is pure, never panics, and ignores malformed entries it
/// cannot make sense of (a negative key, a maximum below zero).
pub fn infer_release(advertised: &[(i16, i16, i16)]) -> ReleaseGuess {
    if advertised.is_empty() {
        return ReleaseGuess::OlderThan0_10;
    }
    if highest(advertised, api::PRODUCE).is_none() || highest(advertised, api::API_VERSIONS).is_none() {
        return ReleaseGuess::Unrecognized;
    }
    let mode =
        if highest(advertised, api::LEADER_AND_ISR).is_some() { ClusterMode::ZooKeeper } else { ClusterMode::KRaft };
    for (at, signature) in SIGNATURES.iter().enumerate().rev() {
        if !signature.observable(mode) || !signature.shown_by(advertised, mode) {
            continue;
        }
        let oldest = signature.release;
        let mut newest = oldest;
        for later in SIGNATURES.get(at + 1..).unwrap_or(&[]) {
            if later.observable(mode) {
                break;
            }
            newest = later.release;
        }
        if newest == KafkaRelease::NEWEST && exceeds_newest(advertised) {
            return ReleaseGuess::AtLeast(KafkaRelease::NEWEST);
        }
        return if newest == oldest { ReleaseGuess::Exact(oldest) } else { ReleaseGuess::OneOf { oldest, newest } };
    }
    ReleaseGuess::Unrecognized
}

/// The highest version the list gives for `key`, over all its entries for that key.
fn highest(advertised: &[(i16, i16, i16)], key: i16) -> Option<i16> {
    advertised.iter().filter(|&&(k, _, max)| k == key && max >= 0).map(|&(_, _, max)| max).max()
}

/// True when the list goes past the newest release in the table: an API key above every key
/// the table knows, or a version above the newest KRaft broker's maximum for that API.
fn exceeds_newest(advertised: &[(i16, i16, i16)]) -> bool {
    let known_keys = ZOOKEEPER.iter().chain(KRAFT).flat_map(|step| step.changes).map(|change| change.key());
    let top_key = known_keys.max().unwrap_or(i16::MAX);
    advertised.iter().any(|&(key, _, max)| {
        if key < 0 || max < 0 {
            return false;
        }
        if key > top_key {
            return true;
        }
        match newest_max(key) {
            Some(known) => max > known,
            None => false,
        }
    })
}

/// The newest KRaft broker's highest version of `key`, if it lists `key` at all.
fn newest_max(key: i16) -> Option<i16> {
    let mut max = None;
    for change in KRAFT.iter().flat_map(|step| step.changes) {
        match *change {
            Change::Add(k, _, m) | Change::Max(k, m) if k == key => max = Some(m),
            Change::Remove(k) if k == key => max = None,
            _ => {}
        }
    }
    max
}

fn lineage(mode: ClusterMode) -> &'static [Step] {
    match mode {
        ClusterMode::ZooKeeper => ZOOKEEPER,
        ClusterMode::KRaft => KRAFT,
    }
}

/// Applies one change to a key-sorted list. Changes that do not fit (raising an API that is
/// not there) are skipped; the tests check that the table has none.
fn apply(apis: &mut Vec<(i16, i16, i16)>, change: Change) {
    let found = apis.binary_search_by_key(&change.key(), |&(key, _, _)| key);
    match (change, found) {
        (Change::Add(key, min, max), Err(at)) => apis.insert(at, (key, min, max)),
        (Change::Add(_, min, max), Ok(at)) => {
            apis[at].1 = min;
            apis[at].2 = max;
        }
        (Change::Max(_, max), Ok(at)) => apis[at].2 = max,
        (Change::Min(_, min), Ok(at)) => apis[at].1 = min,
        (Change::Remove(_), Ok(at)) => {
            apis.remove(at);
        }
        (_, Err(_)) => {}
    }
}

/// One release's difference from the release before it in the same mode.
#[derive(Debug)]
struct Step {
    release: KafkaRelease,
    changes: &'static [Change],
}

/// One line of a [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The API appears, with versions `min..=max`: `Add(key, min, max)`.
    Add(i16, i16, i16),
    /// The API's highest version rises: `Max(key, max)`.
    Max(i16, i16),
    /// The API's lowest version changes: `Min(key, min)`.
    Min(i16, i16),
    /// The API is no longer listed: `Remove(key)`.
    Remove(i16),
}

impl Change {
    const fn key(self) -> i16 {
        match self {
            Change::Add(key, ..) | Change::Max(key, _) | Change::Min(key, _) | Change::Remove(key) => key,
        }
    }
}

/// What shows that a broker runs at least `release`.
#[derive(Debug)]
struct Signature {
    release: KafkaRelease,
    /// Markers every broker of the release shows, in either mode.
    markers: &'static [Marker],
    /// Further markers that only a ZooKeeper-mode broker of the release shows.
    zookeeper_markers: &'static [Marker],
}

impl Signature {
    /// Whether a broker in `mode` can show this release at all: a release whose markers are
    /// empty for a mode advertises, in that mode, exactly what the release before it does.
    fn observable(&self, mode: ClusterMode) -> bool {
        !self.markers.is_empty() || (mode == ClusterMode::ZooKeeper && !self.zookeeper_markers.is_empty())
    }

    fn shown_by(&self, advertised: &[(i16, i16, i16)], mode: ClusterMode) -> bool {
        let extra: &[Marker] = if mode == ClusterMode::ZooKeeper { self.zookeeper_markers } else { &[] };
        self.markers
            .iter()
            .chain(extra)
            .all(|marker| highest(advertised, marker.key).is_some_and(|max| max >= marker.max))
    }
}

/// The broker lists API `key` with a highest version of at least `max`.
#[derive(Debug, Clone, Copy)]
struct Marker {
    key: i16,
    max: i16,
}

const fn at_least(key: i16, max: i16) -> Marker {
    Marker { key, max }
}

/// Markers of each release, oldest first. Each marker is an API version that first appeared
/// in that release; see the module documentation for how they were chosen.
const SIGNATURES: &[Signature] = &[
    sig(KafkaRelease::V0_10_0, &[at_least(api::API_VERSIONS, 0), at_least(api::PRODUCE, 2), at_least(api::FETCH, 2)]),
    sig(KafkaRelease::V0_10_1, &[at_least(api::FETCH, 3), at_least(api::METADATA, 2), at_least(api::LIST_OFFSETS, 1)]),
    sig(KafkaRelease::V0_10_2, &[at_least(api::OFFSET_FETCH, 2)]),
    sig(KafkaRelease::V0_11_0, &[at_least(api::PRODUCE, 3), at_least(api::FETCH, 5)]),
    sig(KafkaRelease::V1_0, &[at_least(api::PRODUCE, 5), at_least(api::FETCH, 6)]),
    sig(KafkaRelease::V1_1, &[at_least(api::FETCH, 7)]),
    sig(KafkaRelease::V2_0, &[at_least(api::PRODUCE, 6), at_least(api::FETCH, 8)]),
    sig(KafkaRelease::V2_1, &[at_least(api::PRODUCE, 7), at_least(api::FETCH, 10)]),
    sig(KafkaRelease::V2_2, &[at_least(api::LIST_OFFSETS, 5), at_least(api::JOIN_GROUP, 4)]),
    sig(KafkaRelease::V2_3, &[at_least(api::FETCH, 11), at_least(api::METADATA, 8)]),
    sig(KafkaRelease::V2_4, &[at_least(api::PRODUCE, 8), at_least(api::METADATA, 9)]),
    sig(KafkaRelease::V2_5, &[at_least(api::OFFSET_FETCH, 7), at_least(api::JOIN_GROUP, 7)]),
    sig(KafkaRelease::V2_6, &[at_least(api::LIST_GROUPS, 4), at_least(api::DESCRIBE_CONFIGS, 3)]),
    sig(KafkaRelease::V2_7, &[at_least(api::FETCH, 12)]),
    sig(KafkaRelease::V2_8, &[at_least(api::PRODUCE, 9), at_least(api::METADATA, 11)]),
    sig(
        KafkaRelease::V3_0,
        &[at_least(api::LIST_OFFSETS, 7), at_least(api::OFFSET_FETCH, 8), at_least(api::FIND_COORDINATOR, 4)],
    ),
    sig(KafkaRelease::V3_1, &[at_least(api::FETCH, 13), at_least(api::METADATA, 12)]),
    sig(KafkaRelease::V3_2, &[at_least(api::JOIN_GROUP, 9), at_least(api::LEAVE_GROUP, 5)]),
    sig(KafkaRelease::V3_3, &[at_least(api::DESCRIBE_ACLS, 3), at_least(api::DESCRIBE_LOG_DIRS, 4)]),
    // A KRaft 3.4 broker lists what a KRaft 3.3 broker lists; only ZooKeeper mode tells them apart.
    Signature {
        release: KafkaRelease::V3_4,
        markers: &[],
        zookeeper_markers: &[at_least(api::LEADER_AND_ISR, 7), at_least(api::UPDATE_METADATA, 8)],
    },
    sig(KafkaRelease::V3_5, &[at_least(api::FETCH, 15), at_least(api::LIST_OFFSETS, 8)]),
    // 3.6's one change outside forwarded APIs. A ZooKeeper-mode broker still on an inter-broker
    // protocol older than 0.11 hides the transaction APIs, and so reads as 3.5.
    sig(KafkaRelease::V3_6, &[at_least(api::ADD_PARTITIONS_TO_TXN, 4)]),
    sig(KafkaRelease::V3_7, &[at_least(api::PRODUCE, 10), at_least(api::FETCH, 16)]),
    sig(KafkaRelease::V3_8, &[at_least(api::PRODUCE, 11), at_least(api::LIST_GROUPS, 5)]),
    sig(KafkaRelease::V3_9, &[at_least(api::FETCH, 17), at_least(api::LIST_OFFSETS, 9)]),
    sig(KafkaRelease::V4_0, &[at_least(api::PRODUCE, 12), at_least(api::METADATA, 13)]),
    sig(KafkaRelease::V4_1, &[at_least(api::PRODUCE, 13), at_least(api::FETCH, 18)]),
    sig(KafkaRelease::V4_2, &[at_least(api::LIST_OFFSETS, 11), at_least(api::OFFSET_COMMIT, 10)]),
    // 4.3's one change a client can see.
    sig(KafkaRelease::V4_3, &[at_least(api::DESCRIBE_LOG_DIRS, 5)]),
    sig(KafkaRelease::V4_4, &[at_least(api::API_VERSIONS, 5), at_least(api::TXN_OFFSET_COMMIT, 6)]),
];

const fn sig(release: KafkaRelease, markers: &'static [Marker]) -> Signature {
    Signature { release, markers, zookeeper_markers: &[] }
}

/// ZooKeeper-mode brokers, 0.10.0 to 3.9, each release as changes to the one before.
const ZOOKEEPER: &[Step] = &[
    // ControlledShutdown had no version-0 schema until 1.0, so these brokers list it as 1..=1.
    Step {
        release: KafkaRelease::V0_10_0,
        changes: &[
            Add(api::PRODUCE, 0, 2),
            Add(api::FETCH, 0, 2),
            Add(api::LIST_OFFSETS, 0, 0),
            Add(api::METADATA, 0, 1),
            Add(api::LEADER_AND_ISR, 0, 0),
            Add(api::STOP_REPLICA, 0, 0),
            Add(api::UPDATE_METADATA, 0, 2),
            Add(api::CONTROLLED_SHUTDOWN, 1, 1),
            Add(api::OFFSET_COMMIT, 0, 2),
            Add(api::OFFSET_FETCH, 0, 1),
            Add(api::FIND_COORDINATOR, 0, 0),
            Add(api::JOIN_GROUP, 0, 0),
            Add(api::HEARTBEAT, 0, 0),
            Add(api::LEAVE_GROUP, 0, 0),
            Add(api::SYNC_GROUP, 0, 0),
            Add(api::DESCRIBE_GROUPS, 0, 0),
            Add(api::LIST_GROUPS, 0, 0),
            Add(api::SASL_HANDSHAKE, 0, 0),
            Add(api::API_VERSIONS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V0_10_1,
        changes: &[
            Max(api::FETCH, 3),
            Max(api::LIST_OFFSETS, 1),
            Max(api::METADATA, 2),
            Max(api::JOIN_GROUP, 1),
            Add(api::CREATE_TOPICS, 0, 0),
            Add(api::DELETE_TOPICS, 0, 0),
        ],
    },
    // OffsetFetch v2 is in the 0.10.2.0 schemas (franz-go files it under 0.11.0).
    Step {
        release: KafkaRelease::V0_10_2,
        changes: &[Max(api::UPDATE_METADATA, 3), Max(api::OFFSET_FETCH, 2), Max(api::CREATE_TOPICS, 1)],
    },
    Step {
        release: KafkaRelease::V0_11_0,
        changes: &[
            Max(api::PRODUCE, 3),
            Max(api::FETCH, 5),
            Max(api::LIST_OFFSETS, 2),
            Max(api::METADATA, 4),
            Max(api::OFFSET_COMMIT, 3),
            Max(api::OFFSET_FETCH, 3),
            Max(api::FIND_COORDINATOR, 1),
            Max(api::JOIN_GROUP, 2),
            Max(api::HEARTBEAT, 1),
            Max(api::LEAVE_GROUP, 1),
            Max(api::SYNC_GROUP, 1),
            Max(api::DESCRIBE_GROUPS, 1),
            Max(api::LIST_GROUPS, 1),
            Max(api::API_VERSIONS, 1),
            Max(api::CREATE_TOPICS, 2),
            Max(api::DELETE_TOPICS, 1),
            Add(api::DELETE_RECORDS, 0, 0),
            Add(api::INIT_PRODUCER_ID, 0, 0),
            Add(api::OFFSET_FOR_LEADER_EPOCH, 0, 0),
            Add(api::ADD_PARTITIONS_TO_TXN, 0, 0),
            Add(api::ADD_OFFSETS_TO_TXN, 0, 0),
            Add(api::END_TXN, 0, 0),
            Add(api::WRITE_TXN_MARKERS, 0, 0),
            Add(api::TXN_OFFSET_COMMIT, 0, 0),
            Add(api::DESCRIBE_ACLS, 0, 0),
            Add(api::CREATE_ACLS, 0, 0),
            Add(api::DELETE_ACLS, 0, 0),
            Add(api::DESCRIBE_CONFIGS, 0, 0),
            Add(api::ALTER_CONFIGS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V1_0,
        changes: &[
            Max(api::PRODUCE, 5),
            Max(api::FETCH, 6),
            Max(api::METADATA, 5),
            Max(api::LEADER_AND_ISR, 1),
            Max(api::UPDATE_METADATA, 4),
            Min(api::CONTROLLED_SHUTDOWN, 0),
            Max(api::SASL_HANDSHAKE, 1),
            Add(api::ALTER_REPLICA_LOG_DIRS, 0, 0),
            Add(api::DESCRIBE_LOG_DIRS, 0, 0),
            Add(api::SASL_AUTHENTICATE, 0, 0),
            Add(api::CREATE_PARTITIONS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V1_1,
        changes: &[
            Max(api::FETCH, 7),
            Max(api::DESCRIBE_CONFIGS, 1),
            Add(api::CREATE_DELEGATION_TOKEN, 0, 0),
            Add(api::RENEW_DELEGATION_TOKEN, 0, 0),
            Add(api::EXPIRE_DELEGATION_TOKEN, 0, 0),
            Add(api::DESCRIBE_DELEGATION_TOKEN, 0, 0),
            Add(api::DELETE_GROUPS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V2_0,
        changes: &[
            Max(api::PRODUCE, 6),
            Max(api::FETCH, 8),
            Max(api::LIST_OFFSETS, 3),
            Max(api::METADATA, 6),
            Max(api::OFFSET_COMMIT, 4),
            Max(api::OFFSET_FETCH, 4),
            Max(api::FIND_COORDINATOR, 2),
            Max(api::JOIN_GROUP, 3),
            Max(api::HEARTBEAT, 2),
            Max(api::LEAVE_GROUP, 2),
            Max(api::SYNC_GROUP, 2),
            Max(api::DESCRIBE_GROUPS, 2),
            Max(api::LIST_GROUPS, 2),
            Max(api::API_VERSIONS, 2),
            Max(api::CREATE_TOPICS, 3),
            Max(api::DELETE_TOPICS, 2),
            Max(api::DELETE_RECORDS, 1),
            Max(api::INIT_PRODUCER_ID, 1),
            Max(api::OFFSET_FOR_LEADER_EPOCH, 1),
            Max(api::ADD_PARTITIONS_TO_TXN, 1),
            Max(api::ADD_OFFSETS_TO_TXN, 1),
            Max(api::END_TXN, 1),
            Max(api::TXN_OFFSET_COMMIT, 1),
            Max(api::DESCRIBE_ACLS, 1),
            Max(api::CREATE_ACLS, 1),
            Max(api::DELETE_ACLS, 1),
            Max(api::DESCRIBE_CONFIGS, 2),
            Max(api::ALTER_CONFIGS, 1),
            Max(api::ALTER_REPLICA_LOG_DIRS, 1),
            Max(api::DESCRIBE_LOG_DIRS, 1),
            Max(api::CREATE_PARTITIONS, 1),
            Max(api::CREATE_DELEGATION_TOKEN, 1),
            Max(api::RENEW_DELEGATION_TOKEN, 1),
            Max(api::EXPIRE_DELEGATION_TOKEN, 1),
            Max(api::DESCRIBE_DELEGATION_TOKEN, 1),
            Max(api::DELETE_GROUPS, 1),
        ],
    },
    Step {
        release: KafkaRelease::V2_1,
        changes: &[
            Max(api::PRODUCE, 7),
            Max(api::FETCH, 10),
            Max(api::LIST_OFFSETS, 4),
            Max(api::METADATA, 7),
            Max(api::OFFSET_COMMIT, 6),
            Max(api::OFFSET_FETCH, 5),
            Max(api::DELETE_TOPICS, 3),
            Max(api::OFFSET_FOR_LEADER_EPOCH, 2),
            Max(api::TXN_OFFSET_COMMIT, 2),
        ],
    },
    Step {
        release: KafkaRelease::V2_2,
        changes: &[
            Max(api::LIST_OFFSETS, 5),
            Max(api::LEADER_AND_ISR, 2),
            Max(api::STOP_REPLICA, 1),
            Max(api::UPDATE_METADATA, 5),
            Max(api::CONTROLLED_SHUTDOWN, 2),
            Max(api::JOIN_GROUP, 4),
            Max(api::SASL_AUTHENTICATE, 1),
            Add(api::ELECT_LEADERS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V2_3,
        changes: &[
            Max(api::FETCH, 11),
            Max(api::METADATA, 8),
            Max(api::OFFSET_COMMIT, 7),
            Max(api::JOIN_GROUP, 5),
            Max(api::HEARTBEAT, 3),
            Max(api::SYNC_GROUP, 3),
            Max(api::DESCRIBE_GROUPS, 3),
            Max(api::OFFSET_FOR_LEADER_EPOCH, 3),
            Add(api::INCREMENTAL_ALTER_CONFIGS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V2_4,
        changes: &[
            Max(api::PRODUCE, 8),
            Max(api::METADATA, 9),
            Max(api::LEADER_AND_ISR, 4),
            Max(api::STOP_REPLICA, 2),
            Max(api::UPDATE_METADATA, 6),
            Max(api::CONTROLLED_SHUTDOWN, 3),
            Max(api::OFFSET_COMMIT, 8),
            Max(api::OFFSET_FETCH, 6),
            Max(api::FIND_COORDINATOR, 3),
            Max(api::JOIN_GROUP, 6),
            Max(api::HEARTBEAT, 4),
            Max(api::LEAVE_GROUP, 4),
            Max(api::SYNC_GROUP, 4),
            Max(api::DESCRIBE_GROUPS, 5),
            Max(api::LIST_GROUPS, 3),
            Max(api::API_VERSIONS, 3),
            Max(api::CREATE_TOPICS, 5),
            Max(api::DELETE_TOPICS, 4),
            Max(api::INIT_PRODUCER_ID, 2),
            Max(api::CREATE_DELEGATION_TOKEN, 2),
            Max(api::DELETE_GROUPS, 2),
            Max(api::ELECT_LEADERS, 2),
            Max(api::INCREMENTAL_ALTER_CONFIGS, 1),
            Add(api::ALTER_PARTITION_REASSIGNMENTS, 0, 0),
            Add(api::LIST_PARTITION_REASSIGNMENTS, 0, 0),
            Add(api::OFFSET_DELETE, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V2_5,
        changes: &[
            Max(api::OFFSET_FETCH, 7),
            Max(api::JOIN_GROUP, 7),
            Max(api::SYNC_GROUP, 5),
            Max(api::INIT_PRODUCER_ID, 3),
            Max(api::TXN_OFFSET_COMMIT, 3),
            Max(api::DESCRIBE_ACLS, 2),
            Max(api::CREATE_ACLS, 2),
            Max(api::DELETE_ACLS, 2),
            Max(api::SASL_AUTHENTICATE, 2),
            Max(api::CREATE_PARTITIONS, 2),
            Max(api::RENEW_DELEGATION_TOKEN, 2),
            Max(api::EXPIRE_DELEGATION_TOKEN, 2),
            Max(api::DESCRIBE_DELEGATION_TOKEN, 2),
        ],
    },
    Step {
        release: KafkaRelease::V2_6,
        changes: &[
            Max(api::STOP_REPLICA, 3),
            Max(api::LIST_GROUPS, 4),
            Max(api::DELETE_RECORDS, 2),
            Max(api::DESCRIBE_CONFIGS, 3),
            Max(api::DESCRIBE_LOG_DIRS, 2),
            Add(api::DESCRIBE_CLIENT_QUOTAS, 0, 0),
            Add(api::ALTER_CLIENT_QUOTAS, 0, 0),
        ],
    },
    // Vote, BeginQuorumEpoch, EndQuorumEpoch and DescribeQuorum exist in 2.7 but are switched off.
    Step {
        release: KafkaRelease::V2_7,
        changes: &[
            Max(api::FETCH, 12),
            Max(api::CREATE_TOPICS, 6),
            Max(api::DELETE_TOPICS, 5),
            Max(api::INIT_PRODUCER_ID, 4),
            Max(api::ADD_PARTITIONS_TO_TXN, 2),
            Max(api::ADD_OFFSETS_TO_TXN, 2),
            Max(api::END_TXN, 2),
            Max(api::CREATE_PARTITIONS, 3),
            Add(api::DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0),
            Add(api::ALTER_USER_SCRAM_CREDENTIALS, 0, 0),
            Add(api::ALTER_PARTITION, 0, 0),
            Add(api::UPDATE_FEATURES, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V2_8,
        changes: &[
            Max(api::PRODUCE, 9),
            Max(api::LIST_OFFSETS, 6),
            Max(api::METADATA, 11),
            Max(api::LEADER_AND_ISR, 5),
            Max(api::UPDATE_METADATA, 7),
            Max(api::CREATE_TOPICS, 7),
            Max(api::DELETE_TOPICS, 6),
            Max(api::OFFSET_FOR_LEADER_EPOCH, 4),
            Max(api::ADD_PARTITIONS_TO_TXN, 3),
            Max(api::ADD_OFFSETS_TO_TXN, 3),
            Max(api::END_TXN, 3),
            Max(api::WRITE_TXN_MARKERS, 1),
            Max(api::DESCRIBE_CONFIGS, 4),
            Max(api::ALTER_CONFIGS, 2),
            Max(api::ALTER_REPLICA_LOG_DIRS, 2),
            Max(api::DESCRIBE_CLIENT_QUOTAS, 1),
            Max(api::ALTER_CLIENT_QUOTAS, 1),
            Add(api::DESCRIBE_CLUSTER, 0, 0),
            Add(api::DESCRIBE_PRODUCERS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_0,
        changes: &[
            Max(api::LIST_OFFSETS, 7),
            Max(api::OFFSET_FETCH, 8),
            Max(api::FIND_COORDINATOR, 4),
            Add(api::DESCRIBE_TRANSACTIONS, 0, 0),
            Add(api::LIST_TRANSACTIONS, 0, 0),
            Add(api::ALLOCATE_PRODUCER_IDS, 0, 0),
        ],
    },
    Step { release: KafkaRelease::V3_1, changes: &[Max(api::FETCH, 13), Max(api::METADATA, 12)] },
    Step {
        release: KafkaRelease::V3_2,
        changes: &[
            Max(api::LEADER_AND_ISR, 6),
            Max(api::JOIN_GROUP, 9),
            Max(api::LEAVE_GROUP, 5),
            Max(api::DESCRIBE_LOG_DIRS, 3),
            Max(api::ALTER_PARTITION, 1),
        ],
    },
    Step {
        release: KafkaRelease::V3_3,
        changes: &[
            Max(api::DESCRIBE_ACLS, 3),
            Max(api::CREATE_ACLS, 3),
            Max(api::DELETE_ACLS, 3),
            Max(api::DESCRIBE_LOG_DIRS, 4),
            Max(api::CREATE_DELEGATION_TOKEN, 3),
            Max(api::DESCRIBE_DELEGATION_TOKEN, 3),
            Max(api::ALTER_PARTITION, 2),
            Max(api::UPDATE_FEATURES, 1),
        ],
    },
    // ZooKeeper-to-KRaft migration support: Envelope and new controller-to-broker versions.
    Step {
        release: KafkaRelease::V3_4,
        changes: &[
            Max(api::LEADER_AND_ISR, 7),
            Max(api::STOP_REPLICA, 4),
            Max(api::UPDATE_METADATA, 8),
            Add(api::ENVELOPE, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_5,
        changes: &[Max(api::FETCH, 15), Max(api::LIST_OFFSETS, 8), Max(api::ALTER_PARTITION, 3)],
    },
    Step { release: KafkaRelease::V3_6, changes: &[Max(api::ADD_PARTITIONS_TO_TXN, 4)] },
    Step {
        release: KafkaRelease::V3_7,
        changes: &[
            Max(api::PRODUCE, 10),
            Max(api::FETCH, 16),
            Max(api::OFFSET_COMMIT, 9),
            Max(api::OFFSET_FETCH, 9),
            Max(api::DESCRIBE_CLUSTER, 1),
            Add(api::CONSUMER_GROUP_HEARTBEAT, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_8,
        changes: &[
            Max(api::PRODUCE, 11),
            Max(api::FIND_COORDINATOR, 5),
            Max(api::LIST_GROUPS, 5),
            Max(api::INIT_PRODUCER_ID, 5),
            Max(api::ADD_PARTITIONS_TO_TXN, 5),
            Max(api::ADD_OFFSETS_TO_TXN, 4),
            Max(api::END_TXN, 4),
            Max(api::TXN_OFFSET_COMMIT, 4),
            Max(api::LIST_TRANSACTIONS, 1),
            Add(api::CONSUMER_GROUP_DESCRIBE, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_9,
        changes: &[
            Max(api::FETCH, 17),
            Max(api::LIST_OFFSETS, 9),
            Max(api::FIND_COORDINATOR, 6),
            Max(api::API_VERSIONS, 4),
        ],
    },
];

/// KRaft-mode brokers, 2.8 to 4.4, each release as changes to the one before.
const KRAFT: &[Step] = &[
    // Early access. A KRaft broker lists an API it forwards to the controller only if the controller
    // serves it too; from 2.8 to 3.1 brokers also listed Envelope whenever they could forward.
    // UnregisterBroker is in the brokers' scope here (franz-go leaves it out).
    Step {
        release: KafkaRelease::V2_8,
        changes: &[
            Add(api::PRODUCE, 0, 9),
            Add(api::FETCH, 0, 12),
            Add(api::LIST_OFFSETS, 0, 6),
            Add(api::METADATA, 0, 11),
            Add(api::OFFSET_COMMIT, 0, 8),
            Add(api::OFFSET_FETCH, 0, 7),
            Add(api::FIND_COORDINATOR, 0, 3),
            Add(api::JOIN_GROUP, 0, 7),
            Add(api::HEARTBEAT, 0, 4),
            Add(api::LEAVE_GROUP, 0, 4),
            Add(api::SYNC_GROUP, 0, 5),
            Add(api::DESCRIBE_GROUPS, 0, 5),
            Add(api::LIST_GROUPS, 0, 4),
            Add(api::SASL_HANDSHAKE, 0, 1),
            Add(api::API_VERSIONS, 0, 3),
            Add(api::CREATE_TOPICS, 0, 7),
            Add(api::DELETE_TOPICS, 0, 6),
            Add(api::DELETE_RECORDS, 0, 2),
            Add(api::OFFSET_FOR_LEADER_EPOCH, 0, 4),
            Add(api::WRITE_TXN_MARKERS, 0, 1),
            Add(api::DESCRIBE_CONFIGS, 0, 4),
            Add(api::ALTER_REPLICA_LOG_DIRS, 0, 2),
            Add(api::DESCRIBE_LOG_DIRS, 0, 2),
            Add(api::SASL_AUTHENTICATE, 0, 2),
            Add(api::DELETE_GROUPS, 0, 2),
            Add(api::INCREMENTAL_ALTER_CONFIGS, 0, 1),
            Add(api::OFFSET_DELETE, 0, 0),
            Add(api::ALTER_CLIENT_QUOTAS, 0, 1),
            Add(api::DESCRIBE_QUORUM, 0, 0),
            Add(api::ENVELOPE, 0, 0),
            Add(api::DESCRIBE_CLUSTER, 0, 0),
            Add(api::DESCRIBE_PRODUCERS, 0, 0),
            Add(api::UNREGISTER_BROKER, 0, 0),
        ],
    },
    // UnregisterBroker is controller-only from 3.0 to 3.2. UpdateFeatures is forwarded but the
    // controller does not serve it, so brokers list it only from 3.2, when they handle it
    // themselves (franz-go lists it here and leaves DescribeQuorum out; by the 3.0 sources
    // DescribeQuorum is forwarded and served, so listed).
    Step {
        release: KafkaRelease::V3_0,
        changes: &[
            Max(api::LIST_OFFSETS, 7),
            Max(api::OFFSET_FETCH, 8),
            Max(api::FIND_COORDINATOR, 4),
            Add(api::INIT_PRODUCER_ID, 0, 4),
            Add(api::ADD_PARTITIONS_TO_TXN, 0, 3),
            Add(api::ADD_OFFSETS_TO_TXN, 0, 3),
            Add(api::END_TXN, 0, 3),
            Add(api::TXN_OFFSET_COMMIT, 0, 3),
            Add(api::DESCRIBE_ACLS, 0, 2),
            Add(api::CREATE_ACLS, 0, 2),
            Add(api::DELETE_ACLS, 0, 2),
            Add(api::ALTER_CONFIGS, 0, 2),
            Add(api::CREATE_PARTITIONS, 0, 3),
            Add(api::ELECT_LEADERS, 0, 2),
            Add(api::ALTER_PARTITION_REASSIGNMENTS, 0, 0),
            Add(api::LIST_PARTITION_REASSIGNMENTS, 0, 0),
            Add(api::DESCRIBE_CLIENT_QUOTAS, 0, 1),
            Remove(api::UNREGISTER_BROKER),
            Add(api::DESCRIBE_TRANSACTIONS, 0, 0),
            Add(api::LIST_TRANSACTIONS, 0, 0),
        ],
    },
    Step { release: KafkaRelease::V3_1, changes: &[Max(api::FETCH, 13), Max(api::METADATA, 12)] },
    // Envelope is no longer added by hand.
    Step {
        release: KafkaRelease::V3_2,
        changes: &[
            Max(api::JOIN_GROUP, 9),
            Max(api::LEAVE_GROUP, 5),
            Max(api::DESCRIBE_LOG_DIRS, 3),
            Add(api::UPDATE_FEATURES, 0, 0),
            Remove(api::ENVELOPE),
        ],
    },
    Step {
        release: KafkaRelease::V3_3,
        changes: &[
            Max(api::DESCRIBE_ACLS, 3),
            Max(api::CREATE_ACLS, 3),
            Max(api::DELETE_ACLS, 3),
            Max(api::DESCRIBE_LOG_DIRS, 4),
            Max(api::DESCRIBE_QUORUM, 1),
            Max(api::UPDATE_FEATURES, 1),
            Add(api::UNREGISTER_BROKER, 0, 0),
        ],
    },
    // No change a client can see: 3.4 only touched ZooKeeper-mode and controller APIs.
    Step { release: KafkaRelease::V3_4, changes: &[] },
    Step {
        release: KafkaRelease::V3_5,
        changes: &[
            Max(api::FETCH, 15),
            Max(api::LIST_OFFSETS, 8),
            Add(api::DESCRIBE_USER_SCRAM_CREDENTIALS, 0, 0),
            Add(api::ALTER_USER_SCRAM_CREDENTIALS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_6,
        changes: &[
            Max(api::ADD_PARTITIONS_TO_TXN, 4),
            Add(api::CREATE_DELEGATION_TOKEN, 0, 3),
            Add(api::RENEW_DELEGATION_TOKEN, 0, 2),
            Add(api::EXPIRE_DELEGATION_TOKEN, 0, 2),
            Add(api::DESCRIBE_DELEGATION_TOKEN, 0, 3),
        ],
    },
    Step {
        release: KafkaRelease::V3_7,
        changes: &[
            Max(api::PRODUCE, 10),
            Max(api::FETCH, 16),
            Max(api::OFFSET_COMMIT, 9),
            Max(api::OFFSET_FETCH, 9),
            Max(api::DESCRIBE_CLUSTER, 1),
            Add(api::CONSUMER_GROUP_HEARTBEAT, 0, 0),
            Add(api::LIST_CONFIG_RESOURCES, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_8,
        changes: &[
            Max(api::PRODUCE, 11),
            Max(api::FIND_COORDINATOR, 5),
            Max(api::LIST_GROUPS, 5),
            Max(api::INIT_PRODUCER_ID, 5),
            Max(api::ADD_PARTITIONS_TO_TXN, 5),
            Max(api::ADD_OFFSETS_TO_TXN, 4),
            Max(api::END_TXN, 4),
            Max(api::TXN_OFFSET_COMMIT, 4),
            Max(api::LIST_TRANSACTIONS, 1),
            Add(api::CONSUMER_GROUP_DESCRIBE, 0, 0),
            Add(api::DESCRIBE_TOPIC_PARTITIONS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V3_9,
        changes: &[
            Max(api::FETCH, 17),
            Max(api::LIST_OFFSETS, 9),
            Max(api::FIND_COORDINATOR, 6),
            Max(api::API_VERSIONS, 4),
            Max(api::DESCRIBE_QUORUM, 2),
            Add(api::ADD_RAFT_VOTER, 0, 0),
            Add(api::REMOVE_RAFT_VOTER, 0, 0),
        ],
    },
    // KIP-896 removes old versions. Produce still reports a minimum of 0 to client listeners, though
    // the broker refuses versions 0 to 2: older librdkafka releases turn compression off without v0.
    Step {
        release: KafkaRelease::V4_0,
        changes: &[
            Max(api::PRODUCE, 12),
            Min(api::FETCH, 4),
            Max(api::LIST_OFFSETS, 10),
            Min(api::LIST_OFFSETS, 1),
            Max(api::METADATA, 13),
            Min(api::OFFSET_COMMIT, 2),
            Min(api::OFFSET_FETCH, 1),
            Min(api::JOIN_GROUP, 2),
            Max(api::DESCRIBE_GROUPS, 6),
            Min(api::CREATE_TOPICS, 2),
            Min(api::DELETE_TOPICS, 1),
            Min(api::OFFSET_FOR_LEADER_EPOCH, 2),
            Max(api::END_TXN, 5),
            Min(api::WRITE_TXN_MARKERS, 1),
            Max(api::TXN_OFFSET_COMMIT, 5),
            Min(api::DESCRIBE_ACLS, 1),
            Min(api::CREATE_ACLS, 1),
            Min(api::DELETE_ACLS, 1),
            Min(api::DESCRIBE_CONFIGS, 1),
            Min(api::ALTER_REPLICA_LOG_DIRS, 1),
            Min(api::DESCRIBE_LOG_DIRS, 1),
            Min(api::CREATE_DELEGATION_TOKEN, 1),
            Min(api::RENEW_DELEGATION_TOKEN, 1),
            Min(api::EXPIRE_DELEGATION_TOKEN, 1),
            Min(api::DESCRIBE_DELEGATION_TOKEN, 1),
            Max(api::UPDATE_FEATURES, 2),
            Max(api::DESCRIBE_CLUSTER, 2),
            Max(api::CONSUMER_GROUP_HEARTBEAT, 1),
            Max(api::CONSUMER_GROUP_DESCRIBE, 1),
        ],
    },
    // JoinGroup v0 and v1 come back. The share group APIs (KIP-932) become stable at version 1.
    // OffsetCommit and OffsetFetch v10 exist but are unstable until 4.2.
    Step {
        release: KafkaRelease::V4_1,
        changes: &[
            Max(api::PRODUCE, 13),
            Max(api::FETCH, 18),
            Min(api::JOIN_GROUP, 0),
            Max(api::ALTER_PARTITION_REASSIGNMENTS, 1),
            Max(api::LIST_TRANSACTIONS, 2),
            Max(api::LIST_CONFIG_RESOURCES, 1),
            Add(api::SHARE_GROUP_HEARTBEAT, 1, 1),
            Add(api::SHARE_GROUP_DESCRIBE, 1, 1),
            Add(api::SHARE_FETCH, 1, 1),
            Add(api::SHARE_ACKNOWLEDGE, 1, 1),
            Add(api::INITIALIZE_SHARE_GROUP_STATE, 0, 0),
            Add(api::READ_SHARE_GROUP_STATE, 0, 0),
            Add(api::WRITE_SHARE_GROUP_STATE, 0, 0),
            Add(api::DELETE_SHARE_GROUP_STATE, 0, 0),
            Add(api::READ_SHARE_GROUP_STATE_SUMMARY, 0, 0),
            Add(api::DESCRIBE_SHARE_GROUP_OFFSETS, 0, 0),
            Add(api::ALTER_SHARE_GROUP_OFFSETS, 0, 0),
            Add(api::DELETE_SHARE_GROUP_OFFSETS, 0, 0),
        ],
    },
    Step {
        release: KafkaRelease::V4_2,
        changes: &[
            Max(api::LIST_OFFSETS, 11),
            Max(api::OFFSET_COMMIT, 10),
            Max(api::OFFSET_FETCH, 10),
            Max(api::WRITE_TXN_MARKERS, 2),
            Max(api::SHARE_FETCH, 2),
            Max(api::SHARE_ACKNOWLEDGE, 2),
            Max(api::ADD_RAFT_VOTER, 1),
            Max(api::WRITE_SHARE_GROUP_STATE, 1),
            Max(api::READ_SHARE_GROUP_STATE_SUMMARY, 1),
            Add(api::STREAMS_GROUP_HEARTBEAT, 0, 0),
            Add(api::STREAMS_GROUP_DESCRIBE, 0, 0),
            Max(api::DESCRIBE_SHARE_GROUP_OFFSETS, 1),
        ],
    },
    // The only change a client can see.
    Step { release: KafkaRelease::V4_3, changes: &[Max(api::DESCRIBE_LOG_DIRS, 5)] },
    Step {
        release: KafkaRelease::V4_4,
        changes: &[
            Max(api::API_VERSIONS, 5),
            Max(api::TXN_OFFSET_COMMIT, 6),
            Max(api::DELETE_GROUPS, 3),
            Max(api::STREAMS_GROUP_HEARTBEAT, 1),
            Max(api::STREAMS_GROUP_DESCRIBE, 1),
            Add(api::STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE, 0, 0),
            Add(api::UNREGISTER_CONTROLLER, 0, 0),
        ],
    },
];

/// API keys used in the table, named as Kafka names the APIs today.
mod api {
    pub(super) const PRODUCE: i16 = 0;
    pub(super) const FETCH: i16 = 1;
    pub(super) const LIST_OFFSETS: i16 = 2;
    pub(super) const METADATA: i16 = 3;
    pub(super) const LEADER_AND_ISR: i16 = 4;
    pub(super) const STOP_REPLICA: i16 = 5;
    pub(super) const UPDATE_METADATA: i16 = 6;
    pub(super) const CONTROLLED_SHUTDOWN: i16 = 7;
    pub(super) const OFFSET_COMMIT: i16 = 8;
    pub(super) const OFFSET_FETCH: i16 = 9;
    pub(super) const FIND_COORDINATOR: i16 = 10;
    pub(super) const JOIN_GROUP: i16 = 11;
    pub(super) const HEARTBEAT: i16 = 12;
    pub(super) const LEAVE_GROUP: i16 = 13;
    pub(super) const SYNC_GROUP: i16 = 14;
    pub(super) const DESCRIBE_GROUPS: i16 = 15;
    pub(super) const LIST_GROUPS: i16 = 16;
    pub(super) const SASL_HANDSHAKE: i16 = 17;
    pub(super) const API_VERSIONS: i16 = 18;
    pub(super) const CREATE_TOPICS: i16 = 19;
    pub(super) const DELETE_TOPICS: i16 = 20;
    pub(super) const DELETE_RECORDS: i16 = 21;
    pub(super) const INIT_PRODUCER_ID: i16 = 22;
    pub(super) const OFFSET_FOR_LEADER_EPOCH: i16 = 23;
    pub(super) const ADD_PARTITIONS_TO_TXN: i16 = 24;
    pub(super) const ADD_OFFSETS_TO_TXN: i16 = 25;
    pub(super) const END_TXN: i16 = 26;
    pub(super) const WRITE_TXN_MARKERS: i16 = 27;
    pub(super) const TXN_OFFSET_COMMIT: i16 = 28;
    pub(super) const DESCRIBE_ACLS: i16 = 29;
    pub(super) const CREATE_ACLS: i16 = 30;
    pub(super) const DELETE_ACLS: i16 = 31;
    pub(super) const DESCRIBE_CONFIGS: i16 = 32;
    pub(super) const ALTER_CONFIGS: i16 = 33;
    pub(super) const ALTER_REPLICA_LOG_DIRS: i16 = 34;
    pub(super) const DESCRIBE_LOG_DIRS: i16 = 35;
    pub(super) const SASL_AUTHENTICATE: i16 = 36;
    pub(super) const CREATE_PARTITIONS: i16 = 37;
    pub(super) const CREATE_DELEGATION_TOKEN: i16 = 38;
    pub(super) const RENEW_DELEGATION_TOKEN: i16 = 39;
    pub(super) const EXPIRE_DELEGATION_TOKEN: i16 = 40;
    pub(super) const DESCRIBE_DELEGATION_TOKEN: i16 = 41;
    pub(super) const DELETE_GROUPS: i16 = 42;
    pub(super) const ELECT_LEADERS: i16 = 43;
    pub(super) const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
    pub(super) const ALTER_PARTITION_REASSIGNMENTS: i16 = 45;
    pub(super) const LIST_PARTITION_REASSIGNMENTS: i16 = 46;
    pub(super) const OFFSET_DELETE: i16 = 47;
    pub(super) const DESCRIBE_CLIENT_QUOTAS: i16 = 48;
    pub(super) const ALTER_CLIENT_QUOTAS: i16 = 49;
    pub(super) const DESCRIBE_USER_SCRAM_CREDENTIALS: i16 = 50;
    pub(super) const ALTER_USER_SCRAM_CREDENTIALS: i16 = 51;
    pub(super) const DESCRIBE_QUORUM: i16 = 55;
    pub(super) const ALTER_PARTITION: i16 = 56;
    pub(super) const UPDATE_FEATURES: i16 = 57;
    pub(super) const ENVELOPE: i16 = 58;
    pub(super) const DESCRIBE_CLUSTER: i16 = 60;
    pub(super) const DESCRIBE_PRODUCERS: i16 = 61;
    pub(super) const UNREGISTER_BROKER: i16 = 64;
    pub(super) const DESCRIBE_TRANSACTIONS: i16 = 65;
    pub(super) const LIST_TRANSACTIONS: i16 = 66;
    pub(super) const ALLOCATE_PRODUCER_IDS: i16 = 67;
    pub(super) const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
    pub(super) const CONSUMER_GROUP_DESCRIBE: i16 = 69;
    pub(super) const LIST_CONFIG_RESOURCES: i16 = 74;
    pub(super) const DESCRIBE_TOPIC_PARTITIONS: i16 = 75;
    pub(super) const SHARE_GROUP_HEARTBEAT: i16 = 76;
    pub(super) const SHARE_GROUP_DESCRIBE: i16 = 77;
    pub(super) const SHARE_FETCH: i16 = 78;
    pub(super) const SHARE_ACKNOWLEDGE: i16 = 79;
    pub(super) const ADD_RAFT_VOTER: i16 = 80;
    pub(super) const REMOVE_RAFT_VOTER: i16 = 81;
    pub(super) const INITIALIZE_SHARE_GROUP_STATE: i16 = 83;
    pub(super) const READ_SHARE_GROUP_STATE: i16 = 84;
    pub(super) const WRITE_SHARE_GROUP_STATE: i16 = 85;
    pub(super) const DELETE_SHARE_GROUP_STATE: i16 = 86;
    pub(super) const READ_SHARE_GROUP_STATE_SUMMARY: i16 = 87;
    pub(super) const STREAMS_GROUP_HEARTBEAT: i16 = 88;
    pub(super) const STREAMS_GROUP_DESCRIBE: i16 = 89;
    pub(super) const DESCRIBE_SHARE_GROUP_OFFSETS: i16 = 90;
    pub(super) const ALTER_SHARE_GROUP_OFFSETS: i16 = 91;
    pub(super) const DELETE_SHARE_GROUP_OFFSETS: i16 = 92;
    pub(super) const STREAMS_GROUP_TOPOLOGY_DESCRIPTION_UPDATE: i16 = 93;
    pub(super) const UNREGISTER_CONTROLLER: i16 = 94;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::ApiKey;

    const MODES: [ClusterMode; 2] = [ClusterMode::ZooKeeper, ClusterMode::KRaft];

    type Entry = (KafkaRelease, ClusterMode, Vec<(i16, i16, i16)>);

    /// Every (release, mode) pair the table has, with its advertised set.
    fn entries() -> Vec<Entry> {
        let mut out = Vec::new();
        for &release in RELEASES {
            for mode in MODES {
                if let Some(set) = advertised_by(release, mode) {
                    out.push((release, mode, set));
                }
            }
        }
        out
    }

    fn find(set: &[(i16, i16, i16)], key: i16) -> Option<(i16, i16)> {
        set.iter().find(|e| e.0 == key).map(|&(_, min, max)| (min, max))
    }

    fn without(set: &[(i16, i16, i16)], keys: &[i16]) -> Vec<(i16, i16, i16)> {
        set.iter().copied().filter(|e| !keys.contains(&e.0)).collect()
    }

    #[test]
    fn releases_are_sorted_and_covered() {
        assert!(RELEASES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(RELEASES.len(), 30);
        assert_eq!(RELEASES.last(), Some(&KafkaRelease::NEWEST));
        let signed: Vec<KafkaRelease> = SIGNATURES.iter().map(|s| s.release).collect();
        assert_eq!(signed, RELEASES);
        for line in [ZOOKEEPER, KRAFT] {
            assert!(line.windows(2).all(|w| w[0].release < w[1].release));
        }
        let zk: Vec<_> = ZOOKEEPER.iter().map(|s| s.release).collect();
        let kraft: Vec<_> = KRAFT.iter().map(|s| s.release).collect();
        assert_eq!(zk, RELEASES[..=RELEASES.iter().position(|&r| r == KafkaRelease::V3_9).unwrap()]);
        assert_eq!(kraft, RELEASES[RELEASES.iter().position(|&r| r == KafkaRelease::V2_8).unwrap()..]);
        for &release in RELEASES {
            assert!(MODES.iter().any(|&m| advertised_by(release, m).is_some()), "{release}");
        }
        assert_eq!(advertised_by(KafkaRelease::V4_0, ClusterMode::ZooKeeper), None);
        assert_eq!(advertised_by(KafkaRelease::V2_7, ClusterMode::KRaft), None);
        assert_eq!(advertised_by(KafkaRelease::new(9, 9), ClusterMode::KRaft), None);
    }

    /// Every change fits the set it applies to, so `apply` never skips one.
    #[test]
    fn table_changes_are_well_formed() {
        for line in [ZOOKEEPER, KRAFT] {
            let mut apis: Vec<(i16, i16, i16)> = Vec::new();
            for step in line {
                let mut seen = Vec::new();
                for &change in step.changes {
                    assert!(!seen.contains(&change), "{} repeats {change:?}", step.release);
                    seen.push(change);
                    let now = find(&apis, change.key());
                    match change {
                        Change::Add(_, min, max) => {
                            assert!(now.is_none(), "{} adds a listed API: {change:?}", step.release);
                            assert!(0 <= min && min <= max, "{change:?}");
                        }
                        Change::Max(_, max) => {
                            let (_, old) = now.unwrap_or_else(|| panic!("{} raises a missing API", step.release));
                            assert!(max > old, "{} lowers or keeps a maximum: {change:?}", step.release);
                        }
                        Change::Min(_, min) => {
                            let (old, max) = now.unwrap_or_else(|| panic!("{} moves a missing API", step.release));
                            assert!(min != old && (0..=max).contains(&min), "{}: {change:?}", step.release);
                        }
                        Change::Remove(_) => assert!(now.is_some(), "{} removes a missing API", step.release),
                    }
                    apply(&mut apis, change);
                }
            }
        }
        for (release, mode, set) in entries() {
            assert!(set.windows(2).all(|w| w[0].0 < w[1].0), "{release} {mode:?} not sorted");
            assert!(set.iter().all(|&(k, min, max)| k >= 0 && 0 <= min && min <= max), "{release} {mode:?}");
        }
    }

    /// The table agrees with the generated protocol (Kafka 4.4's specs): every key it lists is a
    /// known API, except the controller-to-broker APIs that 4.0 deleted, and no release goes past
    /// the versions the specs define.
    #[test]
    fn table_agrees_with_generated_messages() {
        let gone_in_4_0 = [api::LEADER_AND_ISR, api::STOP_REPLICA, api::UPDATE_METADATA, api::CONTROLLED_SHUTDOWN];
        for (release, mode, set) in entries() {
            for &(key, _, max) in &set {
                if gone_in_4_0.contains(&key) {
                    assert_eq!(mode, ClusterMode::ZooKeeper);
                    continue;
                }
                let api = ApiKey::from_i16(key).unwrap_or_else(|| panic!("{release}: unknown key {key}"));
                assert!(max <= api.versions().max, "{release} {mode:?}: {} v{max}", api.name());
            }
        }
        // The newest release matches the specs exactly, minimums aside (4.x still reports
        // Produce from 0) and minus the APIs a broker does not list. With the crate's
        // `unstable-versions` feature the specs also include versions a broker hides.
        for &(key, min, max) in &advertised_by(KafkaRelease::NEWEST, ClusterMode::KRaft).unwrap() {
            let range = ApiKey::from_i16(key).unwrap().versions();
            if cfg!(feature = "unstable-versions") {
                assert!(max <= range.max, "key {key}");
            } else {
                assert_eq!(max, range.max, "key {key}");
            }
            if key != api::PRODUCE {
                assert_eq!(min, range.min, "key {key}");
            }
        }
    }

    /// A few ranges checked by hand against the sources.
    #[test]
    fn spot_checks() {
        let zk = |r| advertised_by(r, ClusterMode::ZooKeeper).unwrap();
        let kraft = |r| advertised_by(r, ClusterMode::KRaft).unwrap();
        assert_eq!(find(&zk(KafkaRelease::V0_10_0), api::PRODUCE), Some((0, 2)));
        assert_eq!(find(&zk(KafkaRelease::V0_10_0), api::CONTROLLED_SHUTDOWN), Some((1, 1)));
        assert_eq!(zk(KafkaRelease::V0_10_0).len(), 19);
        assert_eq!(find(&zk(KafkaRelease::V1_0), api::CONTROLLED_SHUTDOWN), Some((0, 1)));
        assert_eq!(find(&zk(KafkaRelease::V2_0), api::FETCH), Some((0, 8)));
        assert_eq!(find(&zk(KafkaRelease::V2_8), api::METADATA), Some((0, 11)));
        assert_eq!(find(&zk(KafkaRelease::V3_9), api::ENVELOPE), Some((0, 0)));
        assert_eq!(find(&kraft(KafkaRelease::V2_8), api::ENVELOPE), Some((0, 0)));
        assert_eq!(find(&kraft(KafkaRelease::V3_2), api::ENVELOPE), None);
        assert_eq!(find(&kraft(KafkaRelease::V3_9), api::LEADER_AND_ISR), None);
        assert_eq!(find(&kraft(KafkaRelease::V3_9), api::INIT_PRODUCER_ID), Some((0, 5)));
        assert_eq!(find(&kraft(KafkaRelease::V4_0), api::PRODUCE), Some((0, 12)));
        assert_eq!(find(&kraft(KafkaRelease::V4_0), api::FETCH), Some((4, 17)));
        assert_eq!(find(&kraft(KafkaRelease::V4_0), api::JOIN_GROUP), Some((2, 9)));
        assert_eq!(find(&kraft(KafkaRelease::V4_1), api::JOIN_GROUP), Some((0, 9)));
        assert_eq!(find(&kraft(KafkaRelease::V4_1), api::OFFSET_COMMIT), Some((2, 9)));
        assert_eq!(find(&kraft(KafkaRelease::V4_2), api::OFFSET_COMMIT), Some((2, 10)));
        assert_eq!(find(&kraft(KafkaRelease::V4_3), api::DESCRIBE_LOG_DIRS), Some((1, 5)));
        assert_eq!(find(&kraft(KafkaRelease::V4_4), api::API_VERSIONS), Some((0, 5)));
        // KRaft 3.3 and 3.4 advertise the same; ZooKeeper 3.3 and 3.4 do not.
        assert_eq!(kraft(KafkaRelease::V3_3), kraft(KafkaRelease::V3_4));
        assert_ne!(zk(KafkaRelease::V3_3), zk(KafkaRelease::V3_4));
    }

    fn expected(release: KafkaRelease, mode: ClusterMode) -> ReleaseGuess {
        let twins = [KafkaRelease::V3_3, KafkaRelease::V3_4];
        if mode == ClusterMode::KRaft && twins.contains(&release) {
            ReleaseGuess::OneOf { oldest: KafkaRelease::V3_3, newest: KafkaRelease::V3_4 }
        } else {
            ReleaseGuess::Exact(release)
        }
    }

    #[test]
    fn every_release_is_recognized_in_every_mode() {
        for (release, mode, set) in entries() {
            assert_eq!(infer_release(&set), expected(release, mode), "{release} {mode:?}");
        }
    }

    /// A marker holds for every broker of its release and for no broker of an older one.
    #[test]
    fn markers_are_first_appearances() {
        let all = entries();
        for signature in SIGNATURES {
            for marker in signature.markers.iter().chain(signature.zookeeper_markers) {
                for (release, mode, set) in &all {
                    let shows = find(set, marker.key).is_some_and(|(_, max)| max >= marker.max);
                    let applies =
                        signature.markers.iter().any(|m| std::ptr::eq(m, marker)) || *mode == ClusterMode::ZooKeeper;
                    if *release < signature.release {
                        assert!(!shows, "{}: {marker:?} already in {release} {mode:?}", signature.release);
                    } else if *release == signature.release && applies {
                        assert!(shows, "{}: {marker:?} missing in {mode:?}", signature.release);
                    }
                }
            }
        }
    }

    /// Markers use only APIs every broker of the release lists in both modes, never one the
    /// broker forwards to its controller.
    #[test]
    fn markers_avoid_forwarded_and_optional_apis() {
        let forwarded = [
            api::CREATE_TOPICS,
            api::DELETE_TOPICS,
            api::CREATE_ACLS,
            api::DELETE_ACLS,
            api::ALTER_CONFIGS,
            api::CREATE_PARTITIONS,
            api::CREATE_DELEGATION_TOKEN,
            api::RENEW_DELEGATION_TOKEN,
            api::EXPIRE_DELEGATION_TOKEN,
            api::ELECT_LEADERS,
            api::INCREMENTAL_ALTER_CONFIGS,
            api::ALTER_PARTITION_REASSIGNMENTS,
            api::LIST_PARTITION_REASSIGNMENTS,
            api::ALTER_CLIENT_QUOTAS,
            api::ALTER_USER_SCRAM_CREDENTIALS,
            api::DESCRIBE_QUORUM,
            api::UPDATE_FEATURES,
            api::UNREGISTER_BROKER,
            api::ADD_RAFT_VOTER,
            api::REMOVE_RAFT_VOTER,
            api::UNREGISTER_CONTROLLER,
        ];
        for signature in SIGNATURES {
            for marker in signature.markers {
                assert!(!forwarded.contains(&marker.key), "{}: {marker:?}", signature.release);
                assert!(marker.key < 76, "{}: {marker:?} is a share/streams group API", signature.release);
            }
        }
    }

    #[test]
    fn newer_than_the_table() {
        let newest = advertised_by(KafkaRelease::NEWEST, ClusterMode::KRaft).unwrap();
        let mut unknown_key = newest.clone();
        unknown_key.push((95, 0, 0));
        assert_eq!(infer_release(&unknown_key), ReleaseGuess::AtLeast(KafkaRelease::V4_4));
        let higher: Vec<_> = newest
            .iter()
            .map(|&(k, min, max)| if k == api::FETCH { (k, min, max + 1) } else { (k, min, max) })
            .collect();
        assert_eq!(infer_release(&higher), ReleaseGuess::AtLeast(KafkaRelease::V4_4));
        // A raised minimum alone is not "newer".
        let raised: Vec<_> = newest.iter().map(|&(k, _, max)| (k, max, max)).collect();
        assert_eq!(infer_release(&raised), ReleaseGuess::Exact(KafkaRelease::V4_4));
        // An older broker with an extra API (a vendor extension) keeps its exact answer.
        let mut vendor = advertised_by(KafkaRelease::V3_7, ClusterMode::KRaft).unwrap();
        vendor.push((1000, 0, 3));
        assert_eq!(infer_release(&vendor), ReleaseGuess::Exact(KafkaRelease::V3_7));
    }

    #[test]
    fn empty_and_malformed_lists() {
        assert_eq!(infer_release(&[]), ReleaseGuess::OlderThan0_10);
        // An ApiVersions error reply that lists only ApiVersions itself.
        assert_eq!(infer_release(&[(api::API_VERSIONS, 0, 3)]), ReleaseGuess::Unrecognized);
        // Produce v0 and v1 only: a 0.9-era shape, not a broker that answers ApiVersions properly.
        assert_eq!(infer_release(&[(api::PRODUCE, 0, 1), (api::API_VERSIONS, 0, 0)]), ReleaseGuess::Unrecognized);
        assert_eq!(infer_release(&[(-1, -5, -1), (i16::MIN, i16::MAX, i16::MIN)]), ReleaseGuess::Unrecognized);
        let mut odd = advertised_by(KafkaRelease::V2_4, ClusterMode::ZooKeeper).unwrap();
        odd.extend([(-3, 0, 99), (api::FETCH, 5, 2), (i16::MAX, i16::MAX, i16::MAX)]);
        // Key i16::MAX is unknown, but 2.4 is not the newest release, so the answer stays 2.4.
        assert_eq!(infer_release(&odd), ReleaseGuess::Exact(KafkaRelease::V2_4));
    }

    /// A KRaft controller listener lacks Produce, so it is not mistaken for an old broker.
    #[test]
    fn controller_listener_is_unrecognized() {
        let controller =
            [(1, 4, 18), (7, 0, 3), (17, 0, 1), (18, 0, 4), (52, 0, 2), (53, 0, 1), (62, 0, 4), (63, 0, 1)];
        assert_eq!(infer_release(&controller), ReleaseGuess::Unrecognized);
    }

    #[test]
    fn order_duplicates_and_optional_apis_do_not_matter() {
        let telemetry = [(71, 0, 0), (72, 0, 0)];
        let forwarded = [
            api::CREATE_TOPICS,
            api::DELETE_TOPICS,
            api::CREATE_ACLS,
            api::DELETE_ACLS,
            api::ALTER_CONFIGS,
            api::CREATE_PARTITIONS,
            api::ELECT_LEADERS,
            api::INCREMENTAL_ALTER_CONFIGS,
            api::ALTER_PARTITION_REASSIGNMENTS,
            api::LIST_PARTITION_REASSIGNMENTS,
            api::ALTER_CLIENT_QUOTAS,
            api::DESCRIBE_QUORUM,
            api::UPDATE_FEATURES,
            api::UNREGISTER_BROKER,
            api::ENVELOPE,
        ];
        let share_and_streams: Vec<i16> = (76..=94).collect();
        for (release, mode, set) in entries() {
            let want = expected(release, mode);
            let mut reversed = set.clone();
            reversed.reverse();
            assert_eq!(infer_release(&reversed), want, "{release} {mode:?} reversed");
            let mut doubled = set.clone();
            doubled.extend(set.iter().map(|&(k, _, _)| (k, 0, 0)));
            assert_eq!(infer_release(&doubled), want, "{release} {mode:?} with duplicates");
            if release >= KafkaRelease::V3_7 {
                let mut with_telemetry = set.clone();
                with_telemetry.extend(telemetry);
                assert_eq!(infer_release(&with_telemetry), want, "{release} {mode:?} with telemetry");
            }
            assert_eq!(infer_release(&without(&set, &forwarded)), want, "{release} {mode:?} without forwarded APIs");
            assert_eq!(infer_release(&without(&set, &share_and_streams)), want, "{release} {mode:?} w/o share");
        }
    }

    /// Pseudo-random lists, including ones grown from real answers: never a panic, and the same
    /// answer twice.
    #[test]
    fn arbitrary_lists_never_panic() {
        let mut state: u64 = 0x5eed_cafe;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        let bases: Vec<Vec<(i16, i16, i16)>> = entries().into_iter().map(|e| e.2).collect();
        for round in 0..2000 {
            let mut list = if round % 2 == 0 { bases[next() as usize % bases.len()].clone() } else { Vec::new() };
            for _ in 0..next() % 12 {
                let pick = |v: u32| match v % 4 {
                    0 => (v % 100) as i16,
                    1 => (v % 20) as i16 - 3,
                    2 => i16::MAX,
                    _ => i16::MIN,
                };
                let entry = (pick(next()), pick(next()), pick(next()));
                if list.is_empty() || next() % 3 == 0 {
                    list.push(entry);
                } else {
                    let at = next() as usize % list.len();
                    list[at] = entry;
                }
            }
            let first = infer_release(&list);
            assert_eq!(first, infer_release(&list));
            let _ = first.to_string();
        }
    }

    #[test]
    fn display() {
        assert_eq!(KafkaRelease::V0_10_2.to_string(), "0.10.2");
        assert_eq!(KafkaRelease::V2_8.to_string(), "2.8");
        assert_eq!(ReleaseGuess::Exact(KafkaRelease::V4_3).to_string(), "Apache Kafka 4.3");
        assert_eq!(ReleaseGuess::AtLeast(KafkaRelease::V4_4).to_string(), "Apache Kafka 4.4 or newer");
        assert_eq!(ReleaseGuess::OlderThan0_10.to_string(), "older than Apache Kafka 0.10");
        let twins = ReleaseGuess::OneOf { oldest: KafkaRelease::V3_3, newest: KafkaRelease::V3_4 };
        assert_eq!(twins.to_string(), "Apache Kafka 3.3 or 3.4");
        let wide = ReleaseGuess::OneOf { oldest: KafkaRelease::V3_3, newest: KafkaRelease::V3_5 };
        assert_eq!(wide.to_string(), "Apache Kafka 3.3 to 3.5");
        assert_eq!(ReleaseGuess::Exact(KafkaRelease::V0_11_0).to_string(), "Apache Kafka 0.11.0");
        assert_eq!(twins.oldest(), Some(KafkaRelease::V3_3));
        assert_eq!(ReleaseGuess::Unrecognized.oldest(), None);
    }
}
