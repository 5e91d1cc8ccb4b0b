//! [`Manifest`]: the last file a checkpoint writes, `chk-<epoch>/_manifest.json`. A
//! checkpoint without one was cut short and is never read; with one, it lists every job's
//! statement (a restore checks the pipeline is the same), split positions and state files.

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// One operator's state file in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct StateFile {
    /// The operator's name within its job (`upsert-0`).
    pub id: String,
    /// The file, relative to the checkpoint directory.
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
}

/// What one job saved.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEntry {
    /// The job's place among the pipeline's jobs.
    pub job: usize,
    /// The job's statement as written.
    pub sql: String,
    pub positions: Vec<(String, i64)>,
    pub states: Vec<StateFile>,
}

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub epoch: u64,
    /// When it completed, in milliseconds since the Unix epoch.
    pub completed_at_ms: i64,
    /// How long taking and writing it took.
    pub duration_ms: u64,
    pub jobs: Vec<JobEntry>,
}

impl Manifest {
    /// Bytes of state across jobs.
    pub fn bytes(&self) -> u64 {
        self.jobs
            .iter()
            .flat_map(|j| &j.states)
            .map(|s| s.bytes)
            .sum()
    }

    /// The manifest as JSON.
    pub fn to_json(&self) -> String {
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|job| {
                let positions: serde_json::Map<String, Value> = job
                    .positions
                    .iter()
                    .map(|(split, position)| (split.clone(), json!(position)))
                    .collect();
                let states: Vec<Value> = job
                    .states
                    .iter()
                    .map(|s| json!({"id": s.id, "path": s.path, "bytes": s.bytes, "rows": s.rows}))
                    .collect();
                json!({"job": job.job, "sql": job.sql, "positions": positions, "states": states})
            })
            .collect();
        let manifest = json!({
            "version": 1,
            "epoch": self.epoch,
            "completed_at_ms": self.completed_at_ms,
            "duration_ms": self.duration_ms,
            "jobs": jobs,
        });
        serde_json::to_string_pretty(&manifest).unwrap_or_default()
    }

    /// Reads a manifest written by [`Self::to_json`]; `location` names it in errors.
    pub fn from_json(text: &str, location: &str) -> Result<Self> {
        let bad = |what: &str| Error::Checkpoint {
            location: location.to_string(),
            source: format!("bad manifest: {what}").into(),
        };
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Checkpoint {
            location: location.to_string(),
            source: Box::new(e),
        })?;
        let int = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64).ok_or_else(|| bad(key));
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(key))
        };
        if int(&value, "version")? != 1 {
            return Err(bad("unknown version"));
        }
        let mut jobs = Vec::new();
        for job in value
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("jobs"))?
        {
            let positions = job
                .get("positions")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("positions"))?
                .iter()
                .map(|(split, p)| Ok((split.clone(), p.as_i64().ok_or_else(|| bad("position"))?)))
                .collect::<Result<Vec<_>>>()?;
            let states = job
                .get("states")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("states"))?
                .iter()
                .map(|s| {
                    Ok(StateFile {
                        id: text(s, "id")?,
                        path: text(s, "path")?,
                        bytes: int(s, "bytes")? as u64,
                        rows: int(s, "rows")? as u64,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            jobs.push(JobEntry {
                job: int(job, "job")? as usize,
                sql: text(job, "sql")?,
                positions,
                states,
            });
        }
        Ok(Self {
            epoch: int(&value, "epoch")? as u64,
            completed_at_ms: int(&value, "completed_at_ms")?,
            duration_ms: int(&value, "duration_ms")? as u64,
            jobs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_as_written() {
        let manifest = Manifest {
            epoch: 12,
            completed_at_ms: 1_700_000_000_000,
            duration_ms: 40,
            jobs: vec![JobEntry {
                job: 1,
                sql: "INSERT INTO s SELECT * FROM events".into(),
                positions: vec![("kafka:events/0".into(), 1234)],
                states: vec![StateFile {
                    id: "upsert-0".into(),
                    path: "chk-0000000012/job-1/upsert-0.arrows".into(),
                    bytes: 99,
                    rows: 3,
                }],
            }],
        };
        let back = Manifest::from_json(&manifest.to_json(), "test").unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.bytes(), 99);
    }

    #[test]
    fn a_damaged_manifest_is_an_error_naming_the_field() {
        let error = Manifest::from_json(r#"{"version": 1, "epoch": 3}"#, "dir").unwrap_err();
        assert!(error.to_string().contains("jobs"), "{error}");
    }
}
