//! The Docker engine, reached through its API (bollard): containers, exec, container specs,
//! images, volumes and their data, networks, and stacks. Async; the `docker` primitives in
//! `prims::docker` drive it from scripts, and Rust pipelines (backup, restore) use it directly.
//!
//! Every error names the object it concerns ([`DockerError`]).

mod archive;
mod byte_stream;
mod containers;
mod error;
mod exec;
mod images;
mod networks;
mod spec;
mod stack;
mod volume_data;
mod volume_helpers;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use archive::ContainerFile;
pub use byte_stream::ByteStream;
pub use containers::{Condition, ContainerFilter, ContainerRow, Process};
pub use error::{DockerError, Result, Target};
pub use exec::{ExecInput, ExecOutcome, ExecRequest, ExecStatus, ExecStream, SecretFile};
pub use images::ImageRow;
pub use networks::{NetworkOptions, NetworkRow};
pub use spec::ContainerSpec;
pub use stack::{batch_order, wave_names, BatchOptions, Member, StackView};
pub use volume_data::{CheckedExport, VolumeLoad};
pub use volume_helpers::{leftovers_pending, HelperRow};
pub use volumes::{VolumeOptions, VolumeRow};

/// Where the engine is when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The label Compose puts on a stack's containers, volumes and networks.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label runbook uses for stacks that are not Compose projects.
pub const STACK_LABEL: &str = "runbook.stack";

/// How long the engine may take to answer the first call before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request limit for everything else: stops with a long grace period and volume uploads
/// legitimately take long; Ctrl-C and `--timeout` still end them.
const REQUEST_TIMEOUT: u64 = 24 * 3600;

/// A connection to one Docker engine.
#[derive(Clone)]
pub struct Docker {
    api: bollard::Docker,
    host: String,
    /// The run the connection works for: its helper containers carry the id.
    run: Option<std::sync::Arc<str>>,
}

impl Docker {
    /// Connects to the engine `DOCKER_HOST` names (unix://, tcp:// or https://; TLS with
    /// `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` as the docker CLI does), default the local socket.
    pub async fn connect() -> Result<Docker> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Docker::connect_to(&host).await
    }

    /// Connects to the engine at `host` and negotiates the API version with it (the engine
    /// may be older than the API bollard speaks: 20.10 answers 1.41).
    pub async fn connect_to(host: &str) -> Result<Docker> {
        let unreachable = |reason: String| DockerError::Unreachable {
            host: host.to_string(),
            reason,
        };
        // TLS: two rustls providers are compiled in (ring for bollard, aws-lc-rs for another
        // dependency), so rustls cannot pick one by itself. An error means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api = bollard::Docker::connect_with_host(host)
            .map_err(|e| DockerError::from_api(host, Target::Engine, e))?
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT));
        let api = tokio::time::timeout(CONNECT_TIMEOUT, api.negotiate_version())
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(CONNECT_TIMEOUT)
                ))
            })?
            .map_err(|e| match DockerError::from_api(host, Target::Engine, e) {
                DockerError::Refused { message, .. } => unreachable(message),
                other => other,
            })?;
        Ok(Docker {
            api,
            host: host.to_string(),
            run: None,
        })
    }

    /// The same connection, working for run `id` (its helper containers say so).
    pub fn for_run(mut self, id: &str) -> Docker {
        self.run = Some(id.into());
        self
    }

    /// The address this connection talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Checks that the engine answers.
    pub async fn ping(&self) -> Result<()> {
        self.api
            .ping()
            .await
            .map(drop)
            .map_err(|e| self.error(Target::Engine, e))
    }

    /// The engine's version report (`Version`, `ApiVersion`, `Os`, `Arch`, ...).
    pub async fn version(&self) -> Result<bollard::models::SystemVersion> {
        self.api
            .version()
            .await
            .map_err(|e| self.error(Target::Engine, e))
    }

    fn error(&self, target: Target, e: bollard::errors::Error) -> DockerError {
        DockerError::from_api(&self.host, target, e)
    }
}

/// Listed objects carry labels; a script filters them by `key` or `key=value`.
pub trait Labelled {
    fn labels(&self) -> &BTreeMap<String, String>;

    /// True when it carries `filter` (`key`, or `key=value`).
    fn has_label(&self, filter: &str) -> bool {
        match filter.split_once('=') {
            Some((k, v)) => self.labels().get(k).is_some_and(|value| value == v),
            None => self.labels().contains_key(filter),
        }
    }
}

/// `Ok(true)` for an inspect that found its object, `Ok(false)` for one that did not.
fn found<T>(inspected: Result<T>) -> Result<bool> {
    match inspected {
        Ok(_) => Ok(true),
        Err(DockerError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Label filters for the engine's list calls: `["key", "key=value"]` under `label`.
fn label_filters(labels: &[String]) -> Option<HashMap<String, Vec<String>>> {
    (!labels.is_empty()).then(|| HashMap::from([("label".to_string(), labels.to_vec())]))
}

/// The two label filters that find a stack's objects (Compose's and runbook's own).
fn stack_labels(stack: &str) -> [String; 2] {
    [
        format!("{COMPOSE_PROJECT_LABEL}={stack}"),
        format!("{STACK_LABEL}={stack}"),
    ]
}

/// The stack an object belongs to, from its labels.
fn stack_of(labels: &HashMap<String, String>) -> Option<String> {
    labels
        .get(COMPOSE_PROJECT_LABEL)
        .or_else(|| labels.get(STACK_LABEL))
        .cloned()
}
