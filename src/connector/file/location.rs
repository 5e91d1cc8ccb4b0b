//! Where a `file` table's data lives: a local path or an object-store URL (`s3://…`),
//! resolved into an [`ObjectStore`] and a path inside it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

/// A resolved `path` option.
#[derive(Debug, Clone)]
pub struct FileLocation {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    /// The location as the user wrote it, for messages.
    pub display: String,
    /// The local folder that `path` is relative to, when the store is the local disk
    /// (writers that must reach the disk fsync through it).
    pub local_root: Option<std::path::PathBuf>,
}

impl FileLocation {
    /// Flushes the file at `relative` (a path under `path`) to a local disk; nothing for an
    /// object store, which makes a write durable before it answers.
    pub async fn sync_file(&self, relative: &Path) -> std::io::Result<()> {
        self.sync_local(relative, false).await
    }

    /// Flushes the file or folder at `relative` and every folder that holds it, up to the
    /// location's own, so that the entries naming them are on the disk too.
    pub async fn sync_with_folders(&self, relative: &Path) -> std::io::Result<()> {
        self.sync_local(relative, true).await
    }

    /// Where the object at `object` (a path in the store, from its root) is on the local
    /// disk, when the store is the local disk.
    pub fn local_path<'a>(
        &self,
        object: impl IntoIterator<Item = object_store::path::PathPart<'a>>,
    ) -> Option<std::path::PathBuf> {
        let root = self.local_root.clone()?;
        Some(
            object
                .into_iter()
                .fold(root, |path, part| path.join(part.as_ref())),
        )
    }

    async fn sync_local(&self, relative: &Path, folders: bool) -> std::io::Result<()> {
        let (Some(root), Some(entry)) = (
            self.local_root.clone(),
            self.local_path(self.path.parts().chain(relative.parts())),
        ) else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&entry)?.sync_all()?;
            let mut folder = entry.parent().filter(|_| folders);
            while let Some(dir) = folder {
                std::fs::File::open(dir)?.sync_all()?;
                if dir == root {
                    break;
                }
                folder = dir.parent();
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl FileLocation {
    /// Resolves `location`: `s3://bucket/key` (credentials and region from the usual
    /// `AWS_*` environment variables), `file:///abs/path`, or a local path.
    pub fn resolve(location: &str) -> Result<Self, String> {
        Self::resolve_with(location, Self::local)
    }

    /// Resolves `location` as a directory its caller owns (a checkpoint directory): as
    /// [`Self::resolve`], but a local directory is the root of a store of its own that
    /// removes the folders its deletes empty, never the directory itself.
    pub fn directory(location: &str) -> Result<Self, String> {
        Self::resolve_with(location, Self::local_directory)
    }

    fn resolve_with(
        location: &str,
        local: fn(&std::path::Path, String) -> Result<Self, String>,
    ) -> Result<Self, String> {
        let display = location.to_string();
        if let Some((scheme, _)) = location.split_once("://") {
            let url = Url::parse(location).map_err(|e| format!("bad URL '{location}': {e}"))?;
            return match scheme {
                "s3" | "s3a" => {
                    let store = AmazonS3Builder::from_env()
                        .with_url(location)
                        .build()
                        .map_err(|e| format!("cannot open '{location}': {e}"))?;
                    let path = Path::from_url_path(url.path())
                        .map_err(|e| format!("bad path in '{location}': {e}"))?;
                    Ok(Self {
                        store: Arc::new(store),
                        path,
                        display,
                        local_root: None,
                    })
                }
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|_| format!("bad file URL '{location}'"))?;
                    local(&path, display)
                }
                other => Err(format!(
                    "unsupported scheme '{other}' in '{location}' (use a local path, file:// or s3://)"
                )),
            };
        }
        local(std::path::Path::new(location), display)
    }

    fn local(path: &std::path::Path, display: String) -> Result<Self, String> {
        let absolute =
            std::path::absolute(path).map_err(|e| format!("bad path '{display}': {e}"))?;
        let path = Path::from_absolute_path(&absolute)
            .map_err(|e| format!("bad path '{display}': {e}"))?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new()),
            path,
            display,
            local_root: Some(std::path::PathBuf::from("/")),
        })
    }

    fn local_directory(path: &std::path::Path, display: String) -> Result<Self, String> {
        let store = LocalFileSystem::new_with_prefix(path)
            .map_err(|e| format!("bad directory '{display}': {e}"))?
            .with_automatic_cleanup(true);
        let root = std::path::absolute(path).map_err(|e| format!("bad path '{display}': {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            path: Path::default(),
            display,
            local_root: Some(root),
        })
    }
}
