//! The never-started containers that reach a volume's data (`runbook-volume-data-*`, label
//! `runbook.helper`), and who owns them. Each carries its run's id and its process (host,
//! pid, start time), so a later run can tell a helper of a process that is gone (removed
//! before that run touches the volume) from one a live run is using (left alone). A helper
//! whose removal failed (the engine was gone) is kept in a list and removed again on the next
//! call that reaches the engine, and at the end of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ContainerFilter, ContainerRow, Docker, DockerError, Result};

/// Marks helper containers.
pub(crate) const HELPER_LABEL: &str = "runbook.helper";
/// The volume a helper reaches.
pub(crate) const VOLUME_LABEL: &str = "runbook.volume";
const RUN_LABEL: &str = "runbook.run";
const PID_LABEL: &str = "runbook.pid";
const STARTED_LABEL: &str = "runbook.pid-started";
const HOST_LABEL: &str = "runbook.host";

/// Helpers this process made and is using, and those whose removal failed.
struct Book {
    active: BTreeSet<String>,
    leftover: BTreeSet<String>,
}

static BOOK: Mutex<Book> = Mutex::new(Book {
    active: BTreeSet::new(),
    leftover: BTreeSet::new(),
});

fn book() -> MutexGuard<'static, Book> {
    BOOK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process that owns a helper: host name, pid and the pid's start time (so a pid the
/// kernel gave to another process since does not count as the owner).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    host: String,
    pid: u32,
    started: u64,
}

impl Owner {
    fn this_process() -> &'static Owner {
        static OWNER: OnceLock<Owner> = OnceLock::new();
        OWNER.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                host: host_name(),
                pid,
                started: start_time(pid).unwrap_or(0),
            }
        })
    }

    fn of(labels: &BTreeMap<String, String>) -> Option<Owner> {
        Some(Owner {
            host: labels.get(HOST_LABEL)?.clone(),
            pid: labels.get(PID_LABEL)?.parse().ok()?,
            started: labels.get(STARTED_LABEL)?.parse().ok()?,
        })
    }

    /// `Some(alive)` when the owner is on this host, `None` when that cannot be told.
    fn alive(&self) -> Option<bool> {
        if self.host != Owner::this_process().host {
            return None;
        }
        Some(start_time(self.pid) == Some(self.started))
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// A helper container as `docker::helpers` reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HelperRow {
    pub name: String,
    pub id: String,
    /// The volume it reaches.
    pub volume: String,
    /// The run that made it, when recorded.
    pub run: Option<String>,
    pub pid: Option<u32>,
    pub host: Option<String>,
    /// `in use` (by this process), `live` (its process runs), `stale` (its process is
    /// gone: safe to remove) or `unknown` (made on another host).
    pub state: String,
}

impl HelperRow {
    fn from_row(row: &ContainerRow) -> HelperRow {
        let me = Owner::this_process();
        let owner = Owner::of(&row.labels);
        let state = if book().active.contains(&row.name) {
            "in use"
        } else {
            match owner.as_ref().map(|o| (o == me, o.alive())) {
                // Ours but not in use: a removal that failed, or a call abandoned.
                Some((true, _)) => "stale",
                Some((false, Some(true))) => "live",
                Some((false, None)) => "unknown",
                // Made by a runbook that did not record its owner, or by a process now gone.
                Some((false, Some(false))) | None => "stale",
            }
        };
        HelperRow {
            name: row.name.clone(),
            id: row.id.clone(),
            volume: row.labels.get(VOLUME_LABEL).cloned().unwrap_or_default(),
            run: row.labels.get(RUN_LABEL).cloned(),
            pid: owner.as_ref().map(|o| o.pid),
            host: owner.map(|o| o.host),
            state: state.into(),
        }
    }

    /// Who holds it, in words: "run R (pid P on host H)".
    pub fn holder(&self) -> String {
        format!(
            "run {} (pid {} on host {})",
            self.run.as_deref().unwrap_or("?"),
            self.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "?".into()),
            self.host.as_deref().unwrap_or("?")
        )
    }
}

/// The labels a new helper of `volume` carries.
pub(crate) fn helper_labels(volume: &str, run: Option<&str>) -> Vec<(String, String)> {
    let me = Owner::this_process();
    let mut labels = vec![
        (HELPER_LABEL.to_string(), "volume-data".to_string()),
        (VOLUME_LABEL.to_string(), volume.to_string()),
        (PID_LABEL.to_string(), me.pid.to_string()),
        (STARTED_LABEL.to_string(), me.started.to_string()),
        (HOST_LABEL.to_string(), me.host.clone()),
    ];
    if let Some(run) = run {
        labels.push((RUN_LABEL.to_string(), run.to_string()));
    }
    labels
}

/// Notes a helper this process is about to make and use (by name: before it exists, so no
/// sweep takes it for a leftover while it is being made).
pub(crate) fn note_active(name: &str) {
    book().active.insert(name.to_string());
}

/// Notes that a helper is no longer used, and whether it is still to be removed.
pub(crate) fn note_done(name: &str, removed: bool) {
    let mut book = book();
    book.active.remove(name);
    if removed {
        book.leftover.remove(name);
    } else {
        book.leftover.insert(name.to_string());
    }
}

/// True when a removal failed and is still to be done.
pub fn leftovers_pending() -> bool {
    !book().leftover.is_empty()
}

impl Docker {
    /// Every helper container on the engine (of `volume` only, when given), with who holds it.
    pub async fn helpers(&self, volume: Option<&str>) -> Result<Vec<HelperRow>> {
        let mut labels = vec![HELPER_LABEL.to_string()];
        if let Some(volume) = volume {
            labels.push(format!("{VOLUME_LABEL}={volume}"));
        }
        let filter = ContainerFilter {
            labels,
            ..Default::default()
        };
        Ok(self
            .containers(&filter)
            .await?
            .iter()
            .map(HelperRow::from_row)
            .collect())
    }

    /// Removes the helpers (of `volume`, when given) that no live run uses: this process's
    /// own leftovers and those of processes that are gone. Returns what was removed and what
    /// is still held by another live run (or one of another host).
    pub async fn remove_stale_helpers(
        &self,
        volume: Option<&str>,
    ) -> Result<(Vec<HelperRow>, Vec<HelperRow>)> {
        self.remove_leftovers().await;
        let (mut removed, mut held) = (Vec::new(), Vec::new());
        for row in self.helpers(volume).await? {
            if row.state != "stale" {
                held.push(row);
                continue;
            }
            match self.remove(&row.id, true, true).await {
                Ok(()) | Err(DockerError::NotFound { .. }) => {
                    note_done(&row.name, true);
                    removed.push(row);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((removed, held))
    }

    /// Retries the removals that failed earlier (the engine was gone).
    async fn remove_leftovers(&self) {
        let names: Vec<String> = book().leftover.iter().cloned().collect();
        for name in names {
            let removed = matches!(
                self.remove(&name, true, true).await,
                Ok(()) | Err(DockerError::NotFound { .. })
            );
            if removed {
                note_done(&name, true);
            }
        }
    }

    /// At the end of a run: removes what is left of this process's helpers, waiting up to
    /// `patience` for an engine that went away to come back. Returns the names still left.
    pub async fn remove_own_helpers(&self, patience: Duration) -> Vec<String> {
        let until = Instant::now() + patience;
        loop {
            if self.ping().await.is_ok() {
                self.remove_leftovers().await;
                let mine = Owner::this_process();
                if let Ok(rows) = self.helpers(None).await {
                    for row in rows {
                        let ours = row.pid == Some(mine.pid)
                            && row.host.as_deref() == Some(mine.host.as_str());
                        if ours
                            && row.state == "stale"
                            && self.remove(&row.id, true, true).await.is_ok()
                        {
                            note_done(&row.name, true);
                        }
                    }
                    if !leftovers_pending() {
                        return Vec::new();
                    }
                }
            }
            if Instant::now() >= until {
                return book().leftover.iter().cloned().collect();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_read_past_a_command_with_spaces() {
        let stat =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
    }

    #[test]
    fn this_process_is_alive_and_a_gone_one_is_not() {
        let me = Owner::this_process().clone();
        assert!(me.started > 0);
        assert_eq!(me.alive(), Some(true));
        let gone = Owner {
            started: me.started + 1,
            ..me.clone()
        };
        assert_eq!(gone.alive(), Some(false));
        let elsewhere = Owner {
            host: format!("{}-other", me.host),
            ..me
        };
        assert_eq!(elsewhere.alive(), None);
    }

    #[test]
    fn a_helper_records_its_owner() {
        let labels: BTreeMap<_, _> = helper_labels("data", Some("run-1")).into_iter().collect();
        assert_eq!(Owner::of(&labels).as_ref(), Some(Owner::this_process()));
        assert_eq!(labels[RUN_LABEL], "run-1");
        assert_eq!(labels[VOLUME_LABEL], "data");
    }
}
