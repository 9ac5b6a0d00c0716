//! The L2 store: opaque values in Redis (single server or Cluster), with tag indexes for purge.
//!
//! # Design
//! - Entry `<namespace>:e:<key>` = one format byte + payload (`codec`), written with `SET .. EX`.
//! - For each tag given on `put` (tenant, model, schema), the sorted set
//!   `<namespace>:i:<dimension>:<value>` gets the key as member, scored by the entry's expiry
//!   (Unix ms). The same pipeline trims members that have expired (`ZREMRANGEBYSCORE -inf now`)
//!   and extends the set's own TTL to cover its longest-lived member (`EXPIRE NX` + `EXPIRE GT`,
//!   Redis >= 7.0). Indexes therefore stay bounded by the live entries and vanish with them.
//! - `purge` walks the index in batches: `ZRANGE` members, `UNLINK` their entries, `ZREM` the
//!   members, until the index is empty. It returns how many entries existed and were removed.
//!
//! # Redis Cluster
//! A cluster pipeline must stay in one slot, and nothing here needs multi-key atomicity, so no
//! hash tags are used: entries spread over all slots by their full key, and each index key is
//! its own slot (a `{idx}` tag would put every index write of the fleet on one node). `put` sends
//! one pipeline per index key, concurrently, then the `SET`, so an entry is never stored
//! unindexed (a failed `SET` leaves at most a stale member, which purge tolerates). `UNLINK` of a
//! batch is split per slot by the cluster client. On a single server, the same commands go out
//! as one pipeline.
//!
//! # Known, accepted races
//! An entry re-stored with different tags stays in its old indexes until it expires, so purging
//! the old tag also removes it. A `put` landing between a purge's `UNLINK` and `ZREM` of the
//! same key leaves that new entry unindexed; it still expires by TTL.
//!
//! # Failure
//! Every Redis call runs under the per-operation timeout; errors are classified so the caller can
//! tell transient trouble (Redis down or slow: fail open) from bad input (a caller bug).
mod codec;
mod conn;
pub mod layout;
pub(crate) mod tls;

pub use codec::{CodecError, TAG_RAW, TAG_ZSTD};
pub use conn::{connect_timeout, Target};
pub use layout::{Dimension, InvalidInput};
pub use tls::{TlsError, TlsOptions, TlsPart};

use conn::{Conn, Handle};
use futures::future::try_join_all;
use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, Pipeline};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// Entries removed per purge round trip.
const PURGE_BATCH: usize = 500;

/// Limits and defaults the store enforces for every caller.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Bound on every single Redis call (not on a whole multi-batch purge).
    pub op_timeout: Duration,
    /// Largest value accepted, before compression; also caps decompression.
    pub max_value_bytes: usize,
}

/// Tags recorded with an entry, each usable to purge it later.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    pub tenant: Option<String>,
    pub model: Option<String>,
    pub schema: Option<String>,
}

impl Tags {
    fn iter(&self) -> impl Iterator<Item = (Dimension, &str)> {
        [(Dimension::Tenant, &self.tenant), (Dimension::Model, &self.model), (Dimension::Schema, &self.schema)]
            .into_iter()
            .filter_map(|(d, v)| v.as_deref().map(|v| (d, v)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOptions {
    pub ttl: Duration,
    /// Values at least this long are compressed (when that shrinks them).
    pub compress_min_bytes: usize,
    pub tags: Tags,
}

/// Which entries to purge: all stored with this tag value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purge {
    Tenant(String),
    Model(String),
    Schema(String),
}

impl Purge {
    pub fn dimension(&self) -> Dimension {
        match self {
            Purge::Tenant(_) => Dimension::Tenant,
            Purge::Model(_) => Dimension::Model,
            Purge::Schema(_) => Dimension::Schema,
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Purge::Tenant(v) | Purge::Model(v) | Purge::Schema(v) => v,
        }
    }
}

/// A value read back, with its stored size (to observe the compression ratio).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub value: Vec<u8>,
    pub stored_bytes: usize,
    /// Put here from L3 (`put_from_l3`): its stored_at is older than its time in Redis.
    pub from_l3: bool,
}

/// What `put` wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub stored_bytes: usize,
    pub compressed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bad key, namespace, tag or TTL: the caller's mistake, retrying will not help.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("value is {size} bytes, larger than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Redis did not answer within the per-operation timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis refused, dropped the connection, or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stored bytes are not a value this service wrote.
    #[error(transparent)]
    Corrupt(#[from] CodecError),
}

impl StoreError {
    /// Whether the same call may succeed later (Redis trouble) rather than never (bad input).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Timeout(_) | StoreError::Redis(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Cheap to clone: clones share one multiplexed connection (per node, in a cluster).
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    options: StoreOptions,
}

impl Store {
    /// Builds the store without contacting Redis (connections are made on first use and remade
    /// after failures), so the service can start while Redis is down. Fails only on bad URLs.
    /// `rediss://` URLs verify Redis' certificate against the system's roots.
    pub fn connect(target: &Target, options: StoreOptions) -> Result<Store> {
        Store::connect_with_tls(target, &TlsOptions::default(), options)
    }

    /// `connect` with a private CA and/or a client certificate; these need `rediss://` URLs
    /// only (else an error).
    pub fn connect_with_tls(target: &Target, tls: &TlsOptions, options: StoreOptions) -> Result<Store> {
        Ok(Store { conn: Conn::new(target, tls, options.op_timeout)?, options })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// `PING` (every primary, in a cluster) within the timeout.
    pub async fn ping(&self) -> Result<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Fetched>> {
        layout::validate_name("namespace", namespace)?;
        layout::validate_name("key", key)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(layout::entry_key(namespace, key));
        let Some(stored) = self.query::<Option<Vec<u8>>>(&cmd).await? else { return Ok(None) };
        let (value, from_l3) = codec::decode_marked(&stored, self.options.max_value_bytes)?;
        Ok(Some(Fetched { value, stored_bytes: stored.len(), from_l3 }))
    }

    pub async fn put(&self, namespace: &str, key: &str, value: &[u8], options: &PutOptions) -> Result<Stored> {
        self.put_at(namespace, key, value, options, SystemTime::now()).await
    }

    /// `put` of a value that comes from L3 (promotion, refill): marked, so its lookups say so
    /// (`Fetched::from_l3`).
    pub async fn put_from_l3(&self, namespace: &str, key: &str, value: &[u8], options: &PutOptions) -> Result<Stored> {
        self.put_marked(namespace, key, value, options, SystemTime::now(), true).await
    }

    /// `put` with the clock passed in (index scores are expiry times).
    pub async fn put_at(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        options: &PutOptions,
        now: SystemTime,
    ) -> Result<Stored> {
        self.put_marked(namespace, key, value, options, now, false).await
    }

    async fn put_marked(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        options: &PutOptions,
        now: SystemTime,
        from_l3: bool,
    ) -> Result<Stored> {
        layout::validate_name("namespace", namespace)?;
        layout::validate_name("key", key)?;
        let ttl_seconds = options.ttl.as_secs();
        layout::validate_ttl(ttl_seconds)?;
        for (dimension, tag) in options.tags.iter() {
            layout::validate_tag(dimension, tag)?;
        }
        if value.len() > self.options.max_value_bytes {
            return Err(StoreError::TooLarge { size: value.len(), max: self.options.max_value_bytes });
        }
        let (stored, compressed) = codec::encode_marked(value, options.compress_min_bytes, from_l3);
        let stored_bytes = stored.len();
        let expiry = layout::expiry_score(now, Duration::from_secs(ttl_seconds));
        let index_pipes: Vec<Pipeline> = options
            .tags
            .iter()
            .map(|(dimension, tag)| {
                index_pipeline(&layout::index_key(namespace, dimension, tag), key, expiry, now, ttl_seconds)
            })
            .collect();
        let mut set = redis::cmd("SET");
        set.arg(layout::entry_key(namespace, key)).arg(stored).arg("EX").arg(ttl_seconds);
        match self.conn.handle() {
            Handle::Single(_) => {
                // One round trip; the indexes come first, as in cluster mode.
                let mut pipe = redis::pipe();
                for cmd in index_pipes.iter().flat_map(|p| p.cmd_iter()) {
                    pipe.add_command(cmd.clone()).ignore();
                }
                pipe.add_command(set).ignore();
                self.query_pipe(&pipe).await?;
            }
            Handle::Cluster(_) => {
                try_join_all(index_pipes.iter().map(|p| self.query_pipe(p))).await?;
                self.query::<()>(&set).await?;
            }
        }
        Ok(Stored { stored_bytes, compressed })
    }

    /// Sets `key` if Redis does not hold it (`SET NX`, no expiry); true when it was absent,
    /// i.e. Redis was emptied since the last call (or this is the first).
    pub async fn set_sentinel(&self, key: &str) -> Result<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX");
        Ok(self.query::<Option<String>>(&cmd).await?.is_some())
    }

    /// Removes an entry; true when it existed. Index members are left to expire or be purged.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<bool> {
        layout::validate_name("namespace", namespace)?;
        layout::validate_name("key", key)?;
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(layout::entry_key(namespace, key));
        Ok(self.query::<u64>(&cmd).await? > 0)
    }

    /// Deletes every entry of `namespace` stored with the tag; returns how many existed.
    pub async fn purge(&self, namespace: &str, purge: &Purge) -> Result<u64> {
        layout::validate_name("namespace", namespace)?;
        layout::validate_tag(purge.dimension(), purge.value())?;
        let index = layout::index_key(namespace, purge.dimension(), purge.value());
        let mut removed = 0;
        // Bounded by what the index held at the start: under constant writes with the same tag
        // a purge would otherwise never end. Entries stored meanwhile are left for the next one.
        let mut zcard = redis::cmd("ZCARD");
        zcard.arg(&index);
        let rounds = self.query::<u64>(&zcard).await? / PURGE_BATCH as u64 + 1;
        for _ in 0..rounds {
            let mut range = redis::cmd("ZRANGE");
            range.arg(&index).arg(0).arg(PURGE_BATCH - 1);
            let members: Vec<String> = self.query(&range).await?;
            if members.is_empty() {
                return Ok(removed);
            }
            let mut unlink = redis::cmd("UNLINK");
            for member in &members {
                unlink.arg(layout::entry_key(namespace, member));
            }
            removed += self.query::<u64>(&unlink).await?;
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(&index).arg(&members);
            self.query::<u64>(&zrem).await?;
        }
        Ok(removed)
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut handle = self.conn.handle();
        let value = self.bounded(handle.req_packed_command(cmd)).await?;
        Ok(T::from_redis_value(value).map_err(redis::RedisError::from)?)
    }

    async fn query_pipe(&self, pipe: &Pipeline) -> Result<()> {
        let mut handle = self.conn.handle();
        self.bounded(pipe.query_async::<()>(&mut handle)).await
    }

    /// The per-operation timeout; a failure that points at the connection lets it heal itself
    /// (rate-limited).
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let timeout = self.options.op_timeout;
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => StoreError::Redis(e),
            Err(_) => StoreError::Timeout(timeout),
        };
        if let StoreError::Redis(e) = &result {
            if !conn::connection_suspect(e) {
                return Err(result);
            }
        }
        self.conn.heal();
        Err(result)
    }
}

/// Adds `key` to one index, trims expired members, and keeps the index alive as long as its
/// longest-lived member: `EXPIRE NX` sets a TTL on a new set, `EXPIRE GT` only ever extends it.
fn index_pipeline(index: &str, key: &str, expiry_ms: u64, now: SystemTime, ttl_seconds: u64) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD").arg(index).arg(expiry_ms).arg(key).ignore();
    pipe.cmd("ZREMRANGEBYSCORE").arg(index).arg("-inf").arg(layout::unix_ms(now)).ignore();
    pipe.cmd("EXPIRE").arg(index).arg(ttl_seconds).arg("NX").ignore();
    pipe.cmd("EXPIRE").arg(index).arg(ttl_seconds).arg("GT").ignore();
    pipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_pipeline_trims_with_now_and_extends_ttl() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(5_000);
        let pipe = index_pipeline("ns:i:tenant:t", "k", 65_000, now, 60);
        let cmds: Vec<Vec<u8>> = pipe.cmd_iter().map(|c| c.get_packed_command()).collect();
        let text = |i: usize| String::from_utf8_lossy(&cmds[i]).replace("\r\n", " ");
        assert!(text(0).contains("ZADD $13 ns:i:tenant:t $5 65000 $1 k"), "{}", text(0));
        assert!(text(1).contains("ZREMRANGEBYSCORE $13 ns:i:tenant:t $4 -inf $4 5000"), "{}", text(1));
        assert!(text(2).ends_with("$2 60 $2 NX "), "{}", text(2));
        assert!(text(3).ends_with("$2 60 $2 GT "), "{}", text(3));
    }

    #[test]
    fn tags_iterate_in_fixed_order_skipping_absent_ones() {
        let tags = Tags { tenant: Some("t".into()), model: None, schema: Some("s".into()) };
        assert_eq!(tags.iter().collect::<Vec<_>>(), vec![(Dimension::Tenant, "t"), (Dimension::Schema, "s")]);
    }

    #[test]
    fn only_redis_trouble_is_transient() {
        assert!(StoreError::Timeout(Duration::from_millis(1)).is_transient());
        assert!(!StoreError::TooLarge { size: 2, max: 1 }.is_transient());
        assert!(!StoreError::Corrupt(CodecError::Empty).is_transient());
    }
}
