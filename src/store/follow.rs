//! The store's background tasks: poll every half second and on every change
//! notification, listen on the change channel (reconnecting with backoff),
//! and keep the snapshot file current.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::sync::Inner;
use crate::inventory::snapshot;

/// Poll interval: catches a change whose notification was lost (pub/sub
/// delivers at most once) well within a second.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Snapshot writes are coalesced over this long (edits may come in bursts).
const SNAPSHOT_DELAY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

pub(super) async fn run(inner: Arc<Inner>) {
    tokio::spawn(listen(inner.clone()));
    if inner.snapshot.is_some() {
        tokio::spawn(keep_snapshot(inner.clone()));
    }
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.poke.notified() => {}
        }
        inner.sync().await;
    }
}

/// Subscribes to the change channel and pokes the poller on every message;
/// after a loss, resubscribes with exponential backoff and polls once (a
/// change may have been missed meanwhile).
async fn listen(inner: Arc<Inner>) {
    let channel = inner.client.keys.changes();
    let mut backoff = BACKOFF_MIN;
    loop {
        let subscribed = tokio::time::timeout(Duration::from_secs(1), async {
            let mut pubsub = inner.client.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = subscribed {
            backoff = BACKOFF_MIN;
            inner.poke.notify_one();
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                inner.poke.notify_one();
            }
            tracing::debug!("change notifications lost; resubscribing");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Rewrites the snapshot file after changes (not for an inventory that came
/// from it and was not confirmed by the store).
async fn keep_snapshot(inner: Arc<Inner>) {
    let Some(path) = inner.snapshot.clone() else {
        return;
    };
    let mut changes = inner.changed.subscribe();
    changes.mark_changed();
    while changes.changed().await.is_ok() {
        tokio::time::sleep(SNAPSHOT_DELAY).await;
        let (inv, stamp) = {
            let local = inner.state.lock().await;
            if local.from_snapshot {
                continue;
            }
            match inner.handle.get() {
                Some(h) => (h.snapshot(), local.stamp),
                None => continue,
            }
        };
        // Mark what this write covers, so a change during it is written next.
        changes.borrow_and_update();
        let path = path.clone();
        let written =
            tokio::task::spawn_blocking(move || snapshot::write(&path, &inv, stamp)).await;
        match written {
            Ok(Ok(())) => tracing::debug!(
                version = stamp.version,
                revision = stamp.revision,
                "snapshot written"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the inventory snapshot"),
            Err(_) => {}
        }
    }
}
