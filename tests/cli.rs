//! The `cidgate` command line as a newcomer uses it: check-config, resolve,
//! demo. Runs the real binary.

use std::path::Path;
use std::process::Command;

fn cidgate(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(args)
        .output()
        .expect("cidgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/cidgate.toml")
        .display()
        .to_string()
}

#[test]
fn check_config_accepts_the_example_and_names_the_bad_key() {
    let (ok, out, err) = cidgate(&["check-config", &example()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\ndomain = \"gw.example.net\"\n\n[callerid]\npai = \"sip\"\nqueue_heder = \"X-Q\"\n").unwrap();
    let (ok, _, err) = cidgate(&["check-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.toml:6"), "{err}");
    assert!(err.contains("queue_heder"), "{err}");

    // A config whose inventory has a bad line fails, naming file and line.
    std::fs::write(
        dir.path().join("queues.csv"),
        "queue_id,caller_id_number,caller_id_name,region\nq1,+14155550100,Q,US\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("numbers.csv"),
        "number,region\n+14155550100\nnot-a-number\n",
    )
    .unwrap();
    let cfg = dir.path().join("inv.toml");
    std::fs::write(
        &cfg,
        "[inventory]\nqueues = \"queues.csv\"\nnumbers = \"numbers.csv\"\n",
    )
    .unwrap();
    let (ok, _, err) = cidgate(&["check-config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("numbers.csv:3"), "{err}");
}

#[test]
fn resolve_prints_the_decision_and_why() {
    let cfg = example();
    let queues =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/queues.csv"))
            .unwrap();
    let queue = queues.lines().nth(1).unwrap().split(',').next().unwrap();
    let (ok, out, err) = cidgate(&["resolve", "--config", &cfg, "--queue", queue]);
    assert!(ok, "{err}");
    assert!(out.contains("outcome:  queue"), "{out}");
    assert!(out.contains("number:   +"), "{out}");
    assert!(out.contains("why:"), "{out}");

    let (ok, out, _) = cidgate(&[
        "resolve",
        "--config",
        &cfg,
        "--queue",
        queue,
        "--caller-id",
        "garbage",
    ]);
    assert!(ok);
    assert!(out.contains("outcome:  fallback_not_e164"), "{out}");

    let (ok, out, _) = cidgate(&["resolve", "--config", &cfg, "--queue", "no-such-queue"]);
    assert!(ok);
    assert!(out.contains("decision: reject (403 Forbidden)"), "{out}");
    assert!(out.contains("outcome:  unknown_queue"), "{out}");
}

#[test]
fn demo_shows_every_outcome() {
    let (ok, out, err) = cidgate(&["demo"]);
    assert!(ok, "{out}{err}");
    for outcome in [
        "queue → +14155550100",
        "dynamic → +14155550101",
        "fallback_not_e164 → +14155550100",
        "fallback_unclaimed → +442071838750",
        "unknown_queue",
        "no_queue_number",
    ] {
        assert!(
            out.contains(&format!("outcome       {outcome}")),
            "missing {outcome} in:\n{out}"
        );
    }
    assert!(out.contains("carrier got  From: \"Acme Sales\" <sip:+14155550100@gw.example.net;user=phone>;tag=pbx0"), "{out}");
    assert!(
        out.contains("Reason: Q.850;cause=21;text=\"no outbound caller ID\""),
        "{out}"
    );
    assert!(
        out.contains("From: \"Anonymous\" <sip:anonymous@anonymous.invalid>"),
        "{out}"
    );
}
