//! Helpers of both integration targets (tests/integration, the fast tier, and
//! tests/broker): a scratch folder per test, the warren binary, waiting for output lines,
//! the leak check (no process may still mention a test's folder), and each broker test's
//! share of the machine. Each target uses part of them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The scenario library's folder.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A scenario header line's value: `# key: value`.
pub fn scenario_header(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("# {key}: "))
            .map(str::trim)
            .map(str::to_string)
    })
}

/// The folder of the Kubernetes manifests.
pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");

/// A manifest of deploy/kubernetes/, parsed.
pub fn deploy_yaml(name: &str) -> serde_yaml::Value {
    let path = Path::new(DEPLOY).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What a broker test puts on the 2-core machine while it runs, in units, for
/// [`machine_share`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// One private node (or an external or scripted broker) and one warren: one unit.
    Node,
    /// One node and more than one warren's work: several warren processes, thousands of
    /// clients, or a verdict on throughput: two units.
    Several,
    /// A 3-node cluster: three units, and one cluster at a time unless
    /// `WARREN_TEST_CLUSTERS` says more (six Erlang VMs and two warrens on two cores once
    /// made rabbitmqctl take tens of seconds).
    Cluster,
}

impl Load {
    fn units(self) -> usize {
        match self {
            Load::Node => 1,
            Load::Several => 2,
            Load::Cluster => 3,
        }
    }
}

/// A test's share of the machine, given back when dropped (a panicking test's too).
pub struct MachineShare {
    load: Load,
    test: String,
    since: Instant,
}

/// Appends `seconds<TAB>load<TAB>test` to the file `WARREN_TEST_TIMES` names, if any:
/// how long each broker test held its share (scripts/test.sh prints the longest).
fn record_time(share: &MachineShare) {
    use std::io::Write;
    let Some(path) = std::env::var_os("WARREN_TEST_TIMES") else {
        return;
    };
    let line = format!(
        "{:.1}\t{:?}\t{}\n",
        share.since.elapsed().as_secs_f64(),
        share.load,
        share.test
    );
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// A whole number from the environment variable `name`, at least `least`, else `default`.
fn env_count(name: &str, least: usize, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|value: &usize| *value >= least)
        .unwrap_or(default)
}

/// The units broker tests may hold at once: `WARREN_TEST_UNITS`, else 5 (a cluster beside
/// two one-node tests, or five one-node tests). Broker tests mostly wait on their
/// timelines, so this, not libtest's thread count, bounds what runs at once
/// (scripts/test.sh gives libtest a thread for every test).
fn machine_units() -> usize {
    env_count("WARREN_TEST_UNITS", Load::Cluster.units(), 5)
}

/// The clusters that may run at once: `WARREN_TEST_CLUSTERS`, else 1.
fn cluster_lanes() -> usize {
    env_count("WARREN_TEST_CLUSTERS", 1, 1)
}

struct Shares {
    held: usize,
    clusters_running: usize,
    clusters_waiting: usize,
}

static SHARES: std::sync::Mutex<Shares> = std::sync::Mutex::new(Shares {
    held: 0,
    clusters_running: 0,
    clusters_waiting: 0,
});
static SHARE_FREED: std::sync::Condvar = std::sync::Condvar::new();

fn shares() -> std::sync::MutexGuard<'static, Shares> {
    SHARES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until the machine has room for a test of `load`, and holds it until the share is
/// dropped. The clusters form the suite's longest chain, so they go first: while one waits
/// for the cluster before it to end, other tests leave it the units it needs.
pub fn machine_share(load: Load) -> MachineShare {
    let capacity = machine_units();
    let lanes = cluster_lanes();
    let mut shares = shares();
    if load == Load::Cluster {
        shares.clusters_waiting += 1;
    }
    loop {
        let free = capacity - shares.held;
        let fits = if load == Load::Cluster {
            shares.clusters_running < lanes && free >= load.units()
        } else {
            let reserved = if shares.clusters_waiting > 0 && shares.clusters_running < lanes {
                Load::Cluster.units()
            } else {
                0
            };
            free >= load.units() + reserved
        };
        if fits {
            break;
        }
        shares = SHARE_FREED
            .wait(shares)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    shares.held += load.units();
    if load == Load::Cluster {
        shares.clusters_waiting -= 1;
        shares.clusters_running += 1;
    }
    MachineShare {
        load,
        test: std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string(),
        since: Instant::now(),
    }
}

impl Drop for MachineShare {
    fn drop(&mut self) {
        record_time(self);
        let mut shares = shares();
        shares.held -= self.load.units();
        if self.load == Load::Cluster {
            shares.clusters_running -= 1;
        }
        SHARE_FREED.notify_all();
    }
}

/// The options of a private node or cluster of `nodes` under `scratch`.
pub fn cluster_options(scratch: &Scratch, nodes: usize) -> warren::broker::ClusterOptions {
    warren::broker::ClusterOptions {
        nodes,
        first_port: None,
        keep: false,
        detachable: false,
        parent_dir: Some(scratch.tmp()),
        partitionable: false,
        // The version leg (`scripts/test.sh --rabbitmq 4.0`) names another root here.
        rabbitmq_root: warren::broker::RabbitRoot::path_from_env(),
        tls: None,
    }
}

/// The release private nodes run in this test run: the one of `$WARREN_RABBITMQ_ROOT` on
/// the version leg, else this machine's, read from the install's files.
pub fn installed_rabbitmq_version() -> String {
    let root = warren::broker::RabbitRoot::path_from_env()
        .map(|path| warren::broker::RabbitRoot::open(&path).unwrap_or_else(|e| panic!("{e}")));
    warren::broker::RabbitInstall::locate(root.as_ref())
        .unwrap_or_else(|e| panic!("{e}"))
        .version
        .expect("the install names its release")
        .to_string()
}

/// A private node (or cluster of `nodes`) under `scratch`, started.
pub async fn started_cluster(scratch: &Scratch, nodes: usize) -> warren::broker::ManagedCluster {
    warren::broker::ManagedCluster::start(
        cluster_options(scratch, nodes),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A folder of one test, removed when the test ends, and the test's share of the machine
/// (given back after the folder's processes are killed).
pub struct Scratch {
    pub path: PathBuf,
    _share: MachineShare,
}

impl Scratch {
    /// Makes `<temp>/warren-it-<name>-<pid>-<n>` (traversable by the rabbitmq user) once
    /// the machine has room for a one-node test.
    pub fn new(name: &str) -> Self {
        Self::with_load(name, Load::Node)
    }

    /// Like [`Scratch::new`], for a test of a 3-node cluster ([`Load::Cluster`]).
    pub fn cluster(name: &str) -> Self {
        Self::with_load(name, Load::Cluster)
    }

    /// Like [`Scratch::new`], for a test of several warrens, thousands of clients or a
    /// verdict on throughput ([`Load::Several`]).
    pub fn several(name: &str) -> Self {
        Self::with_load(name, Load::Several)
    }

    /// Like [`Scratch::new`], for a test of `load`.
    pub fn with_load(name: &str, load: Load) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let share = machine_share(load);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("warren-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("tmp")).unwrap();
        for dir in [&path, &path.join("tmp")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self {
            path,
            _share: share,
        }
    }

    /// The folder given to warren as TMPDIR: where it makes node folders.
    pub fn tmp(&self) -> PathBuf {
        self.path.join("tmp")
    }

    /// Writes a file in the scratch folder and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `warren run SCENARIO --out OUT`, making node folders under this folder.
    pub fn warren_run(&self, scenario: &Path, out: &Path) -> Command {
        let mut command = warren();
        command
            .env("TMPDIR", self.tmp())
            .arg("run")
            .arg(scenario)
            .arg("--out")
            .arg(out);
        command
    }

    /// Entries left in the TMPDIR folder (node folders that were not removed).
    pub fn tmp_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp())
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that no process runs from or mentions this folder, and no node folder is left.
    pub fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = processes_mentioning(&self.path);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = processes_mentioning(&self.path);
        }
        assert!(left.is_empty(), "processes left behind: {left:#?}");
        assert!(
            self.tmp_entries().is_empty(),
            "folders left behind: {:?}",
            self.tmp_entries()
        );
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort, and never a panic: a panic in a destructor while a test unwinds
        // aborts every test of the binary (it did, when /proc could not be read for
        // want of file descriptors).
        for (pid, _) in try_processes_mentioning(&self.path).unwrap_or_default() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Live (non-zombie) processes whose command line, working folder or environment mentions
/// `dir`.
pub fn processes_mentioning(dir: &Path) -> Vec<(u32, String)> {
    try_processes_mentioning(dir).unwrap_or_else(|e| panic!("reading /proc: {e}"))
}

/// [`processes_mentioning`], or why /proc could not be read.
fn try_processes_mentioning(dir: &Path) -> std::io::Result<Vec<(u32, String)>> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A daemon (an `epmd -daemon` some Erlang VM of ours started) has neither: its
        // environment still names our folder.
        let environ = std::fs::read(entry.path().join("environ"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if cmdline.contains(&needle) || cwd.starts_with(&needle) || environ.contains(&needle) {
            found.push((pid, format!("{cmdline} (cwd {cwd})")));
        }
    }
    Ok(found)
}

/// The warren binary built for these tests.
pub fn warren() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
    command
        .env_remove("WARREN_STATE_FILE")
        .env_remove("WARREN_RABBITMQ_BIN")
        .env("RUST_LOG", "warn");
    command
}

/// `warren broker ARGS` with the scratch folder's temp folder and state file.
pub fn broker_command(scratch: &Scratch, args: &[&str]) -> Command {
    let mut command = warren();
    command
        .env("TMPDIR", scratch.tmp())
        .env("WARREN_STATE_FILE", scratch.path.join("state.json"))
        .arg("broker")
        .args(args);
    command
}

/// A running warren whose output lines arrive on a channel.
pub struct Running {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `command` with piped output.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdout: rx,
            seen: Vec::new(),
        }
    }

    /// Waits until a line containing `text` is printed; panics with what was seen otherwise.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {timeout:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends a signal by name (INT, TERM) to warren.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for warren to exit, at most `timeout`; returns its exit code and the rest of its output.
    pub fn finish(mut self, timeout: Duration) -> (i32, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), std::mem::take(&mut self.seen));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                while let Ok(line) = self.stdout.try_recv() {
                    self.seen.push(line);
                }
                panic!(
                    "warren did not exit within {timeout:?}; output {:#?}",
                    std::mem::take(&mut self.seen)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave warren running (it would hold the test's pipes).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion; returns exit code, stdout and stderr.
pub fn output(mut command: Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP port on loopback that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
