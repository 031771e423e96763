//! The Redis commands and scripts behind the data model in `keys`: reading a
//! version whole, polling for changes, writing a version, the atomic switch
//! and the atomic edit. Everything that must not interleave with another
//! client runs as one Lua script or one MULTI/EXEC.

use std::sync::OnceLock;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use super::buckets;
use super::keys::{number_bucket, queue_bucket, queue_line_key, Keys};
use crate::inventory::snapshot::Stamp;
use crate::inventory::{EncodedEdit, Inventory};

/// Edits kept per version for instances that follow by replaying them; an
/// instance further behind reads the version whole.
pub const LOG_KEEP: usize = 1000;

/// A version's keys live this long while being written: a push that dies
/// half-way leaves nothing behind for long. The switch makes them permanent.
const STAGING_TTL_SECS: i64 = 3600;

/// Buckets per HSET in a push (a number bucket of a million-number
/// inventory is about 14 kB).
const CHUNK: usize = 64;

/// KEYS: current, log of the caller's version. ARGV: caller's version and
/// revision. Returns {} for an empty store, else {version, revision, edits…}
/// where the edits (revision-ordered log entries) are included only when
/// the caller is on the same version and the log still covers the gap.
const POLL: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'version', 'revision')
if not cur[1] then return {} end
local v, r = tonumber(cur[1]), tonumber(cur[2] or '0')
local out = {v, r}
local have = tonumber(ARGV[2])
if v == tonumber(ARGV[1]) and r > have then
  local need = r - have
  if redis.call('LLEN', KEYS[2]) >= need then
    local entries = redis.call('LRANGE', KEYS[2], -need, -1)
    for i = 1, #entries do out[#out + 1] = entries[i] end
  end
end
return out
"#;

/// KEYS: current, queues, numbers, log (all of the expected version).
/// ARGV: prefix, expected version, expected revision, operation, key, row,
/// log length kept, now, bucket, line key (the key as its line starts).
/// Applies the edit only if the store is still at the expected version and
/// revision (the edit was checked against exactly that inventory): rewrites
/// the one bucket that holds the key, dropping every line of the key and
/// appending its new one. Returns {1, version, revision} or {0, version,
/// revision}.
const EDIT: &str = r#"
local function without(s, head)
  local t, pat, found = '\n' .. s, '\n' .. head, false
  local i = string.find(t, pat, 1, true)
  while i do
    found = true
    local e = string.find(t, '\n', i + 1, true)
    if e then t = string.sub(t, 1, i) .. string.sub(t, e + 1) else t = string.sub(t, 1, i) end
    i = string.find(t, pat, i, true)
  end
  t = string.sub(t, 2)
  if t ~= '' and string.sub(t, -1) ~= '\n' then t = t .. '\n' end
  return t, found
end
local cur = redis.call('HMGET', KEYS[1], 'version', 'revision')
local v, r = tonumber(cur[1] or '0'), tonumber(cur[2] or '0')
if v ~= tonumber(ARGV[2]) or r ~= tonumber(ARGV[3]) then return {0, v, r} end
local op, key, row, bucket, head = ARGV[4], ARGV[5], ARGV[6], ARGV[9], ARGV[10] .. ','
local hash
if op == 'put_queue' or op == 'delete_queue' then hash = KEYS[2]
elseif op == 'claim_number' or op == 'release_number' then hash = KEYS[3]
else return redis.error_reply('unknown edit operation ' .. op) end
local old = redis.call('HGET', hash, bucket) or ''
local rest, found = without(old, head)
local new = rest
if op == 'put_queue' or (op == 'claim_number' and not found) then
  new = rest .. head .. row .. '\n'
elseif op == 'claim_number' then
  new = old
end
if new == '' then redis.call('HDEL', hash, bucket)
elseif new ~= old then redis.call('HSET', hash, bucket, new) end
r = r + 1
redis.call('HSET', KEYS[1], 'version', v, 'revision', r, 'updated_at', ARGV[8])
redis.call('RPUSH', KEYS[4], r .. '\t' .. op .. '\t' .. key .. '\t' .. row)
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[7]), -1)
redis.call('PUBLISH', ARGV[1] .. 'changes', v .. ':' .. r)
return {1, v, r}
"#;

/// KEYS: current, queues and numbers of the new version. ARGV: prefix, new
/// version, queue bucket count, number bucket count, "1" to switch only into an empty
/// store (a restore), now. Checks the new version is complete, makes it
/// current, deletes the previous one and announces it. Returns
/// {1, previous version or ""} or {0, why}.
const SWITCH: &str = r#"
if redis.call('HLEN', KEYS[2]) ~= tonumber(ARGV[3])
   or redis.call('HLEN', KEYS[3]) ~= tonumber(ARGV[4]) then
  return {0, 'incomplete'}
end
local old = redis.call('HGET', KEYS[1], 'version')
if ARGV[5] == '1' and old then
  redis.call('UNLINK', KEYS[2], KEYS[3])
  return {0, 'taken'}
end
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'revision', 0, 'updated_at', ARGV[6])
if old and old ~= ARGV[2] then
  local b = ARGV[1] .. 'v' .. old .. ':'
  redis.call('UNLINK', b .. 'queues', b .. 'numbers', b .. 'log')
end
redis.call('PUBLISH', ARGV[1] .. 'changes', ARGV[2] .. ':0')
return {1, old or ''}
"#;

fn script(cell: &'static OnceLock<Script>, code: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(code))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the store holds now, and the edits since `have` when they can be
/// replayed.
#[derive(Debug)]
pub struct Polled {
    /// `None`: nothing was ever pushed or edited (or Redis lost its data).
    pub stamp: Option<Stamp>,
    /// Log entries after `have`, oldest first; empty when not replayable.
    pub entries: Vec<String>,
}

pub async fn poll(conn: &mut ConnectionManager, keys: &Keys, have: Stamp) -> RedisResult<Polled> {
    static CELL: OnceLock<Script> = OnceLock::new();
    let reply: Vec<redis::Value> = script(&CELL, POLL)
        .key(keys.current())
        .key(keys.log(have.version))
        .arg(have.version)
        .arg(have.revision)
        .invoke_async(conn)
        .await?;
    if reply.len() < 2 {
        return Ok(Polled {
            stamp: None,
            entries: Vec::new(),
        });
    }
    let stamp = Stamp {
        version: redis::from_redis_value(&reply[0])?,
        revision: redis::from_redis_value(&reply[1])?,
    };
    let entries = reply[2..]
        .iter()
        .map(redis::from_redis_value)
        .collect::<RedisResult<Vec<String>>>()?;
    Ok(Polled {
        stamp: Some(stamp),
        entries,
    })
}

/// One version read whole and consistently.
#[derive(Debug)]
pub struct Whole {
    pub stamp: Stamp,
    /// Bucket → queue lines.
    pub queues: HashEntries,
    /// Bucket → number lines.
    pub numbers: HashEntries,
}

/// `current`'s version and revision, the queues hash, the numbers hash.
type WholeReply = ((Option<u64>, Option<u64>), redis::Value, redis::Value);

/// Reads `version` in one MULTI/EXEC with `current`, so no edit can land
/// between the parts; `None` when `current` no longer names that version (a
/// push switched meanwhile: the caller polls again).
pub async fn read_whole(
    conn: &mut ConnectionManager,
    keys: &Keys,
    version: u64,
) -> RedisResult<Option<Whole>> {
    let (cur, queues, numbers): WholeReply = redis::pipe()
        .atomic()
        .cmd("HMGET")
        .arg(keys.current())
        .arg("version")
        .arg("revision")
        .cmd("HGETALL")
        .arg(keys.queues(version))
        .cmd("HGETALL")
        .arg(keys.numbers(version))
        .query_async(conn)
        .await?;
    let (v, r) = cur;
    if v.unwrap_or(0) != version {
        return Ok(None);
    }
    Ok(Some(Whole {
        stamp: Stamp {
            version,
            revision: r.unwrap_or(0),
        },
        queues: HashEntries::from_reply(queues)?,
        numbers: HashEntries::from_reply(numbers)?,
    }))
}

/// The fields and values of a hash as `HGETALL` answered, kept in the
/// reply's own buffers: no copy and no map (the load splits the buckets
/// into entries, checks and indexes them anyway).
#[derive(Debug, Default)]
pub struct HashEntries {
    /// field, value, field, value, … (bulk strings, checked in `from_reply`).
    flat: Vec<redis::Value>,
    /// Lines that are not UTF-8, with their field (shown lossily): the load
    /// refuses them.
    not_utf8: Vec<(String, String)>,
}

impl HashEntries {
    /// Takes the reply apart: a flat array (RESP2) or a map (RESP3) of bulk
    /// strings; anything else is a type error, as for any other reply.
    fn from_reply(reply: redis::Value) -> RedisResult<HashEntries> {
        use redis::Value;
        let flat = match reply {
            Value::Nil => Vec::new(),
            Value::Array(items) if items.len() % 2 == 0 => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(f, v)| [f, v]).collect(),
            other => return Err(not_a_hash(&other)),
        };
        let mut not_utf8 = Vec::new();
        for pair in flat.chunks_exact(2) {
            let (Value::BulkString(f), Value::BulkString(v)) = (&pair[0], &pair[1]) else {
                return Err(not_a_hash(&pair[0]));
            };
            let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            if std::str::from_utf8(f).is_err() {
                not_utf8.push((lossy(f), String::new()));
            } else if std::str::from_utf8(v).is_err() {
                let bad = v.split(|&b| b == b'\n');
                let bad = bad.filter(|line| std::str::from_utf8(line).is_err());
                not_utf8.extend(bad.map(|line| (lossy(f), lossy(line))));
            }
        }
        Ok(HashEntries { flat, not_utf8 })
    }

    /// The entries as (field, value); one that is not UTF-8 (listed by
    /// [`not_utf8`](Self::not_utf8), which the caller refuses) reads as
    /// empty strings.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.flat
            .chunks_exact(2)
            .map(|p| (bulk_text(&p[0]), bulk_text(&p[1])))
    }

    /// Fields, and lines of values, that are not UTF-8, shown lossily.
    pub fn not_utf8(&self) -> &[(String, String)] {
        &self.not_utf8
    }
}

fn bulk_text(v: &redis::Value) -> &str {
    match v {
        redis::Value::BulkString(b) => std::str::from_utf8(b).unwrap_or(""),
        _ => "",
    }
}

fn not_a_hash(got: &redis::Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "HGETALL did not answer field/value strings",
        format!("{got:?}").chars().take(80).collect::<String>(),
    ))
}

/// Writes `inventory` as a new version (not yet current); returns it and
/// how many buckets of queues and of numbers it wrote (what the switch
/// checks).
pub async fn write_version(
    conn: &mut ConnectionManager,
    keys: &Keys,
    inventory: &Inventory,
) -> RedisResult<Written> {
    let version: u64 = redis::cmd("INCR")
        .arg(keys.next_version())
        .query_async(conn)
        .await?;
    let queues = buckets::queue_buckets(inventory);
    let numbers = buckets::number_buckets(inventory);
    let mut pipe = redis::pipe();
    for (key, hash) in [
        (keys.queues(version), &queues),
        (keys.numbers(version), &numbers),
    ] {
        for (i, chunk) in hash.chunks(CHUNK).enumerate() {
            pipe.hset_multiple(&key, chunk).ignore();
            if i == 0 {
                pipe.expire(&key, STAGING_TTL_SECS).ignore();
            }
        }
    }
    let () = pipe.query_async(conn).await?;
    Ok(Written {
        version,
        queue_buckets: queues.len(),
        number_buckets: numbers.len(),
    })
}

/// A version written and not yet switched to.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub version: u64,
    pub queue_buckets: usize,
    pub number_buckets: usize,
}

/// How a switch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Switched {
    /// `version` is current; the previous one (if any) is deleted.
    Done { previous: Option<u64> },
    /// A restore found the store no longer empty; its version was dropped.
    Taken,
    /// The version's keys do not hold what was written (expired, deleted).
    Incomplete,
}

pub async fn switch(
    conn: &mut ConnectionManager,
    keys: &Keys,
    written: Written,
    only_into_empty: bool,
) -> RedisResult<Switched> {
    static CELL: OnceLock<Script> = OnceLock::new();
    let version = written.version;
    let (ok, detail): (u8, String) = script(&CELL, SWITCH)
        .key(keys.current())
        .key(keys.queues(version))
        .key(keys.numbers(version))
        .arg(keys.prefix())
        .arg(version)
        .arg(written.queue_buckets)
        .arg(written.number_buckets)
        .arg(if only_into_empty { "1" } else { "0" })
        .arg(now_secs())
        .invoke_async(conn)
        .await?;
    Ok(match (ok, detail.as_str()) {
        (1, previous) => Switched::Done {
            previous: previous.parse().ok(),
        },
        (_, "taken") => Switched::Taken,
        _ => Switched::Incomplete,
    })
}

/// Applies one encoded edit if the store is still at `expected`; returns the
/// store's stamp afterwards and whether the edit was applied.
pub async fn edit(
    conn: &mut ConnectionManager,
    keys: &Keys,
    expected: Stamp,
    encoded: &EncodedEdit,
) -> RedisResult<(bool, Stamp)> {
    static CELL: OnceLock<Script> = OnceLock::new();
    let v = expected.version;
    let (bucket, line_key) = match encoded.op {
        "put_queue" | "delete_queue" => (
            queue_bucket(&encoded.key).to_vec(),
            queue_line_key(&encoded.key).into_owned(),
        ),
        // An encoded number is E.164 text; anything else names no bucket and
        // finds no line.
        _ => (
            number_bucket(&encoded.key).map_or_else(Vec::new, |b| b.to_vec()),
            encoded.key.clone(),
        ),
    };
    let (ok, version, revision): (u8, u64, u64) = script(&CELL, EDIT)
        .key(keys.current())
        .key(keys.queues(v))
        .key(keys.numbers(v))
        .key(keys.log(v))
        .arg(keys.prefix())
        .arg(v)
        .arg(expected.revision)
        .arg(encoded.op)
        .arg(&encoded.key)
        .arg(&encoded.row)
        .arg(LOG_KEEP)
        .arg(now_secs())
        .arg(bucket)
        .arg(line_key)
        .invoke_async(conn)
        .await?;
    Ok((ok == 1, Stamp { version, revision }))
}

/// One entry of the edit log, split into its fields.
pub struct LogEntry<'a> {
    pub revision: u64,
    /// The fields of [`EncodedEdit`], as read back.
    pub op: &'a str,
    pub key: &'a str,
    pub row: &'a str,
}

/// Splits a log entry (tab-separated revision, operation, key, row).
pub fn parse_entry(entry: &str) -> Option<LogEntry<'_>> {
    let mut parts = entry.splitn(4, '\t');
    Some(LogEntry {
        revision: parts.next()?.parse().ok()?,
        op: parts.next()?,
        key: parts.next()?,
        row: parts.next().unwrap_or(""),
    })
}
