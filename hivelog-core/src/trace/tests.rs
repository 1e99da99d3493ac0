use super::*;
use proptest::prelude::*;

const TP: &str = "00-12345678901234567890123456789012-1234567890123456-01";

fn parent(tp: &str) -> Option<TraceParent> {
    TraceParent::from_w3c([tp], [])
}

fn state(values: &[&str]) -> Option<String> {
    TraceParent::from_w3c([TP], values.iter().copied())
        .unwrap()
        .state
        .map(|s| s.to_string())
}

#[test]
fn a_valid_traceparent_is_continued_with_its_flags() {
    let p = parent(TP).unwrap();
    assert_eq!(p.trace_id.to_string(), "12345678901234567890123456789012");
    assert_eq!(p.parent_id.unwrap().to_string(), "1234567890123456");
    assert_eq!(p.flags, 1);
    let ctx = TraceContext::continue_or_start(Some(&p));
    assert_eq!(ctx.trace_id, p.trace_id);
    assert_ne!(Some(ctx.span_id), p.parent_id);
    let out = ctx.traceparent();
    assert!(
        out.starts_with("00-12345678901234567890123456789012-"),
        "{out}"
    );
    assert!(out.ends_with("-01"), "{out}");
    assert_eq!(parent(&out).unwrap().parent_id, Some(ctx.span_id));
}

#[test]
fn malformed_traceparents_are_ignored() {
    let long = format!("{TP}{}", "-a".repeat(5000));
    let bad = [
        "ff-12345678901234567890123456789012-1234567890123456-01",
        "00-12345678901234567890123456789012-1234567890123456-01.",
        "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
        ".0-12345678901234567890123456789012-1234567890123456-01",
        "000-12345678901234567890123456789012-1234567890123456-01",
        "0-12345678901234567890123456789012-1234567890123456-01",
        "00-00000000000000000000000000000000-1234567890123456-01",
        "00-12345678901234567890123456789012-0000000000000000-01",
        "00-1234567890123456789012345678901.-1234567890123456-01",
        "00-123456789012345678901234567890123-1234567890123456-01",
        "00-1234567890123456789012345678901-1234567890123456-01",
        "00-12345678901234567890123456789012-12345678901234567-01",
        "00-12345678901234567890123456789012-123456789012345-01",
        "00-12345678901234567890123456789012-1234567890123456-.0",
        "00-12345678901234567890123456789012-1234567890123456-001",
        "00-12345678901234567890123456789012-1234567890123456-1",
        "00-ABCDEF78901234567890123456789012-1234567890123456-01",
        "00_12345678901234567890123456789012_1234567890123456_01",
        "",
        &long,
    ];
    for tp in bad {
        assert_eq!(parent(tp), None, "{tp}");
    }
}

#[test]
fn future_versions_are_read_by_their_first_four_fields_and_ows_is_trimmed() {
    for tp in [
        "cc-12345678901234567890123456789012-1234567890123456-01",
        "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
        " \t00-12345678901234567890123456789012-1234567890123456-01\t ",
    ] {
        let p = parent(tp).unwrap_or_else(|| panic!("{tp} rejected"));
        assert_eq!(p.trace_id.to_string(), "12345678901234567890123456789012");
    }
}

#[test]
fn two_traceparent_headers_are_ignored_and_tracestate_needs_a_traceparent() {
    assert_eq!(TraceParent::from_w3c([TP, TP], []), None);
    assert_eq!(TraceParent::from_w3c([], ["foo=1"]), None);
}

#[test]
fn tracestate_headers_are_joined_in_order_and_trimmed() {
    assert_eq!(
        state(&["foo=1,bar=2", "rojo=1,congo=2", "", "baz=3"]).as_deref(),
        Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
    );
    assert_eq!(
        state(&["foo=1 \t , \t bar=2, \t baz=3"]).as_deref(),
        Some("foo=1,bar=2,baz=3")
    );
    assert_eq!(state(&[""]), None);
    let key = format!("{}@{}", "t".repeat(241), "v".repeat(14));
    let m = format!("{key}=1");
    assert_eq!(state(&["foo=1", &m]).unwrap(), format!("foo=1,{m}"));
    assert_eq!(state(&["foo@=1,bar=2"]).as_deref(), Some("foo@=1,bar=2"));
}

#[test]
fn a_malformed_tracestate_is_dropped_whole() {
    let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
    let key = "z".repeat(257);
    let too_long_key = format!("{key}=1");
    let thirty_three = members.join(",");
    for bad in [
        "foo =1",
        "FOO=1",
        "foo.bar=1",
        "@foo=1,bar=2",
        "foo=bar=baz",
        "foo=,bar=3",
        &too_long_key,
        &thirty_three,
    ] {
        assert_eq!(state(&["ok=1", bad]), None, "{bad}");
    }
    assert_eq!(
        state(&[&members[..32].join(",")]).map(|s| s.split(',').count()),
        Some(32)
    );
}

#[test]
fn xray_headers_are_continued() {
    let p = TraceParent::from_xray(
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    .unwrap();
    assert_eq!(p.trace_id.to_string(), "5759e988bd862e3fe1be46a994272793");
    let ctx = TraceContext::continue_or_start(Some(&p));
    let mut buf = [0u8; 35];
    assert_eq!(
        ctx.trace_id.encode_xray(&mut buf),
        "1-5759e988-bd862e3fe1be46a994272793"
    );
    assert_eq!(
        ctx.xray_header(),
        format!(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent={};Sampled=1",
            ctx.span_id
        )
    );
    let unsampled = TraceParent::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0");
    assert_eq!(unsampled.unwrap().flags, 0);
    for bad in [
        "Root=1-5759e988-bd862e3fe1be46a99427279",
        "Root=2-5759e988-bd862e3fe1be46a994272793",
        "Root=1-00000000-000000000000000000000000",
        "Parent=53995c3f42cd8ad8",
        "garbage",
    ] {
        assert_eq!(TraceParent::from_xray(bad), None, "{bad}");
    }
}

#[test]
fn headers_prefer_w3c_then_xray() {
    let xray = "Root=1-5759e988-bd862e3fe1be46a994272793";
    let both = |name: &str| -> Vec<&str> {
        match name {
            "traceparent" => vec![TP],
            "x-amzn-trace-id" => vec![xray],
            _ => vec![],
        }
    };
    let p = TraceParent::from_headers(both).unwrap();
    assert_eq!(p.trace_id.to_string(), "12345678901234567890123456789012");
    let only_xray = |name: &str| -> Vec<&str> {
        match name {
            "traceparent" => vec!["ff-bad"],
            "x-amzn-trace-id" => vec![xray],
            _ => vec![],
        }
    };
    let p = TraceParent::from_headers(only_xray).unwrap();
    assert_eq!(p.trace_id.to_string(), "5759e988bd862e3fe1be46a994272793");
}

#[test]
fn new_ids_are_never_zero_and_differ() {
    let a = TraceContext::continue_or_start(None);
    let b = TraceContext::continue_or_start(None);
    assert_ne!(a.trace_id, b.trace_id);
    assert_ne!(a.span_id, a.child().span_id);
    assert_eq!(a.child().trace_id, a.trace_id);
    assert!(a.sampled());
    assert!(a.trace_id.to_bytes().iter().any(|b| *b != 0));
}

proptest! {
    #[test]
    fn parsing_any_input_never_panics(tp in "\\PC{0,80}|[0-9a-f-]{50,60}", ts in "\\PC{0,80}", x in "\\PC{0,80}") {
        let _ = TraceParent::from_w3c([tp.as_str()], [ts.as_str()]);
        let _ = TraceParent::from_xray(&x);
    }

    #[test]
    fn what_is_sent_is_read_back(tid in any::<[u8; 16]>(), sid in any::<[u8; 8]>(), flags in 0u8..2) {
        prop_assume!(tid.iter().any(|b| *b != 0) && sid.iter().any(|b| *b != 0));
        let ctx = TraceContext {
            trace_id: TraceId::from_bytes(tid).unwrap(),
            span_id: SpanId::from_bytes(sid).unwrap(),
            flags,
            state: None,
        };
        let p = parent(&ctx.traceparent()).unwrap();
        prop_assert_eq!(p.trace_id, ctx.trace_id);
        prop_assert_eq!(p.parent_id, Some(ctx.span_id));
        prop_assert_eq!(p.flags, flags);
        let x = TraceParent::from_xray(&ctx.xray_header()).unwrap();
        prop_assert_eq!(x.trace_id, ctx.trace_id);
        prop_assert_eq!(x.parent_id, Some(ctx.span_id));
        prop_assert_eq!(x.flags, flags);
    }
}
