//! The shared inventory in Redis at contact-center scale (1 000 000 claimed
//! numbers, 100 000 queues), against a real `redis-server` started here on a
//! free loopback port with its own directory and no persistence (killed by
//! pid at the end):
//!
//! - a push of that inventory, and a load of it (read in one MULTI/EXEC,
//!   checked like a file load), as an instance does at start and after a push;
//! - the time an admin edit made on one instance takes to reach another:
//!   two release `cidgate run` processes share the store; each edit is a PUT
//!   on instance one, timed until instance two's admin API shows it.
//!
//! `cargo bench --bench redis_store` (needs redis-server; scripts/test.sh
//! installs it). Prints its figures; nothing here is a pass/fail test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cidgate::config::RedisInventoryConfig;
use cidgate::inventory::Region;

mod support;
use support::{build_inventory, claimed_number, queue_id};

const QUEUES: u64 = 100_000;
const NUMBERS: u64 = 1_000_000;
const LOADS: usize = 5;
const EDITS: usize = 100;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child by pid when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server(dir: &Path) -> (Killed, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (Debian package redis-server)");
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Killed(child), port)
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

fn gateway(dir: &Path, name: &str, redis: &str) -> (Killed, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"udp://127.0.0.1:0\"]\nadmin = \"{admin}\"\n\
             [inventory]\nredis = \"{redis}\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while http(admin, "GET", "/healthz", "").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "{name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), admin)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis_server(dir.path());
    let cfg = RedisInventoryConfig {
        url: format!("redis://127.0.0.1:{port}/0"),
        key_prefix: "cidgate:".into(),
        snapshot: None,
    };
    let us = Region::parse("US").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let inventory = build_inventory(QUEUES, NUMBERS);
    let t = Instant::now();
    let pushed = rt.block_on(cidgate::store::push(&cfg, &inventory)).unwrap();
    println!(
        "redis_store: push of {NUMBERS} numbers + {QUEUES} queues (write, then switch): {} (version {})",
        ms(t.elapsed()),
        pushed.version
    );
    drop(inventory);

    let mut loads = Vec::new();
    for _ in 0..LOADS {
        let t = Instant::now();
        let (inv, _) = rt.block_on(cidgate::store::load_once(&cfg, us)).unwrap();
        loads.push(t.elapsed());
        assert_eq!(inv.claimed_count(), NUMBERS as usize);
        assert_eq!(inv.queue_count(), QUEUES as usize);
    }
    let max = *loads.iter().max().unwrap();
    println!(
        "redis_store: load of {NUMBERS} numbers + {QUEUES} queues (MULTI/EXEC read, checked like a load), {LOADS} runs: median {}, max {}",
        ms(median(&mut loads)),
        ms(max)
    );

    let (_one, one) = gateway(dir.path(), "one", &cfg.url);
    let (_two, two) = gateway(dir.path(), "two", &cfg.url);
    let queue = queue_id(0);
    let numbers = [claimed_number(0).0, claimed_number(2).0];
    let mut took = Vec::with_capacity(EDITS);
    for i in 0..EDITS {
        let number = &numbers[(i + 1) % 2];
        let t = Instant::now();
        let (status, body) = http(
            one,
            "PUT",
            &format!("/inventory/queues/{queue}"),
            &format!("{number},Edit {i},,false"),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let want = format!("\"caller_id_number\":\"{number}\"");
        loop {
            let (_, body) = http(two, "GET", &format!("/inventory/queues/{queue}"), "").unwrap();
            if body.contains(&want) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "edit {i} never arrived"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        took.push(t.elapsed());
    }
    let max = *took.iter().max().unwrap();
    println!(
        "redis_store: admin edit on instance one until instance two serves it ({NUMBERS} numbers loaded), {EDITS} edits: median {}, max {}",
        ms(median(&mut took)),
        ms(max)
    );
}
