//! Timestamp rendering without a date library: RFC 3339 in UTC, or epoch numbers.
//!
//! The `YYYY-MM-DDTHH:MM:SS` prefix is cached per thread for the current second, so the
//! common case writes 20 cached bytes and the fraction.

use std::cell::Cell;

/// How the `timestamp` attribute is written (`HIVELOG_TIMESTAMP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    /// `2025-03-31T15:45:10.621Z` (default).
    #[default]
    Rfc3339Ms,
    /// `2025-03-31T15:45:10.621734512Z`.
    Rfc3339Ns,
    /// Milliseconds since the Unix epoch, as a number.
    EpochMs,
    /// Nanoseconds since the Unix epoch, as a number.
    EpochNs,
}

impl TimestampFormat {
    /// The names accepted by `HIVELOG_TIMESTAMP`.
    pub const CHOICES: &'static [(&'static str, TimestampFormat)] = &[
        ("rfc3339ms", TimestampFormat::Rfc3339Ms),
        ("rfc3339ns", TimestampFormat::Rfc3339Ns),
        ("epoch_ms", TimestampFormat::EpochMs),
        ("epoch_ns", TimestampFormat::EpochNs),
    ];
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// `YYYY-MM-DDTHH:MM:SS` for `secs` since the epoch (years 0–9999).
pub fn date_time(secs: u64) -> [u8; 19] {
    let mut b = *b"0000-00-00T00:00:00";
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let y = y.clamp(0, 9999) as u32;
    two(&mut b[0..2], y / 100);
    two(&mut b[2..4], y % 100);
    two(&mut b[5..7], m);
    two(&mut b[8..10], d);
    let s = (secs % 86_400) as u32;
    two(&mut b[11..13], s / 3600);
    two(&mut b[14..16], s / 60 % 60);
    two(&mut b[17..19], s % 60);
    b
}

thread_local! {
    static PREFIX: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Writes the RFC 3339 form; `nanos_digits` is 3 or 9.
pub fn write_rfc3339(out: &mut Vec<u8>, secs: u64, nanos: u32, nanos_digits: usize) {
    let prefix = PREFIX.with(|c| {
        let (s, p) = c.get();
        if s == secs {
            p
        } else {
            let p = date_time(secs);
            c.set((secs, p));
            p
        }
    });
    out.extend_from_slice(&prefix);
    let mut frac = *b".000000000";
    let mut n = nanos;
    for i in (1..10).rev() {
        frac[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&frac[..1 + nanos_digits]);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_render() {
        assert_eq!(&date_time(0), b"1970-01-01T00:00:00");
        assert_eq!(&date_time(1_743_435_910), b"2025-03-31T15:45:10");
        assert_eq!(&date_time(951_782_400), b"2000-02-29T00:00:00");
        let mut v = Vec::new();
        write_rfc3339(&mut v, 1_743_435_910, 621_734_512, 3);
        assert_eq!(v, b"2025-03-31T15:45:10.621Z");
        v.clear();
        write_rfc3339(&mut v, 1_743_435_910, 621_734_512, 9);
        assert_eq!(v, b"2025-03-31T15:45:10.621734512Z");
    }
}
