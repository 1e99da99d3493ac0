//! The local writer thread (`hivelog-output`): formats queued records and writes many lines
//! per `write(2)`.
//!
//! Why a thread: with the calling thread writing, a reader of stdout that stops reading (a
//! container log driver in blocking mode whose destination is slow) stops every log call of
//! every thread, and each line pays a syscall. Here the caller only captures and queues
//! ([`crate::line_queue`]); this thread takes everything queued at once, formats it into one
//! buffer, and writes it with one call (cut at [`CHUNK`] bytes, between lines). Lines stay
//! whole and in the order they were queued.
//!
//! There is no flush interval: the thread drains continuously. When lines arrive slower than it
//! writes them, each is written as soon as it is queued (or when the writer's short nap after a
//! write ends, see `line_queue::LINGER`); when faster, they gather while the previous write
//! runs, and the next write takes them all. File rotation happens here too,
//! between two lines.
//!
//! Nothing on this thread logs through `tracing` (its diagnostics go to stderr), so unlike the
//! sinks' threads it sets no `Dispatch::none()` default: a scoped dispatcher anywhere in the
//! process moves every thread's log call off `tracing`'s global fast path.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use hivelog_core::Record;

use crate::line_queue::LineQueue;
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
    let mut batch = VecDeque::new();
    let mut buf = Vec::with_capacity(CHUNK);
    let (mut count, mut bytes, mut reported) = (0, 0, 0);
    while queue.next(&mut batch, count, bytes) {
        queue.warn_dropped(lines.name(), &mut reported);
        count = batch.len() as u64;
        bytes = batch.iter().map(Record::size).sum();
        let mut accounted = 0;
        let wrote = std::panic::catch_unwind(AssertUnwindSafe(|| {
            write_batch(lines, &mut batch, &mut buf, &mut accounted)
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
        batch.clear();
        // After a burst, give back the peak's memory rather than keep it forever.
        if batch.capacity() > 65_536 {
            batch.shrink_to(4096);
        }
        if buf.capacity() > 4 * CHUNK {
            buf = Vec::with_capacity(CHUNK);
        }
    }
    queue.warn_dropped(lines.name(), &mut reported);
}

/// Formats and writes `batch`, dropping each record once formatted; `accounted` counts the
/// lines already written or counted as failed.
fn write_batch(
    lines: &Lines,
    batch: &mut VecDeque<Record>,
    buf: &mut Vec<u8>,
    accounted: &mut u64,
) {
    if lines.is_broken() {
        lines.count_failed(batch.len() as u64);
        *accounted = batch.len() as u64;
        return;
    }
    let mut in_buf = 0;
    for record in batch.drain(..) {
        lines.format(&record, buf);
        in_buf += 1;
        if buf.len() >= CHUNK {
            lines.write(buf, in_buf);
            *accounted += in_buf;
            in_buf = 0;
            buf.clear();
        }
    }
    if in_buf > 0 {
        lines.write(buf, in_buf);
        *accounted += in_buf;
        buf.clear();
    }
}
