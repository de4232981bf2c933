//! The binary as a platform team runs it: one process serving, one calling; both log the
//! peer's SPIFFE ID on every exchange, and refusals are logged with their reason.

mod common;

use common::*;
use podcert_core::ca::CaKeyType;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const SERVER_ID: &str = "spiffe://example.org/ns/team-a/sa/server";
const CLIENT_ID: &str = "spiffe://example.org/ns/team-b/sa/client";
const BIN: &str = env!("CARGO_BIN_EXE_podcert-workload");

fn workload(files: &Files, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--credential-bundle")
        .arg(&files.credential)
        .arg("--trust-bundle")
        .arg(&files.trust)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Streams a child's stdout lines into a channel.
fn lines(child: &mut Child) -> mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line containing every one of `needles` (bounded wait).
async fn wait_for(rx: &mut mpsc::UnboundedReceiver<String>, needles: &[&str]) -> String {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            if needles.iter().all(|n| line.contains(n)) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        _ => panic!("no log line with {needles:?}"),
    }
}

#[tokio::test]
async fn server_and_client_processes_log_each_others_ids_and_refusals() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let server_files = Files::new(
        &ca.issue(SERVER_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    let client_files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::Ed25519).bundle_pem,
        &ca.root_pem,
    );

    let mut server = workload(
        &server_files,
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow-spiffe-id",
            "spiffe://example.org/ns/team-b/*",
        ],
    )
    .spawn()
    .unwrap();
    let mut server_log = lines(&mut server);
    let listening = wait_for(&mut server_log, &["serving mTLS"]).await;
    let addr = listening
        .split("listen=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();

    let ok = workload(
        &client_files,
        &["--connect", &addr, "--once", "--allow-spiffe-id", SERVER_ID],
    )
    .output()
    .await
    .unwrap();
    let client_log = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{client_log}");
    assert!(
        client_log
            .lines()
            .any(|l| l.contains("exchange ok") && l.contains(&format!("peer={SERVER_ID}"))),
        "{client_log}"
    );
    wait_for(
        &mut server_log,
        &["exchange ok", &format!("peer={CLIENT_ID}")],
    )
    .await;

    // A client that does not accept this server's ID: exit 1, reason in the log.
    let refused = workload(
        &client_files,
        &[
            "--connect",
            &addr,
            "--once",
            "--allow-spiffe-id",
            "spiffe://example.org/ns/elsewhere/*",
        ],
    )
    .output()
    .await
    .unwrap();
    let refused_log = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{refused_log}");
    assert!(
        refused_log.contains(&format!("peer {SERVER_ID} is not in the allow-list")),
        "{refused_log}"
    );
    server.start_kill().unwrap();
}

#[tokio::test]
async fn refuses_to_start_without_valid_inputs() {
    let ca = TestCa::new(CaKeyType::EcdsaP256);
    let files = Files::new(
        &ca.issue(CLIENT_ID, SubjectKind::EcdsaP256).bundle_pem,
        &ca.root_pem,
    );
    // Nothing to do.
    let out = workload(&files, &["--allow-spiffe-id", SERVER_ID])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("give --listen, --connect or both"));
    // A bad allow-list entry.
    let out = workload(
        &files,
        &[
            "--listen",
            "127.0.0.1:0",
            "--allow-spiffe-id",
            "spiffe://td/a*",
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid --allow-spiffe-id"));
    // A credential bundle that is not one.
    write_by_rename(&files.credential, ca.root_pem.as_bytes());
    let out = workload(
        &files,
        &["--listen", "127.0.0.1:0", "--allow-spiffe-id", SERVER_ID],
    )
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("must start with a PRIVATE KEY block"));
}
