//! One segment file: a header, then frames of `[length u32 LE][crc32 u32 LE][payload]`.
//!
//! Why a checksum per frame rather than per file: a process killed mid-write, a power loss or
//! a full disk leaves a segment whose last frame is torn; everything before it is still good
//! and must be replayed. The CRC covers the length bytes and the payload, so a flipped bit in
//! either is caught. A frame that fails its checksum is skipped (its length still says where
//! the next one starts); a length that points past the end of the file cannot be trusted to
//! find the next frame, so the rest of the file is skipped as one corrupt frame. Nothing that
//! fails these checks is ever handed to the decoder.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The first bytes of every segment (format version 1).
pub const MAGIC: &[u8; 8] = b"HVSPILL1";
/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 8;
/// Largest payload accepted when reading; larger lengths are corruption.
pub const MAX_FRAME: usize = 64 << 20;

/// Appends frames to one segment file.
pub struct SegmentWriter {
    out: BufWriter<File>,
    /// Bytes written so far, header included.
    len: u64,
}

impl SegmentWriter {
    /// Creates `path` (which must not exist) and writes the header.
    pub fn create(path: &Path) -> io::Result<SegmentWriter> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        out.write_all(MAGIC)?;
        Ok(SegmentWriter {
            out,
            len: MAGIC.len() as u64,
        })
    }

    /// Appends one frame holding `payload`; returns the bytes it takes on disk.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_FRAME)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let mut h = crc32fast::Hasher::new();
        h.update(&len.to_le_bytes());
        h.update(payload);
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&h.finalize().to_le_bytes())?;
        self.out.write_all(payload)?;
        let n = (FRAME_HEADER + payload.len()) as u64;
        self.len += n;
        Ok(n)
    }

    /// Bytes in the file once flushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether only the header was written.
    pub fn is_empty(&self) -> bool {
        self.len == MAGIC.len() as u64
    }

    /// Hands buffered frames to the operating system (they survive the process being killed).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// A handle on the same file, to `sync_data` it without holding the writer.
    pub fn file(&self) -> io::Result<File> {
        self.out.get_ref().try_clone()
    }
}

/// One item read from a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame whose checksum holds.
    Record(&'a [u8]),
    /// A frame (or the torn rest of the file) that failed the checks; skipped.
    Corrupt,
}

/// The frames of a segment's bytes, in order; see the module docs for what is skipped.
pub fn frames(data: &[u8]) -> Frames<'_> {
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        // A file cut inside its header holds nothing; anything else there is not ours.
        let at = if data.len() < MAGIC.len() && MAGIC.starts_with(data) {
            data.len()
        } else {
            usize::MAX
        };
        return Frames { data, at };
    }
    Frames {
        data,
        at: MAGIC.len(),
    }
}

/// Iterator returned by [`frames`].
pub struct Frames<'a> {
    data: &'a [u8],
    /// Next frame's offset; `usize::MAX` reports the whole file as corrupt once.
    at: usize,
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.at == usize::MAX {
            self.at = self.data.len();
            return Some(Frame::Corrupt);
        }
        let rest = &self.data[self.at..];
        if rest.is_empty() {
            return None;
        }
        let end = || self.data.len();
        if rest.len() < FRAME_HEADER {
            self.at = end();
            return Some(Frame::Corrupt);
        }
        let len_bytes: [u8; 4] = rest[..4].try_into().expect("4 bytes");
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_FRAME || len > rest.len() - FRAME_HEADER {
            self.at = end();
            return Some(Frame::Corrupt);
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        self.at += FRAME_HEADER + len;
        let mut h = crc32fast::Hasher::new();
        h.update(&len_bytes);
        h.update(payload);
        Some(if h.finalize() == crc {
            Frame::Record(payload)
        } else {
            Frame::Corrupt
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(dir: &Path, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let path = dir.join("seg");
        let _ = std::fs::remove_file(&path);
        let mut w = SegmentWriter::create(&path).unwrap();
        let mut ends = Vec::new();
        for p in payloads {
            w.append(p).unwrap();
            ends.push(w.len() as usize);
        }
        w.flush().unwrap();
        (std::fs::read(&path).unwrap(), ends)
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hivelog-seg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A crash at any byte keeps every frame completed before it and never yields garbage.
        #[test]
        fn a_crash_at_any_offset_keeps_the_complete_frames_and_skips_the_torn_one(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            cut in any::<proptest::sample::Index>(),
        ) {
            let (data, ends) = write(&dir("cut"), &payloads);
            let cut = cut.index(data.len() + 1);
            let read: Vec<Frame> = frames(&data[..cut]).collect();
            let complete = ends.iter().filter(|e| **e <= cut).count();
            let good: Vec<&[u8]> = read.iter().filter_map(|f| match f { Frame::Record(p) => Some(*p), Frame::Corrupt => None }).collect();
            prop_assert_eq!(good.len(), complete);
            for (g, p) in good.iter().zip(&payloads) {
                prop_assert_eq!(*g, p.as_slice());
            }
            let torn = cut > MAGIC.len() && !ends.contains(&cut);
            prop_assert_eq!(read.len() - good.len(), torn as usize);
        }

        /// A flipped bit anywhere is never replayed: what is read is a subsequence of what was written.
        #[test]
        fn a_flipped_bit_is_skipped_and_counted(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20),
            at in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut data, _) = write(&dir("flip"), &payloads);
            let at = at.index(data.len());
            data[at] ^= 1 << bit;
            let read: Vec<Frame> = frames(&data).collect();
            prop_assert!(read.contains(&Frame::Corrupt));
            let mut originals = payloads.iter();
            for f in &read {
                if let Frame::Record(p) = f {
                    prop_assert!(originals.any(|o| o.as_slice() == *p), "a record that was never written");
                }
            }
        }
    }
}
