//! Networks: list (all, by stack, by label), inspect, create, remove, connect and disconnect.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointSettings, Network, NetworkConnectRequest, NetworkCreateRequest,
    NetworkDisconnectRequest, NetworkInspect,
};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use serde::Serialize;

use super::{
    found, label_filters, stack_labels, stack_of, Docker, DockerError, Labelled, Result, Target,
};

/// The engine's own networks, which belong to no stack.
const BUILT_IN: [&str; 3] = ["bridge", "host", "none"];

/// One network as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkRow {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// The stack it belongs to (Compose project or `runbook.stack` label).
    pub stack: Option<String>,
}

impl NetworkRow {
    fn new(
        name: Option<String>,
        id: Option<String>,
        driver: Option<String>,
        scope: Option<String>,
        internal: Option<bool>,
        labels: Option<HashMap<String, String>>,
    ) -> Self {
        let labels = labels.unwrap_or_default();
        NetworkRow {
            stack: stack_of(&labels),
            name: name.unwrap_or_default(),
            id: id.unwrap_or_default(),
            driver: driver.unwrap_or_default(),
            scope: scope.unwrap_or_default(),
            internal: internal.unwrap_or(false),
            labels: labels.into_iter().collect(),
        }
    }
}

impl From<Network> for NetworkRow {
    fn from(n: Network) -> Self {
        NetworkRow::new(n.name, n.id, n.driver, n.scope, n.internal, n.labels)
    }
}

impl From<NetworkInspect> for NetworkRow {
    fn from(n: NetworkInspect) -> Self {
        NetworkRow::new(n.name, n.id, n.driver, n.scope, n.internal, n.labels)
    }
}

impl Labelled for NetworkRow {
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

/// How to create a network.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    pub labels: HashMap<String, String>,
    /// Default `bridge`.
    pub driver: Option<String>,
    /// No route to the outside.
    pub internal: bool,
}

impl Docker {
    /// Networks carrying every one of `labels` (`key` or `key=value`), sorted by name.
    pub async fn networks(&self, labels: &[String]) -> Result<Vec<NetworkRow>> {
        let options = ListNetworksOptions {
            filters: label_filters(labels),
        };
        let found = self
            .api
            .list_networks(Some(options))
            .await
            .map_err(|e| self.error(Target::Engine, e))?;
        let mut rows: Vec<NetworkRow> = found.into_iter().map(NetworkRow::from).collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// A stack's networks: those labelled with it, and the user networks its containers are
    /// attached to.
    pub async fn stack_networks(
        &self,
        stack: &str,
        attached: &[String],
    ) -> Result<Vec<NetworkRow>> {
        let mut rows: BTreeMap<String, NetworkRow> = BTreeMap::new();
        for label in stack_labels(stack) {
            for row in self.networks(&[label]).await? {
                rows.insert(row.name.clone(), row);
            }
        }
        for name in attached {
            if !rows.contains_key(name) && !BUILT_IN.contains(&name.as_str()) {
                // A stopped container keeps the name of a network removed since (doctor's
                // `missing-network`): the stack is still listed, without it.
                match self.network_inspect(name).await {
                    Ok(n) => {
                        rows.insert(name.clone(), NetworkRow::from(n));
                    }
                    Err(DockerError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    /// The engine's inspect of a network.
    pub async fn network_inspect(&self, name: &str) -> Result<NetworkInspect> {
        self.api
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| self.error(Target::Network(name.into()), e))
    }

    /// True when the network exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        found(self.network_inspect(name).await)
    }

    /// Creates a network; returns its id.
    pub async fn network_create(&self, name: &str, options: &NetworkOptions) -> Result<String> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: options.driver.clone(),
            internal: Some(options.internal),
            labels: Some(options.labels.clone()),
            ..Default::default()
        };
        self.api
            .create_network(request)
            .await
            .map(|r| r.id)
            .map_err(|e| self.error(Target::Network(name.into()), e))
    }

    /// Removes a network (refused while containers are attached).
    pub async fn network_remove(&self, name: &str) -> Result<()> {
        self.api
            .remove_network(name)
            .await
            .map_err(|e| self.error(Target::Network(name.into()), e))
    }

    /// Attaches a container to a network, reachable there under `aliases` too.
    pub async fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<()> {
        let request = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.api
            .connect_network(network, request)
            .await
            .map_err(|e| self.error(Target::Network(network.into()), e))
    }

    /// Detaches a container from a network (`force`: also when the endpoint is stale).
    pub async fn network_disconnect(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let request = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(force),
        };
        self.api
            .disconnect_network(network, request)
            .await
            .map_err(|e| self.error(Target::Network(network.into()), e))
    }
}
