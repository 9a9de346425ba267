//! Shared fixtures for the integration tests: a broker process per test and
//! helpers to run external programs (Python interop scripts, mosquitto
//! clients) with a time limit.
//!
//! By default the broker under test is this crate's `mqttd` binary, started as
//! `mqttd --tcp 127.0.0.1:0 --quic 127.0.0.1:0 --data-dir TMP --listening-file TMP/listening`,
//! and the ports are read from that file. Setting `MQTTD_TEST_BROKER=mosquitto` runs the
//! same tests against Debian's `mosquitto` instead, which is how the harness
//! itself is validated against a reference broker (`MQTTD_TEST_MOSQUITTO`
//! can point at another mosquitto executable).
//!
//! Broker stdout/stderr go to a log file in a temporary directory. When a test
//! panics while a [`TestBroker`] is alive, the directory is kept, its path is
//! printed and the tail of the log is echoed to stderr.

#![allow(dead_code)]

pub mod listening;
pub mod raw;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a freshly spawned broker may take to accept TCP connections.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker may take to exit after SIGTERM before it is killed.
const BROKER_STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts to start a broker. mosquitto only: it gets a port picked as free, which someone
/// else can take before it binds it (mqttd binds port 0 and reports the port).
const BROKER_START_ATTEMPTS: usize = 3;

/// Which broker implementation the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// This crate's `mqttd` binary (the default).
    Mqttd,
    /// Debian's `mosquitto`, selected by `MQTTD_TEST_BROKER=mosquitto`.
    Mosquitto,
}

impl BrokerKind {
    /// The broker selected by the `MQTTD_TEST_BROKER` environment variable.
    pub fn from_env() -> BrokerKind {
        match std::env::var("MQTTD_TEST_BROKER").as_deref() {
            Err(_) | Ok("") | Ok("mqttd") => BrokerKind::Mqttd,
            Ok("mosquitto") => BrokerKind::Mosquitto,
            Ok(other) => panic!("MQTTD_TEST_BROKER={other:?}: expected \"mqttd\" or \"mosquitto\""),
        }
    }
}

/// A broker process listening on a loopback port, stopped when dropped.
pub struct TestBroker {
    /// The address the broker accepts MQTT over TCP on.
    pub addr: SocketAddr,
    /// mqttd only: the UDP address of its QUIC listener and the certificate it presents.
    pub quic_addr: Option<SocketAddr>,
    /// mqttd only, with `--mqtts 127.0.0.1:0` among the arguments: its MQTTS address.
    pub mqtts_addr: Option<SocketAddr>,
    pub cert_path: Option<PathBuf>,
    /// mqttd only: the admin HTTP API (`--admin`), on its own free port unless the test
    /// passed `--admin` itself.
    pub admin_addr: Option<SocketAddr>,
    /// Which implementation is running.
    pub kind: BrokerKind,
    child: Child,
    log_path: PathBuf,
    /// Holds the log (and mosquitto's config); `None` once kept on failure.
    dir: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// Starts the broker selected by `MQTTD_TEST_BROKER` on a free loopback
    /// port and waits until it accepts TCP connections. Panics (showing the
    /// broker log) if it does not come up.
    pub fn start() -> TestBroker {
        Self::start_with_args(&[])
    }

    /// [`TestBroker::start`] with more command-line arguments for mqttd (ignored for
    /// mosquitto), e.g. `["--server-id", "0a01"]`.
    pub fn start_with_args(extra: &[&str]) -> TestBroker {
        let kind = BrokerKind::from_env();
        let mut last_error = String::new();
        for attempt in 1..=BROKER_START_ATTEMPTS {
            match Self::try_start(kind, extra) {
                Ok(broker) => return broker,
                Err(error) => {
                    eprintln!("broker start attempt {attempt} failed: {error}");
                    last_error = error;
                }
            }
        }
        panic!("could not start the {kind:?} broker: {last_error}");
    }

    fn try_start(kind: BrokerKind, extra: &[&str]) -> Result<TestBroker, String> {
        let dir = tempfile::Builder::new()
            .prefix("mqttd-test-broker-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let log_path = dir.path().join("broker.log");
        let log = File::create(&log_path).map_err(|e| format!("cannot create the log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log: {e}"))?;

        let (mut addr, mut cert_path) = (None, None);
        let listening_file = dir.path().join("listening");
        let mut admin_addr = None;
        let mut command = match kind {
            BrokerKind::Mqttd => {
                // Its own ports and data directory, so brokers of parallel tests never share
                // the default 1884 or a generated certificate.
                let data_dir = dir.path().join("data");
                cert_path = Some(data_dir.join("cert.pem"));
                let mut command = Command::new(env!("CARGO_BIN_EXE_mqttd"));
                command.args(["--tcp", "127.0.0.1:0", "--quic", "127.0.0.1:0"]);
                command.arg("--data-dir").arg(&data_dir);
                command.arg("--listening-file").arg(&listening_file);
                if !extra.contains(&"--admin") {
                    let admin = free_loopback_addr();
                    admin_addr = Some(admin);
                    command.arg("--admin").arg(admin.to_string());
                }
                command.args(extra);
                command
            }
            BrokerKind::Mosquitto => {
                let free = free_loopback_addr();
                addr = Some(free);
                let conf_path = dir.path().join("mosquitto.conf");
                std::fs::write(&conf_path, mosquitto_config(free))
                    .map_err(|e| format!("cannot write the mosquitto config: {e}"))?;
                let mut command = Command::new(mosquitto_binary());
                command.arg("-c").arg(&conf_path);
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot spawn {command:?}: {e}"))?;
        let mut listening = listening::Listening::default();
        if kind == BrokerKind::Mqttd {
            listening =
                listening::Listening::wait_for(&mut child, &listening_file, BROKER_START_TIMEOUT)
                    .map_err(|e| {
                    let _ = child.kill();
                    format!("{e}; log {}", log_path.display())
                })?;
            addr = listening.tcp;
        }
        let addr = addr.ok_or("mqttd reported no TCP listener")?;

        let mut broker = TestBroker {
            addr,
            quic_addr: listening.quic,
            mqtts_addr: listening.mqtts,
            cert_path,
            admin_addr,
            kind,
            child,
            log_path,
            dir: Some(dir),
        };
        if let Err(error) = broker.wait_until_accepting() {
            // Keep the log the error message points at.
            if let Some(dir) = broker.dir.take() {
                let _ = dir.keep();
            }
            return Err(error);
        }
        Ok(broker)
    }

    fn wait_until_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "the broker exited with {status} before accepting connections; log {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(40)
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                // The port answered: make sure it is our process that bound it.
                thread::sleep(Duration::from_millis(20));
                if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                    return Err(format!("the broker exited with {status} right after start"));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the broker did not accept connections on {} within {:?}; log {}:\n{}",
                    self.addr,
                    BROKER_START_TIMEOUT,
                    self.log_path.display(),
                    self.log_tail(40)
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port as a string, for command-line clients.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// The host as a string, for command-line clients.
    pub fn host(&self) -> String {
        self.addr.ip().to_string()
    }

    /// Path of the broker's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the broker log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = File::open(&self.log_path) else {
            return String::from("<no log>");
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Errors if the broker process has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the broker process exited with {status}; log {}:\n{}",
                self.log_path.display(),
                self.log_tail(40)
            )),
            Err(e) => Err(format!("cannot query the broker process: {e}")),
        }
    }

    /// Stops the broker: SIGTERM (a clean shutdown), SIGKILL if it does not exit in time.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGTERM first so the broker can shut down the way it does in production.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + BROKER_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "broker pid {} did not exit within {:?} of SIGTERM; killing it",
            self.child.id(),
            BROKER_STOP_TIMEOUT
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "---- {:?} broker log kept at {} (last lines below) ----\n{}\n---- end of broker log ----",
                    self.kind,
                    kept.join("broker.log").display(),
                    self.log_tail(60)
                );
            }
        }
    }
}

/// A loopback address whose port was free a moment ago: for mosquitto, and for tests that need
/// a port nobody listens on. mqttd brokers bind port 0 instead.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// The mosquitto executable: `MQTTD_TEST_MOSQUITTO` if set (to try another
/// mosquitto build), else Debian's.
fn mosquitto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MQTTD_TEST_MOSQUITTO").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

/// A mosquitto configuration with default broker behaviour on one loopback
/// listener, anonymous access and no persistence, logging to stderr.
fn mosquitto_config(addr: SocketAddr) -> String {
    format!(
        "listener {port} {ip}\n\
         allow_anonymous true\n\
         persistence false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n",
        port = addr.port(),
        ip = addr.ip()
    )
}

/// The Python interpreter of the test venv: `MQTTD_TEST_PYTHON`, or else
/// `target/test-venv/bin/python` (created by `tests/run-all.sh`).
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("MQTTD_TEST_PYTHON").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "MQTTD_TEST_PYTHON={} does not exist; run tests/run-all.sh first",
            path.display()
        );
        return path;
    }
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        fallback.exists(),
        "no Python test venv: MQTTD_TEST_PYTHON is unset and {} is missing; \
         run tests/run-all.sh first (it creates the venv with paho-mqtt)",
        fallback.display()
    );
    fallback
}

/// Directory of the Python interop scripts.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// What a finished (or timed-out) external program produced.
#[derive(Debug)]
pub struct ProgramOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status; `None` if the program was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ProgramOutput {
    /// True if the program exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A readable dump of everything the program produced.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(status) => status.to_string(),
            None => "killed at its time limit".to_string(),
        };
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.command, status, self.stdout, self.stderr
        )
    }
}

/// A running external program. Its stdout is read line by line in the
/// background (so a test can wait for a line such as a subscriber's "received
/// SUBACK"); stderr is collected whole.
pub struct RunningProgram {
    command: String,
    child: Child,
    stdout_lines: mpsc::Receiver<String>,
    stdout_seen: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl RunningProgram {
    /// Spawns `command` with stdin closed and stdout/stderr captured.
    pub fn spawn(command: &mut Command) -> RunningProgram {
        let description = format!("{command:?}");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {description}: {e}"));
        let (sender, stdout_lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child
            .stderr
            .take()
            .map(|s| thread::spawn(move || read_all(s)));
        RunningProgram {
            command: description,
            child,
            stdout_lines,
            stdout_seen: Vec::new(),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"KILL"`, `"TERM"`, ...) to the program.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} {} failed",
            self.child.id()
        );
    }

    /// Waits up to `timeout` for a stdout line matching `wanted` and returns
    /// it; on timeout or end of output returns an error describing what the
    /// program printed so far.
    pub fn wait_for_line(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_seen.push(line.clone());
                    if wanted(&line) {
                        return Ok(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no such line from {} within {timeout:?}; stdout so far:\n{}",
                        self.command,
                        self.stdout_seen.join("\n")
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    return Err(format!(
                        "{} closed its output (status {status:?}) without such a line; stdout:\n{}",
                        self.command,
                        self.stdout_seen.join("\n")
                    ));
                }
            }
        }
    }

    /// Waits up to `timeout` for the program to exit (killing it after that)
    /// and returns its output.
    pub fn wait(mut self, timeout: Duration) -> ProgramOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for {}: {e}", self.command),
            }
        };
        // The process is gone, so its stdout reaches end of file shortly.
        while let Ok(line) = self.stdout_lines.recv_timeout(Duration::from_secs(2)) {
            self.stdout_seen.push(line);
        }
        let mut stdout = self.stdout_seen.join("\n");
        if !stdout.is_empty() {
            stdout.push('\n');
        }
        ProgramOutput {
            command: self.command.clone(),
            status,
            stdout,
            stderr: self.stderr.take().map(join_output).unwrap_or_default(),
        }
    }
}

impl Drop for RunningProgram {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_all(mut source: impl Read) -> String {
    let mut bytes = Vec::new();
    let _ = source.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn join_output(handle: thread::JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| String::from("<reader panicked>"))
}

/// Runs `command` to completion with a time limit (killed at the limit).
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> ProgramOutput {
    RunningProgram::spawn(command).wait(timeout)
}

/// Runs `tests/interop/<script>` with the venv Python and `args`, killing it
/// after `timeout`.
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> ProgramOutput {
    let script_path = interop_dir().join(script);
    assert!(
        script_path.exists(),
        "missing script {}",
        script_path.display()
    );
    let mut command = Command::new(python());
    command
        .arg("-u")
        .arg(&script_path)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    run_with_timeout(&mut command, timeout)
}

/// Prints a line to stderr immediately (test output is captured per test).
pub fn note(message: impl AsRef<str>) {
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "{}", message.as_ref());
}

/// A name unique within this test run, for client ids and topics.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
