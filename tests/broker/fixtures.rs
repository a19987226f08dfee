//! What the broker tests stand on: a `redis-server`, `worker --broker` processes and a
//! coordinator in the background, each killed and reaped on every path, and the helpers
//! that read their runs.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tempfile::TempDir;

use crate::common::{
    assert_exit, coordinator, output, parse_jsonl, run_output, stdout, Run, COORDINATOR, WORKER,
};

/// How often waits look again.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// Generous bound on anything that should take a moment (a server or worker starting).
pub(crate) const START_LIMIT: Duration = Duration::from_secs(10);

/// Bound on a run that should take a few seconds: it failed, not the machine, if it takes
/// longer.
pub(crate) const RUN_LIMIT: Duration = Duration::from_secs(60);

/// "Within a few seconds": a set-up error must be reported by then, not hang.
pub(crate) const ERROR_LIMIT: Duration = Duration::from_secs(10);

/// A password no output may ever contain.
pub(crate) const WRONG_PASSWORD: &str = "hunter2-wrong";

/// Makes a child get SIGKILL if the test thread that started it dies without dropping
/// its fixture (e.g. the test binary is killed), so no server or worker outlives the run.
pub(crate) fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches nothing but the calling process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Kills and reaps `child` unless it has exited and been reaped (`status` set).
pub(crate) fn kill_and_reap(child: &mut Child, status: &mut Option<ExitStatus>) {
    if status.is_none() {
        let _ = child.kill();
        *status = child.wait().ok();
    }
}

/// A loopback port nothing listens on at the moment of the call.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("cannot bind a loopback port")
        .port()
}

/// A `redis-server` of the test's own: a free loopback port, an empty temporary directory,
/// no persistence unless asked. Dropping it kills and reaps the server.
pub(crate) struct RedisServer {
    child: Child,
    status: Option<ExitStatus>,
    port: u16,
    password: Option<String>,
    /// Every argument but the port, to start it again the same way.
    args: Vec<String>,
    dir: TempDir,
}

impl RedisServer {
    /// A server without a password, on 127.0.0.1.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(None, &[])
    }

    /// A server that requires `password`, on 127.0.0.1.
    pub(crate) fn with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password), &[])
    }

    /// A server on 127.0.0.1 and on each of `also_bind` (other hosts may then connect:
    /// protected mode is off).
    pub(crate) fn start_with(password: Option<&str>, also_bind: &[&str]) -> RedisServer {
        RedisServer::start_custom(password, also_bind, &[])
    }

    /// Like [`RedisServer::start_with`], with `extra` configuration after the defaults
    /// (which it may override: `--appendonly yes`, TLS settings...).
    pub(crate) fn start_custom(
        password: Option<&str>,
        also_bind: &[&str],
        extra: &[&str],
    ) -> RedisServer {
        require_redis_server();
        let mut last_log = String::new();
        // Another process may take the port between our probe and the server's bind.
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("cannot create temp dir");
            let bind = std::iter::once("127.0.0.1")
                .chain(also_bind.iter().copied())
                .collect::<Vec<_>>()
                .join(" ");
            let mut args: Vec<String> = ["--bind", &bind, "--save", "", "--appendonly", "no"]
                .iter()
                .map(|a| a.to_string())
                .collect();
            args.extend(["--dir".to_string(), dir.path().display().to_string()]);
            args.extend(["--daemonize", "no", "--logfile", ""].map(String::from));
            if !also_bind.is_empty() {
                args.extend(["--protected-mode", "no"].map(String::from));
            }
            if let Some(password) = password {
                args.extend(["--requirepass".to_string(), password.to_string()]);
            }
            args.extend(extra.iter().map(|a| a.to_string()));
            let port = free_port();
            let child = spawn_redis(port, &args, &dir);
            let mut server = RedisServer {
                child,
                status: None,
                port,
                password: password.map(str::to_string),
                args,
                dir,
            };
            if server.wait_ready() {
                return server;
            }
            last_log = server.log();
            // Dropping `server` kills and reaps it; try another port.
        }
        panic!("redis-server did not start on any of 5 ports; its last log:\n{last_log}");
    }

    /// SIGKILLs the server and starts it again on the same port and directory: what it
    /// had persisted (nothing, unless asked) is all it keeps.
    pub(crate) fn restart(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
        self.child = spawn_redis(self.port, &self.args, &self.dir);
        self.status = None;
        assert!(
            self.wait_ready(),
            "redis-server did not start again on port {}; its log:\n{}",
            self.port,
            self.log()
        );
    }

    /// Waits until the server answers PING (an authentication error is an answer too).
    /// False if it exited (its port was taken, say); fails the test if it never answers.
    pub(crate) fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on redis-server") {
                self.status = Some(status);
                return false;
            }
            if ping(self.port)
                .is_some_and(|reply| reply.starts_with("+PONG") || reply.starts_with("-NOAUTH"))
            {
                return true;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "redis-server on port {} not answering after {START_LIMIT:?}; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(POLL);
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:PASSWORD@]127.0.0.1:PORT` with the server's own password, if any.
    pub(crate) fn url(&self) -> String {
        self.url_on("127.0.0.1")
    }

    /// The URL of this server reached at `host`.
    pub(crate) fn url_on(&self, host: &str) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@{host}:{}", self.port),
            None => format!("redis://{host}:{}", self.port),
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
    }
}

/// Starts `redis-server --port PORT ARGS`, its output appended to `redis.log` in `dir`.
fn spawn_redis(port: u16, args: &[String], dir: &TempDir) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.path().join("redis.log"))
        .expect("cannot open the redis log");
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cannot clone a file handle"))
        .stderr(log);
    die_with_parent(&mut cmd)
        .spawn()
        .expect("cannot start redis-server")
}

/// Reports that `test` did not run, and why, so that nobody takes its pass for a check.
/// Written to the process's own standard error, which `cargo test` does not capture (it
/// captures only the print macros), so the line shows among the passing tests; it starts
/// with "SKIPPED", which `run-tests.sh` repeats at the end of its output.
pub(crate) fn skip_loudly(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "\nSKIPPED {test}: {reason}\n");
}

/// Fails the test with the fix if `redis-server` is not installed.
pub(crate) fn require_redis_server() {
    match Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`redis-server --version` failed ({status})"),
        Err(err) if err.kind() == ErrorKind::NotFound => panic!(
            "redis-server is not installed, and the redis backend's tests need it: \
             apt-get install redis-server"
        ),
        Err(err) => panic!("cannot run redis-server: {err}"),
    }
}

/// Sends PING on a fresh connection and returns the first line of the reply.
pub(crate) fn ping(port: u16) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(b"PING\r\n").ok()?;
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply).ok()?;
    Some(String::from_utf8_lossy(&reply[..n]).into_owned())
}

/// A `worker --broker URL --lease 1s` process. Dropping it kills and reaps it.
pub(crate) struct Worker {
    child: Child,
    status: Option<ExitStatus>,
    name: String,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Worker {
    /// `worker --broker URL --concurrency N --lease 1s --name NAME`, once it serves.
    pub(crate) fn start(url: &str, name: &str, concurrency: usize) -> Worker {
        Worker::start_in(&[], url, name, concurrency)
    }

    /// Like [`Worker::start`], the command prefixed by `wrapper` (e.g. `ip netns exec NS`,
    /// which execs the worker: the pid stays the worker's).
    pub(crate) fn start_in(wrapper: &[&str], url: &str, name: &str, concurrency: usize) -> Worker {
        Worker::launch(wrapper, url, name, concurrency, &[], &[])
    }

    /// Like [`Worker::start`], with more arguments and environment variables.
    pub(crate) fn start_extra(
        url: &str,
        name: &str,
        concurrency: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        Worker::launch(&[], url, name, concurrency, extra, env)
    }

    fn launch(
        wrapper: &[&str],
        url: &str,
        name: &str,
        concurrency: usize,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let dir = tempfile::tempdir().expect("cannot create temp dir");
        let stderr = dir.path().join("stderr");
        let stderr_file = File::create(&stderr).expect("cannot create stderr file");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(WORKER);
                cmd
            }
            None => Command::new(WORKER),
        };
        cmd.args(["--broker", url, "--lease", "1s", "--name", name])
            .args(["--concurrency", &concurrency.to_string()])
            .args(extra)
            .env_remove("WORKPOOL_BROKER")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file);
        let child = die_with_parent(&mut cmd)
            .spawn()
            .expect("cannot start worker");
        let mut worker = Worker {
            child,
            status: None,
            name: name.to_string(),
            stderr,
            _dir: dir,
        };
        worker.wait_serving();
        worker
    }

    /// Waits for the worker's "serving" line: it has joined the consumer group.
    pub(crate) fn wait_serving(&mut self) {
        let started = Instant::now();
        while !self.stderr().contains("serving") {
            if let Some(status) = self.child.try_wait().expect("try_wait on worker") {
                self.status = Some(status);
                panic!(
                    "worker {} exited ({status}) before serving\n--- stderr ---\n{}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "worker {} not serving after {START_LIMIT:?}\n--- stderr ---\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    pub(crate) fn pid(&self) -> u64 {
        u64::from(self.child.id())
    }

    /// SIGKILL: it gets no chance to finish or hand back what it holds.
    pub(crate) fn kill(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) to the running worker.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        assert!(self.status.is_none(), "worker {} was reaped", self.name);
        let pid = i32::try_from(self.child.id()).expect("pid out of range");
        // SAFETY: kill only sends a signal, to our own child that is not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the worker to exit on its own, failing the test after [`RUN_LIMIT`].
    #[track_caller]
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.status {
                return status;
            }
            self.status = self.child.try_wait().expect("try_wait on worker");
            assert!(
                started.elapsed() < RUN_LIMIT,
                "worker {} still running\n--- stderr ---\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
    }
}

/// A `coordinator run` in the background, its stdout going to a file that can be read as
/// it streams. Dropping it kills and reaps it.
pub(crate) struct Background {
    child: Child,
    status: Option<ExitStatus>,
    pub(crate) stdout: PathBuf,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Background {
    pub(crate) fn start(args: &[&str]) -> Background {
        let dir = tempfile::tempdir().expect("cannot create temp dir");
        let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let mut cmd = Command::new(COORDINATOR);
        cmd.arg("run")
            .args(args)
            .env("WORKPOOL_WORKER", WORKER)
            .env_remove("WORKPOOL_BROKER")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("cannot create stdout file"))
            .stderr(File::create(&stderr).expect("cannot create stderr file"));
        let child = die_with_parent(&mut cmd)
            .spawn()
            .expect("cannot start coordinator");
        Background {
            child,
            status: None,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on coordinator");
        }
        self.status
    }

    /// Waits until stdout holds `lines` complete lines (or the run ended).
    #[track_caller]
    pub(crate) fn wait_for_lines(&mut self, lines: usize) {
        let started = Instant::now();
        while lines_in(&self.stdout) < lines && self.poll().is_none() {
            assert!(
                started.elapsed() < RUN_LIMIT,
                "fewer than {lines} outcomes after {RUN_LIMIT:?}\n--- stderr ---\n{}",
                self.stderr()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the run to end; after [`RUN_LIMIT`], kills it and fails the test.
    #[track_caller]
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.poll() {
                return status;
            }
            if started.elapsed() > RUN_LIMIT {
                kill_and_reap(&mut self.child, &mut self.status);
                panic!(
                    "coordinator still running after {RUN_LIMIT:?}; killed it\n\
                     --- stderr ---\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for the run to end with exit code `code`, and parses its jsonl output.
    #[track_caller]
    pub(crate) fn finish(&mut self, code: i32) -> Run {
        let status = self.wait();
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(code),
            "exit status\n--- stdout ---\n{text}\n--- stderr ---\n{}",
            self.stderr()
        );
        parse_jsonl(&text)
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends `signal` (SIGINT, SIGTERM...) to the running coordinator.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        assert!(self.status.is_none(), "the coordinator was reaped");
        let pid = i32::try_from(self.child.id()).expect("pid out of range");
        // SAFETY: kill only sends a signal, to our own child that is not yet reaped.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill({pid}, {signal})");
    }

    /// SIGKILL: the coordinator gets no chance to clean up.
    pub(crate) fn kill(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child, &mut self.status);
    }
}

/// Complete lines written to `path` so far.
pub(crate) fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count())
}

/// `ARGS --backend redis --broker URL --format jsonl`.
pub(crate) fn on_broker<'a>(args: &[&'a str], url: &'a str) -> Vec<&'a str> {
    [
        args,
        &["--backend", "redis", "--broker", url, "--format", "jsonl"],
    ]
    .concat()
}

/// `coordinator run ARGS` on the broker at `url`, expected to exit `code`, parsed.
#[track_caller]
pub(crate) fn run_on(url: &str, code: i32, args: &[&str]) -> Run {
    let out = output(
        coordinator()
            .env_remove("WORKPOOL_BROKER")
            .arg("run")
            .args(on_broker(args, url)),
    );
    assert_exit(&out, code);
    parse_jsonl(&stdout(&out))
}

/// `coordinator run ARGS --format jsonl` on the process backend, expected to exit `code`.
#[track_caller]
pub(crate) fn run_on_processes(code: i32, args: &[&str]) -> Run {
    let out = run_output(&[args, &["--backend", "process", "--format", "jsonl"]].concat());
    assert_exit(&out, code);
    parse_jsonl(&stdout(&out))
}

pub(crate) fn kind(record: &Json) -> &str {
    record["error"]["kind"].as_str().unwrap_or("")
}

/// What a task's outcome is, whatever ran it and when: index, input, ok, value, error
/// kind and attempts.
pub(crate) fn outcome(record: &Json) -> Json {
    serde_json::json!({
        "index": record["index"],
        "input": record["input"],
        "ok": record["ok"],
        "value": record.get("value").cloned().unwrap_or(Json::Null),
        "kind": kind(record),
        "attempts": record["attempts"],
    })
}

/// The outcomes of a run by index, asserting each index appears exactly once.
#[track_caller]
pub(crate) fn outcomes_by_index(run: &Run) -> BTreeMap<u64, Json> {
    let mut by_index = BTreeMap::new();
    for record in &run.records {
        let index = record["index"].as_u64().expect("index");
        let earlier = by_index.insert(index, outcome(record));
        assert!(earlier.is_none(), "index {index} reported twice: {record}");
    }
    by_index
}

/// The distinct pids that ran the run's tasks (cancelled records ran nowhere).
pub(crate) fn pids_of(run: &Run) -> BTreeSet<u64> {
    run.records
        .iter()
        .filter_map(|record| record["pid"].as_u64())
        .collect()
}

/// `T00,T01,...` with `count` tickers starting with `prefix`.
pub(crate) fn tickers(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| format!("{prefix}{i:02}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How many entries the tasks stream holds: batches waiting, or taken and not finished.
pub(crate) fn tasks_queued(con: &mut redis::Connection) -> usize {
    redis::cmd("XLEN")
        .arg(workpool::broker::TASKS_STREAM)
        .query(con)
        .expect("XLEN")
}

/// Entries taken and not yet acknowledged, over every worker.
pub(crate) fn pending(con: &mut redis::Connection) -> usize {
    let summary: (usize, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(workpool::broker::TASKS_STREAM)
        .arg(workpool::broker::GROUP)
        .query(con)
        .expect("XPENDING");
    summary.0
}

/// Takes every new task entry as `consumer`, which never acknowledges them: a worker that
/// died holding them.
pub(crate) fn take_unacknowledged(con: &mut redis::Connection, consumer: &str) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(workpool::broker::GROUP)
        .arg(consumer)
        .arg("STREAMS")
        .arg(workpool::broker::TASKS_STREAM)
        .arg(">")
        .query(con)
        .expect("XREADGROUP");
}

/// A connection for looking at the broker's state directly.
pub(crate) fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("cannot parse the broker URL")
        .get_connection_with_timeout(START_LIMIT)
        .expect("cannot connect to the broker")
}

/// The run's settings key, once its coordinator has registered it.
#[track_caller]
pub(crate) fn wait_for_run_key(con: &mut redis::Connection) -> String {
    let started = Instant::now();
    loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("workpool:run:*")
            .query(con)
            .expect("KEYS");
        if let Some(key) = keys.into_iter().find(|k| !k.ends_with(":results")) {
            return key;
        }
        assert!(started.elapsed() < START_LIMIT, "the run never registered");
        std::thread::sleep(POLL);
    }
}

/// Whether process `pid` is still running (a zombie is not: it only waits to be reaped).
pub(crate) fn is_running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) state ...`: the state follows the last `)`.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}
