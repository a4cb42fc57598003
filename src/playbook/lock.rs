//! The stack lock: one mutating run per stack at a time.
//!
//! A lock is a file, `<state>/locks/<stack>.lock`, held with `flock(2)` for as long as the
//! run lasts, so the kernel releases it when the process dies however it dies. The file names
//! its holder (run id, pid, playbook, start time) so that a run that finds it taken can say by
//! whom. A holder that ends empties the file before letting go; a file found with a holder in
//! it but no `flock` on it was left by a process that was killed, and is taken over.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::prims::log;

/// How often a waiting run tries the lock again.
const POLL: Duration = Duration::from_millis(200);

/// How long a refusal waits for a holder that has the lock but has not written its name yet.
const NAMING_GRACE: Duration = Duration::from_secs(1);

/// Who holds a lock, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub run_id: String,
    pub pid: u32,
    pub playbook: String,
    /// RFC 3339, UTC.
    pub started: String,
}

impl Holder {
    /// This process, running `playbook` as run `run_id`, starting now.
    pub fn this_process(run_id: &str, playbook: &str) -> Holder {
        Holder {
            run_id: run_id.to_string(),
            pid: std::process::id(),
            playbook: playbook.to_string(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The file's content: one `key: value` line per field, readable with `cat`.
    pub fn to_text(&self) -> String {
        format!(
            "run_id: {}\npid: {}\nplaybook: {}\nstarted: {}\n",
            self.run_id, self.pid, self.playbook, self.started
        )
    }

    /// Reads a file's content back; `None` when it is empty or names no run (a holder that has
    /// not finished writing it, or a lock released cleanly).
    pub fn parse(text: &str) -> Option<Holder> {
        let mut holder = Holder {
            run_id: String::new(),
            pid: 0,
            playbook: String::new(),
            started: String::new(),
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match key.trim() {
                "run_id" => holder.run_id = value,
                "pid" => holder.pid = value.parse().ok()?,
                "playbook" => holder.playbook = value,
                "started" => holder.started = value,
                _ => {}
            }
        }
        (!holder.run_id.is_empty() && holder.pid != 0).then_some(holder)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} (pid {}, playbook {}, started {})",
            self.run_id, self.pid, self.playbook, self.started
        )
    }
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it (and still did after `waited`, if the caller waited).
    #[error("{}", busy_sentence(.stack, .holder.as_ref(), *.waited))]
    Busy {
        stack: String,
        holder: Option<Holder>,
        waited: Option<Duration>,
    },
    #[error("lock file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn busy_sentence(stack: &str, holder: Option<&Holder>, waited: Option<Duration>) -> String {
    let holder = holder.map_or_else(
        || "another run (it has not written its name yet)".to_string(),
        Holder::to_string,
    );
    match waited {
        Some(waited) => format!(
            "stack `{stack}` is still locked by {holder} after waiting {}; try again later or wait longer with --wait-lock",
            humantime::format_duration(waited)
        ),
        None => format!(
            "stack `{stack}` is locked by {holder}; wait for it with --wait-lock DURATION, or run again when it has ended"
        ),
    }
}

fn takeover_sentence(stack: &str, stale: &Holder, holder: &Holder) -> String {
    if stale.run_id == holder.run_id {
        format!(
            "taking over the lock of stack `{stack}` left by an earlier attempt of this run (pid {}, \
             started {}): that process is gone (killed?)",
            stale.pid, stale.started
        )
    } else {
        format!(
            "taking over the lock of stack `{stack}` left by {stale}: that process is gone \
             (killed?); check what it left half done (runbook log {})",
            stale.run_id
        )
    }
}

/// A held stack lock; dropping it releases the lock.
#[derive(Debug)]
pub struct StackLock {
    file: File,
    path: PathBuf,
}

impl StackLock {
    /// Takes the lock of `stack` in `dir` for `holder`. When another run holds it, waits up to
    /// `wait` (logging once that it waits), else refuses at once. A lock left by a process that
    /// is gone is taken over with a warning.
    pub fn acquire(
        dir: &Path,
        stack: &str,
        holder: &Holder,
        wait: Option<Duration>,
    ) -> Result<StackLock, LockError> {
        let path = dir.join(file_name(stack));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            if try_flock(&file).map_err(io)? {
                break;
            }
            let current = Holder::parse(&read_all(&mut file).map_err(io)?);
            let waited = started.elapsed();
            let patience = wait.unwrap_or_default().max(if current.is_none() {
                NAMING_GRACE
            } else {
                Duration::ZERO
            });
            if waited >= patience {
                return Err(LockError::Busy {
                    stack: stack.to_string(),
                    holder: current,
                    waited: wait,
                });
            }
            if let (Some(wait), Some(current), false) = (wait, &current, announced) {
                log::emit(
                    log::Level::Info,
                    &format!(
                        "stack `{stack}` is locked by {current}; waiting up to {} for it",
                        humantime::format_duration(wait)
                    ),
                );
                announced = true;
            }
            std::thread::sleep(POLL);
        }
        if let Some(stale) = Holder::parse(&read_all(&mut file).map_err(io)?) {
            log::emit(log::Level::Warn, &takeover_sentence(stack, &stale, holder));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(holder.to_text().as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(StackLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        // Emptied while still held: a holder in the file then always means a process that did
        // not get here. Closing the file releases the flock.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor we own and keep open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(false),
        _ => Err(err),
    }
}

fn read_all(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// The lock file's name for a stack: `<stack>.lock`, with every byte that could leave the
/// directory or hide the file (`/`, a leading `.`, anything outside `[A-Za-z0-9_.-]`)
/// written as `%XX`.
pub fn file_name(stack: &str) -> String {
    let mut name = String::new();
    for (i, byte) in stack.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if plain {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{name}.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run_id: &str) -> Holder {
        Holder {
            run_id: run_id.into(),
            pid: 4242,
            playbook: "backup".into(),
            started: "2026-11-22T16:40:01Z".into(),
        }
    }

    #[test]
    fn holder_round_trips_through_the_file_text() {
        let h = holder("20261122T164001Z-backup-3f2a");
        assert_eq!(Holder::parse(&h.to_text()), Some(h.clone()));
        assert_eq!(
            h.to_string(),
            "run 20261122T164001Z-backup-3f2a (pid 4242, playbook backup, started 2026-11-22T16:40:01Z)"
        );
    }

    #[test]
    fn empty_torn_or_foreign_text_names_no_holder() {
        assert_eq!(Holder::parse(""), None);
        assert_eq!(Holder::parse("run_id: x\n"), None, "no pid yet");
        assert_eq!(Holder::parse("run_id: x\npid: 12ab\n"), None);
        assert_eq!(Holder::parse("pid: 7\n"), None, "no run id");
        let h = Holder::parse("extra: 1\nrun_id: r\npid: 7\n").unwrap();
        assert_eq!((h.run_id.as_str(), h.pid), ("r", 7));
        assert_eq!(h.playbook, "");
    }

    #[test]
    fn a_takeover_says_whose_lock_it_was() {
        let stale = holder("dead");
        let text = takeover_sentence("shop", &stale, &holder("alive"));
        assert!(text.contains("left by run dead (pid 4242"), "{text}");
        assert!(text.contains("runbook log dead"), "{text}");
        let text = takeover_sentence("shop", &stale, &holder("dead"));
        assert!(
            text.contains("earlier attempt of this run (pid 4242"),
            "{text}"
        );
    }

    #[test]
    fn file_names_stay_in_the_directory() {
        assert_eq!(file_name("shop"), "shop.lock");
        assert_eq!(file_name("my_shop-2.v1"), "my_shop-2.v1.lock");
        assert_eq!(file_name("../etc"), "%2E.%2Fetc.lock");
        assert_eq!(file_name("a b/c"), "a%20b%2Fc.lock");
        assert_ne!(file_name("a/b"), file_name("a%2Fb"));
    }

    #[test]
    fn a_second_holder_is_refused_until_the_first_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = StackLock::acquire(dir.path(), "shop", &holder("one"), None).unwrap();
        let err = StackLock::acquire(dir.path(), "shop", &holder("two"), None).unwrap_err();
        match &err {
            LockError::Busy {
                holder: Some(h), ..
            } => assert_eq!(h.run_id, "one"),
            other => panic!("expected busy, got {other:?}"),
        }
        assert!(err.to_string().contains("run one (pid 4242"), "{err}");
        assert!(StackLock::acquire(dir.path(), "other", &holder("three"), None).is_ok());
        let path = first.path().to_path_buf();
        drop(first);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        let second = StackLock::acquire(dir.path(), "shop", &holder("two"), None).unwrap();
        let text = std::fs::read_to_string(second.path()).unwrap();
        assert_eq!(Holder::parse(&text).unwrap().run_id, "two");
    }

    #[test]
    fn a_file_left_by_a_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop.lock"), holder("dead").to_text()).unwrap();
        let lock = StackLock::acquire(dir.path(), "shop", &holder("alive"), None).unwrap();
        let text = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(Holder::parse(&text).unwrap().run_id, "alive");
    }
}
