//! CNAM: eligibility by region (libphonenumber metadata), name shaping, the
//! `cnam export` file read back with the csv crate, check-config warnings and
//! what `resolve` shows. Runs the real binary for the CLI parts.

mod common;

use std::path::{Path, PathBuf};

use cidgate::cnam::{eligibility, shape};
use cidgate::inventory::normalize;
use cidgate::inventory::Region;
use common::binary::cidgate;

/// Numbers of several NANP regions and one outside it (libphonenumber's
/// example numbers, valid for their region).
const US: &str = "+12015550123";
const PR: &str = "+17872345678";
const VI: &str = "+13406421234";
const CA: &str = "+15062345678";
const GU: &str = "+16713001234";
const JM: &str = "+18765230123";
const GB: &str = "+442071838750";

#[test]
fn eligible_only_for_us_pr_and_vi() {
    let e = |n: &str| eligibility(&normalize(n, Region::US).expect(n));
    for n in [US, PR, VI] {
        assert!(e(n).is_eligible(), "{n}: {}", e(n));
        assert_eq!(e(n).reason(), "");
    }
    for (n, region) in [(CA, "CA"), (GU, "GU"), (JM, "JM")] {
        let v = e(n);
        assert!(!v.is_eligible(), "{n}");
        assert!(v.reason().contains(&format!("region {region}")), "{n}: {v}");
    }
    let gb = e(GB);
    assert!(!gb.is_eligible());
    assert!(gb
        .reason()
        .contains("outside the North American Numbering Plan"));
    assert!(gb.reason().contains("(GB)"), "{gb}");
}

#[test]
fn shaping_keeps_the_allowed_characters_only() {
    assert_eq!(shape("\"Acme\" Support"), "Acme Support");
    assert_eq!(shape("Café Señor"), "Cafe Senor");
    assert_eq!(shape("Acme Customer Support Team"), "Acme Customer S");
    assert_eq!(shape("O'Brien & Co., Inc-1"), "O'Brien & Co.,");
    let allowed = |c: char| c.is_ascii_alphanumeric() || " .,&'-".contains(c);
    for name in ["Zoë’s «Bar»", "東京 Office", "a\tb\u{7}c", "💡 Ideas Inc"] {
        let s = shape(name);
        assert!(s.len() <= 15 && s.chars().all(allowed), "{name:?} -> {s:?}");
        assert_eq!(s.trim(), s);
    }
}

/// A config with queues in several regions and awkward names.
fn lab(dir: &Path, cnam_names: bool) -> PathBuf {
    std::fs::write(
        dir.join("queues.csv"),
        format!(
            "queue_id,caller_id_number,caller_id_name,region\n\
             us,{US},\"Acme \"\"Best\"\" Support Team\",US\n\
             pr,{PR},Café Señor Müller,US\n\
             vi,{VI},VI Desk,US\n\
             ca,{CA},Maple Leaf Co.,US\n\
             gu,{GU},Guam Office,US\n\
             jm,{JM},Kingston,US\n\
             gb,{GB},Ünïcode Desk London,GB\n\
             nonum,,No Number,US\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("numbers.csv"),
        format!("number,region\n{US}\n{PR}\n{VI}\n{CA}\n{GU}\n{JM}\n{GB}\n+12015550199\n"),
    )
    .unwrap();
    let cfg = dir.join("cidgate.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nadmin = \"\"\n[callerid]\ncnam_names = {cnam_names}\n"),
    )
    .unwrap();
    cfg
}

#[test]
fn export_lists_every_presented_number_and_reads_back_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = lab(dir.path(), false);
    let out = dir.path().join("cnam.csv");
    let (ok, _, err) = cidgate(&[
        "cnam",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let mut reader = csv::Reader::from_path(&out).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["number", "name", "cnam_name", "eligible", "reason"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    // One row per queue number; the queue without a number and the claimed
    // number no queue presents are not listed.
    let numbers: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    let mut expected = vec![US, PR, VI, CA, GU, JM, GB];
    expected.sort_unstable();
    assert_eq!(numbers, expected);
    let row = |n: &str| rows.iter().find(|r| &r[0] == n).unwrap().clone();
    let us = row(US);
    assert_eq!(&us[1], "Acme \"Best\" Support Team");
    assert_eq!(&us[2], "Acme Best Suppo");
    assert_eq!((&us[3], &us[4]), ("true", ""));
    let pr = row(PR);
    assert_eq!((&pr[2], &pr[3]), ("Cafe Senor Mull", "true"));
    assert_eq!(&row(VI)[3], "true");
    for (n, region) in [(CA, "CA"), (GU, "GU"), (JM, "JM")] {
        let r = row(n);
        assert_eq!(&r[3], "false", "{n}");
        assert!(r[4].contains(region), "{n}: {}", &r[4]);
    }
    let gb = row(GB);
    assert_eq!((&gb[2], &gb[3]), ("Unicode Desk Lo", "false"));
    assert!(gb[4].contains("North American Numbering Plan"));

    // Without --output the same CSV goes to standard output.
    let (ok, stdout, _) = cidgate(&["cnam", "export", "--config", cfg.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(stdout, std::fs::read_to_string(&out).unwrap());
}

#[test]
fn check_config_warns_for_each_shaped_name_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = lab(dir.path(), true);
    let (ok, out, err) = cidgate(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let out = err;
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 3, "{out}");
    assert!(
        out.contains("queue `us`") && out.contains("\"Acme Best Suppo\""),
        "{out}"
    );
    assert!(
        out.contains("queue `pr`") && out.contains("\"Cafe Senor Mull\""),
        "{out}"
    );
    assert!(out.contains("queue `gb`"), "{out}");
    // Off: no warnings.
    let cfg = lab(dir.path(), false);
    let (ok, _, out) = cidgate(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok && !out.contains("warning"), "{out}");
}

#[test]
fn resolve_presents_the_shaped_name_only_for_eligible_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = lab(dir.path(), true);
    let (ok, out, err) = cidgate(&[
        "resolve",
        "--config",
        cfg.to_str().unwrap(),
        "--queue",
        "us",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("name:     Acme Best Suppo\n"), "{out}");
    assert!(
        out.contains("cnam:     \"Acme Best Suppo\" (eligible)"),
        "{out}"
    );
    let (_, out, _) = cidgate(&[
        "resolve",
        "--config",
        cfg.to_str().unwrap(),
        "--queue",
        "gb",
    ]);
    assert!(out.contains("name:     Ünïcode Desk London\n"), "{out}");
    assert!(out.contains("not eligible"), "{out}");
}
