//! The adapter boundary without sockets: async sides polled by hand or with
//! `futures_lite::future::block_on`, blocking sides on threads.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use futures_lite::future::block_on;

use super::outcome::{ack, items, reply, staged, DriverGone, Stage, TooManyStages};
use super::{start, Dispatcher, Handle};
use crate::client::{RequestError, Target};
use crate::config::{Config, ConfigError};
use crate::producer::{ProduceError, ProducerRecord};
use crate::protocol::messages::MetadataRequest;

/// Long enough that a thread which could go on has gone on.
const SETTLE: Duration = Duration::from_millis(100);
/// Bounds every wait that must succeed, so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(5);

// No timer runs in these tests, so one instant serves as `now` throughout.
use crate::test_origin as t0;

fn started(capacity: usize) -> (Handle, Dispatcher) {
    start(Config::new("127.0.0.1:9092").unwrap(), t0(), capacity).unwrap()
}

/// Counts wake-ups, to see which futures were told to try again.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Wakes>, Waker) {
    let wakes = Arc::new(Wakes::default());
    (wakes.clone(), Waker::from(wakes))
}

/// Takes one message off the intake, if there is one, and feeds it to the client.
fn take_one(dispatcher: &mut Dispatcher) -> bool {
    let (_, waker) = counting_waker();
    match dispatcher.poll_intake(&mut Context::from_waker(&waker)) {
        Poll::Ready(intake) => {
            dispatcher.handle_intake(t0(), intake);
            true
        }
        Poll::Pending => false,
    }
}

#[test]
fn a_bad_config_is_refused_with_its_typed_error() {
    assert_eq!(start(Config::default(), t0(), 8).err(), Some(ConfigError::NoBootstrapServers));

    let mut no_in_flight = Config::new("127.0.0.1:9092").unwrap();
    no_in_flight.max_in_flight_per_connection = 0;
    assert!(matches!(
        start(no_in_flight, t0(), 8),
        Err(ConfigError::InvalidValue { key, .. }) if key == "max.in.flight.requests.per.connection"
    ));

    let zero_timeout = Config::new("127.0.0.1:9092").unwrap().with_request_timeout(Duration::ZERO);
    assert!(matches!(
        start(zero_timeout, t0(), 8),
        Err(ConfigError::InvalidValue { key, .. }) if key == "request.timeout.ms"
    ));
}

#[test]
fn the_seed_is_filled_only_when_absent() {
    let (_, dispatcher) = started(8);
    assert!(dispatcher.client().config().rng_seed.is_some());
    let given = Config::new("127.0.0.1:9092").unwrap().with_rng_seed(42);
    let (_, dispatcher) = start(given, t0(), 8).unwrap();
    assert_eq!(dispatcher.client().config().rng_seed, Some(42));
}

#[test]
fn stages_arrive_in_order_then_the_final_one() {
    let (mut tx, rx) = staged::<&str, u32>(2);
    assert_eq!(rx.try_next(), None);
    tx.progress("accepted").unwrap();
    tx.progress("sealed").unwrap();
    assert_eq!(tx.progress("one too many"), Err(TooManyStages { declared: 2 }));
    tx.finish(7);
    block_on(async {
        assert_eq!(rx.next().await, Ok(Stage::Progress("accepted")));
        assert_eq!(rx.next().await, Ok(Stage::Progress("sealed")));
        assert_eq!(rx.next().await, Ok(Stage::Final(7)));
        assert_eq!(rx.next().await, Err(DriverGone));
    });

    let (mut tx, rx) = staged::<&str, u32>(1);
    tx.progress("accepted").unwrap();
    tx.finish(8);
    assert_eq!(block_on(rx.finish()), Ok(8), "finish skips the progress stages");
}

#[test]
fn a_sender_dropped_before_the_final_stage_reports_driver_gone() {
    let (mut tx, rx) = staged::<&str, u32>(1);
    tx.progress("accepted").unwrap();
    drop(tx);
    assert_eq!(rx.finish_blocking(), Err(DriverGone));

    let (replier, answer) = reply::<u32>();
    assert!(replier.is_wanted());
    drop(answer);
    assert!(!replier.is_wanted(), "the driver sees that nobody waits");
}

#[test]
fn a_blocked_receiver_wakes_at_each_stage() {
    let (mut tx, rx) = staged::<&str, u32>(1);
    let (seen_tx, seen) = mpsc::channel();
    let app = thread::spawn(move || {
        for _ in 0..2 {
            seen_tx.send(rx.next_blocking()).unwrap();
        }
    });
    assert!(seen.recv_timeout(SETTLE).is_err(), "nothing arrived yet");
    tx.progress("accepted").unwrap();
    assert_eq!(seen.recv_timeout(PATIENCE).unwrap(), Ok(Stage::Progress("accepted")));
    assert!(seen.recv_timeout(SETTLE).is_err(), "still waiting for the final stage");
    tx.finish(3);
    assert_eq!(seen.recv_timeout(PATIENCE).unwrap(), Ok(Stage::Final(3)));
    app.join().unwrap();
}

#[test]
fn a_full_intake_makes_an_async_sender_pend_until_the_driver_takes_one() {
    let (handle, mut dispatcher) = started(1);
    let (wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut first = pin!(handle.metadata(None));
    let mut second = pin!(handle.check_version(Target::AnyBroker));

    assert!(first.as_mut().poll(&mut cx).is_pending(), "submitted, waiting for its answer");
    assert_eq!(dispatcher.queued(), 1);
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!(dispatcher.queued(), 1, "the second command is held back, not queued");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

    assert!(take_one(&mut dispatcher));
    assert!(wakes.0.load(Ordering::SeqCst) >= 1, "room freed wakes the waiting sender");
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!(dispatcher.queued(), 1, "now the second command is queued");
}

#[test]
fn a_full_intake_blocks_a_blocking_sender_until_the_driver_takes_one() {
    let (handle, mut dispatcher) = started(1);
    let (sent_tx, sent) = mpsc::channel();
    let app = thread::spawn(move || {
        let first = handle.send_request_blocking(Target::AnyBroker, MetadataRequest::default().into(), None);
        sent_tx.send(1).unwrap();
        let second = handle.send_request_blocking(Target::AnyBroker, MetadataRequest::default().into(), None);
        sent_tx.send(2).unwrap();
        (first, second)
    });
    assert_eq!(sent.recv_timeout(PATIENCE), Ok(1));
    assert!(sent.recv_timeout(SETTLE).is_err(), "the second send blocks on the full intake");
    assert!(take_one(&mut dispatcher));
    assert_eq!(sent.recv_timeout(PATIENCE), Ok(2));
    let (first, second) = app.join().unwrap();

    // The driver goes away with the second command still queued: both callers hear it.
    drop(dispatcher);
    assert_eq!(first.recv_blocking(), Err(DriverGone));
    assert_eq!(second.recv_blocking(), Err(DriverGone));
}

/// One pass of a driver loop that waits for the intake.
fn step(dispatcher: &mut Dispatcher) {
    block_on(async {
        let intake = dispatcher.recv_intake().await;
        dispatcher.handle_intake(t0(), intake);
    });
    let now = t0();
    while dispatcher.poll_transmit(now).is_some() {}
    dispatcher.deliver();
}

#[test]
fn commands_reach_the_client_and_outcomes_their_callers() {
    let (handle, mut dispatcher) = started(4);
    let app = thread::spawn(move || {
        handle.close_blocking();
        handle.metadata_blocking(None)
    });
    step(&mut dispatcher);
    assert!(dispatcher.client().is_closed());
    step(&mut dispatcher);
    assert_eq!(app.join().unwrap(), Err(RequestError::ClientClosed), "a closed client takes no requests");
    assert!(dispatcher.is_finished());
}

#[test]
fn the_last_handle_dropped_closes_the_client() {
    let (handle, mut dispatcher) = started(4);
    let clone = handle.clone();
    drop(handle);
    assert!(!take_one(&mut dispatcher), "a clone is still alive");
    drop(clone);
    step(&mut dispatcher);
    assert!(dispatcher.is_finished());
    assert!(!take_one(&mut dispatcher), "the intake stays quiet after the last handle went");
}

#[test]
fn a_full_stream_holds_the_driver_back_until_the_application_takes_an_item() {
    let (handle, mut dispatcher) = started(4);
    let (tx, rx) = items::<u32>(2, dispatcher.nudge());
    assert_eq!(tx.room(), 2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(3), "full: the item comes back");
    assert!(!take_one(&mut dispatcher), "nothing to wake the driver yet");

    assert_eq!(block_on(rx.next()), Some(1));
    assert!(take_one(&mut dispatcher), "taking from a full stream nudges the driver");
    assert_eq!(tx.room(), 1);
    tx.try_send(3).unwrap();
    drop(tx);
    assert_eq!(rx.try_next(), Some(2));
    assert!(!take_one(&mut dispatcher), "the stream was not full: no nudge");
    assert_eq!(rx.next_blocking(), Some(3));
    assert_eq!(rx.next_blocking(), None, "ended once the driver dropped its end");
    drop(handle);
}

#[test]
fn a_blocked_stream_reader_wakes_when_the_driver_sends() {
    let (_handle, dispatcher) = started(4);
    let (tx, rx) = items::<u32>(1, dispatcher.nudge());
    let (seen_tx, seen) = mpsc::channel();
    let app = thread::spawn(move || {
        while let Some(item) = rx.next_blocking() {
            seen_tx.send(item).unwrap();
        }
    });
    assert!(seen.recv_timeout(SETTLE).is_err());
    tx.try_send(10).unwrap();
    assert_eq!(seen.recv_timeout(PATIENCE), Ok(10));
    drop(tx);
    app.join().unwrap();
}

#[test]
fn an_ack_reaches_the_driver_and_nudges_it_once() {
    let (_handle, mut dispatcher) = started(4);
    let (first, pending_first) = ack(dispatcher.nudge());
    let (second, pending_second) = ack(dispatcher.nudge());
    assert!(!pending_first.is_acked());
    first.ack();
    drop(second); // a forgotten token acknowledges too
    assert!(pending_first.is_acked() && pending_second.is_acked());
    assert!(take_one(&mut dispatcher));
    assert!(!take_one(&mut dispatcher), "two nudges before the driver ran cost one wake-up");

    let (third, _pending) = ack(dispatcher.nudge());
    third.ack();
    assert!(take_one(&mut dispatcher), "a nudge after the driver ran wakes it again");
}

#[test]
fn a_command_queued_when_the_driver_stops_reports_driver_gone() {
    let (handle, dispatcher) = started(8);
    let (done_tx, done) = mpsc::channel();
    let caller = handle.clone();
    thread::spawn(move || {
        let _ = done_tx.send(caller.metadata_blocking(None));
    });
    // Let the command reach the intake, then stop the driver without taking it while a
    // handle still keeps the queue alive.
    thread::sleep(SETTLE);
    drop(dispatcher);
    assert_eq!(done.recv_timeout(PATIENCE), Ok(Err(RequestError::ClientClosed)));
    assert_eq!(handle.metadata_blocking(None), Err(RequestError::ClientClosed));
}

#[test]
fn items_compose_as_a_stream_and_still_nudge_the_driver_when_full() {
    use futures_lite::StreamExt;
    let (handle, mut dispatcher) = started(4);
    let (tx, mut rx) = items::<u32>(2, dispatcher.nudge());
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    assert_eq!(tx.try_send(3), Err(3));
    assert_eq!(block_on(StreamExt::next(&mut rx)), Some(1));
    assert!(take_one(&mut dispatcher), "taking from a full stream nudges the driver");
    tx.try_send(3).unwrap();
    drop(tx);
    let rest: Vec<u32> = block_on(rx.collect());
    assert_eq!(rest, vec![2, 3], "then it ends");
    drop(handle);
}

/// A send's future is moved a few times per record: it holds the record and little else (an
/// `async fn` with its waits inline made it 1 KB).
#[test]
fn a_send_future_holds_the_record_and_little_else() {
    let (handle, _dispatcher) = started(4);
    let record = ProducerRecord::new("t", vec![1u8]);
    // The record, a callback stored in place (64 bytes) and a few words.
    let limit = std::mem::size_of_val(&record) + 128;
    let with_callback = handle.send_with_callback(record.clone(), |_| {});
    assert!(std::mem::size_of_val(&with_callback) <= limit, "{} bytes", std::mem::size_of_val(&with_callback));
    let with_future = handle.send(record);
    assert!(std::mem::size_of_val(&with_future) <= limit, "{} bytes", std::mem::size_of_val(&with_future));
}

#[test]
fn an_async_send_waits_for_room_in_the_lane() {
    let (handle, mut dispatcher) = started(1);
    let (wakes, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut first = pin!(handle.send_with_callback(ProducerRecord::new("t", "a"), |_| {}));
    assert!(matches!(first.as_mut().poll(&mut cx), Poll::Ready(Ok(()))), "room in the lane: done at once");
    let mut second = pin!(handle.send(ProducerRecord::new("t", "b")));
    assert!(second.as_mut().poll(&mut cx).is_pending(), "the lane holds one send");
    assert!(second.as_mut().poll(&mut cx).is_pending(), "still full");
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    assert!(take_one(&mut dispatcher), "the first send's wake-up");
    assert!(wakes.0.load(Ordering::SeqCst) >= 1, "the drained lane wakes the waiting send");
    assert!(matches!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
}

#[test]
fn a_refused_async_send_answers_with_its_error_and_never_calls_back() {
    let config = Config::from_properties([("bootstrap.servers", "127.0.0.1:9092"), ("buffer.memory", "1000")]).unwrap();
    let (handle, dispatcher) = start(config, t0(), 16).unwrap();
    let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let send = |size: usize| {
        let outcomes = Arc::clone(&outcomes);
        let record = ProducerRecord::new("t", vec![b'x'; size]);
        block_on(handle.send_with_callback(record, move |r| outcomes.lock().unwrap().push(r.map(|_| ()))))
    };
    assert!(matches!(send(2000), Err(ProduceError::RecordTooLarge { setting: "buffer.memory", .. })));
    assert!(send(400).is_ok());
    assert!(send(400).is_ok());
    // No timer was given, so a send finding the buffer full fails at once.
    assert!(matches!(send(400), Err(ProduceError::BufferExhausted { .. })));
    assert!(outcomes.lock().unwrap().is_empty(), "a send that failed is answered once, by its error");
    drop(dispatcher);
    drop(handle);
    assert_eq!(*outcomes.lock().unwrap(), [Err(ProduceError::Closed), Err(ProduceError::Closed)], "the accepted two");
}

#[test]
fn a_dropped_send_gives_its_room_back_and_never_calls_back() {
    let config = Config::from_properties([("bootstrap.servers", "127.0.0.1:9092"), ("buffer.memory", "1000")]).unwrap();
    let (handle, _dispatcher) = start(config, t0(), 1).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let send = |size: usize| {
        let called = Arc::clone(&called);
        handle.send_with_callback(ProducerRecord::new("t", vec![b'x'; size]), move |_| {
            called.fetch_add(1, Ordering::SeqCst);
        })
    };
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut first = pin!(send(200));
    assert!(first.as_mut().poll(&mut cx).is_ready(), "into the lane, which holds one");
    {
        let mut second = Box::pin(send(200));
        assert!(second.as_mut().poll(&mut cx).is_pending(), "its room reserved, waiting for the lane");
        drop(second);
        drop(send(200)); // never polled
    }
    // No timer: a send that finds no room fails at once. This one (about 600 bytes in the
    // buffer, the first about 300, of 1000) fits only if the dropped send gave its room back.
    let mut third = pin!(send(500));
    assert!(third.as_mut().poll(&mut cx).is_pending(), "room found, waiting for the lane");
    assert_eq!(called.load(Ordering::SeqCst), 0, "dropped sends are not answered");
}

/// Runs commands on the calling thread, as the blocking runtime's driver does while its
/// thread sleeps; or refuses every one, as it does while its thread runs.
struct OnCaller {
    dispatcher: std::sync::Mutex<Dispatcher>,
    refuse: bool,
    ran: AtomicUsize,
}

impl super::InlineDriver for OnCaller {
    fn run_inline(&self, intake: super::Intake) -> Option<super::Intake> {
        if self.refuse {
            return Some(intake);
        }
        // Held by the test: the driver runs elsewhere.
        let Ok(mut dispatcher) = self.dispatcher.try_lock() else { return Some(intake) };
        if let Err(queued) = dispatcher.handle_inline(t0(), intake) {
            return Some(queued);
        }
        while dispatcher.poll_transmit(t0()).is_some() {}
        dispatcher.finish_inline(None);
        self.ran.fetch_add(1, Ordering::SeqCst);
        None
    }
}

fn on_caller(refuse: bool) -> (Handle, Arc<OnCaller>) {
    let (handle, dispatcher) = started(4);
    let driver = Arc::new(OnCaller { dispatcher: std::sync::Mutex::new(dispatcher), refuse, ran: AtomicUsize::new(0) });
    (handle, driver)
}

/// Runs `call` on a thread of its own and returns its answer, failing the test (instead of
/// hanging it) when nothing answers within [`PATIENCE`].
fn within_patience<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(call()));
    rx.recv_timeout(PATIENCE).expect("an answer within the patience")
}

#[test]
fn a_blocking_call_is_answered_by_an_inline_driver_on_its_own_thread() {
    let (handle, driver) = on_caller(false);
    let inline = handle.with_inline(driver.clone());
    // Answered with no thread driving the dispatcher: the call ran it.
    let metrics = within_patience(move || inline.metrics_blocking());
    assert!(metrics.contains_key("record-send-total"));
    assert_eq!(driver.ran.load(Ordering::SeqCst), 1);
}

#[test]
fn a_blocking_call_queues_behind_commands_queued_before_it() {
    let (handle, driver) = on_caller(false);
    let handle = handle.with_inline(driver.clone());
    // A close on the intake, as from a call that found the driver busy.
    let busy = driver.dispatcher.lock().unwrap();
    let closing = {
        let handle = handle.clone();
        thread::spawn(move || handle.close_blocking())
    };
    thread::sleep(SETTLE);
    drop(busy);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(handle.metadata_blocking(None)));
    thread::sleep(SETTLE);
    assert!(rx.try_recv().is_err(), "queued behind the close, not run ahead of it");
    // The close and, behind it, the metadata call.
    let mut dispatcher = driver.dispatcher.lock().unwrap();
    while take_one(&mut dispatcher) {}
    while dispatcher.poll_transmit(t0()).is_some() {}
    dispatcher.deliver();
    drop(dispatcher);
    // Run before the close, the metadata call would wait for a connection instead.
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(Err(RequestError::ClientClosed)));
    closing.join().unwrap();
}

#[test]
fn a_blocking_call_the_driver_refuses_goes_through_the_intake() {
    let (handle, driver) = on_caller(true);
    let inline = handle.with_inline(driver.clone());
    let app = thread::spawn(move || inline.metrics_blocking());
    thread::sleep(SETTLE);
    step(&mut driver.dispatcher.lock().unwrap());
    assert!(app.join().unwrap().contains_key("record-send-total"));
}

#[test]
fn outcomes_delivered_off_the_driver_thread_wait_for_it_with_the_events_after_them() {
    let mut config = Config::new("127.0.0.1:9092").unwrap();
    config.producer.max_request_size = 1_000;
    let (handle, mut dispatcher) = start(config, t0(), 8).unwrap();
    let called = Arc::new(AtomicUsize::new(0));
    let counter = called.clone();
    let record = ProducerRecord::new("t", vec![0u8; 2_000]);
    handle
        .send_with_callback_blocking(record, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert!(take_one(&mut dispatcher), "the send");
    // Its outcome (too large) is known; a flush after it is answered after it.
    let flush = thread::spawn(move || handle.flush_blocking());
    thread::sleep(SETTLE);
    assert!(take_one(&mut dispatcher), "the flush");
    assert!(dispatcher.deliver_answers(), "the outcome is held");
    thread::sleep(SETTLE);
    assert_eq!(called.load(Ordering::SeqCst), 0, "no callback off the driver thread");
    assert!(!flush.is_finished(), "the flush waits for the outcome before it");
    dispatcher.deliver();
    assert_eq!(called.load(Ordering::SeqCst), 1);
    flush.join().unwrap();
}

#[test]
fn a_refused_send_is_answered_by_deliver_not_where_the_lane_is_drained() {
    let (handle, mut dispatcher) = started(8);
    let outcome = Arc::new(std::sync::Mutex::new(None));
    let seen = outcome.clone();
    let closer = handle.clone();
    let closed = thread::spawn(move || closer.close_blocking());
    step(&mut dispatcher);
    closed.join().unwrap();
    handle
        .send_with_callback_blocking(ProducerRecord::new("t", "v"), move |r| *seen.lock().unwrap() = Some(r.is_err()))
        .unwrap();
    assert!(take_one(&mut dispatcher), "the send, refused by the closed client");
    assert!(dispatcher.deliver_answers(), "its outcome is held");
    assert_eq!(*outcome.lock().unwrap(), None, "no callback off the driver thread");
    dispatcher.deliver();
    assert_eq!(*outcome.lock().unwrap(), Some(true), "refused");
}
