//! The `cidgate` command line as a newcomer uses it: check-config, resolve,
//! demo. Runs the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::binary::{cidgate, cidgate_code};

/// queues.csv and numbers.csv in `dir`, line 3 of numbers.csv not a number.
fn write_inventory_with_a_bad_number(dir: &Path) {
    std::fs::write(
        dir.join("queues.csv"),
        "queue_id,caller_id_number,caller_id_name,region\nq1,+14155550100,Q,US\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("numbers.csv"),
        "number,region\n+14155550100\nnot-a-number\n",
    )
    .unwrap();
}

/// Copies examples/ into `dir` with the config passed through `edit`; returns
/// the config's path.
fn copy_example(dir: &Path, edit: impl FnOnce(String) -> String) -> String {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for file in ["queues.csv", "numbers.csv"] {
        std::fs::copy(examples.join(file), dir.join(file)).unwrap();
    }
    let toml = std::fs::read_to_string(examples.join("cidgate.toml")).unwrap();
    let cfg = dir.join("cidgate.toml");
    std::fs::write(&cfg, edit(toml)).unwrap();
    cfg.display().to_string()
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
    write_inventory_with_a_bad_number(dir.path());
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
    let (code, out, err) = cidgate_code(&["resolve", "--config", &cfg, "--queue", queue]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("outcome:  queue"), "{out}");
    assert!(out.contains("number:   +"), "{out}");
    assert!(out.contains("why:"), "{out}");

    let (code, out, _) = cidgate_code(&[
        "resolve",
        "--config",
        &cfg,
        "--queue",
        queue,
        "--caller-id",
        "garbage",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("outcome:  fallback_not_e164"), "{out}");
}

#[test]
fn resolve_exit_code_says_forward_reject_or_no_decision() {
    let cfg = example();
    // A reject is an answer, but not a forward: exit 1.
    let (code, out, _) = cidgate_code(&["resolve", "--config", &cfg, "--queue", "no-such-queue"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("decision: reject (403 Forbidden)"), "{out}");
    assert!(out.contains("outcome:  unknown_queue"), "{out}");
    let (code, out, _) = cidgate_code(&["resolve", "--config", &cfg, "--queue", "overflow"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("outcome:  no_queue_number"), "{out}");

    // No decision possible: exit 2, the reason on stderr.
    let (code, out, err) = cidgate_code(&[
        "resolve",
        "--config",
        "/nonexistent/cidgate.toml",
        "--queue",
        "sales-us",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("/nonexistent/cidgate.toml"), "{err}");
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = cidgate_code(&["resolve", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");

    // The codes are documented where an operator looks first.
    let (code, help, _) = cidgate_code(&["resolve", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("Exit codes: 0 the call is forwarded; 1 the call is rejected"),
        "{help}"
    );
}

#[test]
fn resolve_in_normalize_mode_says_what_the_number_was_read_as() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = copy_example(dir.path(), |toml| {
        toml.replace(
            "dynamic_format = \"strict\"",
            "dynamic_format = \"normalize\"",
        )
    });
    let run = |number: &str| {
        cidgate_code(&[
            "resolve",
            "--config",
            &cfg,
            "--queue",
            "london",
            "--caller-id",
            number,
        ])
    };
    let (code, out, err) = run("07911 123456");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("outcome:  dynamic"), "{out}");
    assert!(
        out.contains(
            "why:      per-call number \"07911 123456\" was normalised to +447911123456 \
             (read in region GB, queue london's) and is claimed by the instance"
        ),
        "{out}"
    );
    assert!(!out.contains("is E.164 and claimed"), "{out}");

    let (_, out, _) = run("07911 123457");
    assert!(out.contains("outcome:  fallback_unclaimed"), "{out}");
    assert!(
        out.contains("normalised to +447911123457 (read in region GB), which is not claimed"),
        "{out}"
    );
    let (_, out, _) = run("12");
    assert!(out.contains("outcome:  fallback_not_e164"), "{out}");
    assert!(
        out.contains("not a valid number, in E.164 or in region GB"),
        "{out}"
    );

    // Already E.164: said as such, in either mode.
    let (_, out, _) = run("+447911123456");
    assert!(
        out.contains("per-call number \"+447911123456\" is E.164 and claimed"),
        "{out}"
    );
}

#[test]
fn check_config_takes_the_file_with_or_without_config_flag() {
    let (code, out, err) = cidgate_code(&["check-config", "--config", &example()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    let (code, _, err) = cidgate_code(&["check-config"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cidgate_code(&["check-config", "--config", &example(), &example()]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_config_reports_every_problem_and_the_inventory_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    write_inventory_with_a_bad_number(dir.path());
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        "[server]\nlistne = []\nlog = \"xml\"\nadmin = \"nowhere\"\n\n\
         [logging]\nlevel = [\n  1,\n]\n\n[callerid]\nqueue_heder = \"X\"\npai = \"sip\"\n\n\
         [reject]\ncode = 99\n",
    )
    .unwrap();
    let (code, out, err) = cidgate_code(&["check-config", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for expected in [
        "gw.toml:2:1: unknown key `listne` in [server]",
        "gw.toml:3:7: [server] log: unknown variant `xml`",
        "gw.toml:6:2: unknown section `logging`",
        "gw.toml:12:1: unknown key `queue_heder` in [callerid]",
        "gw.toml:4:9: [server] admin: expected IP:PORT",
        "gw.toml:16:8: [reject] code: must be a final error status",
        "numbers.csv:3: \"not-a-number\" is not a valid phone number for region US",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), 7, "{err}");
}

#[test]
fn duplicate_numbers_are_a_warning_naming_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = copy_example(dir.path(), |toml| toml);
    let numbers = dir.path().join("numbers.csv");
    let mut text = std::fs::read_to_string(&numbers).unwrap();
    let lines = text.lines().count();
    // The same number again, once as written and once in national form.
    text.push_str("+14155550100\n(415) 555-0100,US\n");
    std::fs::write(&numbers, text).unwrap();
    let (code, out, err) = cidgate_code(&["check-config", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    for line in [lines + 1, lines + 2] {
        let expected = format!(
            "warning: {}:{line}: +14155550100 is listed again (first on line 2); it is claimed once",
            numbers.display()
        );
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn an_unterminated_quote_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = copy_example(dir.path(), |toml| toml);
    let queues = dir.path().join("queues.csv");
    let good = std::fs::read_to_string(&queues).unwrap();
    let line = good.lines().count() + 1;
    std::fs::write(
        &queues,
        format!("{good}extra,+14155550100,\"Extra Desk,US,\nlast,+14155550101,Last,US,\n"),
    )
    .unwrap();
    let (code, _, err) = cidgate_code(&["check-config", &cfg]);
    assert_eq!(code, 1, "{err}");
    let expected = format!(
        "{}:{line}: unterminated quote: a `\"` opened on this line is never closed",
        queues.display()
    );
    assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");

    // Closed a few lines later: both lines named, later rows still checked.
    std::fs::write(
        &queues,
        format!("{good}extra,+14155550100,\"Extra Desk,US,\nmid,+1,M,US\nend,\"+14155550101\",E,US\nbad,nope,B,US\n"),
    )
    .unwrap();
    let (code, _, err) = cidgate_code(&["check-config", &cfg]);
    assert_eq!(code, 1, "{err}");
    let expected = format!(
        "{}:{line}: unterminated quote: a `\"` opened on this line is only closed on line {}",
        queues.display(),
        line + 2
    );
    assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    assert!(
        err.contains(&format!("{}:{}: ", queues.display(), line + 3)),
        "{err}"
    );
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

/// The example config with its listen list and admin address replaced; the
/// lines must be there as shipped, or the test would bind real ports.
fn listen_and_admin(toml: String, listen: &str, admin: &str) -> String {
    let listen_line = "listen = [\"udp://127.0.0.1:5060\", \"tcp://127.0.0.1:5060\"]";
    let admin_line = "admin  = \"127.0.0.1:8080\"";
    assert!(toml.contains(listen_line) && toml.contains(admin_line));
    toml.replace(listen_line, listen)
        .replace(admin_line, &format!("admin = \"{admin}\""))
}

#[test]
fn a_listener_that_cannot_bind_is_named_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = taken_udp.local_addr().unwrap();
    let cfg = copy_example(dir.path(), |toml| {
        listen_and_admin(toml, &format!("listen = [\"udp://{udp}\"]"), "")
    });
    let (code, _, err) = cidgate_code(&["run", "--config", &cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "error: SIP UDP listener udp://{udp} ([server] listen): cannot bind: Address already in use"
        )),
        "{err}"
    );

    let taken_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = taken_tcp.local_addr().unwrap();
    let cfg = copy_example(dir.path(), |toml| {
        listen_and_admin(toml, &format!("listen = [\"tcp://{tcp}\"]"), "")
    });
    let (code, _, err) = cidgate_code(&["run", "--config", &cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "error: SIP TCP listener tcp://{tcp} ([server] listen): cannot bind: Address already in use"
        )),
        "{err}"
    );

    // The admin API: SIP on a free port, the admin address taken.
    let cfg = copy_example(dir.path(), |toml| {
        listen_and_admin(toml, "listen = [\"udp://127.0.0.1:0\"]", &tcp.to_string())
    });
    let (code, _, err) = cidgate_code(&["run", "--config", &cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "error: admin API listener {tcp} ([server] admin): cannot bind: Address already in use"
        )),
        "{err}"
    );
    drop((taken_udp, taken_tcp));
}

#[test]
fn readme_cli_examples_run_as_written() {
    for ex in common::readme::examples("cli-examples", "cidgate") {
        let args: Vec<&str> = ex.words[1..].iter().map(String::as_str).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_cidgate"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let all = format!(
            "{}\n{stdout}{}",
            ex.line,
            String::from_utf8_lossy(&out.stderr)
        );
        // `exit N: valid` or `exit N: OUTCOME [→ NUMBER]`
        let rest = ex.expect.strip_prefix("exit ").expect("`# exit N: …`");
        let (code, what) = rest.split_once(": ").expect("`exit N: …`");
        assert_eq!(out.status.code(), Some(code.parse().unwrap()), "{all}");
        let mut what = what.split(" → ");
        match what.next().unwrap() {
            "valid" => assert!(stdout.contains(": ok ("), "{all}"),
            outcome => assert!(stdout.contains(&format!("outcome:  {outcome}\n")), "{all}"),
        }
        if let Some(number) = what.next() {
            assert!(stdout.contains(&format!("number:   {number}\n")), "{all}");
        }
    }
}
