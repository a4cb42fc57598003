//! A volume's data out as a tar stream and back in, with no helper image: the engine's
//! archive API reads and writes the volume through a container that mounts it and is created
//! but never started, so its image only has to exist locally (the image of a container that
//! uses the volume, of its stack, or any local image). Owners, modes, mtimes and symlinks
//! come through unchanged; the tar's entries are relative to the volume's root (`./...`).
//!
//! A tar going into a volume passes runbook's extraction rules on the way
//! ([`crate::archive::check_stream`]): the engine gets an entry only once it passed, and a
//! load that fails part-way into a volume that was empty leaves it empty again.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, ListContainersOptions,
    UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::archive::Entry;
use super::volume_helpers::{helper_labels, note_active, note_done, HELPER_LABEL};
use super::{
    stack_of, ByteStream, ContainerFilter, Docker, DockerError, Result, Target, VolumeOptions,
};
use crate::archive::EntryRules;

/// Where the helper container mounts the volume. Not a path any image has: nothing of the
/// image is copied into the volume (the mount is `nocopy` as well).
const MOUNT: &str = "/runbook-volume";
/// Bytes of a volume's tar read to tell whether it holds anything besides its root.
const EMPTY_PROBE: usize = 4096;

/// Owner, mode and mtime of the volume's root directory, from the tar's `./` entry.
struct RootAttributes {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// How [`Docker::volume_import`] loads a tar.
pub struct VolumeLoad {
    /// The entry rules, with what they allow of device nodes and FIFOs.
    pub rules: EntryRules,
    /// The file the tar comes from, named in errors.
    pub source: PathBuf,
}

impl VolumeLoad {
    /// The rules with no device nodes or FIFOs, for a tar from `source`.
    pub fn new(source: impl Into<PathBuf>) -> VolumeLoad {
        VolumeLoad {
            rules: EntryRules::new(crate::archive::SpecialFiles::Refused(String::new())),
            source: source.into(),
        }
    }
}

/// A volume's tar from [`Docker::volume_export`], read through the entry rules on a thread
/// of its own on the way to the reader (a backup), counting the device nodes and FIFOs the
/// volume holds: the set records them, and a restore loads them only when allowed.
pub struct CheckedExport {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: std::io::Cursor<Vec<u8>>,
    special: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CheckedExport {
    /// Checks `tar` (the export of `volume`) on the way through.
    pub fn new(tar: impl Read + Send + 'static, volume: &str) -> CheckedExport {
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let special = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (counted, source) = (special.clone(), PathBuf::from(format!("volume `{volume}`")));
        std::thread::spawn(move || {
            let mut rules = EntryRules::new(crate::archive::SpecialFiles::Any);
            let mut forward = |bytes: &[u8]| {
                tx.send(Ok(bytes.to_vec()))
                    .map_err(|_| std::io::Error::other("the reader went away"))
            };
            let checked =
                crate::archive::check_stream(tar, &source, &mut rules, Some(&mut forward), |_| {
                    Ok(())
                });
            counted.store(rules.special_files(), Ordering::SeqCst);
            if let Err(e) = checked {
                let _ = tx.send(Err(std::io::Error::other(e.to_string())));
            }
        });
        CheckedExport {
            rx,
            current: std::io::Cursor::new(Vec::new()),
            special,
        }
    }

    /// Device nodes and FIFOs in the volume; whole once the stream was read to its end.
    pub fn special_files(&self) -> u64 {
        self.special.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Read for CheckedExport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.current = std::io::Cursor::new(chunk),
                Ok(Err(e)) => return Err(e),
                // The thread ends after its last send (and has stored the count by then).
                Err(_) => return Ok(0),
            }
        }
    }
}

/// Why the pump stopped.
enum PumpError {
    /// The upload went away: its error is the one to report.
    Closed,
    /// The archive was refused or could not be read.
    Archive(crate::archive::Error),
}

impl Docker {
    /// Streams a volume's content out as a tar. Read the stream to its end: when it ends,
    /// the helper container is gone. `image` chooses the helper's image.
    pub async fn volume_export(&self, volume: &str, image: Option<&str>) -> Result<ByteStream> {
        let target = Target::Volume(volume.into());
        self.remove_stale_helpers(Some(volume)).await?;
        let helper = self.volume_helper(volume, image, true).await?;
        let options = DownloadFromContainerOptions {
            path: format!("{MOUNT}/."),
        };
        let mut download = self.api.download_from_container(&helper.id, Some(options));
        let first = match download.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => {
                drop(download);
                helper.remove().await;
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
                        let _ = tx.send(Err(std::io::Error::other(error))).await;
                        break;
                    }
                }
            }
            // The engine holds the helper while its archive is being read: close it first.
            drop(download);
            // Before the end of the stream reaches the reader: when it has read everything,
            // nothing is left behind.
            helper.remove().await;
            drop(tx);
        });
        Ok(stream)
    }

    /// Streams a tar into an existing volume (entries relative to its root, as
    /// [`Docker::volume_export`] writes them), restoring owners, modes, mtimes and the root
    /// directory's own attributes. Files already there are overwritten, others left alone.
    /// Every entry passes `load.rules` before the engine gets it; when one is refused (or
    /// the tar fails) part-way, a volume that was empty is emptied again (removed and made
    /// anew with its driver, options and labels). Helpers of runs that are gone are removed
    /// first; a helper of a live run on the volume refuses the load. The tar is read on a
    /// blocking thread. Returns the number of bytes passed to the engine.
    pub async fn volume_import(
        &self,
        volume: &str,
        tar: impl Read + Send + 'static,
        image: Option<&str>,
        load: VolumeLoad,
    ) -> Result<u64> {
        let target = Target::Volume(volume.into());
        let inspect = self.volume_inspect(volume).await?;
        let (_, held) = self.remove_stale_helpers(Some(volume)).await?;
        if let Some(other) = held.iter().find(|h| h.state != "in use") {
            return Err(DockerError::Refused {
                target,
                message: format!(
                    "helper container `{}` of {} is reading or writing it; refused to load into it at the same time",
                    other.name,
                    other.holder()
                ),
            });
        }
        let helper = self.volume_helper(volume, image, false).await?;
        let was_empty = self.holds_nothing(&helper.id).await;
        let imported = self.import_through(&helper.id, volume, tar, load).await;
        helper.remove().await;
        let Err(failed) = imported else {
            return imported;
        };
        let undone = match was_empty {
            Ok(true) => self.empty_again(volume, inspect).await,
            Ok(false) => Err("it held data before, so what was loaded stays: check it before use, or load it again".to_string()),
            Err(e) => Err(format!("whether it held data before is unknown ({e}), so what was loaded stays")),
        };
        let note = match undone {
            Ok(()) => "; the volume is empty again, nothing of the archive was kept".to_string(),
            Err(why) => format!("; {why}"),
        };
        Err(match failed {
            DockerError::Refused { target, message } => DockerError::Refused {
                target,
                message: format!("{message}{note}"),
            },
            DockerError::Io {
                target,
                context,
                source,
            } => DockerError::Io {
                target,
                context: format!("{context}{note}"),
                source,
            },
            other => DockerError::Refused {
                target: Target::Volume(volume.into()),
                message: format!("{other}{note}"),
            },
        })
    }

    /// True when the volume the helper mounts holds nothing but its root directory.
    async fn holds_nothing(&self, helper: &str) -> Result<bool> {
        let options = DownloadFromContainerOptions {
            path: format!("{MOUNT}/."),
        };
        let mut download = self.api.download_from_container(helper, Some(options));
        let mut head = Vec::new();
        let mut ended = false;
        while head.len() < EMPTY_PROBE {
            match download.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(self.error(Target::Container(helper.into()), e)),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        drop(download);
        let mut archive = tar::Archive::new(head.as_slice());
        let mut beyond_root = false;
        if let Ok(entries) = archive.entries() {
            for entry in entries {
                let Ok(entry) = entry else { break };
                let root = entry
                    .path()
                    .map(|p| p.components().all(|c| c == std::path::Component::CurDir))
                    .unwrap_or(false);
                if !root {
                    beyond_root = true;
                    break;
                }
            }
        }
        Ok(ended && !beyond_root)
    }

    /// Removes the volume and makes it again as it was made: empty.
    async fn empty_again(
        &self,
        volume: &str,
        inspect: bollard::models::Volume,
    ) -> Result<(), String> {
        self.volume_remove(volume, false).await.map_err(|e| {
            format!("it could not be emptied again ({e}): remove it before using it")
        })?;
        let options = VolumeOptions {
            labels: inspect.labels,
            driver: Some(inspect.driver),
            driver_opts: inspect.options,
        };
        self.volume_create(volume, &options)
            .await
            .map(drop)
            .map_err(|e| format!("it was removed, and making it again failed ({e})"))
    }

    async fn import_through(
        &self,
        helper: &str,
        volume: &str,
        tar: impl Read + Send + 'static,
        load: VolumeLoad,
    ) -> Result<u64> {
        let target = Target::Volume(volume.into());
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(16);
        let pump = tokio::task::spawn_blocking(move || pump(tar, load, &tx));
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
        let pumped = pump.await.map_err(|e| {
            DockerError::io(
                target.clone(),
                "reading the archive failed",
                std::io::Error::other(e.to_string()),
            )
        })?;
        // A refused entry or a reader that failed explains a failed upload better than the
        // upload does.
        let (bytes, root) = match pumped {
            Ok(done) => done,
            Err(PumpError::Archive(e)) => {
                return Err(DockerError::Refused {
                    target,
                    message: e.to_string(),
                })
            }
            Err(PumpError::Closed) => {
                uploaded.map_err(|e| self.error(target.clone(), e))?;
                return Err(DockerError::Refused {
                    target,
                    message: "the engine stopped reading the archive".into(),
                });
            }
        };
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
    ) -> Result<Helper> {
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
            labels: Some(HashMap::from_iter(helper_labels(
                volume,
                self.run.as_deref(),
            ))),
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
        let name = format!("runbook-volume-data-{:08x}", rand::random::<u32>());
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        note_active(&name);
        let created = self.api.create_container(Some(options), body).await;
        if created.is_err() {
            // Perhaps made all the same (the engine went away before answering): a leftover.
            note_done(&name, false);
        }
        created
            .map(|created| Helper {
                docker: self.clone(),
                id: created.id,
                name,
            })
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
}

/// The helper container: removed by [`Helper::remove`], or when dropped (the call was
/// abandoned: Ctrl-C, a timeout) by a task on the runtime. A removal that fails (the engine
/// went away) is retried later ([`Docker::remove_stale_helpers`], and at the end of the run).
struct Helper {
    docker: Docker,
    id: String,
    name: String,
}

impl Helper {
    async fn remove(mut self) {
        let (id, name) = (std::mem::take(&mut self.id), std::mem::take(&mut self.name));
        remove_helper(&self.docker, &id, &name).await;
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let (id, name) = (std::mem::take(&mut self.id), std::mem::take(&mut self.name));
        // A leftover until the task has removed it: the runtime may end first.
        note_done(&name, false);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            runtime.spawn(async move { remove_helper(&docker, &id, &name).await });
        }
    }
}

async fn remove_helper(docker: &Docker, id: &str, name: &str) {
    // With its anonymous volumes (an image's VOLUME); the named volume it reached stays.
    match docker.remove(id, true, true).await {
        Ok(()) | Err(DockerError::NotFound { .. }) => note_done(name, true),
        Err(e) => {
            note_done(name, false);
            crate::prims::log::emit(
                crate::prims::log::Level::Warn,
                &format!(
                    "helper container `{name}` (label {HELPER_LABEL}) not removed yet, retried later: {e}"
                ),
            );
        }
    }
}

/// Reads the tar on a blocking thread through the entry rules into the upload, noting the
/// root entry's attributes. A refused entry ends the upload with an error, so the engine
/// never takes a partial archive for a whole one.
fn pump(
    tar: impl Read,
    mut load: VolumeLoad,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::result::Result<(u64, Option<RootAttributes>), PumpError> {
    let mut total = 0u64;
    let mut closed = false;
    let mut root = None;
    let mut forward = |bytes: &[u8]| -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if tx.blocking_send(Ok(Bytes::copy_from_slice(bytes))).is_err() {
            closed = true;
            return Err(std::io::Error::other("the upload ended"));
        }
        total += bytes.len() as u64;
        Ok(())
    };
    let checked = crate::archive::check_stream(
        tar,
        &load.source,
        &mut load.rules,
        Some(&mut forward),
        |info| {
            let is_root = Path::new(&info.path)
                .components()
                .all(|c| c == std::path::Component::CurDir);
            if is_root && info.kind == "dir" && root.is_none() {
                root = Some(RootAttributes {
                    mode: info.mode,
                    uid: info.uid,
                    gid: info.gid,
                    mtime: info.mtime,
                });
            }
            Ok(())
        },
    );
    match checked {
        Ok(()) => Ok((total, root)),
        Err(_) if closed => Err(PumpError::Closed),
        Err(e) => {
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            Err(PumpError::Archive(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::SpecialFiles;

    fn tar_with_root(root_name: &str, extra: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o750);
        dir.set_uid(999);
        dir.set_gid(998);
        dir.set_mtime(1_700_000_000);
        dir.set_size(0);
        builder.append_data(&mut dir, root_name, &[][..]).unwrap();
        for name in ["./a", extra] {
            let mut file = tar::Header::new_gnu();
            file.set_mode(0o600);
            file.set_uid(0);
            file.set_gid(0);
            file.set_mtime(1_700_000_000);
            file.set_size(5);
            // `append_data` refuses `..` itself: write the name into the header directly.
            file.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            file.set_cksum();
            builder.append(&file, &b"hello"[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn load() -> VolumeLoad {
        VolumeLoad {
            rules: EntryRules::new(SpecialFiles::Refused(String::new())),
            source: "test.tar".into(),
        }
    }

    fn received(rx: &mut mpsc::Receiver<std::io::Result<Bytes>>) -> (Vec<u8>, bool) {
        let mut bytes = Vec::new();
        let mut failed = false;
        while let Ok(item) = rx.try_recv() {
            match item {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(_) => failed = true,
            }
        }
        (bytes, failed)
    }

    #[test]
    fn the_pump_passes_a_clean_tar_and_the_root_attributes() {
        let tar = tar_with_root("./", "./b");
        let (tx, mut rx) = mpsc::channel(64);
        let (total, root) = pump(std::io::Cursor::new(tar.clone()), load(), &tx)
            .ok()
            .unwrap();
        drop(tx);
        let root = root.unwrap();
        assert_eq!((root.mode, root.uid, root.gid), (0o750, 999, 998));
        assert_eq!(root.mtime, 1_700_000_000);
        let (bytes, failed) = received(&mut rx);
        assert!(!failed);
        assert_eq!(total, bytes.len() as u64);
        // Byte for byte, its end-of-archive marker included.
        assert!(bytes == tar, "{} of {} bytes", bytes.len(), tar.len());
    }

    #[test]
    fn a_tar_without_a_root_entry_leaves_the_root_alone() {
        let (tx, _rx) = mpsc::channel(64);
        let tar = tar_with_root("data/", "./b");
        let (_, root) = pump(std::io::Cursor::new(tar), load(), &tx).ok().unwrap();
        assert!(root.is_none());
    }

    #[test]
    fn a_refused_entry_stops_the_stream_before_its_bytes() {
        let tar = tar_with_root("./", "./x/../../etc");
        let (tx, mut rx) = mpsc::channel(64);
        let Err(PumpError::Archive(e)) = pump(std::io::Cursor::new(tar.clone()), load(), &tx)
        else {
            panic!("the `..` entry passed");
        };
        drop(tx);
        assert!(e
            .to_string()
            .contains("archive entry `./x/../../etc` contains `..`"));
        let (bytes, failed) = received(&mut rx);
        assert!(failed, "the upload must end with an error");
        // The root and `./a` (header and content) went through, nothing of the refused entry.
        assert!(
            bytes == tar[..1024 + 5],
            "{} bytes went through",
            bytes.len()
        );
    }
}
