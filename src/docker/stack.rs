//! Stacks: the containers, volumes and networks sharing a Compose project or `runbook.stack`
//! label, seen in one call, and started or stopped together — concurrently within a bound, in
//! the order their labels ask for (`com.docker.compose.depends_on`, `runbook.order`).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use super::{
    Condition, ContainerFilter, ContainerRow, Docker, DockerError, NetworkRow, Result, Target,
    VolumeRow,
};

/// Compose's record of a service's dependencies: `db:service_healthy:false,cache:service_started:false`.
const DEPENDS_ON_LABEL: &str = "com.docker.compose.depends_on";
const SERVICE_LABEL: &str = "com.docker.compose.service";
/// An explicit start rank: lower starts first, stops last.
const ORDER_LABEL: &str = "runbook.order";

/// A stack in one look.
#[derive(Debug, Clone, Serialize)]
pub struct StackView {
    pub name: String,
    pub containers: Vec<ContainerRow>,
    pub volumes: Vec<VolumeRow>,
    pub networks: Vec<NetworkRow>,
}

/// How a batch on a stack runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Containers acted on at the same time.
    pub concurrency: usize,
    /// Stop: time between the stop signal and the kill (default: each container's own).
    pub grace: Option<Duration>,
    /// Start: how long to wait for a dependency to become healthy or complete.
    pub timeout: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            concurrency: 4,
            grace: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What a dependant needs of a container before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Readiness {
    Started,
    Healthy,
    /// Exited with code 0 (a one-shot job such as a migration).
    Completed,
}

/// One container of a stack, as the batch order sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    /// Its Compose service, or its name.
    pub service: String,
    pub state: String,
    order: i64,
    depends_on: Vec<(String, Readiness)>,
    /// What its dependants need of it.
    needed: Readiness,
}

impl Member {
    fn of(row: &ContainerRow) -> std::result::Result<Member, String> {
        let order = match row.labels.get(ORDER_LABEL) {
            Some(text) => text.trim().parse().map_err(|_| {
                format!(
                    "container `{}`: label {ORDER_LABEL}={text} is not an integer",
                    row.name
                )
            })?,
            None => 0,
        };
        let depends_on = row
            .labels
            .get(DEPENDS_ON_LABEL)
            .map(|text| parse_depends_on(text))
            .unwrap_or_default();
        Ok(Member {
            name: row.name.clone(),
            service: row
                .labels
                .get(SERVICE_LABEL)
                .cloned()
                .unwrap_or_else(|| row.name.clone()),
            state: row.state.clone(),
            order,
            depends_on,
            needed: Readiness::Started,
        })
    }

    /// Whether starting it does anything.
    pub fn needs_start(&self) -> bool {
        self.state != "running"
    }

    /// Whether stopping it does anything.
    pub fn needs_stop(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "paused")
    }
}

/// `db:service_healthy:false,cache` → [(db, Healthy), (cache, Started)].
fn parse_depends_on(text: &str) -> Vec<(String, Readiness)> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let mut parts = entry.split(':');
            let service = parts.next().unwrap_or_default().to_string();
            let readiness = match parts.next() {
                Some("service_healthy") => Readiness::Healthy,
                Some("service_completed_successfully") => Readiness::Completed,
                _ => Readiness::Started,
            };
            (service, readiness)
        })
        .collect()
}

/// Groups of a stack's containers that may start together, in start order: each container
/// comes after everything it depends on and no earlier than its `runbook.order`. Stopping
/// goes through the groups in reverse.
pub fn batch_order(rows: &[ContainerRow]) -> std::result::Result<Vec<Vec<Member>>, String> {
    let mut members = rows
        .iter()
        .map(Member::of)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let deps: Vec<Vec<(usize, Readiness)>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.depends_on
                .iter()
                .flat_map(|(wanted, readiness)| {
                    members
                        .iter()
                        .enumerate()
                        .filter(move |(j, other)| {
                            *j != i && (other.service == *wanted || other.name == *wanted)
                        })
                        .map(move |(j, _)| (j, *readiness))
                })
                .collect()
        })
        .collect();
    for list in &deps {
        for (j, readiness) in list {
            members[*j].needed = members[*j].needed.max(*readiness);
        }
    }
    let mut ranks: Vec<Option<i64>> = vec![None; members.len()];
    for i in 0..members.len() {
        rank(i, &members, &deps, &mut ranks, &mut Vec::new())?;
    }
    let mut by_rank: Vec<(i64, Member)> = members
        .into_iter()
        .zip(ranks)
        .map(|(m, r)| (r.unwrap_or_default(), m))
        .collect();
    by_rank.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| a.name.cmp(&b.name)));
    let mut waves: Vec<Vec<Member>> = Vec::new();
    let mut current = None;
    for (r, member) in by_rank {
        if current != Some(r) {
            waves.push(Vec::new());
            current = Some(r);
        }
        waves.last_mut().expect("pushed above").push(member);
    }
    Ok(waves)
}

fn rank(
    i: usize,
    members: &[Member],
    deps: &[Vec<(usize, Readiness)>],
    ranks: &mut [Option<i64>],
    path: &mut Vec<usize>,
) -> std::result::Result<i64, String> {
    if let Some(r) = ranks[i] {
        return Ok(r);
    }
    if let Some(at) = path.iter().position(|&p| p == i) {
        let cycle: Vec<&str> = path[at..]
            .iter()
            .chain([&i])
            .map(|&p| members[p].name.as_str())
            .collect();
        return Err(format!(
            "containers depend on each other in a cycle: {}",
            cycle.join(" → ")
        ));
    }
    path.push(i);
    let mut r = members[i].order;
    for (j, _) in &deps[i] {
        r = r.max(rank(*j, members, deps, ranks, path)? + 1);
    }
    path.pop();
    ranks[i] = Some(r);
    Ok(r)
}

impl Docker {
    /// A stack's containers, its volumes (labelled, or mounted by its containers) and its
    /// networks (labelled, or joined by its containers).
    pub async fn stack(&self, name: &str) -> Result<StackView> {
        let containers = self
            .containers(&ContainerFilter {
                stack: Some(name.to_string()),
                ..Default::default()
            })
            .await?;
        let mounted: Vec<String> = containers
            .iter()
            .flat_map(|c| c.volumes.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let attached: Vec<String> = containers
            .iter()
            .flat_map(|c| c.networks.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(StackView {
            name: name.to_string(),
            volumes: self.stack_volumes(name, &mounted).await?,
            networks: self.stack_networks(name, &attached).await?,
            containers,
        })
    }

    /// Starts the waves in order, each wave's containers concurrently; before the next wave,
    /// waits for the containers others depend on to be healthy or complete, as they ask.
    pub async fn start_waves(
        &self,
        stack: &str,
        waves: &[Vec<Member>],
        options: &BatchOptions,
    ) -> Result<()> {
        for wave in waves {
            let started = self
                .each(wave, options.concurrency, |m| async move {
                    if m.needs_start() {
                        self.start(&m.name).await?;
                    }
                    match m.needed {
                        Readiness::Started => Ok(()),
                        Readiness::Healthy => self
                            .wait_for(&m.name, Condition::Healthy, options.timeout)
                            .await
                            .map(drop),
                        Readiness::Completed => self.wait_completed(&m.name, options.timeout).await,
                    }
                })
                .await;
            batch_outcome(stack, "start", wave.len(), started)?;
        }
        Ok(())
    }

    /// Stops the waves in reverse order, each wave's containers concurrently.
    pub async fn stop_waves(
        &self,
        stack: &str,
        waves: &[Vec<Member>],
        options: &BatchOptions,
    ) -> Result<()> {
        for wave in waves.iter().rev() {
            let stopping: Vec<Member> = wave.iter().filter(|m| m.needs_stop()).cloned().collect();
            let stopped = self
                .each(&stopping, options.concurrency, |m| async move {
                    self.stop(&m.name, options.grace).await
                })
                .await;
            batch_outcome(stack, "stop", stopping.len(), stopped)?;
        }
        Ok(())
    }

    async fn wait_completed(&self, name: &str, timeout: Duration) -> Result<()> {
        let inspect = self.wait_for(name, Condition::Exited, timeout).await?;
        let code = inspect.state.and_then(|s| s.exit_code).unwrap_or(-1);
        if code == 0 {
            Ok(())
        } else {
            Err(DockerError::Refused {
                target: Target::Container(name.into()),
                message: format!(
                    "exited with code {code}; the containers that depend on it were not started"
                ),
            })
        }
    }

    /// Runs `action` on every member, at most `limit` at a time; the failures.
    async fn each<'a, F, Fut>(
        &'a self,
        members: &'a [Member],
        limit: usize,
        action: F,
    ) -> Vec<DockerError>
    where
        F: Fn(&'a Member) -> Fut,
        Fut: std::future::Future<Output = Result<()>> + 'a,
    {
        futures_util::stream::iter(members.iter().map(action))
            .buffer_unordered(limit.max(1))
            .filter_map(|outcome| async move { outcome.err() })
            .collect()
            .await
    }
}

/// One error naming every container of the wave that failed.
fn batch_outcome(
    stack: &str,
    verb: &str,
    total: usize,
    mut failures: Vec<DockerError>,
) -> Result<()> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(DockerError::Refused {
            target: Target::Stack(stack.into()),
            message: format!(
                "{n} of {total} containers failed to {verb}: {}",
                failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }),
    }
}

/// Waves by name, for plans and reports.
pub fn wave_names(waves: &[Vec<Member>]) -> Vec<Vec<String>> {
    waves
        .iter()
        .map(|w| w.iter().map(|m| m.name.clone()).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(name: &str, labels: &[(&str, &str)]) -> ContainerRow {
        ContainerRow {
            id: name.into(),
            name: name.into(),
            image: "img".into(),
            image_id: "sha256:1".into(),
            state: "exited".into(),
            status: String::new(),
            created: 0,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            stack: Some("shop".into()),
            volumes: vec![],
            networks: vec![],
        }
    }

    fn service(name: &str, service: &str, depends_on: &str) -> ContainerRow {
        row(
            name,
            &[(SERVICE_LABEL, service), (DEPENDS_ON_LABEL, depends_on)],
        )
    }

    #[test]
    fn compose_dependencies_start_first() {
        let rows = vec![
            service("shop-web-1", "web", "api:service_started:false"),
            service(
                "shop-api-1",
                "api",
                "db:service_healthy:false,cache:service_started:false",
            ),
            service("shop-db-1", "db", ""),
            service("shop-cache-1", "cache", ""),
            service("shop-worker-1", "worker", "db:service_healthy:false"),
        ];
        let waves = batch_order(&rows).unwrap();
        assert_eq!(
            wave_names(&waves),
            vec![
                vec!["shop-cache-1", "shop-db-1"],
                vec!["shop-api-1", "shop-worker-1"],
                vec!["shop-web-1"],
            ]
        );
        let db = &waves[0][1];
        assert_eq!(db.needed, Readiness::Healthy);
        assert_eq!(waves[0][0].needed, Readiness::Started);
    }

    #[test]
    fn runbook_order_is_a_lower_bound_that_dependencies_can_push_later() {
        let rows = vec![
            row("a", &[(ORDER_LABEL, "2")]),
            row("b", &[(ORDER_LABEL, "1")]),
            row("c", &[]),
            row("d", &[(DEPENDS_ON_LABEL, "a")]),
        ];
        let waves = batch_order(&rows).unwrap();
        assert_eq!(
            wave_names(&waves),
            vec![vec!["c"], vec!["b"], vec!["a"], vec!["d"]]
        );
    }

    #[test]
    fn without_labels_everything_is_one_wave() {
        let rows = vec![row("b", &[]), row("a", &[])];
        assert_eq!(
            wave_names(&batch_order(&rows).unwrap()),
            vec![vec!["a", "b"]]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let rows = vec![
            service("x-a-1", "a", "b:service_started:false"),
            service("x-b-1", "b", "a:service_started:false"),
        ];
        let err = batch_order(&rows).unwrap_err();
        assert_eq!(
            err,
            "containers depend on each other in a cycle: x-a-1 → x-b-1 → x-a-1"
        );
    }

    #[test]
    fn a_bad_order_label_is_refused_with_the_container_named() {
        let rows = vec![row("a", &[(ORDER_LABEL, "first")])];
        assert_eq!(
            batch_order(&rows).unwrap_err(),
            "container `a`: label runbook.order=first is not an integer"
        );
    }

    #[test]
    fn completed_beats_healthy_beats_started() {
        let rows = vec![
            service("job", "job", ""),
            service("a", "a", "job:service_healthy:false"),
            service("b", "b", "job:service_completed_successfully:false"),
        ];
        let waves = batch_order(&rows).unwrap();
        assert_eq!(waves[0][0].needed, Readiness::Completed);
    }
}
