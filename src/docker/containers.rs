//! Containers: listing (all, by stack, by label), inspect, the lifecycle calls, logs, and
//! waiting for a state.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    KillContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RenameContainerOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
    TopOptions,
};
use futures_util::StreamExt;
use serde::Serialize;

use super::{found, stack_labels, stack_of, Docker, DockerError, Labelled, Result, Target};

/// How often a wait looks at the container again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Which containers to list. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    /// Only this stack's containers (Compose project or `runbook.stack` label).
    pub stack: Option<String>,
    /// Only containers in this state: created, running, paused, restarting, exited, dead.
    pub status: Option<String>,
    /// Only containers carrying every one of these labels (`key` or `key=value`).
    pub labels: Vec<String>,
}

/// One container as listed: what an operator sees in `docker ps -a`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// created, running, paused, restarting, exited, dead.
    pub state: String,
    /// The engine's summary, e.g. `Up 5 minutes (healthy)`.
    pub status: String,
    /// Unix seconds.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    /// The stack it belongs to (Compose project or `runbook.stack`).
    pub stack: Option<String>,
    /// Named volumes it mounts.
    pub volumes: Vec<String>,
    /// Networks it is attached to.
    pub networks: Vec<String>,
}

impl ContainerRow {
    fn from_summary(c: ContainerSummary) -> Self {
        let labels = c.labels.unwrap_or_default();
        let name = c
            .names
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default();
        let volumes = c
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name)
            .collect();
        let mut networks: Vec<String> = c
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        networks.sort();
        ContainerRow {
            id: c.id.unwrap_or_default(),
            name,
            image: c.image.unwrap_or_default(),
            image_id: c.image_id.unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            status: c.status.unwrap_or_default(),
            created: c.created.unwrap_or_default(),
            stack: stack_of(&labels),
            labels: labels.into_iter().collect(),
            volumes,
            networks,
        }
    }
}

impl Labelled for ContainerRow {
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// One process of a container, as `ps` on the host shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Process {
    pub pid: i64,
    pub uid: i64,
    pub command: String,
}

/// The processes of `ps -o pid,uid,args` as the engine's top returns them.
fn parse_top(titles: &[String], rows: &[Vec<String>]) -> std::result::Result<Vec<Process>, String> {
    let column = |name: &str| {
        titles
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| format!("the process list has no {name} column ({titles:?})"))
    };
    let (pid, uid, command) = (column("PID")?, column("UID")?, column("COMMAND")?);
    rows.iter()
        .map(|row| {
            let number = |i: usize| {
                row.get(i)
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| format!("unreadable process entry {row:?}"))
            };
            Ok(Process {
                pid: number(pid)?,
                uid: number(uid)?,
                command: row.get(command).cloned().unwrap_or_default(),
            })
        })
        .collect()
}

/// A state to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Running,
    /// Running and its healthcheck passes.
    Healthy,
    /// Stopped (exited or dead).
    Exited,
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "running" => Ok(Condition::Running),
            "healthy" => Ok(Condition::Healthy),
            "exited" | "stopped" => Ok(Condition::Exited),
            other => Err(format!(
                "unknown condition `{other}`: expected running, healthy or exited"
            )),
        }
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Condition::Running => "running",
            Condition::Healthy => "healthy",
            Condition::Exited => "exited",
        })
    }
}

/// What a wait sees in one look at the container.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Reached,
    /// Keep looking.
    Pending,
    /// It cannot get there any more (exited with no restart policy, unhealthy, no healthcheck).
    Never,
}

fn judge(inspect: &ContainerInspectResponse, condition: Condition) -> Verdict {
    let state = inspect.state.as_ref();
    let status = state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let stopped = matches!(status.as_str(), "exited" | "dead");
    let restarts = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.restart_policy.as_ref())
        .and_then(|p| p.name)
        .is_some_and(|n| !matches!(n.to_string().as_str(), "" | "no"));
    let gone_for_good = stopped && !restarts;
    match condition {
        Condition::Exited if stopped => Verdict::Reached,
        Condition::Exited => Verdict::Pending,
        Condition::Running if running => Verdict::Reached,
        Condition::Running if gone_for_good => Verdict::Never,
        Condition::Running => Verdict::Pending,
        Condition::Healthy => {
            let health = state
                .and_then(|s| s.health.as_ref())
                .and_then(|h| h.status)
                .map(|s| s.to_string());
            match health.as_deref() {
                None | Some("none") | Some("") => Verdict::Never,
                Some("healthy") if running => Verdict::Reached,
                Some("unhealthy") if running => Verdict::Never,
                _ if gone_for_good => Verdict::Never,
                _ => Verdict::Pending,
            }
        }
    }
}

/// Where a container is, in words, with its last health check: the tail of a wait's error.
fn describe_state(inspect: &ContainerInspectResponse) -> String {
    let Some(state) = inspect.state.as_ref() else {
        return "state unknown".into();
    };
    let status = state.status.map(|s| s.to_string()).unwrap_or_default();
    let mut text = status.clone();
    if matches!(status.as_str(), "exited" | "dead") {
        text.push_str(&format!(" with code {}", state.exit_code.unwrap_or(-1)));
    }
    match state.health.as_ref() {
        Some(health) => {
            let health_status = health.status.map(|s| s.to_string()).unwrap_or_default();
            if !health_status.is_empty() && health_status != "none" {
                text.push_str(&format!(", health {health_status}"));
            }
            if let Some(last) = health.log.as_ref().and_then(|log| log.last()) {
                let output = last.output.as_deref().unwrap_or("").trim();
                text.push_str(&format!(
                    "; last health check exited {}: {}",
                    last.exit_code.unwrap_or(-1),
                    if output.is_empty() {
                        "(no output)"
                    } else {
                        output
                    }
                ));
            }
        }
        None => {
            let has_check = inspect
                .config
                .as_ref()
                .and_then(|c| c.healthcheck.as_ref())
                .and_then(|h| h.test.as_ref())
                .is_some_and(|t| t.first().map(String::as_str) != Some("NONE"));
            if !has_check {
                text.push_str(", and it has no healthcheck (wait for `running` instead)");
            }
        }
    }
    text
}

impl Docker {
    /// Containers (stopped ones too) matching the filter, sorted by name.
    pub async fn containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerRow>> {
        let mut base: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(status) = filter.status.as_ref().filter(|s| !s.is_empty()) {
            base.insert("status".into(), vec![status.clone()]);
        }
        // The engine ANDs label filters; a stack is one label OR the other, so ask twice.
        let label_sets: Vec<Vec<String>> = match filter.stack.as_ref().filter(|s| !s.is_empty()) {
            Some(stack) => stack_labels(stack)
                .into_iter()
                .map(|l| [filter.labels.clone(), vec![l]].concat())
                .collect(),
            None => vec![filter.labels.clone()],
        };
        let mut rows: BTreeMap<String, ContainerRow> = BTreeMap::new();
        for labels in label_sets {
            let mut filters = base.clone();
            if !labels.is_empty() {
                filters.insert("label".into(), labels);
            }
            let options = ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            };
            let found = self
                .api
                .list_containers(Some(options))
                .await
                .map_err(|e| self.error(Target::Engine, e))?;
            for summary in found {
                let row = ContainerRow::from_summary(summary);
                rows.insert(row.name.clone(), row);
            }
        }
        Ok(rows.into_values().collect())
    }

    /// The engine's full inspect of a container.
    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse> {
        self.api
            .inspect_container(name, None)
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// True when a container of that name (or id) exists, in any state.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        found(self.inspect(name).await)
    }

    /// Starts a container (a running one is left alone).
    pub async fn start(&self, name: &str) -> Result<()> {
        self.api
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// Stops a container with its stop signal, killing it after `grace` (default: its own
    /// stop timeout, else 10 s). A stopped container is left alone.
    pub async fn stop(&self, name: &str, grace: Option<Duration>) -> Result<()> {
        let options = StopContainerOptions {
            t: grace.map(seconds),
            ..Default::default()
        };
        self.api
            .stop_container(name, Some(options))
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// Restarts a container (stop with `grace`, then start).
    pub async fn restart(&self, name: &str, grace: Option<Duration>) -> Result<()> {
        let options = RestartContainerOptions {
            t: grace.map(seconds),
            ..Default::default()
        };
        self.api
            .restart_container(name, Some(options))
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// Sends a signal (`SIGKILL`, `SIGHUP`, ...) to a running container.
    pub async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        self.api
            .kill_container(name, Some(options))
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// Removes a container; `force` kills a running one first, `volumes` also removes its
    /// anonymous volumes (named volumes are never removed with a container).
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let options = RemoveContainerOptions {
            force,
            v: volumes,
            ..Default::default()
        };
        self.api
            .remove_container(name, Some(options))
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// Renames a container.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let options = RenameContainerOptions {
            name: new_name.to_string(),
        };
        self.api
            .rename_container(name, options)
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))
    }

    /// The last `tail` lines of a container's output (stdout and stderr interleaved as they
    /// were written), or all of it.
    pub async fn logs(&self, name: &str, tail: Option<usize>) -> Result<Vec<u8>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        let mut stream = self.api.logs(name, Some(options));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| self.error(Target::Container(name.into()), e))?;
            out.extend_from_slice(&chunk.into_bytes());
        }
        Ok(out)
    }

    /// The processes of a running container as the host sees them (host pids and uids: what
    /// file permissions on the host are checked against).
    pub async fn processes(&self, name: &str) -> Result<Vec<Process>> {
        let options = TopOptions {
            ps_args: "-o pid,uid,args".into(),
        };
        let top = self
            .api
            .top_processes(name, Some(options))
            .await
            .map_err(|e| self.error(Target::Container(name.into()), e))?;
        parse_top(
            &top.titles.unwrap_or_default(),
            &top.processes.unwrap_or_default(),
        )
        .map_err(|message| DockerError::Invalid {
            target: Target::Container(name.into()),
            message,
        })
    }

    /// Waits until the container is running, healthy or exited. Fails at once when it can
    /// no longer get there (exited without a restart policy, unhealthy, no healthcheck), and
    /// after `timeout` otherwise; the error names the container, its state and its last
    /// health check.
    pub async fn wait_for(
        &self,
        name: &str,
        condition: Condition,
        timeout: Duration,
    ) -> Result<ContainerInspectResponse> {
        let started = Instant::now();
        loop {
            let inspect = self.inspect(name).await?;
            let verdict = judge(&inspect, condition);
            let out_of_time = started.elapsed() >= timeout;
            match verdict {
                Verdict::Reached => return Ok(inspect),
                Verdict::Never => {
                    return Err(DockerError::NotReady {
                        target: Target::Container(name.into()),
                        condition: condition.to_string(),
                        waited: round_to_ms(started.elapsed()),
                        state: describe_state(&inspect),
                    })
                }
                Verdict::Pending if out_of_time => {
                    return Err(DockerError::NotReady {
                        target: Target::Container(name.into()),
                        condition: condition.to_string(),
                        waited: round_to_ms(timeout),
                        state: describe_state(&inspect),
                    })
                }
                Verdict::Pending => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

fn round_to_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspect(value: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn an_exited_container_without_restart_policy_never_becomes_healthy() {
        let c = inspect(json!({
            "State": {"Status": "exited", "Running": false, "ExitCode": 1,
                      "Health": {"Status": "unhealthy", "Log": [{"ExitCode": 2, "Output": "no response\n"}]}},
            "HostConfig": {"RestartPolicy": {"Name": "no"}}
        }));
        assert_eq!(judge(&c, Condition::Healthy), Verdict::Never);
        assert_eq!(judge(&c, Condition::Exited), Verdict::Reached);
        assert_eq!(
            describe_state(&c),
            "exited with code 1, health unhealthy; last health check exited 2: no response"
        );
    }

    #[test]
    fn a_restarting_container_may_still_come_up() {
        let c = inspect(json!({
            "State": {"Status": "exited", "Running": false, "ExitCode": 1},
            "HostConfig": {"RestartPolicy": {"Name": "always"}}
        }));
        assert_eq!(judge(&c, Condition::Running), Verdict::Pending);
    }

    #[test]
    fn healthy_needs_a_healthcheck() {
        let c = inspect(json!({"State": {"Status": "running", "Running": true}, "Config": {}}));
        assert_eq!(judge(&c, Condition::Healthy), Verdict::Never);
        assert!(describe_state(&c).contains("no healthcheck"));
        assert_eq!(judge(&c, Condition::Running), Verdict::Reached);
    }

    #[test]
    fn starting_is_pending_and_healthy_is_reached() {
        let mut c = inspect(json!({"State": {"Status": "running", "Running": true,
                                             "Health": {"Status": "starting"}}}));
        assert_eq!(judge(&c, Condition::Healthy), Verdict::Pending);
        c = inspect(json!({"State": {"Status": "running", "Running": true,
                                     "Health": {"Status": "healthy"}}}));
        assert_eq!(judge(&c, Condition::Healthy), Verdict::Reached);
    }

    #[test]
    fn processes_are_read_by_column_title() {
        let titles = ["PID", "UID", "COMMAND"].map(String::from);
        let rows = vec![["368", "999", "postgres: checkpointer"]
            .map(String::from)
            .to_vec()];
        let processes = parse_top(&titles, &rows).unwrap();
        assert_eq!(
            processes,
            [Process {
                pid: 368,
                uid: 999,
                command: "postgres: checkpointer".into()
            }]
        );
        assert!(parse_top(&["PID".into()], &rows).is_err());
        let bad = vec![["x", "999", "sh"].map(String::from).to_vec()];
        assert!(parse_top(&titles, &bad).is_err());
    }

    #[test]
    fn conditions_parse_from_words() {
        assert_eq!("healthy".parse::<Condition>(), Ok(Condition::Healthy));
        assert_eq!("stopped".parse::<Condition>(), Ok(Condition::Exited));
        assert!("up"
            .parse::<Condition>()
            .unwrap_err()
            .contains("unknown condition `up`"));
    }
}
