//! The command line: every command and flag, with the help text users see.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load testing and reliability verification for RabbitMQ.
///
/// A scenario file (TOML) describes a run: the broker, the topology, publishers and
/// consumers, faults on a timeline, and the gates that decide the exit code.
/// Exit codes: 0 all gates pass, 1 a gate failed, 2 bad input, 3 infrastructure failure,
/// 130 interrupted.
#[derive(Debug, Parser)]
#[command(
    name = "warren",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides it
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// warren's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: bring up the broker, drive the workload, inject faults, verify, report
    Run(RunArgs),
    /// Run a scenario's [sweep]: one measured step per target rate on the same broker;
    /// prints the highest rate that met the objective (exit 0), or exit 1 when none did
    Sweep(RunArgs),
    /// Check scenario files without running anything (exit 0 when all are valid, 2 otherwise)
    Validate(ValidateArgs),
    /// Start, inspect or stop a private RabbitMQ node or cluster, for exploring by hand
    Broker(BrokerArgs),
    /// Serve a Toxiproxy-compatible HTTP API (Toxiproxy 2.x) with warren's proxy engine, until Ctrl-C
    Toxiproxy(ToxiproxyArgs),
    /// Rebuild report.html, the CSV files and junit.xml of a run folder from its summary.json
    /// (of a sweep folder: report.html and capacity.csv from its sweep.json)
    Report(ReportArgs),
    /// Compare two runs side by side; with --fail-on-regression, exit 1 when the second is worse
    Compare(CompareArgs),
    /// Merge the run folders of the workers of one run (`warren run --worker I/N`) into the
    /// run folder one machine would have written: one exact verdict, the report, the gates' exit code
    Merge(MergeArgs),
}

/// `warren merge`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The workers' run folders (each holding worker-results.json), or a folder holding
    /// them as worker-0, worker-1... (every index up to the count the workers were given
    /// is expected)
    #[arg(required = true)]
    pub workers: Vec<PathBuf>,

    /// Wait up to this long (like "30m") for workers still running elsewhere to write
    /// their results, as the Kubernetes merge Job does; a worker whose results say it did
    /// not complete ends the wait at once
    #[arg(long, value_parser = parse_duration_arg)]
    pub wait: Option<Duration>,

    /// Folder for the merged run
    #[arg(long)]
    pub out: PathBuf,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// `warren report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run folder (holding summary.json) or a sweep folder (holding sweep.json)
    pub run: PathBuf,
}

/// `warren compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The run compared against (a run folder)
    pub baseline: PathBuf,
    /// The run being judged (a run folder)
    pub candidate: PathBuf,
    /// Exit 1 when delivered throughput fell, or p99 end-to-end latency rose, by more than this many percent
    #[arg(long, value_name = "PCT")]
    pub fail_on_regression: Option<f64>,
}

/// `warren toxiproxy`
#[derive(Debug, Args)]
pub struct ToxiproxyArgs {
    /// Address of the HTTP API
    #[arg(long, default_value = "127.0.0.1:8474")]
    pub listen: String,
}

/// `warren run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML)
    pub scenario: PathBuf,

    /// Run for this long instead of the scenario's duration (in a sweep: each step's), like "10s" or "2m"
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,

    /// Client threads, each owning a share of the publishers and consumers [default: the scenario's `threads`, else 1]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,

    /// Folder for this run's results [default: <report.dir>/<scenario>-<UTC timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,

    /// Keep the private nodes' data and logs after the run (their folder is printed)
    #[arg(long)]
    pub keep: bool,

    /// Turn the ledgers off (counts and latency histograms only), to measure what
    /// verification costs; nothing is checked for loss, duplication or order
    #[arg(long)]
    pub no_verify: bool,

    /// Live progress: a bar on a terminal, plain lines otherwise (auto), or always one of them
    #[arg(long, value_enum, default_value_t = ProgressStyle::Auto)]
    pub progress: ProgressStyle,

    /// Run share I of N workers of one run (0-based; worker 0 declares the topology and
    /// injects node faults) [env: JOB_COMPLETION_INDEX and WARREN_WORKERS]
    #[arg(long, value_name = "I/N", value_parser = crate::share::Share::parse)]
    pub worker: Option<crate::share::Share>,

    /// The id the workers of one run share (letters, digits, '.', '_', '-') [env: WARREN_RUN_ID]
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,

    /// How long a worker waits for the others at each meeting before failing (exit 3)
    #[arg(long, value_parser = parse_duration_arg, default_value = "120s")]
    pub barrier_timeout: Duration,

    /// Use this broker instead of the scenario's [broker] (repeat for each node): how the
    /// other workers reach the private nodes worker 0 runs, and how Kubernetes pods get
    /// the broker from a Secret (the variable may hold several URIs, space-separated)
    #[arg(
        long,
        value_name = "URI",
        env = "WARREN_BROKER_URI",
        hide_env_values = true,
        value_delimiter = ' '
    )]
    pub broker_uri: Vec<String>,

    /// AMQP port of the first private node (the others take the next ports)
    #[arg(long)]
    pub port: Option<u16>,

    /// Serve live Prometheus metrics (OpenMetrics text at /metrics) on this address while
    /// the run goes: 127.0.0.1:9464, localhost:9464, [::1]:9464 or :9464 (every
    /// interface); port 0 picks a free one [default: the scenario's report.metrics_listen]
    #[arg(long, value_name = "ADDR", value_parser = crate::listen::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// After the run, keep serving metrics until Prometheus has scraped the final figures
    /// (the verdict), for at most this long
    #[arg(long, value_parser = parse_duration_arg, default_value = "30s")]
    pub metrics_linger: Duration,
}

/// How live progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressStyle {
    /// A bar when stdout is a terminal, plain lines otherwise
    Auto,
    /// A bar
    Bar,
    /// One line a second
    Plain,
}

/// `warren validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario files to check
    #[arg(required = true)]
    pub scenarios: Vec<PathBuf>,
}

/// `warren broker`
#[derive(Debug, Args)]
pub struct BrokerArgs {
    #[command(subcommand)]
    pub command: BrokerCommand,

    /// State file recording the private broker [env: WARREN_STATE_FILE]
    /// [default: $XDG_STATE_HOME/warren/broker.json or ~/.local/state/warren/broker.json]
    #[arg(long, global = true)]
    pub state_file: Option<PathBuf>,
}

/// `warren broker ...`
#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Start a private node or cluster, print its AMQP URIs and run until Ctrl-C
    Up(BrokerUpArgs),
    /// List the private nodes with their state, ending with "N of M nodes running"
    Status,
    /// Stop the private nodes started with `warren broker up --detach`
    Down,
    /// Run rabbitmqctl against the first recorded node (its cookie, port mapper and
    /// account), e.g. `warren broker ctl -- add_user alice s3cret`
    Ctl(BrokerCtlArgs),
}

/// `warren broker ctl`
#[derive(Debug, Args)]
pub struct BrokerCtlArgs {
    /// rabbitmqctl's arguments (after `--`)
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `warren broker up`
#[derive(Debug, Args)]
pub struct BrokerUpArgs {
    /// Number of nodes: 1, or a cluster of 3 or 5
    #[arg(long, default_value_t = 1, value_parser = parse_cluster_size)]
    pub nodes: usize,

    /// AMQP port of the first node (the others take the next ports) [default: free ports]
    #[arg(long)]
    pub port: Option<u16>,

    /// Leave the nodes running and return; stop them later with `warren broker down`
    #[arg(long)]
    pub detach: bool,

    /// Keep the nodes' data and logs when they are stopped
    #[arg(long)]
    pub keep: bool,

    /// Start RabbitMQ from this root file system (made by `scripts/rabbitmq.sh 4.0`)
    /// instead of this machine's install; needs root
    #[arg(long, env = "WARREN_RABBITMQ_ROOT", value_name = "DIR")]
    pub rabbitmq_root: Option<std::path::PathBuf>,

    /// Nodes speak TLS only (amqps), with a CA made for them; its file is printed
    #[arg(long)]
    pub tls: bool,

    /// With --tls: nodes demand a client certificate (one from the same CA is printed)
    #[arg(long, requires = "tls")]
    pub tls_client_auth: bool,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    let duration = crate::scenario::units::parse_duration(text)?;
    if duration.is_zero() {
        return Err("expected a duration longer than zero".into());
    }
    Ok(duration)
}

fn parse_cluster_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ (1 | 3 | 5)) => Ok(n),
        _ => Err("expected 1, or a cluster of 3 or 5 nodes".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn cluster_sizes_other_than_1_3_5_are_refused() {
        assert!(Cli::try_parse_from(["warren", "broker", "up", "--nodes", "2"]).is_err());
        assert!(Cli::try_parse_from(["warren", "broker", "up", "--nodes", "3"]).is_ok());
    }
}
