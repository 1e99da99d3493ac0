//! Asks the CPU to fetch, for writing, the memory the next log call will capture into, while
//! the service's own code runs.
//!
//! Why: the record a log call captures into is one the writer thread formatted earlier, so its
//! cache lines sit in the writer core's cache too, and every store into them must first take
//! them back (a cross-core round trip each). Stores wait in the store buffer, but the next
//! locked instruction (the queue's lock, a span's reference count) or system call waits for
//! all of them. A `prefetchw` of those lines at the end of the previous log call moves that
//! round trip off the log call: measured with one event every 20 µs on two cores, 246 → 206 ns
//! per call (BENCHMARKS.md section 7b, the previous round's pace).
//!
//! The push itself stores into the queue's next slot, which the writer read when it last
//! drained that buffer, and reads the pool's next spare pointer, which the writer stored; the
//! unlock waits for both. [`next_slots`] fetches them at the end of the previous push: the
//! push's critical section went from about 140 to 110 cycles (`rdtsc`), and the paced call
//! (one event every 10 µs, two cores) from 197 to 188 ns and 191 to 184 ns in two A/B runs of
//! 16 and 24 pairs (BENCHMARKS.md section 7b).
//!
//! A hint only: it never faults, and on a CPU without `PREFETCHW` (CPUID 8000_0001h ECX bit 8,
//! checked once) or another architecture it does nothing.

use std::collections::VecDeque;

use hivelog_core::Record;

/// The most bytes of a record's buffers prefetched: what a typical event writes.
const MAX_BYTES: usize = 256;

/// Prefetches, for writing, the record's own lines and the start of its text and field buffers.
#[inline]
pub(crate) fn for_capture(record: &Record) {
    if !supported() {
        return;
    }
    lines(
        (record as *const Record).cast(),
        std::mem::size_of::<Record>(),
    );
    for (start, len) in record.fields.buffers() {
        lines(start, len.min(MAX_BYTES));
    }
}

/// Prefetches the slot after `queue`'s last element, for writing, and `pool`'s first element,
/// for reading.
#[inline]
pub(crate) fn next_slots<T, U>(queue: &VecDeque<T>, pool: &VecDeque<U>) {
    if !supported() {
        return;
    }
    let (front, back) = queue.as_slices();
    let last = if back.is_empty() { front } else { back };
    // One past the end: the next slot, unless the buffer is full or wraps there (then the
    // hint is wasted, never wrong).
    lines(last.as_ptr_range().end.cast(), size_of::<T>());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults; SSE is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(pool.as_slices().0.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pool;
}

#[cfg(target_arch = "x86_64")]
fn supported() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not checked yet, 1: no, 2: yes.
    static PREFETCHW: AtomicU8 = AtomicU8::new(0);
    match PREFETCHW.load(Ordering::Relaxed) {
        0 => {
            // Leaf 8000_0001h exists on every CPU that runs in 64-bit mode.
            let ecx = std::arch::x86_64::__cpuid(0x8000_0001).ecx;
            let yes = ecx & (1 << 8) != 0;
            PREFETCHW.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        seen => seen == 2,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn supported() -> bool {
    false
}

/// `prefetchw` on each cache line of `len` bytes from `start`.
#[inline]
fn lines(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = start as usize + len;
        let mut line = start as usize & !63;
        while line < end {
            // SAFETY: a prefetch reads nothing architecturally and never faults, whatever the
            // address; the CPU supports the instruction (`supported`).
            unsafe {
                std::arch::asm!("prefetchw [{}]", in(reg) line, options(nostack, preserves_flags, readonly));
            }
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hivelog_core::record::Str;

    #[test]
    fn prefetching_any_record_is_harmless() {
        let mut record = Record::new(tracing::Level::INFO, Str::Static("t"), 1 << 20, 0);
        for_capture(&record);
        let m = record.fields.push_str(&"x".repeat(10_000));
        record.message = Some(m);
        for_capture(&record);
        assert_eq!(record.message().len(), 10_000);
        assert_eq!(supported(), supported(), "checked once, same answer");
    }
}
