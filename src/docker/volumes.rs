//! Volumes: list (all, by stack, by label), inspect, create with labels, remove.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{Volume, VolumeCreateRequest};
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use serde::Serialize;

use super::{label_filters, stack_labels, stack_of, Docker, DockerError, Result, Target};

/// One volume as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    /// Where its data lives on the engine's host.
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
    /// The stack it belongs to (Compose project or `runbook.stack` label).
    pub stack: Option<String>,
}

impl From<Volume> for VolumeRow {
    fn from(v: Volume) -> Self {
        VolumeRow {
            stack: stack_of(&v.labels),
            name: v.name,
            driver: v.driver,
            mountpoint: v.mountpoint,
            labels: v.labels.into_iter().collect(),
        }
    }
}

/// How to create a volume.
#[derive(Debug, Clone, Default)]
pub struct VolumeOptions {
    pub labels: HashMap<String, String>,
    /// Default `local`.
    pub driver: Option<String>,
    pub driver_opts: HashMap<String, String>,
}

impl Docker {
    /// Volumes carrying every one of `labels` (`key` or `key=value`), sorted by name.
    pub async fn volumes(&self, labels: &[String]) -> Result<Vec<VolumeRow>> {
        let options = ListVolumesOptions {
            filters: label_filters(labels),
        };
        let found = self
            .api
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.error(Target::Engine, e))?;
        let mut rows: Vec<VolumeRow> = found
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(VolumeRow::from)
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// A stack's volumes: those labelled with it, and the named volumes its containers mount
    /// (an external volume carries no label).
    pub async fn stack_volumes(&self, stack: &str, mounted: &[String]) -> Result<Vec<VolumeRow>> {
        let mut rows: BTreeMap<String, VolumeRow> = BTreeMap::new();
        for label in stack_labels(stack) {
            for row in self.volumes(&[label]).await? {
                rows.insert(row.name.clone(), row);
            }
        }
        for name in mounted {
            if !rows.contains_key(name) {
                let row = VolumeRow::from(self.volume_inspect(name).await?);
                rows.insert(name.clone(), row);
            }
        }
        Ok(rows.into_values().collect())
    }

    /// The engine's inspect of a volume.
    pub async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.api
            .inspect_volume(name)
            .await
            .map_err(|e| self.error(Target::Volume(name.into()), e))
    }

    /// True when the volume exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.volume_inspect(name).await {
            Ok(_) => Ok(true),
            Err(DockerError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a volume (an existing one of that name is returned as it is).
    pub async fn volume_create(&self, name: &str, options: &VolumeOptions) -> Result<Volume> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: options.driver.clone(),
            driver_opts: Some(options.driver_opts.clone()),
            labels: Some(options.labels.clone()),
            ..Default::default()
        };
        self.api
            .create_volume(request)
            .await
            .map_err(|e| self.error(Target::Volume(name.into()), e))
    }

    /// Removes a volume (refused while a container uses it unless `force`).
    pub async fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        self.api
            .remove_volume(name, Some(RemoveVolumeOptions { force }))
            .await
            .map_err(|e| self.error(Target::Volume(name.into()), e))
    }
}
