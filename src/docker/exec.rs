//! Exec: a process inside a running container, with stdin in and stdout, stderr and the exit
//! code out. Credentials reach it through its environment, its stdin or a 0600 file placed
//! for the duration of the call — never its command line, which `ps` on the host shows.

use std::io::Read;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::archive::Entry;
use super::{ByteStream, Docker, DockerError, Result, Target};

/// Stderr kept per exec: its tail, which is where the error is.
const STDERR_LIMIT: usize = 4 << 20;
/// Bytes read from an input reader per chunk.
const INPUT_CHUNK: usize = 64 * 1024;
/// `/etc/passwd` and `/etc/group` larger than this are not read.
const ACCOUNT_FILE_LIMIT: usize = 1 << 20;

/// What to run and how. Values of `env` and `files` may be secrets: they never reach a
/// command line, a log or an error.
#[derive(Default)]
pub struct ExecRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment for the process (`PGPASSWORD`, ...).
    pub env: Vec<(String, String)>,
    /// `user`, `uid`, `user:group` or `uid:gid`; default the container's user.
    pub user: Option<String>,
    /// Working directory; default the container's.
    pub workdir: Option<String>,
    /// Files written (mode 0600, owned by the exec's user) before the process starts and
    /// removed after it ends.
    pub files: Vec<SecretFile>,
}

/// A credentials file placed in the container for one exec.
pub struct SecretFile {
    /// Absolute path in the container.
    pub path: String,
    pub content: Vec<u8>,
}

/// What the process reads on stdin.
pub enum ExecInput {
    /// Nothing: stdin is not attached.
    None,
    /// These bytes, then end of input.
    Bytes(Vec<u8>),
    /// Everything this reader yields (read on a blocking thread), then end of input. If the
    /// reader fails, the process sees end of input and the exec is reported failed whatever
    /// its exit code.
    Reader(Box<dyn Read + Send>),
}

/// A finished exec with its output in memory.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    pub code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a streamed exec ended.
#[derive(Debug, Clone)]
pub struct ExecStatus {
    pub code: i64,
    /// The last 4 MiB of stderr.
    pub stderr: Vec<u8>,
}

/// A running exec whose stdout is consumed as a stream (a `pg_dump` of hundreds of MB need
/// never be in memory). Read `stdout` to its end, then call [`ExecStream::finish`] (async) or
/// [`ExecStream::wait`] (blocking) for the exit code.
pub struct ExecStream {
    pub stdout: ByteStream,
    done: oneshot::Receiver<Result<ExecStatus>>,
    container: String,
}

impl ExecStream {
    /// The exit status, once the process ended and its credential files are gone. Unread
    /// stdout is discarded.
    pub async fn finish(self) -> Result<ExecStatus> {
        let ExecStream {
            stdout,
            done,
            container,
        } = self;
        drop(stdout);
        done.await.unwrap_or_else(|_| Err(abandoned(&container)))
    }

    /// [`ExecStream::finish`] for a blocking thread (outside the async runtime).
    pub fn wait(self) -> Result<ExecStatus> {
        let ExecStream {
            stdout,
            done,
            container,
        } = self;
        drop(stdout);
        done.blocking_recv()
            .unwrap_or_else(|_| Err(abandoned(&container)))
    }
}

fn abandoned(container: &str) -> DockerError {
    DockerError::Refused {
        target: Target::Container(container.into()),
        message: "the exec was abandoned before it reported its exit code".into(),
    }
}

/// A problem feeding stdin: the reader's failure matters, the process not reading does not.
enum FeedError {
    Input(std::io::Error),
}

impl Docker {
    /// Runs a process in a container and collects its output.
    pub async fn exec(
        &self,
        container: &str,
        request: ExecRequest,
        input: ExecInput,
    ) -> Result<ExecOutcome> {
        let mut stream = self.exec_stream(container, request, input).await?;
        let mut stdout = Vec::new();
        while let Some(chunk) = stream.stdout.next_chunk().await {
            let chunk = chunk.map_err(|source| DockerError::Io {
                target: Target::Container(container.into()),
                context: "reading the exec's output failed".into(),
                source,
            })?;
            stdout.extend_from_slice(&chunk);
        }
        let status = stream.finish().await?;
        Ok(ExecOutcome {
            code: status.code,
            stdout,
            stderr: status.stderr,
        })
    }

    /// Starts a process in a container; its stdout arrives as a stream.
    pub async fn exec_stream(
        &self,
        container: &str,
        request: ExecRequest,
        input: ExecInput,
    ) -> Result<ExecStream> {
        let target = Target::Container(container.into());
        if request.argv.is_empty() {
            return Err(DockerError::Invalid {
                target,
                message: "exec needs at least the program name".into(),
            });
        }
        let placed = self.place_files(container, &request).await?;
        let options = CreateExecOptions {
            attach_stdin: Some(!matches!(input, ExecInput::None)),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(request.argv.clone()),
            env: Some(
                request
                    .env
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            user: request.user.clone(),
            working_dir: request.workdir.clone(),
            ..Default::default()
        };
        let started = async {
            let created = self.api.create_exec(container, options).await?;
            let started = self
                .api
                .start_exec(
                    &created.id,
                    Some(StartExecOptions {
                        detach: false,
                        ..Default::default()
                    }),
                )
                .await?;
            Ok::<_, bollard::errors::Error>((created.id, started))
        }
        .await;
        let (id, output, writer) = match started {
            Ok((id, StartExecResults::Attached { output, input })) => (id, output, input),
            Ok((_, StartExecResults::Detached)) => unreachable!("started attached"),
            Err(e) => {
                self.remove_files(container, &placed).await?;
                return Err(self.error(target, e));
            }
        };
        let (tx, stdout) = ByteStream::channel();
        let (done_tx, done) = oneshot::channel();
        let this = self.clone();
        let name = container.to_string();
        tokio::spawn(async move {
            let status = this.drive(&name, &id, output, writer, input, tx).await;
            let cleanup = this.remove_files(&name, &placed).await;
            let _ = done_tx.send(status.and_then(|s| cleanup.map(|()| s)));
        });
        Ok(ExecStream {
            stdout,
            done,
            container: container.to_string(),
        })
    }

    /// Feeds stdin and drains stdout and stderr at the same time (a process that writes a
    /// lot before reading all its input would otherwise deadlock), then asks for the code.
    async fn drive(
        &self,
        container: &str,
        exec_id: &str,
        output: std::pin::Pin<
            Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
        >,
        writer: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
        input: ExecInput,
        tx: mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<ExecStatus> {
        let target = Target::Container(container.into());
        let (fed, drained) = tokio::join!(feed(writer, input), drain(output, &tx));
        let stderr = match drained {
            Ok(stderr) => stderr,
            Err(e) => {
                let error = self.error(target, e);
                let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
                return Err(error);
            }
        };
        let code = self.exit_code(container, exec_id).await?;
        if let Err(FeedError::Input(source)) = fed {
            let error = DockerError::Io {
                target,
                context: "reading the exec's input failed".into(),
                source,
            };
            let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
            return Err(error);
        }
        Ok(ExecStatus { code, stderr })
    }

    async fn exit_code(&self, container: &str, exec_id: &str) -> Result<i64> {
        // The output ends a moment before the engine records the exit code.
        for _ in 0..500 {
            let inspect = self
                .api
                .inspect_exec(exec_id)
                .await
                .map_err(|e| self.error(Target::Container(container.into()), e))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(DockerError::Refused {
            target: Target::Container(container.into()),
            message: "the exec's output ended but the engine still reports it running".into(),
        })
    }

    /// Writes the request's files (0600, owned by the exec's user). Returns their paths.
    async fn place_files(&self, container: &str, request: &ExecRequest) -> Result<Vec<String>> {
        if request.files.is_empty() {
            return Ok(Vec::new());
        }
        let (uid, gid) = self.owner(container, request.user.as_deref()).await?;
        let mut placed = Vec::new();
        for file in &request.files {
            if !file.path.starts_with('/') {
                self.remove_files(container, &placed).await?;
                return Err(DockerError::Invalid {
                    target: Target::Container(container.into()),
                    message: format!("secret file path `{}` must be absolute", file.path),
                });
            }
            let entry = Entry {
                path: file.path.clone(),
                content: Some(file.content.clone()),
                mode: 0o600,
                uid,
                gid,
                mtime: now(),
            };
            if let Err(e) = self.put_entry(container, &entry).await {
                self.remove_files(container, &placed).await?;
                return Err(e);
            }
            placed.push(file.path.clone());
        }
        Ok(placed)
    }

    /// Removes credential files with `rm -f`; where the container has no `rm`, empties them
    /// through the archive API so the secret is gone either way.
    async fn remove_files(&self, container: &str, paths: &[String]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let argv = ["rm", "-f"]
            .into_iter()
            .map(String::from)
            .chain(paths.iter().cloned())
            .collect::<Vec<_>>();
        let removed = async {
            let options = CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv),
                user: Some("0".to_string()),
                ..Default::default()
            };
            let created = self.api.create_exec(container, options).await?;
            if let StartExecResults::Attached { mut output, .. } =
                self.api.start_exec(&created.id, None).await?
            {
                while output.next().await.is_some() {}
            }
            Ok::<_, bollard::errors::Error>(created.id)
        }
        .await;
        if let Ok(id) = removed {
            if self.exit_code(container, &id).await? == 0 {
                return Ok(());
            }
        }
        for path in paths {
            let emptied = Entry {
                path: path.clone(),
                content: Some(Vec::new()),
                mode: 0o600,
                uid: 0,
                gid: 0,
                mtime: now(),
            };
            self.put_entry(container, &emptied)
                .await
                .map_err(|e| DockerError::Refused {
                    target: Target::Container(container.into()),
                    message: format!("secret file {path} could not be removed: {e}"),
                })?;
        }
        crate::prims::log::emit(
            crate::prims::log::Level::Warn,
            &format!(
                "container `{container}` has no working `rm`: secret files {} were emptied, not removed",
                paths.join(", ")
            ),
        );
        Ok(())
    }

    /// The uid and gid an exec runs as, from `/etc/passwd` and `/etc/group` in the container.
    async fn owner(&self, container: &str, user: Option<&str>) -> Result<(u64, u64)> {
        let user = match user.filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None => self
                .inspect(container)
                .await?
                .config
                .and_then(|c| c.user)
                .unwrap_or_default(),
        };
        if user.is_empty() {
            return Ok((0, 0));
        }
        let (name, group) = match user.split_once(':') {
            Some((n, g)) => (n, Some(g)),
            None => (user.as_str(), None),
        };
        let numeric_user = name.parse::<u64>().ok();
        let numeric_group = group.and_then(|g| g.parse::<u64>().ok());
        let passwd = if numeric_user.is_none() || (group.is_none()) {
            self.read_file(container, "/etc/passwd", ACCOUNT_FILE_LIMIT)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .ok()
        } else {
            None
        };
        let account = passwd.as_deref().and_then(|p| find_account(p, name));
        let uid = match (numeric_user, account) {
            (Some(uid), _) => uid,
            (None, Some((uid, _))) => uid,
            (None, None) => {
                return Err(DockerError::Invalid {
                    target: Target::Container(container.into()),
                    message: format!("user `{name}` is not in the container's /etc/passwd"),
                })
            }
        };
        let gid = match (group, numeric_group) {
            (Some(_), Some(gid)) => gid,
            (Some(group), None) => {
                let groups = self
                    .read_file(container, "/etc/group", ACCOUNT_FILE_LIMIT)
                    .await?;
                find_group(&String::from_utf8_lossy(&groups), group).ok_or_else(|| {
                    DockerError::Invalid {
                        target: Target::Container(container.into()),
                        message: format!("group `{group}` is not in the container's /etc/group"),
                    }
                })?
            }
            (None, _) => account.map_or(0, |(_, gid)| gid),
        };
        Ok((uid, gid))
    }
}

async fn feed(
    mut writer: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    input: ExecInput,
) -> std::result::Result<(), FeedError> {
    match input {
        ExecInput::None => Ok(()),
        ExecInput::Bytes(bytes) => {
            // A process that exits without reading its input is not an error of ours.
            if writer.write_all(&bytes).await.is_ok() {
                let _ = writer.flush().await;
            }
            let _ = writer.shutdown().await;
            Ok(())
        }
        ExecInput::Reader(mut reader) => {
            let (chunks_tx, mut chunks) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
            tokio::task::spawn_blocking(move || loop {
                let mut buf = vec![0; INPUT_CHUNK];
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if chunks_tx.blocking_send(Ok(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e));
                        return;
                    }
                }
            });
            let mut failure = None;
            while let Some(chunk) = chunks.recv().await {
                match chunk {
                    Ok(chunk) => {
                        // The process stopped reading (it exited): stop feeding it.
                        if writer.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let _ = writer.flush().await;
            let _ = writer.shutdown().await;
            failure.map_or(Ok(()), |e| Err(FeedError::Input(e)))
        }
    }
}

/// Sends stdout on as it comes and keeps the tail of stderr. A reader that went away stops
/// receiving; the process still runs to its end.
async fn drain(
    mut output: std::pin::Pin<
        Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::result::Result<Vec<u8>, bollard::errors::Error> {
    let mut stderr = Vec::new();
    let mut reader_present = true;
    while let Some(item) = output.next().await {
        match item? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                if reader_present && tx.send(Ok(message)).await.is_err() {
                    reader_present = false;
                }
            }
            LogOutput::StdErr { message } => {
                stderr.extend_from_slice(&message);
                if stderr.len() > STDERR_LIMIT {
                    stderr.drain(..stderr.len() - STDERR_LIMIT);
                }
            }
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(stderr)
}

/// `(uid, gid)` of a user in `/etc/passwd` text.
fn find_account(passwd: &str, name: &str) -> Option<(u64, u64)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let uid = fields.get(2)?.parse().ok()?;
        let gid = fields.get(3)?.parse().ok()?;
        let matches = fields[0] == name || name.parse::<u64>().ok() == Some(uid);
        matches.then_some((uid, gid))
    })
}

/// The gid of a group in `/etc/group` text.
fn find_group(groups: &str, name: &str) -> Option<u64> {
    groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| fields.get(2)?.parse().ok())
            .flatten()
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:998:PostgreSQL:/var/lib/postgresql:/bin/sh\n";

    #[test]
    fn accounts_are_found_by_name_or_uid() {
        assert_eq!(find_account(PASSWD, "postgres"), Some((999, 998)));
        assert_eq!(find_account(PASSWD, "999"), Some((999, 998)));
        assert_eq!(find_account(PASSWD, "nobody"), None);
    }

    #[test]
    fn groups_are_found_by_name() {
        assert_eq!(
            find_group("root:x:0:\npostgres:x:998:\n", "postgres"),
            Some(998)
        );
        assert_eq!(find_group("root:x:0:\n", "postgres"), None);
    }
}
