//! Container specs: everything needed to recreate a container (image, command, environment,
//! labels, user, mounts, ports, networks with aliases, healthcheck, restart policy,
//! capabilities, resources, stop signal and timeout) as a plain, JSON-able value — what
//! backup saves, and restore and rollback recreate from.
//!
//! The inspect of a container mixes its own settings with its image's defaults (the image's
//! `ENV PATH=...`, its labels, its `CMD`). A spec keeps only the container's own settings, so
//! recreating it from a newer or older image takes that image's defaults, as `docker run`
//! would; recreating it from the same image gives back the same inspect. Field names inside
//! `config`, `host_config` and `networks` are the engine's own, as `docker inspect` shows them.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig,
    ImageConfig, Mount, MountType, NetworkConnectRequest,
};
use bollard::query_parameters::CreateContainerOptions;
use serde::{Deserialize, Serialize};

use super::{Docker, DockerError, Result, Target};

/// What it takes to recreate one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container's name (without the leading `/`).
    pub name: String,
    /// The image as the container was created from it (`postgres:15`).
    pub image: String,
    /// The exact image it ran (`sha256:...`), for rolling back to it when the tag moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The container's own settings: `Cmd`, `Entrypoint`, `Env`, `Labels`, `User`,
    /// `WorkingDir`, `Healthcheck`, `StopSignal`, `StopTimeout`, ... where they differ from
    /// the image's.
    #[serde(default)]
    pub config: ContainerConfig,
    /// Mounts, port bindings, restart policy, capabilities, resources, network mode, ...
    #[serde(default)]
    pub host_config: HostConfig,
    /// Networks it is attached to, with its aliases and static addresses there.
    #[serde(default)]
    pub networks: BTreeMap<String, EndpointSettings>,
}

impl ContainerSpec {
    /// The spec of an inspected container; `image` is its image's config (its defaults), or
    /// `None` when the image is gone, in which case every setting is kept.
    pub fn capture(inspect: &ContainerInspectResponse, image: Option<&ImageConfig>) -> Self {
        let id = inspect.id.clone().unwrap_or_default();
        let container = inspect.config.clone().unwrap_or_default();
        let mut host_config = inspect.host_config.clone().unwrap_or_default();
        let network_mode = host_config.network_mode.clone().unwrap_or_default();
        let shares_namespace = network_mode == "host" || network_mode.starts_with("container:");
        keep_anonymous_volumes(&mut host_config, inspect);

        let mut config = own_config(&container, image);
        // The engine names a container's host after its short id unless told otherwise, and
        // refuses a hostname in the host's or another container's network namespace.
        let default_hostname = id.get(..12).unwrap_or_default();
        let hostname = container.hostname.clone().unwrap_or_default();
        config.hostname = container
            .hostname
            .filter(|h| !h.is_empty() && h != default_hostname && !shares_namespace);
        config.domainname = container
            .domainname
            .filter(|d| !d.is_empty() && !shares_namespace);

        let networks = if shares_namespace || network_mode == "none" {
            BTreeMap::new()
        } else {
            inspect
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(name, endpoint)| {
                    let automatic = [default_hostname, hostname.as_str()];
                    (name, endpoint_config(endpoint, &automatic))
                })
                .collect()
        };
        ContainerSpec {
            name: inspect
                .name
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: container.image.unwrap_or_default(),
            image_id: inspect.image.clone(),
            config,
            host_config,
            networks,
        }
    }

    /// The network given at creation (the engine before API 1.44 takes only one) and the
    /// networks to connect afterwards.
    fn split_networks(&self) -> (Option<String>, Vec<String>) {
        let mode = self.host_config.network_mode.as_deref().unwrap_or_default();
        let primary = if self.networks.contains_key(mode) {
            Some(mode.to_string())
        } else if matches!(mode, "" | "default" | "bridge") && self.networks.contains_key("bridge")
        {
            Some("bridge".to_string())
        } else {
            None
        };
        let others = self
            .networks
            .keys()
            .filter(|n| Some(*n) != primary.as_ref())
            .cloned()
            .collect();
        (primary, others)
    }

    /// The body of the create call, from `image` (default: the spec's own).
    fn create_body(
        &self,
        image: &str,
        primary: Option<&String>,
    ) -> serde_json::Result<ContainerCreateBody> {
        let mut body = serde_json::to_value(&self.config)?;
        body["Image"] = image.into();
        body["HostConfig"] = serde_json::to_value(&self.host_config)?;
        if let Some(network) = primary {
            body["NetworkingConfig"] =
                serde_json::json!({"EndpointsConfig": {network: &self.networks[network]}});
        }
        serde_json::from_value(body)
    }
}

/// The settings a container has of its own, not inherited from its image.
fn own_config(container: &ContainerConfig, image: Option<&ImageConfig>) -> ContainerConfig {
    let mut own = ContainerConfig {
        user: container.user.clone(),
        attach_stdin: container.attach_stdin,
        attach_stdout: container.attach_stdout,
        attach_stderr: container.attach_stderr,
        exposed_ports: container.exposed_ports.clone(),
        tty: container.tty,
        open_stdin: container.open_stdin,
        stdin_once: container.stdin_once,
        env: container.env.clone(),
        cmd: container.cmd.clone(),
        healthcheck: container.healthcheck.clone(),
        volumes: container.volumes.clone(),
        working_dir: container.working_dir.clone(),
        entrypoint: container.entrypoint.clone(),
        network_disabled: container.network_disabled.filter(|d| *d),
        labels: container.labels.clone(),
        stop_signal: container.stop_signal.clone(),
        stop_timeout: container.stop_timeout,
        ..Default::default()
    };
    let Some(image) = image else {
        return own;
    };
    own.user = differs(&container.user, &image.user);
    own.working_dir = differs(&container.working_dir, &image.working_dir);
    own.stop_signal = differs(&container.stop_signal, &image.stop_signal);
    own.env = without(&container.env, &image.env);
    own.exposed_ports = without(&container.exposed_ports, &image.exposed_ports);
    own.volumes = without(&container.volumes, &image.volumes);
    own.healthcheck = container
        .healthcheck
        .clone()
        .filter(|h| Some(h) != image.healthcheck.as_ref());
    own.labels = container
        .labels
        .as_ref()
        .map(|labels| {
            let inherited = image.labels.clone().unwrap_or_default();
            labels
                .iter()
                .filter(|(k, v)| inherited.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|l| !l.is_empty());
    // The engine takes the image's CMD only when the entrypoint is not overridden too.
    let entrypoint_overridden = list(&container.entrypoint) != list(&image.entrypoint);
    if entrypoint_overridden {
        own.entrypoint = match list(&container.entrypoint) {
            // An empty entrypoint is how the engine is told "none, not the image's".
            [] => Some(vec![String::new()]),
            e => Some(e.to_vec()),
        };
    } else {
        own.entrypoint = None;
        own.cmd = (list(&container.cmd) != list(&image.cmd))
            .then(|| container.cmd.clone())
            .flatten();
    }
    own
}

/// The endpoint settings worth recreating: aliases (without those the engine adds by itself:
/// the short id and the hostname), static addresses (`IPAMConfig`), links, driver options.
fn endpoint_config(endpoint: EndpointSettings, automatic: &[&str]) -> EndpointSettings {
    let aliases: Vec<String> = endpoint
        .aliases
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !automatic.contains(&a.as_str()))
        .collect();
    EndpointSettings {
        aliases: (!aliases.is_empty()).then_some(aliases),
        ipam_config: endpoint.ipam_config,
        links: endpoint.links.filter(|l| !l.is_empty()),
        driver_opts: endpoint.driver_opts.filter(|d| !d.is_empty()),
        ..Default::default()
    }
}

/// Anonymous volumes (an image's `VOLUME`, `-v /data`) get a fresh, empty volume on
/// recreate unless named: mount the ones the container has, so its data stays with it.
fn keep_anonymous_volumes(host_config: &mut HostConfig, inspect: &ContainerInspectResponse) {
    let bound: Vec<String> = host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(String::from))
        .chain(
            host_config
                .mounts
                .iter()
                .flatten()
                .filter_map(|m| m.target.clone()),
        )
        .collect();
    let anonymous: Vec<Mount> = inspect
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter(|m| m.destination.as_ref().is_some_and(|d| !bound.contains(d)))
        .map(|m| Mount {
            target: m.destination.clone(),
            source: m.name.clone(),
            typ: Some(MountType::VOLUME),
            read_only: m.rw.map(|rw| !rw).filter(|ro| *ro),
            ..Default::default()
        })
        .collect();
    if !anonymous.is_empty() {
        host_config
            .mounts
            .get_or_insert_with(Vec::new)
            .extend(anonymous);
    }
}

fn list(value: &Option<Vec<String>>) -> &[String] {
    value.as_deref().unwrap_or_default()
}

/// The container's value when it is not the image's (an unset value is the empty one).
fn differs(container: &Option<String>, image: &Option<String>) -> Option<String> {
    let c = container.as_deref().unwrap_or_default();
    (c != image.as_deref().unwrap_or_default()).then(|| c.to_string())
}

/// The container's entries the image does not have, in the container's order.
fn without(container: &Option<Vec<String>>, image: &Option<Vec<String>>) -> Option<Vec<String>> {
    let own: Vec<String> = list(container)
        .iter()
        .filter(|e| !list(image).contains(e))
        .cloned()
        .collect();
    (!own.is_empty()).then_some(own)
}

impl Docker {
    /// Captures the spec of a container.
    pub async fn spec(&self, name: &str) -> Result<ContainerSpec> {
        let inspect = self.inspect(name).await?;
        let image = match inspect.image.as_deref() {
            Some(id) => match self.api.inspect_image(id).await {
                Ok(image) => image.config,
                // The image is gone: keep every setting rather than fail the backup.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => None,
                Err(e) => return Err(self.error(Target::Image(id.into()), e)),
            },
            None => None,
        };
        Ok(ContainerSpec::capture(&inspect, image.as_ref()))
    }

    /// Creates (does not start) a container from a spec, named `name` (default the spec's)
    /// from `image` (default the spec's), attached to all its networks. Returns its id.
    pub async fn create(
        &self,
        spec: &ContainerSpec,
        name: Option<&str>,
        image: Option<&str>,
    ) -> Result<String> {
        let name = name.unwrap_or(&spec.name);
        let target = Target::Container(name.into());
        let image = image.unwrap_or(&spec.image);
        if name.is_empty() || image.is_empty() {
            return Err(DockerError::Invalid {
                target,
                message: "a container spec needs a name and an image".into(),
            });
        }
        let (primary, others) = spec.split_networks();
        let body = spec
            .create_body(image, primary.as_ref())
            .map_err(|e| DockerError::Invalid {
                target: target.clone(),
                message: format!("the spec does not make a valid container: {e}"),
            })?;
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let created = self
            .api
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.error(target.clone(), e))?;
        for network in others {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(spec.networks[&network].clone()),
            };
            if let Err(e) = self.api.connect_network(&network, request).await {
                // Half a container is worse than none: the caller can retry from the spec.
                let _ = self.remove(&created.id, true, false).await;
                return Err(DockerError::Refused {
                    target,
                    message: format!(
                        "cannot attach it to network `{network}`: {}",
                        self.error(Target::Network(network.clone()), e)
                    ),
                });
            }
        }
        Ok(created.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image() -> ImageConfig {
        serde_json::from_value(json!({
            "Env": ["PATH=/usr/bin:/bin", "PG_MAJOR=15"],
            "Cmd": ["postgres"],
            "Entrypoint": ["docker-entrypoint.sh"],
            "Labels": {"org.opencontainers.image.title": "postgres"},
            "ExposedPorts": {"5432/tcp": {}},
            "Volumes": {"/var/lib/postgresql/data": {}},
            "StopSignal": "SIGINT",
            "Healthcheck": {"Test": ["CMD", "pg_isready"], "Interval": 1000000000}
        }))
        .unwrap()
    }

    fn inspect(
        config: serde_json::Value,
        host_config: serde_json::Value,
    ) -> ContainerInspectResponse {
        serde_json::from_value(json!({
            "Id": "3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a",
            "Name": "/shop-db-1",
            "Image": "sha256:abc",
            "Config": config,
            "HostConfig": host_config,
            "Mounts": [
                {"Type": "volume", "Name": "pgdata", "Destination": "/var/lib/postgresql/data", "RW": true}
            ],
            "NetworkSettings": {"Networks": {
                "shop_default": {"Aliases": ["db", "3f2a1b0c9d8e"], "NetworkID": "n1", "IPAddress": "172.18.0.2"}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn a_spec_keeps_what_the_container_sets_and_drops_what_the_image_gives() {
        let c = inspect(
            json!({
                "Hostname": "3f2a1b0c9d8e",
                "Image": "postgres:15",
                "Env": ["POSTGRES_PASSWORD_FILE=/run/secrets/pg", "PATH=/usr/bin:/bin", "PG_MAJOR=15"],
                "Cmd": ["postgres"],
                "Entrypoint": ["docker-entrypoint.sh"],
                "Labels": {"org.opencontainers.image.title": "postgres", "com.docker.compose.project": "shop"},
                "ExposedPorts": {"5432/tcp": {}},
                "Volumes": {"/var/lib/postgresql/data": {}},
                "StopSignal": "SIGINT",
                "StopTimeout": 30,
                "Healthcheck": {"Test": ["CMD", "pg_isready"], "Interval": 1000000000}
            }),
            json!({"NetworkMode": "shop_default", "Binds": ["pgdata:/var/lib/postgresql/data"], "CapAdd": ["NET_ADMIN"]}),
        );
        let spec = ContainerSpec::capture(&c, Some(&image()));
        assert_eq!(spec.name, "shop-db-1");
        assert_eq!(spec.image, "postgres:15");
        assert_eq!(spec.image_id.as_deref(), Some("sha256:abc"));
        let config = &spec.config;
        assert_eq!(
            config.hostname, None,
            "the default hostname is the old short id"
        );
        assert_eq!(
            config.env.as_deref(),
            Some(&["POSTGRES_PASSWORD_FILE=/run/secrets/pg".to_string()][..])
        );
        assert_eq!(config.cmd, None);
        assert_eq!(config.entrypoint, None);
        assert_eq!(config.healthcheck, None);
        assert_eq!(config.stop_signal, None);
        assert_eq!(config.stop_timeout, Some(30));
        assert_eq!(config.exposed_ports, None);
        assert_eq!(config.volumes, None);
        assert_eq!(
            config.labels,
            Some(HashMap::from([(
                "com.docker.compose.project".to_string(),
                "shop".to_string()
            )]))
        );
        assert_eq!(
            spec.host_config.cap_add.as_deref(),
            Some(&["NET_ADMIN".to_string()][..])
        );
        assert_eq!(spec.host_config.mounts, None, "pgdata is bound already");
        let endpoint = &spec.networks["shop_default"];
        assert_eq!(endpoint.aliases.as_deref(), Some(&["db".to_string()][..]));
        assert_eq!(endpoint.network_id, None);
        assert_eq!(endpoint.ip_address, None);
    }

    #[test]
    fn an_overridden_entrypoint_carries_its_command_along() {
        let c = inspect(
            json!({"Image": "postgres:15", "Entrypoint": ["sh", "-c"], "Cmd": ["sleep 1"]}),
            json!({}),
        );
        let spec = ContainerSpec::capture(&c, Some(&image()));
        assert_eq!(spec.config.entrypoint, Some(vec!["sh".into(), "-c".into()]));
        assert_eq!(spec.config.cmd, Some(vec!["sleep 1".into()]));
    }

    #[test]
    fn anonymous_volumes_are_kept_by_name() {
        let c = inspect(
            json!({"Image": "postgres:15"}),
            json!({"NetworkMode": "shop_default"}),
        );
        let spec = ContainerSpec::capture(&c, Some(&image()));
        let mounts = spec.host_config.mounts.unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].source.as_deref(), Some("pgdata"));
        assert_eq!(
            mounts[0].target.as_deref(),
            Some("/var/lib/postgresql/data")
        );
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
    }

    #[test]
    fn without_its_image_every_setting_is_kept() {
        let c = inspect(
            json!({"Image": "postgres:15", "Env": ["PATH=/usr/bin:/bin"], "Cmd": ["postgres"]}),
            json!({}),
        );
        let spec = ContainerSpec::capture(&c, None);
        assert_eq!(spec.config.env, Some(vec!["PATH=/usr/bin:/bin".into()]));
        assert_eq!(spec.config.cmd, Some(vec!["postgres".into()]));
    }

    #[test]
    fn host_networking_drops_hostname_and_networks() {
        let c = inspect(
            json!({"Image": "postgres:15", "Hostname": "myhost"}),
            json!({"NetworkMode": "host"}),
        );
        let spec = ContainerSpec::capture(&c, Some(&image()));
        assert_eq!(spec.config.hostname, None);
        assert!(spec.networks.is_empty());
    }

    #[test]
    fn the_create_body_names_one_network_and_the_image() {
        let mut spec = ContainerSpec::capture(
            &inspect(
                json!({"Image": "postgres:15"}),
                json!({"NetworkMode": "shop_default"}),
            ),
            Some(&image()),
        );
        spec.networks
            .insert("shop_backend".into(), EndpointSettings::default());
        let (primary, others) = spec.split_networks();
        assert_eq!(primary.as_deref(), Some("shop_default"));
        assert_eq!(others, vec!["shop_backend".to_string()]);
        let body = spec.create_body("postgres:16", primary.as_ref()).unwrap();
        assert_eq!(body.image.as_deref(), Some("postgres:16"));
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(
            endpoints["shop_default"].aliases.as_deref(),
            Some(&["db".to_string()][..])
        );
    }

    #[test]
    fn a_spec_survives_json() {
        let spec = ContainerSpec::capture(
            &inspect(
                json!({"Image": "postgres:15", "Env": ["A=1"], "ExposedPorts": {"80/tcp": {}}}),
                json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}}),
            ),
            Some(&image()),
        );
        let text = serde_json::to_string(&spec).unwrap();
        let back: ContainerSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }
}
