//! `HIVELOG_OUTPUT=file:PATH`: JSON lines appended to a file, rotated hourly, daily or by size.
//!
//! The active file is always `PATH`, so `tail -F PATH` keeps working. On rotation it is renamed
//! to `PATH.<suffix>` (`PATH.2025-03-31T15` hourly, `PATH.2025-03-31` daily,
//! `PATH.2025-03-31T15-45-10` by size, with `.N` added on a name clash) and a new `PATH` is
//! opened; then only the newest `HIVELOG_FILE_KEEP` rotated files are kept (default 10).
//! Suffixes sort by time, so pruning is a sort by name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hivelog_core::format::time::date_time;

/// When the file rotates (`HIVELOG_FILE_ROTATION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rotation {
    /// Never (default).
    #[default]
    Never,
    /// At each UTC hour.
    Hourly,
    /// At each UTC day.
    Daily,
    /// When the file would exceed this many bytes.
    Size(u64),
}

/// Default number of rotated files kept (`HIVELOG_FILE_KEEP`).
pub const DEFAULT_KEEP: usize = 10;

/// An appending file writer with rotation.
#[derive(Debug)]
pub(crate) struct RollingFile {
    path: PathBuf,
    file: File,
    size: u64,
    period: u64,
    rotation: Rotation,
    keep: usize,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RollingFile {
    pub(crate) fn open(path: &Path, rotation: Rotation, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RollingFile {
            path: path.to_owned(),
            file,
            size,
            period: Self::period_of(rotation, now_secs()),
            rotation,
            keep,
        })
    }

    fn period_of(rotation: Rotation, secs: u64) -> u64 {
        match rotation {
            Rotation::Hourly => secs / 3600,
            Rotation::Daily => secs / 86_400,
            _ => 0,
        }
    }

    /// Writes whole lines (`buf` ends with `\n`), rotating first when due; a size rotation
    /// cuts between lines, so no file exceeds the limit unless one line alone does.
    ///
    /// `done` counts the bytes of `buf` written, also when an error cuts the write short.
    pub(crate) fn write_lines(&mut self, mut buf: &[u8], done: &mut usize) -> io::Result<()> {
        while !buf.is_empty() {
            let now = now_secs();
            let cut = match self.rotation {
                Rotation::Never => buf.len(),
                Rotation::Hourly | Rotation::Daily => {
                    if Self::period_of(self.rotation, now) != self.period {
                        self.rotate(now)?;
                    }
                    buf.len()
                }
                Rotation::Size(max) => match self.fitting(buf, max) {
                    Some(cut) => cut,
                    None => {
                        self.rotate(now)?;
                        continue;
                    }
                },
            };
            self.file.write_all(&buf[..cut])?;
            *done += cut;
            self.size += cut as u64;
            buf = &buf[cut..];
        }
        Ok(())
    }

    /// How many bytes of whole lines from `buf` fit under `max`; `None` when the file must
    /// rotate first. An empty file takes at least one line, however long.
    fn fitting(&self, buf: &[u8], max: u64) -> Option<usize> {
        let room = max.saturating_sub(self.size);
        if buf.len() as u64 <= room {
            return Some(buf.len());
        }
        let room = room as usize;
        match buf[..room].iter().rposition(|&b| b == b'\n') {
            Some(i) => Some(i + 1),
            None if self.size > 0 => None,
            None => Some(
                buf.iter()
                    .position(|&b| b == b'\n')
                    .map_or(buf.len(), |i| i + 1),
            ),
        }
    }

    fn suffix(&self, now: u64) -> String {
        let (secs, len) = match self.rotation {
            Rotation::Hourly => (self.period * 3600, 13),
            Rotation::Daily => (self.period * 86_400, 10),
            _ => (now, 19),
        };
        let dt = date_time(secs);
        String::from_utf8_lossy(&dt[..len]).replace(':', "-")
    }

    fn rotate(&mut self, now: u64) -> io::Result<()> {
        self.file.flush()?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut target = self
            .path
            .with_file_name(format!("{name}.{}", self.suffix(now)));
        let mut n = 1;
        while target.exists() {
            target = self
                .path
                .with_file_name(format!("{name}.{}.{n}", self.suffix(now)));
            n += 1;
        }
        fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        self.period = Self::period_of(self.rotation, now);
        self.prune(&name);
        Ok(())
    }

    fn prune(&self, name: &str) {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let prefix = format!("{name}.");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        let mut rotated: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.keep);
        for old in &rotated[..excess] {
            let _ = fs::remove_file(old);
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Parses `never`, `hourly`, `daily` or a size (`100MB`).
pub(crate) fn parse_rotation(v: &str) -> Result<Rotation, String> {
    match v.to_ascii_lowercase().as_str() {
        "never" => Ok(Rotation::Never),
        "hourly" => Ok(Rotation::Hourly),
        "daily" => Ok(Rotation::Daily),
        _ => hivelog_core::env::parse_bytes(v)
            .filter(|n| *n >= 1024)
            .map(Rotation::Size)
            .ok_or_else(|| "never, hourly, daily, or a size of at least 1KB (100MB)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }

    #[test]
    fn a_buffer_of_many_lines_is_cut_between_lines_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = RollingFile::open(&path, Rotation::Size(25), 100).unwrap();
        let long = format!("{}\n", "x".repeat(40));
        let buf = format!("line-0001\nline-0002\nline-0003\n{long}line-0004\n");
        let mut done = 0;
        f.write_lines(buf.as_bytes(), &mut done).unwrap();
        assert_eq!(done, buf.len());
        let all = files(dir.path());
        // Rotated files sort before the active one's name only by suffix; compare as a set.
        let mut got: Vec<&str> = all.iter().map(String::as_str).collect();
        got.sort();
        let mut want = vec![
            "line-0001\nline-0002\n",
            "line-0003\n",
            long.as_str(),
            "line-0004\n",
        ];
        want.sort();
        assert_eq!(
            got, want,
            "whole lines, at most 25 bytes unless one line alone is longer"
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "line-0004\n",
            "newest in the active file"
        );
    }
}
