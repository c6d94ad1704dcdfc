//! A delivery callback kept inside the record's own slot instead of in a heap allocation.
//!
//! Boxing every record's callback cost a `malloc` on the sending thread and a `free` on the
//! driver's; with the blocking driver those are two threads, and glibc's allocator pays for
//! memory that crosses them. Reading the box back at delivery was also a cache miss per
//! record, as it sits wherever the allocator put it, while the slot holding it is read in
//! order. So a callback whose captures fit in [`ROOM`] bytes lives inline; a larger one is
//! boxed and the box lives inline.

use std::marker::PhantomData;
use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

use crate::producer::{ProduceError, RecordMetadata};

/// A record's outcome, as a callback receives it.
type Outcome = Result<RecordMetadata, ProduceError>;

/// Bytes a callback may capture and still be stored inline: a few counters, references or
/// handles (`sansa perf produce`'s latency callback takes 48).
const ROOM: usize = 48;

#[repr(C, align(8))]
struct Room([MaybeUninit<u8>; ROOM]);

/// A callback run once with its record's outcome, or dropped unrun.
pub(crate) struct Callback {
    room: Room,
    /// Moves the closure out of `room` and calls it.
    call: unsafe fn(&mut Room, Outcome),
    /// Drops the closure in `room` in place.
    drop: unsafe fn(&mut Room),
    /// `Send` only because `new` requires it of the closure; never `Sync`.
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: `Callback::new` takes only `Send` closures, and `room` holds nothing else.
#[allow(unsafe_code)]
unsafe impl Send for Callback {}

impl Callback {
    pub(crate) fn new<F: FnOnce(Outcome) + Send + 'static>(f: F) -> Self {
        if fits::<F>() {
            Self::inline(f)
        } else {
            Self::inline(Box::new(f))
        }
    }

    #[allow(unsafe_code)]
    fn inline<F: FnOnce(Outcome) + Send + 'static>(f: F) -> Self {
        assert!(fits::<F>(), "only closures that fit are stored inline");
        let mut room = Room([MaybeUninit::uninit(); ROOM]);
        // SAFETY: `room` is large and aligned enough for `F` (checked above); `call` or
        // `drop` takes the value out exactly once, as `Callback` never copies it otherwise.
        unsafe { room.0.as_mut_ptr().cast::<F>().write(f) };
        Callback { room, call: call_in_place::<F>, drop: drop_in_place::<F>, _not_sync: PhantomData }
    }

    /// Runs the callback with `outcome`.
    #[allow(unsafe_code)]
    pub(crate) fn call(self, outcome: Outcome) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the closure is still in `room` (neither called nor dropped: `self` is
        // consumed here and its `Drop` will not run).
        unsafe { (this.call)(&mut this.room, outcome) }
    }
}

impl Drop for Callback {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `call` consumes the callback without dropping it, so the closure is still
        // in `room` whenever this runs.
        unsafe { (self.drop)(&mut self.room) }
    }
}

const fn fits<F>() -> bool {
    size_of::<F>() <= ROOM && align_of::<F>() <= align_of::<Room>()
}

/// SAFETY: `room` holds an `F` that is neither called nor dropped, and is not used again.
#[allow(unsafe_code)]
unsafe fn call_in_place<F: FnOnce(Outcome)>(room: &mut Room, outcome: Outcome) {
    let f = unsafe { room.0.as_ptr().cast::<F>().read() };
    f(outcome);
}

/// SAFETY: as [`call_in_place`].
#[allow(unsafe_code)]
unsafe fn drop_in_place<F>(room: &mut Room) {
    unsafe { room.0.as_mut_ptr().cast::<F>().drop_in_place() };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Counts its drops, so that a closure capturing it shows whether it was dropped once.
    struct Tracked(Arc<AtomicUsize>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn outcome() -> Outcome {
        Err(ProduceError::Closed)
    }

    /// Calls a callback that captures a drop counter, a result sink and `N` more bytes.
    fn run_with<const N: usize>() {
        let seen = Arc::new(Mutex::new(None));
        let drops = Arc::new(AtomicUsize::new(0));
        let (tracked, into, padding) = (Tracked(Arc::clone(&drops)), Arc::clone(&seen), [N as u8; N]);
        let callback = Callback::new(move |r: Outcome| {
            let _tracked = &tracked;
            *into.lock().unwrap() = Some((padding.len(), padding.last().copied(), r.is_err()));
        });
        callback.call(outcome());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "captures dropped once after the call ({N})");
        assert_eq!(*seen.lock().unwrap(), Some((N, (N > 0).then_some(N as u8), true)));
    }

    #[test]
    fn inline_and_boxed_closures_run_once_and_drop_their_captures_once() {
        // Sixteen bytes of counter and sink, then padding: inline up to 32, boxed past it.
        run_with::<0>();
        run_with::<32>();
        run_with::<33>();
        run_with::<4096>();
    }

    #[test]
    fn a_callback_dropped_unrun_drops_its_captures_and_never_runs() {
        let drops = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let small = {
            let (t, r) = (Tracked(Arc::clone(&drops)), Arc::clone(&ran));
            Callback::new(move |_| drop((t, r.fetch_add(1, Ordering::SeqCst))))
        };
        let large = {
            let (t, r, pad) = (Tracked(Arc::clone(&drops)), Arc::clone(&ran), [0u64; 16]);
            Callback::new(move |_| drop((t, r.fetch_add(1, Ordering::SeqCst), pad)))
        };
        drop((small, large));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn closures_up_to_the_room_stay_inline_and_over_aligned_ones_are_boxed() {
        assert!(fits::<[u64; 6]>());
        assert!(!fits::<[u64; 7]>());
        #[repr(align(16))]
        struct Wide(#[allow(dead_code)] u8);
        assert!(!fits::<Wide>());
        assert!(fits::<Box<Wide>>());
        let ran = Arc::new(AtomicUsize::new(0));
        let r = Arc::clone(&ran);
        let wide = Wide(1);
        Callback::new(move |_| {
            let _wide = &wide;
            r.fetch_add(1, Ordering::SeqCst);
        })
        .call(outcome());
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_callback_that_panics_drops_its_captures_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let t = Tracked(Arc::clone(&drops));
        let callback = Callback::new(move |_| {
            let _t = &t;
            panic!("the application's callback panicked");
        });
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback.call(outcome()))).is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
