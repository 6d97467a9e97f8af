use super::*;

fn blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn assemble(bytes: &[u8], size: u64, sha: &str, limit: u64) -> Result<Vec<u8>, ChunkError> {
    let mut a = Assembly::new("state", size, sha, limit)?;
    for c in pieces(bytes) {
        a.push(c)?;
    }
    a.finish()
}

#[test]
fn a_blob_round_trips_through_chunks() {
    let bytes = blob(2 * CHUNK_BYTES + 17);
    assert_eq!(pieces(&bytes).count(), 3);
    let owned: Vec<Vec<u8>> = owned_pieces(bytes.clone()).collect();
    assert_eq!(owned.len(), 3);
    assert_eq!(owned.concat(), bytes);
    assert!(pieces(&bytes).all(|c| c.len() <= CHUNK_BYTES));
    let sha = sha256_hex(&bytes);
    let got = assemble(&bytes, bytes.len() as u64, &sha, u64::MAX).unwrap();
    assert_eq!(got, bytes);
    // Empty: no chunks at all, and the empty string's hash.
    assert_eq!(pieces(&[]).count(), 0);
    assert_eq!(
        assemble(&[], 0, &sha256_hex(&[]), 0).unwrap(),
        Vec::<u8>::new()
    );
}

#[test]
fn an_announced_size_over_the_limit_is_refused_before_any_byte() {
    let err = Assembly::new("state", 11, "", 10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "state is 11 bytes, over the limit of 10 bytes"
    );
}

#[test]
fn more_bytes_than_announced_are_refused_as_they_arrive() {
    let bytes = blob(100);
    let mut a = Assembly::new("state", 60, &sha256_hex(&bytes[..60]), 1000).unwrap();
    a.push(&bytes[..50]).unwrap();
    let err = a.push(&bytes[50..]).unwrap_err();
    assert_eq!(err.to_string(), "state is 100 bytes, expected 60");
    assert_eq!(a.received(), 50, "the refused chunk is not kept");
}

#[test]
fn a_short_transfer_is_refused_naming_both_sizes() {
    let bytes = blob(100);
    let err = assemble(&bytes[..70], 100, &sha256_hex(&bytes), 1000).unwrap_err();
    assert_eq!(
        err,
        ChunkError::Size {
            what: "state",
            got: 70,
            expected: 100
        }
    );
}

#[test]
fn a_corrupted_transfer_is_refused_by_its_hash() {
    let bytes = blob(100);
    let mut bad = bytes.clone();
    bad[42] ^= 1;
    let err = assemble(&bad, 100, &sha256_hex(&bytes), 1000).unwrap_err();
    assert!(matches!(err, ChunkError::Hash { .. }), "{err}");
    assert!(err.to_string().contains(&sha256_hex(&bytes)), "{err}");
    // Upper-case hex from a sender is the same hash.
    let upper = sha256_hex(&bytes).to_uppercase();
    assert_eq!(assemble(&bytes, 100, &upper, 1000).unwrap(), bytes);
}

#[test]
fn finish_parts_carry_the_header_first_then_the_state() {
    let state = blob(CHUNK_BYTES + 1);
    let parts = finish_job_parts(
        FinishJobRequest {
            job_id: "j".into(),
            ..Default::default()
        },
        Some(&state),
    );
    assert_eq!(parts.len(), 3);
    let Some(finish_job_part::Part::Header(h)) = &parts[0].part else {
        panic!("header first")
    };
    assert!(h.has_state);
    assert_eq!(h.state_size, state.len() as u64);
    assert_eq!(h.state_sha256, sha256_hex(&state));
    let mut a = Assembly::new("state", h.state_size, &h.state_sha256, u64::MAX).unwrap();
    for p in &parts[1..] {
        let Some(finish_job_part::Part::State(c)) = &p.part else {
            panic!("state after the header")
        };
        a.push(c).unwrap();
    }
    assert_eq!(a.finish().unwrap(), state);

    let none = finish_job_parts(FinishJobRequest::default(), None);
    let Some(finish_job_part::Part::Header(h)) = &none[0].part else {
        panic!("header")
    };
    assert_eq!((none.len(), h.has_state, h.state_size), (1, false, 0));
}

#[test]
fn push_parts_carry_the_archive_size_and_hash() {
    let archive = blob(10);
    let parts = push_template_parts(PushTemplateRequest::default(), &archive);
    let Some(push_template_part::Part::Header(h)) = &parts[0].part else {
        panic!("header first")
    };
    assert_eq!(
        (h.archive_size, h.archive_sha256.as_str(), parts.len()),
        (10, sha256_hex(&archive).as_str(), 2)
    );
}
