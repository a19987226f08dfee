//! The broker protocol: how tasks and outcomes travel through Redis Streams, shared by the
//! coordinator's `redis` backend and `worker --broker`.
//!
//! Keys (all under `workpool:`):
//! - `workpool:tasks`: one stream for every run. Each entry is one batch ([`TaskEntry`]),
//!   read through the consumer group `workers`, so each entry goes to one worker at a time.
//! - `workpool:run:{id}`: the run's settings ([`RunSpec`]). While this key exists the run
//!   is live; workers skip (and acknowledge) entries of runs that are gone.
//! - `workpool:run:{id}:results`: the run's outcomes ([`OutcomeEntry`]), read by its
//!   coordinator alone, which trims what it has read.
//!
//! Every entry has one field, `f`, holding a bincode frame ([`crate::codec`]). Delivery is
//! at least once: a worker publishes a batch's outcomes and acknowledges the entry in one
//! atomic script, and an entry whose worker died is claimed again by another after its
//! lease, so the coordinator de-duplicates by task and attempt.

use std::fmt;
use std::time::Duration;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::{Context, Outcome, Task};

/// Bumped whenever an entry's layout changes; it leads every [`TaskEntry`] so that a
/// worker of another build can recognise an entry it must not run.
pub const BROKER_PROTOCOL: u32 = 2;

pub const TASKS_STREAM: &str = "workpool:tasks";
pub const GROUP: &str = "workers";
const FIELD: &str = "f";

/// The key of a run's settings.
pub fn spec_key(run: &str) -> String {
    format!("workpool:run:{run}")
}

/// The stream of a run's outcomes.
pub fn results_key(run: &str) -> String {
    format!("workpool:run:{run}:results")
}

/// Which of the coordinator's batches an outcome answers: the scheduler's slot and its
/// generation (a replaced slot's late outcomes are ignored), and the coordinator's run
/// number within its pool (a previous run's late duplicates are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub slot: u32,
    pub generation: u64,
    pub epoch: u64,
}

/// One entry of the tasks stream: a batch of one run, run in order by one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEntry {
    pub protocol: u32,
    pub run: String,
    pub route: Route,
    pub tasks: Vec<Task>,
}

/// [`TaskEntry`] by reference, for publishing a batch without copying it (same frame).
#[derive(Debug, Serialize)]
pub struct TaskEntryRef<'a> {
    pub protocol: u32,
    pub run: &'a str,
    pub route: Route,
    pub tasks: &'a [Task],
}

/// One entry of a run's results stream: the outcomes of one batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEntry {
    pub route: Route,
    /// The consumer name of the worker that ran the batch.
    pub consumer: String,
    /// Its process id (on its own host).
    pub pid: u32,
    pub outcomes: Vec<Outcome>,
}

/// [`OutcomeEntry`] by reference, for publishing without copying the outcomes (same frame).
#[derive(Debug, Serialize)]
pub struct OutcomeEntryRef<'a> {
    pub route: Route,
    pub consumer: &'a str,
    pub pid: u32,
    pub outcomes: &'a [Outcome],
}

/// A run's settings, written once by its coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub protocol: u32,
    pub context: Context,
    /// `--timeout`: enforced by the worker, the only one that knows when a task started.
    pub timeout_ms: Option<u64>,
}

/// Something that went wrong talking to the broker. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid broker URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the broker at {url} refused the credentials: {reason}")]
    Auth { url: String, reason: String },
    #[error("broker command {command} failed: {reason}")]
    Command {
        command: &'static str,
        reason: String,
        /// The server's error code (`NOGROUP`, `WRONGTYPE`...), if it gave one.
        code: Option<String>,
    },
    #[error("broker entry {id}: {source}")]
    Frame {
        id: String,
        #[source]
        source: CodecError,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl BrokerError {
    /// Whether the connection itself failed (as opposed to a command being refused), so a
    /// fresh connection may succeed.
    pub fn is_connection(&self) -> bool {
        matches!(self, BrokerError::Unreachable { .. })
    }

    /// Whether the tasks stream's consumer group is missing: the broker restarted without
    /// persistence (or someone deleted the stream), and [`ensure_group`] makes it again.
    pub fn is_missing_group(&self) -> bool {
        matches!(self, BrokerError::Command { code: Some(code), .. } if code == "NOGROUP")
    }
}

/// A PEM file of the certificate authority a `rediss://` broker's certificate is checked
/// against, instead of the system's trust store.
pub const CA_ENV: &str = "WORKPOOL_BROKER_CA";

/// A `redis://` (or `rediss://`, TLS) URL, shown everywhere with its password replaced by `***`.
#[derive(Clone)]
pub struct BrokerUrl {
    url: String,
    client: redis::Client,
    password: Option<String>,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerError> {
        let shown = redact(url);
        let bad = |reason: &str| BrokerError::Url {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        let client = if url.starts_with("rediss://") {
            // One process-wide choice; a second call finds it made, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
            match std::env::var_os(CA_ENV).filter(|v| !v.is_empty()) {
                Some(path) => {
                    let pem = std::fs::read(&path).map_err(|e| {
                        bad(&format!(
                            "cannot read the CA certificate {} (${CA_ENV}): {e}",
                            std::path::Path::new(&path).display()
                        ))
                    })?;
                    let certs = redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    };
                    redis::Client::build_with_tls(url, certs)
                }
                None => redis::Client::open(url),
            }
        } else if url.starts_with("redis://") {
            redis::Client::open(url)
        } else {
            return Err(bad("it must start with redis:// (or rediss:// for TLS)"));
        };
        let client = client.map_err(|e| bad(&scrub(&e.to_string(), None)))?;
        let password = client.get_connection_info().redis_settings().password();
        let password = password.map(str::to_string);
        Ok(BrokerUrl {
            url: url.to_string(),
            client,
            password,
        })
    }

    /// The URL with its password hidden.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// Connects, authenticates and checks the server answers, within `timeout`; the
    /// connection's reads and writes then time out after `io_timeout`, so a broker that
    /// stops answering is an error, not a hang.
    pub fn connect(
        &self,
        timeout: Duration,
        io_timeout: Option<Duration>,
    ) -> Result<redis::Connection, BrokerError> {
        let fail = |e: &redis::RedisError| self.connect_error(e, timeout);
        let mut con = self
            .client
            .get_connection_with_timeout(timeout)
            .map_err(|e| fail(&e))?;
        // The first answer must come within `timeout` too: a port that accepts and never
        // answers is not a broker.
        con.set_read_timeout(Some(timeout))
            .and_then(|()| con.set_write_timeout(Some(timeout)))
            .map_err(|e| fail(&e))?;
        redis::cmd("PING")
            .query::<()>(&mut con)
            .map_err(|e| fail(&e))?;
        con.set_read_timeout(io_timeout)
            .and_then(|()| con.set_write_timeout(io_timeout))
            .map_err(|e| fail(&e))?;
        Ok(con)
    }

    fn connect_error(&self, err: &redis::RedisError, timeout: Duration) -> BrokerError {
        let mut reason = scrub(&err.to_string(), self.password.as_deref());
        let url = self.redacted();
        let auth = matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
            || err.kind() == redis::ErrorKind::AuthenticationFailed;
        if auth {
            return BrokerError::Auth { url, reason };
        }
        if err.is_timeout() {
            reason = format!("no answer within {timeout:?} ({reason})");
        } else if !err.is_connection_refusal()
            && (reason.contains("end of file") || reason.contains("reset by peer"))
        {
            reason.push_str(
                "; the server closed the connection at once, as a Redis in protected mode \
                 does to clients of other hosts (see `bind`, `requirepass` and \
                 `protected-mode` in redis.conf)",
            );
        }
        BrokerError::Unreachable { url, reason }
    }

    /// Turns a command's error into a [`BrokerError`] that never shows the password.
    pub fn command_error(&self, command: &'static str, err: &redis::RedisError) -> BrokerError {
        let reason = scrub(&err.to_string(), self.password.as_deref());
        if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
            BrokerError::Unreachable {
                url: self.redacted(),
                reason: format!("{command}: {reason}"),
            }
        } else {
            let code = err.code().map(str::to_string);
            BrokerError::Command {
                command,
                reason,
                code,
            }
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.redacted())
    }
}

/// Hides the password of a `scheme://[user][:password]@host...` URL.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.find(':') {
        Some(colon) => &userinfo[..colon],
        // `redis://secret@host` passes the whole userinfo as the password.
        None => "",
    };
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

/// Removes a password from a message, in case a server or library echoes it.
fn scrub(message: &str, password: Option<&str>) -> String {
    match password.filter(|p| !p.is_empty()) {
        Some(p) => message.replace(p, "***"),
        None => message.to_string(),
    }
}

/// Creates the tasks stream and its consumer group if they do not exist yet. The group
/// starts at the stream's beginning, so entries published before any worker joined are
/// still delivered.
pub fn ensure_group(url: &BrokerUrl, con: &mut redis::Connection) -> Result<(), BrokerError> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(con);
    match created {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other.map_err(|e| url.command_error("XGROUP CREATE", &e)),
    }
}

/// Appends one frame to a stream and returns the entry's id.
pub fn publish(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    stream: &str,
    frame: &[u8],
) -> Result<String, BrokerError> {
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg(FIELD)
        .arg(frame)
        .query::<String>(con)
        .map_err(|e| url.command_error("XADD", &e))
}

/// One stream entry: its id and its frame (None for an entry deleted since it was
/// delivered, which Redis reports as an id without fields).
pub type Entry = (String, Option<Vec<u8>>);

/// New entries of the tasks stream for `consumer`, waiting up to `block` for one.
pub fn read_tasks(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    consumer: &str,
    count: usize,
    block: Duration,
) -> Result<Vec<Entry>, BrokerError> {
    let reply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(count.max(1))
        .arg("BLOCK")
        .arg(block.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(TASKS_STREAM)
        .arg(">")
        .query::<Reply>(con)
        .map_err(|e| url.command_error("XREADGROUP", &e))?;
    Ok(stream_entries(&reply))
}

/// Entries of a run's results stream after `after`, waiting up to `block`; what was read
/// before is trimmed in the same round trip.
pub fn read_results(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    after: &str,
    block: Duration,
) -> Result<Vec<Entry>, BrokerError> {
    let key = results_key(run);
    let mut pipe = redis::pipe();
    if after != "0" {
        // MINID keeps entries at or after the id: the last one read stays, harmlessly.
        pipe.cmd("XTRIM").arg(&key).arg("MINID").arg(after).ignore();
    }
    pipe.cmd("XREAD")
        .arg("COUNT")
        .arg(1024)
        .arg("BLOCK")
        .arg(block.as_millis().max(1) as u64)
        .arg("STREAMS")
        .arg(&key)
        .arg(after);
    let (reply,): (Reply,) = pipe
        .query(con)
        .map_err(|e| url.command_error("XREAD", &e))?;
    Ok(stream_entries(&reply))
}

/// Claims entries that other consumers have held longer than `lease` (their worker is
/// presumably dead), continuing a scan from `cursor`. Returns the claimed entries and the
/// cursor to continue from ("0-0" once the scan has wrapped around).
pub fn reclaim(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    consumer: &str,
    lease: Duration,
    cursor: &str,
    count: usize,
) -> Result<(Vec<Entry>, String), BrokerError> {
    let reply = redis::cmd("XAUTOCLAIM")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg(consumer)
        .arg(lease.as_millis() as u64)
        .arg(cursor)
        .arg("COUNT")
        .arg(count.max(1))
        .query::<Reply>(con)
        .map_err(|e| url.command_error("XAUTOCLAIM", &e))?;
    let parts = as_array(&reply);
    let next = parts
        .first()
        .and_then(as_string)
        .unwrap_or_else(|| "0-0".into());
    let claimed = parts.get(1).map(entries_of).unwrap_or_default();
    Ok((claimed, next))
}

/// How many times an entry has been delivered, if it is still pending.
pub fn deliveries(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    id: &str,
) -> Result<Option<u64>, BrokerError> {
    let reply = redis::cmd("XPENDING")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg(id)
        .arg(id)
        .arg(1)
        .query::<Reply>(con)
        .map_err(|e| url.command_error("XPENDING", &e))?;
    Ok(as_array(&reply)
        .first()
        .and_then(|row| as_array(row).get(3).and_then(as_u64)))
}

/// How many consumers of the group have talked to the broker within `within`: a live
/// worker asks for entries every few hundred milliseconds, even when there are none.
pub fn live_consumers(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    within: Duration,
) -> Result<usize, BrokerError> {
    let reply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .query::<Reply>(con)
        .map_err(|e| url.command_error("XINFO CONSUMERS", &e))?;
    let within = within.as_millis() as u64;
    Ok(as_array(&reply)
        .iter()
        .filter(|consumer| {
            let fields = as_array(consumer);
            let idle = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(as_string).as_deref() == Some("idle"))
                .and_then(|kv| kv.get(1).and_then(as_u64));
            idle.is_some_and(|ms| ms <= within)
        })
        .count())
}

/// Renews the lease of entries this consumer is still working on (resets their idle
/// time without counting a delivery).
pub fn keep_alive(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    consumer: &str,
    ids: &[String],
) -> Result<(), BrokerError> {
    if ids.is_empty() {
        return Ok(());
    }
    redis::cmd("XCLAIM")
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
        .query::<Reply>(con)
        .map(drop)
        .map_err(|e| url.command_error("XCLAIM", &e))
}

/// Publishes a batch's outcomes to its run's results stream (only while the run is live)
/// and acknowledges and deletes the task entry, atomically: an entry is finished exactly
/// when its outcomes are out.
const FINISH_SCRIPT: &str = r"
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'f', ARGV[3])
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return 1
";

/// See [`FINISH_SCRIPT`]. An empty `frame` only acknowledges (an entry of a run that is
/// gone, or one that could not be read).
pub fn finish(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    id: &str,
    frame: &[u8],
) -> Result<(), BrokerError> {
    redis::cmd("EVAL")
        .arg(FINISH_SCRIPT)
        .arg(3)
        .arg(spec_key(run))
        .arg(results_key(run))
        .arg(TASKS_STREAM)
        .arg(GROUP)
        .arg(id)
        .arg(frame)
        .query::<i64>(con)
        .map(drop)
        .map_err(|e| url.command_error("EVAL finish", &e))
}

/// Deletes task entries nobody needs any more (a cancelled run's).
pub fn delete_entries(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    ids: &[String],
) -> Result<(), BrokerError> {
    for chunk in ids.chunks(1000) {
        redis::cmd("XDEL")
            .arg(TASKS_STREAM)
            .arg(chunk)
            .query::<i64>(con)
            .map_err(|e| url.command_error("XDEL", &e))?;
    }
    Ok(())
}

/// Writes a run's settings; from now on its entries are served.
pub fn put_spec(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    spec: &RunSpec,
) -> Result<(), BrokerError> {
    let frame = codec::encode(spec)?;
    redis::cmd("SET")
        .arg(spec_key(run))
        .arg(frame.as_slice())
        .arg("EX")
        .arg(RUN_TTL.as_secs())
        .query::<()>(con)
        .map_err(|e| url.command_error("SET", &e))
}

/// How long a run outlives its coordinator's last sign of life: a coordinator that was
/// killed leaves nothing behind for longer (its workers skip the run's entries, and its
/// results stream expires).
pub const RUN_TTL: Duration = Duration::from_secs(30);

/// Keeps a live run's keys from expiring (see [`RUN_TTL`]); call it well within the TTL.
pub fn keep_run(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
) -> Result<(), BrokerError> {
    let ttl = RUN_TTL.as_secs();
    redis::pipe()
        .cmd("EXPIRE")
        .arg(spec_key(run))
        .arg(ttl)
        .ignore()
        .cmd("EXPIRE")
        .arg(results_key(run))
        .arg(ttl)
        .ignore()
        .query::<()>(con)
        .map_err(|e| url.command_error("EXPIRE", &e))
}

/// A run's settings, or None once the run is over.
pub fn get_spec(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
) -> Result<Option<RunSpec>, BrokerError> {
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(spec_key(run))
        .query(con)
        .map_err(|e| url.command_error("GET", &e))?;
    bytes
        .map(|b| codec::decode(&b))
        .transpose()
        .map_err(Into::into)
}

/// Ends a run: workers skip its remaining entries, and its results are dropped.
pub fn drop_run(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
) -> Result<(), BrokerError> {
    redis::cmd("DEL")
        .arg(spec_key(run))
        .arg(results_key(run))
        .query::<i64>(con)
        .map(drop)
        .map_err(|e| url.command_error("DEL", &e))
}

/// Decodes an entry's frame, naming the entry if it is corrupt.
pub fn decode_entry<T: serde::de::DeserializeOwned>(
    id: &str,
    frame: &[u8],
) -> Result<T, BrokerError> {
    codec::decode(frame).map_err(|source| BrokerError::Frame {
        id: id.to_string(),
        source,
    })
}

/// The entries of an `XREAD`/`XREADGROUP` reply (one stream): `[[stream, [entry...]]]`,
/// or nil when the wait ended with nothing.
fn stream_entries(reply: &Reply) -> Vec<Entry> {
    match reply {
        Reply::Array(streams) => streams
            .iter()
            .filter_map(|s| as_array(s).get(1).map(entries_of))
            .flatten()
            .collect(),
        Reply::Map(streams) => streams.iter().flat_map(|(_, e)| entries_of(e)).collect(),
        _ => Vec::new(),
    }
}

/// `[[id, [field, value, ...]], ...]`; a deleted entry has nil fields.
fn entries_of(list: &Reply) -> Vec<Entry> {
    as_array(list)
        .iter()
        .filter_map(|entry| {
            let parts = as_array(entry);
            let id = parts.first().and_then(as_string)?;
            let fields = parts.get(1).map(as_array).unwrap_or(&[]);
            let frame = fields
                .chunks(2)
                .find(|kv| kv.first().and_then(as_string).as_deref() == Some(FIELD))
                .and_then(|kv| match kv.get(1) {
                    Some(Reply::BulkString(bytes)) => Some(bytes.clone()),
                    _ => None,
                });
            Some((id, frame))
        })
        .collect()
}

fn as_array(reply: &Reply) -> &[Reply] {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items,
        _ => &[],
    }
}

fn as_string(reply: &Reply) -> Option<String> {
    match reply {
        Reply::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Reply::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_u64(reply: &Reply) -> Option<u64> {
    match reply {
        Reply::Int(n) => u64::try_from(*n).ok(),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:hunter2@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://u:hunter2@h"), "redis://u:***@h");
        assert_eq!(redact("redis://hunter2@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
        assert_eq!(redact("not a url"), "not a url");
        assert_eq!(scrub("bad hunter2 here", Some("hunter2")), "bad *** here");
    }

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        let url = BrokerUrl::parse("redis://:s3cret@127.0.0.1:1").unwrap();
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:1");
        assert!(!format!("{url:?}").contains("s3cret"));
        let err = BrokerUrl::parse("http://:s3cret@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(BrokerUrl::parse("rediss://h").is_ok());
        assert!(BrokerUrl::parse("tcp://h").is_err());
    }

    #[test]
    fn entry_refs_encode_like_entries() {
        let route = Route {
            slot: 3,
            generation: 2,
            epoch: 1,
        };
        let tasks = vec![Task {
            index: 9,
            attempt: 1,
            input: crate::Input::Io { ms: 5 },
        }];
        let owned = TaskEntry {
            protocol: BROKER_PROTOCOL,
            run: "r".into(),
            route,
            tasks: tasks.clone(),
        };
        let borrowed = TaskEntryRef {
            protocol: BROKER_PROTOCOL,
            run: "r",
            route,
            tasks: &tasks,
        };
        let a = codec::encode(&owned).unwrap();
        let b = codec::encode(&borrowed).unwrap();
        assert_eq!(a, b);
        assert_eq!(codec::decode_prefix_u32(&a).unwrap(), BROKER_PROTOCOL);
    }

    #[test]
    fn outcome_refs_encode_like_outcomes() {
        let route = Route {
            slot: 1,
            generation: 0,
            epoch: 4,
        };
        let outcomes = vec![Outcome {
            index: 3,
            attempt: 2,
            result: Ok(crate::Value::Io { slept_ms: 5 }),
            run_us: 5000,
            trace: None,
        }];
        let owned = OutcomeEntry {
            route,
            consumer: "w".into(),
            pid: 7,
            outcomes: outcomes.clone(),
        };
        let borrowed = OutcomeEntryRef {
            route,
            consumer: "w",
            pid: 7,
            outcomes: &outcomes,
        };
        assert_eq!(
            codec::encode(&owned).unwrap(),
            codec::encode(&borrowed).unwrap()
        );
    }

    #[test]
    fn stream_replies_are_parsed() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let reply = Reply::Array(vec![Reply::Array(vec![
            bulk(TASKS_STREAM),
            Reply::Array(vec![
                Reply::Array(vec![
                    bulk("1-0"),
                    Reply::Array(vec![bulk("f"), bulk("abc")]),
                ]),
                Reply::Array(vec![bulk("2-0"), Reply::Nil]),
            ]),
        ])]);
        let entries = stream_entries(&reply);
        assert_eq!(
            entries,
            vec![("1-0".into(), Some(b"abc".to_vec())), ("2-0".into(), None)]
        );
        assert!(stream_entries(&Reply::Nil).is_empty());
    }
}
