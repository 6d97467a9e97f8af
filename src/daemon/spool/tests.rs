use super::*;

fn line(seq: u64) -> LogLine {
    LogLine {
        seq,
        output: format!("line {seq}"),
        stage: "Applying".into(),
        ..Default::default()
    }
}

fn read_all(r: &mut Reader) -> Vec<u64> {
    std::iter::from_fn(|| r.next().unwrap())
        .map(|l| l.seq)
        .collect()
}

#[test]
fn lines_come_back_in_order_while_more_are_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    let mut s = Spool::create(&dir, "j1").unwrap();
    assert_eq!(s.path(), path(&dir, "j1"));
    for seq in 1..=1000 {
        s.append(&line(seq)).unwrap();
    }
    let first: Vec<u64> = (0..400).map(|_| s.next().unwrap().unwrap().seq).collect();
    assert_eq!(first, (1..=400).collect::<Vec<_>>());
    // Appends between reads land behind the unread ones.
    for seq in 1001..=1500 {
        s.append(&line(seq)).unwrap();
    }
    assert_eq!(s.unread(), 1100);
    let rest: Vec<LogLine> = std::iter::from_fn(|| s.next().unwrap()).collect();
    assert_eq!(rest.len(), 1100);
    assert!(rest.iter().zip(401..).all(|(l, seq)| l.seq == seq));
    assert_eq!(rest[0], line(401), "fields survive the round trip");
    assert_eq!(s.unread(), 0);
    assert!(s.next().unwrap().is_none());
    s.remove().unwrap();
    assert!(!path(&dir, "j1").exists());
    remove(&dir, "j1").unwrap();
}

#[test]
fn a_restarted_reader_sees_every_record_and_stops_at_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Spool::create(tmp.path(), "j1").unwrap();
    for seq in 1..=50 {
        s.append(&line(seq)).unwrap();
    }
    for _ in 0..20 {
        s.next().unwrap();
    }
    // The daemon dies mid-read, and mid-write of record 51.
    s.skip_unread().unwrap();
    drop(s);
    let file = path(tmp.path(), "j1");
    let mut torn = fs::read(&file).unwrap();
    let whole = torn.len();
    let mut partial = 40u32.to_le_bytes().to_vec();
    partial.extend_from_slice(&[8, 51]);
    torn.extend_from_slice(&partial);
    fs::write(&file, &torn).unwrap();

    let mut r = Reader::open(&file).unwrap().unwrap();
    assert_eq!(read_all(&mut r), (1..=50).collect::<Vec<_>>());
    assert_eq!(r.offset, whole as u64);
    assert!(
        Reader::open(&tmp.path().join("none.log"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn skipped_records_are_not_read_again_and_damage_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Spool::create(tmp.path(), "j1").unwrap();
    for seq in 1..=10 {
        s.append(&line(seq)).unwrap();
    }
    s.skip_unread().unwrap();
    s.append(&line(11)).unwrap();
    assert_eq!(s.next().unwrap().map(|l| l.seq), Some(11));
    assert!(s.next().unwrap().is_none());

    let file = path(tmp.path(), "bad");
    fs::write(&file, u32::MAX.to_le_bytes()).unwrap();
    let err = Reader::open(&file).unwrap().unwrap().next().unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "read log spool {}: damaged record at byte 0",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn a_replacement_takes_the_spools_place_only_once_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut old = Spool::create(tmp.path(), "j1").unwrap();
    old.append(&line(1)).unwrap();
    let mut new = Replacement::create(tmp.path(), "j1").unwrap();
    new.append(&line(7)).unwrap();
    let file = path(tmp.path(), "j1");
    // Not committed yet (a kill now): the old spool is whole.
    assert_eq!(read_all(&mut Reader::open(&file).unwrap().unwrap()), [1]);
    assert_eq!(new.commit().unwrap(), file);
    assert_eq!(read_all(&mut Reader::open(&file).unwrap().unwrap()), [7]);
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["j1.log"]);
}
