//! An untrusted UDP flood for the flood benchmark (scripts/flood.sh): from
//! one loopback address that is neither the PBX nor a carrier, a mix of new
//! INVITEs (a fresh Call-ID each), OPTIONS, REGISTER, MESSAGE, CANCEL,
//! forged in-dialog BYEs carrying a Route to the gateway, forged responses
//! with a gateway-like Via on top, truncated requests and garbage, as fast
//! as one socket can send (or at `--rate`), for a bounded time.
//!
//! Std only, one sender thread and one thread counting what comes back.
//! Loopback only: the target and the source must be in 127.0.0.0/8.
//!
//! usage: flood --target 127.0.0.1:5060 [--from 127.0.0.9] [--seconds 30]
//!              [--rate 0]     messages per second; 0 = as fast as possible
//!
//! Prints one line starting with "FLOOD": messages sent, seconds, rate,
//! send errors and answers received (by status class).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest flood this tool runs.
const MAX_SECONDS: u64 = 600;
/// Digits of the counter written into Call-IDs and branches.
const COUNTER_DIGITS: usize = 10;
/// Where in a template the counter goes.
const COUNTER_MARK: &str = "##########";

struct Options {
    target: SocketAddr,
    from: IpAddr,
    seconds: u64,
    rate: u64,
}

fn usage(problem: &str) -> ! {
    eprintln!("flood: {problem}");
    eprintln!("usage: flood --target 127.0.0.1:5060 [--from 127.0.0.9] [--seconds 30] [--rate 0]");
    std::process::exit(2)
}

fn parse_value<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")))
}

fn parse_options() -> Options {
    let mut opts = Options {
        target: "127.0.0.1:5060".parse().unwrap(),
        from: "127.0.0.9".parse().unwrap(),
        seconds: 30,
        rate: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--target" => opts.target = parse_value(&flag, &value),
            "--from" => opts.from = parse_value(&flag, &value),
            "--seconds" => opts.seconds = parse_value(&flag, &value),
            "--rate" => opts.rate = parse_value(&flag, &value),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if !opts.target.ip().is_loopback() || !opts.from.is_loopback() {
        usage("loopback addresses only");
    }
    if opts.seconds == 0 || opts.seconds > MAX_SECONDS {
        usage(&format!("--seconds must be 1..{MAX_SECONDS}"));
    }
    opts
}

/// The request line and headers every forged request shares.
fn request(method: &str, gw: SocketAddr, me: SocketAddr, extra: &str) -> String {
    format!(
        "{method} sip:+12125550123@{gw} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKfl{COUNTER_MARK};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Flood\" <sip:flood@{me}>;tag=fl{COUNTER_MARK}\r\n\
         To: <sip:+12125550123@carrier.example.com>{to_tag}\r\n\
         Call-ID: {COUNTER_MARK}@flood.example.org\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:flood@{me}>\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        to_tag = if extra.contains("Route:") {
            ";tag=cr"
        } else {
            ""
        },
    )
}

/// The mix, in the order it is sent.
fn templates(gw: SocketAddr, me: SocketAddr) -> Vec<Vec<u8>> {
    let invite = request("INVITE", gw, me, "X-Queue-Id: sales\r\n");
    let forged_route = format!("Route: <sip:{gw};lr;cg=AAAAforgedAAAA>\r\n");
    vec![
        invite.clone().into_bytes(),
        request("OPTIONS", gw, me, "").into_bytes(),
        request("BYE", gw, me, &forged_route).into_bytes(),
        request("REGISTER", gw, me, "Expires: 3600\r\n").into_bytes(),
        invite.clone().into_bytes(),
        request("CANCEL", gw, me, "").into_bytes(),
        request("MESSAGE", gw, me, &forged_route).into_bytes(),
        format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP {gw};branch=z9hG4bKcg{COUNTER_MARK}\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\
             From: <sip:a@pbx.example.com>;tag=1\r\n\
             To: <sip:b@carrier.example.com>;tag=2\r\n\
             Call-ID: {COUNTER_MARK}@forged.example.org\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        invite.as_bytes()[..invite.len() / 2].to_vec(),
        b"\x16\x03\x01\x02\x00garbage that is no SIP at all\r\n\r\n".to_vec(),
    ]
}

/// Byte offsets of every counter mark in `msg`.
fn marks(msg: &[u8]) -> Vec<usize> {
    msg.windows(COUNTER_DIGITS)
        .enumerate()
        .filter(|(_, w)| *w == COUNTER_MARK.as_bytes())
        .map(|(i, _)| i)
        .collect()
}

/// Writes `n` as fixed-width decimal digits at every mark.
fn stamp(msg: &mut [u8], at: &[usize], mut n: u64) {
    let mut digits = [b'0'; COUNTER_DIGITS];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &i in at {
        msg[i..i + COUNTER_DIGITS].copy_from_slice(&digits);
    }
}

/// Counts what the gateway sends back, by status class, until `stop`.
fn count_answers(sock: UdpSocket, stop: Arc<AtomicBool>, by_class: Arc<[AtomicU64; 7]>) {
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        if let Ok(n) = sock.recv(&mut buf) {
            let class = match &buf[..n.min(9)] {
                [b'S', b'I', b'P', b'/', b'2', b'.', b'0', b' ', c] if c.is_ascii_digit() => {
                    usize::from(c - b'0').min(6)
                }
                _ => 0,
            };
            by_class[class].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let opts = parse_options();
    let sock = UdpSocket::bind((opts.from, 0))
        .unwrap_or_else(|e| usage(&format!("bind {}: {e}", opts.from)));
    sock.connect(opts.target)
        .unwrap_or_else(|e| usage(&format!("connect: {e}")));
    let me = sock.local_addr().unwrap();
    let mut msgs = templates(opts.target, me);
    let at: Vec<Vec<usize>> = msgs.iter().map(|m| marks(m)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let by_class: Arc<[AtomicU64; 7]> = Arc::new(Default::default());
    let counter = {
        let (rx, stop, by_class) = (sock.try_clone().unwrap(), stop.clone(), by_class.clone());
        std::thread::spawn(move || count_answers(rx, stop, by_class))
    };

    let start = Instant::now();
    let end = start + Duration::from_secs(opts.seconds);
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut n = 0u64;
    loop {
        // Check the clock (and pace) once per batch, not per message.
        for _ in 0..64 {
            let k = (n % msgs.len() as u64) as usize;
            stamp(&mut msgs[k], &at[k], n);
            match sock.send(&msgs[k]) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
            n += 1;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        if opts.rate > 0 {
            let due = start + Duration::from_secs_f64(n as f64 / opts.rate as f64);
            if due > now {
                std::thread::sleep((due - now).min(end - now));
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Late answers to the last messages.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    counter.join().unwrap();
    let c: Vec<u64> = by_class.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let answers: u64 = c.iter().sum();
    println!(
        "FLOOD from={} target={} sent={sent} seconds={secs:.2} rate={:.0} send_errors={errors} \
         answers={answers} answers_1xx={} answers_2xx={} answers_3xx={} answers_4xx={} \
         answers_5xx={} answers_6xx={} answers_other={}",
        me.ip(),
        opts.target,
        sent as f64 / secs,
        c[1],
        c[2],
        c[3],
        c[4],
        c[5],
        c[6],
        c[0]
    );
}
