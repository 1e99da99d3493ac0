//! The local writer thread (`hivelog-output`): formats queued records, copies the lines the
//! callers formatted themselves, and writes many lines per `write(2)`.
//!
//! Why a thread: with the calling thread writing, a reader of stdout that stops reading (a
//! container log driver in blocking mode whose destination is slow) stops every log call of
//! every thread, and each line pays a syscall. Here the caller only captures and queues
//! ([`crate::line_queue`]); this thread takes everything queued at once, formats it into one
//! buffer, and writes it with one call (cut at [`CHUNK`] bytes, between lines). Lines stay
//! whole and in the order they were queued. When only caller-formatted lines were queued (the
//! writer had fallen behind, see `line_queue`), their buffer is written as it is, without a
//! copy, [`CHUNK`] by [`CHUNK`]. Formatted records go back to the queue's pool of spares
//! instead of being freed.
//!
//! There is no flush interval: the thread drains continuously. When lines arrive slower than it
//! writes them, each is written as soon as it is queued (or when the writer's nap after a write
//! ends, at most 2 ms, see `line_queue::LINGER`); when faster, they gather while the previous write
//! runs, and the next write takes them all. File rotation happens here too,
//! between two lines.
//!
//! Nothing on this thread logs through `tracing` (its diagnostics go to stderr), so unlike the
//! sinks' threads it sets no `Dispatch::none()` default: a scoped dispatcher anywhere in the
//! process moves every thread's log call off `tracing`'s global fast path.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hivelog_core::Record;

use crate::line_queue::{Batch, LineQueue, SPARES, SPARE_MAX};
use crate::target::Lines;

/// The largest buffer written with one call: 256 KiB, several pipe buffers' worth, so a
/// flood costs a few syscalls per thousand lines while a buffer stays small in memory.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Starts the writer thread; it stops once `queue` is closed and drained.
pub(crate) fn spawn(queue: Arc<LineQueue>, lines: Arc<Lines>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("hivelog-output".into())
        .spawn(move || run(&queue, &lines))?;
    Ok(())
}

fn run(queue: &LineQueue, lines: &Lines) {
    let mut batch = Batch::default();
    let mut recycled = Vec::new();
    let mut buf = Vec::with_capacity(CHUNK);
    let (mut count, mut bytes, mut reported) = (0, 0, 0);
    while queue.next(&mut batch, &mut recycled, count, bytes) {
        queue.warn_dropped(lines.name(), &mut reported);
        count = batch.lines();
        bytes = batch.bytes();
        let mut accounted = 0;
        let wrote = std::panic::catch_unwind(AssertUnwindSafe(|| {
            write_batch(
                queue,
                lines,
                &mut batch,
                &mut buf,
                &mut accounted,
                &mut recycled,
            )
        }));
        if wrote.is_err() {
            // A bug in formatting: count the rest as failed rather than lose the thread.
            lines.count_failed(count - accounted);
            hivelog_core::diag::warn(
                lines.name(),
                "writer-panic",
                "formatting a log line panicked; the lines of that write are counted as failed",
            );
            buf.clear();
        }
        batch.records.clear();
        batch.text.clear();
        batch.text_lines = 0;
        recycled.truncate(SPARES);
        // After a burst, give back the peak's memory rather than keep it forever.
        if batch.records.capacity() > 65_536 {
            batch.records.shrink_to(4096);
        }
        if batch.text.capacity() > 4 * CHUNK {
            batch.text = Vec::new();
        }
        if buf.capacity() > 4 * CHUNK {
            buf = Vec::with_capacity(CHUNK);
        }
    }
    queue.warn_dropped(lines.name(), &mut reported);
}

/// Keeps a formatted record for a later capture, if it is small and the pool is not full.
///
/// The record keeps its span reference: the log call that reuses it releases it. Releasing it
/// here would write the span's reference count from this thread, and every event in that span
/// (whose log call increments the count) would then wait for that cache line to come back from
/// this core: about 60 ns per event on two cores (BENCHMARKS.md section 7b). A span whose own
/// fields are large is released here, so that spares never keep more than [`SPARE_MAX`] of a
/// node's fields alive each.
#[allow(
    clippy::vec_box,
    reason = "records move between the pool and the queue by pointer"
)]
fn recycle(mut record: Box<Record>, recycled: &mut Vec<Box<Record>>) {
    if record.size() > SPARE_MAX || recycled.len() >= SPARES {
        return;
    }
    if record
        .span
        .as_ref()
        .is_some_and(|s| s.fields.heap_size() > SPARE_MAX)
    {
        record.span = None;
    }
    recycled.push(record);
}

/// Writes `batch` in the order its lines were logged: its records formatted, its callers'
/// lines copied; `accounted` counts the lines already written or counted as failed.
#[allow(
    clippy::vec_box,
    reason = "records move between the pool and the queue by pointer"
)]
fn write_batch(
    queue: &LineQueue,
    lines: &Lines,
    batch: &mut Batch,
    buf: &mut Vec<u8>,
    accounted: &mut u64,
    recycled: &mut Vec<Box<Record>>,
) {
    if lines.is_broken() {
        lines.count_failed(batch.lines());
        *accounted = batch.lines();
        for q in batch.records.drain(..) {
            recycle(q.record, recycled);
        }
        return;
    }
    let text = &batch.text;
    // How far `text` has been taken: bytes and lines.
    let mut pos = (0, 0);
    let mut in_buf = 0;
    for q in batch.records.drain(..) {
        if q.at > pos.0 {
            let to = (q.at, q.at_lines);
            copy_text(queue, lines, text, pos, to, buf, &mut in_buf, accounted);
            pos = to;
        }
        lines.format(&q.record, buf);
        in_buf += 1;
        recycle(q.record, recycled);
        if buf.len() >= CHUNK {
            write(queue, lines, buf, in_buf);
            *accounted += in_buf;
            in_buf = 0;
            buf.clear();
        }
    }
    if text.len() > pos.0 {
        let to = (text.len(), batch.text_lines);
        copy_text(queue, lines, text, pos, to, buf, &mut in_buf, accounted);
    }
    if in_buf > 0 {
        write(queue, lines, buf, in_buf);
        *accounted += in_buf;
        buf.clear();
    }
}

/// Appends the caller-formatted lines `text[from..to]` (offsets and line counts) to `buf`;
/// when they are long, writes what `buf` holds, then them as they are, [`CHUNK`] by [`CHUNK`].
#[allow(clippy::too_many_arguments)]
fn copy_text(
    queue: &LineQueue,
    lines: &Lines,
    text: &[u8],
    from: (usize, u64),
    to: (usize, u64),
    buf: &mut Vec<u8>,
    in_buf: &mut u64,
    accounted: &mut u64,
) {
    let (part, n) = (&text[from.0..to.0], to.1 - from.1);
    if part.len() < CHUNK / 2 {
        buf.extend_from_slice(part);
        *in_buf += n;
        if buf.len() >= CHUNK {
            write(queue, lines, buf, *in_buf);
            *accounted += *in_buf;
            *in_buf = 0;
            buf.clear();
        }
        return;
    }
    if *in_buf > 0 {
        write(queue, lines, buf, *in_buf);
        *accounted += *in_buf;
        *in_buf = 0;
        buf.clear();
    }
    write_chunks(queue, lines, part, n);
    *accounted += n;
}

/// Writes `text` (`n` whole lines) in writes of at most [`CHUNK`] bytes cut after a newline (a
/// longer line goes whole). Why not one write: the callers' lines of a burst can reach
/// megabytes, and a `write(2)` of 13 MB to a file took 30 ms here, long enough to look like a
/// stalled output (`line_queue::STALLED_AFTER`): the callers then stopped formatting, and a
/// burst that only needed a busy writer lost lines to the budget.
fn write_chunks(queue: &LineQueue, lines: &Lines, mut text: &[u8], mut n: u64) {
    while text.len() > CHUNK {
        let cut = match text[..CHUNK].iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => text
                .iter()
                .position(|&b| b == b'\n')
                .map_or(text.len(), |i| i + 1),
        };
        let (piece, rest) = text.split_at(cut);
        let k = if rest.is_empty() {
            n
        } else {
            (piece.iter().filter(|&&b| b == b'\n').count() as u64).min(n)
        };
        write(queue, lines, piece, k);
        (text, n) = (rest, n - k);
    }
    if !text.is_empty() {
        write(queue, lines, text, n);
    }
}

/// Writes `buf` (`n` whole lines), telling the queue while the call lasts (a write that does not
/// return is a stalled output, see `line_queue::STALLED_AFTER`).
fn write(queue: &LineQueue, lines: &Lines, buf: &[u8], n: u64) {
    queue.writing(true);
    lines.write(buf, n);
    queue.writing(false);
}
