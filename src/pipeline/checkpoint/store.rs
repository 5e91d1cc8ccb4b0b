//! [`CheckpointStore`]: the checkpoint directory, a local folder or any object-store URL.
//!
//! ```text
//! chk-0000000012/job-0/source-0.arrows    one Arrow IPC stream per operator's state
//! chk-0000000012/job-0/upsert-0.arrows
//! chk-0000000012/_manifest.json           written last: the checkpoint is complete
//! ```
//!
//! A crash while a checkpoint is written leaves a folder without a manifest, which is never
//! read; the latest complete checkpoint before it stays usable. On a local disk every file
//! and its folders are fsynced before the manifest is written, and the manifest before the
//! checkpoint counts; should a power loss still leave a manifest or a state file
//! truncated, a restore skips that checkpoint, says why, and takes the newest one that
//! reads whole. Older checkpoints than the last few complete ones are deleted.
//!
//! Where two processes may write the same directory at once (a partition's task of a
//! consumer group, briefly run by its old and its new owner), each names its folders with a
//! writer tag of its own (`chk-0000000012-1a2b3c4d/`), so that no checkpoint mixes files of
//! both; of two complete checkpoints of one epoch the later completed is the latest. A
//! group's directory also holds its `lineage` (see [`CheckpointStore::lineage`]).

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::manifest::{JobEntry, Manifest, StateFile};
use crate::connector::file::FileLocation;
use crate::error::{Error, Result};
use crate::stream::{JobSnapshot, StateSnapshot};

const MANIFEST: &str = "_manifest.json";
/// The file naming a consumer group's lineage (see [`CheckpointStore::lineage`]).
const LINEAGE: &str = "lineage";

/// A checkpoint found in the directory.
#[derive(Debug, Clone)]
pub struct Listed {
    pub epoch: u64,
    /// Its folder in the directory, `chk-0000000012` (or with a writer tag).
    pub folder: String,
    /// The manifest of a complete checkpoint; `None` for one cut short.
    pub manifest: Option<Manifest>,
    /// Why its manifest could not be read, when it is there but damaged.
    pub damaged: Option<String>,
    /// Bytes of its files, manifest included.
    pub bytes: u64,
}

/// What a restore finds in the directory.
#[derive(Debug)]
pub struct Restorable {
    /// The newest checkpoint that reads whole, and each of its jobs' snapshots in the
    /// order of its manifest.
    pub found: Option<(Manifest, Vec<JobSnapshot>)>,
    /// Newer checkpoints passed over: their folder and why.
    pub skipped: Vec<(String, String)>,
    /// The highest epoch of any folder, whole or not: the next checkpoint comes after it
    /// and never writes into a damaged one's folder.
    pub newest_epoch: u64,
}

/// The directory checkpoints are written to and restored from.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    location: FileLocation,
    /// The tag this writer's folders carry, when several may write at once.
    writer: Option<String>,
}

impl CheckpointStore {
    /// The directory at `location`: a local path, `file://` or `s3://` URL.
    pub fn open(location: &str) -> Result<Self> {
        if !location.contains("://") {
            std::fs::create_dir_all(location).map_err(|e| Error::Checkpoint {
                location: location.to_string(),
                source: Box::new(e),
            })?;
        }
        let location = FileLocation::directory(location).map_err(|message| Error::Checkpoint {
            location: location.to_string(),
            source: message.into(),
        })?;
        Ok(Self {
            location,
            writer: None,
        })
    }

    /// The same directory, this writer's checkpoints in folders tagged `writer`.
    pub fn with_writer(self, writer: Option<String>) -> Self {
        Self { writer, ..self }
    }

    /// The folder of this writer's checkpoint `epoch`.
    fn folder(&self, epoch: u64) -> String {
        match &self.writer {
            Some(writer) => format!("chk-{epoch:010}-{writer}"),
            None => format!("chk-{epoch:010}"),
        }
    }

    /// The directory as the user wrote it.
    pub fn display(&self) -> &str {
        &self.location.display
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.location.path.clone();
        for part in relative.split('/') {
            path = path.join(part);
        }
        path
    }

    fn error(&self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Checkpoint {
            location: self.location.display.clone(),
            source: source.into(),
        }
    }

    /// Writes one job's snapshot for checkpoint `epoch` and describes what it wrote.
    pub async fn write_job(
        &self,
        epoch: u64,
        job: usize,
        sql: &str,
        snapshot: &JobSnapshot,
    ) -> Result<JobEntry> {
        let mut states = Vec::with_capacity(snapshot.states.len());
        for (id, state) in &snapshot.states {
            let bytes = state.encode()?;
            let path = format!("{}/job-{job}/{id}.arrows", self.folder(epoch));
            let size = bytes.len() as u64;
            self.put(&path, PutPayload::from(bytes)).await?;
            self.location
                .sync_file(&relative_path(&path))
                .await
                .map_err(|e| self.flush_failed(&path, e))?;
            states.push(StateFile {
                id: id.clone(),
                path,
                bytes: size,
                rows: state.num_rows() as u64,
            });
        }
        // The job's folder and those above it, once its files are all written.
        if !states.is_empty() {
            let folder = format!("{}/job-{job}", self.folder(epoch));
            self.location
                .sync_with_folders(&relative_path(&folder))
                .await
                .map_err(|e| self.flush_failed(&folder, e))?;
        }
        Ok(JobEntry {
            job,
            sql: sql.to_string(),
            positions: snapshot.positions.clone(),
            states,
        })
    }

    /// Completes a checkpoint by writing its manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = format!("{}/{MANIFEST}", self.folder(manifest.epoch));
        self.put(&path, PutPayload::from(manifest.to_json().into_bytes()))
            .await?;
        self.location
            .sync_with_folders(&relative_path(&path))
            .await
            .map_err(|e| self.flush_failed(&path, e))
    }

    async fn put(&self, relative: &str, payload: PutPayload) -> Result<()> {
        self.location
            .store
            .put(&self.path(relative), payload)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    fn flush_failed(&self, relative: &str, error: std::io::Error) -> Error {
        self.error(format!("flushing {relative} to disk: {error}"))
    }

    /// Every checkpoint in the directory, oldest first (of one epoch, the one cut short or
    /// completed first, first).
    pub async fn list(&self) -> Result<Vec<Listed>> {
        let files: Vec<_> = self
            .location
            .store
            .list(Some(&self.location.path))
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        let mut found: std::collections::BTreeMap<String, Listed> = Default::default();
        let mut manifests = Vec::new();
        for file in files {
            let Some(relative) = file.location.prefix_match(&self.location.path) else {
                continue;
            };
            let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
            let Some((folder, epoch)) = parts
                .first()
                .and_then(|f| Some((f.clone(), parse_folder(f)?)))
            else {
                continue;
            };
            let listed = found.entry(folder.clone()).or_insert(Listed {
                epoch,
                folder: folder.clone(),
                manifest: None,
                damaged: None,
                bytes: 0,
            });
            listed.bytes += file.size;
            if parts.len() == 2 && parts[1] == MANIFEST {
                manifests.push((folder, file.location));
            }
        }
        for (folder, path) in manifests {
            let text = self.read(&path).await?;
            let manifest = String::from_utf8(text)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    Manifest::from_json(&text, &format!("{}/{path}", self.display()))
                        .map_err(|e| e.to_string())
                });
            if let Some(listed) = found.get_mut(&folder) {
                match manifest {
                    Ok(manifest) => listed.manifest = Some(manifest),
                    Err(reason) => listed.damaged = Some(reason),
                }
            }
        }
        let mut listed: Vec<Listed> = found.into_values().collect();
        listed.sort_by_key(|l| (l.epoch, l.manifest.as_ref().map(|m| m.completed_at_ms)));
        Ok(listed)
    }

    /// The partitions whose tasks checkpoint in this directory's `task-N/` folders, when it
    /// is a consumer group's (`--group`), in order.
    pub async fn group_tasks(&self) -> Result<Vec<i32>> {
        let listed = self
            .location
            .store
            .list_with_delimiter(Some(&self.location.path))
            .await
            .map_err(|e| self.error(e))?;
        let mut tasks: Vec<i32> = listed
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename()?.strip_prefix("task-")?.parse().ok())
            .collect();
        tasks.sort_unstable();
        Ok(tasks)
    }

    /// The lineage of the consumer group checkpointing here: a number drawn by the first
    /// process of the group to ask, and kept in `lineage`, so that every process of the
    /// group, now and after restarts, reads the same. A group started anew with another
    /// directory gets another, and skips what an earlier run left in its repartition
    /// topics.
    pub async fn lineage(&self) -> Result<u64> {
        let path = self.path(LINEAGE);
        match self.location.store.get(&path).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| self.error(e))?;
                return self.parse_lineage(&bytes);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(e)),
        }
        let mut drawn = [0u8; 8];
        getrandom::fill(&mut drawn).map_err(|e| self.error(e.to_string()))?;
        let drawn = u64::from_be_bytes(drawn);
        let created = self
            .location
            .store
            .put_opts(
                &path,
                PutPayload::from(drawn.to_string().into_bytes()),
                PutMode::Create.into(),
            )
            .await;
        match created {
            Ok(_) => Ok(drawn),
            // Another process drew first, or the store cannot create exclusively.
            Err(object_store::Error::AlreadyExists { .. }) => {
                self.parse_lineage(&self.read(&path).await?)
            }
            // A store without exclusive creation: what is there once written is the lineage
            // (processes starting at the same instant may still differ; their readers then
            // say they skip the others' frames).
            Err(object_store::Error::NotImplemented { .. }) => {
                self.location
                    .store
                    .put(&path, PutPayload::from(drawn.to_string().into_bytes()))
                    .await
                    .map_err(|e| self.error(e))?;
                self.parse_lineage(&self.read(&path).await?)
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn parse_lineage(&self, bytes: &[u8]) -> Result<u64> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| self.error(format!("{LINEAGE} holds no number")))
    }

    /// The latest complete checkpoint, if any.
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .rev()
            .find_map(|l| l.manifest))
    }

    /// The newest complete checkpoint that reads whole, with what it saved of each job;
    /// every newer one that does not (a damaged manifest, a missing or truncated state
    /// file) is named with the reason in `skipped`.
    pub async fn latest_whole(&self) -> Result<Restorable> {
        let listed = self.list().await?;
        let newest_epoch = listed.iter().map(|l| l.epoch).max().unwrap_or(0);
        let mut skipped = Vec::new();
        for candidate in listed.into_iter().rev() {
            if let Some(reason) = candidate.damaged {
                skipped.push((candidate.folder, reason));
                continue;
            }
            let Some(manifest) = candidate.manifest else {
                continue;
            };
            let mut jobs = Vec::with_capacity(manifest.jobs.len());
            let mut failure = None;
            for entry in &manifest.jobs {
                match self.read_job(entry).await {
                    Ok(snapshot) => jobs.push(snapshot),
                    Err(error) => {
                        failure = Some(error.to_string());
                        break;
                    }
                }
            }
            match failure {
                Some(reason) => skipped.push((candidate.folder, reason)),
                None => {
                    return Ok(Restorable {
                        found: Some((manifest, jobs)),
                        skipped,
                        newest_epoch,
                    });
                }
            }
        }
        Ok(Restorable {
            found: None,
            skipped,
            newest_epoch,
        })
    }

    /// Reads back what `entry` saved of one job.
    pub async fn read_job(&self, entry: &JobEntry) -> Result<JobSnapshot> {
        let mut states = Vec::with_capacity(entry.states.len());
        for file in &entry.states {
            let bytes = self.read(&self.path(&file.path)).await?;
            let state = StateSnapshot::decode(&bytes).map_err(|e| self.error(e))?;
            states.push((file.id.clone(), state));
        }
        Ok(JobSnapshot {
            positions: entry.positions.clone(),
            states,
        })
    }

    /// Deletes every checkpoint older than the `keep` latest complete ones.
    pub async fn prune(&self, keep: usize) -> Result<()> {
        let listed = self.list().await?;
        let complete: Vec<u64> = listed
            .iter()
            .filter(|l| l.manifest.is_some())
            .map(|l| l.epoch)
            .collect();
        let Some(&oldest_kept) = complete.iter().rev().take(keep).next_back() else {
            return Ok(());
        };
        for old in listed.iter().filter(|l| l.epoch < oldest_kept) {
            let prefix = self.path(&old.folder);
            let files: Vec<_> = self
                .location
                .store
                .list(Some(&prefix))
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            // The manifest first: a half-deleted checkpoint is an incomplete one.
            let (manifest, rest): (Vec<_>, Vec<_>) = files
                .into_iter()
                .partition(|f| f.location.filename() == Some(MANIFEST));
            for file in manifest.into_iter().chain(rest) {
                self.location
                    .store
                    .delete(&file.location)
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    async fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let got = self
            .location
            .store
            .get(path)
            .await
            .map_err(|e| self.error(e))?;
        Ok(got.bytes().await.map_err(|e| self.error(e))?.to_vec())
    }
}

/// `relative` (slash-separated) as an object path.
fn relative_path(relative: &str) -> Path {
    relative
        .split('/')
        .fold(Path::default(), |path, part| path.join(part))
}

/// The epoch of a checkpoint folder, `chk-0000000012` or `chk-0000000012-1a2b3c4d`.
fn parse_folder(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("chk-")?;
    rest.split_once('-')
        .map_or(rest, |(epoch, _)| epoch)
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(epoch: u64, completed_at_ms: i64) -> Manifest {
        Manifest {
            epoch,
            completed_at_ms,
            duration_ms: 1,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn folders_with_and_without_a_writer_tag_name_their_epoch() {
        assert_eq!(parse_folder("chk-0000000012"), Some(12));
        assert_eq!(parse_folder("chk-0000000012-1a2b-3-4c5d"), Some(12));
        assert_eq!(parse_folder("task-3"), None);
    }

    #[tokio::test]
    async fn pruned_checkpoints_leave_no_folders_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        for epoch in 1..=5 {
            store
                .write_manifest(&manifest(epoch, epoch as i64))
                .await
                .unwrap();
        }
        store.prune(2).await.unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["chk-0000000004", "chk-0000000005"]);
        assert_eq!(store.list().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn two_writers_of_one_epoch_keep_their_own_folders_and_the_later_is_latest() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().to_str().unwrap();
        let old_owner = CheckpointStore::open(location)
            .unwrap()
            .with_writer(Some("old".into()));
        let new_owner = CheckpointStore::open(location)
            .unwrap()
            .with_writer(Some("new".into()));
        new_owner.write_manifest(&manifest(7, 2_000)).await.unwrap();
        old_owner.write_manifest(&manifest(7, 1_000)).await.unwrap();
        old_owner.write_manifest(&manifest(6, 3_000)).await.unwrap();
        let listed = new_owner.list().await.unwrap();
        let folders: Vec<&str> = listed.iter().map(|l| l.folder.as_str()).collect();
        assert_eq!(
            folders,
            [
                "chk-0000000006-old",
                "chk-0000000007-old",
                "chk-0000000007-new"
            ]
        );
        let latest = new_owner.latest().await.unwrap().unwrap();
        assert_eq!((latest.epoch, latest.completed_at_ms), (7, 2_000));
    }

    #[tokio::test]
    async fn a_group_directory_lists_its_tasks_in_partition_order() {
        let dir = tempfile::tempdir().unwrap();
        for task in ["task-10", "task-2", "other"] {
            let store = CheckpointStore::open(dir.path().join(task).to_str().unwrap()).unwrap();
            store.write_manifest(&manifest(1, 1)).await.unwrap();
        }
        let group = CheckpointStore::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(group.group_tasks().await.unwrap(), [2, 10]);
        assert!(group.list().await.unwrap().is_empty());
    }
}
