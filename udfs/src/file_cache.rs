//! Files that functions read at planning time (models, rule sets), loaded once per version
//! of the file: a query plans and runs against one parsed copy, and a file replaced on disk
//! is read again by the next query that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use datafusion::common::{DataFusionError, Result, plan_datafusion_err};

/// Parsed files by path, each kept with the modification time and length it was read at.
#[derive(Debug)]
pub struct FileCache<T> {
    what: &'static str,
    entries: Mutex<HashMap<PathBuf, Entry<T>>>,
}

#[derive(Debug)]
struct Entry<T> {
    version: (SystemTime, u64),
    value: Arc<T>,
}

impl<T> FileCache<T> {
    /// An empty cache of files that are `what` (used in errors: "model file", "rules file").
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The parsed contents of `path`, read and parsed by `parse` when the file is new or has
    /// changed since it was last read. Errors name the file and say what is wrong with it.
    pub fn get(
        &self,
        path: &str,
        parse: impl FnOnce(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<Arc<T>> {
        let path_buf = PathBuf::from(path);
        let version = file_version(&path_buf).map_err(|e| self.error(path, e))?;
        if let Some(entry) = self.lock().get(&path_buf)
            && entry.version == version
        {
            return Ok(Arc::clone(&entry.value));
        }
        let bytes = std::fs::read(&path_buf).map_err(|e| self.error(path, e.to_string()))?;
        let value = Arc::new(parse(&bytes).map_err(|e| self.error(path, e))?);
        self.lock().insert(
            path_buf,
            Entry {
                version,
                value: Arc::clone(&value),
            },
        );
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry<T>>> {
        // A panic while holding the lock cannot leave an entry half-written.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, path: &str, reason: String) -> DataFusionError {
        plan_datafusion_err!("{} '{path}': {reason}", self.what)
    }
}

fn file_version(path: &Path) -> std::result::Result<(SystemTime, u64), String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a file".to_string());
    }
    let modified = metadata.modified().map_err(|e| e.to_string())?;
    Ok((modified, metadata.len()))
}
