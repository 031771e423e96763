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

/// The allocator the `cidgate` binary runs with, so the load figures are the
/// product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// [`start_gateway`], again on other ports when an attempt exits before
/// serving (its admin port, free when probed, may be taken meanwhile by
/// another process on a shared machine); the log of a failed attempt is shown.
fn gateway(dir: &Path, name: &str, redis: &str) -> (Killed, SocketAddr) {
    for attempt in 1..=3 {
        match start_gateway(dir, name, redis) {
            Ok(started) => return started,
            Err(why) => println!("redis_store: {name}, attempt {attempt}: {why}"),
        }
    }
    panic!("{name} did not start in three attempts");
}

fn start_gateway(dir: &Path, name: &str, redis: &str) -> Result<(Killed, SocketAddr), String> {
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
    let mut child = Killed(child);
    let log = || std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let started = Instant::now();
    while http(admin, "GET", "/healthz", "").is_none_or(|(s, _)| s != 200) {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("exited ({status}) before serving:\n{}", log()));
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{name} did not start within 120 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "redis_store: {name} serving after {} (start, numbering-plan warm-up, load from Redis)",
        ms(started.elapsed())
    );
    Ok((child, admin))
}

/// CPU time (user + system) `pid` has used so far, from /proc/<pid>/stat
/// (fields 14 and 15, in clock ticks).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; count from after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| -> u64 {
        rest.split_whitespace()
            .nth(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    };
    let ticks = field(11) + field(12);
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
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
    println!("redis_store: load average at start {}", load_average());
    let (redis, port) = redis_server(dir.path());
    let redis_pid = redis.0.id().to_string();
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

    // Wall time, the bench's own CPU time (reading, parsing, checking;
    // dropping the inventory is outside the timed part) and redis-server's.
    let (mut walls, mut cpus, mut servers) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LOADS {
        let (cpu, server) = (cpu_time("self"), cpu_time(&redis_pid));
        let t = Instant::now();
        let (inv, _) = rt.block_on(cidgate::store::load_once(&cfg, us)).unwrap();
        walls.push(t.elapsed());
        cpus.push(cpu_time("self") - cpu);
        servers.push(cpu_time(&redis_pid) - server);
        assert_eq!(inv.claimed_count(), NUMBERS as usize);
        assert_eq!(inv.queue_count(), QUEUES as usize);
    }
    for (what, v) in [
        ("wall", &mut walls),
        ("CPU of the loading process", &mut cpus),
        ("CPU of redis-server", &mut servers),
    ] {
        let max = *v.iter().max().unwrap();
        println!(
            "redis_store: load of {NUMBERS} numbers + {QUEUES} queues (MULTI/EXEC read, checked like a load), {LOADS} runs, {what}: median {}, max {}",
            ms(median(v)),
            ms(max)
        );
    }
    println!(
        "redis_store: load average after the loads {}",
        load_average()
    );

    let (_one, one) = gateway(dir.path(), "one", &cfg.url);
    let (_two, two) = gateway(dir.path(), "two", &cfg.url);
    let queue = queue_id(0);
    let numbers = [claimed_number(0).0, claimed_number(2).0];
    let (mut took, mut puts) = (Vec::with_capacity(EDITS), Vec::with_capacity(EDITS));
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
        puts.push(t.elapsed());
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
    for (what, v) in [
        ("until instance two serves it", &mut took),
        ("until instance one answers the PUT", &mut puts),
    ] {
        let max = *v.iter().max().unwrap();
        println!(
            "redis_store: admin edit on instance one {what} ({NUMBERS} numbers loaded), {EDITS} edits: median {}, max {}",
            ms(median(v)),
            ms(max)
        );
    }
    println!("redis_store: load average at the end {}", load_average());
}
