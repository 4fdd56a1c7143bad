//! Which worker folders `warren merge` reads, and waiting for them to be written.
//!
//! Each folder named on the command line is either a worker folder (it holds
//! `worker-results.json`, or its name ends in `worker-<index>`) or a folder of worker
//! folders named `worker-0`, `worker-1`... as `scripts/workers.sh` and the Kubernetes Job
//! write them. For a folder of worker folders the number of workers is learned from the
//! first results found there, so `worker-0` to `worker-<N-1>` are all expected even when
//! some never appear.
//!
//! Workers on other machines finish at their own pace: with a wait, the merge polls the
//! file system (a shared volume may not deliver change events) until every expected
//! folder holds results, until one of them says its worker did not complete (the merge
//! fails anyway), or until the wait is over; whatever is missing then is named by the
//! merge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::results::FILE;

/// How often the folders are looked at again while waiting.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// What was found under the named folders at one look.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Survey {
    /// Every worker folder expected, in command-line order, then by index.
    pub folders: Vec<PathBuf>,
    /// The expected folders that hold no results yet.
    pub waiting_for: Vec<PathBuf>,
    /// A folder whose results say its worker did not complete its share.
    pub incomplete: Option<PathBuf>,
}

impl Survey {
    /// True when waiting longer cannot change the merge's outcome.
    pub fn settled(&self) -> bool {
        self.waiting_for.is_empty() || self.incomplete.is_some()
    }
}

/// The part of a worker's results the survey reads.
#[derive(Debug, Clone, Copy)]
struct Glimpse {
    count: u32,
    complete: bool,
}

/// Looks at the named folders (see the module's documentation), reading each results
/// file once.
#[derive(Debug, Default)]
pub struct Surveyor {
    seen: BTreeMap<PathBuf, Glimpse>,
}

impl Surveyor {
    /// One look at the folders named in `named`.
    pub fn survey(&mut self, named: &[PathBuf]) -> Survey {
        let mut survey = Survey::default();
        for dir in named {
            if is_worker_folder(dir) {
                self.expect(dir.clone(), &mut survey);
                continue;
            }
            let found = indexed_children(dir);
            let mut count = 0;
            for child in found.values() {
                if let Some(glimpse) = self.glimpse(child) {
                    count = count.max(glimpse.count);
                }
            }
            // Worker 0 is expected before any results say how many there are.
            let last = found.keys().next_back().map_or(0, |i| i + 1);
            for index in 0..count.max(last).max(1) {
                let child = found
                    .get(&index)
                    .cloned()
                    .unwrap_or_else(|| dir.join(format!("worker-{index}")));
                self.expect(child, &mut survey);
            }
        }
        survey
    }

    fn expect(&mut self, dir: PathBuf, survey: &mut Survey) {
        match self.glimpse(&dir) {
            None => survey.waiting_for.push(dir.clone()),
            Some(glimpse) if !glimpse.complete && survey.incomplete.is_none() => {
                survey.incomplete = Some(dir.clone());
            }
            Some(_) => {}
        }
        survey.folders.push(dir);
    }

    /// The results in `dir`, read the first time they are there. Results that cannot be
    /// read count as there (the merge says what is wrong with them).
    fn glimpse(&mut self, dir: &Path) -> Option<Glimpse> {
        if let Some(glimpse) = self.seen.get(dir) {
            return Some(*glimpse);
        }
        let text = std::fs::read(dir.join(FILE)).ok()?;
        #[derive(Deserialize)]
        struct Worker {
            count: u32,
        }
        #[derive(Deserialize)]
        struct Head {
            worker: Worker,
            complete: bool,
        }
        let glimpse = serde_json::from_slice::<Head>(&text).map_or(
            Glimpse {
                count: 0,
                complete: true,
            },
            |head| Glimpse {
                count: head.worker.count,
                complete: head.complete,
            },
        );
        self.seen.insert(dir.to_path_buf(), glimpse);
        Some(glimpse)
    }
}

/// The worker folders to merge: at once when `wait` is zero, else once every expected
/// folder holds results, one says its worker did not complete, or `wait` is over; `None`
/// when `cancel` fires first. `waiting` is told, once, which folders are awaited.
pub async fn collect(
    named: &[PathBuf],
    wait: Duration,
    cancel: &CancellationToken,
    waiting: impl FnOnce(&[PathBuf]),
) -> Option<Vec<PathBuf>> {
    let deadline = Instant::now() + wait;
    let mut surveyor = Surveyor::default();
    let mut waiting = Some(waiting);
    loop {
        let survey = surveyor.survey(named);
        let now = Instant::now();
        if survey.settled() || now >= deadline {
            return Some(survey.folders);
        }
        if let Some(tell) = waiting.take() {
            tell(&survey.waiting_for);
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(POLL_EVERY.min(deadline - now)) => {}
        }
    }
}

/// True for a folder that is itself one worker's: it holds results, or is named
/// `…worker-<index>`.
fn is_worker_folder(dir: &Path) -> bool {
    dir.join(FILE).exists()
        || dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once("worker-"))
            .is_some_and(|(_, index)| {
                !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())
            })
}

/// The `worker-<index>` folders in `dir`, by index.
fn indexed_children(dir: &Path) -> BTreeMap<u32, PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let index = name.strip_prefix("worker-")?.parse::<u32>().ok()?;
            Some((index, e.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("warren-folders-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_results(dir: &Path, count: u32, complete: bool) {
        std::fs::create_dir_all(dir).unwrap();
        let text = format!(
            r#"{{"format":"warren-worker-results","worker":{{"index":0,"count":{count},"attempt":0}},"complete":{complete}}}"#
        );
        std::fs::write(dir.join(FILE), text).unwrap();
    }

    #[test]
    fn a_folder_of_workers_expects_as_many_as_their_results_say() {
        let root = scratch("count");
        write_results(&root.join("worker-1"), 3, true);
        std::fs::create_dir_all(root.join("merged")).unwrap();
        let survey = Surveyor::default().survey(std::slice::from_ref(&root));
        let expected: Vec<_> = (0..3).map(|i| root.join(format!("worker-{i}"))).collect();
        assert_eq!(survey.folders, expected);
        assert_eq!(
            survey.waiting_for,
            vec![root.join("worker-0"), root.join("worker-2")]
        );
        assert!(!survey.settled());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_empty_folder_of_workers_waits_for_worker_0() {
        let root = scratch("empty");
        let survey = Surveyor::default().survey(std::slice::from_ref(&root.join("run")));
        assert_eq!(survey.folders, vec![root.join("run/worker-0")]);
        assert_eq!(survey.waiting_for, survey.folders);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn named_worker_folders_are_taken_as_they_are() {
        let root = scratch("named");
        let a = root.join("a");
        write_results(&a, 2, true);
        let b = root.join("quickstart-run-worker-1");
        let survey = Surveyor::default().survey(&[a.clone(), b.clone()]);
        assert_eq!(survey.folders, vec![a, b.clone()]);
        assert_eq!(survey.waiting_for, vec![b]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_incomplete_worker_settles_the_wait() {
        let root = scratch("incomplete");
        write_results(&root.join("worker-0"), 3, false);
        let survey = Surveyor::default().survey(std::slice::from_ref(&root));
        assert_eq!(survey.incomplete, Some(root.join("worker-0")));
        assert!(survey.settled());
        let started = Instant::now();
        let folders = block_on(collect(
            std::slice::from_ref(&root),
            Duration::from_secs(60),
            &CancellationToken::new(),
            |_| panic!("nothing to wait for"),
        ));
        assert_eq!(folders.map(|f| f.len()), Some(3));
        assert!(started.elapsed() < Duration::from_secs(30));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_wait_ends_when_the_last_results_arrive() {
        let root = scratch("arrive");
        write_results(&root.join("worker-0"), 2, true);
        let late = root.join("worker-1");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            write_results(&late, 2, true);
        });
        let mut told = Vec::new();
        let folders = block_on(collect(
            std::slice::from_ref(&root),
            Duration::from_secs(60),
            &CancellationToken::new(),
            |w| told = w.to_vec(),
        ));
        writer.join().unwrap();
        assert_eq!(
            folders,
            Some(vec![root.join("worker-0"), root.join("worker-1")])
        );
        assert_eq!(told, vec![root.join("worker-1")]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_interruption_ends_the_wait_with_nothing() {
        let root = scratch("interrupted");
        let cancel = CancellationToken::new();
        cancel.cancel();
        let folders = block_on(collect(
            std::slice::from_ref(&root),
            Duration::from_secs(3600),
            &cancel,
            |_| {},
        ));
        assert_eq!(folders, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn without_a_wait_the_folders_are_taken_at_once() {
        let root = scratch("nowait");
        let folders = block_on(collect(
            std::slice::from_ref(&root),
            Duration::ZERO,
            &CancellationToken::new(),
            |_| panic!("no wait was asked for"),
        ));
        assert_eq!(folders, Some(vec![root.join("worker-0")]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
