use super::*;

type Row = Vec<Option<Vec<u8>>>;
type Seen = Vec<(usize, Option<Vec<u8>>)>;

fn opts_text() -> CopyOptions {
    CopyOptions::text()
}

fn opts_csv() -> CopyOptions {
    CopyOptions::csv()
}

/// Runs `input` through a transformer in the given chunks, with `g` as the field function, and
/// returns the output plus every value the field function saw, in order.
fn run_chunks<G>(
    opts: &CopyOptions,
    fields: &[bool],
    chunks: &[&[u8]],
    mut g: G,
) -> Result<(Vec<u8>, Seen), CopyError>
where
    G: FnMut(usize, Option<&[u8]>) -> Result<Option<Vec<u8>>, String>,
{
    let mut t = CopyTransformer::new(opts.clone(), fields.to_vec())?;
    let mut seen = Vec::new();
    let mut f = |i: usize, v: Option<&[u8]>| {
        seen.push((i, v.map(<[u8]>::to_vec)));
        g(i, v)
    };
    let mut out = Vec::new();
    for c in chunks {
        out.extend(t.feed(c, &mut f)?);
    }
    out.extend(t.finish(&mut f)?);
    Ok((out, seen))
}

fn identity(_: usize, v: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
    Ok(v.map(<[u8]>::to_vec))
}

fn to_hex(_: usize, v: Option<&[u8]>) -> Result<Option<Vec<u8>>, String> {
    Ok(v.map(bytea_hex))
}

/// Decodes every row of a stream (all fields), grouping the seen values by row.
fn decode_rows(opts: &CopyOptions, n: usize, input: &[u8]) -> Result<Vec<Row>, CopyError> {
    let (_, seen) = run_chunks(opts, &vec![true; n], &[input], identity)?;
    Ok(seen
        .chunks(n)
        .map(|r| r.iter().map(|(_, v)| v.clone()).collect())
        .collect())
}

/// Encodes rows with the module's own renderers (what a client or the server would write).
fn encode_rows(opts: &CopyOptions, rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(opts.delimiter);
            }
            match (v, opts.format) {
                (None, _) => out.extend_from_slice(&opts.null),
                (Some(v), CopyFormat::Text) => render_text(v, opts, &mut out).expect("renderable"),
                (Some(v), CopyFormat::Csv) => render_csv(v, opts, row.len() == 1, &mut out),
            }
        }
        out.push(b'\n');
    }
    out
}

fn tricky_rows() -> Vec<Row> {
    let vals: Vec<&[u8]> = vec![
        b"plain",
        b"",
        b"tab\there",
        b"new\nline",
        b"cr\rlf\r\n",
        b"back\\slash\\",
        b"\\N",
        b"\\.",
        b"comma,semi;",
        b"quote\"d \"\"",
        b"\x08\x0b\x0c",
        "unicod\u{e9} \u{1f600}".as_bytes(),
        b" lead and trail ",
        b"\\x41",
    ];
    let mut rows = Vec::new();
    for (k, v) in vals.iter().enumerate() {
        rows.push(vec![
            Some(v.to_vec()),
            None,
            Some(vals[(k + 3) % vals.len()].to_vec()),
        ]);
    }
    rows.push(vec![None, Some(b"x".to_vec()), None]);
    rows
}

#[test]
fn round_trip_split_at_every_byte_both_formats() {
    let pipe_text = CopyOptions {
        delimiter: b',',
        ..opts_text()
    };
    let semi_csv = CopyOptions {
        delimiter: b';',
        null: b"\\N".to_vec(),
        ..opts_csv()
    };
    for opts in [opts_text(), opts_csv(), pipe_text, semi_csv] {
        let rows = tricky_rows();
        let input = encode_rows(&opts, &rows);
        assert_eq!(
            decode_rows(&opts, 3, &input).unwrap(),
            rows,
            "{:?}",
            opts.format
        );

        let fields = [true, false, true];
        let (whole, _) = run_chunks(&opts, &fields, &[&input], to_hex).unwrap();
        // One byte at a time.
        let singles: Vec<&[u8]> = input.chunks(1).collect();
        let (bytewise, _) = run_chunks(&opts, &fields, &singles, to_hex).unwrap();
        assert_eq!(bytewise, whole);
        // Every two-way split.
        for k in 0..=input.len() {
            let (split, _) =
                run_chunks(&opts, &fields, &[&input[..k], &input[k..]], to_hex).unwrap();
            assert_eq!(split, whole, "split at {k}");
        }
        // The transformed stream decodes to hex of the originals, untouched fields unchanged.
        let got = decode_rows(&opts, 3, &whole).unwrap();
        for (g, r) in got.iter().zip(&rows) {
            assert_eq!(g[1], r[1]);
            for i in [0, 2] {
                let back = g[i].as_deref().map(|h| parse_bytea_text(h).unwrap());
                assert_eq!(back, r[i]);
            }
        }
        // Decrypt direction: hex back to plaintext reproduces the original rows.
        let from_hex = |_: usize, v: Option<&[u8]>| {
            v.map(parse_bytea_text)
                .transpose()
                .map_err(|e| e.to_string())
        };
        let (plain, _) = run_chunks(&opts, &fields, &singles_of(&whole), from_hex).unwrap();
        assert_eq!(decode_rows(&opts, 3, &plain).unwrap(), rows);
    }
}

fn singles_of(v: &[u8]) -> Vec<&[u8]> {
    v.chunks(1).collect()
}

#[test]
fn text_escapes_decode_like_postgres() {
    let mut raw = Vec::new();
    decode_text(
        b"a\\tb\\\\c\\nd\\101\\x41\\x4g\\q\\7\\08\\b\\f\\r\\v\\,|\\xz\\777\\",
        &mut raw,
    );
    assert_eq!(raw, b"a\tb\\c\ndAA\x04gq\x07\x008\x08\x0c\r\x0b,|xz\xff");
    // A row with escapes: the tagged value is de-escaped before the field function sees it.
    let rows = decode_rows(&opts_text(), 2, b"\\101\\t\\\\\tx\\\t\n").unwrap();
    assert_eq!(
        rows,
        vec![vec![Some(b"A\t\\".to_vec()), Some(b"x\t".to_vec())]]
    );
    // A NUL byte makes the row invalid for the server, so the proxy refuses it too.
    let err = run_chunks(&opts_text(), &[true], &[b"a\\0b\n"], identity).unwrap_err();
    assert!(
        matches!(
            err,
            CopyError::Field {
                line: 1,
                field: 0,
                ..
            }
        ),
        "{err}"
    );
    // Backslash-newline is an escaped newline inside the row, not a row end.
    let rows = decode_rows(&opts_text(), 2, b"a\\\nb\tc\n").unwrap();
    assert_eq!(
        rows,
        vec![vec![Some(b"a\nb".to_vec()), Some(b"c".to_vec())]]
    );
}

#[test]
fn text_nulls_compare_raw_text() {
    let rows = decode_rows(&opts_text(), 3, b"\\N\t\\\\N\tN\n").unwrap();
    assert_eq!(
        rows,
        vec![vec![None, Some(b"\\N".to_vec()), Some(b"N".to_vec())]]
    );
    let mut o = opts_text();
    o.null = b"nil".to_vec();
    let rows = decode_rows(&o, 2, b"nil\t\\nil\n").unwrap();
    assert_eq!(rows, vec![vec![None, Some(b"\nil".to_vec())]]);
    // A value equal to a custom NULL string is escaped so it does not read back as NULL.
    let mut out = Vec::new();
    render_text(b"nil", &o, &mut out).unwrap();
    assert_eq!(out, b"\\156il");
    o.null = b"\\\\".to_vec();
    out.clear();
    render_text(b"\\", &o, &mut out).unwrap();
    assert_eq!(out, b"\\134");
    assert_eq!(
        decode_rows(&o, 1, b"\\134\n").unwrap(),
        vec![vec![Some(b"\\".to_vec())]]
    );
    assert_eq!(decode_rows(&o, 1, b"\\\\\n").unwrap(), vec![vec![None]]);
}

#[test]
fn csv_quoting_nulls_and_embedded_specials() {
    let input = b"\"a,b\",\"c\nd\",\"e\"\"f\",,\"\",x\"y,z\"w\n";
    let rows = decode_rows(&opts_csv(), 6, input).unwrap();
    assert_eq!(
        rows,
        vec![vec![
            Some(b"a,b".to_vec()),
            Some(b"c\nd".to_vec()),
            Some(b"e\"f".to_vec()),
            None,
            Some(Vec::new()),
            Some(b"xy,zw".to_vec()),
        ]]
    );
    // The NULL string is compared on unquoted raw text only.
    let o = CopyOptions {
        null: b"NULL".to_vec(),
        ..opts_csv()
    };
    let rows = decode_rows(&o, 3, b"NULL,\"NULL\",\n").unwrap();
    assert_eq!(
        rows,
        vec![vec![None, Some(b"NULL".to_vec()), Some(Vec::new())]]
    );
    // Rendering: empty string is quoted (it equals the NULL string), specials are quoted.
    let o = opts_csv();
    let mut out = Vec::new();
    for v in [&b""[..], b"a\"b", b"x,y", b"plain", b"c\rd"] {
        render_csv(v, &o, false, &mut out);
        out.push(b'|');
    }
    assert_eq!(out, b"\"\"|\"a\"\"b\"|\"x,y\"|plain|\"c\rd\"|");
    // A lone \. in a one-column copy is quoted so it is not the end marker.
    out.clear();
    render_csv(b"\\.", &o, true, &mut out);
    assert_eq!(out, b"\"\\.\"");
}

#[test]
fn csv_custom_escape_and_force_options() {
    let mut o = opts_csv();
    o.escape = b'\\';
    let rows = decode_rows(&o, 2, b"\"a\\\"b\\\\c\\d\",\"x\"\"\"\n").unwrap();
    // \" and \\ are escapes inside quotes; \d is literal; "" closes and reopens.
    assert_eq!(
        rows,
        vec![vec![Some(b"a\"b\\c\\d".to_vec()), Some(b"x".to_vec())]]
    );
    let mut out = Vec::new();
    render_csv(b"q\"\\", &o, false, &mut out);
    assert_eq!(out, b"\"q\\\"\\\\\"");

    let mut o = opts_csv();
    o.null = b"NULL".to_vec();
    o.force_not_null = vec![true, false];
    o.force_null = vec![false, true];
    let rows = decode_rows(&o, 2, b"NULL,\"NULL\"\n\"NULL\",NULL\n").unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some(b"NULL".to_vec()), None],
            vec![Some(b"NULL".to_vec()), None]
        ]
    );
    // FORCE_NULL makes the NULL string unrepresentable as a value.
    let err = run_chunks(&o, &[false, true], &[b"a,b\n"], |_, _| {
        Ok(Some(b"NULL".to_vec()))
    })
    .unwrap_err();
    assert!(matches!(err, CopyError::Field { field: 1, .. }));
}

#[test]
fn header_is_passed_through_untouched() {
    for (opts, input) in [
        (opts_text(), &b"h1\th\\x2\th3\textra\n1\t2\t3\n"[..]),
        (opts_csv(), &b"\"h,1\",\"multi\nline\"\n1,2,3\n"[..]),
    ] {
        let mut o = opts.clone();
        o.header = true;
        let (out, seen) = run_chunks(&o, &[true, false, true], &singles_of(input), to_hex).unwrap();
        let header_len = input.len() - 6;
        assert_eq!(&out[..header_len], &input[..header_len]);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], (0, Some(b"1".to_vec())));
    }
}

#[test]
fn end_marker_drops_the_rest() {
    for o in [opts_text(), opts_csv()] {
        let d = o.delimiter;
        let input = [&b"a"[..], &[d], b"b\n\\.\nc", &[d], b"d\n"].concat();
        let (out, seen) = run_chunks(&o, &[true, false], &singles_of(&input), to_hex).unwrap();
        assert_eq!(seen.len(), 1);
        let expect_hex = if o.format == CopyFormat::Text {
            &b"\\\\x61"[..]
        } else {
            b"\\x61"
        };
        assert_eq!(out, [expect_hex, &[d], b"b\n"].concat());
    }
    // CRLF marker and marker at EOF without newline.
    let (out, _) = run_chunks(&opts_text(), &[false], &[b"a\r\n\\.\r\nzz"], identity).unwrap();
    assert_eq!(out, b"a\r\n");
    let (out, _) = run_chunks(&opts_text(), &[false], &[b"a\n\\."], identity).unwrap();
    assert_eq!(out, b"a\n");
    // Quoted or escaped forms are data.
    let rows = decode_rows(&opts_csv(), 1, b"\"\\.\"\n").unwrap();
    assert_eq!(rows, vec![vec![Some(b"\\.".to_vec())]]);
    let rows = decode_rows(&opts_text(), 1, b"\\\\.\n").unwrap();
    assert_eq!(rows, vec![vec![Some(b"\\.".to_vec())]]);
    // CSV \. with more text is data.
    let rows = decode_rows(&opts_csv(), 1, b"\\.x\n").unwrap();
    assert_eq!(rows, vec![vec![Some(b"\\.x".to_vec())]]);
    // Text: a marker not alone on its line, or followed by junk, is refused.
    for bad in [&b"a\\.\n"[..], b"\\.x\n", b"ok\n\\.\\.\n"] {
        let err = run_chunks(&opts_text(), &[true], &[bad], identity).unwrap_err();
        assert!(matches!(err, CopyError::Format { .. }), "{err}");
    }
}

#[test]
fn line_endings() {
    // CRLF is kept byte for byte; CR-only works too.
    let input = b"a\tb\r\nc\td\r\n";
    let (out, seen) =
        run_chunks(&opts_text(), &[false, true], &singles_of(input), identity).unwrap();
    assert_eq!(out, input);
    assert_eq!(
        seen,
        vec![(1, Some(b"b".to_vec())), (1, Some(b"d".to_vec()))]
    );
    let input = b"a,b\rc,d\r";
    let (out, _) = run_chunks(&opts_csv(), &[true, true], &singles_of(input), identity).unwrap();
    assert_eq!(out, input);
    // A quoted CRLF in CSV is data, not a row end.
    let rows = decode_rows(&opts_csv(), 2, b"\"x\r\ny\",z\r\n").unwrap();
    assert_eq!(
        rows,
        vec![vec![Some(b"x\r\ny".to_vec()), Some(b"z".to_vec())]]
    );
    // Mixed styles are refused like the server does, with the line number.
    for (o, bad) in [
        (opts_text(), &b"a\r\nb\n"[..]),
        (opts_text(), b"a\nb\rc\n"),
        (opts_csv(), b"a\r\nb\rc\r\n"),
        (opts_csv(), b"a\rb\n"),
    ] {
        let err = run_chunks(&o, &[true], &[bad], identity).unwrap_err();
        assert!(matches!(err, CopyError::Format { line: 2, .. }), "{err}");
    }
    // Final row without terminator, and a trailing CR at EOF.
    let (out, seen) = run_chunks(&opts_text(), &[true], &[b"a\nlast"], to_hex).unwrap();
    assert_eq!(out, b"\\\\x61\n\\\\x6c617374");
    assert_eq!(seen.len(), 2);
    let (out, _) = run_chunks(&opts_text(), &[false], &[b"a\r"], identity).unwrap();
    assert_eq!(out, b"a\r");
    // A lone backslash at EOF is part of the last row and decodes to nothing.
    assert_eq!(
        decode_rows(&opts_text(), 1, b"ab\\").unwrap(),
        vec![vec![Some(b"ab".to_vec())]]
    );
}

#[test]
fn final_row_that_renders_empty_stays_a_row() {
    // Found by fuzzing (fuzz/regressions/copy/final-row-renders-empty-*): the last row has no
    // terminator and its one field becomes empty; forwarded as-is it would be no row at all.
    let (out, seen) = run_chunks(&opts_text(), &[true], &[b"\\"], identity).unwrap();
    assert_eq!(seen, vec![(0, Some(Vec::new()))]);
    assert_eq!(out, b"\n");
    let (out, _) = run_chunks(&opts_text(), &[true], &[b"a\r\nx"], |_, _| {
        Ok(Some(Vec::new()))
    })
    .unwrap();
    assert_eq!(out, b"\r\n\r\n", "the stream's own terminator is used");
    let csv_null = CopyOptions {
        null: b"N".to_vec(),
        ..opts_csv()
    };
    let (out, _) = run_chunks(&csv_null, &[true], &[b"\"\""], identity).unwrap();
    assert_eq!(
        decode_rows(&csv_null, 1, &out).unwrap(),
        vec![vec![Some(Vec::new())]]
    );
    // An empty final line is still no row.
    let (out, seen) = run_chunks(&opts_text(), &[true], &[b"a\n"], identity).unwrap();
    assert_eq!((out, seen.len()), (b"a\n".to_vec(), 1));
}

#[test]
fn wrong_field_count_names_line_not_content() {
    for (o, input) in [
        (opts_text(), &b"1\tsecret\n2\tsecret\textra\n"[..]),
        (opts_csv(), b"1,secret\nsecret\n"),
    ] {
        let err = run_chunks(&o, &[false, true], &[input], identity).unwrap_err();
        assert!(
            matches!(
                err,
                CopyError::FieldCount {
                    line: 2,
                    expected: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"));
    }
    // Field-count errors apply even when no field is transformed.
    let err = run_chunks(&opts_text(), &[false, false], &[b"a\n"], identity).unwrap_err();
    assert!(matches!(err, CopyError::FieldCount { found: 1, .. }));
    // Zero columns: only empty rows.
    assert!(run_chunks(&opts_text(), &[], &[b"\n\n"], identity).is_ok());
    assert!(run_chunks(&opts_text(), &[], &[b"x\n"], identity).is_err());
}

#[test]
fn untouched_fields_are_byte_identical() {
    let input = b"\\x41\t\\101\t\\N\t\"q\"\\\t\n";
    let (out, _) = run_chunks(
        &opts_text(),
        &[false, true, false, false],
        &[input],
        |_, v| Ok(v.map(<[u8]>::to_vec)),
    )
    .unwrap();
    // Field 1 is re-encoded (\101 → A); every other byte is unchanged.
    assert_eq!(out, b"\\x41\tA\t\\N\t\"q\"\\\t\n");
    let input = b"\"a\"\"\" , x ,\"\",,\n";
    let (out, _) = run_chunks(
        &opts_csv(),
        &[false, false, true, false, false],
        &[input],
        identity,
    )
    .unwrap();
    assert_eq!(out, input);
    // Unchanged tagged values round-trip exactly when already canonical.
    let input = b"plain\t\\\\x00ff\t\\N\n";
    let (out, _) = run_chunks(&opts_text(), &[true, true, true], &[input], identity).unwrap();
    assert_eq!(out, input);
}

#[test]
fn ten_thousand_rows_in_uneven_chunks() {
    for o in [opts_text(), opts_csv()] {
        let rows: Vec<Row> = (0..10_000u32)
            .map(|i| {
                vec![
                    Some(i.to_string().into_bytes()),
                    Some(format!("user{i}@example.com,\t\"x\"\n").into_bytes()),
                    (i % 7 != 0).then(|| format!("{}", i * 31).into_bytes()),
                ]
            })
            .collect();
        let input = encode_rows(&o, &rows);
        let mut chunks = Vec::new();
        let (mut pos, mut seed) = (0usize, 12345u64);
        while pos < input.len() {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((seed >> 33) % 700) as usize + 1;
            let end = (pos + n).min(input.len());
            chunks.push(&input[pos..end]);
            pos = end;
        }
        let fields = [false, true, true];
        let (enc, seen) = run_chunks(&o, &fields, &chunks, to_hex).unwrap();
        assert_eq!(seen.len(), 20_000);
        let got = decode_rows(&o, 3, &enc).unwrap();
        assert_eq!(got.len(), 10_000);
        for (g, r) in got.iter().zip(&rows) {
            assert_eq!(g[0], r[0]);
            assert_eq!(g[1].as_deref().map(|h| parse_bytea_text(h).unwrap()), r[1]);
            assert_eq!(g[2].as_deref().map(|h| parse_bytea_text(h).unwrap()), r[2]);
        }
    }
}

#[test]
fn bounded_buffer_and_closed_after_error() {
    let mut o = opts_text();
    o.max_line_bytes = 16;
    let mut t = CopyTransformer::new(o, vec![true]).unwrap();
    let mut f = identity;
    assert!(t.feed(b"short\n0123456789", &mut f).is_ok());
    let err = t.feed(b"0123456789", &mut f).unwrap_err();
    assert_eq!(err, CopyError::LineTooLong { line: 2, limit: 16 });
    assert_eq!(t.feed(b"\n", &mut f).unwrap_err(), CopyError::Closed);
    assert_eq!(t.finish(&mut f).unwrap_err(), CopyError::Closed);
    // A complete over-long row in one chunk is refused too.
    let mut o = opts_text();
    o.max_line_bytes = 4;
    assert!(matches!(
        run_chunks(&o, &[true], &[b"123456\n"], identity),
        Err(CopyError::LineTooLong { line: 1, .. })
    ));
}

#[test]
fn unterminated_quote_at_end_is_an_error() {
    let err = run_chunks(&opts_csv(), &[true], &[b"a\n\"open\nstill"], identity).unwrap_err();
    assert!(matches!(err, CopyError::Format { line: 2, .. }), "{err}");
}

#[test]
fn field_fn_errors_and_invalid_values_carry_no_data() {
    let err = run_chunks(&opts_text(), &[false, true], &[b"1\tsecret\n"], |_, _| {
        Err("cannot encrypt".into())
    })
    .unwrap_err();
    assert_eq!(
        err,
        CopyError::Field {
            line: 1,
            field: 1,
            msg: "cannot encrypt".into()
        }
    );
    // Invalid UTF-8 via an escape is refused for tagged fields under UTF8, allowed otherwise.
    let err = run_chunks(&opts_text(), &[true], &[b"\\xff\n"], identity).unwrap_err();
    assert!(matches!(err, CopyError::Field { .. }));
    let mut o = opts_text();
    o.encoding = CopyEncoding::AsciiSafe;
    assert!(run_chunks(&o, &[true], &[b"\\xff\n"], identity).is_ok());
    // Debug of a transformer shows no buffered data.
    let mut t = CopyTransformer::new(opts_text(), vec![true]).unwrap();
    t.feed(b"secret-partial", &mut identity).unwrap();
    assert!(!format!("{t:?}").contains("secret"));
}

#[test]
fn default_marker_is_forwarded_untouched() {
    let mut o = opts_csv();
    o.default = Some(b"DEF".to_vec());
    let (out, seen) = run_chunks(&o, &[true, true], &[b"DEF,\"DEF\"\n"], to_hex).unwrap();
    assert_eq!(seen, vec![(1, Some(b"DEF".to_vec()))]);
    assert_eq!(out, b"DEF,\\x444546\n");
    let mut out = Vec::new();
    render_csv(b"DEF", &o, false, &mut out);
    assert_eq!(out, b"\"DEF\"");
}

#[test]
fn null_results_render_as_null_string() {
    let (out, _) = run_chunks(&opts_text(), &[true, true], &[b"a\tb\n"], |i, v| {
        Ok(if i == 0 { None } else { v.map(<[u8]>::to_vec) })
    })
    .unwrap();
    assert_eq!(out, b"\\N\tb\n");
    let (out, _) = run_chunks(&opts_csv(), &[true, true], &[b"a,\n"], |i, _| {
        Ok((i == 1).then(Vec::new))
    })
    .unwrap();
    assert_eq!(out, b",\"\"\n");
}

#[test]
fn bytea_helpers() {
    assert_eq!(bytea_hex(&[0x0a, 0x1b, 0xff]), b"\\x0a1bff");
    assert_eq!(bytea_hex(&[]), b"\\x");
    assert_eq!(
        parse_bytea_text(b"\\x0A1b ff\n00").unwrap(),
        vec![0x0a, 0x1b, 0xff, 0]
    );
    assert_eq!(
        parse_bytea_text(b"ab\\\\c\\001\\377").unwrap(),
        b"ab\\c\x01\xff"
    );
    for bad in [&b"\\x0"[..], b"\\xzz", b"\\x0 1", b"a\\9", b"a\\", b"\\400"] {
        assert_eq!(parse_bytea_text(bad), Err(CopyError::Bytea), "{bad:?}");
    }
}

#[test]
fn options_are_validated() {
    let bad = [
        CopyOptions {
            delimiter: b'\n',
            ..opts_text()
        },
        CopyOptions {
            delimiter: b'\\',
            ..opts_text()
        },
        CopyOptions {
            delimiter: b'a',
            ..opts_text()
        },
        CopyOptions {
            delimiter: 0xe9,
            ..opts_text()
        },
        CopyOptions {
            null: b"a\tb".to_vec(),
            ..opts_text()
        },
        CopyOptions {
            quote: b',',
            ..opts_csv()
        },
        CopyOptions {
            null: b"\"".to_vec(),
            ..opts_csv()
        },
        CopyOptions {
            default: Some(Vec::new()),
            ..opts_csv()
        },
        CopyOptions {
            force_null: vec![true],
            ..opts_text()
        },
        CopyOptions {
            encoding: CopyEncoding::Unsupported,
            ..opts_text()
        },
    ];
    for o in bad {
        assert!(matches!(
            CopyTransformer::new(o, vec![true]),
            Err(CopyError::Options(_))
        ));
    }
    assert!(CopyTransformer::new(
        CopyOptions {
            delimiter: b'|',
            ..opts_text()
        },
        vec![]
    )
    .is_ok());
}

#[test]
fn encoding_names() {
    assert_eq!(CopyEncoding::from_pg_name("UTF8"), CopyEncoding::Utf8);
    assert_eq!(CopyEncoding::from_pg_name("utf-8"), CopyEncoding::Utf8);
    for safe in [
        "LATIN1",
        "latin10",
        "ISO_8859_5",
        "WIN1252",
        "EUC_JP",
        "SQL_ASCII",
        "KOI8R",
    ] {
        assert_eq!(
            CopyEncoding::from_pg_name(safe),
            CopyEncoding::AsciiSafe,
            "{safe}"
        );
    }
    for unsafe_ in [
        "SJIS",
        "BIG5",
        "GBK",
        "UHC",
        "GB18030",
        "JOHAB",
        "SHIFT_JIS_2004",
        "latin11",
        "x",
    ] {
        assert_eq!(
            CopyEncoding::from_pg_name(unsafe_),
            CopyEncoding::Unsupported,
            "{unsafe_}"
        );
    }
}

/// Fuzz findings: a value the renderer cannot spell so that the server reads it back as that
/// value is refused, never forwarded as a marker (DEFAULT, or a NULL turned into a value).
#[test]
fn values_without_an_unambiguous_spelling_are_refused() {
    // Text, DEFAULT '': an empty value (a lone trailing backslash reads as one) would be
    // written as the DEFAULT marker.
    let mut o = opts_text();
    o.default = Some(Vec::new());
    o.null = b"N".to_vec();
    let err = run_chunks(&o, &[true], &[b"\\"], identity).unwrap_err();
    assert!(matches!(err, CopyError::Field { field: 0, .. }), "{err:?}");
    // Non-empty values still pass, and untouched fields are not re-rendered.
    let (out, _) = run_chunks(&o, &[true], &[b"a\n"], identity).unwrap();
    assert_eq!(out, b"a\n");

    // CSV, FORCE_NOT_NULL and FORCE_NULL on the column: only the quoted NULL string reads
    // back as NULL, so a NULL is written quoted.
    let mut o = opts_csv();
    o.force_not_null = vec![true];
    o.force_null = vec![true];
    let (out, seen) = run_chunks(&o, &[true], &[b"\"\"\n"], identity).unwrap();
    assert_eq!(seen, vec![(0, None)]);
    assert_eq!(out, b"\"\"\n");
    let (_, again) = run_chunks(&o, &[true], &[&out], identity).unwrap();
    assert_eq!(again, vec![(0, None)]);
    // FORCE_NOT_NULL alone: no spelling reads back as NULL, so producing one is refused.
    o.force_null = vec![false];
    let err = run_chunks(&o, &[true], &[b"x\n"], |_, _| Ok(None)).unwrap_err();
    assert!(matches!(err, CopyError::Field { field: 0, .. }), "{err:?}");
}
