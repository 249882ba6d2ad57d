//! Property tests for the two parsers of untrusted input: the master record
//! (from ZooKeeper) and `+switch-master` payloads (from Sentinel pub/sub).
//! They must never panic, must accept exactly what the formatter writes, and
//! must reject anything with surrounding junk. Bounded: a fixed number of
//! cases each, a few seconds in CI.

use proptest::prelude::*;
use redis_zk::model::Endpoint;
use redis_zk::reply::parse_switch_master;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        "[a-z][a-z0-9-]{0,20}[a-z0-9](\\.[a-z][a-z0-9]{0,10}){0,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]

    #[test]
    fn record_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Endpoint::parse_bytes(&data);
    }

    #[test]
    fn record_round_trips(h in host(), port in 1u16..=65535) {
        let e = Endpoint::new(h, port);
        prop_assert_eq!(Endpoint::parse_bytes(&e.to_record()), Ok(e.clone()));
        let with_newline = format!("{e}\n");
        prop_assert!(Endpoint::parse(&with_newline).is_err());
        let padded = format!(" {e}");
        prop_assert!(Endpoint::parse(&padded).is_err());
    }

    #[test]
    fn port_out_of_range_is_rejected(h in host(), port in prop_oneof![Just(0u32), 65536u32..10_000_000]) {
        let text = format!("{h} {port}");
        prop_assert!(Endpoint::parse(&text).is_err());
    }

    #[test]
    fn switch_master_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_switch_master(&data);
    }

    #[test]
    fn switch_master_round_trips(name in "[a-zA-Z0-9._-]{1,30}", a in host(), p in 1u16.., b in host(), q in 1u16..) {
        let payload = format!("{name} {a} {p} {b} {q}");
        let ev = parse_switch_master(payload.as_bytes()).unwrap();
        prop_assert_eq!(ev.name, name);
        prop_assert_eq!(ev.old, Endpoint::new(a, p));
        prop_assert_eq!(ev.new, Endpoint::new(b, q));
    }

    #[test]
    fn switch_master_with_a_field_missing_is_rejected(name in "[a-z]{1,10}", a in host(), p in 1u16.., b in host()) {
        let payload = format!("{name} {a} {p} {b}");
        prop_assert!(parse_switch_master(payload.as_bytes()).is_err());
    }
}
