//! Numbers and queues.
