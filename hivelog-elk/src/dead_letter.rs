//! `HIVELOG_ES_DEAD_LETTER`: rejected documents, kept for a human.
//!
//! A document Elasticsearch refuses for good (a mapping conflict, a malformed field) is lost
//! from the index; with a dead-letter path it is appended to a local NDJSON file instead, one
//! line per document, with the reason, so it can be fixed and replayed with `_bulk`:
//!
//! ```json
//! {"time":"2025-03-31T15:45:10.621Z","status":400,"reason":"document_parsing_exception: …","action":{"create":{"_index":"logs-web","_id":"…"}},"document":{…}}
//! ```
//!
//! Writes are synchronous on the sink's own thread: rejections are rare, and the file must
//! hold the line before the batch is reported. The file is opened once, in append mode
//! (created if missing); a write failure is reported on stderr and never stops delivery.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use hivelog_core::format::emit::write_json_str;
use hivelog_core::format::time::write_rfc3339;

/// An append-only NDJSON file of rejected documents.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    path: PathBuf,
    file: Option<File>,
    line: Vec<u8>,
}

impl DeadLetter {
    pub(crate) fn new(path: PathBuf) -> Self {
        DeadLetter {
            path,
            file: None,
            line: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one rejected document; `action` and `document` are the request's own lines.
    pub(crate) fn write(
        &mut self,
        status: u16,
        reason: &str,
        action: &[u8],
        document: &[u8],
    ) -> std::io::Result<()> {
        let l = &mut self.line;
        l.clear();
        l.extend_from_slice(b"{\"time\":\"");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        write_rfc3339(l, now.as_secs(), now.subsec_nanos(), 3);
        l.extend_from_slice(b"\",\"status\":");
        l.extend_from_slice(status.to_string().as_bytes());
        l.extend_from_slice(b",\"reason\":");
        write_json_str(l, reason);
        l.extend_from_slice(b",\"action\":");
        l.extend_from_slice(action);
        l.extend_from_slice(b",\"document\":");
        l.extend_from_slice(document);
        l.extend_from_slice(b"}\n");
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let file = self.file.as_mut().expect("opened above");
        // One write per line: with O_APPEND, lines from several processes do not interleave.
        file.write_all(&self.line)
    }
}
