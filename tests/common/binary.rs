//! The real `cidgate` binary as a child process, for what only the binary
//! does: the command line, start-up, signals and its log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

/// Starting warms the numbering plans first: allow for a slow machine.
const START: Duration = Duration::from_secs(60);

/// A running `cidgate run`, killed when dropped.
pub struct RunningBinary {
    pub child: Child,
    /// The UDP address it logged that it listens on.
    pub udp: SocketAddr,
    /// Its log (stderr) after the listener's line, read in the background so
    /// that the process never blocks on a full pipe.
    pub log: mpsc::UnboundedReceiver<String>,
}

impl RunningBinary {
    /// Runs `cidgate run --config cfg` with info logs and waits for its UDP
    /// listener.
    pub async fn start(cfg: &Path) -> RunningBinary {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cidgate"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        let mut gw = RunningBinary {
            child,
            udp: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let started = gw.read_log_until("listen=udp://", START).await;
        let listening = started.last().unwrap().split("listen=udp://").nth(1);
        let addr = listening.and_then(|rest| rest.split_whitespace().next());
        gw.udp = addr.unwrap().trim_end_matches('"').parse().unwrap();
        gw
    }

    /// The log lines up to the first that contains `needle` (the last one
    /// returned); fails the test when none comes within `wait`.
    pub async fn read_log_until(&mut self, needle: &str, wait: Duration) -> Vec<String> {
        let mut seen = Vec::new();
        let end = tokio::time::Instant::now() + wait;
        loop {
            let line = tokio::time::timeout_at(end, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in:\n{}", seen.join("\n")))
                .expect("stderr open");
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Sends SIGTERM: the graceful stop.
    pub fn sigterm(&self) {
        let pid = self.child.id().unwrap().to_string();
        // The shell's own kill: no dependency on a kill binary being installed.
        let killed = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// Waits up to `wait` for the process to end, checks it ended well and
    /// returns the log lines not read yet.
    pub async fn exits_cleanly(mut self, wait: Duration) -> Vec<String> {
        let code = tokio::time::timeout(wait, self.child.wait())
            .await
            .expect("exits after draining")
            .unwrap();
        assert!(code.success(), "{code:?}");
        let mut rest = Vec::new();
        while let Some(line) = self.log.recv().await {
            rest.push(line);
        }
        rest
    }
}

/// Runs `cidgate args…` to its end: (exit code, stdout, stderr).
pub fn cidgate_code(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cidgate"))
        .args(args)
        .output()
        .expect("cidgate runs");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`cidgate_code`], saying only whether it succeeded.
pub fn cidgate(args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = cidgate_code(args);
    (code == 0, stdout, stderr)
}

/// The `[inventory]` section of a configuration that uses the example files
/// (examples/queues.csv and examples/numbers.csv).
pub fn example_inventory_section() -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    format!(
        "[inventory]\nqueues = \"{}\"\nnumbers = \"{}\"\n",
        data.join("queues.csv").display(),
        data.join("numbers.csv").display()
    )
}
