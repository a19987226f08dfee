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
//! - `workpool:dead`: task entries a worker could not read or run (garbage, another
//!   build's, or of a run whose settings are unreadable), moved here rather than
//!   redelivered for ever; its last [`DEAD_KEEP`] entries, kept [`DEAD_TTL`].
//!
//! Every entry has one field, `f`, holding a bincode frame ([`crate::codec`]); a results
//! stream may also hold `refused` entries, a worker's plain-text word that it cannot serve
//! the run (the coordinator then fails it). The protocol number and the run id come first in
//! every task entry of every version, so that even a worker of another build can tell which run
//! it is refusing. A run's keys carry their TTL from the moment they exist. Delivery is
//! at least once: a worker publishes a batch's outcomes and acknowledges the entry in one
//! atomic script, and an entry whose worker died is claimed again by another after its
//! lease, so the coordinator de-duplicates by task and attempt.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};

use crate::codec::Frame;
use crate::codec::{self, CodecError};
use crate::protocol::RunSettings;
use crate::task::Signature;

/// Bumped whenever an entry's layout changes; it leads every [`TaskEntry`] so that a
/// worker of another build can recognise an entry it must not run.
pub const BROKER_PROTOCOL: u32 = 3;

/// The stream every run's task entries go to.
pub const TASKS_STREAM: &str = "workpool:tasks";
/// The consumer group of the workers reading [`TASKS_STREAM`].
pub const GROUP: &str = "workers";
/// Where task entries that cannot be read or run end up (see the module doc).
pub const DEAD_STREAM: &str = "workpool:dead";
/// Entries the dead-letter stream keeps (the oldest go first).
pub const DEAD_KEEP: usize = 1000;
/// How long the dead-letter stream outlives its last entry.
pub const DEAD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bytes of a dead entry's frame kept for a look (the rest is not).
const DEAD_HEAD_BYTES: usize = 256;
const FIELD: &str = "f";
const REFUSED_FIELD: &str = "refused";

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
    /// The scheduler's slot that published the batch.
    pub slot: u32,
    /// The slot's generation when it did.
    pub generation: u64,
    /// The coordinator's run number within its pool.
    pub epoch: u64,
}

/// One entry of the tasks stream: a batch of one run, run in order by one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// [`BROKER_PROTOCOL`] of the coordinator that wrote it.
    pub protocol: u32,
    /// The run it belongs to.
    pub run: String,
    /// Where its outcomes go back to.
    pub route: Route,
    /// Each task's index and attempt, in the batch's order: enough to fail the batch
    /// without knowing its task type.
    pub keys: Vec<(u64, u32)>,
    /// The encoded `Vec<Job<Input>>` of the run's task type (see [`crate::protocol::Job`]),
    /// decoded by the code serving that type.
    pub tasks: Frame,
}

/// The run a task entry belongs to, read from its leading fields only (the protocol and
/// the run, in every version): known even for an entry of another protocol version, or
/// one whose tasks are corrupt.
pub fn run_of(frame: &[u8]) -> Option<String> {
    codec::decode_prefix::<(u32, String)>(frame)
        .ok()
        .map(|(_, run)| run)
}

/// [`TaskEntry`] by reference, for publishing a batch without copying it (same frame).
#[derive(Debug, Serialize)]
pub struct TaskEntryRef<'a> {
    /// See [`TaskEntry::protocol`].
    pub protocol: u32,
    /// See [`TaskEntry::run`].
    pub run: &'a str,
    /// See [`TaskEntry::route`].
    pub route: Route,
    /// See [`TaskEntry::keys`].
    pub keys: &'a [(u64, u32)],
    /// See [`TaskEntry::tasks`].
    #[serde(with = "serde_bytes")]
    pub tasks: &'a [u8],
}

/// One entry of a run's results stream: the outcomes of one batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeEntry {
    /// The route of the batch it answers.
    pub route: Route,
    /// The consumer name of the worker that ran the batch.
    pub consumer: String,
    /// Its process id (on its own host).
    pub pid: u32,
    /// The encoded `Vec<Outcome<Output>>` of the run's task type.
    pub outcomes: Frame,
}

/// [`OutcomeEntry`] by reference, for publishing without copying the outcomes (same frame).
#[derive(Debug, Serialize)]
pub struct OutcomeEntryRef<'a> {
    /// See [`OutcomeEntry::route`].
    pub route: Route,
    /// See [`OutcomeEntry::consumer`].
    pub consumer: &'a str,
    /// See [`OutcomeEntry::pid`].
    pub pid: u32,
    /// See [`OutcomeEntry::outcomes`].
    #[serde(with = "serde_bytes")]
    pub outcomes: &'a [u8],
}

/// A run's settings, written once by its coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// [`BROKER_PROTOCOL`] of the coordinator that wrote it.
    pub protocol: u32,
    /// The run's task type, as its coordinator's build has it.
    pub task: Signature,
    /// The encoded task value every task of the run is run with.
    pub task_value: Frame,
    /// The pool's settings of the run.
    pub settings: RunSettings,
    /// `--timeout`: enforced by the worker, the only one that knows when a task started.
    pub timeout_ms: Option<u64>,
}

/// Something that went wrong talking to the broker. Never carries the password.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // The fields say what the messages say.
pub enum BrokerError {
    /// The URL cannot be used.
    #[error("invalid broker URL {url}: {reason}")]
    Url { url: String, reason: String },
    /// No connection.
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The password or user was refused.
    #[error("the broker at {url} refused the credentials: {reason}")]
    Auth { url: String, reason: String },
    /// A command failed.
    #[error("broker command {command} failed: {reason}")]
    Command {
        command: &'static str,
        reason: String,
        /// The server's error code (`NOGROUP`, `WRONGTYPE`...), if it gave one.
        code: Option<String>,
    },
    /// An entry could not be decoded.
    #[error("broker entry {id}: {source}")]
    Frame {
        id: String,
        #[source]
        source: CodecError,
    },
    /// A key of workpool's holds something workpool did not write there.
    #[error("the broker key {key} {reason}")]
    Corrupt { key: String, reason: String },
    /// A message could not be encoded.
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

    /// The key found holding something workpool did not write, if that is the error.
    pub fn corrupt_key(&self) -> Option<&str> {
        match self {
            BrokerError::Corrupt { key, .. } => Some(key),
            _ => None,
        }
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
    /// The password as written and as decoded, scrubbed from every message.
    secrets: Vec<String>,
}

/// What to do about a password that breaks the URL's syntax.
const PERCENT_ENCODE: &str = "percent-encode a password's special characters (`/` as %2F, \
                              `?` as %3F, `#` as %23, `@` as %40, `%` as %25)";

impl BrokerUrl {
    /// Checks `url`. Its errors show it redacted (and a text that is not a URL at all, which
    /// may well be a bare password, not at all).
    pub fn parse(url: &str) -> Result<BrokerUrl, BrokerError> {
        let shown = redact(url);
        let bad = |reason: &str| BrokerError::Url {
            url: shown.clone(),
            reason: reason.to_string(),
        };
        let secret = secret_of(url);
        let tls = url.starts_with("rediss://");
        if !tls && !url.starts_with("redis://") {
            return Err(bad("it must start with redis:// (or rediss:// for TLS)"));
        }
        // The URL parser would take the text after such a character for the path, query
        // or fragment, and the password's first piece for a host and port.
        if secret.is_some_and(|s| s.contains(['/', '?', '#'])) {
            return Err(bad(&format!(
                "the part before its last `@` holds a `/`, `?` or `#`: {PERCENT_ENCODE}"
            )));
        }
        let client = if tls {
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
        } else {
            redis::Client::open(url)
        };
        let mut secrets: Vec<String> = secret.into_iter().map(str::to_string).collect();
        let client = client.map_err(|e| {
            let reason = scrub(&e.to_string(), url, &secrets);
            bad(&format!("{reason}; {PERCENT_ENCODE}"))
        })?;
        let decoded = client.get_connection_info().redis_settings().password();
        secrets.extend(decoded.map(str::to_string));
        Ok(BrokerUrl {
            url: url.to_string(),
            client,
            secrets,
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
        let mut reason = scrub(&err.to_string(), &self.url, &self.secrets);
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
        let reason = scrub(&err.to_string(), &self.url, &self.secrets);
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

    /// Like [`BrokerUrl::command_error`] for a command on `key`: a key holding another type
    /// of value than workpool keeps there is [`BrokerError::Corrupt`].
    fn key_error(&self, command: &'static str, key: &str, err: &redis::RedisError) -> BrokerError {
        if err.code() == Some("WRONGTYPE") {
            return BrokerError::Corrupt {
                key: key.to_string(),
                reason: "holds another type of value than workpool keeps there (something \
                         else wrote it); remove it with DEL if nothing else needs it"
                    .to_string(),
            };
        }
        self.command_error(command, err)
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

/// What may be a password in `scheme://[user][:password]@host...`: everything between
/// `//` and the *last* `@` but the user name. The last `@`, so that an unencoded `/`, `?`,
/// `#` or `@` in a password still counts as part of it.
fn secret_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let at = url.rfind('@').filter(|&at| at >= start)?;
    let userinfo = &url[start..at];
    Some(match userinfo.split_once(':') {
        Some((user, password)) if !user.contains(['/', '?', '#']) => password,
        // `redis://secret@host` passes the whole userinfo as the password.
        _ => userinfo,
    })
}

/// The URL with its password replaced by `***`; a text without `://` is not shown at all
/// (a bare password given as the URL is a common slip).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "(not shown: not a URL)".to_string();
    };
    match url.rfind('@').filter(|&at| at >= scheme_end) {
        Some(at) => {
            let user = match url[scheme_end..at].split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => user,
                _ => "",
            };
            format!("{}{user}:***{}", &url[..scheme_end], &url[at..])
        }
        None => {
            // No `@`, so no credentials, unless `host:port` is not one (`redis://:secret`).
            let rest = &url[scheme_end..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..end];
            let port = authority.rsplit_once(':').map(|(_, port)| port);
            let plain = authority.ends_with(']')
                || port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            if plain {
                url.to_string()
            } else {
                format!("{}***{}", &url[..scheme_end], &rest[end..])
            }
        }
    }
}

/// Removes a URL's secrets from a message, in case a server or library echoes them.
fn scrub(message: &str, url: &str, secrets: &[String]) -> String {
    let mut message = message.replace(url, &redact(url));
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "***");
    }
    message
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
        other => other.map_err(|e| url.key_error("XGROUP CREATE", TASKS_STREAM, &e)),
    }
}

/// Appends frames to a stream, one entry each, in one round trip, and returns the entries'
/// ids in order.
pub fn publish_many<F: AsRef<[u8]>>(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    stream: &str,
    frames: &[F],
) -> Result<Vec<String>, BrokerError> {
    let mut pipe = redis::pipe();
    for frame in frames {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(FIELD)
            .arg(frame.as_ref());
    }
    pipe.query::<Vec<String>>(con)
        .map_err(|e| url.key_error("XADD", stream, &e))
}

/// One stream entry as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry's stream id.
    pub id: String,
    /// What it holds.
    pub body: Body,
}

/// What a stream entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A frame (the `f` field).
    Frame(Vec<u8>),
    /// A worker's word that it cannot serve the run (results streams only).
    Refused(String),
    /// Nothing: deleted since it was delivered (Redis reports an id without fields).
    Deleted,
    /// Fields workpool never writes: something else added it.
    Foreign,
}

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
        .map_err(|e| url.key_error("XREADGROUP", TASKS_STREAM, &e))?;
    Ok(stream_entries(&reply))
}

/// Entries of a run's results stream after `after`, waiting up to `block`; with `trim`,
/// what was read before it is trimmed in the same round trip.
pub fn read_results(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    after: &str,
    trim: bool,
    block: Duration,
) -> Result<Vec<Entry>, BrokerError> {
    let key = results_key(run);
    let mut pipe = redis::pipe();
    if trim && after != "0" {
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
        .map_err(|e| url.key_error("XREAD", &key, &e))?;
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
        .map_err(|e| url.key_error("XAUTOCLAIM", TASKS_STREAM, &e))?;
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
        .map_err(|e| url.key_error("XPENDING", TASKS_STREAM, &e))?;
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
        .map_err(|e| url.key_error("XINFO CONSUMERS", TASKS_STREAM, &e))?;
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
        .map_err(|e| url.key_error("XCLAIM", TASKS_STREAM, &e))
}

/// Ends a worker's handling of a task entry it gives up, atomically: tells its run's
/// coordinator that it is refused (only while the run is live), records it in the
/// dead-letter stream, then acknowledges and deletes it. A key holding
/// another type of value is passed over rather than failing the script: nothing in the
/// broker may keep an entry pending for ever. A results stream made here gets the run's
/// TTL at once, so that no key outlives a coordinator killed before its first renewal.
///
/// KEYS: run settings, run results, tasks stream, dead-letter stream. ARGV: group, entry
/// id, results field (or ''), its value, results TTL (ms), why the entry is dead (or ''),
/// worker, entry size, entry head, dead-letter cap, dead-letter TTL (s).
const SETTLE_SCRIPT: &str = r"
local function writable(key)
  local kind = redis.call('TYPE', key).ok
  return kind == 'stream' or kind == 'none'
end
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[1]) == 1 and writable(KEYS[2]) then
  redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[4])
  if redis.call('PTTL', KEYS[2]) == -1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
  end
end
if ARGV[6] ~= '' and writable(KEYS[4]) then
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[10], '*', 'entry', ARGV[2], 'reason', ARGV[6],
    'worker', ARGV[7], 'bytes', ARGV[8], 'head', ARGV[9])
  redis.call('EXPIRE', KEYS[4], ARGV[11])
end
if redis.call('TYPE', KEYS[3]).ok == 'stream' then
  redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[3], ARGV[2])
end
return 1
";

/// A task entry a worker gives up: it cannot be read, or its run cannot be served.
pub struct Burial<'a> {
    /// The entry's id in the tasks stream.
    pub id: &'a str,
    /// Its run, if it could be read: that run's coordinator is told `reason`.
    pub run: Option<&'a str>,
    /// Why, for a person: never the entry's bytes.
    pub reason: &'a str,
    /// The worker giving it up.
    pub worker: &'a str,
    /// The entry's frame, of which the dead-letter stream keeps the head.
    pub frame: &'a [u8],
}

/// Publishes a batch's outcomes to its run's results stream (while the run is live) and
/// acknowledges and deletes the task entry in one step (see [`finish_many`]). An empty
/// `frame` only acknowledges (an entry of a run that is gone).
pub fn finish(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    id: &str,
    frame: &[u8],
) -> Result<(), BrokerError> {
    finish_many(url, con, &[Finished { run, id, frame }])
}

/// A task entry a worker is done with: its id, its run, and its outcomes (an encoded
/// [`OutcomeEntry`], or empty to only acknowledge it).
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The entry's run.
    pub run: &'a str,
    /// The entry's id in the tasks stream.
    pub id: &'a str,
    /// What goes to the run's results stream; empty for nothing.
    pub frame: &'a [u8],
}

/// Ends a worker's handling of several task entries, atomically and in one round trip:
/// each entry's outcomes go to its run's results stream (only while the run is live), then
/// all are acknowledged and deleted together. An entry is finished exactly when its
/// outcomes are out; one script call for many entries is what keeps the broker's work per
/// task small when tasks are short. A key holding another type of value is passed over,
/// as in `SETTLE_SCRIPT`.
pub fn finish_many(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    done: &[Finished<'_>],
) -> Result<(), BrokerError> {
    // Bounded so that a call's arguments stay far below Lua's stack limit.
    for group in done.chunks(FINISH_GROUP) {
        FINISH
            .invoke::<i64>(con, |cmd| {
                cmd.arg(1 + 2 * group.len()).arg(TASKS_STREAM);
                for entry in group {
                    cmd.arg(spec_key(entry.run)).arg(results_key(entry.run));
                }
                cmd.arg(GROUP).arg(RUN_TTL.as_millis() as u64).arg(FIELD);
                for entry in group {
                    cmd.arg(entry.id).arg(entry.frame);
                }
            })
            .map_err(|e| url.command_error("EVALSHA finish", &e))?;
    }
    Ok(())
}

/// Entries [`finish_many`] settles per script call.
const FINISH_GROUP: usize = 256;

/// [`finish_many`]'s script. What it asks of a run's keys is asked once per call, not once
/// per entry.
///
/// KEYS: tasks stream, then per entry its run's settings and results. ARGV: group, results
/// TTL (ms), results field, then per entry its id and its outcomes frame (or '').
const FINISH_SCRIPT: &str = r"
local live, writable, written, ids = {}, {}, {}, {}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local spec, results, frame = KEYS[2 * i], KEYS[2 * i + 1], ARGV[3 + 2 * i]
  ids[i] = ARGV[2 + 2 * i]
  if frame ~= '' then
    if live[spec] == nil then
      live[spec] = redis.call('EXISTS', spec) == 1
    end
    if live[spec] and writable[results] == nil then
      local kind = redis.call('TYPE', results).ok
      writable[results] = kind == 'stream' or kind == 'none'
    end
    if live[spec] and writable[results] then
      redis.call('XADD', results, '*', ARGV[3], frame)
      written[results] = true
    end
  end
end
for results in pairs(written) do
  if redis.call('PTTL', results) == -1 then
    redis.call('PEXPIRE', results, ARGV[2])
  end
end
if n > 0 and redis.call('TYPE', KEYS[1]).ok == 'stream' then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return n
";

static FINISH: Script = Script::new(FINISH_SCRIPT);

/// Moves an entry to the dead-letter stream, tells its run's coordinator (if its run is
/// known and live) that it is refused, and acknowledges and deletes it, in one step.
pub fn bury(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    burial: &Burial<'_>,
) -> Result<(), BrokerError> {
    let refusal = format!(
        "worker {} cannot serve this run: {}",
        burial.worker, burial.reason
    );
    let field = if burial.run.is_some() {
        REFUSED_FIELD
    } else {
        ""
    };
    let head = &burial.frame[..burial.frame.len().min(DEAD_HEAD_BYTES)];
    let run = burial.run.unwrap_or("");
    SETTLE
        .invoke::<i64>(con, |cmd| {
            settle(cmd, run, burial.id, field, refusal.as_bytes())
                .arg(burial.reason)
                .arg(burial.worker)
                .arg(burial.frame.len())
                .arg(head)
                .arg(DEAD_KEEP)
                .arg(DEAD_TTL.as_secs());
        })
        .map(drop)
        .map_err(|e| url.command_error("EVALSHA bury", &e))
}

/// Adds [`SETTLE_SCRIPT`]'s keys and its arguments up to the results' TTL to `cmd`.
fn settle<'c>(
    cmd: &'c mut redis::Cmd,
    run: &str,
    id: &str,
    field: &str,
    value: &[u8],
) -> &'c mut redis::Cmd {
    cmd.arg(4)
        .arg(spec_key(run))
        .arg(results_key(run))
        .arg(TASKS_STREAM)
        .arg(DEAD_STREAM)
        .arg(GROUP)
        .arg(id)
        .arg(field)
        .arg(value)
        .arg(RUN_TTL.as_millis() as u64)
}

static SETTLE: Script = Script::new(SETTLE_SCRIPT);

/// A Lua script run by its SHA1 (`EVALSHA`): loaded into the broker once, and again when
/// the broker has forgotten it (a restart), so that a batch neither sends the body nor
/// makes the server hash it.
struct Script {
    body: &'static str,
    sha: OnceLock<String>,
}

impl Script {
    const fn new(body: &'static str) -> Script {
        Script {
            body,
            sha: OnceLock::new(),
        }
    }

    /// Runs the script; `args` adds the key count, the keys and the arguments.
    fn invoke<T: redis::FromRedisValue>(
        &self,
        con: &mut redis::Connection,
        args: impl Fn(&mut redis::Cmd),
    ) -> redis::RedisResult<T> {
        let call = |con: &mut redis::Connection, sha: &str| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha);
            args(&mut cmd);
            cmd.query::<T>(con)
        };
        if let Some(sha) = self.sha.get() {
            match call(con, sha) {
                Err(err) if err.code() == Some("NOSCRIPT") => {}
                other => return other,
            }
        }
        let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(self.body).query(con)?;
        call(con, self.sha.get_or_init(|| sha))
    }
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
            .map_err(|e| url.key_error("XDEL", TASKS_STREAM, &e))?;
    }
    Ok(())
}

/// Writes a run's settings, with their TTL in the same command; from now on its entries
/// are served.
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
        .arg("PX")
        .arg(RUN_TTL.as_millis() as u64)
        .query::<()>(con)
        .map_err(|e| url.command_error("SET", &e))
}

/// How long a run outlives its coordinator's last sign of life: a coordinator that was
/// killed leaves nothing behind for longer (its workers skip the run's entries, and its
/// results stream expires).
pub const RUN_TTL: Duration = Duration::from_secs(30);

/// What [`keep_run`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The run's settings are as written; its keys' TTLs start again.
    Renewed,
    /// The settings are gone (the broker lost them, or someone deleted them).
    Lost,
    /// The key holds something else than the settings written (another type, or other
    /// bytes): the run cannot be trusted to go on.
    Altered,
}

/// See [`keep_run`]. KEYS: settings, results. ARGV: the settings' frame, TTL (ms).
const KEEP_SCRIPT: &str = r"
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return 0 end
if kind ~= 'string' or redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// Keeps a live run's keys from expiring (see [`RUN_TTL`]), checking on the way that its
/// settings are still what was written; call it well within the TTL.
pub fn keep_run(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
    spec: &RunSpec,
) -> Result<Kept, BrokerError> {
    let frame = codec::encode(spec)?;
    let found: i64 = redis::cmd("EVAL")
        .arg(KEEP_SCRIPT)
        .arg(2)
        .arg(spec_key(run))
        .arg(results_key(run))
        .arg(frame.as_slice())
        .arg(RUN_TTL.as_millis() as u64)
        .query(con)
        .map_err(|e| url.command_error("EVAL keep", &e))?;
    Ok(match found {
        1 => Kept::Renewed,
        0 => Kept::Lost,
        _ => Kept::Altered,
    })
}

/// A run's settings, or None once the run is over. Settings that cannot be read, or that
/// were written by a coordinator of another protocol version, are [`BrokerError::Corrupt`].
pub fn get_spec(
    url: &BrokerUrl,
    con: &mut redis::Connection,
    run: &str,
) -> Result<Option<RunSpec>, BrokerError> {
    let key = spec_key(run);
    let bytes: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query(con)
        .map_err(|e| url.key_error("GET", &key, &e))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let corrupt = |reason: String| BrokerError::Corrupt {
        key: key.clone(),
        reason,
    };
    match codec::decode_prefix_u32(&bytes) {
        Ok(BROKER_PROTOCOL) => {}
        Ok(other) => {
            return Err(corrupt(format!(
                "holds no run settings of this build (they read as broker protocol \
                 {other}, this build speaks {BROKER_PROTOCOL}): a coordinator of another \
                 build wrote them, or something else did; run workers and coordinators of \
                 the same build"
            )))
        }
        Err(err) => return Err(corrupt(format!("holds no run settings: {err}"))),
    }
    codec::decode(&bytes)
        .map(Some)
        .map_err(|err| corrupt(format!("holds no run settings: {err}")))
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
            let body = match parts.get(1) {
                None | Some(Reply::Nil) => Body::Deleted,
                Some(fields) => body_of(as_array(fields)),
            };
            Some(Entry { id, body })
        })
        .collect()
}

/// An entry's fields: `f` (a frame) or `refused` (a message), else foreign.
fn body_of(fields: &[Reply]) -> Body {
    for kv in fields.chunks(2) {
        let (Some(Reply::BulkString(name)), Some(Reply::BulkString(value))) =
            (kv.first(), kv.get(1))
        else {
            continue;
        };
        if name == FIELD.as_bytes() {
            return Body::Frame(value.clone());
        }
        if name == REFUSED_FIELD.as_bytes() {
            return Body::Refused(String::from_utf8_lossy(value).into_owned());
        }
    }
    Body::Foreign
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
        assert_eq!(redact("redis://[::1]:6379/0"), "redis://[::1]:6379/0");
        // Everything up to the last `@`, whatever it holds.
        assert_eq!(redact("redis://:a/b?c#d@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://u:p@ss@h"), "redis://u:***@h");
        assert_eq!(redact("redis://h/0?x=a@b"), "redis://:***@b");
        // No `@`, yet not a host and port either.
        assert_eq!(redact("redis://:hunter2"), "redis://***");
        assert_eq!(redact("redis://u:hunter2/0"), "redis://***/0");
        // A bare password is not a URL, and is not shown.
        assert!(!redact("hunter2").contains("hunter2"));
        let secrets = ["hunter2".to_string()];
        assert_eq!(
            scrub("bad hunter2 here", "redis://h", &secrets),
            "bad *** here"
        );
        assert_eq!(
            scrub("at redis://:x@h", "redis://:x@h", &[]),
            "at redis://:***@h"
        );
    }

    #[test]
    fn urls_are_checked_and_shown_without_password() {
        let url = BrokerUrl::parse("redis://:s3cret@127.0.0.1:1").unwrap();
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:1");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(BrokerUrl::parse("rediss://h").is_ok());
        assert!(BrokerUrl::parse("tcp://h").is_err());
        // Encoded, a password may hold anything.
        assert!(BrokerUrl::parse("redis://:a%2Fb%3Fc%23d@127.0.0.1:1").is_ok());
        for bad in [
            "http://:s3cret@h",
            "s3cret",
            "redis://:s3/cret@h:1",
            "redis://:s3?cret@h:1",
            "redis://:s3#cret@h:1",
            "redis://u:s3/cret@h:1/0",
            "redis://s3/cret@h:1",
            "rediss://:s3/cret@h:1",
        ] {
            let err = BrokerUrl::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("s3"), "{bad}: {err}");
        }
        let err = BrokerUrl::parse("redis://:s3/cret@h:1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("percent-encode"), "{err}");
    }

    #[test]
    fn the_run_of_an_entry_is_read_from_its_head() {
        let head = codec::encode(&(7u32, "run-a".to_string(), 1u8, 2u8)).unwrap();
        assert_eq!(run_of(&head).as_deref(), Some("run-a"));
        assert_eq!(run_of(b"garbage"), None);
        assert_eq!(run_of(b""), None);
    }

    #[test]
    fn entry_refs_encode_like_entries() {
        let route = Route {
            slot: 3,
            generation: 2,
            epoch: 1,
        };
        let tasks = vec![1u8, 2, 3];
        let keys = vec![(9, 1)];
        let owned = TaskEntry {
            protocol: BROKER_PROTOCOL,
            run: "r".into(),
            route,
            keys: keys.clone(),
            tasks: Frame::from(tasks.clone()),
        };
        let borrowed = TaskEntryRef {
            protocol: BROKER_PROTOCOL,
            run: "r",
            route,
            keys: &keys,
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
        let outcomes = vec![7u8; 40];
        let owned = OutcomeEntry {
            route,
            consumer: "w".into(),
            pid: 7,
            outcomes: Frame::from(outcomes.clone()),
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
        let entry = |id: &str, body| Entry {
            id: id.into(),
            body,
        };
        assert_eq!(
            entries,
            vec![
                entry("1-0", Body::Frame(b"abc".to_vec())),
                entry("2-0", Body::Deleted)
            ]
        );
        assert!(stream_entries(&Reply::Nil).is_empty());
        let fields = |kv: &[&str]| Reply::Array(kv.iter().map(|s| bulk(s)).collect());
        assert_eq!(body_of(as_array(&fields(&["x", "y"]))), Body::Foreign);
        assert_eq!(
            body_of(as_array(&fields(&["refused", "why"]))),
            Body::Refused("why".into())
        );
    }
}
