//! A disk that fills up under a running pipeline: its SQLite view and checkpoints on a
//! small tmpfs the test mounts (root only; elsewhere the test says so and passes). The
//! pipeline stops with an error that says the disk is full, commits nothing past what was
//! written, and once space returns a restart resumes and its view holds exactly the counts
//! of a prefix of the generated events.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::counted_view::{assert_counts_a_prefix_once, pipeline, resume_past};

/// The view's generator: 20,000 events a second over 5,000 users.
const PER_SECOND: u32 = 20_000;
const USERS: u32 = 5_000;

/// Mounts a tmpfs of `megabytes` at `at`; false when this process may not.
fn mount_tmpfs(at: &Path, megabytes: u32) -> bool {
    std::fs::create_dir_all(at).unwrap();
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
        .arg(at)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_pipeline_and_a_restart_resumes_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    if !mount_tmpfs(&disk, 32) {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _unmount = Unmount(&disk);
    let db = disk.join("spend.db");
    let checkpoints = disk.join("checkpoints");
    let file = dir.path().join("p.sql");
    std::fs::write(&file, pipeline(&db, None, PER_SECOND, USERS)).unwrap();
    let run = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_profusion"));
        command
            .arg("run")
            .arg(&file)
            .arg("--quiet")
            .arg("--checkpoint-dir")
            .arg(&checkpoints)
            .args(["--checkpoint-interval", "200ms"]);
        command
    };

    // Room for a few checkpoints, then the ballast leaves the disk nearly full.
    let child = run()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let ballast = disk.join("ballast");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", ballast.display()))
        .stderr(Stdio::null())
        .status();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "the pipeline did not stop on a full disk"
    );
    assert!(
        stderr.contains("full") || stderr.contains("No space left"),
        "the error does not say the disk is full:\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(120));

    // Space returns: the restart resumes from the last checkpoint that was written. The
    // view holds what the stopped run upserted after that checkpoint (each key's count is
    // its version): the restart replays up to there, changing nothing, and goes past it.
    std::fs::remove_file(&ballast).unwrap();
    resume_past(&mut run(), &db, 20_000);

    // Each generated event counted once: a straight run over as many gives the same rows.
    assert_counts_a_prefix_once(dir.path(), &db, PER_SECOND, USERS);
}
