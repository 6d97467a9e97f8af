//! Who may do what: daemon keys and the admin token never stand in for each
//! other, a daemon touches only the jobs it owns, two keys with the same
//! tags rotate without a gap, and every malformed input is refused with
//! INVALID_ARGUMENT before anything is stored.
//! Job secrets (a sibling of the same key) in `job_secret`.

mod job_secret;

use std::time::Duration;

use provisionerd::grpc::Credentials;
use provisionerd::proto::{
    self, DaemonState, JobOutcome, admin_client::AdminClient,
    provisioner_daemon_client::ProvisionerDaemonClient,
};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Coord, Daemon, TIMEOUT, wait_connected};
use crate::raw::{self, RawDaemon};
use crate::{QUICK, template};

async fn channel(coord: &Coord) -> Channel {
    tokio::time::timeout(
        TIMEOUT,
        // Each call bounded too (a session's stream is not: only until
        // its answer starts).
        Channel::from_shared(coord.url.clone())
            .unwrap()
            .timeout(TIMEOUT)
            .connect(),
    )
    .await
    .expect("connect: timed out")
    .expect("connect")
}

fn line(seq: u64, output: &str) -> proto::LogLine {
    proto::LogLine {
        seq,
        output: output.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn daemon_keys_and_the_admin_token_do_not_stand_in_for_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;

    let mut as_admin =
        AdminClient::with_interceptor(channel(&coord).await, Credentials::bearer(&key).unwrap());
    let err = as_admin
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert_eq!(err.message(), "admin token refused");
    let err = as_admin
        .create_key(proto::CreateKeyRequest {
            name: "sneaky".into(),
            tags: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let token_as_key = Credentials::bearer(&coord.token)
        .unwrap()
        .with_daemon_name("d")
        .unwrap();
    let mut as_daemon =
        ProvisionerDaemonClient::with_interceptor(channel(&coord).await, token_as_key);
    let err = as_daemon
        .update_job(proto::UpdateJobRequest {
            job_id: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert!(err.message().contains("provisioner key refused"), "{err}");

    let mut anonymous = AdminClient::new(channel(&coord).await);
    let err = anonymous
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    assert_eq!(err.message(), "missing bearer credential");

    let keys = coord
        .admin()
        .await
        .list_keys(proto::ListKeysRequest::default())
        .await;
    let names: Vec<String> = keys
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["k"], "nothing was created by the refused calls");
    coord.stop().await;
}

#[tokio::test]
async fn a_daemon_cannot_touch_a_job_it_does_not_own() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key1 = coord.create_key("k1", &[]).await;
    let key2 = coord.create_key("k2", &[]).await;
    let job = coord
        .push("t", &template(tmp.path(), "t", QUICK), &[])
        .await;

    let mut owner = RawDaemon::open(&coord, &key1, "owner", DaemonState::Idle).await;
    assert_eq!(owner.claim().await.job_id, job);
    owner
        .client
        .update_job(proto::UpdateJobRequest {
            job_id: job.clone(),
            logs: vec![line(1, "the owner's line")],
            job_secret: owner.secret(&job),
        })
        .await
        .unwrap();

    // Another key, the same key under another name, and another key
    // claiming the owner's name: all refused, whatever they try.
    let forgers = [
        RawDaemon::open(&coord, &key2, "forger", DaemonState::Idle).await,
        RawDaemon::open(&coord, &key1, "sibling", DaemonState::Idle).await,
    ];
    let impostor = Credentials::bearer(&key2)
        .unwrap()
        .with_daemon_name("owner")
        .unwrap();
    let impostor = ProvisionerDaemonClient::with_interceptor(channel(&coord).await, impostor);
    let mut clients: Vec<_> = forgers.iter().map(|f| f.client.clone()).collect();
    clients.push(impostor);
    for mut client in clients {
        let err = client
            .update_job(proto::UpdateJobRequest {
                job_id: job.clone(),
                logs: vec![line(2, "forged line")],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert!(err.message().contains(&job), "names the job: {err}");
        let forged = proto::FinishJobRequest {
            job_id: job.clone(),
            outcome: JobOutcome::Failed as i32,
            error: "forged failure".into(),
            log_count: 2,
            ..Default::default()
        };
        let err = raw::finish(&mut client, forged, Some(b"{\"forged\": true}"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }

    let now = coord.job(&job).await;
    assert_eq!(
        (now.status.as_str(), now.daemon.as_str(), now.log_count),
        ("running", "owner", 1),
        "the forgeries changed nothing"
    );
    let outputs: Vec<String> = coord
        .logs(&job)
        .await
        .into_iter()
        .map(|l| l.output)
        .collect();
    assert_eq!(outputs, ["the owner's line"]);

    let report = proto::FinishJobRequest {
        job_id: job.clone(),
        outcome: JobOutcome::Succeeded as i32,
        log_count: 1,
        ..Default::default()
    };
    owner.finish(report, None).await.unwrap();
    let done = coord.job(&job).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_str()),
        ("succeeded", "")
    );
    coord.stop().await;
}

/// Two keys with the same tags serve one pool side by side; deleting one
/// disconnects only the daemons that use it, and the pool keeps working.
#[tokio::test]
async fn keys_rotate_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let pool = [("pool", "a")];
    let old = coord.create_key("old", &pool).await;
    let new = coord.create_key("new", &pool).await;
    let d_old = Daemon::start(&coord.url, &old, "d-old", &tmp.path().join("c1"));
    let d_new = Daemon::start(&coord.url, &new, "d-new", &tmp.path().join("c2"));
    wait_connected(&coord, 2).await;

    // The import, then two slow builds at once: each daemon takes one.
    let slow = template(tmp.path(), "slow", SLOW_APPLY);
    let import = coord.push("slow", &slow, &pool).await;
    coord.wait_succeeded(&import).await;
    let a = coord.create_workspace("a", "slow", "", &[]).await;
    let b = coord.create_workspace("b", "slow", "", &[]).await;
    let (a, b) = (
        coord.wait_succeeded(&a).await,
        coord.wait_succeeded(&b).await,
    );
    let mut ran_on = [a.daemon, b.daemon];
    ran_on.sort();
    assert_eq!(ran_on, ["d-new", "d-old"], "both keys took work");

    coord
        .admin()
        .await
        .delete_key(proto::DeleteKeyRequest { name: "old".into() })
        .await
        .unwrap();
    let ended = tokio::time::timeout(TIMEOUT, d_old.handle)
        .await
        .expect("the old key's daemon is disconnected")
        .unwrap();
    let err = ended.expect_err("a refused key ends the daemon with an error");
    assert!(err.to_string().contains("credentials refused"), "{err}");

    let deadline = Instant::now() + TIMEOUT;
    loop {
        let daemons = coord.daemons().await;
        let status = |name: &str| {
            daemons
                .iter()
                .find(|d| d.name == name)
                .map(|d| d.status.clone())
                .unwrap_or_default()
        };
        if status("d-old") == "offline" && status("d-new") == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "daemon states: {daemons:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = coord.create_workspace("c", "slow", "", &[]).await;
    let built = coord.wait_succeeded(&c).await;
    assert_eq!(
        built.daemon, "d-new",
        "the pool keeps working on the new key"
    );
    d_new.stop().await.unwrap();
    coord.stop().await;
}

/// An apply that takes a second, so two builds overlap and land on
/// different daemons.
const SLOW_APPLY: &str = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "sleep 1"
  }
}
"#;

#[tokio::test]
async fn malformed_input_is_refused_before_anything_is_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let mut admin = coord.admin().await;
    let tags = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect();
    let key = |name: &str, tags| proto::CreateKeyRequest {
        name: name.into(),
        tags,
    };
    let cases = [
        (key("bad name", Default::default()), "key name \"bad name\""),
        (key("", Default::default()), "key name \"\""),
        (key(&"k".repeat(65), Default::default()), "key name"),
        (key("k", tags("has space", "v")), "tag key \"has space\""),
        (key("k", tags("", "v")), "tag key \"\""),
        (key("k", tags(&"t".repeat(65), "v")), "tag key"),
        (key("k", tags("t", "line\nbreak")), "tag \"t\": value"),
        (key("k", tags("t", &"v".repeat(257))), "tag \"t\": value"),
    ];
    for (req, want) in cases {
        let err = admin.create_key(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
        assert!(err.message().contains(want), "{req:?}: {err}");
    }

    let archive = provisionerd::archive::tar_dir(&template(tmp.path(), "t", QUICK)).unwrap();
    let push = |name: &str| proto::PushTemplateRequest {
        name: name.into(),
        ..Default::default()
    };
    let err = coord
        .push_archive(push("../evil"), &archive)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("template name \"../evil\""), "{err}");
    let mut bad_tag = push("t");
    bad_tag.provisioner_tags = tags("a b", "c");
    let err = coord.push_archive(bad_tag, &archive).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let not_tar = b"definitely not a tar archive".repeat(40);
    let err = coord.push_archive(push("t"), &not_tar).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let ws = |name: &str, owner: &str| proto::CreateWorkspaceRequest {
        name: name.into(),
        template: "t".into(),
        owner: owner.into(),
        ..Default::default()
    };
    for (req, want) in [
        (ws("w w", ""), "workspace name \"w w\""),
        (ws("w", "a/b"), "owner name \"a/b\""),
    ] {
        let err = admin.create_workspace(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
        assert!(err.message().contains(want), "{req:?}: {err}");
    }

    let err = admin
        .list_jobs(proto::ListJobsRequest {
            status: "bogus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("bogus"), "{err}");

    // A daemon with a malformed name is turned away at its Hello.
    let daemon_key = coord.create_key("dk", &[]).await;
    let creds = Credentials::bearer(&daemon_key)
        .unwrap()
        .with_daemon_name("bad name")
        .unwrap();
    let mut client = ProvisionerDaemonClient::with_interceptor(channel(&coord).await, creds);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(proto::DaemonMessage {
        msg: Some(proto::daemon_message::Msg::Hello(proto::Hello {
            name: "bad name".into(),
            version: "test".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let opened = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let err = match opened {
        Err(e) => e,
        Ok(resp) => resp
            .into_inner()
            .message()
            .await
            .expect_err("the session is refused"),
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("\"bad name\""), "{err}");

    let keys = admin
        .list_keys(proto::ListKeysRequest::default())
        .await
        .unwrap();
    let names: Vec<String> = keys.into_inner().keys.into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["dk"], "only the valid key exists");
    let templates = admin
        .list_templates(proto::ListTemplatesRequest::default())
        .await
        .unwrap();
    assert!(templates.into_inner().templates.is_empty());
    let jobs = admin
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap();
    assert!(jobs.into_inner().jobs.is_empty());
    coord.stop().await;
}
