//! The scenario: v1; a broken v2 whose failed import leaves v1
//! active; v3; a rollback to v1 by promote; a workspace from v3 on
//! purpose; `never` workspaces keep their version across stop/start,
//! `always` ones and `workspaces update` move; an outdated workspace's
//! stop and delete run with its own version; archive refusals;
//! `--activate=false`.

use provisionerd::proto::{self, Transition};

use super::{archive, build, create, on, on_, promote, push, row, summary, versioned, versions};
use crate::common::{Coord, Daemon};
use crate::template;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_a_promote_and_workspaces_keep_or_follow_their_version() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let coord = Coord::start(&root.join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &root.join("c1"));

    // v1 imports and becomes active.
    let v1 = push(&coord, "app", &versioned(root, "one"), "", false).await;
    assert_eq!(v1.template_version_name, "v1");
    let import = coord.wait_succeeded(&v1.job_id).await;
    assert_eq!(import.template_version_name, "v1");

    // A broken v2: its import fails and v1 stays active.
    let broken = template(
        root,
        "broken",
        "resource \"terraform_data\" \"w\" {\n  input = var.nope\n}\n",
    );
    let v2 = push(&coord, "app", &broken, "", false).await;
    assert_eq!(v2.template_version_name, "v2");
    assert_eq!(coord.wait_job(&v2.job_id).await.status, "failed");
    let vs = versions(&coord, "app", false).await;
    assert_eq!(
        summary(&vs),
        [
            row("v2", "failed", false, 0),
            row("v1", "succeeded", true, 0)
        ]
    );
    assert!(
        vs[0]
            .error
            .contains("Reference to undeclared input variable"),
        "{:?}",
        vs[0].error
    );
    assert_eq!(
        (vs[0].import_job_id.as_str(), vs[0].message.as_str()),
        (v2.job_id.as_str(), "from broken")
    );
    let refused = promote(&coord, "app", "v2").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("version \"v2\" was not imported")
            && refused.message().contains("failed: terraform validate"),
        "{}",
        refused.message()
    );

    // Two workspaces on v1: `never` (the default) and `always`.
    coord
        .wait_succeeded(&create(&coord, "keeper", "app", "", "").await.unwrap())
        .await;
    coord
        .wait_succeeded(&create(&coord, "mover", "app", "", "always").await.unwrap())
        .await;
    assert_eq!(on(&coord, "keeper").await, on_("v1", "one", false));
    let mover = coord.workspace("mover").await.unwrap();
    assert_eq!(mover.automatic_updates, "always");

    // v3 becomes active: a start keeps `keeper` on v1, moves `mover`.
    let v3 = push(&coord, "app", &versioned(root, "three"), "", false).await;
    coord.wait_succeeded(&v3.job_id).await;
    assert_eq!(on(&coord, "keeper").await, on_("v1", "one", true));
    build(&coord, "keeper", Transition::Stop, false).await;
    let start = build(&coord, "keeper", Transition::Start, false).await;
    assert_eq!(
        (
            start.template_version_id.as_str(),
            start.template_version_name.as_str()
        ),
        (v1.template_version_id.as_str(), "v1")
    );
    assert_eq!(on(&coord, "keeper").await, on_("v1", "one", true));
    let start = build(&coord, "mover", Transition::Start, false).await;
    assert_eq!(start.template_version_name, "v3");
    assert_eq!(on(&coord, "mover").await, on_("v3", "three", false));

    // Roll back to v1.
    let promoted = promote(&coord, "app", "v1").await.unwrap();
    assert!(promoted.active && promoted.name == "v1");
    let t = coord
        .admin()
        .await
        .get_template(proto::GetTemplateRequest { name: "app".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            t.active_version_name.as_str(),
            t.latest_version_name.as_str()
        ),
        ("v1", "v3")
    );
    assert_eq!(on(&coord, "keeper").await, on_("v1", "one", false));
    assert_eq!(on(&coord, "mover").await, on_("v3", "three", true));
    let start = build(&coord, "mover", Transition::Start, false).await;
    assert_eq!(start.template_version_name, "v1");
    assert_eq!(on(&coord, "mover").await, on_("v1", "one", false));

    // A workspace from v3 explicitly, though v1 is active: its stop and
    // start keep v3; `update` moves it.
    let job = create(&coord, "pinned", "app", "v3", "").await.unwrap();
    assert_eq!(coord.wait_succeeded(&job).await.template_version_name, "v3");
    assert_eq!(on(&coord, "pinned").await, on_("v3", "three", true));
    for t in [Transition::Stop, Transition::Start] {
        let job = build(&coord, "pinned", t, false).await;
        assert_eq!(job.template_version_id, v3.template_version_id, "{t:?}");
        assert_eq!(
            on(&coord, "pinned").await,
            on_("v3", "three", true),
            "{t:?}"
        );
    }
    let job = build(&coord, "pinned", Transition::Start, true).await;
    assert_eq!(job.template_version_name, "v1");
    assert_eq!(on(&coord, "pinned").await, on_("v1", "one", false));
    let e = coord
        .admin()
        .await
        .build_workspace(proto::BuildWorkspaceRequest {
            name: "pinned".into(),
            transition: Transition::Stop as i32,
            update: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message().contains("only a start can update"),
        "{}",
        e.message()
    );
    let pinned = coord.workspace("pinned").await.unwrap();
    assert_eq!(pinned.automatic_updates, "never", "an update is one start");

    // A workspace from v3 to delete later.
    let job = create(&coord, "doomed", "app", &v3.template_version_id, "never")
        .await
        .unwrap();
    coord.wait_succeeded(&job).await;
    assert_eq!(
        summary(&versions(&coord, "app", false).await),
        [
            row("v3", "succeeded", false, 1),
            row("v2", "failed", false, 0),
            row("v1", "succeeded", true, 3),
        ]
    );

    // Archiving: not the active version; an archived one is refused for
    // new workspaces (its workspaces keep it) and hidden from the list
    // unless asked for.
    let e = archive(&coord, "app", "v1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("it is the active version"),
        "{}",
        e.message()
    );
    assert!(archive(&coord, "app", "v3").await.unwrap().archived);
    let e = create(&coord, "late", "app", "v3", "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "create workspace \"late\": template \"app\" version \"v3\" is archived \
         (unarchive it with `provisionerd templates versions unarchive app v3`)"
    );
    assert!(coord.workspace("late").await.is_err(), "nothing created");
    let names = |vs: Vec<proto::TemplateVersion>| -> Vec<String> {
        vs.into_iter().map(|v| v.name).collect()
    };
    assert_eq!(names(versions(&coord, "app", false).await), ["v2", "v1"]);
    assert_eq!(
        names(versions(&coord, "app", true).await),
        ["v3", "v2", "v1"]
    );
    let e = create(&coord, "ghost", "app", "v9", "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());

    // The workspace on archived v3 keeps working: its delete runs with v3.
    let job = build(&coord, "doomed", Transition::Destroy, false).await;
    assert_eq!(job.template_version_id, v3.template_version_id);
    assert!(
        coord
            .logs(&job.id)
            .await
            .iter()
            .any(|l| l.output.contains("1 destroyed")),
        "the destroy planned against v3's resources"
    );
    assert_eq!(
        coord.workspace("doomed").await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    // --activate=false: imported, not active, until promoted.
    let v4 = push(&coord, "app", &versioned(root, "four"), "quiet", true).await;
    assert_eq!(v4.template_version_name, "quiet");
    coord.wait_succeeded(&v4.job_id).await;
    let vs = versions(&coord, "app", false).await;
    assert_eq!(
        (
            vs[0].name.as_str(),
            vs[0].status.as_str(),
            vs[0].active,
            vs[0].activate
        ),
        ("quiet", "succeeded", false, false)
    );
    assert_eq!(on(&coord, "mover").await, on_("v1", "one", false));
    promote(&coord, "app", "quiet").await.unwrap();
    assert_eq!(on(&coord, "mover").await, on_("v1", "one", true));
    build(&coord, "mover", Transition::Start, false).await;
    assert_eq!(on(&coord, "mover").await, on_("quiet", "four", false));

    // Every job names its version.
    let jobs = coord
        .admin()
        .await
        .list_jobs(proto::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    for j in &jobs {
        let want = if j.template_version_id == v1.template_version_id {
            "v1"
        } else if j.template_version_id == v2.template_version_id {
            "v2"
        } else if j.template_version_id == v3.template_version_id {
            "v3"
        } else {
            "quiet"
        };
        assert_eq!(j.template_version_name, want, "{j:?}");
    }
    d.stop().await.unwrap();
    coord.stop().await;
}
