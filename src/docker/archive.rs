//! Single files in and out of a container through the engine's archive API: reading
//! `/etc/passwd` to resolve a user, reading the certificates under a mount, placing a 0600
//! credentials file, setting a directory's owner and mode. Works on stopped and never-started
//! containers too.

use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use futures_util::StreamExt;

use super::{Docker, DockerError, Result, Target};

/// One file or directory to place in a container, with its owner and mode.
pub(crate) struct Entry {
    /// Absolute path in the container.
    pub path: String,
    /// `None` for a directory.
    pub content: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Entry {
    /// A one-entry tar holding it, named relative to `/`.
    fn tar(&self) -> std::io::Result<Vec<u8>> {
        let mut header = tar::Header::new_gnu();
        let data: &[u8] = self.content.as_deref().unwrap_or(&[]);
        header.set_entry_type(if self.content.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        header.set_size(data.len() as u64);
        header.set_mode(self.mode);
        header.set_uid(self.uid);
        header.set_gid(self.gid);
        header.set_mtime(self.mtime);
        let mut builder = tar::Builder::new(Vec::new());
        let mut name = self.path.trim_start_matches('/').to_string();
        if self.content.is_none() && !name.ends_with('/') {
            name.push('/');
        }
        builder.append_data(&mut header, name, data)?;
        builder.into_inner()
    }
}

/// One regular file read out of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFile {
    /// Absolute path in the container (a symlink's own path, its target's content).
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl Docker {
    /// Places an entry in the container (replacing a file already there).
    pub(crate) async fn put_entry(&self, container: &str, entry: &Entry) -> Result<()> {
        let target = Target::Container(container.into());
        let tar = entry.tar().map_err(|source| {
            DockerError::io(
                target.clone(),
                format!("cannot build an archive for {}", entry.path),
                source,
            )
        })?;
        let options = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        self.api
            .upload_to_container(container, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| self.error(target, e))
    }

    /// Places a regular file in the container (running or not, replacing one already there),
    /// with its owner and mode: a restored database file before its server starts.
    pub async fn place_file(
        &self,
        container: &str,
        path: &str,
        content: Vec<u8>,
        mode: u32,
        owner: (u64, u64),
    ) -> Result<()> {
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = Entry {
            path: path.into(),
            content: Some(content),
            mode,
            uid: owner.0,
            gid: owner.1,
            mtime,
        };
        self.put_entry(container, &entry).await
    }

    /// Reads a small file from the container (at most `limit` bytes are kept in memory).
    pub(crate) async fn read_file(
        &self,
        container: &str,
        path: &str,
        limit: usize,
    ) -> Result<Vec<u8>> {
        let tar = self.download(container, path, limit + 64 * 1024).await?;
        first_file(&tar).map_err(|source| {
            DockerError::io(
                Target::Container(container.into()),
                format!("cannot read {path} from the engine's archive"),
                source,
            )
        })
    }

    /// Every regular file at or under `path` in the container, symlinks that point inside it
    /// followed (certbot's `live/` links into `archive/`). Fails when the archive is larger
    /// than `limit` bytes.
    pub async fn read_files(
        &self,
        container: &str,
        path: &str,
        limit: usize,
    ) -> Result<Vec<ContainerFile>> {
        let path = path.trim_end_matches('/');
        let tar = self
            .download(container, if path.is_empty() { "/" } else { path }, limit)
            .await?;
        // Entries are named from the last component of `path`; put its parent in front.
        let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
        files_in(&tar, parent).map_err(|source| {
            DockerError::io(
                Target::Container(container.into()),
                format!("cannot read {path} from the engine's archive"),
                source,
            )
        })
    }

    /// The engine's tar of a path in the container, refused past `limit` bytes.
    async fn download(&self, container: &str, path: &str, limit: usize) -> Result<Vec<u8>> {
        let target = Target::Container(container.into());
        let options = DownloadFromContainerOptions { path: path.into() };
        let mut stream = self.api.download_from_container(container, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk.map_err(|e| self.error(target.clone(), e))?);
            if tar.len() > limit {
                return Err(DockerError::Invalid {
                    target,
                    message: format!("{path} holds more than {limit} bytes"),
                });
            }
        }
        Ok(tar)
    }
}

/// The regular files of a tar as absolute paths under `parent`, with symlinks to files of the
/// same tar resolved.
fn files_in(tar: &[u8], parent: &str) -> std::io::Result<Vec<ContainerFile>> {
    use std::collections::BTreeMap;
    use std::io::Read;
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = format!(
            "{parent}/{}",
            entry.path()?.to_string_lossy().trim_end_matches('/')
        );
        let kind = entry.header().entry_type();
        if kind.is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            files.insert(name, (entry.header().mode()?, content));
        } else if kind.is_symlink() {
            if let Some(to) = entry.link_name()? {
                links.push((name, to.to_string_lossy().into_owned()));
            }
        }
    }
    let mut out: Vec<ContainerFile> = files
        .iter()
        .map(|(path, (mode, content))| ContainerFile {
            path: path.clone(),
            mode: *mode,
            content: content.clone(),
        })
        .collect();
    for (link, to) in links {
        let dir = link.rsplit_once('/').map_or("", |(dir, _)| dir);
        let resolved = normalise(&if to.starts_with('/') {
            to
        } else {
            format!("{dir}/{to}")
        });
        if let Some((mode, content)) = files.get(&resolved) {
            out.push(ContainerFile {
                path: link,
                mode: *mode,
                content: content.clone(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// `/a/b/../c/./d` → `/a/c/d`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The content of the first regular file in a tar.
fn first_file(tar: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            return Ok(content);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the archive holds no regular file",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_with_owner_and_mode() {
        let entry = Entry {
            path: "/run/secrets/pgpass".into(),
            content: Some(b"s3cret".to_vec()),
            mode: 0o600,
            uid: 999,
            gid: 998,
            mtime: 1_700_000_000,
        };
        let tar = entry.tar().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        let header = first.header();
        assert_eq!(first.path().unwrap().to_str(), Some("run/secrets/pgpass"));
        assert_eq!(header.mode().unwrap(), 0o600);
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (999, 998));
        assert_eq!(first_file(&tar).unwrap(), b"s3cret");
    }

    #[test]
    fn files_under_a_path_come_with_symlinks_into_the_same_tree() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut file = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, data).unwrap();
        };
        file("letsencrypt/archive/shop/cert1.pem", b"CERT");
        file("letsencrypt/archive/shop/privkey1.pem", b"KEY");
        let mut link = |name: &str, to: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, name, to).unwrap();
        };
        link(
            "letsencrypt/live/shop/cert.pem",
            "../../archive/shop/cert1.pem",
        );
        link("letsencrypt/live/shop/elsewhere.pem", "/etc/outside.pem");
        let tar = builder.into_inner().unwrap();
        let found = files_in(&tar, "/etc").unwrap();
        let paths: Vec<&str> = found.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/etc/letsencrypt/archive/shop/cert1.pem",
                "/etc/letsencrypt/archive/shop/privkey1.pem",
                "/etc/letsencrypt/live/shop/cert.pem",
            ]
        );
        assert_eq!(found[2].content, b"CERT");
        assert_eq!(normalise("/a/b/../c/./d"), "/a/c/d");
    }

    #[test]
    fn a_directory_entry_ends_with_a_slash() {
        let entry = Entry {
            path: "/runbook-volume".into(),
            content: None,
            mode: 0o750,
            uid: 1000,
            gid: 1000,
            mtime: 0,
        };
        let tar = entry.tar().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        assert!(first.header().entry_type().is_dir());
        assert_eq!(first.path().unwrap().to_str(), Some("runbook-volume/"));
        assert!(first_file(&tar).is_err());
    }
}
