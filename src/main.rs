//! The `cidgate` command line: run, check-config, resolve, demo.

#![warn(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgGroup, Parser, Subcommand};

use cidgate::callerid::policy::Resolver;
use cidgate::config::{Config, ConfigError};
use cidgate::inventory::{Inventory, InventoryHandle};

/// glibc malloc was about a sixth of the per-INVITE profile (every message
/// allocates a few small buffers); mimalloc's thread-local free lists make those
/// allocations cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option: its place in `mi_option_e`, the same in
/// mimalloc 2 and 3 (libmimalloc-sys exports the next one,
/// `mi_option_use_numa_nodes` = 16, but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory the gateway freed stays with it before mimalloc gives it
/// back to the kernel. mimalloc's own 1 s is shorter than the life of a
/// call's transactions, so at a steady call rate it kept returning pages
/// that the next calls asked for again a moment later, and the kernel
/// zeroed every one of them again on its first touch, 2 MiB at a time
/// (mimalloc asks for transparent huge pages; about 2 ms each on the
/// benchmark machine): 270 page faults in 9 s of 1 000 calls/s, about 20
/// with 10 s (BENCHMARKS.md, second and third sittings of 3 December).
/// Memory a load peak took still goes back, 10 s after the peak.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// Sets [`PURGE_DELAY_MS`] unless the operator chose a delay through
/// mimalloc's own `MIMALLOC_PURGE_DELAY`.
fn keep_freed_memory_a_while() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mimalloc's option setter, callable at any time from any
        // thread; the option is read each time a purge is scheduled.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[derive(Parser)]
#[command(
    name = "cidgate",
    version,
    about = "Outbound caller-ID SIP gateway",
    long_about = "Outbound caller-ID SIP gateway: sits between a contact-center PBX and \
                  the carrier trunks, writes the queue's (or a claimed per-call) number \
                  into From and P-Asserted-Identity, and answers 403 when no number may \
                  be shown."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C.
    #[command(after_help = "Exit codes: 0 stopped cleanly; 1 could not start \
                            (configuration, inventory, or a listener that cannot bind).")]
    Run {
        /// Configuration file (TOML); inventory paths in it are relative to it.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and its inventory without starting anything.
    ///
    /// Every problem is reported in one run: each unknown key, each bad value,
    /// and each bad line of the inventory files, with file and line.
    #[command(after_help = "Exit codes: 0 valid (warnings, such as a number listed \
                            twice, do not fail the check); 1 invalid or unreadable; \
                            2 bad command line.")]
    #[command(group(ArgGroup::new("source").required(true).args(["config", "file"])))]
    CheckConfig {
        /// Configuration file (TOML), as for run and resolve.
        #[arg(long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Configuration file, given without --config.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Print the caller-ID decision for a queue and an optional per-call number.
    #[command(after_help = "Exit codes: 0 the call is forwarded; 1 the call is \
                            rejected (unknown_queue, no_queue_number); 2 no decision: \
                            the configuration or inventory is invalid, or a bad command line.")]
    Resolve {
        /// Configuration file (TOML) whose inventory and [callerid] settings decide.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Queue id, as the PBX sends it in the queue header (X-Queue-Id).
        #[arg(long, value_name = "ID")]
        queue: String,
        /// Per-call number, as the PBX sends it in the per-call header (X-Caller-Id).
        #[arg(long = "caller-id", value_name = "NUMBER")]
        caller_id: Option<String>,
    },
    /// Start the gateway on built-in example data with an in-process PBX and
    /// carrier, place one call per outcome and show what was rewritten.
    Demo,
    /// CNAM (US calling-name database) enrolment.
    #[command(subcommand)]
    Cnam(CnamCommand),
    /// The inventory shared by several instances (`[inventory] redis`).
    #[command(subcommand)]
    Inventory(InventoryCommand),
}

#[derive(Subcommand)]
enum InventoryCommand {
    /// Check QUEUES.csv and NUMBERS.csv like a load, then make them the
    /// inventory of every instance in one atomic switch. Any bad line refuses
    /// the whole push and changes nothing.
    Push {
        /// The configuration naming the store (`[inventory] redis`).
        #[arg(long)]
        config: PathBuf,
        /// queues.csv to push.
        queues: PathBuf,
        /// numbers.csv to push.
        numbers: PathBuf,
    },
}

#[derive(Subcommand)]
enum CnamCommand {
    /// Write `number,name,cnam_name,eligible,reason` for every claimed number
    /// a queue presents: the list to hand to a CNAM provider.
    Export {
        /// Configuration file (TOML) whose inventory is exported.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `resolve`'s exit code when the call would be rejected.
const EXIT_REJECT: u8 = 1;
/// `resolve`'s exit code when no decision could be made.
const EXIT_NO_DECISION: u8 = 2;

fn main() -> ExitCode {
    keep_freed_memory_a_while();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, file } => {
            check_config(&config.or(file).expect("clap requires one of them"))
        }
        Command::Resolve {
            config,
            queue,
            caller_id,
        } => match resolve(&config, &queue, caller_id.as_deref()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_REJECT),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_NO_DECISION)
            }
        },
        Command::Run { config } => report(run(&config)),
        Command::Demo => report(cidgate::demo::run_blocking()),
        Command::Cnam(CnamCommand::Export { config, output }) => {
            report(cnam_export(&config, output.as_deref()))
        }
        Command::Inventory(InventoryCommand::Push {
            config,
            queues,
            numbers,
        }) => report(push(&config, &queues, &numbers)),
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

/// Prints every problem of the configuration and of its inventory; the
/// inventory is checked even when other keys of the configuration are wrong.
fn check_config(path: &Path) -> ExitCode {
    let check = Config::check_file(path);
    if let Err(e) = &check.result {
        eprintln!("{e}");
    }
    let inventory = check_inventory(path, &check);
    // The key is read only when the settings are right; its problem is
    // reported with the others, never instead of them.
    let signer = match &check.result {
        Ok(config) => match config.load_signer() {
            Ok(s) => Ok(s),
            Err(e) => {
                eprintln!("{}: [stir] key: {e}", path.display());
                Err(())
            }
        },
        Err(_) => Ok(None),
    };
    match (check.result, inventory, signer) {
        (Ok(config), Some(inv), Ok(signer)) => {
            for warning in cnam_warnings(&config, &inv) {
                eprintln!("warning: {warning}");
            }
            if let (Some(stir), Some(signer)) = (&config.stir, &signer) {
                println!(
                    "stir: signing with {} (P-256), x5u {}, default attest {}, rcd {}",
                    stir.key.display(),
                    signer.x5u(),
                    stir.attest,
                    stir.rcd
                );
            }
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
        _ => ExitCode::FAILURE,
    }
}

/// Loads the inventory the configuration names, even when other keys are
/// wrong, printing its errors and warnings; the inventory when it loads.
fn check_inventory(
    path: &Path,
    check: &cidgate::config::ConfigCheck,
) -> Option<cidgate::inventory::Inventory> {
    let Some(source) = &check.inventory else {
        if matches!(check.result, Err(ConfigError::Invalid { .. })) {
            eprintln!(
                "{}: inventory not checked: the settings that locate or read it are wrong",
                path.display()
            );
        }
        return None;
    };
    match source.load() {
        Ok(inv) => {
            print_warnings(&inv);
            Some(inv)
        }
        Err(e) => {
            eprintln!("{e}");
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            None
        }
    }
}

fn print_warnings(inv: &cidgate::inventory::Inventory) {
    for w in inv.warnings() {
        eprintln!("warning: {w}");
    }
}

/// One line per queue whose name `[callerid] cnam_names` will change for
/// CNAM-eligible numbers.
fn cnam_warnings(config: &Config, inv: &cidgate::inventory::Inventory) -> Vec<String> {
    if !config.callerid.cnam_names {
        return Vec::new();
    }
    let mut queues: Vec<_> = inv
        .queues()
        .filter(|q| !q.name.is_empty() && cidgate::cnam::is_shaped(&q.name))
        .collect();
    queues.sort_by(|a, b| a.id.cmp(&b.id));
    queues
        .into_iter()
        .map(|q| {
            format!(
                "{}: queue `{}`: name {:?} is presented as {:?} with CNAM-eligible numbers (cnam_names: at most {} characters; letters, digits, space and . , & ' -)",
                config.inventory.queues.display(),
                q.id,
                q.name,
                cidgate::cnam::shape(&q.name),
                cidgate::cnam::MAX_LEN
            )
        })
        .collect()
}

fn cnam_export(path: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let inv = config
        .load_inventory()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = match output {
        Some(file) => {
            let f = std::fs::File::create(file)
                .with_context(|| format!("{}: cannot create", file.display()))?;
            cidgate::cnam::export::write_csv(&inv, std::io::BufWriter::new(f))
                .with_context(|| format!("{}: cannot write", file.display()))?
        }
        None => cidgate::cnam::export::write_csv(&inv, std::io::stdout().lock())
            .context("writing to standard output")?,
    };
    eprintln!("{rows} row(s) exported");
    Ok(())
}

/// Prints the decision; whether the call would be forwarded.
fn resolve(path: &Path, queue: &str, caller_id: Option<&str>) -> anyhow::Result<bool> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let inv = config
        .load_inventory()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer = config.load_signer().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mode = config.callerid.dynamic_format;
    let mut resolver = Resolver::new(mode).with_cnam_names(config.callerid.cnam_names);
    match resolver.resolve(&inv, queue, caller_id) {
        Ok(d) => {
            let q = inv
                .queue(queue.trim())
                .expect("a forwarded call has a queue");
            println!("decision: forward");
            println!("outcome:  {}", d.outcome.as_str());
            println!("number:   {}", d.number);
            println!(
                "name:     {}",
                if d.name.is_empty() { "(none)" } else { &d.name }
            );
            println!("anonymous: {}", d.anonymous);
            print_cnam(&inv, queue, &d);
            if let (Some(stir), Some(signer)) = (&config.stir, &signer) {
                print_claims(stir, signer, &inv, &d);
            }
            println!(
                "why:      {}",
                cidgate::callerid::explain(&d, q, caller_id, mode)
            );
            Ok(true)
        }
        Err(r) => {
            println!(
                "decision: reject ({} {})",
                config.reject.code, config.reject.phrase
            );
            println!("outcome:  {}", r.as_str());
            println!("why:      {}", cidgate::callerid::explain_reject(r, queue));
            Ok(false)
        }
    }
}

/// The CNAM view of the decision: the shaped name and whether the number
/// can be enrolled.
fn print_cnam(inv: &cidgate::inventory::Inventory, queue: &str, d: &cidgate::callerid::Decision) {
    let original = inv.queue(queue.trim()).map_or("", |q| &q.name);
    let eligibility = cidgate::cnam::eligibility(&d.number);
    println!(
        "cnam:     {:?} ({eligibility})",
        cidgate::cnam::shape(original)
    );
}

/// The claims every call of this decision is signed with; `dest.tn`,
/// `iat` and `origid` differ per call.
fn print_claims(
    stir: &cidgate::config::StirConfig,
    signer: &cidgate::stir::Signer,
    inv: &cidgate::inventory::Inventory,
    d: &cidgate::callerid::Decision,
) {
    let attest = inv.attest_of(&d.number).unwrap_or(stir.attest);
    println!("stir:     orig.tn {}", d.number.digits());
    println!(
        "          attest {attest}{}",
        if inv.attest_of(&d.number).is_some() {
            " (numbers file)"
        } else {
            " ([stir] default)"
        }
    );
    if stir.rcd && !d.name.is_empty() {
        println!("          rcd.nam {:?}", &*d.name);
    }
    println!("          dest.tn from each call's Request-URI; iat and origid per call");
    println!("          x5u {}", signer.x5u());
}

/// `inventory push`: the files are checked exactly like a load (every bad
/// line printed, nothing written on any) before anything reaches the store.
fn push(path: &Path, queues: &Path, numbers: &Path) -> anyhow::Result<()> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(redis) = &config.inventory.redis else {
        anyhow::bail!(
            "{}: [inventory] redis is not set; push writes to the shared inventory store",
            path.display()
        );
    };
    let inventory =
        cidgate::inventory::Inventory::load(queues, numbers, config.callerid.default_region)
            .map_err(|e| anyhow::anyhow!("nothing pushed:\n{e}"))?;
    print_warnings(&inventory);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let pushed = rt.block_on(cidgate::store::push(redis, &inventory))?;
    println!(
        "pushed version {} to {} ({} queues, {} numbers){}",
        pushed.version,
        redis.display_url(),
        inventory.queue_count(),
        inventory.claimed_count(),
        pushed
            .previous
            .map(|p| format!("; replaced version {p}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _flush_at_exit =
        cidgate::telemetry::init_logging(config.server.log == cidgate::config::LogFormat::Json);
    // With a shared store, the store's thread loads and follows the inventory.
    let store = match config.inventory.redis {
        Some(_) => Some(Arc::new(cidgate::store::Store::new(&config)?)),
        None => None,
    };
    let inventory = match &store {
        Some(store) => store.load_at_start()?,
        None => config
            .load_inventory()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    for w in inventory.warnings() {
        tracing::warn!("inventory: {w}");
    }
    // One thread: the proxy core is a single owner of all transaction state, and
    // keeping sockets, timers and the core on one thread avoids a cross-thread
    // wake-up per message. Inventory reloads run on the blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(config, inventory, store))
}

/// Runs the gateway, its admin server and its reloads until SIGTERM or
/// Ctrl-C, then drains.
async fn serve(
    config: Config,
    inventory: Inventory,
    store: Option<Arc<cidgate::store::Store>>,
) -> anyhow::Result<()> {
    let handle = Arc::new(InventoryHandle::new(inventory));
    let gw = cidgate::server::start(&config, handle, None).await?;
    for p in &gw.listen {
        tracing::info!(listen = %format!("{}://{}", p.transport, p.addr), "listening");
    }
    let admin = match config.server.admin {
        Some(addr) => {
            let attached = cidgate::admin::Attached {
                store: store.clone(),
                tls: gw.tls.clone(),
                carriers: Some(gw.carriers.clone()),
            };
            let inventory = gw.inventory.clone();
            let server = cidgate::admin::start_with(addr, &config, inventory, attached).await?;
            Some(server.task)
        }
        None => None,
    };
    match &store {
        Some(store) => store.follow(gw.inventory.clone()),
        None => cidgate::reload::spawn_watchers(&config, gw.inventory.clone()),
    }
    if let Some(tls) = gw.tls.clone() {
        cidgate::reload::spawn_tls_reload(tls);
    }
    wait_for_termination().await;
    tracing::info!("shutting down");
    if let Some(a) = admin {
        a.abort();
    }
    gw.drain(std::time::Duration::from_secs(10)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The option index is mimalloc's purge delay: its documented default
    /// (1 000 ms) is read there before the gateway's is set, and the
    /// gateway's after. A mimalloc whose options moved fails here instead of
    /// setting some other option.
    #[test]
    fn the_purge_delay_set_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the operator's choice wins; nothing of ours to check
        }
        // SAFETY: mimalloc's option getter, callable at any time.
        let read = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(read(), 1_000);
        super::keep_freed_memory_a_while();
        assert_eq!(read(), super::PURGE_DELAY_MS);
    }

    /// `--help` is the operator's manual: every option, argument and
    /// subcommand says what it is for.
    #[test]
    fn every_option_has_a_help_text() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut checked = 0;
        let mut todo: Vec<(String, &clap::Command)> = vec![(String::new(), &cli)];
        while let Some((path, cmd)) = todo.pop() {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "{name} has no help");
                todo.push((name, sub));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path} {id} has no help text");
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} options seen");
    }
}
