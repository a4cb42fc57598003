//! A volume's data out as a tar stream and back in, with no helper image: the engine's
//! archive API reads and writes the volume through a container that mounts it and is created
//! but never started, so its image only has to exist locally (the image of a container that
//! uses the volume, of its stack, or any local image). Owners, modes, mtimes and symlinks
//! come through unchanged; the tar's entries are relative to the volume's root (`./...`).

use std::collections::HashMap;
use std::io::Read;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions,
    UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::archive::Entry;
use super::{stack_of, ByteStream, ContainerFilter, Docker, DockerError, Result, Target};

/// Where the helper container mounts the volume. Not a path any image has: nothing of the
/// image is copied into the volume (the mount is `nocopy` as well).
const MOUNT: &str = "/runbook-volume";
/// Marks helper containers, so a leftover one (the process was killed) can be found.
const HELPER_LABEL: &str = "runbook.helper";
/// Bytes of an incoming tar looked at for the entry of the volume's root directory.
const ROOT_ENTRY_WINDOW: usize = 64 * 1024;
/// Bytes read from an incoming tar per chunk.
const CHUNK: usize = 256 * 1024;

/// Owner, mode and mtime of the volume's root directory, from the tar's `./` entry.
struct RootAttributes {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Docker {
    /// Streams a volume's content out as a tar. Read the stream to its end: when it ends,
    /// the helper container is gone. `image` chooses the helper's image.
    pub async fn volume_export(&self, volume: &str, image: Option<&str>) -> Result<ByteStream> {
        let target = Target::Volume(volume.into());
        let helper = self.volume_helper(volume, image, true).await?;
        let options = DownloadFromContainerOptions {
            path: format!("{MOUNT}/."),
        };
        let mut download = self.api.download_from_container(&helper, Some(options));
        let first = match download.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => {
                self.remove_helper(&helper).await;
                return Err(self.error(target, e));
            }
            None => None,
        };
        let (tx, stream) = ByteStream::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let mut next = first.map(Ok);
            loop {
                let item = match next.take() {
                    Some(item) => item,
                    None => match download.next().await {
                        Some(item) => item,
                        None => break,
                    },
                };
                match item {
                    Ok(chunk) => {
                        if tx.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let error = this.error(target.clone(), e);
                        let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
                        break;
                    }
                }
            }
            // Before the end of the stream reaches the reader: when it has read everything,
            // nothing is left behind.
            this.remove_helper(&helper).await;
            drop(tx);
        });
        Ok(stream)
    }

    /// Streams a tar into an existing volume (entries relative to its root, as
    /// [`Docker::volume_export`] writes them), restoring owners, modes, mtimes and the root
    /// directory's own attributes. Files already there are overwritten, others left alone.
    /// The tar is read on a blocking thread. Returns the number of bytes read.
    pub async fn volume_import(
        &self,
        volume: &str,
        tar: impl Read + Send + 'static,
        image: Option<&str>,
    ) -> Result<u64> {
        self.volume_inspect(volume).await?;
        let helper = self.volume_helper(volume, image, false).await?;
        let imported = self.import_through(&helper, volume, tar).await;
        self.remove_helper(&helper).await;
        imported
    }

    async fn import_through(
        &self,
        helper: &str,
        volume: &str,
        tar: impl Read + Send + 'static,
    ) -> Result<u64> {
        let target = Target::Volume(volume.into());
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
        let pump = tokio::task::spawn_blocking(move || pump(tar, &tx));
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let options = UploadToContainerOptions {
            path: MOUNT.into(),
            ..Default::default()
        };
        let uploaded = self
            .api
            .upload_to_container(helper, Some(options), bollard::body_try_stream(body))
            .await;
        let pumped = pump.await.map_err(|e| DockerError::Io {
            target: target.clone(),
            context: "reading the archive failed".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // A reader that failed explains a failed upload better than the upload does.
        let (bytes, root) = pumped.map_err(|source| DockerError::Io {
            target: target.clone(),
            context: "reading the archive failed".into(),
            source,
        })?;
        uploaded.map_err(|e| self.error(target.clone(), e))?;
        if let Some(root) = root {
            let entry = Entry {
                path: MOUNT.into(),
                content: None,
                mode: root.mode,
                uid: root.uid,
                gid: root.gid,
                mtime: root.mtime,
            };
            self.put_entry(helper, &entry)
                .await
                .map_err(|e| DockerError::Refused {
                    target,
                    message: format!(
                        "restoring the owner and mode of its root directory failed: {e}"
                    ),
                })?;
        }
        Ok(bytes)
    }

    /// Creates the never-started container that gives the archive API access to the volume.
    async fn volume_helper(
        &self,
        volume: &str,
        image: Option<&str>,
        read_only: bool,
    ) -> Result<String> {
        let target = Target::Volume(volume.into());
        let image = match image {
            Some(image) => image.to_string(),
            None => self.helper_image(volume).await?,
        };
        let never_run = vec!["/runbook-volume-access-never-runs".to_string()];
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(never_run.clone()),
            cmd: Some(never_run),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (HELPER_LABEL.to_string(), "volume-data".to_string()),
                ("runbook.volume".to_string(), volume.to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    target: Some(MOUNT.into()),
                    source: Some(volume.into()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(read_only),
                    volume_options: Some(MountVolumeOptions {
                        no_copy: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(format!("runbook-volume-data-{:08x}", rand::random::<u32>())),
            ..Default::default()
        };
        self.api
            .create_container(Some(options), body)
            .await
            .map(|created| created.id)
            .map_err(|e| match self.error(target.clone(), e) {
                DockerError::Refused { target, message } => DockerError::Refused {
                    target,
                    message: format!(
                        "cannot create a container from image `{image}` to reach it: {message}"
                    ),
                },
                other => other,
            })
    }

    /// An image for the helper: one a container using the volume runs, else one of the
    /// volume's stack, else the newest local image.
    async fn helper_image(&self, volume: &str) -> Result<String> {
        let using = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "volume".to_string(),
                vec![volume.to_string()],
            )])),
            ..Default::default()
        };
        let users = self
            .api
            .list_containers(Some(using))
            .await
            .map_err(|e| self.error(Target::Engine, e))?;
        if let Some(id) = users.into_iter().find_map(|c| c.image_id) {
            return Ok(id);
        }
        let labels = self.volume_inspect(volume).await?.labels;
        if let Some(stack) = stack_of(&labels) {
            let filter = ContainerFilter {
                stack: Some(stack),
                ..Default::default()
            };
            if let Some(row) = self.containers(&filter).await?.into_iter().next() {
                return Ok(row.image_id);
            }
        }
        match self.images(&[]).await?.into_iter().next() {
            Some(image) => Ok(image.id),
            None => Err(DockerError::Invalid {
                target: Target::Volume(volume.into()),
                message: "no local image to reach it through (no container uses it and the engine has no images); name one with `image`".into(),
            }),
        }
    }

    async fn remove_helper(&self, helper: &str) {
        // With its anonymous volumes (an image's VOLUME); the named volume it reached stays.
        if let Err(e) = self.remove(helper, true, true).await {
            crate::prims::log::emit(
                crate::prims::log::Level::Warn,
                &format!("helper container left behind (label {HELPER_LABEL}): {e}"),
            );
        }
    }
}

/// Reads the tar on a blocking thread into the upload, noting the root entry's attributes.
/// Stops quietly when the upload went away (its error is the one to report).
fn pump(
    mut tar: impl Read,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<(u64, Option<RootAttributes>)> {
    let mut window = Vec::with_capacity(ROOT_ENTRY_WINDOW);
    let mut total = 0u64;
    let mut root = None;
    loop {
        let mut buf = vec![0; CHUNK];
        let n = match tar.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        if window.len() < ROOT_ENTRY_WINDOW {
            let take = n.min(ROOT_ENTRY_WINDOW - window.len());
            window.extend_from_slice(&buf[..take]);
            if n == 0 || window.len() == ROOT_ENTRY_WINDOW {
                root = root_attributes(&window);
            }
        }
        if n == 0 {
            return Ok((total, root));
        }
        total += n as u64;
        buf.truncate(n);
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return Ok((total, root));
        }
    }
}

/// The attributes of the tar's first entry when it is the root directory (`./`).
fn root_attributes(window: &[u8]) -> Option<RootAttributes> {
    let mut archive = tar::Archive::new(window);
    let first = archive.entries().ok()?.next()?.ok()?;
    let header = first.header();
    let path = first.path().ok()?;
    let is_root = path.as_os_str().is_empty() || path == std::path::Path::new(".");
    (is_root && header.entry_type().is_dir()).then(|| RootAttributes {
        mode: header.mode().unwrap_or(0o755),
        uid: header.uid().unwrap_or(0),
        gid: header.gid().unwrap_or(0),
        mtime: header.mtime().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with_root(root_name: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o750);
        dir.set_uid(999);
        dir.set_gid(998);
        dir.set_mtime(1_700_000_000);
        dir.set_size(0);
        builder.append_data(&mut dir, root_name, &[][..]).unwrap();
        let mut file = tar::Header::new_gnu();
        file.set_mode(0o600);
        file.set_size(5);
        builder
            .append_data(&mut file, "./a", &b"hello"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_root_entry_gives_the_volume_root_its_attributes() {
        let root = root_attributes(&tar_with_root("./")).unwrap();
        assert_eq!((root.mode, root.uid, root.gid), (0o750, 999, 998));
        assert_eq!(root.mtime, 1_700_000_000);
    }

    #[test]
    fn a_tar_without_a_root_entry_leaves_the_root_alone() {
        assert!(root_attributes(&tar_with_root("data/")).is_none());
    }

    #[test]
    fn the_pump_passes_every_byte_and_counts_them() {
        let tar = tar_with_root("./");
        let (tx, mut rx) = mpsc::channel(16);
        let (total, root) = pump(std::io::Cursor::new(tar.clone()), &tx).unwrap();
        drop(tx);
        assert_eq!(total, tar.len() as u64);
        assert!(root.is_some());
        let mut received = Vec::new();
        while let Ok(Ok(chunk)) = rx.try_recv() {
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received, tar);
    }
}
