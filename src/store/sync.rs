//! Keeping one instance's inventory equal to the store's: poll, replay the
//! edits since the version in force, or read the version whole; write an
//! admin edit through; write the inventory back into a store that lost it.
//!
//! Every change of what the instance serves happens under `state`, so the
//! stamp (version, revision) always describes what the handle holds.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use redis::aio::ConnectionManager;
use tokio::sync::{watch, Mutex, Notify};

use super::buckets;
use super::keys::Keys;
use super::ops::{self, Switched};
use super::{within, Client, Edited, Health, LOAD_TIMEOUT, POLL_TIMEOUT, START_TIMEOUT};
use crate::inventory::snapshot::{self, Stamp};
use crate::inventory::{Counts, Edit, Inventory, InventoryError, InventoryHandle, Region};

/// What the instance serves, relative to the store.
#[derive(Debug, Default)]
pub(super) struct Local {
    pub stamp: Stamp,
    /// A store version this instance refused (bad data); not read again
    /// until the store moves on.
    pub refused: Option<Stamp>,
    /// Served from the snapshot file, not yet confirmed by the store.
    pub from_snapshot: bool,
}

pub(super) struct Inner {
    pub health: Health,
    pub client: Client,
    pub region: Region,
    pub snapshot: Option<PathBuf>,
    pub handle: OnceLock<Arc<InventoryHandle>>,
    pub state: Mutex<Local>,
    /// The stamp after every change (the snapshot writer follows it).
    pub changed: watch::Sender<Stamp>,
    /// Rung by change notifications: poll now instead of at the next tick.
    pub poke: Notify,
}

/// Why the store's inventory could not be read.
pub(super) enum LoadError {
    Store(redis::RedisError),
    /// The store's data does not pass the checks of a load.
    Refused(Stamp, InventoryError),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Store(e) => write!(f, "{e}"),
            LoadError::Refused(s, e) => {
                write!(
                    f,
                    "version {} revision {} refused:\n{e}",
                    s.version, s.revision
                )
            }
        }
    }
}

/// Reads the current version whole and checks it like a load; `None` for
/// the stamp when the store holds nothing.
pub(super) async fn read_current(
    conn: &mut ConnectionManager,
    keys: &Keys,
    region: Region,
) -> Result<(Inventory, Option<Stamp>), LoadError> {
    // A push may switch between the poll and the read: read again.
    for _ in 0..5 {
        let polled = ops::poll(conn, keys, Stamp::default())
            .await
            .map_err(LoadError::Store)?;
        let Some(stamp) = polled.stamp else {
            return Ok((Inventory::empty(), None));
        };
        let Some(whole) = ops::read_whole(conn, keys, stamp.version)
            .await
            .map_err(LoadError::Store)?
        else {
            continue;
        };
        let v = whole.stamp.version;
        let inventory = buckets::read_inventory(&whole, &keys.numbers(v), &keys.queues(v), region)
            .map_err(|e| LoadError::Refused(whole.stamp, e))?;
        return Ok((inventory, Some(whole.stamp)));
    }
    Err(LoadError::Store(redis::RedisError::from((
        redis::ErrorKind::TryAgain,
        "the current version kept changing while being read",
    ))))
}

fn is_empty(inv: &Inventory) -> bool {
    inv.queue_count() == 0 && inv.claimed_count() == 0
}

impl Inner {
    fn keys(&self) -> &Keys {
        &self.client.keys
    }

    /// Records that the handle now holds `stamp`'s inventory.
    fn installed(&self, local: &mut Local, stamp: Stamp, kind: &'static str, inv: &Inventory) {
        local.stamp = stamp;
        local.from_snapshot = false;
        local.refused = None;
        self.health.serving(stamp, false);
        self.health.clear_refused();
        self.changed.send_replace(stamp);
        metrics::counter!("cidgate_inventory_updates_total", "kind" => kind).increment(1);
        tracing::info!(
            version = stamp.version,
            revision = stamp.revision,
            queues = inv.queue_count(),
            numbers = inv.claimed_count(),
            how = kind,
            "inventory updated from the store"
        );
    }

    /// The inventory to start with: the store's, else (with a reason that
    /// is logged) the snapshot file's; an error when neither can be used.
    pub async fn load_at_start(&self) -> anyhow::Result<Inventory> {
        let url = &self.client.url;
        // Reaching the store is bounded by the start timeout; reading a large
        // inventory on a busy machine may take longer, up to the load timeout.
        let read = async {
            let mut conn = within(START_TIMEOUT, self.client.conn()).await?;
            within(LOAD_TIMEOUT, async {
                Ok(read_current(&mut conn, self.keys(), self.region).await)
            })
            .await
        }
        .await;
        let mut local = self.state.lock().await;
        let problem = match read {
            Ok(Ok((inv, Some(stamp)))) => {
                self.health.up();
                local.stamp = stamp;
                self.health.serving(stamp, false);
                self.changed.send_replace(stamp);
                tracing::info!(store = %url, version = stamp.version, revision = stamp.revision,
                    queues = inv.queue_count(), numbers = inv.claimed_count(), "inventory loaded from the store");
                return Ok(inv);
            }
            Ok(Ok((inv, None))) => {
                self.health.up();
                if self.snapshot.as_ref().is_some_and(|p| p.exists()) {
                    format!("the store {url} holds no inventory")
                } else {
                    tracing::warn!(store = %url, "the store holds no inventory yet: every call is rejected until `cidgate inventory push`");
                    return Ok(inv);
                }
            }
            Ok(Err(LoadError::Refused(stamp, e))) => {
                self.health.up();
                local.refused = Some(stamp);
                self.health.refused(stamp, e.to_string());
                format!(
                    "the inventory in {url} is refused: {}",
                    LoadError::Refused(stamp, e)
                )
            }
            Ok(Err(LoadError::Store(e))) | Err(e) => {
                self.health.down(&e.to_string());
                format!("inventory store {url} unreachable ({e})")
            }
        };
        self.start_from_snapshot(&mut local, &problem)
    }

    /// Falls back to the snapshot file when the store's inventory cannot be
    /// served at start, for `problem`.
    fn start_from_snapshot(&self, local: &mut Local, problem: &str) -> anyhow::Result<Inventory> {
        let Some(path) = &self.snapshot else {
            anyhow::bail!(
                "{problem}; refusing to start without an inventory (set [inventory] snapshot = \"path\" to start from the last good copy)"
            );
        };
        let (inv, stamp) = snapshot::read(path, self.region)
            .map_err(|e| anyhow::anyhow!("{problem}, and the snapshot cannot be used:\n{e}"))?;
        local.stamp = stamp;
        local.from_snapshot = true;
        self.health.serving(stamp, true);
        tracing::warn!(
            snapshot = %path.display(),
            version = stamp.version,
            revision = stamp.revision,
            queues = inv.queue_count(),
            numbers = inv.claimed_count(),
            "{problem}; serving the last good inventory from the snapshot file until the store answers"
        );
        Ok(inv)
    }

    /// One round of following: poll, then replay, read whole or restore.
    pub async fn sync(&self) {
        let Some(handle) = self.handle.get() else {
            return;
        };
        let mut local = self.state.lock().await;
        let mut conn = match within(POLL_TIMEOUT, self.client.conn()).await {
            Ok(c) => c,
            Err(e) => return self.health.down(&e.to_string()),
        };
        let polled =
            match within(POLL_TIMEOUT, ops::poll(&mut conn, self.keys(), local.stamp)).await {
                Ok(p) => p,
                Err(e) => return self.health.down(&e.to_string()),
            };
        self.health.up();
        let Some(remote) = polled.stamp else {
            let inv = handle.snapshot();
            if local.stamp != Stamp::default() || !is_empty(&inv) {
                self.restore(&mut conn, &mut local, &inv).await;
            }
            return;
        };
        if remote == local.stamp {
            if local.from_snapshot {
                local.from_snapshot = false;
                self.health.serving(remote, false);
                tracing::info!("the store holds the snapshot's version; following it");
            }
            return;
        }
        if local.refused == Some(remote) {
            return;
        }
        let replayable = remote.version == local.stamp.version
            && remote.revision > local.stamp.revision
            && !local.from_snapshot;
        if replayable && self.replay(&mut local, handle, &polled.entries, remote) {
            return;
        }
        self.load_whole(&mut conn, &mut local, handle).await;
    }

    /// Applies the log entries after the local revision; false when they do
    /// not lead exactly to `target` (the caller reads the version whole).
    fn replay(
        &self,
        local: &mut Local,
        handle: &InventoryHandle,
        entries: &[String],
        target: Stamp,
    ) -> bool {
        let mut edits = Vec::with_capacity(entries.len());
        let mut next = local.stamp.revision + 1;
        for entry in entries {
            let Some(e) = ops::parse_entry(entry) else {
                return false;
            };
            match Edit::decode(e.op, e.key, e.row, self.region) {
                Ok(edit) if e.revision == next => edits.push(edit),
                _ => return false,
            }
            next += 1;
        }
        if next != target.revision + 1 {
            return false;
        }
        match Edit::apply_all(&edits, &handle.snapshot()) {
            Ok(inv) => {
                self.installed(local, target, "edits", &inv);
                handle.replace(inv);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "replaying the store's edits failed; reading the version whole");
                false
            }
        }
    }

    async fn load_whole(
        &self,
        conn: &mut ConnectionManager,
        local: &mut Local,
        handle: &InventoryHandle,
    ) {
        match within(LOAD_TIMEOUT, async {
            Ok(read_current(conn, self.keys(), self.region).await)
        })
        .await
        {
            Ok(Ok((inv, Some(stamp)))) => {
                self.installed(local, stamp, "load", &inv);
                handle.replace(inv);
            }
            // Emptied meanwhile: the next poll writes the inventory back.
            Ok(Ok((_, None))) => {}
            Ok(Err(LoadError::Refused(stamp, e))) => {
                tracing::error!(version = stamp.version, revision = stamp.revision, error = %e,
                    "the store's inventory is refused; the inventory in force stays");
                metrics::counter!("cidgate_inventory_reloads_total", "result" => "refused")
                    .increment(1);
                local.refused = Some(stamp);
                self.health.refused(stamp, e.to_string());
            }
            Ok(Err(LoadError::Store(e))) | Err(e) => self.health.down(&e.to_string()),
        }
    }

    /// The store answers but holds nothing while this instance serves an
    /// inventory: Redis restarted without persistence (or was flushed).
    /// Writes the inventory in force back as a new version, unless another
    /// instance did so first; calls never see an empty inventory for it.
    async fn restore(&self, conn: &mut ConnectionManager, local: &mut Local, inv: &Inventory) {
        let written = within(LOAD_TIMEOUT, async {
            let written = ops::write_version(conn, self.keys(), inv).await?;
            let switched = ops::switch(conn, self.keys(), written, true).await?;
            Ok((written.version, switched))
        })
        .await;
        match written {
            Ok((version, Switched::Done { .. })) => {
                tracing::warn!(version, previous_version = local.stamp.version,
                    "the inventory store was empty (restarted without persistence?); wrote this instance's inventory back");
                self.installed(
                    local,
                    Stamp {
                        version,
                        revision: 0,
                    },
                    "restore",
                    inv,
                );
            }
            Ok((_, Switched::Taken)) => {
                tracing::info!("another instance wrote the inventory back first")
            }
            Ok((version, Switched::Incomplete)) => {
                tracing::warn!(
                    version,
                    "writing the inventory back did not complete; retrying"
                )
            }
            Err(e) => self.health.down(&e.to_string()),
        }
    }

    /// Applies an edit here and in the store: `apply` turns the inventory in
    /// force into the edited one (or refuses) and says what the edit was; it
    /// runs again after catching up when another edit or a push came first.
    pub async fn edit<R>(
        &self,
        apply: impl Fn(&Inventory) -> Result<(Inventory, Edit), R>,
    ) -> Edited<R> {
        let Some(handle) = self.handle.get() else {
            return Edited::Busy;
        };
        for _ in 0..5 {
            {
                let mut local = self.state.lock().await;
                if let Some(refused) = local.refused {
                    return Edited::Unavailable(format!(
                        "the store holds version {} revision {}, which this instance refused (see /healthz)",
                        refused.version, refused.revision
                    ));
                }
                let (next, edit) = match apply(&handle.snapshot()) {
                    Ok(done) => done,
                    Err(refusal) => return Edited::Refused(refusal),
                };
                let encoded = edit.encode();
                let written = within(POLL_TIMEOUT * 2, async {
                    let mut conn = self.client.conn().await?;
                    ops::edit(&mut conn, self.keys(), local.stamp, &encoded).await
                })
                .await;
                let (applied, stamp) = match written {
                    Ok(w) => w,
                    Err(e) => {
                        self.health.down(&e.to_string());
                        return Edited::Unavailable(e.to_string());
                    }
                };
                self.health.up();
                if applied {
                    let c = next.counts();
                    self.installed(&mut local, stamp, "edit", &next);
                    handle.replace(next);
                    return Edited::Done(c);
                }
            }
            // Another edit or a push came first: catch up, check again.
            self.sync().await;
        }
        Edited::Busy
    }

    pub async fn reload(&self) -> Result<Counts, String> {
        let Some(handle) = self.handle.get() else {
            return Err("not serving yet".into());
        };
        let mut local = self.state.lock().await;
        let mut conn = within(POLL_TIMEOUT, self.client.conn())
            .await
            .map_err(|e| format!("inventory store unreachable: {e}"))?;
        local.refused = None;
        self.load_whole(&mut conn, &mut local, handle).await;
        if !self.health.is_up() {
            return Err("inventory store unreachable; the inventory in force stays".into());
        }
        if let Some(s) = local.refused {
            return Err(format!(
                "the store's version {} revision {} is refused (see the log); the inventory in force stays",
                s.version, s.revision
            ));
        }
        Ok(handle.snapshot().counts())
    }
}
