//! A counting global allocator: live heap bytes and their peak, process-wide.
//!
//! A test binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: smux_tests::mem::Counting = smux_tests::mem::Counting;
//! ```
//!
//! and brackets a case with [`Probe::start`] and [`Probe::peak`]. The figures cover
//! the whole process (the session under test, its runtime and the test's own peer),
//! so tests that read them run one at a time (see [`crate::serial`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
#[derive(Debug, Clone, Copy)]
pub struct Counting;

fn added(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn removed(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counters are only bookkeeping beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size),
        // which is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator (so `System`) returned, with
        // the layout it was allocated with.
        unsafe { System.dealloc(ptr, layout) };
        removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block `System` returned, its layout, and a valid
        // new size, as `System::realloc` requires.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            removed(layout.size());
            added(new_size);
        }
        p
    }
}

/// Live heap bytes now (0 if the counting allocator is not installed).
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Measures the peak live heap of one test case above the heap live at its start.
#[derive(Debug)]
pub struct Probe {
    base: usize,
}

impl Probe {
    /// Starts measuring: the peak is reset to the heap live now.
    pub fn start() -> Probe {
        let base = live();
        PEAK.store(base, Ordering::Relaxed);
        Probe { base }
    }

    /// Peak live heap since [`Probe::start`], above the heap live then.
    pub fn peak(&self) -> usize {
        PEAK.load(Ordering::Relaxed).saturating_sub(self.base)
    }

    /// Checks the peak against `bound` and reports both (with `what` the case).
    pub fn check(&self, what: &str, bound: usize) -> usize {
        let peak = self.peak();
        eprintln!(
            "{what}: peak live heap {} KiB (bound {} KiB)",
            peak / 1024,
            bound / 1024
        );
        assert!(
            peak <= bound,
            "{what}: peak live heap {peak} bytes exceeds the bound of {bound} bytes"
        );
        peak
    }
}

/// `n` KiB.
pub const fn kib(n: usize) -> usize {
    n * 1024
}

/// `n` MiB.
pub const fn mib(n: usize) -> usize {
    n * 1024 * 1024
}
