//! The `redis` backend: batches go to a Redis Streams broker, and `worker --broker`
//! processes on any host take them (see `crate::broker` for the layout).
//!
//! To the scheduler the broker is `-w` virtual slots. A slot's "send" publishes a batch to
//! the shared tasks stream; one reader thread takes the run's results stream and routes
//! each batch of outcomes back to the slot that published it. Remote workers pull, so the
//! slots do not stand for workers: they bound how many batches wait on the broker
//! (back-pressure) and let the scheduler's batching, ordering and retries apply unchanged.
//! What the broker changes is said by [`Backend`]'s hooks: a slot's batches may finish in
//! any order and more than once (at-least-once delivery), and timeouts are enforced by the
//! workers, the only ones who know when a task started.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flume::{Receiver, Sender};
use serde::de::DeserializeOwned;

use super::{Backend, Capabilities, Event, Events, PoolError, Runner, Started};
use crate::broker::{
    self, Body, BrokerError, BrokerUrl, Entry, Kept, OutcomeEntry, Route, RunSpec, TaskEntryRef,
};
use crate::outcome::Arrival;
use crate::protocol::{Job, RunSettings};
use crate::task::Signature;
use crate::{codec, Outcome, Task};

/// How long connecting may take before the broker counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reads and writes on an open connection fail after this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the reader waits on the results stream before checking it should stop.
const READ_BLOCK: Duration = Duration::from_millis(200);
/// How long a lost connection is retried before the run's tasks are given up.
const RECONNECT_FOR: Duration = Duration::from_secs(10);
/// How long the results stay silent before the reader checks that any worker is alive.
const NO_WORKER_WARNING: Duration = Duration::from_secs(3);
/// Outcome entries read between two trims of the results stream.
const TRIM_EVERY: usize = 256;
/// Entry ids a slot remembers, to withdraw its unstarted batches when it is stopped.
const REMEMBERED_ENTRIES: usize = 1024;
/// Batches published per round trip, at most.
const PUBLISH_GROUP: usize = 256;

/// What the backend and all its slots share.
struct Shared {
    url: BrokerUrl,
    /// This pool's run id: names its settings and results stream.
    run: String,
    /// The connection of the publisher thread, and of the run's last words.
    publisher: Mutex<redis::Connection>,
    /// The scheduler's run number within this pool, stamped on each batch.
    epoch: AtomicU64,
    /// The run's settings, registered again if the broker has forgotten them.
    spec: RunSpec,
}

pub(crate) struct RedisBackend<T> {
    shared: Arc<Shared>,
    stop_reader: Arc<AtomicBool>,
    reader_started: bool,
    /// The publisher thread's queue, and the thread (both once started).
    outbox: Option<(Sender<Outgoing>, JoinHandle<()>)>,
    task: PhantomData<fn() -> T>,
}

/// What the slots ask of the publisher thread, in the scheduler's order.
enum Outgoing {
    /// Publish a slot's batch entry.
    Entry {
        slot: u32,
        generation: u64,
        frame: codec::Frame,
    },
    /// Withdraw the entries a stopped slot published.
    Withdraw { slot: u32 },
    /// Do what was asked before, then stop.
    Stop,
}

impl<T: Task> RedisBackend<T> {
    /// Connects and registers the run: its settings are what workers run its tasks with.
    pub fn new(
        url: BrokerUrl,
        task: &T,
        settings: RunSettings,
        timeout: Option<Duration>,
    ) -> Result<RedisBackend<T>, PoolError> {
        let task_value = codec::encode(task).map_err(|err| PoolError::Setup(err.to_string()))?;
        let mut con = url.connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))?;
        broker::ensure_group(&url, &mut con)?;
        let run = run_id();
        let spec = RunSpec {
            protocol: broker::BROKER_PROTOCOL,
            task: Signature::of::<T>(),
            task_value,
            settings,
            timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        broker::put_spec(&url, &mut con, &run, &spec)?;
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                url,
                run,
                publisher: Mutex::new(con),
                epoch: AtomicU64::new(0),
                spec,
            }),
            stop_reader: Arc::new(AtomicBool::new(false)),
            reader_started: false,
            outbox: None,
            task: PhantomData,
        })
    }

    fn start_reader(&mut self, events: &Sender<Event<T::Output>>) -> Result<(), PoolError> {
        let con = self.shared.url.connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))?;
        let (shared, stop, events) = (
            Arc::clone(&self.shared),
            Arc::clone(&self.stop_reader),
            events.clone(),
        );
        std::thread::Builder::new()
            .name("broker-results".into())
            .spawn(move || read_results(&shared, con, &stop, &events))
            .map_err(PoolError::Thread)?;
        self.reader_started = true;
        Ok(())
    }

    fn start_publisher(
        &mut self,
        events: &Sender<Event<T::Output>>,
    ) -> Result<Sender<Outgoing>, PoolError> {
        let (tx, rx) = flume::unbounded();
        let (shared, events) = (Arc::clone(&self.shared), events.clone());
        let thread = std::thread::Builder::new()
            .name("broker-publisher".into())
            .spawn(move || publish_entries(&shared, &rx, &events))
            .map_err(PoolError::Thread)?;
        self.outbox = Some((tx.clone(), thread));
        Ok(tx)
    }
}

/// Unique enough across coordinators sharing a broker: host, pid, time and randomness.
fn run_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".to_string(), |h| h.trim().to_string());
    let nonce: u32 = rand::random();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{host}-{}-{secs}-{nonce:08x}", std::process::id())
}

impl<T: Task> Backend<T> for RedisBackend<T> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The slots are many and only bound what waits on the broker; its workers
            // prefetch on their own.
            fixed_depth: Some(1),
            batches_interleave: true,
            enforces_timeouts: true,
            ..Capabilities::LOCAL
        }
    }

    fn start(&mut self, slot: usize, generation: u64, events: &Events<T>) -> Started<T> {
        if !self.reader_started {
            self.start_reader(events)?;
        }
        let outbox = match &self.outbox {
            Some((outbox, _)) => outbox.clone(),
            None => self.start_publisher(events)?,
        };
        Ok(Box::new(BrokerSlot {
            shared: Arc::clone(&self.shared),
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            generation,
            outbox,
        }))
    }

    fn begin_run(&mut self) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Runs a command on the publishing connection, reconnecting once if the connection
    /// has failed (a broker that restarted, or an idle connection cut).
    fn publishing<T>(
        &self,
        command: impl Fn(&mut redis::Connection) -> Result<T, BrokerError>,
    ) -> Result<T, BrokerError> {
        let mut con = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match command(&mut con) {
            Err(err) if err.is_connection() => {
                *con = self.url.connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT))?;
                command(&mut con)
            }
            other => other,
        }
    }
}

impl<T> Drop for RedisBackend<T> {
    /// Ends the run on the broker: workers skip whatever of it is left.
    fn drop(&mut self) {
        self.stop_reader.store(true, Ordering::SeqCst);
        // What the slots published or withdrew goes out before the run ends.
        if let Some((outbox, thread)) = self.outbox.take() {
            if outbox.send(Outgoing::Stop).is_ok() {
                let _ = thread.join();
            }
        }
        let shared = &self.shared;
        if let Err(err) = shared.publishing(|con| broker::drop_run(&shared.url, con, &shared.run)) {
            crate::diag!(
                "warning: cannot remove run {} from the broker (it expires in {:?}): {err}",
                shared.run,
                broker::RUN_TTL
            );
        }
    }
}

/// One virtual slot: hands its batches to the publisher thread.
struct BrokerSlot {
    shared: Arc<Shared>,
    slot: u32,
    generation: u64,
    outbox: Sender<Outgoing>,
}

impl<T: Task> Runner<T> for BrokerSlot {
    fn pid(&self) -> u32 {
        // The tasks run in remote processes, whose pids come with each outcome.
        std::process::id()
    }

    fn send(&mut self, jobs: &[Job<T::Input>]) -> Result<Option<u64>, String> {
        let shared = &self.shared;
        // The batch travels encoded inside the entry, so that a worker handles entries
        // without knowing their task type, and decodes them with the code serving it.
        let tasks = codec::encode(&jobs).map_err(|e| e.to_string())?;
        let keys: Vec<(u64, u32)> = jobs.iter().map(|j| (j.index, j.attempt)).collect();
        let entry = TaskEntryRef {
            protocol: broker::BROKER_PROTOCOL,
            run: &shared.run,
            route: Route {
                slot: self.slot,
                generation: self.generation,
                epoch: shared.epoch.load(Ordering::SeqCst),
            },
            keys: &keys,
            tasks: &tasks,
        };
        let frame = codec::encode(&entry).map_err(|e| e.to_string())?;
        // Only a trace reads it: no clock read per batch otherwise.
        let encoded_ns = shared.spec.settings.trace.then(crate::clock::monotonic_ns);
        // Published in the background, with whatever else is ready by then, in one round
        // trip; a failure comes back as the slot's loss.
        self.outbox
            .send(Outgoing::Entry {
                slot: self.slot,
                generation: self.generation,
                frame,
            })
            .map_err(|_| "the publisher thread has stopped".to_string())?;
        Ok(encoded_ns)
    }

    /// A remote task cannot be stopped from here: its batches are withdrawn from the
    /// stream instead (those not yet taken are never run), and the scheduler ignores
    /// whatever outcomes still come back for this slot's old generation.
    fn kill(&mut self) -> Option<String> {
        let _ = self.outbox.send(Outgoing::Withdraw { slot: self.slot });
        None
    }

    fn shutdown(&mut self) {}
}

/// The publisher thread: publishes the slots' batches, as many per round trip as are
/// waiting, and withdraws a stopped slot's, in the order the scheduler asked; stops when
/// told to (or when nobody can ask any more).
fn publish_entries<O>(shared: &Shared, outgoing: &Receiver<Outgoing>, events: &Sender<Event<O>>) {
    // Entries each slot published, newest last (bounded).
    let mut published: HashMap<u32, VecDeque<String>> = HashMap::new();
    let mut ready = Vec::new();
    while let Ok(first) = outgoing.recv() {
        let mut stop = false;
        for message in std::iter::once(first).chain(outgoing.try_iter().take(PUBLISH_GROUP)) {
            match message {
                Outgoing::Entry {
                    slot,
                    generation,
                    frame,
                } => ready.push((slot, generation, frame)),
                Outgoing::Withdraw { slot } => {
                    publish(shared, &mut ready, &mut published, events);
                    let ids: Vec<String> = published.remove(&slot).unwrap_or_default().into();
                    let url = &shared.url;
                    if let Err(err) =
                        shared.publishing(|con| broker::delete_entries(url, con, &ids))
                    {
                        crate::diag!("warning: cannot withdraw batches from the broker: {err}");
                    }
                }
                Outgoing::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        publish(shared, &mut ready, &mut published, events);
        if stop {
            return;
        }
    }
}

/// Publishes the `ready` entries in one round trip and empties it; if that fails, each
/// slot concerned is lost (the scheduler sends its batches again elsewhere, or fails them).
fn publish<O>(
    shared: &Shared,
    ready: &mut Vec<(u32, u64, codec::Frame)>,
    published: &mut HashMap<u32, VecDeque<String>>,
    events: &Sender<Event<O>>,
) {
    if ready.is_empty() {
        return;
    }
    let frames: Vec<&[u8]> = ready.iter().map(|(_, _, frame)| &frame[..]).collect();
    let url = &shared.url;
    match shared.publishing(|con| broker::publish_many(url, con, broker::TASKS_STREAM, &frames)) {
        Ok(ids) => {
            for ((slot, _, _), id) in ready.iter().zip(ids) {
                let ids = published.entry(*slot).or_default();
                if ids.len() == REMEMBERED_ENTRIES {
                    ids.pop_front();
                }
                ids.push_back(id);
            }
        }
        Err(err) => {
            let mut lost: Vec<(u32, u64)> = ready.iter().map(|&(s, g, _)| (s, g)).collect();
            lost.sort_unstable();
            lost.dedup();
            for (slot, generation) in lost {
                let _ = events.send(Event::Lost {
                    slot: slot as usize,
                    generation,
                    reason: err.to_string(),
                });
            }
        }
    }
    ready.clear();
}

/// The reader thread: routes each outcome entry of the run to its slot until told to stop.
/// If the broker cannot be reached for [`RECONNECT_FOR`], or has forgotten the run (it
/// restarted without persistence), the run's outstanding tasks are given up.
fn read_results<O: DeserializeOwned>(
    shared: &Shared,
    mut con: redis::Connection,
    stop: &AtomicBool,
    events: &Sender<Event<O>>,
) {
    let url = &shared.url;
    let trace = shared.spec.settings.trace;
    let mut after = "0".to_string();
    let mut quiet_since = Instant::now();
    let mut warned = false;
    let mut kept = Instant::now();
    // Entries read since the results stream was last trimmed.
    let mut unread = 0;
    while !stop.load(Ordering::SeqCst) {
        if kept.elapsed() > broker::RUN_TTL / 6 {
            kept = Instant::now();
            match broker::keep_run(url, &mut con, &shared.run, &shared.spec) {
                Ok(Kept::Renewed) => {}
                // Its workers have dropped what they took of it meanwhile.
                Ok(Kept::Lost) => match register_again(shared, &mut con) {
                    Ok(()) if events.send(Event::Republish).is_ok() => {}
                    Ok(()) => return,
                    Err(err) => crate::diag!("warning: cannot register the run again: {err}"),
                },
                Ok(Kept::Altered) => {
                    let reason = format!(
                        "the broker key {} no longer holds this run's settings (something \
                         else wrote it): the run cannot go on",
                        broker::spec_key(&shared.run)
                    );
                    let _ = events.send(Event::BackendDown { reason });
                    return;
                }
                Err(err) => crate::diag!("warning: cannot renew the run on the broker: {err}"),
            }
        }
        if !warned && quiet_since.elapsed() > NO_WORKER_WARNING {
            quiet_since = Instant::now();
            if let Ok(0) = broker::live_consumers(url, &mut con, NO_WORKER_WARNING) {
                warned = true;
                crate::diag!(
                    "warning: no worker is taking tasks from the broker at {url}: start \
                     `worker --broker URL` on any host that reaches it"
                );
            }
        }
        // Trimming is a command of its own for the broker: done once per many entries.
        let trim = unread >= TRIM_EVERY;
        if trim {
            unread = 0;
        }
        let read = broker::read_results(url, &mut con, &shared.run, &after, trim, READ_BLOCK);
        let entries = match read {
            Ok(entries) => entries,
            Err(err) if err.is_connection() => match reconnect(shared, stop, &err) {
                Ok(fresh) => {
                    con = fresh;
                    // Whatever the broker lost in the restart (batches not yet written
                    // to disk, or everything without persistence) is published again;
                    // what it kept may now run twice, and is de-duplicated.
                    if events.send(Event::Republish).is_err() {
                        return;
                    }
                    continue;
                }
                Err(reason) => {
                    let _ = events.send(Event::BackendDown { reason });
                    return;
                }
            },
            Err(err) => {
                let _ = events.send(Event::BackendDown {
                    reason: err.to_string(),
                });
                return;
            }
        };
        if !entries.is_empty() {
            quiet_since = Instant::now();
            unread += entries.len();
        }
        for Entry { id, body } in entries {
            // Every record's `finished_ms` is read from it; only a trace reads when the
            // decoding ended.
            let received_ns = crate::clock::monotonic_ns();
            let frame = match body {
                Body::Frame(frame) => frame,
                Body::Refused(reason) => {
                    let _ = events.send(Event::BackendDown { reason });
                    return;
                }
                Body::Deleted => {
                    after = id;
                    continue;
                }
                Body::Foreign => {
                    crate::diag!("warning: ignoring outcome entry {id}: workpool did not write it");
                    after = id;
                    continue;
                }
            };
            let decoded = broker::decode_entry::<OutcomeEntry>(&id, &frame).and_then(|entry| {
                let outcomes = broker::decode_entry::<Vec<Outcome<O>>>(&id, &entry.outcomes)?;
                Ok((entry, outcomes))
            });
            let (entry, outcomes) = match decoded {
                Ok(entry) => entry,
                Err(err) => {
                    crate::diag!("warning: ignoring a corrupt outcome entry: {err}");
                    after = id;
                    continue;
                }
            };
            after = id;
            if entry.route.epoch != shared.epoch.load(Ordering::SeqCst) {
                continue; // A duplicate from an earlier run of this pool.
            }
            let event = Event::Outcomes {
                slot: entry.route.slot as usize,
                generation: entry.route.generation,
                outcomes,
                arrival: Arrival::decoded(received_ns, trace),
                pid: std::num::NonZeroU32::new(entry.pid),
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

/// Reconnects after a dropped connection, and registers the run again if the broker has
/// forgotten it (it restarted without persistence).
fn reconnect(
    shared: &Shared,
    stop: &AtomicBool,
    first: &BrokerError,
) -> Result<redis::Connection, String> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    crate::diag!("warning: lost the broker connection ({first}); reconnecting");
    while started.elapsed() < RECONNECT_FOR && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
        let Ok(mut con) = shared.url.connect(CONNECT_TIMEOUT, Some(IO_TIMEOUT)) else {
            continue;
        };
        let registered =
            broker::get_spec(&shared.url, &mut con, &shared.run).and_then(|spec| match spec {
                Some(_) => Ok(()),
                None => register_again(shared, &mut con),
            });
        return match registered {
            Ok(()) => Ok(con),
            Err(err) if err.is_connection() => continue,
            Err(err) => Err(err.to_string()),
        };
    }
    Err(format!("lost the broker connection: {first}"))
}

/// Registers a run the broker has forgotten (it restarted without persistence, or the key
/// was deleted); the caller then publishes its unfinished batches again.
fn register_again(shared: &Shared, con: &mut redis::Connection) -> Result<(), BrokerError> {
    crate::diag!(
        "warning: the broker at {} lost this run (restarted without persistence, or its \
         key was deleted): registering it again and publishing its unfinished batches again",
        shared.url
    );
    broker::ensure_group(&shared.url, con)?;
    broker::put_spec(&shared.url, con, &shared.run, &shared.spec)
}
