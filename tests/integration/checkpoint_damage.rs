//! Checkpoints damaged as a power loss may leave them (a truncated manifest, a truncated
//! state file): the next run skips each, says which and why, resumes from the newest one
//! that reads whole, and its view holds exactly the counts of the events it has read (the
//! generator is deterministic: a straight run over as many events gives the same rows).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::counted_view::{assert_counts_a_prefix_once, pipeline, resume_past};

/// The view's generator: 2,000 events a second over 30 users.
const PER_SECOND: u32 = 2000;
const USERS: u32 = 30;

fn run(pipeline: &Path, checkpoints: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_profusion"));
    command.arg("run").arg(pipeline).arg("--quiet");
    if let Some(dir) = checkpoints {
        command
            .arg("--checkpoint-dir")
            .arg(dir)
            .args(["--checkpoint-interval", "200ms"]);
    }
    command
}

/// The folders of complete checkpoints in `dir`, newest last.
fn complete(dir: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("_manifest.json").exists())
                .collect()
        })
        .unwrap_or_default();
    folders.sort();
    folders
}

/// Runs with checkpoints until `count` more are complete, then kills the process.
fn run_and_kill(pipeline: &Path, checkpoints: &Path, count: usize) {
    let mut child = run(pipeline, Some(checkpoints))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = complete(checkpoints).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while complete(checkpoints).len() < before + count {
        assert!(Instant::now() < deadline, "no checkpoints were taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Cuts the file at `path` to half its length, as a write the disk never finished.
fn truncate(path: &Path) {
    let length = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
}

#[test]
fn a_truncated_manifest_or_state_file_is_skipped_for_the_newest_whole_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let restored_db = dir.path().join("restored.db");
    let restored = dir.path().join("restored.sql");
    std::fs::write(&restored, pipeline(&restored_db, None, PER_SECOND, USERS)).unwrap();
    let checkpoints = dir.path().join("checkpoints");

    // A manifest cut short.
    run_and_kill(&restored, &checkpoints, 2);
    let newest = complete(&checkpoints).pop().unwrap();
    truncate(&newest.join("_manifest.json"));
    let listing = Command::new(env!("CARGO_BIN_EXE_profusion"))
        .args(["checkpoints", "list"])
        .arg(&checkpoints)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("damaged"),
        "{}",
        String::from_utf8_lossy(&listing.stdout)
    );
    // Resumed, killed again after checkpoints of its own, then a state file cut short.
    run_and_kill(&restored, &checkpoints, 2);
    let newest = complete(&checkpoints).pop().unwrap();
    let state = walk(&newest)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "arrows"))
        .expect("a state file");
    truncate(&state);
    let state_name = newest.file_name().unwrap().to_string_lossy().into_owned();

    let said = resume_past(&mut run(&restored, Some(&checkpoints)), &restored_db, 2_000);
    assert!(
        said.contains(&format!("checkpoint {state_name}")) && said.contains("is skipped"),
        "the run did not say it skipped {state_name}:\n{said}"
    );
    assert!(said.contains("resuming from checkpoint"), "{said}");

    // The view counts a prefix of the generated events, each once.
    assert_counts_a_prefix_once(dir.path(), &restored_db, PER_SECOND, USERS);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
