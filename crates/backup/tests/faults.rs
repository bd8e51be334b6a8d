//! Fault injection against a real S3 server: the server is stopped in the middle of an
//! upload. A private SeaweedFS instance (scripts/s3-server.sh with its own dir and ports) is
//! used so the shared test server is not disturbed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::pseudo_random;
use object_store::ObjectStore;
use squashbox_backup::{create_backup, list_backups, BackupOptions, Clock, Store};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh")
}

/// A private S3 server; stopped (by its PID file, via the script) on drop.
struct PrivateServer {
    dir: PathBuf,
    port: u16,
}

impl PrivateServer {
    fn run(&self, action: &str) -> std::process::Output {
        Command::new("bash")
            .arg(script())
            .arg(action)
            .env("SQUASHBOX_S3_DIR", &self.dir)
            .env("SQUASHBOX_S3_PORT", self.port.to_string())
            .output()
            .unwrap()
    }

    fn start(&self) {
        let out = self.run("start");
        assert!(
            out.status.success(),
            "starting the private S3 server failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let out = self.run("stop");
        assert!(out.status.success());
    }

    fn store(&self, prefix: &str) -> Store {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        Store::open_with_config(
            &format!("s3://squashbox-test/{prefix}"),
            &[("aws_endpoint_url", endpoint.as_str())],
        )
        .unwrap()
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// A base port with base..base+3 and base+10000..base+10003 free (SeaweedFS's http and grpc
/// ports for its four components).
fn free_port_block() -> u16 {
    let start = 20_000 + (std::process::id() % 1000) as u16 * 8;
    (0..200u16)
        .map(|i| 20_000 + (start - 20_000 + i * 8) % 9_000)
        .find(|&base| {
            (0..4).all(|k| {
                std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", base + 10_000 + k)).is_ok()
            })
        })
        .expect("no free port block")
}

#[test]
fn s3_server_stopped_mid_upload_leaves_no_backup_and_no_temp_files() {
    // Needs the S3 setup (credentials in the env) like the other S3 tests.
    let Some(_shared) = common::s3_env() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Arc::new(PrivateServer {
        dir: tmp.path().join("s3"),
        port: free_port_block(),
    });
    server.start();
    let store = server.store("fault");
    store.check_reachable().unwrap();

    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Incompressible, several multipart parts.
    std::fs::write(src.join("big"), pseudo_random(20 << 20, 3)).unwrap();
    let build_tmp = tmp.path().join("build-tmp");
    std::fs::create_dir_all(&build_tmp).unwrap();

    let stopped = Arc::new(AtomicBool::new(false));
    let mut o = BackupOptions::new(&src);
    o.store = Some(store.clone());
    o.state_dir = Some(tmp.path().join("state"));
    o.temp_dir = Some(build_tmp.clone());
    let (srv, flag) = (server.clone(), stopped.clone());
    o.progress = Some(Arc::new(move |_sent| {
        // First part handed to the store: pull the plug.
        if !flag.swap(true, Ordering::SeqCst) {
            srv.stop();
        }
    }));
    let e = create_backup(o).unwrap_err();
    assert!(stopped.load(Ordering::SeqCst), "upload never started");
    assert_eq!(e.code(), "BACKUP_CREATE_FAILED", "{e}");
    assert!(e.context().backup_id.is_some());
    let leftovers: Vec<_> = std::fs::read_dir(&build_tmp).unwrap().flatten().collect();
    assert!(leftovers.is_empty(), "temp files leaked: {leftovers:?}");

    // Server back: no backup is visible, and no object of the attempt remains.
    server.start();
    assert!(list_backups(&store, &Clock::system()).unwrap().is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects: Vec<_> = rt.block_on(async {
        use futures::TryStreamExt;
        store
            .object_store()
            .list(Some(&object_store::path::Path::from("fault")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    });
    // The multipart upload never completed and the failure path deletes whatever landed.
    assert!(objects.is_empty(), "objects left in the store: {objects:?}");
}
