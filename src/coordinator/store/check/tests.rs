use super::*;

fn db(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join(DB_FILE)
}

#[test]
fn missing_empty_and_tableless_files_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(inspect(&db(&dir)).unwrap(), Found::Missing);
    std::fs::write(db(&dir), b"").unwrap();
    assert_eq!(inspect(&db(&dir)).unwrap(), Found::Empty);
    // A SQLite file with a header but no table (e.g. `sqlite3 x.db 'PRAGMA
    // user_version=0'`), written by a connection of its own.
    let c = Connection::open(db(&dir)).unwrap();
    c.execute_batch("CREATE TABLE t(x); DROP TABLE t;").unwrap();
    drop(c);
    assert_eq!(inspect(&db(&dir)).unwrap(), Found::NoTables);
}

#[test]
fn a_store_is_stamped_and_one_from_before_the_stamp_is_still_ours() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    assert!(matches!(
        inspect(&db(&dir)).unwrap(),
        Found::Ours {
            schema_version: SCHEMA_VERSION,
            ..
        }
    ));
    let c = Connection::open(db(&dir)).unwrap();
    c.execute_batch("PRAGMA application_id = 0; PRAGMA user_version = 0;")
        .unwrap();
    drop(c);
    assert!(matches!(
        inspect(&db(&dir)).unwrap(),
        Found::Ours {
            schema_version: 0,
            ..
        }
    ));
}

#[test]
fn other_databases_garbage_and_newer_schemas_are_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(db(&dir)).unwrap();
    c.execute_batch("CREATE TABLE users(id); CREATE TABLE orders(id);")
        .unwrap();
    drop(c);
    let before = std::fs::read(db(&dir)).unwrap();
    match inspect(&db(&dir)) {
        Err(CheckError::Foreign(m)) => {
            assert!(
                m.contains("not a provisionerd database (tables: orders, users)"),
                "{m}"
            )
        }
        other => panic!("expected Foreign, got {other:?}"),
    }
    assert_eq!(std::fs::read(db(&dir)).unwrap(), before, "nothing written");

    let c = Connection::open(db(&dir)).unwrap();
    c.execute_batch("PRAGMA application_id = 7;").unwrap();
    drop(c);
    match inspect(&db(&dir)) {
        Err(CheckError::Foreign(m)) => assert!(m.contains("application id is 0x7"), "{m}"),
        other => panic!("expected Foreign, got {other:?}"),
    }

    std::fs::write(db(&dir), vec![0x5a; 8192]).unwrap();
    match inspect(&db(&dir)) {
        Err(CheckError::Damaged(m)) => assert!(m.contains("not a SQLite database"), "{m}"),
        other => panic!("expected Damaged, got {other:?}"),
    }

    std::fs::remove_file(db(&dir)).unwrap();
    drop(Store::open(dir.path()).unwrap());
    let c = Connection::open(db(&dir)).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    match inspect(&db(&dir)) {
        Err(CheckError::Newer(m)) => assert!(m.contains("written by a newer provisionerd"), "{m}"),
        other => panic!("expected Newer, got {other:?}"),
    }
}

#[test]
fn the_summary_counts_jobs_by_status_and_live_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.summary().unwrap(), Summary::default());
    store
        .create_key("k", "h", &crate::tags::Tags::new())
        .unwrap();
    let s = store.summary().unwrap();
    assert_eq!((s.keys, s.daemons, s.templates, s.workspaces), (1, 0, 0, 0));
}
