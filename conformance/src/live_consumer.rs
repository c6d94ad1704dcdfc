//! Consumer scenarios of the live suite against real Kafka, written once and run by every
//! runtime crate: group churn (a member joins, one leaves, one is killed) under every classic
//! assignor and under KIP-848; a restart that resumes at the committed offsets; records from
//! the Java producer in every codec; a group shared with Java's consumer; read_committed
//! over aborted Java transactions; and a member that stops polling past
//! `max.poll.interval.ms`.
//!
//! A killed member runs in a child process ([`LiveRuntime::member_command`], entering
//! [`member_main`]) so it can be SIGKILLed: its sockets close without a LeaveGroup, as when an
//! application crashes. Members report `assigned P,P,..` and `rec P O` lines, the same format
//! as the Java `group-consume` mode, so a Java member is watched the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use sansa::consumer::{OffsetSpec, TopicPartition};
use sansa::producer::ProducerRecord;
use sansa::protocol::records::TimestampType;
use sansa::Config;

use crate::live::{bootstrap, create_topic, unique_topic, LiveClient, LiveRuntime};

/// How long a group may take to settle after a change: a killed member is noticed after its
/// session timeout (6 s classic, the brokers' `group.consumer.session.timeout.ms` under
/// KIP-848: test.sh sets 6 s, Kafka's default is 45 s).
const SETTLE: Duration = Duration::from_secs(75);

/// Settings every member of the suite shares: the brokers' shortest classic session, commits
/// made by the member after it recorded what it read (auto-commit could commit records a
/// killed member never got to report).
const MEMBER_PROPS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("enable.auto.commit", "false"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "1000"),
    ("max.poll.interval.ms", "20000"),
    ("fetch.max.wait.ms", "200"),
];

fn config(props: &[(&str, &str)]) -> Config {
    let bootstrap = bootstrap();
    let mut all: Vec<(&str, &str)> = vec![("bootstrap.servers", &bootstrap), ("client.id", "sansa-live-consumer")];
    all.extend_from_slice(props);
    Config::from_properties(all).expect("consumer properties")
}

/// A group's protocol and assignor, as the scenarios name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A classic group with this assignor (`range`, `roundrobin`, `sticky`, `cooperative-sticky`).
    Classic(&'static str),
    /// KIP-848 (`group.protocol=consumer`), the coordinator's default assignor.
    Consumer,
}

impl GroupKind {
    /// Every kind the issue asks for.
    pub const ALL: [GroupKind; 5] = [
        GroupKind::Classic("range"),
        GroupKind::Classic("roundrobin"),
        GroupKind::Classic("sticky"),
        GroupKind::Classic("cooperative-sticky"),
        GroupKind::Consumer,
    ];

    /// The kinds a runtime checks when another has run [`GroupKind::ALL`]: one classic
    /// incremental assignor and KIP-848, whose client paths differ most; every kind when
    /// `SANSA_LIVE_CONSUMER_FULL` is set. The assignors themselves are runtime-independent.
    pub fn sample() -> &'static [GroupKind] {
        if std::env::var_os("SANSA_LIVE_CONSUMER_FULL").is_some() {
            &GroupKind::ALL
        } else {
            &[GroupKind::Classic("cooperative-sticky"), GroupKind::Consumer]
        }
    }

    fn props(self) -> Vec<(&'static str, &'static str)> {
        match self {
            GroupKind::Classic(assignor) => {
                vec![("group.protocol", "classic"), ("partition.assignment.strategy", assignor)]
            }
            GroupKind::Consumer => vec![("group.protocol", "consumer")],
        }
    }

    fn name(self) -> &'static str {
        match self {
            GroupKind::Classic(assignor) => assignor,
            GroupKind::Consumer => "consumer",
        }
    }
}

/// What a member has reported so far.
#[derive(Debug, Default)]
struct Seen {
    assigned: BTreeSet<i32>,
    /// Every assignment in turn, with how many records had been read when it came.
    history: Vec<(usize, BTreeSet<i32>)>,
    consumed: Vec<(i32, i64)>,
    errors: Vec<String>,
    ended: bool,
}

impl Seen {
    /// Takes one report line (`assigned P,P,..` or `rec P O`); other lines are ignored (the
    /// test harness and the JVM print their own).
    fn line(&mut self, line: &str) {
        if let Some(list) = line.strip_prefix("assigned ") {
            self.assigned = list.split(',').filter(|s| !s.is_empty()).filter_map(|s| s.trim().parse().ok()).collect();
            self.history.push((self.consumed.len(), self.assigned.clone()));
        } else if let Some(rest) = line.strip_prefix("rec ") {
            let mut f = rest.split_whitespace().map(|s| s.parse::<i64>());
            if let (Some(Ok(p)), Some(Ok(o))) = (f.next(), f.next()) {
                self.consumed.push((p as i32, o));
            }
        } else if let Some(e) = line.strip_prefix("error ") {
            self.errors.push(e.to_string());
        }
    }
}

/// A group member: a thread of this process, a child process of this runtime (killable), or
/// Java's consumer.
struct Member<'scope> {
    name: String,
    seen: Arc<Mutex<Seen>>,
    kind: MemberKind<'scope>,
}

enum MemberKind<'scope> {
    Thread { stop: Arc<AtomicBool>, paused: Arc<AtomicBool>, thread: Option<ScopedJoinHandle<'scope, ()>> },
    Process { child: Child, stdin: Option<ChildStdin>, reader: Option<std::thread::JoinHandle<()>> },
}

/// Runs a member on `client` until `stop`: polls, reports what it read and its assignment,
/// then commits what it reported. Not polling while `paused`.
fn member_loop(
    client: &impl LiveClient,
    topic: &str,
    stop: &AtomicBool,
    paused: &AtomicBool,
    listen: bool,
    mut report: impl FnMut(&str),
) {
    // With a listener, revoked partitions wait for the application's acknowledgement: it
    // commits them first, as a Java ConsumerRebalanceListener does.
    let listener = match listen.then(|| client.handle().rebalances_blocking()) {
        Some(Err(e)) => return report(&format!("error rebalances: {e}")),
        Some(Ok(l)) => Some(l),
        None => None,
    };
    if let Err(e) = client.handle().subscribe_blocking(vec![topic.into()]) {
        report(&format!("error subscribe: {e}"));
        return;
    }
    let mut assigned: Option<BTreeSet<i32>> = None;
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        while let Some(event) = listener.as_ref().and_then(|l| l.try_next()) {
            if !event.revoked.is_empty() {
                if let Err(e) = client.handle().commit_blocking(None) {
                    report(&format!("error commit on revoke: {e}"));
                }
            }
            event.ack();
        }
        match client.poll(500, Duration::from_millis(100)) {
            Ok(records) => {
                for r in &records {
                    report(&format!("rec {} {}", r.partition, r.offset));
                }
                if !records.is_empty() {
                    // A commit refused mid-rebalance only means those records are read again.
                    if let Err(e) = client.handle().commit_blocking(None) {
                        eprintln!("commit refused: {e}");
                    }
                }
            }
            Err(e) => report(&format!("error poll: {e}")),
        }
        let now: BTreeSet<i32> = match client.handle().assignment_blocking() {
            Ok(a) => a.into_iter().map(|tp| tp.partition).collect(),
            Err(e) => {
                report(&format!("error assignment: {e}"));
                continue;
            }
        };
        if assigned.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            report(&format!("assigned {}", list.join(",")));
            assigned = Some(now);
        }
    }
    client.close();
}

/// The child-process side of a killable member: when `SANSA_LIVE_MEMBER` names a group, joins
/// it on `rt` for the topic `SANSA_LIVE_MEMBER_TOPIC` with the `;`-separated `key=value`
/// properties of `SANSA_LIVE_MEMBER_PROPS`, reports on stdout, and leaves when stdin closes.
/// Does nothing otherwise (the test that calls it runs in the suite too).
pub fn member_main<R: LiveRuntime>(rt: &R) {
    let Ok(group) = std::env::var("SANSA_LIVE_MEMBER") else { return };
    let topic = std::env::var("SANSA_LIVE_MEMBER_TOPIC").expect("SANSA_LIVE_MEMBER_TOPIC");
    let props = std::env::var("SANSA_LIVE_MEMBER_PROPS").unwrap_or_default();
    let mut all: Vec<(&str, &str)> = vec![("group.id", &group)];
    all.extend(props.split(';').filter_map(|kv| kv.split_once('=')));
    let client = rt.connect(config(&all));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        watcher.store(true, Ordering::SeqCst);
    });
    let out = std::io::stdout();
    // The test harness has printed `test live_consumer_member ... ` without a line end: the
    // first report must not be glued to it.
    let _ = writeln!(out.lock());
    member_loop(&client, &topic, &stop, &AtomicBool::new(false), false, |line| {
        let mut out = out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
}

impl<'scope> Member<'scope> {
    /// A member on a thread of this process; with `listen`, it takes the rebalance events.
    fn thread<'env, R: LiveRuntime + Sync>(
        scope: &'scope Scope<'scope, 'env>,
        rt: &'env R,
        name: &str,
        topic: &str,
        props: Vec<(&str, &str)>,
        listen: bool,
    ) -> Self {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (stop, paused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let client = rt.connect(config(&props));
        let (s, st, pa, topic) = (Arc::clone(&seen), Arc::clone(&stop), Arc::clone(&paused), topic.to_string());
        let thread = scope.spawn(move || {
            member_loop(&client, &topic, &st, &pa, listen, |line| s.lock().unwrap().line(line));
            s.lock().unwrap().ended = true;
        });
        Member { name: name.into(), seen, kind: MemberKind::Thread { stop, paused, thread: Some(thread) } }
    }

    /// A member in a child process whose stdout carries its reports.
    fn process(name: &str, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting member {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let s = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                s.lock().unwrap().line(&line);
            }
            s.lock().unwrap().ended = true;
        });
        Member { name: name.into(), seen, kind: MemberKind::Process { child, stdin, reader: Some(reader) } }
    }

    /// A member of `rt` in a child process.
    fn child<R: LiveRuntime>(rt: &R, name: &str, group: &str, topic: &str, props: &[(&str, &str)]) -> Self {
        let props: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut command = rt.member_command();
        command
            .env("KAFKA_BOOTSTRAP", bootstrap())
            .env("SANSA_LIVE_MEMBER", group)
            .env("SANSA_LIVE_MEMBER_TOPIC", topic)
            .env("SANSA_LIVE_MEMBER_PROPS", props.join(";"));
        Member::process(name, command)
    }

    /// Java's KafkaConsumer in the group (conformance/java `group-consume`).
    fn java(name: &str, group: &str, topic: &str, kind: GroupKind) -> Self {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/run.sh");
        let mut command = Command::new(script);
        let (protocol, assignor) = match kind {
            GroupKind::Classic(a) => ("classic", a),
            GroupKind::Consumer => ("consumer", "-"),
        };
        command.args(["group-consume", &bootstrap(), topic, group, protocol, assignor]);
        Member::process(name, command)
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.seen.lock().unwrap().assigned.clone()
    }

    fn consumed(&self) -> Vec<(i32, i64)> {
        self.seen.lock().unwrap().consumed.clone()
    }

    /// Stops polling (a thread member only).
    fn pause(&self, paused: bool) {
        let MemberKind::Thread { paused: flag, .. } = &self.kind else { panic!("{} is not a thread", self.name) };
        flag.store(paused, Ordering::SeqCst);
    }

    /// Leaves the group as an application closing its consumer does.
    fn leave(&mut self) {
        match &mut self.kind {
            MemberKind::Thread { stop, thread, .. } => {
                stop.store(true, Ordering::SeqCst);
                if let Some(t) = thread.take() {
                    t.join().expect("member thread");
                }
            }
            MemberKind::Process { child, stdin, reader } => {
                drop(stdin.take());
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().expect("child status").is_none() {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if let Some(r) = reader.take() {
                    let _ = r.join();
                }
            }
        }
    }

    /// SIGKILL (a process member only): no LeaveGroup, no last commit.
    fn kill(&mut self) {
        let MemberKind::Process { child, reader, .. } = &mut self.kind else {
            panic!("{} is not a process", self.name)
        };
        child.kill().expect("kill the member");
        let _ = child.wait();
        if let Some(r) = reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        // A scenario that failed must not leave a member running behind it.
        match &mut self.kind {
            MemberKind::Thread { stop, .. } => stop.store(true, Ordering::SeqCst),
            MemberKind::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn describe(members: &[&Member<'_>]) -> String {
    members
        .iter()
        .map(|m| {
            let seen = m.seen.lock().unwrap();
            format!(
                "{}: assigned {:?}, {} consumed, errors {:?}{}",
                m.name,
                seen.assigned,
                seen.consumed.len(),
                seen.errors.iter().take(3).collect::<Vec<_>>(),
                if seen.ended { " (ended)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits until `members` (and only they) share the `partitions` of the topic: each holds at
/// least one, no two hold the same, together they hold all.
fn wait_balanced(what: &str, members: &[&Member<'_>], partitions: i32) -> Duration {
    let started = Instant::now();
    loop {
        let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assigned()).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        if sets.iter().all(|s| !s.is_empty()) && total == union.len() && union == (0..partitions).collect() {
            return started.elapsed();
        }
        assert!(started.elapsed() < SETTLE, "{what}: the group never settled: {}", describe(members));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log end offset of every partition of `topic`.
fn end_offsets(client: &impl LiveClient, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let asked = (0..partitions).map(|p| (TopicPartition::new(topic, p), OffsetSpec::Latest)).collect();
    let listed = client.handle().list_offsets_blocking(asked).expect("end offsets");
    listed.into_iter().map(|(tp, o)| (tp.partition, o.expect("an end offset").offset)).collect()
}

/// Waits until `members` together read every offset below `ends`; returns how many records
/// were read more than once (allowed: a killed member's uncommitted records are read again).
fn wait_all_consumed(what: &str, members: &[&Member<'_>], ends: &BTreeMap<i32, i64>) -> usize {
    let expected: i64 = ends.values().sum();
    let started = Instant::now();
    loop {
        let all: Vec<(i32, i64)> = members.iter().flat_map(|m| m.consumed()).collect();
        let distinct: BTreeSet<(i32, i64)> = all.iter().copied().collect();
        assert!(
            distinct.iter().all(|(p, o)| ends.get(p).is_some_and(|end| o < end)),
            "{what}: a record past the end offsets {ends:?}"
        );
        if distinct.len() as i64 == expected {
            return all.len() - distinct.len();
        }
        if started.elapsed() > SETTLE {
            let missing: Vec<(i32, i64)> = ends
                .iter()
                .flat_map(|(&p, &end)| (0..end).map(move |o| (p, o)))
                .filter(|k| !distinct.contains(k))
                .take(10)
                .collect();
            let mut detail = String::new();
            for m in members {
                let seen = m.seen.lock().unwrap();
                detail.push_str(&format!("\n{} assignments (records read before each): {:?}", m.name, seen.history));
                for p in missing.iter().map(|(p, _)| *p).collect::<BTreeSet<i32>>() {
                    let offsets: Vec<(usize, i64)> = seen
                        .consumed
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.0 == p)
                        .map(|(i, r)| (i, r.1))
                        .take(8)
                        .collect();
                    detail.push_str(&format!("\n  partition {p}: first reads (index, offset) {offsets:?}"));
                }
            }
            panic!(
                "{what}: {} of {expected} records consumed; missing (first 10) {missing:?}; {}{detail}",
                distinct.len(),
                describe(members)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `count` keyed records (spread over the partitions by key) and waits for their
/// acks. A client of its own: one that created the topic sometimes never finds its leaders
/// (see [`producer_after_reading_new_topic_metadata`]).
fn produce<R: LiveRuntime>(rt: &R, topic: &str, from: u32, count: u32) {
    let client = rt.connect(config(&[]));
    let futures: Vec<_> = (from..from + count)
        .map(|i| {
            let r = ProducerRecord::new(topic, format!("record {i}")).with_key(format!("key-{i}"));
            client.handle().send_blocking(r).expect("buffered")
        })
        .collect();
    for f in futures {
        f.wait().expect("acknowledged");
    }
    client.close();
}

/// A 12-partition topic read by a group of three; a fourth member joins, one leaves, and one
/// (a child process) is SIGKILLed. Every record is consumed; none is lost. Member `a` commits
/// on revocation through the rebalance events; the others commit only after each poll.
pub fn group_churn<R: LiveRuntime + Sync>(rt: &R, kind: GroupKind, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic(&format!("sansa-churn-{}", kind.name()));
    let group = unique_topic("sansa-churn-group");
    const PARTITIONS: i32 = 12;
    create_topic(&admin, &topic, PARTITIONS, replication);
    produce(rt, &topic, 0, 240);
    let mut props: Vec<(&str, &str)> = MEMBER_PROPS.to_vec();
    props.extend(kind.props());
    props.push(("group.id", &group));
    let what = format!("churn ({})", kind.name());
    std::thread::scope(|s| {
        let mut a = Member::thread(s, rt, "a", &topic, props.clone(), true);
        let mut b = Member::thread(s, rt, "b", &topic, props.clone(), false);
        let mut k = Member::child(rt, "k (killed)", &group, &topic, &props);
        let t3 = wait_balanced(&format!("{what}: three members"), &[&a, &b, &k], PARTITIONS);
        produce(rt, &topic, 240, 120);
        let mut d = Member::thread(s, rt, "d", &topic, props.clone(), false);
        let t4 = wait_balanced(&format!("{what}: a fourth joined"), &[&a, &b, &k, &d], PARTITIONS);
        b.leave();
        produce(rt, &topic, 360, 120);
        let tl = wait_balanced(&format!("{what}: b left"), &[&a, &k, &d], PARTITIONS);
        // Records k read but had not committed go to others; none may be lost.
        k.kill();
        produce(rt, &topic, 480, 120);
        let tk = wait_balanced(&format!("{what}: k killed"), &[&a, &d], PARTITIONS);
        let ends = end_offsets(&admin, &topic, PARTITIONS);
        let again = wait_all_consumed(&what, &[&a, &b, &k, &d], &ends);
        assert_eq!(ends.values().sum::<i64>(), 600);
        a.leave();
        d.leave();
        let errors: Vec<String> = [&a, &b, &d].iter().flat_map(|m| m.seen.lock().unwrap().errors.clone()).collect();
        assert!(errors.is_empty(), "{what}: members reported errors: {errors:?}");
        eprintln!(
            "{what}: settled with 3 in {t3:?}, 4 in {t4:?}, after a leave in {tl:?}, after a kill in {tk:?}; \
             600 records, none lost, {again} read twice"
        );
    });
    admin.close();
}

/// A member reads part of a topic, commits and closes; the next member of the group starts
/// at exactly the committed offsets and reads the rest, through the records iterator.
pub fn restart_resumes_at_committed<R: LiveRuntime + Sync>(rt: &R, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-resume");
    let group = unique_topic("sansa-resume-group");
    create_topic(&admin, &topic, 3, replication);
    produce(rt, &topic, 0, 300);
    let mut props: Vec<(&str, &str)> = MEMBER_PROPS.to_vec();
    props.push(("group.id", &group));
    props.push(("max.poll.records", "50"));

    let first = rt.connect(config(&props));
    first.handle().subscribe_blocking(vec![topic.as_str().into()]).expect("subscribe");
    let mut read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while read.len() < 150 {
        assert!(Instant::now() < deadline, "the first member read only {} records", read.len());
        for r in first.poll(50, Duration::from_millis(200)).expect("poll") {
            assert!(read.insert((r.partition, r.offset)), "read twice: {}-{}", r.partition, r.offset);
        }
    }
    first.handle().commit_blocking(None).expect("commit");
    let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
    let committed = first.handle().committed_blocking(partitions.clone()).expect("committed");
    first.close();
    let committed: BTreeMap<i32, i64> =
        committed.into_iter().map(|(tp, c)| (tp.partition, c.map_or(0, |c| c.offset))).collect();
    for (p, offset) in &committed {
        let next = read.iter().filter(|(q, _)| q == p).map(|(_, o)| o + 1).max().unwrap_or(0);
        assert_eq!(*offset, next, "partition {p}: committed offset is the position after what was read");
    }

    let second = rt.connect(config(&props));
    second.handle().subscribe_blocking(vec![topic.as_str().into()]).expect("subscribe");
    let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + SETTLE;
    let mut records = second.handle().records(Duration::from_millis(200));
    while read.len() < 300 {
        assert!(Instant::now() < deadline, "after the restart only {} of 300 records were read", read.len());
        let r = records.next().expect("no end while open").expect("a record");
        firsts.entry(r.partition).or_insert(r.offset);
        assert!(read.insert((r.partition, r.offset)), "read again after the restart: {}-{}", r.partition, r.offset);
    }
    drop(records);
    for (p, first_offset) in &firsts {
        assert_eq!(Some(first_offset), committed.get(p), "partition {p} resumed at the committed offset");
    }
    second.close();
    admin.close();
}

/// With auto-commit, a member that closes commits its positions before it leaves (as Java's
/// close does), so the next member of the group resumes exactly where it stopped: the commit
/// on close is the only one (`auto.commit.interval.ms` is longer than the scenario).
pub fn close_commits_then_leaves<R: LiveRuntime + Sync>(rt: &R, kind: GroupKind, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-close-commit");
    let group = unique_topic("sansa-close-commit-group");
    create_topic(&admin, &topic, 3, replication);
    produce(rt, &topic, 0, 300);
    let mut props: Vec<(&str, &str)> =
        MEMBER_PROPS.iter().filter(|(k, _)| *k != "enable.auto.commit").copied().collect();
    props.extend([
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "600000"),
        ("group.id", group.as_str()),
        ("max.poll.records", "50"),
    ]);
    props.extend(kind.props());

    let first = rt.connect(config(&props));
    first.handle().subscribe_blocking(vec![topic.as_str().into()]).expect("subscribe");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + SETTLE;
    while read < 150 {
        assert!(Instant::now() < deadline, "the first member read only {read} records");
        for r in first.poll(50, Duration::from_millis(200)).expect("poll") {
            next.insert(r.partition, r.offset + 1);
            read += 1;
        }
    }
    first.close();

    let second = rt.connect(config(&props));
    second.handle().subscribe_blocking(vec![topic.as_str().into()]).expect("subscribe");
    // Each partition's first record after the close: at the committed position, or none for
    // a partition the first member read to its end.
    let ends = end_offsets(&admin, &topic, 3);
    let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rest = 0;
    let deadline = Instant::now() + SETTLE;
    while rest < 300 - read {
        assert!(Instant::now() < deadline, "after the close the second member read {rest} of {}", 300 - read);
        for r in second.poll(50, Duration::from_millis(200)).expect("poll") {
            firsts.entry(r.partition).or_insert(r.offset);
            rest += 1;
        }
    }
    for p in 0..3 {
        let resumed = next.get(&p).copied().unwrap_or(0);
        let expected = (resumed < ends[&p]).then_some(resumed);
        assert_eq!(
            firsts.get(&p).copied(),
            expected,
            "{}: partition {p} resumes where the close committed",
            kind.name()
        );
    }
    second.close();
    admin.close();
}

/// KIP-392 against brokers with racks and the rack-aware replica selector (test.sh starts
/// them so): a consumer in one broker's rack reads every partition, those led from other
/// racks through the replica in its own. A leader that names a read replica sends no
/// records, so a consumer that ignored it would read nothing from those partitions. Skipped
/// (with a line saying so) when the brokers report no racks.
pub fn reads_from_rack_replica<R: LiveRuntime>(rt: &R) {
    let admin = rt.connect(config(&[]));
    let md = admin.metadata(None).expect("metadata");
    let racks: BTreeMap<i32, String> = md.brokers.iter().filter_map(|(id, b)| Some((id.0, b.rack.clone()?))).collect();
    if racks.len() < 3 {
        eprintln!("live scenario consumer_reads_from_the_replica_in_its_rack: skipped, the brokers have no racks");
        admin.close();
        return;
    }
    let topic = unique_topic("sansa-rack");
    create_topic(&admin, &topic, 6, 3);
    produce(rt, &topic, 0, 600);
    let md = admin.metadata(Some(vec![topic.as_str().into()])).expect("metadata");
    let leaders: Vec<i32> =
        md.topic(&topic).expect("topic").partitions.iter().filter_map(|p| p.leader.map(|l| l.0)).collect();
    // The rack of the broker that leads the fewest partitions: most partitions are read
    // through a follower.
    let (&near, rack) = racks.iter().min_by_key(|(id, _)| leaders.iter().filter(|l| l == id).count()).expect("racks");
    let followed = leaders.iter().filter(|&&l| l != near).count();
    assert!(followed > 0, "every partition is led from rack {rack}");
    let consumer = rt.connect(config(&[("client.rack", rack), ("auto.offset.reset", "earliest")]));
    let partitions: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
    consumer.handle().assign_blocking(partitions).expect("assign");
    let mut read: BTreeSet<(i32, i64)> = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while read.len() < 600 {
        assert!(Instant::now() < deadline, "read {} of 600 records from rack {rack}", read.len());
        for r in consumer.poll(500, Duration::from_millis(200)).expect("poll") {
            assert!(read.insert((r.partition, r.offset)), "read twice: {}-{}", r.partition, r.offset);
        }
    }
    eprintln!("  rack {rack}: 600 records from 6 partitions, {followed} of them led from other racks");
    consumer.close();
    admin.close();
}

/// Records the Java producer wrote in every codec, with headers and null keys and values,
/// read back by sansa exactly as the Java producer reports sending them.
pub fn reads_java_produced_codecs<R: LiveRuntime>(rt: &R, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-java-codecs");
    create_topic(&admin, &topic, 3, replication);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/run.sh");
    let codecs = "none,gzip,snappy,lz4,zstd";
    let out = Command::new(&script).args(["produce", &bootstrap(), &topic, codecs, "60"]).output().expect("run.sh");
    assert!(out.status.success(), "java produce: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let expected: BTreeSet<String> = text.lines().filter(|l| l.split('\t').count() == 7).map(str::to_string).collect();
    assert_eq!(expected.len(), 300, "the Java producer reported 300 records");

    let consumer = rt.connect(config(&[("auto.offset.reset", "earliest")]));
    let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
    consumer.handle().assign_blocking(partitions).expect("assign");
    let mut got: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + SETTLE;
    while got.len() < expected.len() {
        assert!(Instant::now() < deadline, "read {} of {} records", got.len(), expected.len());
        for r in consumer.poll(500, Duration::from_millis(200)).expect("poll") {
            let hex = |b: &Option<bytes::Bytes>| b.as_deref().map_or("-".to_string(), crate::hex_encode);
            let headers: Vec<String> =
                r.headers.iter().map(|h| format!("{}={}", crate::hex_encode(&h.key), hex(&h.value))).collect();
            let line = format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.partition,
                r.offset,
                match r.timestamp_type {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                    _ => "NoTimestampType",
                },
                r.timestamp,
                hex(&r.key),
                hex(&r.value),
                if headers.is_empty() { "-".to_string() } else { headers.join(",") },
            );
            assert!(expected.contains(&line), "a record Java did not send: {line}");
            assert!(got.insert(line), "a record read twice");
        }
    }
    consumer.close();
    admin.close();
}

/// A sansa member and Java's KafkaConsumer in one group of the same protocol (and assignor)
/// share the partitions and together read every record; when Java leaves, sansa takes over.
pub fn group_shared_with_java<R: LiveRuntime + Sync>(rt: &R, kind: GroupKind, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic(&format!("sansa-java-group-{}", kind.name()));
    let group = unique_topic("sansa-java-group");
    const PARTITIONS: i32 = 6;
    create_topic(&admin, &topic, PARTITIONS, replication);
    produce(rt, &topic, 0, 120);
    let mut props: Vec<(&str, &str)> = MEMBER_PROPS.to_vec();
    props.extend(kind.props());
    props.push(("group.id", &group));
    let what = format!("group shared with Java ({})", kind.name());
    std::thread::scope(|s| {
        let mut ours = Member::thread(s, rt, "sansa", &topic, props.clone(), true);
        let mut java = Member::java("java", &group, &topic, kind);
        let shared = wait_balanced(&what, &[&ours, &java], PARTITIONS);
        produce(rt, &topic, 120, 120);
        let ends = end_offsets(&admin, &topic, PARTITIONS);
        wait_all_consumed(&what, &[&ours, &java], &ends);
        let (mine, theirs) = (ours.consumed().len(), java.consumed().len());
        java.leave();
        let alone = wait_balanced(&format!("{what}: Java left"), &[&ours], PARTITIONS);
        produce(rt, &topic, 240, 60);
        let ends = end_offsets(&admin, &topic, PARTITIONS);
        wait_all_consumed(&what, &[&ours, &java], &ends);
        ours.leave();
        assert!(mine > 0 && theirs > 0, "{what}: both read records ({mine} and {theirs})");
        eprintln!("{what}: shared in {shared:?} (sansa read {mine}, Java {theirs}), alone in {alone:?}");
    });
    admin.close();
}

/// Java transactions into a topic, some committed and some aborted: read_committed returns
/// exactly the committed records; read_uncommitted returns the aborted ones too.
pub fn read_committed_skips_aborted<R: LiveRuntime>(rt: &R, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-txn");
    create_topic(&admin, &topic, 2, replication);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/run.sh");
    let out = Command::new(&script).args(["txn", &bootstrap(), &topic]).output().expect("run.sh");
    assert!(out.status.success(), "java txn: {}", String::from_utf8_lossy(&out.stderr));
    let committed: BTreeSet<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.strip_prefix("committed ").map(str::to_string))
        .collect();
    assert_eq!(committed.len(), 60, "three committed transactions of 20");

    let read_all = |isolation: &str, expected: usize| -> Vec<String> {
        let consumer = rt.connect(config(&[("auto.offset.reset", "earliest"), ("isolation.level", isolation)]));
        let partitions: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
        consumer.handle().assign_blocking(partitions).expect("assign");
        let mut values = Vec::new();
        let deadline = Instant::now() + SETTLE;
        // Past the expected count, one more quiet second shows nothing else comes.
        let mut quiet_since: Option<Instant> = None;
        loop {
            assert!(Instant::now() < deadline, "{isolation}: read {} of {expected}", values.len());
            let records = consumer.poll(500, Duration::from_millis(200)).expect("poll");
            values.extend(
                records.iter().map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into_owned()),
            );
            if values.len() >= expected {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if !records.is_empty() {
                    quiet_since = Some(Instant::now());
                } else if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
        consumer.close();
        values
    };
    let read = read_all("read_committed", 60);
    assert_eq!(read.len(), 60, "read_committed: {read:?}");
    assert_eq!(read.iter().cloned().collect::<BTreeSet<_>>(), committed);
    let all = read_all("read_uncommitted", 120);
    assert_eq!(all.len(), 120, "read_uncommitted sees the aborted records too");
    admin.close();
}

/// A member whose application stops polling past `max.poll.interval.ms` leaves the group (the
/// other member takes every partition); when it polls again it rejoins and gets a share back.
pub fn poll_interval_exceeded_then_rejoin<R: LiveRuntime + Sync>(rt: &R, kind: GroupKind, replication: i16) {
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-poll-interval");
    let group = unique_topic("sansa-poll-interval-group");
    const PARTITIONS: i32 = 4;
    create_topic(&admin, &topic, PARTITIONS, replication);
    produce(rt, &topic, 0, 80);
    let mut props: Vec<(&str, &str)> =
        MEMBER_PROPS.iter().copied().filter(|(k, _)| *k != "max.poll.interval.ms").collect();
    props.extend(kind.props());
    props.push(("group.id", &group));
    props.push(("max.poll.interval.ms", "3000"));
    let what = format!("max.poll.interval.ms ({})", kind.name());
    std::thread::scope(|s| {
        let mut idle = Member::thread(s, rt, "idle", &topic, props.clone(), false);
        let mut busy = Member::thread(s, rt, "busy", &topic, props.clone(), false);
        wait_balanced(&what, &[&idle, &busy], PARTITIONS);
        let stopped = Instant::now();
        idle.pause(true);
        let left = wait_balanced(&format!("{what}: the idle member left"), &[&busy], PARTITIONS);
        assert!(stopped.elapsed() >= Duration::from_millis(2500), "left after {:?}, before the interval", left);
        produce(rt, &topic, 80, 80);
        idle.pause(false);
        let back = wait_balanced(&format!("{what}: the idle member rejoined"), &[&idle, &busy], PARTITIONS);
        produce(rt, &topic, 160, 80);
        let ends = end_offsets(&admin, &topic, PARTITIONS);
        wait_all_consumed(&what, &[&idle, &busy], &ends);
        idle.leave();
        busy.leave();
        eprintln!("{what}: left {left:?} after the last poll, rejoined {back:?} after polling again");
    });
    admin.close();
}

/// 400,000 records of 1 KB (400 MB, Fetch answers of several MiB) read from the start, every
/// one once and in order per partition. Large answers are what the readers' receive
/// low-water mark is for; a blocking read waiting at the mark stalled such a consumer, which
/// smaller scenarios never showed.
pub fn reads_a_backlog_of_large_fetch_answers<R: LiveRuntime>(rt: &R, replication: i16) {
    const RECORDS: u32 = 400_000;
    const PARTITIONS: i32 = 6;
    let admin = rt.connect(config(&[]));
    let topic = unique_topic("sansa-large-answers");
    create_topic(&admin, &topic, PARTITIONS, replication);
    let producer = rt.connect(config(&[("linger.ms", "20"), ("batch.size", "1000000"), ("acks", "1")]));
    // A value is its index, then filler; the filler's letter varies with the index.
    let value = |i: u32| {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(1024, b'A' + (i % 26) as u8);
        v
    };
    let mut waits = Vec::new();
    for i in 0..RECORDS {
        let record = ProducerRecord::new(topic.as_str(), value(i)).with_partition(i as i32 % PARTITIONS);
        waits.push(producer.handle().send_blocking(record).expect("buffered"));
    }
    for w in waits {
        w.wait().expect("acknowledged");
    }
    producer.close();

    let consumer = rt.connect(config(&[("auto.offset.reset", "earliest")]));
    let partitions: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(topic.as_str(), p)).collect();
    consumer.handle().assign_blocking(partitions).expect("assign");
    // Per partition, the index the next record must carry.
    let mut next: Vec<u32> = (0..PARTITIONS as u32).collect();
    // About three seconds in a debug build on one local broker. A blocking reader that waits
    // at the mark (planted) stalls for seconds at a time: 19k-206k records in 30 s, three runs.
    const READ_WITHIN: Duration = Duration::from_secs(30);
    let (mut read, started) = (0u32, Instant::now());
    while read < RECORDS {
        assert!(started.elapsed() < READ_WITHIN, "read {read} of {RECORDS} records in {READ_WITHIN:?}");
        for r in consumer.poll(10_000, Duration::from_millis(500)).expect("poll") {
            let want = next[r.partition as usize];
            assert_eq!(r.value.as_deref(), Some(&value(want)[..]), "partition {} offset {}", r.partition, r.offset);
            next[r.partition as usize] += PARTITIONS as u32;
            read += 1;
        }
    }
    eprintln!("  {RECORDS} records of 1 KB read in {:?}", started.elapsed());
    consumer.close();
    admin.close();
}

/// Every consumer scenario. The churn runs under each classic assignor and KIP-848; the Java
/// scenarios need `SANSA_JAVA_READBACK` (test.sh sets it: they run Kafka's Java client).
pub fn run_all<R: LiveRuntime + Sync>(rt: &R, kinds: &[GroupKind]) {
    let brokers: usize = std::env::var("KAFKA_BROKERS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let replication = if brokers >= 3 { 3 } else { 1 };
    let java = std::env::var_os("SANSA_JAVA_READBACK").is_some();
    run_scenarios(rt, kinds, replication, java);
}

/// The consumer scenarios against the cluster at [`bootstrap`] with topics of `replication`
/// replicas: the churn for each of `kinds`, the poll-interval one classic and (if in `kinds`)
/// KIP-848; `java`: those that run Kafka's Java client too. `SANSA_LIVE_ONLY` picks the
/// scenarios whose name contains it.
pub fn run_scenarios<R: LiveRuntime + Sync>(rt: &R, kinds: &[GroupKind], replication: i16, java: bool) {
    type Scenario<'a> = (String, Box<dyn Fn() + 'a>);
    let mut scenarios: Vec<Scenario<'_>> = Vec::new();
    for &kind in kinds {
        scenarios.push((
            format!("consumer_group_churn_{}", kind.name()),
            Box::new(move || group_churn(rt, kind, replication)),
        ));
    }
    scenarios.push((
        "consumer_restart_resumes_at_committed".into(),
        Box::new(|| restart_resumes_at_committed(rt, replication)),
    ));
    let kip848 = kinds.contains(&GroupKind::Consumer).then_some(GroupKind::Consumer);
    for kind in [Some(GroupKind::Classic("range")), kip848].into_iter().flatten() {
        scenarios.push((
            format!("consumer_poll_interval_exceeded_then_rejoin_{}", kind.name()),
            Box::new(move || poll_interval_exceeded_then_rejoin(rt, kind, replication)),
        ));
        scenarios.push((
            format!("consumer_close_commits_then_leaves_{}", kind.name()),
            Box::new(move || close_commits_then_leaves(rt, kind, replication)),
        ));
    }
    scenarios.push(("consumer_reads_from_the_replica_in_its_rack".into(), Box::new(|| reads_from_rack_replica(rt))));
    scenarios.push((
        "consumer_reads_a_backlog_of_large_fetch_answers".into(),
        Box::new(|| reads_a_backlog_of_large_fetch_answers(rt, replication)),
    ));
    if java {
        scenarios.push((
            "consumer_reads_java_produced_codecs".into(),
            Box::new(|| reads_java_produced_codecs(rt, replication)),
        ));
        scenarios.push((
            "consumer_read_committed_skips_aborted".into(),
            Box::new(|| read_committed_skips_aborted(rt, replication)),
        ));
        for kind in [GroupKind::Classic("cooperative-sticky"), GroupKind::Consumer] {
            scenarios.push((
                format!("consumer_group_shared_with_java_{}", kind.name()),
                Box::new(move || group_shared_with_java(rt, kind, replication)),
            ));
        }
    }
    scenarios.push((
        "producer_after_reading_new_topic_metadata".into(),
        Box::new(|| producer_after_reading_new_topic_metadata(rt, replication)),
    ));
    let only = std::env::var("SANSA_LIVE_ONLY").ok();
    for (name, f) in scenarios {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let started = Instant::now();
        f();
        eprintln!("live scenario {name}: ok in {:?}", started.elapsed());
    }
}

/// A client that created a topic and read its metadata (as `create_topic` does) then
/// produces to it, 8 times on each of the four runtimes. It once failed about one run in
/// twelve with `DeliveryTimeout { last: NoLeader }`: a broker that had not applied the topic
/// yet answered metadata without it, and batches without a leader did not ask for metadata
/// again. The fix is in the core, so the runtimes share the runs.
pub fn producer_after_reading_new_topic_metadata<R: LiveRuntime>(rt: &R, replication: i16) {
    let mut failures = Vec::new();
    for run in 0..8 {
        let client = rt.connect(config(&[("delivery.timeout.ms", "8000"), ("request.timeout.ms", "5000")]));
        let topic = unique_topic("sansa-known-bug");
        create_topic(&client, &topic, 4, replication);
        let futures: Vec<_> = (0..80)
            .map(|i| {
                let r = ProducerRecord::new(topic.as_str(), "v").with_key(format!("key-{i}"));
                client.handle().send_blocking(r).expect("buffered")
            })
            .collect();
        let errors: Vec<_> = futures.into_iter().filter_map(|f| f.wait().err()).collect();
        if let Some(first) = errors.first() {
            failures.push(format!("run {run}: {} records failed, first {first:?}", errors.len()));
        }
        client.close();
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
