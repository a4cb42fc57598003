//! Images: list, inspect, tag, remove.

use std::collections::BTreeMap;

use bollard::models::ImageInspect;
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions, TagImageOptions};
use serde::Serialize;

use super::{label_filters, Docker, DockerError, Result, Target};

/// One image as listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ImageRow {
    pub id: String,
    /// `repo:tag` names; empty for a dangling image.
    pub tags: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    pub size: i64,
    pub labels: BTreeMap<String, String>,
}

impl Docker {
    /// Images carrying every one of `labels` (`key` or `key=value`), newest first.
    pub async fn images(&self, labels: &[String]) -> Result<Vec<ImageRow>> {
        let options = ListImagesOptions {
            filters: label_filters(labels),
            ..Default::default()
        };
        let found = self
            .api
            .list_images(Some(options))
            .await
            .map_err(|e| self.error(Target::Engine, e))?;
        let mut rows: Vec<ImageRow> = found
            .into_iter()
            .map(|i| ImageRow {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                created: i.created,
                size: i.size,
                labels: i.labels.into_iter().collect(),
            })
            .collect();
        rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(rows)
    }

    /// The engine's inspect of an image (by name, tag or id).
    pub async fn image_inspect(&self, image: &str) -> Result<ImageInspect> {
        self.api
            .inspect_image(image)
            .await
            .map_err(|e| self.error(Target::Image(image.into()), e))
    }

    /// Tags `image` as `target` (`repo:tag`; a missing tag means `latest`).
    pub async fn image_tag(&self, image: &str, target: &str) -> Result<()> {
        let (repo, tag) = split_reference(target);
        if repo.is_empty() {
            return Err(DockerError::Invalid {
                target: Target::Image(image.into()),
                message: format!("`{target}` is not a repo:tag name"),
            });
        }
        let options = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.api
            .tag_image(image, Some(options))
            .await
            .map_err(|e| self.error(Target::Image(image.into()), e))
    }

    /// Removes an image name (the image itself goes with its last name); `force` also when
    /// containers use it.
    pub async fn image_remove(&self, image: &str, force: bool) -> Result<()> {
        let options = RemoveImageOptions {
            force,
            ..Default::default()
        };
        self.api
            .remove_image(image, Some(options), None)
            .await
            .map(drop)
            .map_err(|e| self.error(Target::Image(image.into()), e))
    }
}

/// `registry:5000/shop/web:1.2` → (`registry:5000/shop/web`, `1.2`); no tag → `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            &reference[name_start + i + 1..],
        ),
        None => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(
            split_reference("shop/web:rollback-1"),
            ("shop/web", "rollback-1")
        );
        assert_eq!(
            split_reference("registry:5000/shop/web"),
            ("registry:5000/shop/web", "latest")
        );
        assert_eq!(
            split_reference("registry:5000/web:2"),
            ("registry:5000/web", "2")
        );
        assert_eq!(split_reference("postgres"), ("postgres", "latest"));
    }
}
