//! A counting global allocator: live heap bytes, total and per "end".
//!
//! The idle benchmark needs the heap cost of a stream on each end of a session. Both
//! ends run in this process, each on its own runtime whose threads carry a tag
//! ([`set_thread_tag`]); every allocation and deallocation is charged to the tag of the
//! thread that makes it. The two ends share nothing but a TCP socket, so what one end
//! allocates is freed by the same end and the per-tag figures stay meaningful.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Number of tags (0 is "untagged").
pub const TAGS: usize = 4;

/// The allocator installed by `main.rs`.
pub struct Counting;

static LIVE: [AtomicIsize; TAGS] = [const { AtomicIsize::new(0) }; TAGS];
static TOTAL: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    // A const-initialised Cell without a destructor: reading it never allocates,
    // so it is safe to use from inside the allocator.
    static TAG: Cell<usize> = const { Cell::new(0) };
}

fn charge(delta: isize) {
    let tag = TAG.try_with(Cell::get).unwrap_or(0);
    LIVE[tag].fetch_add(delta, Ordering::Relaxed);
    let total = TOTAL.fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 && total > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(total, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's layout and
// pointer unchanged, so `System`'s guarantees carry over; the only addition is an
// atomic counter update, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            charge(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            charge(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (we forward all calls).
        unsafe { System.dealloc(ptr, layout) };
        charge(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; same contract otherwise.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            charge(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Charges this thread's future allocations to `tag` (below [`TAGS`]).
pub fn set_thread_tag(tag: usize) {
    TAG.with(|t| t.set(tag.min(TAGS - 1)));
}

/// The tag of this thread (0 if none was set).
pub fn thread_tag() -> usize {
    TAG.try_with(Cell::get).unwrap_or(0)
}

/// Live heap bytes charged to `tag`.
pub fn live(tag: usize) -> isize {
    LIVE[tag].load(Ordering::Relaxed)
}

/// Live heap bytes of the whole process.
pub fn live_total() -> isize {
    TOTAL.load(Ordering::Relaxed)
}

/// Restarts peak tracking from the current live total.
pub fn reset_peak() {
    PEAK.store(live_total(), Ordering::Relaxed);
}

/// Highest live heap total since the last [`reset_peak`].
pub fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}
