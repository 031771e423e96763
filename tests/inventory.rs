//! Inventory loading, number normalisation and the reload handle (docs/behaviour.md §6).

use std::path::Path;

use cidgate::inventory::{
    normalize, parse_e164_strict, syntactic_e164, Counts, Inventory, InventoryError,
    InventoryHandle, Region, E164,
};

const QUEUES_HEADER: &str = "queue_id,caller_id_number,caller_id_name,region,anonymous\n";

fn load(queues: &str, numbers: &str) -> Result<Inventory, InventoryError> {
    Inventory::from_csv_readers(
        queues.as_bytes(),
        "queues.csv",
        numbers.as_bytes(),
        "numbers.csv",
        Region::US,
    )
}

fn e(s: &str) -> E164 {
    syntactic_e164(s).unwrap()
}

/// The (file, line) pairs of an error, to compare in one assertion.
fn places(err: &InventoryError) -> Vec<(&str, u64)> {
    err.lines
        .iter()
        .map(|l| (l.file.as_str(), l.line))
        .collect()
}

#[test]
fn e164_syntax_is_plus_and_1_to_15_digits() {
    assert_eq!(e("+14155550100").as_str(), "+14155550100");
    assert_eq!(e("+14155550100").to_string(), "+14155550100");
    assert_eq!(e("+14155550100").digits(), "14155550100");
    assert!(syntactic_e164("+123456789012345").is_some());
    for bad in [
        "",
        "+",
        "14155550100",
        "+1234567890123456",
        "+0123",
        "+1 415",
        " +1415",
        "+1415a",
        "++1",
    ] {
        assert!(syntactic_e164(bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn strict_parsing_requires_canonical_valid_e164() {
    assert_eq!(parse_e164_strict("+14155550100"), Some(e("+14155550100")));
    assert_eq!(parse_e164_strict("+442071838750"), Some(e("+442071838750")));
    // Too short for its country, not written canonically, trunk prefix kept.
    for bad in [
        "+1555",
        "+1 415 555 0100",
        "(415) 555-0100",
        "+4402071838750",
        "+447700900123",
        "+999123456",
    ] {
        assert_eq!(parse_e164_strict(bad), None, "{bad:?} accepted");
    }
}

#[test]
fn normalize_reads_national_and_international_forms() {
    let london = Some(e("+442071838750"));
    assert_eq!(
        normalize("(415) 555-0100", Region::US),
        Some(e("+14155550100"))
    );
    assert_eq!(
        normalize("+1 415 555 0100", Region::US),
        Some(e("+14155550100"))
    );
    assert_eq!(normalize("020 7183 8750", Region::GB), london);
    assert_eq!(normalize("0044 20 7183 8750", Region::GB), london);
    assert_eq!(normalize("011 44 20 7183 8750", Region::US), london);
    assert_eq!(normalize("  +442071838750 ", Region::US), london);
    // The same national form means nothing valid from another country.
    assert_eq!(normalize("020 7183 8750", Region::US), None);
    assert_eq!(normalize("0044 20 7183 8750", Region::US), None);
    assert_eq!(normalize("415 555 0100 ext. 12", Region::US), None);
    assert_eq!(normalize("", Region::US), None);
    assert_eq!(normalize("not a number", Region::US), None);
}

#[test]
fn region_parsing() {
    assert_eq!(Region::parse("gb"), Some(Region::GB));
    assert_eq!(Region::parse(" US "), Some(Region::US));
    assert_eq!(Region::US.to_string(), "US");
    for bad in ["", "U", "USA", "XX", "1A"] {
        assert_eq!(Region::parse(bad), None, "{bad:?} accepted");
    }
}

/// The fast E.164 check must agree with `phonenumber` itself (parse without a
/// region, valid, and printing back unchanged) on example numbers of every
/// region and on mutations of them (one digit changed, one added or removed,
/// a trunk zero inserted).
#[test]
fn fast_rules_agree_with_phonenumber() {
    fn reference(s: &str) -> bool {
        let Ok(n) = phonenumber::parse(None, s) else {
            return false;
        };
        let text = format!("+{}{}", n.code().value(), n.national());
        phonenumber::is_valid(&n) && n.extension().is_none() && text == s && text.len() <= 16
    }

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut checked, mut mismatches) = (0, Vec::new());
    for meta in cidgate::inventory::numbering_plans() {
        let d = meta.descriptors();
        let descriptors = [
            Some(d.general()),
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.voip(),
        ];
        for example in descriptors
            .into_iter()
            .flatten()
            .filter_map(|x| x.example())
        {
            let base = format!("+{}{}", meta.country_code(), example);
            let mut candidates = vec![
                base.clone(),
                format!("{base}7"),
                base[..base.len() - 1].to_string(),
                format!("+{}0{}", meta.country_code(), example),
            ];
            for _ in 0..4 {
                let mut bytes = base.clone().into_bytes();
                let i = 1 + random(bytes.len() - 1);
                bytes[i] = b'0' + random(10) as u8;
                candidates.push(String::from_utf8(bytes).unwrap());
            }
            for c in candidates {
                checked += 1;
                let fast = parse_e164_strict(&c).is_some();
                if fast != reference(&c) {
                    mismatches.push(format!("{} {c}: fast {fast}", meta.id()));
                }
            }
        }
    }
    assert!(checked > 5000, "only {checked} candidates");
    assert!(
        mismatches.is_empty(),
        "{} mismatches: {:?}",
        mismatches.len(),
        mismatches
    );
}

#[test]
fn loads_queues_and_numbers() {
    let inv = load(
        "queue_id,caller_id_number,caller_id_name,region,anonymous\n\
         sales,+14155550100,Sales,US,no\n\
         london,020 7183 8750,\"London \"\"Desk\"\" \\ 2\",GB,yes\n\
         spare,,Spare,,\n",
        "number,region\n+14155550100,\n020 7183 8750,GB\n(212) 555-0199,\n",
    )
    .unwrap();
    assert_eq!(inv.queue_count(), 3);
    assert_eq!(inv.claimed_count(), 3);
    assert!(inv.is_claimed(&e("+442071838750")));
    assert!(inv.is_claimed(&e("+12125550199")));
    assert!(!inv.is_claimed(&e("+14155550101")));

    let sales = inv.queue("sales").unwrap();
    assert_eq!(sales.number, Some(e("+14155550100")));
    assert_eq!(
        (&*sales.name, sales.region, sales.anonymous),
        ("Sales", Region::US, false)
    );
    let london = inv.queue("london").unwrap();
    assert_eq!(london.number, Some(e("+442071838750")));
    assert_eq!(&*london.name, "London \"Desk\" \\ 2");
    assert_eq!((london.region, london.anonymous), (Region::GB, true));
    let spare = inv.queue("spare").unwrap();
    assert_eq!((spare.number, spare.region), (None, Region::US));
    assert!(inv.queue("nope").is_none());
}

#[test]
fn the_example_files_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let inv = Inventory::load(
        &dir.join("queues.csv"),
        &dir.join("numbers.csv"),
        Region::US,
    )
    .unwrap();
    assert_eq!(inv.queue_count(), 5);
    assert!(inv.queue("london-private").unwrap().anonymous);
    assert_eq!(inv.queue("overflow").unwrap().number, None);
    assert_eq!(
        &*inv.queue("support-ny").unwrap().name,
        "Support \"NY\" \\ East"
    );
}

#[test]
fn optional_columns_may_be_absent() {
    let inv = load(
        "queue_id,caller_id_number,caller_id_name,region\nsales,+14155550100,Sales,\n",
        "number\n+14155550100\n",
    )
    .unwrap();
    assert!(!inv.queue("sales").unwrap().anonymous);
    // A row may also leave out trailing optional columns the header declares.
    let inv = load(
        &format!("{QUEUES_HEADER}sales,+14155550100,Sales,US\n"),
        "number,region\n+14155550100\n",
    )
    .unwrap();
    assert_eq!(inv.claimed_count(), 1);
}

#[test]
fn anonymous_column_values() {
    let mut queues = QUEUES_HEADER.to_string();
    let values = ["true", "yes", "1", "TRUE", "false", "no", "0", ""];
    for (i, v) in values.iter().enumerate() {
        queues.push_str(&format!("q{i},,Name,,{v}\n"));
    }
    let inv = load(&queues, "number\n").unwrap();
    let got: Vec<bool> = (0..values.len())
        .map(|i| inv.queue(&format!("q{i}")).unwrap().anonymous)
        .collect();
    assert_eq!(got, [true, true, true, true, false, false, false, false]);

    let err = load(&format!("{QUEUES_HEADER}q,,Name,,maybe\n"), "number\n").unwrap_err();
    assert_eq!(places(&err), [("queues.csv", 2)]);
    assert!(err.lines[0].reason.contains("anonymous"), "{err}");
}

#[test]
fn each_bad_line_is_reported_with_file_line_and_reason() {
    let numbers = "number,region\n\
                   +14155550100,\n\
                   +1555,\n\
                   020 7183 8750,\n\
                   +14155550101,ZZ\n\
                   ,\n\
                   +14155550102,US,extra\n";
    let queues = format!(
        "{QUEUES_HEADER}\
         ok,+14155550100,OK,,\n\
         unclaimed,+14155550123,Unclaimed,,\n\
         ok,,Duplicate,,\n\
         bad name,,Name,,\n\
         cr,,\"Line\rBreak\",,\n\
         lf,,\"Two\nLines\",,\n\
         badnum,12345,Bad,,\n\
         badregion,,Name,XX,\n"
    );
    let err = load(&queues, numbers).unwrap_err();
    let expect = [
        ("numbers.csv", 3, "\"+1555\" is not a valid E.164 number"),
        ("numbers.csv", 4, "not a valid phone number for region US"),
        ("numbers.csv", 5, "region \"ZZ\""),
        ("numbers.csv", 6, "empty number"),
        ("numbers.csv", 7, "3 fields"),
        ("queues.csv", 3, "not a claimed number"),
        (
            "queues.csv",
            4,
            "duplicate queue_id `ok` (first defined at queues.csv:2)",
        ),
        ("queues.csv", 5, "queue_id \"bad name\""),
        ("queues.csv", 6, "control character '\\r'"),
        ("queues.csv", 7, "control character '\\n'"),
        // The quoted name above spans two lines, so this row starts on line 9.
        ("queues.csv", 9, "\"12345\" is not a valid phone number"),
        ("queues.csv", 10, "region \"XX\""),
    ];
    assert_eq!(err.lines.len(), expect.len(), "{err}");
    for (got, (file, line, reason)) in err.lines.iter().zip(expect) {
        assert_eq!((got.file.as_str(), got.line), (file, line), "{got}");
        assert!(got.reason.contains(reason), "{got} lacks {reason:?}");
    }
    // Display: one `file:line: reason` per line.
    let text = err.to_string();
    assert_eq!(text.lines().count(), expect.len());
    assert!(text.starts_with("numbers.csv:3: "), "{text}");
}

#[test]
fn wrong_or_missing_header_is_refused() {
    let err = load("id,number,name,region\nq,,N,\n", "number\n").unwrap_err();
    assert_eq!(places(&err), [("queues.csv", 1)]);
    assert!(err.lines[0]
        .reason
        .contains("expected `queue_id,caller_id_number,caller_id_name,region[,anonymous]`"));

    // (A numbers file whose first row is a number has no header: see
    // `numbers_file_may_come_without_a_header_row`.)
    let err = load(QUEUES_HEADER, "phone\n+14155550100\n").unwrap_err();
    assert_eq!(places(&err), [("numbers.csv", 1)]);
    assert!(
        err.lines[0]
            .reason
            .contains("expected `number[,region[,attest]]`"),
        "{err}"
    );

    let err = load("", "").unwrap_err();
    assert_eq!(places(&err), [("numbers.csv", 1), ("queues.csv", 1)]);
    assert!(err.lines[0].reason.contains("empty file"));
}

#[test]
fn header_matching_ignores_case_and_bom() {
    let inv = load(
        "\u{feff}Queue_ID,Caller_ID_Number,Caller_ID_Name,Region\nq,,N,\n",
        "NUMBER\n+14155550100\n",
    )
    .unwrap();
    assert_eq!((inv.queue_count(), inv.claimed_count()), (1, 1));
}

#[test]
fn invalid_utf8_is_reported_and_later_lines_still_checked() {
    let mut numbers = b"number\n+14155550100\n".to_vec();
    numbers.extend_from_slice(b"+1415\xff\n+1555\n");
    let err = Inventory::from_csv_readers(
        QUEUES_HEADER.as_bytes(),
        "queues.csv",
        &numbers[..],
        "numbers.csv",
        Region::US,
    )
    .unwrap_err();
    assert_eq!(places(&err), [("numbers.csv", 3), ("numbers.csv", 4)]);
}

#[test]
fn builder_checks_queue_numbers_against_claimed_ones() {
    let mut b = Inventory::builder(Region::GB);
    b.add_number("+442071838750").unwrap();
    b.add_queue("london", Some("+442071838750"), "London", None, true)
        .unwrap();
    b.add_queue("none", None, "", Some(Region::US), false)
        .unwrap();
    let inv = b.build().unwrap();
    assert_eq!(inv.queue("london").unwrap().region, Region::GB);
    assert!(inv.queue("london").unwrap().anonymous);
    assert_eq!(inv.queue("none").unwrap().region, Region::US);

    let mut b = Inventory::builder(Region::US);
    assert!(b.add_number("+1555").is_err());
    assert!(b.add_queue("x", None, "bad\nname", None, false).is_err());
    b.add_queue("x", Some("+14155550100"), "X", None, false)
        .unwrap();
    assert!(b.add_queue("x", None, "again", None, false).is_err());
    let err = b.build().unwrap_err();
    assert_eq!(err.lines.len(), 1);
    assert!(
        err.lines[0].reason.contains("not a claimed number"),
        "{err}"
    );
}

#[test]
fn handle_reload_swaps_and_keeps_old_inventory_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let (queues, numbers) = (
        dir.path().join("queues.csv"),
        dir.path().join("numbers.csv"),
    );
    std::fs::write(&queues, format!("{QUEUES_HEADER}a,+14155550100,A,,\n")).unwrap();
    std::fs::write(&numbers, "number\n+14155550100\n").unwrap();
    let handle = InventoryHandle::new(Inventory::empty());
    assert_eq!(handle.snapshot().queue_count(), 0);

    assert_eq!(
        handle.reload(&queues, &numbers, Region::US).unwrap(),
        Counts {
            queues: 1,
            numbers: 1
        }
    );
    let first = handle.snapshot();
    assert!(first.queue("a").is_some());

    // A bad line anywhere refuses the whole reload; the old inventory stays.
    std::fs::write(
        &queues,
        format!("{QUEUES_HEADER}a,+14155550100,A,,\nb,,B,,\nc,,C,,bogus\n"),
    )
    .unwrap();
    let err = handle.reload(&queues, &numbers, Region::US).unwrap_err();
    assert_eq!(places(&err)[0].1, 4);
    assert!(handle.current().queue("b").is_none());
    assert!(handle.current().queue("a").is_some());

    // A missing file is refused too, naming the file.
    let err = handle
        .reload(&queues, &dir.path().join("missing.csv"), Region::US)
        .unwrap_err();
    assert!(
        err.to_string().contains("missing.csv: cannot open"),
        "{err}"
    );
    assert_eq!(handle.current().queue_count(), 1);

    std::fs::write(
        &queues,
        format!("{QUEUES_HEADER}a,+14155550100,A,,\nb,,B,,\n"),
    )
    .unwrap();
    assert_eq!(
        handle.reload(&queues, &numbers, Region::US).unwrap(),
        Counts {
            queues: 2,
            numbers: 1
        }
    );
    assert!(handle.current().queue("b").is_some());
    // A snapshot taken earlier is unaffected by the swap.
    assert!(first.queue("b").is_none());

    handle.replace(Inventory::empty());
    assert_eq!(handle.current().queue_count(), 0);
}

#[test]
fn numbers_file_may_come_without_a_header_row() {
    let queues = "queue_id,caller_id_number,caller_id_name,region\nq1,+14155550100,Q,US\n";
    let inv = load(queues, "+14155550100\n(415) 555-0101,US\n").expect("headerless numbers load");
    assert_eq!(inv.claimed_count(), 2);
    assert!(inv.is_claimed(&e("+14155550101")));
    // A bad first line of a headerless file is reported as line 1.
    let err = load(queues, "+1555\n+14155550100\n").unwrap_err();
    assert_eq!(places(&err), vec![("numbers.csv", 1)]);
    // A wrong header is still an error, not data.
    assert!(load(queues, "phone\n+14155550100\n").is_err());
}

#[test]
fn a_number_listed_twice_loads_with_a_warning_naming_both_lines() {
    let inv = load(
        &format!("{QUEUES_HEADER}sales,+14155550100,Sales,US,\n"),
        "number,region\n+14155550100\n+14155550101\n(415) 555-0100,US\n",
    )
    .unwrap();
    assert_eq!(inv.claimed_count(), 2);
    let w: Vec<String> = inv.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        ["numbers.csv:4: +14155550100 is listed again (first on line 2); it is claimed once"]
    );
    // A refused load keeps its warnings for the operator.
    let err = load(
        &format!("{QUEUES_HEADER}sales,+14155550199,Sales,US,\n"),
        "+14155550100\n+14155550100\n",
    )
    .unwrap_err();
    assert_eq!(places(&err), [("queues.csv", 2)]);
    assert_eq!(err.warnings.len(), 1, "{:?}", err.warnings);
    assert_eq!(err.warnings[0].line, 2);
    assert!(load(
        &format!("{QUEUES_HEADER}sales,+14155550100,S,US,\n"),
        "+14155550100\n"
    )
    .unwrap()
    .warnings()
    .is_empty());
}

#[test]
fn an_unterminated_quote_is_named_as_such() {
    let err = load(
        &format!("{QUEUES_HEADER}sales,+14155550100,\"Sales,US,\nnext,+14155550100,N,US,\n"),
        "+14155550100\n",
    )
    .unwrap_err();
    assert_eq!(places(&err), [("queues.csv", 2)]);
    assert!(
        err.lines[0]
            .reason
            .starts_with("unterminated quote: a `\"` opened on this line is never closed"),
        "{err}"
    );
    // Left open on the last line, nothing after it to swallow.
    let err = load(
        &format!("{QUEUES_HEADER}sales,+14155550100,\"Sales,US,\n"),
        "+14155550100\n",
    )
    .unwrap_err();
    assert_eq!(places(&err), [("queues.csv", 2)]);
    assert!(
        err.lines[0].reason.starts_with("unterminated quote"),
        "{err}"
    );
    // A quoted value with a comma, closed on its line, is fine.
    assert!(load(
        &format!("{QUEUES_HEADER}sales,+14155550100,\"Sales, East\",US,\n"),
        "+14155550100\n",
    )
    .is_ok());
}

#[test]
fn numbers_file_attest_column_is_optional_and_checked() {
    let q = "queue_id,caller_id_number,caller_id_name,region\nq,+14155550100,Q,US\n";
    let n =
        "number,region,attest\n+14155550100,,B\n+14155550101,US,\n4155550102\n+14155550103,US,c\n";
    let inv = Inventory::from_csv_readers(q.as_bytes(), "q.csv", n.as_bytes(), "n.csv", Region::US)
        .unwrap();
    let attest = |s: &str| inv.attest_of(&cidgate::inventory::syntactic_e164(s).unwrap());
    use cidgate::stir::Attest;
    assert_eq!(attest("+14155550100"), Some(Attest::B));
    assert_eq!(attest("+14155550101"), None);
    assert_eq!(attest("+14155550102"), None);
    assert_eq!(attest("+14155550103"), Some(Attest::C));

    let bad = "number,region,attest\n+14155550100,,X\n";
    let err =
        Inventory::from_csv_readers(q.as_bytes(), "q.csv", bad.as_bytes(), "n.csv", Region::US)
            .unwrap_err();
    assert_eq!(err.lines[0].line, 2);
    assert!(
        err.lines[0]
            .reason
            .contains("attest \"X\" is not A, B or C"),
        "{err}"
    );
}

#[test]
fn records_and_snapshot_round_trip_and_are_checked_like_a_load() {
    use cidgate::inventory::{queue_row, snapshot, Edit};
    let us = Region::parse("US").unwrap();
    let mut b = Inventory::builder(us);
    b.add_number("+14155550100").unwrap();
    b.add_number_attested("+442071838750", cidgate::stir::Attest::B)
        .unwrap();
    b.add_queue("q1", Some("+14155550100"), "Say \"hi\", bye", None, true)
        .unwrap();
    b.add_queue("uk", Some("+442071838750"), "", Region::parse("GB"), false)
        .unwrap();
    b.add_queue("none", None, "No number", None, false).unwrap();
    let inv = b.build().unwrap();

    // Canonical rows name their region and read back identically.
    let q1 = inv.queue("q1").unwrap();
    assert_eq!(
        queue_row(q1),
        "+14155550100,\"Say \"\"hi\"\", bye\",US,true"
    );
    let rows: Vec<(String, String)> = inv
        .queues()
        .map(|q| (q.id.to_string(), queue_row(q)))
        .collect();
    let numbers: Vec<(String, &str)> = inv
        .number_records()
        .map(|(n, a)| (n.to_string(), a))
        .collect();
    assert!(numbers.contains(&("+442071838750".into(), "B")));
    assert!(numbers.contains(&("+14155550100".into(), "")));
    let back = Inventory::from_records(
        numbers.iter().map(|(n, a)| (n.as_str(), *a)),
        "k:numbers",
        rows.iter().map(|(k, r)| (k.as_str(), r.as_str())),
        "k:queues",
        Region::parse("GB").unwrap(),
    )
    .unwrap();
    assert_eq!(back.queue("q1"), Some(q1));
    assert_eq!(back.queue("uk"), inv.queue("uk"));
    assert_eq!(back.claimed_count(), 2);
    let uk = syntactic_e164("+442071838750").unwrap();
    assert_eq!(back.attest_of(&uk), Some(cidgate::stir::Attest::B));

    // Bad records are all named, with where they came from.
    let e = Inventory::from_records(
        [("+14155550100", ""), ("garbage", ""), ("+14155550101", "D")],
        "k:numbers",
        [
            ("q1", "+14155550199,X,US,false"),
            ("q2", "+14155550100,X,ZZ"),
        ],
        "k:queues",
        us,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("k:numbers: number \"garbage\""), "{e}");
    assert!(e.contains("attest \"D\""), "{e}");
    assert!(e.contains("k:queues: queue \"q2\""), "{e}");
    assert!(e.contains("+14155550199 is not a claimed number"), "{e}");

    // A row is read as the CSV reader reads it, quoted or not: fields
    // trimmed, trailing ones optional, at most four.
    let plain = Edit::put_queue("q7", " +14155550100 , Seven ,us", us).unwrap();
    let quoted = Edit::put_queue("q7", "\"+14155550100\",\"Seven\",US,false", us).unwrap();
    assert_eq!(plain, quoted);
    let Edit::PutQueue(q7) = &plain else {
        panic!("{plain:?}")
    };
    assert_eq!((&*q7.name, q7.anonymous), ("Seven", false));
    for (row, why) in [
        ("+14155550100,A,US,false,extra", "5 fields"),
        ("\"+14155550100\",A,US,false,extra", "5 fields"),
        ("", "empty row"),
        ("+14155550100,A,ZZ", "region \"ZZ\""),
    ] {
        let e = Edit::put_queue("q7", row, us).unwrap_err();
        assert!(e.contains(why), "{row:?}: {e}");
    }
    // Numbers from the store must already be E.164 (a push writes them so).
    let e = Inventory::from_records([("4155550100", "")], "k:numbers", [], "k:queues", us)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"4155550100\" is not in E.164 form"), "{e}");

    // Edits encode to log fields and decode to the same edit.
    for edit in [
        Edit::put_queue("q9", "+14155550100,Nine,,yes", us).unwrap(),
        Edit::delete_queue("q1"),
        Edit::claim_number("(415) 555-0101", us).unwrap(),
        Edit::release_number("+14155550100", us).unwrap(),
    ] {
        let e = edit.encode();
        assert_eq!(Edit::decode(e.op, &e.key, &e.row, Region::GB), Ok(edit));
    }
    // Releasing a number in use is a conflict; deleting the absent, not found.
    let release = Edit::release_number("+14155550100", us).unwrap();
    assert!(matches!(
        release.apply(&inv),
        Err(cidgate::inventory::EditError::Conflict(_))
    ));
    assert_eq!(
        Edit::delete_queue("nope").apply(&inv).unwrap_err(),
        cidgate::inventory::EditError::NotFound
    );

    // The snapshot file holds the same inventory and its stamp.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last-good.txt");
    let stamp = snapshot::Stamp {
        version: 7,
        revision: 3,
    };
    snapshot::write(&path, &inv, stamp).unwrap();
    let (read, read_stamp) = snapshot::read(&path, us).unwrap();
    assert_eq!(read_stamp, stamp);
    assert_eq!(read.queue("q1"), Some(q1));
    assert_eq!(read.queue("none"), inv.queue("none"));
    assert_eq!(read.claimed_count(), 2);
    assert_eq!(read.attest_of(&uk), Some(cidgate::stir::Attest::B));
    // A damaged snapshot is refused line by line like a file.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("+14155550100,,\n", "+1415555,,\n")).unwrap();
    let e = snapshot::read(&path, us).unwrap_err().to_string();
    assert!(e.contains("last-good.txt [numbers]:"), "{e}");
}
