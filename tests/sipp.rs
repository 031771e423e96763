//! Real SIPp traffic through the real `cidgate` binary: the PBX scenario places
//! every outcome of docs/behaviour.md §4, the carrier scenario checks From,
//! P-Asserted-Identity, the From tag and the stripped headers per call and
//! fails any call that is off.
//! Needs `sipp` (Debian package sip-tester); the README's test command installs it.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The SIPp runs share two cores with two SIPp processes and the gateway each:
/// one at a time, so that a loaded machine does not turn into retransmissions.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The `workers` line as in `tests/common` (the SIPp suite does not share
/// that module: it drives the binary only).
fn workers_line() -> String {
    let n: usize = std::env::var("CIDGATE_TEST_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    format!("workers = {n}\n")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Kills the gateway it started when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(dir: &Path, base: u16, mode: &str, carrier_transport: &str) -> Running {
    let data = repo().join("sipp-scenarios/data");
    let config = format!(
        r#"[server]
listen = ["udp://127.0.0.1:{gw}", "tcp://127.0.0.1:{gw}"]
domain = "gw.example.net"
admin = ""
{workers}[trust]
pbx = ["127.0.0.1/32"]
[[carrier]]
uri = "sip:127.0.0.1:{uas};transport={carrier_transport}"
[health]
probe_interval = 0
[callerid]
dynamic_format = "{mode}"
[inventory]
queues = "{q}"
numbers = "{n}"
"#,
        gw = base,
        workers = workers_line(),
        uas = base + 20,
        q = data.join("queues.csv").display(),
        n = data.join("numbers.csv").display(),
    );
    let path = dir.join("cidgate.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cidgate starts");
    let running = Running(child);
    wait_ready(base);
    running
}

/// Waits until the gateway answers an OPTIONS on its UDP port. It binds its
/// ports only after compiling every numbering plan, which takes seconds in a
/// debug build on a loaded machine.
fn wait_ready(port: u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let probe = format!(
        "OPTIONS sip:gw.example.net SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:gw.example.net>\r\nCall-ID: ready\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(60) {
        let _ = sock.send_to(probe.as_bytes(), ("127.0.0.1", port));
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                return;
            }
        }
    }
    panic!("gateway on port {port} did not answer OPTIONS");
}

fn load(dir: &Path, base: u16, transport: &str, calls_file: &str, calls: u32, rate: u32) -> String {
    assert!(
        Command::new("sipp").arg("-v").output().is_ok(),
        "sipp is missing: run the README's test command (it installs sip-tester)"
    );
    let out = Command::new("bash")
        .arg(repo().join("scripts/load.sh"))
        .args(["--rate", &rate.to_string(), "--calls", &calls.to_string()])
        .args(["--transport", transport])
        .args(["--target", &format!("127.0.0.1:{base}")])
        .args(["--uas-port", &(base + 20).to_string()])
        .args(["--uac-port", &(base + 10).to_string()])
        .args([
            "--calls-file",
            &repo()
                .join("sipp-scenarios/data")
                .join(calls_file)
                .display()
                .to_string(),
        ])
        .args(["--timeout", "60", "--max-failed", "0"])
        .arg("--outdir")
        .arg(dir.join(format!("sipp-{transport}")))
        .output()
        .expect("load.sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "SIPp run failed:\n{text}");
    text
}

fn result_field(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn lines_in(file: &str) -> u32 {
    let text = std::fs::read_to_string(repo().join("sipp-scenarios/data").join(file)).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count() as u32
}

#[test]
fn sipp_every_outcome_udp_and_tcp() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let calls = lines_in("calls.csv");
    for (i, transport) in ["udp", "tcp"].iter().enumerate() {
        let base = 16060 + 100 * i as u16;
        let _gw = start_gateway(dir.path(), base, "strict", transport);
        let text = load(dir.path(), base, transport, "calls.csv", calls, 20);
        assert_eq!(result_field(&text, "ok"), calls as u64, "{text}");
        assert_eq!(result_field(&text, "failed"), 0, "{text}");
        assert_eq!(result_field(&text, "uas_failed"), 0, "{text}");
    }
}

#[test]
fn sipp_normalize_mode() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let calls = lines_in("calls-normalize.csv");
    let base = 16360;
    let _gw = start_gateway(dir.path(), base, "normalize", "udp");
    let text = load(dir.path(), base, "udp", "calls-normalize.csv", calls, 20);
    assert_eq!(result_field(&text, "ok"), calls as u64, "{text}");
    assert_eq!(result_field(&text, "failed"), 0, "{text}");
    assert_eq!(result_field(&text, "uas_failed"), 0, "{text}");
}
