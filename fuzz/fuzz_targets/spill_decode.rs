//! The spill codec's `decode` on arbitrary bytes, as if their frame checksum held (the segment
//! layer is bypassed): a record or an error, never a panic; and a decoded record must print
//! in every timestamp format, as a sink would write it.
//!
//! `cargo +nightly fuzz run spill_decode -- -max_total_time=600` (from the repository root).
#![no_main]

use std::sync::OnceLock;

use hivelog_core::format::TimestampFormat;
use hivelog_core::spill::codec::decode;
use hivelog_core::Format;
use libfuzzer_sys::fuzz_target;

fn formats() -> &'static [Format] {
    static F: OnceLock<Vec<Format>> = OnceLock::new();
    F.get_or_init(|| {
        TimestampFormat::CHOICES
            .iter()
            .map(|(_, t)| {
                Format::builder()
                    .fields("timestamp,level,target,message,module,file,line,spans,thread")
                    .unwrap()
                    .timestamp(*t)
                    .build()
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode(data) {
        let mut out = Vec::new();
        for f in formats() {
            out.clear();
            f.write_json(&r, &mut out);
        }
    }
});
