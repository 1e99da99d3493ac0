//! What waits in the spill folder (`HIVELOG_SPILL_DIR`): the segments each destination will
//! send first at the service's next start. Read without taking the folders' locks, so a
//! running service is neither disturbed nor blocked.

use std::fmt::Write as _;

use crate::settings::Resolved;

/// One line per enabled destination: its folder and the segments and bytes waiting there;
/// empty when no spill folder is configured.
pub fn text(r: &Resolved) -> String {
    let Some(spill) = &r.pipeline.spill else {
        return String::new();
    };
    let sinks = r
        .destinations
        .iter()
        .filter(|(_, configured)| configured.is_some())
        .map(|(d, _)| d.name());
    let mut out = format!(
        "\nSpill folder {} ({}, {} mode):\n",
        spill.dir.display(),
        bytes(spill.max_bytes),
        spill.mode
    );
    for sink in sinks {
        let folder = hivelog_core::spill::folder(&spill.dir, r.format.service(), sink);
        let line = match hivelog_core::spill::list(&folder) {
            Ok(segs) if segs.is_empty() => "nothing waiting".to_owned(),
            Ok(segs) => format!(
                "{} segments, {} waiting for the next start",
                segs.len(),
                bytes(segs.iter().map(|(_, b)| b).sum())
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "not created yet".to_owned(),
            Err(e) => format!("cannot be read: {e}"),
        };
        let _ = writeln!(out, "  {sink:<14} {}: {line}", folder.display());
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} bytes"),
    }
}
