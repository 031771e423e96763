//! The `cidgate` command line: run, check-config, resolve, demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use cidgate::callerid::policy::Resolver;
use cidgate::config::Config;
use cidgate::inventory::InventoryHandle;

/// glibc malloc was about a sixth of the per-INVITE profile (every message
/// allocates a few small buffers); mimalloc's thread-local free lists make those
/// allocations cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cidgate", version, about = "Outbound caller-ID SIP gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file and its inventory without starting anything.
    CheckConfig { config: PathBuf },
    /// Print the caller-ID decision for a queue and optional per-call number.
    Resolve {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        queue: String,
        #[arg(long = "caller-id")]
        caller_id: Option<String>,
    },
    /// Start the gateway on built-in example data with an in-process PBX and
    /// carrier, place one call per outcome and show what was rewritten.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Resolve {
            config,
            queue,
            caller_id,
        } => report(resolve(&config, &queue, caller_id.as_deref())),
        Command::Run { config } => report(run(&config)),
        Command::Demo => report(cidgate::demo::run_blocking()),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &Path) -> ExitCode {
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match config.load_inventory() {
        Ok(inv) => {
            println!(
                "{}: ok ({} queues, {} claimed numbers, {} carrier(s), listen {})",
                path.display(),
                inv.queue_count(),
                inv.claimed_count(),
                config.carrier.len(),
                config
                    .server
                    .listen
                    .iter()
                    .map(|l| format!("{}://{}", l.transport, l.addr))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn resolve(path: &Path, queue: &str, caller_id: Option<&str>) -> anyhow::Result<()> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let inv = config
        .load_inventory()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut resolver = Resolver::new(config.callerid.dynamic_format);
    match resolver.resolve(&inv, queue, caller_id) {
        Ok(d) => {
            println!("decision: forward");
            println!("outcome:  {}", d.outcome.as_str());
            println!("number:   {}", d.number);
            println!(
                "name:     {}",
                if d.name.is_empty() { "(none)" } else { &d.name }
            );
            println!("anonymous: {}", d.anonymous);
            println!(
                "why:      {}",
                cidgate::callerid::explain(&d, queue, caller_id)
            );
        }
        Err(r) => {
            println!(
                "decision: reject ({} {})",
                config.reject.code, config.reject.phrase
            );
            println!("outcome:  {}", r.as_str());
            println!("why:      {}", cidgate::callerid::explain_reject(r, queue));
        }
    }
    Ok(())
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    cidgate::telemetry::init_logging(config.server.log == cidgate::config::LogFormat::Json);
    let inventory = config
        .load_inventory()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // One thread: the proxy core is a single owner of all transaction state, and
    // keeping sockets, timers and the core on one thread avoids a cross-thread
    // wake-up per message. Inventory reloads run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let handle = Arc::new(InventoryHandle::new(inventory));
        let gw = cidgate::server::start(&config, handle, None).await?;
        for p in &gw.listen {
            tracing::info!(listen = %format!("{}://{}", p.transport, p.addr), "listening");
        }
        let admin = match config.server.admin {
            Some(addr) => Some(
                cidgate::admin::start(addr, &config, gw.inventory.clone())
                    .await?
                    .1,
            ),
            None => None,
        };
        cidgate::reload::spawn_watchers(&config, gw.inventory.clone());
        wait_for_termination().await;
        tracing::info!("shutting down");
        if let Some(a) = admin {
            a.abort();
        }
        gw.drain(std::time::Duration::from_secs(10)).await;
        anyhow::Ok(())
    })
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
