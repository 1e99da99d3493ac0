//! Proves the test Forward receiver against clients hivelog did not write: the official Python
//! `fluent-logger` (Message mode, integer and EventTime) and frames built by hand with python
//! `msgpack` (Forward, PackedForward, CompressedPackedForward with two gzip members, acks,
//! the HELO/PING/PONG handshake computed with `hashlib`). A receiver only ever tested against
//! hivelog would prove nothing about hivelog.

use std::process::Command;
use std::time::Duration;

use hivelog_tests::forward::{Fault, ForwardReceiver, Mode, ReceiverConfig};
use rmpv::Value;

/// Runs a python script with the receiver's port as `PORT`; returns its stdout.
fn python(port: u16, script: &str) -> String {
    let out = Command::new(hivelog_tests::peers::python())
        .arg("-c")
        .arg(format!("PORT = {port}\n{script}"))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const FRAMES: &str = r#"
import socket, msgpack, gzip, struct, hashlib, json
def et(s, ns):
    return msgpack.ExtType(0, struct.pack(">II", s, ns))
def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    return s, msgpack.Unpacker(raw=False)
def recv(s, u):
    while True:
        for v in u:
            return v
        data = s.recv(65536)
        if not data:
            return None
        u.feed(data)
"#;

#[test]
fn official_fluent_logger_message_mode_with_integer_time() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    python(
        r.port(),
        r#"
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port=PORT)
assert s.emit_with_time('follow', 1700000000, {'from': 'userA', 'n': 7, 'f': 1.5, 'ok': True, 'none': None, 'list': [1, 'a']}), s.last_error
s.close()
"#,
    );
    assert_eq!(r.wait_for(1, Duration::from_secs(5)), 1);
    let ev = &r.events()[0];
    assert_eq!(ev.tag, "app.follow");
    assert_eq!(
        (ev.secs, ev.nanos, ev.event_time),
        (1_700_000_000, 0, false)
    );
    assert_eq!(ev.str("from"), Some("userA"));
    assert_eq!(ev.get("n"), Some(&Value::from(7)));
    assert_eq!(ev.get("f"), Some(&Value::F64(1.5)));
    assert_eq!(ev.get("ok"), Some(&Value::Boolean(true)));
    assert_eq!(ev.get("none"), Some(&Value::Nil));
    assert_eq!(
        ev.get("list"),
        Some(&Value::Array(vec![1.into(), "a".into()]))
    );
    assert_eq!(r.messages()[0].mode, Mode::Message);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}

#[test]
fn official_fluent_logger_with_nanosecond_precision_sends_event_time() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    python(
        r.port(),
        r#"
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port=PORT, nanosecond_precision=True)
assert s.emit_with_time('ns', sender.EventTime(1700000000, 123456789), {'k': 'v'}), s.last_error
assert s.emit('now', {'k': 'w'}), s.last_error
s.close()
"#,
    );
    assert_eq!(r.wait_for(2, Duration::from_secs(5)), 2);
    let evs = r.events();
    assert_eq!(evs[0].tag, "app.ns");
    assert_eq!(
        (evs[0].secs, evs[0].nanos, evs[0].event_time),
        (1_700_000_000, 123_456_789, true)
    );
    assert!(evs[1].event_time);
    assert!(evs[1].secs > 1_700_000_000);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}

#[test]
fn hand_made_forward_packed_and_compressed_frames_decode_and_are_acked() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    let out = python(
        r.port(),
        &format!(
            "{FRAMES}{}",
            r#"
s, u = connect()
acks = []
# Forward mode, chunk as str.
s.sendall(msgpack.packb(["fwd", [[et(1, 2), {"a": 1}], [3, {"a": 2}]], {"chunk": "c1", "size": 2}]))
acks.append(recv(s, u))
# PackedForward: a bin of concatenated entries.
packed = msgpack.packb([et(5, 999999999), {"b": "x"}]) + msgpack.packb([et(6, 0), {"b": "y"}])
s.sendall(msgpack.packb(["packed", packed, {"chunk": "c2", "size": 2}], use_bin_type=True))
acks.append(recv(s, u))
# CompressedPackedForward: two concatenated gzip members.
z = gzip.compress(msgpack.packb([et(7, 1), {"c": 1}])) + gzip.compress(msgpack.packb([et(8, 2), {"c": 2}]))
s.sendall(msgpack.packb(["gz", z, {"chunk": "c3", "size": 2, "compressed": "gzip"}], use_bin_type=True))
acks.append(recv(s, u))
# Message mode with a chunk, sent with a heartbeat nil first.
s.sendall(msgpack.packb(None) + msgpack.packb(["msg", et(9, 3), {"d": True}, {"chunk": "c4"}]))
acks.append(recv(s, u))
s.close()
print(json.dumps(acks))
"#
        ),
    );
    assert_eq!(
        out.trim(),
        r#"[{"ack": "c1"}, {"ack": "c2"}, {"ack": "c3"}, {"ack": "c4"}]"#
    );
    let evs = r.events();
    let got: Vec<(&str, u64, u32)> = evs
        .iter()
        .map(|e| (e.tag.as_str(), e.secs, e.nanos))
        .collect();
    assert_eq!(
        got,
        vec![
            ("fwd", 1, 2),
            ("fwd", 3, 0),
            ("packed", 5, 999_999_999),
            ("packed", 6, 0),
            ("gz", 7, 1),
            ("gz", 8, 2),
            ("msg", 9, 3)
        ]
    );
    assert_eq!(evs[3].str("b"), Some("y"));
    assert_eq!(evs[5].get("c"), Some(&Value::from(2)));
    let modes: Vec<Mode> = r.messages().iter().map(|m| m.mode).collect();
    assert_eq!(
        modes,
        vec![
            Mode::Forward,
            Mode::PackedForward,
            Mode::CompressedPackedForward,
            Mode::Message
        ]
    );
    assert_eq!(r.messages()[2].gzip_members, 2);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}

#[test]
fn a_wrong_size_option_is_reported_as_a_protocol_error() {
    let r = ForwardReceiver::start(ReceiverConfig::default());
    python(
        r.port(),
        &format!(
            "{FRAMES}{}",
            r#"
s, u = connect()
s.sendall(msgpack.packb(["t", [[1, {"a": 1}]], {"chunk": "x", "size": 5}]))
recv(s, u)
s.close()
"#
        ),
    );
    assert_eq!(r.errors(), vec!["size option 5 but 1 entries".to_owned()]);
}

const HANDSHAKE: &str = r#"
import os
def handshake(key):
    s, u = connect()
    helo = recv(s, u)
    assert helo[0] == "HELO", helo
    nonce = helo[1]["nonce"]
    nonce = nonce if isinstance(nonce, bytes) else nonce.encode()
    salt = os.urandom(16).hex().encode()
    me = b"python-client"
    digest = hashlib.sha512(salt + me + nonce + key).hexdigest()
    s.sendall(msgpack.packb(["PING", me.decode(), salt.decode(), digest, "", ""]))
    pong = recv(s, u)
    ok = pong is not None and pong[1] and pong[4] == hashlib.sha512(salt + pong[3].encode() + nonce + key).hexdigest()
    return s, u, pong, ok
"#;

#[test]
fn handshake_with_the_right_key_verifies_both_ways_and_lets_events_through() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("s3cret"));
    let out = python(
        r.port(),
        &format!(
            "{FRAMES}{HANDSHAKE}{}",
            r#"
s, u, pong, ok = handshake(b"s3cret")
s.sendall(msgpack.packb(["auth", [[1, {"a": 1}]], {"chunk": "k1"}]))
print(ok, recv(s, u))
"#
        ),
    );
    assert_eq!(out.trim(), "True {'ack': 'k1'}");
    assert_eq!(r.handshakes(), (1, 0));
    assert_eq!(r.count(), 1);
}

#[test]
fn handshake_with_a_wrong_key_gets_pong_false_and_a_closed_connection() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("s3cret"));
    let out = python(
        r.port(),
        &format!(
            "{FRAMES}{HANDSHAKE}{}",
            r#"
s, u, pong, ok = handshake(b"wrong")
print(ok, pong[1], pong[2], recv(s, u))
"#
        ),
    );
    assert_eq!(out.trim(), "False False shared_key mismatch None");
    assert_eq!(r.handshakes(), (0, 1));
}

#[test]
fn events_sent_before_ping_are_dropped() {
    let r = ForwardReceiver::start(ReceiverConfig::default().shared_key("k"));
    python(
        r.port(),
        &format!(
            "{FRAMES}{}",
            r#"
s, u = connect()
recv(s, u)
s.sendall(msgpack.packb(["early", [[1, {"a": 1}]]]))
s.close()
"#
        ),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(r.count(), 0);
    assert_eq!(
        r.errors(),
        vec!["event message before PING was dropped".to_owned()]
    );
}

#[test]
fn fault_modes_misbehave_as_documented() {
    // Wrong server digest: the client's own check must fail.
    let r = ForwardReceiver::start(
        ReceiverConfig::default()
            .shared_key("k")
            .fault(Fault::WrongServerDigest),
    );
    let out = python(
        r.port(),
        &format!("{FRAMES}{HANDSHAKE}s, u, pong, ok = handshake(b'k')\nprint(pong[1], ok)"),
    );
    assert_eq!(out.trim(), "True False");

    // Close after HELO: no PONG.
    let r = ForwardReceiver::start(
        ReceiverConfig::default()
            .shared_key("k")
            .fault(Fault::CloseAfterHelo),
    );
    let out = python(
        r.port(),
        &format!("{FRAMES}{HANDSHAKE}s, u, pong, ok = handshake(b'k')\nprint(pong)"),
    );
    assert_eq!(out.trim(), "None");

    // Never ack: records, does not answer.
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::NeverAck));
    let out = python(
        r.port(),
        &format!(
            "{FRAMES}{}",
            r#"
s, u = connect()
s.settimeout(0.5)
s.sendall(msgpack.packb(["t", [[1, {"a": 1}]], {"chunk": "x"}]))
try:
    print(recv(s, u))
except socket.timeout:
    print("timeout")
"#
        ),
    );
    assert_eq!(out.trim(), "timeout");
    assert_eq!(r.count(), 1);

    // Drop the 2nd message: the first is acked, the connection closes on the second.
    let r = ForwardReceiver::start(ReceiverConfig::default().fault(Fault::DropMessage(2)));
    let out = python(
        r.port(),
        &format!(
            "{FRAMES}{}",
            r#"
s, u = connect()
s.sendall(msgpack.packb(["t", [[1, {"a": 1}]], {"chunk": "1"}]))
a = recv(s, u)
s.sendall(msgpack.packb(["t", [[2, {"a": 2}]], {"chunk": "2"}]))
print(a, recv(s, u))
"#
        ),
    );
    assert_eq!(out.trim(), "{'ack': '1'} None");
    assert_eq!(r.count(), 1);
}

#[test]
fn a_stopped_receiver_refuses_and_a_restarted_one_keeps_its_events() {
    let mut r = ForwardReceiver::start(ReceiverConfig::default());
    let send = r#"
import socket, msgpack
try:
    s = socket.create_connection(("127.0.0.1", PORT), timeout=2)
    s.sendall(msgpack.packb(["t", [[1, {"a": 1}]]]))
    s.close()
    print("sent")
except ConnectionRefusedError:
    print("refused")
"#;
    assert_eq!(python(r.port(), send).trim(), "sent");
    assert_eq!(r.wait_for(1, Duration::from_secs(5)), 1);
    r.stop();
    assert_eq!(python(r.port(), send).trim(), "refused");
    r.start_again();
    assert_eq!(python(r.port(), send).trim(), "sent");
    assert_eq!(r.wait_for(2, Duration::from_secs(5)), 2);

    let mut down = ForwardReceiver::down(ReceiverConfig::default());
    assert_eq!(python(down.port(), send).trim(), "refused");
    down.start_again();
    assert_eq!(python(down.port(), send).trim(), "sent");
}
