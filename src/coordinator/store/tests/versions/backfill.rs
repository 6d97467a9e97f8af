//! Versions stored before names existed get `v1..vN` in push order, on
//! SQLite (at each open) and PostgreSQL (at each start, after migration
//! 3).

use super::*;

/// Pushes a version of template `t` named `name` on a bare store.
fn push_named(store: &Store, name: &str) -> crate::coordinator::error::Result<Pushed> {
    store.push_version(
        "t",
        b"a",
        &Tags::new(),
        &BTreeMap::new(),
        "admin",
        &NewImport {
            version: NewVersion {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

#[test]
fn versions_stored_before_names_are_named_in_push_order() {
    // SQLite's open runs the backfill each time (PostgreSQL's migration 3
    // runs the same statements once).
    let dir = tempfile::tempdir().unwrap();
    let push = |store: &Store, t: &str| {
        store
            .push_template(
                t,
                b"a",
                &Tags::new(),
                &BTreeMap::new(),
                "admin",
                &NewImport::default(),
            )
            .unwrap()
    };
    let store = Store::open(dir.path()).unwrap();
    let pushed: Vec<(String, String)> = (0..6).map(|_| push(&store, "t")).collect();
    let other = push(&store, "u");
    drop(store);
    {
        // As an older release left them: no names, no import job link;
        // pushed within one millisecond, so only the push order is left
        // to tell them apart.
        let conn = Connection::open(dir.path().join("provisionerd.db")).unwrap();
        conn.execute_batch(
            "DROP INDEX template_versions_name;
             UPDATE template_versions SET name = NULL, import_job_id = NULL, created_at = 1000;",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    for (i, (version, job)) in pushed.iter().enumerate() {
        let v = store.find_version("t", version).unwrap();
        assert_eq!(v.name, format!("v{}", i + 1), "push {i}");
        assert_eq!(&v.import_job_id, job);
    }
    assert_eq!(store.find_version("u", &other.0).unwrap().name, "v1");
    // The unique index is back: a taken name is refused by the push.
    let e = push_named(&store, "v6").unwrap_err();
    assert!(matches!(e, CoordError::AlreadyExists(_)), "{e:?}");
    push(&store, "t");
    let names: Vec<String> = store
        .versions_page("t", false, "", 100)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names[0], "v7");
}

#[test]
fn postgres_migration_3_names_older_versions_in_push_order() {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL's path only (SQLite's: the test above).
    let Some(url) = crate::coordinator::store::testdb::url_for(dir.path()).unwrap() else {
        return;
    };
    let store = Store::open_postgres(&url, 1).unwrap();
    let pushed: Vec<(String, String)> = (0..5)
        .map(|_| {
            store
                .push_template(
                    "t",
                    b"a",
                    &Tags::new(),
                    &BTreeMap::new(),
                    "admin",
                    &NewImport::default(),
                )
                .unwrap()
        })
        .collect();
    drop(store);
    {
        // Back to schema version 2, as an older release left it, with its
        // versions pushed within one millisecond.
        let pool = crate::coordinator::store::db::Pool::new(&url, 1).unwrap();
        pool.get()
            .unwrap()
            .execute_batch(
                "UPDATE template_versions SET created_at = 1000;
                 ALTER TABLE template_versions DROP COLUMN name, DROP COLUMN message,
                   DROP COLUMN created_by, DROP COLUMN archived, DROP COLUMN activate,
                   DROP COLUMN import_job_id;
                 ALTER TABLE templates DROP COLUMN activated_through;
                 DROP INDEX template_versions_order;
                 DROP INDEX workspaces_version;
                 ALTER TABLE workspaces DROP COLUMN automatic_updates;
                 DELETE FROM provisionerd_schema WHERE version = 3;",
            )
            .unwrap();
    }
    let store = Store::open_postgres(&url, 1).unwrap();
    for (i, (version, job)) in pushed.iter().enumerate() {
        let v = store.find_version("t", version).unwrap();
        assert_eq!(v.name, format!("v{}", i + 1), "push {i}");
        assert_eq!(&v.import_job_id, job);
        assert!(v.activate && !v.archived && v.created_by == "admin");
    }
}

#[test]
fn a_backfilled_name_that_is_taken_gets_its_id_and_the_active_version_is_marked() {
    // A version an older replica pushed during a rolling upgrade (no name)
    // while a newer one already took its `vN`: the next open names it
    // `vN-<id prefix>`, not a duplicate that would stop every start.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = push_named(&store, "one").unwrap();
    let second = push_named(&store, "v2").unwrap();
    drop(store);
    {
        let conn = Connection::open(dir.path().join("provisionerd.db")).unwrap();
        conn.execute(
            "UPDATE template_versions SET name = NULL WHERE id = ?1",
            [&first.version_id],
        )
        .unwrap();
        conn.execute(
            "UPDATE templates SET active_version_id = ?1, activated_through = NULL",
            [&second.version_id],
        )
        .unwrap();
        // The push order makes the unnamed one `v1`; make `v1` taken too.
        conn.execute(
            "UPDATE template_versions SET name = 'v1' WHERE id = ?1",
            [&second.version_id],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let v = store.find_version("t", &first.version_id).unwrap();
    assert_eq!(v.name, format!("v1-{}", &first.version_id[..8]));
    // The active version is marked: the older import, finishing now, does
    // not take over from it.
    let marked: Option<i64> = store
        .conn()
        .unwrap()
        .query_row("SELECT activated_through FROM templates", [], |r| r.get(0))
        .unwrap();
    let rowid: i64 = store
        .conn()
        .unwrap()
        .query_row(
            "SELECT rowid FROM template_versions WHERE id = ?1",
            [&second.version_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(marked, Some(rowid));
}
