//! Several gateway instances sharing one inventory through a real
//! `redis-server` (Debian package redis-server; scripts/test.sh installs it).
//! Each test starts its own Redis on a free loopback port with its own
//! directory and no persistence, runs the real `cidgate` binary twice with
//! one dialog_secret, and places calls with UDP sockets as a PBX and a
//! carrier would. Every process is killed by its pid at the end.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http::try_request;
use common::{header_value, invite_via, respond, status};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const SECRET: &str = "one-secret-shared-by-both-instances";
const WAIT: Duration = Duration::from_secs(5);

const QUEUES_A: &str = "queue_id,caller_id_number,caller_id_name,region,anonymous\nsales,+14155550100,Acme Sales,US,false\nsupport,+14155550101,Acme Support,US,false\n";
const NUMBERS_A: &str = "number\n+14155550100\n+14155550101\n+14155550102\n";
const QUEUES_B: &str = "queue_id,caller_id_number,caller_id_name,region,anonymous\nsales,+14155550102,Acme Sales,US,false\nsupport,+14155550101,Acme Support,US,false\n";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of our own: loopback, free port, no RDB, no AOF.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir: dir.join("redis"),
        };
        std::fs::create_dir_all(&r.dir).unwrap();
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port; the data is gone, as after a
    /// restart without persistence.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.conn().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }

    /// `(version, revision)` of `cidgate:current`.
    fn current(&self) -> (Option<u64>, Option<u64>) {
        redis::cmd("HMGET")
            .arg("cidgate:current")
            .arg("version")
            .arg("revision")
            .query(&mut self.conn().unwrap())
            .unwrap()
    }

    fn keys(&self) -> HashSet<String> {
        redis::cmd("KEYS")
            .arg("cidgate:*")
            .query(&mut self.conn().unwrap())
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `cidgate run --config` process.
struct Gateway {
    child: Child,
    sip: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
}

fn write_config(
    dir: &Path,
    name: &str,
    redis_url: &str,
    carrier: SocketAddr,
) -> (PathBuf, SocketAddr, SocketAddr) {
    let sip: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"udp://{sip}\"]\ndomain = \"gw.example.net\"\nadmin = \"{admin}\"\ndialog_secret = \"{SECRET}\"\n\
             [trust]\npbx = [\"127.0.0.1/32\"]\n[[carrier]]\nuri = \"sip:{carrier};transport=udp\"\n\
             [health]\nprobe_interval = 0\n[inventory]\nredis = \"{redis_url}\"\nsnapshot = \"{name}.snapshot\"\n"
        ),
    )
    .unwrap();
    (config, sip, admin)
}

impl Gateway {
    /// Starts an instance and waits until its admin API answers.
    async fn start(dir: &Path, name: &str, redis_url: &str, carrier: SocketAddr) -> Gateway {
        let (config, sip, admin) = write_config(dir, name, redis_url, carrier);
        let gw = Gateway::spawn(&config, dir.join(format!("{name}.log")), sip, admin);
        // The gateway compiles every numbering plan before it answers: a bound
        // for a debug build on a busy machine, not a timing claim.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((200, _)) = try_request(gw.admin, "GET", "/healthz", "").await {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start: {}",
                gw.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn spawn(config: &Path, log: PathBuf, sip: SocketAddr, admin: SocketAddr) -> Gateway {
        let child = Command::new(env!("CARGO_BIN_EXE_cidgate"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Gateway {
            child,
            sip,
            admin,
            config: config.to_path_buf(),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        try_request(self.admin, method, path, body)
            .await
            .unwrap_or_else(|| panic!("admin API of {} does not answer", self.admin))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cidgate inventory push`; (success, stdout + stderr).
fn push(config: &Path, queues: &str, numbers: &str) -> (bool, String) {
    let dir = config.parent().unwrap();
    let tag = format!("{:x}", rand_tag());
    let (q, n) = (
        dir.join(format!("q-{tag}.csv")),
        dir.join(format!("n-{tag}.csv")),
    );
    std::fs::write(&q, queues).unwrap();
    std::fs::write(&n, numbers).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(["inventory", "push", "--config"])
        .arg(config)
        .arg(&q)
        .arg(&n)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The test carrier: answers every INVITE 200 (with the Record-Route) and
/// every BYE 200, and remembers the caller number each INVITE carried.
struct Carrier {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, String>>>,
    byes: Arc<Mutex<HashSet<String>>>,
}

impl Carrier {
    async fn start() -> Carrier {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let byes = Arc::new(Mutex::new(HashSet::new()));
        let (s, b) = (seen.clone(), byes.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let msg = Bytes::copy_from_slice(&buf[..n]);
                let call_id = header_value(&msg, "Call-ID").unwrap_or_default();
                let reply = if msg.starts_with(b"INVITE ") {
                    let number = caller_number(&header_value(&msg, "From").unwrap_or_default());
                    s.lock().unwrap().insert(call_id, number);
                    respond(
                        &msg,
                        200,
                        "OK",
                        Some("carrier"),
                        "Contact: <sip:callee@127.0.0.1>\r\n",
                    )
                } else if msg.starts_with(b"BYE ") {
                    b.lock().unwrap().insert(call_id);
                    respond(&msg, 200, "OK", None, "")
                } else {
                    continue;
                };
                let _ = sock.send_to(&reply, from).await;
            }
        });
        Carrier { addr, seen, byes }
    }

    fn number_of(&self, call_id: &str) -> Option<String> {
        self.seen.lock().unwrap().get(call_id).cloned()
    }
}

/// `+14155550100` from `"Name" <sip:+14155550100@gw.example.net;user=phone>;tag=…`.
fn caller_number(from: &str) -> String {
    from.split("sip:")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or("")
        .to_string()
}

/// The test PBX: one socket, responses handed to the call waiting for them.
#[derive(Clone)]
struct Pbx {
    sock: Arc<UdpSocket>,
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Bytes>>>>,
}

impl Pbx {
    async fn start() -> Pbx {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Bytes>>>> = Arc::default();
        let (s, w) = (sock.clone(), waiting.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                let msg = Bytes::copy_from_slice(&buf[..n]);
                let call_id = header_value(&msg, "Call-ID").unwrap_or_default();
                if let Some(tx) = w.lock().unwrap().get(&call_id) {
                    let _ = tx.send(msg);
                }
            }
        });
        Pbx { sock, waiting }
    }

    /// Next final response for the call (100 Trying skipped).
    async fn final_response(rx: &mut mpsc::UnboundedReceiver<Bytes>) -> Result<Bytes, String> {
        loop {
            match tokio::time::timeout(WAIT, rx.recv()).await {
                Ok(Some(m)) if m.starts_with(b"SIP/2.0 1") => continue,
                Ok(Some(m)) => return Ok(m),
                _ => return Err("no final response".into()),
            }
        }
    }

    /// A whole call: INVITE for `queue` through `setup`, then ACK and BYE
    /// through `teardown` (another instance, or the same). Returns the caller
    /// number the carrier saw, or why the call failed.
    async fn call(
        &self,
        carrier: &Carrier,
        setup: SocketAddr,
        teardown: SocketAddr,
        call: &str,
        queue: &str,
    ) -> Result<String, String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call_id = format!("{call}@pbx.example.com");
        self.waiting.lock().unwrap().insert(call_id.clone(), tx);
        let result = self
            .exchange(carrier, setup, teardown, call, queue, &mut rx)
            .await;
        self.waiting.lock().unwrap().remove(&call_id);
        result
    }

    async fn exchange(
        &self,
        carrier: &Carrier,
        setup: SocketAddr,
        teardown: SocketAddr,
        call: &str,
        queue: &str,
        rx: &mut mpsc::UnboundedReceiver<Bytes>,
    ) -> Result<String, String> {
        let me = self.sock.local_addr().unwrap();
        let inv = invite_via(me, "UDP", call, &format!("X-Queue-Id: {queue}\r\n"));
        self.sock.send_to(inv.as_bytes(), setup).await.unwrap();
        let ok = Self::final_response(rx).await?;
        if status(&ok) != 200 {
            return Err(format!("INVITE answered {}", status(&ok)));
        }
        let rr = header_value(&ok, "Record-Route").ok_or("200 without Record-Route")?;
        let to = header_value(&ok, "To").unwrap_or_default();
        let callee = carrier.addr;
        for (method, cseq) in [("ACK", 10), ("BYE", 11)] {
            let m = format!(
                "{method} sip:callee@{callee} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{call};rport\r\nRoute: {rr}\r\nMax-Forwards: 70\r\nFrom: <sip:agent7@pbx.example.com>;tag=pbx-{call}\r\nTo: {to}\r\nCall-ID: {call}@pbx.example.com\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            );
            self.sock.send_to(m.as_bytes(), teardown).await.unwrap();
        }
        let bye_ok = Self::final_response(rx).await?;
        if status(&bye_ok) != 200 {
            return Err(format!("BYE answered {}", status(&bye_ok)));
        }
        carrier
            .number_of(&format!("{call}@pbx.example.com"))
            .ok_or_else(|| "the carrier never saw the INVITE".into())
    }
}

/// Places calls through `gw` until the carrier sees `number`; the time it
/// took from `since`.
async fn wait_for_number(
    pbx: &Pbx,
    carrier: &Carrier,
    gw: &Gateway,
    queue: &str,
    number: &str,
    since: Instant,
) -> Duration {
    let deadline = since + Duration::from_secs(5);
    let mut i = 0;
    loop {
        i += 1;
        let call = format!("probe{}-{i}", rand_tag());
        let seen = pbx.call(carrier, gw.sip, gw.sip, &call, queue).await;
        if seen.as_deref() == Ok(number) {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{queue} still shows {seen:?} instead of {number} through {}:\n{}",
            gw.sip,
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Rig {
    /// Kept until the end: configs, logs and Redis's directory live here.
    _dir: tempfile::TempDir,
    redis: Redis,
    carrier: Carrier,
    pbx: Pbx,
    one: Gateway,
    two: Gateway,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let carrier = Carrier::start().await;
    let (config, _, _) = write_config(dir.path(), "push", &redis.url(), carrier.addr);
    let (ok, out) = push(&config, QUEUES_A, NUMBERS_A);
    assert!(ok, "{out}");
    let one = Gateway::start(dir.path(), "one", &redis.url(), carrier.addr).await;
    let two = Gateway::start(dir.path(), "two", &redis.url(), carrier.addr).await;
    let pbx = Pbx::start().await;
    Rig {
        _dir: dir,
        redis,
        carrier,
        pbx,
        one,
        two,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_edits_through_one_instance_reach_calls_through_the_other() {
    let r = rig().await;
    let (pbx, carrier) = (&r.pbx, &r.carrier);
    assert_eq!(
        pbx.call(carrier, r.two.sip, r.two.sip, "first", "sales")
            .await,
        Ok("+14155550100".into())
    );

    // A BYE for a call set up through one instance passes through the other.
    assert_eq!(
        pbx.call(carrier, r.one.sip, r.two.sip, "across", "support")
            .await,
        Ok("+14155550101".into())
    );
    assert!(carrier
        .byes
        .lock()
        .unwrap()
        .contains("across@pbx.example.com"));

    // A push (with instance one's configuration) reaches calls through two.
    let (ok, out) = push(&r.one.config, QUEUES_B, NUMBERS_A);
    assert!(ok, "{out}");
    let took = wait_for_number(
        pbx,
        carrier,
        &r.two,
        "sales",
        "+14155550102",
        Instant::now(),
    )
    .await;
    assert!(
        took <= Duration::from_secs(1),
        "push reached instance two after {took:?}"
    );

    // An admin edit on one reaches calls through two.
    let t = Instant::now();
    let (code, body) = r
        .one
        .http(
            "PUT",
            "/inventory/queues/sales",
            "+14155550101,Edited,US,false",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let took = wait_for_number(pbx, carrier, &r.two, "sales", "+14155550101", t).await;
    assert!(
        took <= Duration::from_secs(1),
        "edit reached instance two after {took:?}"
    );
    // Checked like a load on whichever instance takes it: a queue on an
    // unclaimed number is refused, and nothing reaches the other.
    let (code, body) = r
        .two
        .http("PUT", "/inventory/queues/sales", "+14155550199,X,US,false")
        .await;
    assert_eq!(code, 409, "{body}");
    let (code, _) = r
        .two
        .http("DELETE", "/inventory/numbers/+14155550101", "")
        .await;
    assert_eq!(code, 409);
    let (code, _) = r
        .two
        .http("PUT", "/inventory/numbers/+14155550199", "")
        .await;
    assert_eq!(code, 200);
    let (code, body) = r
        .two
        .http("PUT", "/inventory/queues/new", "+14155550199,New,US,false")
        .await;
    assert_eq!(code, 200, "{body}");
    wait_for_number(pbx, carrier, &r.one, "new", "+14155550199", Instant::now()).await;

    // A push with one bad line changes nothing, in Redis or on the instances.
    let before = (r.redis.current(), r.redis.keys());
    let bad_numbers = "number\n+14155550100\n+14155550101\nnot-a-number\n+14155550102\n";
    let (ok, out) = push(&r.one.config, QUEUES_A, bad_numbers);
    assert!(!ok, "{out}");
    assert!(out.contains(".csv:4"), "the bad line is named: {out}");
    assert_eq!((r.redis.current(), r.redis.keys()), before);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        pbx.call(carrier, r.two.sip, r.two.sip, "after-bad", "sales")
            .await,
        Ok("+14155550101".into())
    );
}

/// Every line of every bucket of `key` (a hash of buckets, see
/// src/store/keys.rs), split at its first comma.
fn bucket_lines(c: &mut redis::Connection, key: &str) -> HashMap<String, String> {
    let buckets: Vec<String> = redis::cmd("HVALS").arg(key).query(c).unwrap();
    buckets
        .iter()
        .flat_map(|b| b.lines())
        .map(|l| {
            let (k, v) = l.split_once(',').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Queue id → row, as Redis holds them (ids here need no quoting).
fn queue_lines(c: &mut redis::Connection, key: &str) -> HashMap<String, String> {
    bucket_lines(c, key)
}

/// Number → attestation, as Redis holds them.
fn number_lines(c: &mut redis::Connection, key: &str) -> HashMap<String, String> {
    bucket_lines(c, key)
}

/// `n` queues and `10 * n` numbers named after `tag`, all in one area code.
fn big_inventory(tag: char, area: u32, n: usize) -> (String, String) {
    let mut numbers = String::from("number\n");
    let mut queues = String::from("queue_id,caller_id_number,caller_id_name,region,anonymous\n");
    for i in 0..n * 10 {
        numbers.push_str(&format!("+1{area}{}\n", 2_000_000 + i));
    }
    for i in 0..n {
        queues.push_str(&format!(
            "{tag}{i},+1{area}{},Queue {tag}{i},US,false\n",
            2_000_000 + i * 10
        ));
    }
    (queues, numbers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pushes_racing_end_with_one_of_them_whole() {
    let r = rig().await;
    let (qa, na) = big_inventory('a', 415, 500);
    let (qb, nb) = big_inventory('b', 212, 500);
    let config = r.one.config.clone();
    let (c1, c2) = (config.clone(), config.clone());
    let racing_a = std::thread::spawn(move || push(&c1, &qa, &na));
    let racing_b = std::thread::spawn(move || push(&c2, &qb, &nb));
    for done in [racing_a.join().unwrap(), racing_b.join().unwrap()] {
        assert!(done.0, "{}", done.1);
    }
    // Redis holds exactly one whole version.
    let (Some(version), Some(0)) = r.redis.current() else {
        panic!("no current version: {:?}", r.redis.current());
    };
    let mut c = r.redis.conn().unwrap();
    let queues = queue_lines(&mut c, &format!("cidgate:v{version}:queues"));
    let numbers: HashSet<String> = number_lines(&mut c, &format!("cidgate:v{version}:numbers"))
        .into_keys()
        .collect();
    let winner = if queues.contains_key("a0") {
        ('a', "+1415")
    } else {
        ('b', "+1212")
    };
    assert_eq!(queues.len(), 500);
    assert!(
        queues.keys().all(|k| k.starts_with(winner.0)),
        "queues mixed"
    );
    assert_eq!(numbers.len(), 5000);
    assert!(
        numbers.iter().all(|n| n.starts_with(winner.1)),
        "numbers mixed"
    );
    // The loser's keys are gone; only the winner's and the bookkeeping stay.
    let keys = r.redis.keys();
    let expected: HashSet<String> = [
        "cidgate:current".to_string(),
        "cidgate:next_version".into(),
        format!("cidgate:v{version}:queues"),
        format!("cidgate:v{version}:numbers"),
    ]
    .into();
    assert_eq!(keys, expected);
    // Both instances serve that whole version (both versions have the same
    // size: wait for the winner's queue, then check the size).
    for gw in [&r.one, &r.two] {
        // A bound for a debug build reading each version whole, not a claim.
        let deadline = Instant::now() + Duration::from_secs(15);
        let q = format!("/inventory/queues/{}1", winner.0);
        while gw.http("GET", &q, "").await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{} never served {q}:\n{}",
                gw.sip,
                gw.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, body) = gw.http("GET", "/inventory?limit=1", "").await;
        assert!(
            body.contains("\"total\":5000") && body.contains("\"total\":500}"),
            "{body}"
        );
        let number = format!("{}2000010", winner.1);
        assert_eq!(
            r.pbx
                .call(
                    &r.carrier,
                    gw.sip,
                    gw.sip,
                    &format!("race{}", rand_tag()),
                    &format!("{}1", winner.0)
                )
                .await,
            Ok(number)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_during_calls_fails_no_call_and_edits_flow_when_it_returns() {
    let mut r = rig().await;
    let pbx = r.pbx.clone();
    let carrier = Arc::new(Carrier {
        addr: r.carrier.addr,
        seen: r.carrier.seen.clone(),
        byes: r.carrier.byes.clone(),
    });
    // 200 calls per second, alternating between the instances, for 3 s;
    // Redis is killed after 1 s and comes back, empty, after 2 s.
    const CALLS: usize = 600;
    let start = Instant::now();
    let mut calls = Vec::with_capacity(CALLS);
    let mut killed = false;
    let mut restarted = false;
    for i in 0..CALLS {
        let at = start + Duration::from_millis(5 * i as u64);
        tokio::time::sleep_until(at.into()).await;
        if !killed && start.elapsed() >= Duration::from_secs(1) {
            r.redis.kill();
            killed = true;
        }
        if !restarted && start.elapsed() >= Duration::from_secs(2) {
            r.redis.restart();
            restarted = true;
        }
        let gw = if i % 2 == 0 { r.one.sip } else { r.two.sip };
        let (pbx, carrier) = (pbx.clone(), carrier.clone());
        calls.push(tokio::spawn(async move {
            pbx.call(&carrier, gw, gw, &format!("load{i}"), "sales")
                .await
        }));
    }
    let mut failed = Vec::new();
    for (i, c) in calls.into_iter().enumerate() {
        match c.await.unwrap() {
            Ok(n) if n == "+14155550100" => {}
            other => failed.push((i, other)),
        }
    }
    assert!(killed && restarted);
    assert!(
        failed.is_empty(),
        "{} of {CALLS} calls failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // While Redis was gone both said so; now both are healthy again.
    for gw in [&r.one, &r.two] {
        let log = gw.log_text();
        assert!(log.contains("inventory store unreachable"), "{log}");
        let deadline = Instant::now() + WAIT;
        loop {
            let (code, body) = gw.http("GET", "/healthz", "").await;
            assert_eq!(code, 200);
            if body.starts_with("ok") {
                break;
            }
            assert!(Instant::now() < deadline, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, metrics) = gw.http("GET", "/metrics", "").await;
        assert!(
            metrics.contains("cidgate_inventory_store_up 1"),
            "{metrics}"
        );
        let reconnects = metrics
            .lines()
            .find_map(|l| l.strip_prefix("cidgate_inventory_store_reconnects_total "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        assert!(reconnects >= Some(1.0), "{metrics}");
    }
    // The restarted (empty) Redis got the inventory back from the instances.
    assert!(r.redis.current().0.is_some());
    // An edit made now reaches both.
    let (code, body) = r
        .two
        .http(
            "PUT",
            "/inventory/queues/sales",
            "+14155550102,After,US,false",
        )
        .await;
    assert_eq!(code, 200, "{body}");
    for gw in [&r.one, &r.two] {
        wait_for_number(
            &r.pbx,
            &r.carrier,
            gw,
            "sales",
            "+14155550102",
            Instant::now(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_refused_without_snapshot_served_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let carrier = Carrier::start().await;
    let (config, _, _) = write_config(dir.path(), "push", &redis.url(), carrier.addr);
    let (ok, out) = push(&config, QUEUES_A, NUMBERS_A);
    assert!(ok, "{out}");
    // A first instance writes its snapshot after loading.
    let one = Gateway::start(dir.path(), "one", &redis.url(), carrier.addr).await;
    let snapshot = dir.path().join("one.snapshot");
    let deadline = Instant::now() + WAIT;
    while !snapshot.exists() {
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(one);
    redis.kill();

    // Without a snapshot: refused, and the message says what to do.
    let (config, sip, admin) = write_config(dir.path(), "bare", &redis.url(), carrier.addr);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("snapshot = \"bare.snapshot\"\n", "");
    std::fs::write(&config, text).unwrap();
    let mut bare = Gateway::spawn(&config, dir.path().join("bare.log"), sip, admin);
    let status = bare.child.wait().unwrap();
    assert!(!status.success());
    let log = bare.log_text();
    assert!(
        log.contains("unreachable") && log.contains("snapshot"),
        "{log}"
    );

    // With one (instance one's): serves it, says so, is degraded.
    let (config, sip, admin) = write_config(dir.path(), "one", &redis.url(), carrier.addr);
    let gw = Gateway::spawn(&config, dir.path().join("one-again.log"), sip, admin);
    // The gateway compiles every numbering plan before it answers: a bound
    // for a debug build on a busy machine, not a timing claim.
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        if let Some((200, body)) = try_request(gw.admin, "GET", "/healthz", "").await {
            break body;
        }
        assert!(Instant::now() < deadline, "{}", gw.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body.starts_with("degraded") && body.contains("snapshot"),
        "{body}"
    );
    assert!(gw.log_text().contains("snapshot"), "{}", gw.log_text());
    let pbx = Pbx::start().await;
    assert_eq!(
        pbx.call(&carrier, gw.sip, gw.sip, "from-snapshot", "sales")
            .await,
        Ok("+14155550100".into())
    );
}

#[test]
fn the_two_instance_example_configurations_are_a_valid_pair() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/redis");
    let one = cidgate::config::Config::from_file(&dir.join("one.toml")).unwrap();
    let two = cidgate::config::Config::from_file(&dir.join("two.toml")).unwrap();
    let (r1, r2) = (
        one.inventory.redis.clone().unwrap(),
        two.inventory.redis.clone().unwrap(),
    );
    // One store, one dialog secret, one domain; their own ports and snapshots.
    assert_eq!((&r1.url, &r1.key_prefix), (&r2.url, &r2.key_prefix));
    assert_eq!(one.server.dialog_secret, two.server.dialog_secret);
    assert!(one.server.dialog_secret.is_some());
    assert_eq!(one.server.domain, two.server.domain);
    assert_ne!(one.server.listen, two.server.listen);
    assert_ne!(one.server.admin, two.server.admin);
    assert_ne!(r1.snapshot, r2.snapshot);
}

/// The store is shared input: a load refuses what a push could not have
/// written (a number not in E.164 form, bytes that are not UTF-8), naming
/// each entry, and changes nothing until the data is fixed.
#[tokio::test]
async fn a_load_refuses_hand_written_entries_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let cfg = cidgate::config::RedisInventoryConfig {
        url: redis.url(),
        key_prefix: "cidgate:".into(),
        snapshot: None,
    };
    let us = cidgate::inventory::Region::US;
    let inventory = cidgate::inventory::Inventory::from_csv_readers(
        QUEUES_A.as_bytes(),
        "queues.csv",
        NUMBERS_A.as_bytes(),
        "numbers.csv",
        us,
    )
    .unwrap();
    let version = cidgate::store::push(&cfg, &inventory)
        .await
        .unwrap()
        .version;
    let (loaded, _) = cidgate::store::load_once(&cfg, us).await.unwrap();
    assert_eq!((loaded.queue_count(), loaded.claimed_count()), (2, 3));

    // The model as an operator reads it: numbers by their last three
    // digits, queues by the first two hex digits of their id's SHA-1, which
    // Redis computes too.
    let numbers = format!("cidgate:v{version}:numbers");
    let queues = format!("cidgate:v{version}:queues");
    let mut conn = redis.conn().unwrap();
    let hget = |conn: &mut redis::Connection, key: &str, field: &str| -> Option<String> {
        redis::cmd("HGET").arg(key).arg(field).query(conn).unwrap()
    };
    assert_eq!(
        hget(&mut conn, &numbers, "101").as_deref(),
        Some("+14155550101,\n")
    );
    let bucket: String = redis::cmd("EVAL")
        .arg("return redis.sha1hex(ARGV[1]):sub(1,2)")
        .arg(0)
        .arg("sales")
        .query(&mut conn)
        .unwrap();
    let lines = hget(&mut conn, &queues, &bucket).unwrap_or_default();
    assert!(
        lines.contains("sales,+14155550100,Acme Sales,US,false\n"),
        "{bucket}: {lines:?}"
    );

    let load_error = || async {
        format!(
            "{:#}",
            cidgate::store::load_once(&cfg, us).await.unwrap_err()
        )
    };
    // Writes one bucket of the numbers hash by hand, as an operator might.
    let set_bucket = |conn: &mut redis::Connection, field: &str, lines: &[u8]| {
        let () = redis::cmd("HSET")
            .arg(&numbers)
            .arg(field)
            .arg(lines)
            .query(conn)
            .unwrap();
    };
    set_bucket(&mut conn, "103", b"4155550103,\n");
    set_bucket(&mut conn, "104", b"+14155550104,\n+1415555\xff0104,A\n");
    let e = load_error().await;
    assert!(e.contains(&numbers), "{e}");
    assert!(e.contains("\"+1415555\u{fffd}0104,A\""), "{e}");
    assert!(e.contains("is not UTF-8"), "{e}");

    // With the bytes removed, the national-form number is named too.
    let () = redis::cmd("HDEL")
        .arg(&numbers)
        .arg("104")
        .query(&mut conn)
        .unwrap();
    let e = load_error().await;
    assert!(
        e.contains("number \"4155550103\": \"4155550103\" is not in E.164 form"),
        "{e}"
    );

    // A line in another bucket than its own (an edit would never find it).
    set_bucket(&mut conn, "103", b"+14155550103,\n+14155550105,\n");
    let e = load_error().await;
    assert!(
        e.contains("number \"+14155550105\" is in bucket \"103\"; its bucket is \"105\""),
        "{e}"
    );
    set_bucket(&mut conn, "103", b"+14155550103,\n");
    let (loaded, _) = cidgate::store::load_once(&cfg, us).await.unwrap();
    assert_eq!((loaded.queue_count(), loaded.claimed_count()), (2, 4));

    // A field of the model before buckets (the number itself): the load
    // says to push again instead of naming every line as misplaced.
    set_bucket(&mut conn, "+14155550106", b"A");
    let e = load_error().await;
    assert!(e.contains("\"+14155550106\" is a whole number"), "{e}");
    assert!(e.contains("cidgate inventory push"), "{e}");
}

/// An edit rewrites the lines of its key in one bucket and leaves every
/// other line, and the attestation of a number claimed again, as it was;
/// an instance loading the version afterwards reads what the edits made.
#[tokio::test]
async fn edits_rewrite_their_line_of_one_bucket() {
    use cidgate::inventory::{snapshot::Stamp, Edit, Inventory, Region};
    use cidgate::store::{keys::Keys, ops};
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let cfg = cidgate::config::RedisInventoryConfig {
        url: redis.url(),
        key_prefix: "cidgate:".into(),
        snapshot: None,
    };
    let us = Region::US;
    let queues = "queue_id,caller_id_number,caller_id_name,region,anonymous\n\
                  sales,+14155550100,Sales,US,false\n\"a,\"\"b\",+12125550100,Quoted,US,false\n";
    let numbers =
        "number,region,attest\n+14155550100,,A\n+12125550100,,\n+13125550100,,B\n+14155550101,,\n";
    let inventory =
        Inventory::from_csv_readers(queues.as_bytes(), "q.csv", numbers.as_bytes(), "n.csv", us)
            .unwrap();
    let version = cidgate::store::push(&cfg, &inventory)
        .await
        .unwrap()
        .version;
    let mut conn = redis::aio::ConnectionManager::new(redis::Client::open(redis.url()).unwrap())
        .await
        .unwrap();
    let keys = Keys::new("cidgate:");
    let mut stamp = Stamp {
        version,
        revision: 0,
    };
    let mut expected = inventory.clone();
    for edit in [
        Edit::claim_number("+14155550100", us).unwrap(),
        Edit::claim_number("+16175550100", us).unwrap(),
        Edit::release_number("+13125550100", us).unwrap(),
        Edit::put_queue("a,\"b", "+16175550100,Requoted,US,true", us).unwrap(),
        Edit::delete_queue("sales"),
    ] {
        expected = edit.apply(&expected).unwrap();
        let (applied, now) = ops::edit(&mut conn, &keys, stamp, &edit.encode())
            .await
            .unwrap();
        assert!(applied, "{edit:?}");
        stamp = now;
    }
    let mut c = redis.conn().unwrap();
    let bucket: String = redis::cmd("HGET")
        .arg(format!("cidgate:v{version}:numbers"))
        .arg("100")
        .query(&mut c)
        .unwrap();
    assert_eq!(bucket, "+12125550100,\n+14155550100,A\n+16175550100,\n");
    let queue_buckets: Vec<String> = redis::cmd("HVALS")
        .arg(format!("cidgate:v{version}:queues"))
        .query(&mut c)
        .unwrap();
    assert_eq!(
        queue_buckets,
        ["\"a,\"\"b\",+16175550100,Requoted,US,true\n"]
    );

    let (loaded, at) = cidgate::store::load_once(&cfg, us).await.unwrap();
    assert_eq!(at, Some(stamp));
    assert_eq!(loaded.numbers_sorted(), expected.numbers_sorted());
    assert_eq!(loaded.queue("a,\"b"), expected.queue("a,\"b"));
    assert_eq!(loaded.queue_count(), 1);
    let n = cidgate::inventory::syntactic_e164("+14155550100").unwrap();
    assert_eq!(loaded.attest_of(&n), Some(cidgate::stir::Attest::A));

    // An edit checked against an older revision changes nothing.
    let (applied, now) = ops::edit(
        &mut conn,
        &keys,
        Stamp {
            version,
            revision: 0,
        },
        &Edit::delete_queue("a,\"b").encode(),
    )
    .await
    .unwrap();
    assert!(!applied);
    assert_eq!(now, stamp);
}
