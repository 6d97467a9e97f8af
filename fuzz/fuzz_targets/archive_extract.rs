//! Archive checks on arbitrary bytes. Header checksums are repaired first,
//! so mutations reach the entry checks instead of all dying at the
//! checksum. Asserts: `check` and `extract` agree (same stats or the same
//! refusal), nothing appears beside the destination, a sentinel next to it
//! is untouched, and every symlink written resolves inside it.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use provisionerd::archive::{self, KIB, Limits, MIB};

const LIMITS: Limits = Limits {
    max_archive_bytes: MIB,
    max_file_bytes: 64 * KIB,
    max_total_bytes: 256 * KIB,
    max_entries: 200,
    max_path_depth: 16,
};

fuzz_target!(|data: &[u8]| {
    let tar = fix_checksums(data);
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("dest");
    fs::write(root.path().join("sentinel"), "untouched").expect("sentinel");

    let checked = archive::check(&tar, &LIMITS);
    let extracted = archive::extract(&tar, &dest, &LIMITS);
    match (&checked, &extracted) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            assert_eq!(a.strip_prefix("check "), b.strip_prefix("extract "));
        }
        _ => panic!("check and extract disagree: {checked:?} / {extracted:?}"),
    }

    let mut beside: Vec<_> = fs::read_dir(root.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    beside.sort();
    assert_eq!(beside, ["dest", "sentinel"], "written outside dest");
    assert_eq!(
        fs::read_to_string(root.path().join("sentinel")).expect("sentinel"),
        "untouched"
    );
    let real = fs::canonicalize(&dest).expect("dest");
    links_stay_inside(&dest, &real);
});

fn links_stay_inside(dir: &Path, real_dest: &Path) {
    for entry in fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("stat");
        if meta.file_type().is_symlink() {
            // A dangling link leads nowhere; a live one must stay inside.
            if let Ok(target) = fs::canonicalize(&path) {
                assert!(
                    target.starts_with(real_dest),
                    "{} leads to {}",
                    path.display(),
                    target.display()
                );
            }
        } else if meta.is_dir() {
            links_stay_inside(&path, real_dest);
        }
    }
}

/// Rewrites the checksum of every header, walking from header to header by
/// the declared sizes (octal or GNU base-256).
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0usize;
    while pos + 512 <= out.len() {
        let block = &mut out[pos..pos + 512];
        if block.iter().all(|&b| b == 0) {
            break;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = declared_size(&block[124..136]);
        let data_blocks = size.div_ceil(512).min(out.len() as u64 / 512) as usize;
        pos += 512 * (1 + data_blocks);
    }
    out
}

fn declared_size(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[4..]
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|b| (b'0'..=b'7').contains(b))
        .fold(0u64, |n, &b| {
            n.saturating_mul(8).saturating_add(u64::from(b - b'0'))
        })
}
