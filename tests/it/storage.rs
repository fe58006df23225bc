//! Storage failure: the database on a small tmpfs that fills up. Ingest
//! answers 503 (nothing half-accepted), and once space returns, what was
//! accepted is delivered and new events are taken again. Needs root (it
//! mounts a tmpfs); CI runs as root.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::utils::{free_port, post, Running, TestReceiver};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Random text, which the outbox cannot pack (`store::sled::record`), so it
/// fills the disk at its size.
fn noise(len: usize) -> String {
    use base64::Engine;
    let mut random = vec![0u8; len * 3 / 4];
    getrandom::fill(&mut random).unwrap();
    base64::engine::general_purpose::STANDARD.encode(random)
}

#[tokio::test]
async fn a_full_disk_refuses_new_events_and_loses_none_that_were_accepted() {
    let receiver = TestReceiver::start().await;
    // Nothing leaves the outbox until space is back.
    receiver.set_status(503);
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "64m");
    let port = free_port();
    let config = tmp.path().join("wasmhook.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\npath = {:?}\nmin_free_mb = 24\n\
             [webhooks]\nallowed_networks = [\"127.0.0.0/8\"]\n\
             [webhooks.retry]\nmax_attempts = 1000\ninitial_delay = \"100ms\"\nmax_delay = \"200ms\"\n\
             [[observer]]\nname = \"o\"\nentity = \"order\"\n[[observer.webhook]]\nurl = \"{}\"\n",
            disk.dir.join("db").display().to_string(),
            receiver.url("/in")
        ),
    )
    .unwrap();
    let running = Running::start(&config, tmp.path(), port).await;
    let mut accepted = HashSet::new();
    let mut refused = 0;
    for id in 0..5_000i64 {
        let event =
            json!({"entity": "order", "op": "INSERT", "data": {"id": id, "note": noise(20_000)}});
        let (status, answer) = post(&running.url("/events"), event.to_string()).await;
        match status {
            202 => {
                accepted.insert(id);
            }
            503 => {
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
            other => panic!("unexpected answer {other}: {answer}"),
        }
    }
    assert!(
        refused >= 20,
        "the disk never filled ({} accepted)",
        accepted.len()
    );
    let ready = reqwest::get(running.url("/readyz")).await.unwrap();
    eprintln!(
        "full disk: {} events accepted, then 503s; /readyz answered {}",
        accepted.len(),
        ready.status()
    );

    // Space returns and the receiver recovers.
    disk.resize("512m");
    receiver.set_status(200);
    let mut later = None;
    for _ in 0..100 {
        let event = json!({"entity": "order", "op": "INSERT", "data": {"id": 999_999}});
        let (status, _) = post(&running.url("/events"), event.to_string()).await;
        if status == 202 {
            later = Some(999_999);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        later.is_some(),
        "new events are taken again once space is back"
    );
    accepted.insert(999_999);
    let want = accepted.clone();
    receiver
        .wait_until("every accepted event", Duration::from_secs(120), |r| {
            let got: HashSet<i64> = r
                .iter()
                .filter(|r| r.status == 200)
                .filter_map(|r| r.json()["id"].as_i64())
                .collect();
            want.is_subset(&got)
        })
        .await;
    drop(running);
}
