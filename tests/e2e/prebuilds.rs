//! The seed scenario end to end: a Coder-style template whose workspace
//! tags mark prebuild jobs; a dedicated prebuild pool and a general pool;
//! real terraform with the stand-in coder provider.

use std::collections::HashMap;
use std::path::Path;

use provisionerd::proto;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, wait_connected};

fn daemon(coord: &Coord, key: &str, name: &str, root: &Path) -> Proc {
    procs::start_coder(&coord.url, key, name, root)
}

async fn create(
    coord: &Coord,
    name: &str,
    owner: &str,
    preset: &str,
    params: &[(&str, &str)],
) -> Result<String, tonic::Status> {
    let parameters: HashMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: name.into(),
            template: "cp".into(),
            owner: owner.into(),
            parameters,
            preset: preset.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().job_id)
}

async fn said(coord: &Coord, job: &str, needle: &str) -> bool {
    coord
        .logs(job)
        .await
        .iter()
        .any(|l| l.output.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prebuilds_land_on_the_prebuild_pool_and_people_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let general = coord.create_key("general", &[]).await;
    let pool = coord
        .create_key("prebuild", &[("is_prebuild", "true")])
        .await;
    let mut g = daemon(&coord, &general, "general-1", tmp.path());
    let mut p = daemon(&coord, &pool, "pool-1", tmp.path());
    wait_connected(&coord, 2).await;

    let archive = provisionerd::archive::tar_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/coder-prebuilds"),
    )
    .unwrap();
    let header = proto::PushTemplateRequest {
        name: "cp".into(),
        ..Default::default()
    };
    let import = coord.push_archive(header, &archive).await.unwrap();
    let import = coord.wait_succeeded(&import).await;
    assert_eq!(import.daemon, "general-1", "imports are untagged");

    // A prebuild from the default preset: tagged, built by the pool, with
    // the preset's parameter values reaching terraform.
    let pre = create(&coord, "pre-1", "prebuilds", "Frankfurt, 4 cores", &[])
        .await
        .unwrap();
    let pre = coord.wait_succeeded(&pre).await;
    assert_eq!(
        pre.tags.get("is_prebuild").map(String::as_str),
        Some("true")
    );
    assert_eq!(pre.daemon, "pool-1");
    assert!(said(&coord, &pre.id, "provisioning pre-1 for prebuilds").await);
    assert!(said(&coord, &pre.id, "region eu-west, 4 cores").await);

    // A person's build with their own values: untagged, general pool.
    let mine = create(
        &coord,
        "alice-1",
        "alice",
        "",
        &[("region", "us-east"), ("cpus", "6")],
    )
    .await
    .unwrap();
    let mine = coord.wait_succeeded(&mine).await;
    assert!(mine.tags.is_empty(), "{:?}", mine.tags);
    assert_eq!(mine.daemon, "general-1");
    assert!(said(&coord, &mine.id, "region us-east, 6 cores").await);
    let ws = coord.workspace("alice-1").await.unwrap();
    assert_eq!(
        ws.outputs.get("region").map(String::as_str),
        Some("\"us-east\"")
    );

    // A later start changes a mutable parameter; the immutable region and a
    // shrinking (monotonic increasing) cpus are refused.
    let start = |params: &[(&str, &str)]| {
        let parameters: HashMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let coord = &coord;
        async move {
            coord
                .admin()
                .await
                .build_workspace(proto::BuildWorkspaceRequest {
                    name: "alice-1".into(),
                    transition: proto::Transition::Start as i32,
                    parameters,
                    update: false,
                })
                .await
                .map(|r| r.into_inner().job_id)
        }
    };
    coord
        .wait_succeeded(&start(&[("cpus", "8")]).await.unwrap())
        .await;
    // (The provisioner ran at create only; the state shows the new value.)
    let ws = coord.workspace("alice-1").await.unwrap();
    assert_eq!(ws.outputs.get("cpus").map(String::as_str), Some("\"8\""));
    assert_eq!(
        ws.outputs.get("region").map(String::as_str),
        Some("\"us-east\"")
    );
    let moved = start(&[("region", "eu-west")]).await.unwrap_err();
    assert!(moved.message().contains("region"), "{}", moved.message());
    let shrunk = start(&[("cpus", "2")]).await.unwrap_err();
    assert!(shrunk.message().contains("cpus"), "{}", shrunk.message());

    // Bad values are refused before any job exists.
    let bad = create(&coord, "bad", "alice", "", &[("cpus", "99")])
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("cpus"), "{}", bad.message());
    let clash = create(
        &coord,
        "clash",
        "alice",
        "Frankfurt, 4 cores",
        &[("cpus", "2")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        clash.code(),
        tonic::Code::InvalidArgument,
        "{}",
        clash.message()
    );

    for d in [&mut g, &mut p] {
        d.signal(nix::sys::signal::Signal::SIGHUP);
        assert_eq!(
            d.exit_code(crate::common::TIMEOUT).await,
            0,
            "{}",
            d.log_text()
        );
    }
    coord.stop().await;
}
