//! Signals and liveness checks for broker processes, by pid: used for nodes warren started
//! in this process and for detached nodes found again through the state file.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// Sends `signal` to one process; false when it does not exist any more.
pub fn signal(pid: u32, signal: Signal) -> bool {
    kill(Pid::from_raw(pid as i32), signal).is_ok()
}

/// Sends `signal` to a whole process group (a node and the helpers the VM started).
pub fn signal_group(pgid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), signal);
}

/// The one-letter state of a process from /proc (R, S, T for stopped, Z for zombie).
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// True while the process exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The process's command line, arguments joined by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// True when `pid` is still the Erlang VM of node `node_name` (guards against pid reuse
/// before signalling a process named in an old state file).
pub fn is_node_vm(pid: u32, node_name: &str, base_dir: &Path) -> bool {
    command_line(pid).is_some_and(|cmd| {
        cmd.contains("beam")
            && (cmd.contains(node_name) || cmd.contains(&*base_dir.to_string_lossy()))
    })
}

/// Polls until `pid` is gone or `timeout` passes; true when gone.
pub async fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while is_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Makes the child die with SIGKILL when the thread that started it exits, so that even
/// a warren killed with SIGKILL leaves no Erlang VM behind. Not used for detached nodes.
#[allow(unsafe_code)]
pub fn die_with_parent(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}
