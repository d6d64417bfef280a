//! Property tests: arbitrary bytes from a client or server never make the
//! codec panic, and every frame it accepts is exactly delimited.

use proptest::prelude::*;

use super::messages::*;
use super::*;

fn frame_of(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn framing_never_panics_and_delimits(bytes in proptest::collection::vec(any::<u8>(), 0..64), cap in 5usize..100) {
        for dir in [Direction::Frontend, Direction::Backend] {
            if let Ok(Some(n)) = next_frame(&bytes, dir, cap) {
                prop_assert!(n >= 5 && n <= bytes.len() && n <= cap);
                let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                prop_assert_eq!(n, len as usize + 1);
            }
        }
    }

    #[test]
    fn startup_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_startup(&bytes);
        if bytes.len() >= 4 {
            let _ = startup_len([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
    }

    #[test]
    fn message_decoders_never_panic(tag in prop::sample::select(b"QPBDCERSTKtZ".to_vec()), body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let f = frame_of(tag, &body);
        let _ = query_text(&f);
        let _ = decode_parse(&f);
        let _ = decode_bind(&f);
        let _ = bind_result_formats(&f);
        let _ = decode_row_description(&f);
        let _ = decode_parameter_description(&f);
        let _ = describe_or_close(&f);
        let _ = execute_portal(&f);
        let _ = auth_code(&f);
        let _ = strip_sasl_plus(&f);
        let _ = backend_key(&f);
        let _ = ready_status(&f);
        let _ = command_rows(&f);
        let _ = error_fields(&body);
        let s = scrub_error(&frame_of(b'E', &body));
        prop_assert_eq!(next_frame(&s, Direction::Backend, usize::MAX), Ok(Some(s.len())));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// What the validating decoders accept, the encoders reproduce byte for byte.
    #[test]
    fn bind_and_parse_round_trip(
        name in "[a-z]{0,5}",
        query in "[ -~]{0,40}",
        oids in proptest::collection::vec(any::<u32>(), 0..4),
        params in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)), 0..4),
        fmts in proptest::collection::vec(0i16..2, 0..4),
    ) {
        let p = pgwire::messages::extendedquery::Parse::new(Some(name.clone()).filter(|n| !n.is_empty()), query, oids);
        let mut b = bytes::BytesMut::new();
        encode_parse(&p, &mut b).unwrap();
        prop_assert_eq!(decode_parse(&b).unwrap(), p);
        let bind = pgwire::messages::extendedquery::Bind::new(
            None,
            Some(name).filter(|n| !n.is_empty()),
            fmts.clone(),
            params.into_iter().map(|v| v.map(bytes::Bytes::from)).collect(),
            fmts.clone(),
        );
        let mut b = bytes::BytesMut::new();
        encode_bind(&bind, &mut b).unwrap();
        prop_assert_eq!(bind_result_formats(&b).unwrap(), fmts);
        prop_assert_eq!(decode_bind(&b).unwrap(), bind);
    }
}
