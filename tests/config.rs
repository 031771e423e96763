//! Configuration parsing and checking (docs/behaviour.md §7).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use cidgate::callerid::policy::DynamicFormat;
use cidgate::callerid::PaiForm;
use cidgate::config::{Config, ConfigError, LogFormat};
use cidgate::inventory::Region;
use cidgate::sip::Transport;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("conf/cidgate.toml"))
}

/// The single problem a text has, as displayed.
fn only_error(text: &str) -> String {
    let err = parse(text).unwrap_err();
    assert_eq!(err.issues().len(), 1, "{err}");
    err.to_string()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn empty_file_is_the_spec_example() {
    let c = parse("").unwrap();
    let listen: Vec<_> = c
        .server
        .listen
        .iter()
        .map(|l| (l.transport, l.addr))
        .collect();
    assert_eq!(
        listen,
        [
            (Transport::Udp, sock("127.0.0.1:5060")),
            (Transport::Tcp, sock("127.0.0.1:5060"))
        ]
    );
    assert_eq!(c.server.domain, "gw.example.net");
    assert_eq!(c.server.admin, Some(sock("127.0.0.1:8080")));
    assert_eq!(c.server.log, LogFormat::Human);
    assert_eq!(c.trust.nets(), ["127.0.0.1/32".parse().unwrap()]);
    assert_eq!(c.carrier.len(), 1);
    assert_eq!(
        (c.carrier[0].transport, c.carrier[0].addr),
        (Transport::Udp, sock("127.0.0.1:5080"))
    );
    assert_eq!(c.callerid.queue_header, "X-Queue-Id");
    assert_eq!(c.callerid.dynamic_header, "X-Caller-Id");
    assert_eq!(c.callerid.dynamic_format, DynamicFormat::Strict);
    assert_eq!(c.callerid.default_region, Region::US);
    assert_eq!(c.callerid.pai, PaiForm::Sip);
    assert_eq!(
        c.callerid.strip,
        [
            "X-Queue-Id",
            "X-Caller-Id",
            "P-Preferred-Identity",
            "Remote-Party-ID"
        ]
    );
    assert_eq!(
        (c.reject.code, c.reject.phrase.as_str()),
        (403, "Forbidden")
    );
    assert_eq!(
        c.reject.reason,
        "Q.850;cause=21;text=\"no outbound caller ID\""
    );
    assert_eq!(
        c.reject.warning,
        "399 gw.example.net \"no outbound caller ID\""
    );
    assert!(c.reject.headers.is_empty());
    // Relative inventory paths are read from the config file's directory.
    assert_eq!(c.inventory.queues, PathBuf::from("conf/queues.csv"));
    assert_eq!(c.inventory.numbers, PathBuf::from("conf/numbers.csv"));
    assert_eq!(c.source, PathBuf::from("conf/cidgate.toml"));

    let d = Config::default();
    assert_eq!(
        (d.server, d.callerid, d.reject),
        (c.server, c.callerid, c.reject)
    );
}

#[test]
fn the_example_file_parses_and_its_inventory_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cidgate.toml");
    let c = Config::from_file(&path).unwrap();
    assert_eq!(c.server.domain, "gw.example.net");
    assert_eq!(
        c.inventory.queues,
        path.parent().unwrap().join("queues.csv")
    );
    let inv = c.load_inventory().unwrap();
    assert!(inv.queue("sales-us").is_some());
}

#[test]
fn every_key_can_be_set() {
    let c = parse(
        r#"
[server]
listen = ["udp://10.0.0.1:5070", "TCP://[::1]:5071"]
domain = "sbc.example.org"
admin  = ""
log = "json"

[trust]
pbx = ["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"]

[[carrier]]
uri = "sip:192.0.2.10:5090;transport=tcp"

[[carrier]]
uri = "sip:[2001:db8::20];lr"

[callerid]
queue_header   = "X-Q"
dynamic_header = "X-C"
dynamic_format = "normalize"
default_region = "gb"
pai            = "both"
strip          = ["X-Q"]

[reject]
code    = 480
phrase  = "Temporarily Unavailable"
reason  = ""
headers = ["X-ACW: 1", "Retry-After: 30"]

[inventory]
queues  = "/var/lib/cidgate/q.csv"
numbers = "n/numbers.csv"
"#,
    )
    .unwrap();
    assert_eq!(c.server.listen[1].transport, Transport::Tcp);
    assert_eq!(c.server.listen[1].addr, sock("[::1]:5071"));
    assert_eq!(c.server.admin, None);
    assert_eq!(c.server.log, LogFormat::Json);
    assert_eq!(c.trust.nets()[1], "192.0.2.7/32".parse().unwrap());
    assert_eq!(
        (c.carrier[0].transport, c.carrier[0].addr),
        (Transport::Tcp, sock("192.0.2.10:5090"))
    );
    assert_eq!(
        (c.carrier[1].transport, c.carrier[1].addr),
        (Transport::Udp, sock("[2001:db8::20]:5060"))
    );
    assert_eq!(c.callerid.dynamic_format, DynamicFormat::Normalize);
    assert_eq!(c.callerid.default_region, Region::GB);
    assert_eq!(c.callerid.pai, PaiForm::Both);
    assert_eq!(c.callerid.strip, ["X-Q"]);
    assert_eq!(
        (
            c.reject.code,
            c.reject.phrase.as_str(),
            c.reject.reason.as_str()
        ),
        (480, "Temporarily Unavailable", "")
    );
    // The default Warning follows the configured domain.
    assert_eq!(
        c.reject.warning,
        "399 sbc.example.org \"no outbound caller ID\""
    );
    assert_eq!(c.reject.headers, ["X-ACW: 1", "Retry-After: 30"]);
    assert_eq!(c.inventory.queues, PathBuf::from("/var/lib/cidgate/q.csv"));
    assert_eq!(c.inventory.numbers, PathBuf::from("conf/n/numbers.csv"));
}

#[test]
fn trust_matches_networks_hosts_and_mapped_ipv4() {
    let c = parse("[trust]\npbx = [\"10.1.0.0/16\", \"192.0.2.7\", \"2001:db8::/32\"]\n").unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(c.trust.is_trusted(ip("10.1.200.3")));
    assert!(c.trust.is_trusted(ip("192.0.2.7")));
    assert!(c.trust.is_trusted(ip("::ffff:192.0.2.7")));
    assert!(c.trust.is_trusted(ip("2001:db8::1")));
    assert!(!c.trust.is_trusted(ip("192.0.2.8")));
    assert!(!c.trust.is_trusted(ip("10.2.0.1")));
    assert!(!c.trust.is_trusted(ip("127.0.0.1")));
}

#[test]
fn unknown_key_names_the_key_section_and_line() {
    let text = "[server]\ndomain = \"x.example\"\n\n[callerid]\npai = \"tel\"\nfoo = 1\n";
    assert_eq!(
        only_error(text),
        "conf/cidgate.toml:6:1: unknown key `foo` in [callerid] (expected one of `queue_header`, \
         `dynamic_header`, `dynamic_format`, `default_region`, `pai`, `strip`, `cnam_names`)"
    );
    let e = only_error("# comment\nlisten = []\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:1: unknown key `listen` at top level"),
        "{e}"
    );
    let e = only_error("[server]\n[logging]\nlevel = 1\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:2: unknown section `logging`"),
        "{e}"
    );
    let e = only_error("[[carrier]]\nuri = \"sip:192.0.2.1\"\nport = 5060\n");
    assert!(
        e.starts_with("conf/cidgate.toml:3:1: unknown key `port` in [[carrier]]"),
        "{e}"
    );
}

#[test]
fn bad_listen_addresses() {
    let e = only_error("[server]\ndomain = \"a.b\"\nlisten = [\"udp//x\"]\n");
    assert!(
        e.starts_with("conf/cidgate.toml:3:11: [server] listen: not a listen address"),
        "{e}"
    );
    assert!(e.contains("\"udp//x\""), "{e}");
    for bad in [
        "sctp://127.0.0.1:5061",
        "udp://localhost:5060",
        "udp://127.0.0.1",
        "udp://[::1]",
    ] {
        let e = only_error(&format!("[server]\nlisten = [\"{bad}\"]\n"));
        assert!(e.contains("[server] listen:"), "{bad}: {e}");
    }
    let e = only_error("[server]\nlisten = []\n");
    assert!(e.contains("at least one"), "{e}");
    let e = only_error("[server]\nlisten = \"udp://127.0.0.1:5060\"\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:10: [server] listen: invalid type"),
        "{e}"
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "[server]\ndomain = \"bad domain\"\nadmin = \"nowhere\"\n\n[trust]\npbx = [\"10.0.0.0/33\"]\n\n\
                [callerid]\ndefault_region = \"XX\"\nqueue_header = \"X Queue\"\n";
    let err = parse(text).unwrap_err();
    let lines: Vec<usize> = err.issues().iter().map(|i| i.line).collect();
    assert_eq!(lines, [2, 3, 6, 10, 9], "{err}");
    let text = err.to_string();
    for expect in [
        "[server] domain",
        "[server] admin",
        "[trust] pbx",
        "[callerid] default_region",
        "[callerid] queue_header",
    ] {
        assert!(text.contains(expect), "{expect} missing from {text}");
    }
}

#[test]
fn bad_carriers() {
    for (uri, why) in [
        ("sips:192.0.2.1;transport=udp", "sips: means TLS"),
        ("http://192.0.2.1", "expected sip:"),
        ("sip:192.0.2.1;transport=sctp", "transport=sctp"),
        (
            "sip:192.0.2.1;transprot=tcp",
            "unknown URI parameter `transprot`",
        ),
        ("sip:alice@192.0.2.1", "no user part"),
        ("sip:192.0.2.1:99999", "not a port"),
        ("sip:no-such-host.invalid", "does not resolve"),
        ("sip:bad host", "not a host"),
        ("sip:[::1", "unclosed"),
    ] {
        let e = only_error(&format!("[[carrier]]\nuri = \"{uri}\"\n"));
        assert!(
            e.starts_with("conf/cidgate.toml:2:7: [[carrier]] uri:"),
            "{uri}: {e}"
        );
        assert!(e.contains(why), "{uri}: {e} lacks {why:?}");
    }
    let e = only_error("[carrier]\nuri = \"sip:192.0.2.1\"\n");
    assert!(
        e.contains("[carrier]: invalid type: map, expected a sequence (write [[carrier]]"),
        "{e}"
    );
    let e = only_error("carrier = []\n");
    assert!(e.contains("at least one carrier"), "{e}");
}

#[test]
fn reject_values_are_checked() {
    for code in ["200", "399", "700", "-1", "100000"] {
        let e = only_error(&format!("[reject]\ncode = {code}\n"));
        assert!(
            e.starts_with("conf/cidgate.toml:2:8: [reject] code: must be a final error status"),
            "{e}"
        );
    }
    assert_eq!(parse("[reject]\ncode = 699\n").unwrap().reject.code, 699);
    for key in ["phrase", "reason", "warning"] {
        let e = only_error(&format!("[reject]\n{key} = \"a\\r\\nX-Injected: 1\"\n"));
        assert!(
            e.contains(&format!("[reject] {key}: must not contain CR, LF")),
            "{e}"
        );
    }
    for bad in [
        "no colon",
        "Bad Name: x",
        "X-A: one\nX-B: two",
        ": empty name",
    ] {
        let e = only_error(&format!("[reject]\nheaders = [{bad:?}]\n"));
        assert!(e.contains("[reject] headers:"), "{bad:?}: {e}");
    }
    let c = parse("[reject]\nwarning = \"\"\n").unwrap();
    assert_eq!(c.reject.warning, "");
}

#[test]
fn enum_values_are_checked() {
    let e = only_error("[callerid]\ndynamic_format = \"loose\"\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:18: [callerid] dynamic_format: unknown variant `loose`"),
        "{e}"
    );
    let e = only_error("[callerid]\npai = \"uri\"\n");
    assert!(e.contains("[callerid] pai: unknown variant `uri`"), "{e}");
    let e = only_error("[server]\nlog = \"xml\"\n");
    assert!(e.contains("[server] log: unknown variant `xml`"), "{e}");
    let c = parse("[callerid]\npai = \"tel\"\n").unwrap();
    assert_eq!(c.callerid.pai, PaiForm::Tel);
}

#[test]
fn toml_syntax_errors_have_a_position() {
    let e = only_error("[server]\ndomain = \"unterminated\n");
    assert!(e.starts_with("conf/cidgate.toml:2:"), "{e}");
    let e = only_error("[server\n");
    assert!(e.starts_with("conf/cidgate.toml:1:"), "{e}");
    // A key given twice is TOML's error, with the second occurrence's line.
    let e = only_error("[server]\ndomain = \"a.b\"\ndomain = \"c.d\"\n");
    assert!(e.starts_with("conf/cidgate.toml:3:"), "{e}");
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "\u{0}",
        "[",
        "[[",
        "= 1",
        "[server]\nlisten = [1, 2]",
        "[server]\nadmin = 5",
        "[reject]\ncode = \"403\"",
        "[reject]\ncode = 1e400",
        "[trust]\npbx = [\"\"]",
        "[[carrier]]",
        "[[carrier]]\nuri = \"sip:\"",
        "[[carrier]]\nuri = \"sip::\"",
        "[[carrier]]\nuri = \"sip:[]:5060\"",
        "[callerid]\ndefault_region = \"\u{e9}\u{e9}\"",
        "[server]\ndomain = \"\"",
        "\u{feff}[server]",
        "[server]\ndomain = \"a..b\"",
    ];
    for text in inputs {
        let _ = parse(text);
    }
    // Every prefix of a full configuration, cut anywhere.
    let full = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cidgate.toml"),
    )
    .unwrap();
    for (i, _) in full.char_indices() {
        let _ = parse(&full[..i]);
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = Config::from_file(Path::new("/nonexistent/cidgate.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/cidgate.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn reject_phrase_follows_the_code_unless_configured() {
    let c = parse("[reject]\ncode = 480\n").unwrap();
    assert_eq!(c.reject.phrase, "Temporarily Unavailable");
    let c = parse("[reject]\ncode = 603\n").unwrap();
    assert_eq!(c.reject.phrase, "Decline");
    let c = parse("[reject]\ncode = 480\nphrase = \"No Caller ID\"\n").unwrap();
    assert_eq!(c.reject.phrase, "No Caller ID");
    assert_eq!(parse("").unwrap().reject.phrase, "Forbidden");
}

#[test]
fn dialog_secret_is_optional_and_must_be_long_enough() {
    assert_eq!(parse("").unwrap().server.dialog_secret, None);
    let c = parse("[server]\ndialog_secret = \"0123456789abcdef-shared\"\n").unwrap();
    assert_eq!(
        c.server.dialog_secret.as_deref(),
        Some("0123456789abcdef-shared")
    );
    let err = only_error("[server]\n\ndialog_secret = \"short\"\n");
    assert!(err.contains(":3:"), "{err}");
    assert!(err.contains("dialog_secret"), "{err}");
}

#[test]
fn every_refused_key_is_reported_not_just_the_first() {
    // Unknown keys, an unknown section with a multi-line value, and values of
    // the wrong type: serde stops at the first, the check reads on.
    let text = "[server]\nlisne = 1\nlog = \"xml\"\n\n[extra]\nlist = [\n  \"a\",\n]\n\n\
                [callerid]\nstrip = [\"X-A\", 3]\nqueue_heder = \"X\"\n\n[[carrier]]\nuri = \"sip:192.0.2.1\"\nport = 5\n\n\
                [reject]\ncode = \"403\"\nphrase = \"No\"\n";
    let err = parse(text).unwrap_err();
    let found: Vec<(usize, &str)> = err
        .issues()
        .iter()
        .map(|i| (i.line, i.message.split(':').next().unwrap()))
        .collect();
    assert_eq!(
        found,
        [
            (2, "unknown key `lisne` in [server] (expected one of `listen`, `domain`, `admin`, `log`, `dialog_secret`, `dialog_secret_previous`, `workers`)"),
            (3, "[server] log"),
            (5, "unknown section `extra` (expected one of `server`, `trust`, `carrier`, `callerid`, `reject`, `inventory`, `stir`, `tls`, `limits`, `health`)"),
            (11, "[callerid] strip"),
            (12, "unknown key `queue_heder` in [callerid] (expected one of `queue_header`, `dynamic_header`, `dynamic_format`, `default_region`, `pai`, `strip`, `cnam_names`)"),
            (16, "unknown key `port` in [[carrier]] (expected one of `uri`)"),
            (19, "[reject] code"),
        ],
        "{err}"
    );
    // Positions still point into the file as written.
    assert_eq!(err.issues()[1].column, 7, "{err}");
}

#[test]
fn check_file_locates_the_inventory_even_when_other_keys_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        "[server]\nadmin = \"nowhere\"\n[callerid]\ndefault_region = \"GB\"\n[inventory]\nqueues = \"q.csv\"\n",
    )
    .unwrap();
    let check = Config::check_file(&path);
    assert!(check.result.is_err());
    let inv = check.inventory.expect("inventory located");
    assert_eq!(inv.files.queues, dir.path().join("q.csv"));
    assert_eq!(inv.files.numbers, dir.path().join("numbers.csv"));
    assert_eq!(inv.default_region, Region::GB);

    // Without a usable region the inventory cannot be read as configured.
    std::fs::write(&path, "[callerid]\ndefault_region = \"XX\"\n").unwrap();
    assert!(Config::check_file(&path).inventory.is_none());
}

#[test]
fn inventory_comes_from_the_files_or_from_redis_never_both_or_neither() {
    let c = parse(
        "[inventory]\nredis = \"redis://127.0.0.1:6379/2\"\nkey_prefix = \"edge-a:\"\nsnapshot = \"state/last-good.txt\"\n",
    )
    .unwrap();
    let r = c.inventory.redis.unwrap();
    assert_eq!(r.url, "redis://127.0.0.1:6379/2");
    assert_eq!(r.key_prefix, "edge-a:");
    assert_eq!(r.snapshot, Some(PathBuf::from("conf/state/last-good.txt")));
    let r = parse("[inventory]\nredis = \"redis://:pw@10.0.0.5:6380/0\"\n")
        .unwrap()
        .inventory
        .redis
        .unwrap();
    assert_eq!((r.key_prefix.as_str(), &r.snapshot), ("cidgate:", &None));
    assert_eq!(r.display_url(), "redis://***@10.0.0.5:6380/0");
    assert!(parse("").unwrap().inventory.redis.is_none());

    // Both: the error points at `redis` and names the file key's line.
    let e = only_error("[inventory]\nqueues = \"q.csv\"\nredis = \"redis://127.0.0.1/0\"\n");
    assert!(e.starts_with("conf/cidgate.toml:3:"), "{e}");
    assert!(e.contains("not both") && e.contains("(line 2)"), "{e}");
    // Neither: Redis settings without `redis`.
    let e = only_error("[inventory]\nkey_prefix = \"edge-a:\"\n");
    assert!(e.starts_with("conf/cidgate.toml:2:"), "{e}");
    assert!(
        e.contains("key_prefix: only used with `redis`, which is not set"),
        "{e}"
    );
    let e = only_error("[inventory]\nsnapshot = \"x\"\n");
    assert!(e.contains("snapshot: only used with `redis`"), "{e}");
    // Not a Redis URL; an unknown key.
    let e = only_error("[inventory]\nredis = \"http://127.0.0.1:6379\"\n");
    assert!(
        e.contains("[inventory] redis: not a usable Redis URL"),
        "{e}"
    );
    let e = only_error("[inventory]\nredis = \"redis://127.0.0.1/0\"\nkey_prefix = \"a b\"\n");
    assert!(e.contains("key_prefix"), "{e}");
    let e = only_error("[inventory]\nredis_url = \"redis://127.0.0.1/0\"\n");
    assert!(e.contains("unknown key `redis_url` in [inventory]"), "{e}");
}

#[test]
fn workers_and_limits_are_checked_with_file_line_and_key() {
    let ok = Config::from_toml_str(
        "[server]\nworkers = 0\n[limits]\nuntrusted_rate = 50\nworker_queue = 1000\n",
        Path::new("conf/cidgate.toml"),
    )
    .unwrap();
    assert_eq!(ok.server.workers, 0);
    assert!(ok.server.worker_count() >= 1);
    assert_eq!(ok.limits.untrusted_rate, 50);
    assert_eq!(ok.limits.worker_queue, 1000);
    assert_eq!(ok.limits.untrusted_burst, 40, "defaults for the rest");
    let defaults = Config::from_toml_str("", Path::new("c.toml")).unwrap();
    assert_eq!(defaults.server.workers, 1);
    let e = only_error("[server]\nworkers = -1\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:11: [server] workers:"),
        "{e}"
    );
    let e = only_error("[limits]\nuntrusted_rate = 0\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:18: [limits] untrusted_rate:"),
        "{e}"
    );
    let e = only_error("[limits]\nper_source = 3\n");
    assert!(e.contains("unknown key `per_source`"), "{e}");
}

#[test]
fn the_udp_receive_buffer_and_trusted_socket_have_defaults_and_checks() {
    let d = parse("").unwrap().limits;
    assert_eq!(d.udp_receive_buffer, 16 << 20);
    let set = parse("[limits]\nudp_receive_buffer = 67108864\n")
        .unwrap()
        .limits;
    assert_eq!(set.udp_receive_buffer, 64 << 20);
    assert_eq!(
        set.untrusted_rate, d.untrusted_rate,
        "defaults for the rest"
    );
    assert!(
        d.udp_trusted_socket,
        "a UDP socket of their own for trusted sources by default"
    );
    assert_eq!(
        d.batch_window,
        std::time::Duration::from_millis(1),
        "a core waits up to 1 ms for more datagrams by default"
    );
    let off = parse("[limits]\nbatch_window_us = 0\n").unwrap().limits;
    assert!(off.batch_window.is_zero());
    let err = only_error("[limits]\nbatch_window_us = 10001\n");
    assert!(err.contains("[limits] batch_window_us"), "{err}");
    let off = parse("[limits]\nudp_trusted_socket = false\n")
        .unwrap()
        .limits;
    assert!(!off.udp_trusted_socket);
    for bad in ["1000", "2147483648", "-1"] {
        let e = only_error(&format!("[limits]\nudp_receive_buffer = {bad}\n"));
        assert!(
            e.starts_with(
                "conf/cidgate.toml:2:22: [limits] udp_receive_buffer: expected 65536 to 1073741824"
            ),
            "{e}"
        );
    }
}

#[test]
fn health_section_defaults_values_and_checks() {
    let d = parse("").unwrap().health;
    assert_eq!(d, cidgate::proxy::HealthSettings::default());
    assert_eq!(d.probe_interval, Some(std::time::Duration::from_secs(10)));
    assert_eq!((d.down_after, d.up_after), (3, 2));
    assert_eq!(d.no_provisional, std::time::Duration::from_secs(3));
    let h = parse("[health]\nprobe_interval = 30\nprobe_timeout = 1.5\ndown_after = 1\nup_after = 4\nno_provisional = 2.5\n")
        .unwrap()
        .health;
    assert_eq!(h.probe_interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(h.probe_timeout, std::time::Duration::from_millis(1500));
    assert_eq!((h.down_after, h.up_after), (1, 4));
    assert_eq!(h.no_provisional, std::time::Duration::from_millis(2500));
    let off = parse("[health]\nprobe_interval = 0\n").unwrap().health;
    assert_eq!(off.probe_interval, None, "0 turns probing off");
    let e = only_error("[health]\nprobe_intervall = 5\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:1: unknown key `probe_intervall` in [health]"),
        "{e}"
    );
    let e = only_error("[health]\ndown_after = 0\n");
    assert!(
        e.starts_with("conf/cidgate.toml:2:14: [health] down_after: a count, 1 to 100"),
        "{e}"
    );
    let e = only_error("[health]\nno_provisional = 40\n");
    assert!(
        e.contains("[health] no_provisional: seconds, 0.1 to 32"),
        "{e}"
    );
    let e = only_error("[health]\nprobe_interval = 2\nprobe_timeout = 2\n");
    assert!(
        e.starts_with("conf/cidgate.toml:3:17: [health] probe_timeout (2 s) must be shorter"),
        "{e}"
    );
}
