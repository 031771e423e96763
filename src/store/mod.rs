//! The shared inventory in Redis: several instances serve one inventory, and
//! a push or an admin edit on any of them reaches all within a second.
//!
//! Nothing here is on the per-call path: calls read the lock-free
//! [`InventoryHandle`] as with files; this module only replaces what the
//! handle holds. It runs on a thread and runtime of its own, so that reading
//! a million numbers from Redis never delays a SIP message, and when Redis
//! is unreachable the instance keeps serving the last good inventory.

mod buckets;
mod follow;
mod health;
pub mod keys;
pub mod ops;
mod sync;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use health::Health;
use keys::Keys;

use crate::config::{Config, RedisInventoryConfig};
use crate::inventory::snapshot::Stamp;
use crate::inventory::{
    Counts, Edit, Inventory, InventoryError, InventoryHandle, LineError, Region,
};

/// Longest wait for one poll of the store.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for a whole version to be read (a million numbers).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for Redis at start before falling back to the snapshot.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings of every instance: fail fast (the caller keeps
/// serving and retries on its own schedule), reconnect in the background with
/// exponential backoff capped at one second.
fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_millis(500))
        .set_number_of_retries(2)
        .set_max_delay(1000)
}

/// A client for the configured store, not yet connected.
struct Client {
    client: redis::Client,
    keys: Keys,
    url: String,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl Client {
    fn new(cfg: &RedisInventoryConfig) -> anyhow::Result<Client> {
        Ok(Client {
            client: redis::Client::open(cfg.url.as_str())
                .with_context(|| format!("Redis URL {}", cfg.display_url()))?,
            keys: Keys::new(&cfg.key_prefix),
            url: cfg.display_url(),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The managed connection, connecting the first time; the manager then
    /// reconnects by itself after a loss.
    async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c =
            ConnectionManager::new_with_config(self.client.clone(), connection_config()).await?;
        *slot = Some(c.clone());
        Ok(c)
    }
}

/// Bounds `f` by `limit`, turning a timeout into a Redis I/O error.
async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", limit.as_millis()),
        ))),
    }
}

/// How an edit through the store ended.
#[derive(Debug)]
pub enum Edited<R> {
    /// Applied here and in the store: what the inventory holds now.
    Done(Counts),
    /// Refused by the check against the inventory in force.
    Refused(R),
    /// The store could not be reached; nothing changed.
    Unavailable(String),
    /// The inventory kept changing under the edit; nothing changed.
    Busy,
}

/// The running store connection of one instance.
pub struct Store {
    inner: Arc<sync::Inner>,
    runtime: tokio::runtime::Handle,
}

impl Store {
    /// Starts the store's thread; nothing is contacted yet.
    pub fn new(config: &Config) -> anyhow::Result<Store> {
        let cfg = config
            .inventory
            .redis
            .as_ref()
            .context("[inventory] redis is not set")?;
        let client = Client::new(cfg)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the inventory store runtime")?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("inventory-store".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .context("starting the inventory store thread")?;
        Ok(Store {
            inner: Arc::new(sync::Inner {
                health: Health::new(client.url.clone()),
                client,
                region: config.callerid.default_region,
                snapshot: cfg.snapshot.clone(),
                handle: OnceLock::new(),
                state: tokio::sync::Mutex::new(sync::Local::default()),
                changed: tokio::sync::watch::channel(Stamp::default()).0,
                poke: tokio::sync::Notify::new(),
            }),
            runtime: handle,
        })
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The inventory to start with (blocking; call before the gateway
    /// starts): the store's, else the snapshot file's (said in the log and in
    /// `/healthz`), else an error that says what to configure.
    pub fn load_at_start(&self) -> anyhow::Result<Inventory> {
        let inner = self.inner.clone();
        self.runtime
            .block_on(async move { inner.load_at_start().await })
    }

    /// Serves `handle` from now on: follows the store (notifications plus a
    /// poll every half second), keeps the snapshot file current.
    pub fn follow(&self, handle: Arc<InventoryHandle>) {
        if self.inner.handle.set(handle).is_err() {
            return;
        }
        let inner = self.inner.clone();
        self.runtime.spawn(follow::run(inner));
    }

    /// Checks an edit against the inventory in force (`apply` makes the
    /// edited inventory or refuses, and describes the edit), writes it to the
    /// store and applies it here; other instances apply it from the store.
    pub async fn edit<R: Send + 'static>(
        &self,
        apply: impl Fn(&Inventory) -> Result<(Inventory, Edit), R> + Send + Sync + 'static,
    ) -> Edited<R> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.edit(apply).await })
            .await
            .unwrap_or(Edited::Busy)
    }

    /// Reads the store's version whole, now.
    pub async fn reload(&self) -> Result<Counts, String> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.reload().await })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }
}

/// What `cidgate inventory push` did.
#[derive(Debug)]
pub struct PushReport {
    pub version: u64,
    pub previous: Option<u64>,
}

/// Writes `inventory` as a new version and switches every instance to it
/// in one step. The inventory was checked by the caller, like a load.
pub async fn push(cfg: &RedisInventoryConfig, inventory: &Inventory) -> anyhow::Result<PushReport> {
    let client = Client::new(cfg)?;
    let mut conn = within(START_TIMEOUT, client.conn())
        .await
        .with_context(|| format!("connecting to {}", client.url))?;
    let written = within(
        LOAD_TIMEOUT,
        ops::write_version(&mut conn, &client.keys, inventory),
    )
    .await
    .with_context(|| format!("writing the new version to {}", client.url))?;
    let version = written.version;
    match within(
        POLL_TIMEOUT * 5,
        ops::switch(&mut conn, &client.keys, written, false),
    )
    .await
    .with_context(|| format!("switching {} to version {version}", client.url))?
    {
        ops::Switched::Done { previous } => Ok(PushReport { version, previous }),
        other => anyhow::bail!(
            "version {version} was not switched to ({other:?}): its keys changed while being written; nothing changed"
        ),
    }
}

/// Reads the store's inventory once (for `check-config` and `resolve`).
pub async fn load_once(
    cfg: &RedisInventoryConfig,
    region: Region,
) -> anyhow::Result<(Inventory, Option<Stamp>)> {
    let client = Client::new(cfg)?;
    let mut conn = within(START_TIMEOUT, client.conn())
        .await
        .with_context(|| format!("connecting to {}", client.url))?;
    sync::read_current(&mut conn, &client.keys, region)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("reading the inventory from {}", client.url))
}

/// [`load_once`] for the command line (`check-config`, `resolve`, `cnam
/// export`): blocking, and an unreachable or refused store reported in the
/// shape of a refused load, naming the store.
pub fn load_blocking(
    cfg: &RedisInventoryConfig,
    region: Region,
) -> Result<Inventory, InventoryError> {
    let fail = |reason: String| {
        InventoryError::from(LineError {
            file: cfg.display_url(),
            line: 0,
            reason,
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))?;
    rt.block_on(async {
        let client = Client::new(cfg).map_err(|e| fail(format!("{e:#}")))?;
        let mut conn = within(START_TIMEOUT, client.conn())
            .await
            .map_err(|e| fail(format!("inventory store unreachable: {e}")))?;
        match sync::read_current(&mut conn, &client.keys, region).await {
            Ok((inv, _)) => Ok(inv),
            Err(sync::LoadError::Refused(_, e)) => Err(e),
            Err(sync::LoadError::Store(e)) => Err(fail(format!("cannot read the inventory: {e}"))),
        }
    })
}
