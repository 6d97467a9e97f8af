//! The hostile archives, written header by header (ustar layout, GNU
//! long names, PAX records) so nothing in the way cleans them up.

use std::path::Path;

use provisionerd::archive::{KIB, Limits, MIB};

/// Small limits, so the limit attacks stay small too.
pub const LIMITS: Limits = Limits {
    max_archive_bytes: MIB,
    max_file_bytes: KIB,
    max_total_bytes: 4 * KIB,
    max_entries: 50,
    max_path_depth: 8,
};

const MAIN_TF: &[u8] = b"resource \"terraform_data\" \"x\" {}\n";

/// A tar written header by header (ustar layout), without any of the tar
/// crate's path checks.
pub struct Tar(Vec<u8>);

impl Tar {
    /// Every archive starts with a good root `main.tf`, so the attack is
    /// the only thing wrong with it.
    pub fn new() -> Tar {
        Tar(Vec::new()).file(b"main.tf", MAIN_TF)
    }

    fn entry(mut self, name: &[u8], kind: u8, link: &[u8], data: &[u8], size: u64) -> Tar {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        if size <= 0o77777777777 {
            h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        } else {
            // GNU base-256: what a bomb declaring more than 8 GiB uses.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&h);
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0, pad));
        self
    }

    pub fn file(self, name: &[u8], data: &[u8]) -> Tar {
        self.entry(name, b'0', b"", data, data.len() as u64)
    }

    fn dir(self, name: &[u8]) -> Tar {
        self.entry(name, b'5', b"", b"", 0)
    }

    pub fn symlink(self, name: &[u8], target: &[u8]) -> Tar {
        self.entry(name, b'2', target, b"", 0)
    }

    /// A GNU long-name record: the next entry's real name.
    fn long_name(self, name: &[u8]) -> Tar {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(b"././@LongLink", b'L', b"", &data, data.len() as u64)
    }

    /// A PAX extended header for the next entry.
    fn pax(self, key: &str, value: &[u8]) -> Tar {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + body_len.to_string().len();
        if len.to_string().len() != body_len.to_string().len() {
            len += 1;
        }
        let mut record = format!("{len} {key}=").into_bytes();
        record.extend_from_slice(value);
        record.push(b'\n');
        assert_eq!(record.len(), len);
        self.entry(b"PaxHeaders/x", b'x', b"", &record, record.len() as u64)
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

pub struct Attack {
    pub what: &'static str,
    pub archive: Vec<u8>,
    /// What the refusal must say (the entry's name, as printed, and why).
    pub says: String,
}

fn attack(what: &'static str, archive: Vec<u8>, says: impl Into<String>) -> Attack {
    Attack {
        what,
        archive,
        says: says.into(),
    }
}

/// The attacks. `target` is a sentinel file outside the work dir the
/// absolute ones aim at (a tar name field holds 100 bytes, so it is short).
pub fn attacks(target: &Path) -> Vec<Attack> {
    let abs = target.to_str().expect("utf-8 temp path").as_bytes();
    let deep = b"a/b/c/d/e/f/g/h/i.tf";
    let pax_escape = format!("{}{}sentinel", "p/".repeat(60), "../".repeat(61));
    let long_escape = format!("{}/../../../../../../../../../sentinel", "q".repeat(120));
    let mut many = Tar::new();
    for i in 0..LIMITS.max_entries {
        many = many.file(format!("f{i}.tf").as_bytes(), b"");
    }
    let mut total = Tar::new();
    for i in 0..5 {
        total = total.file(format!("t{i}.tf").as_bytes(), &[b'#'; 1000]);
    }
    vec![
        attack(
            "absolute path",
            Tar::new().file(abs, b"pwned").finish(),
            format!("entry {} is an absolute path", target.display()),
        ),
        attack(
            "../ escape",
            Tar::new().file(b"../sentinel", b"pwned").finish(),
            "entry ../sentinel escapes the work dir",
        ),
        attack(
            "nested escape",
            Tar::new().file(b"a/../../sentinel", b"pwned").finish(),
            "entry a/../../sentinel escapes the work dir",
        ),
        attack(
            "symlink to /etc, then a file through it",
            Tar::new()
                .symlink(b"etc", b"/etc")
                .file(b"etc/cron.d/pwned", b"* * * * * root sh")
                .finish(),
            "entry etc is a symlink to /etc, which is an absolute path",
        ),
        attack(
            "symlink to an absolute sentinel, then overwrite",
            Tar::new().symlink(b"s", abs).file(b"s", b"pwned").finish(),
            format!(
                "entry s is a symlink to {}, which is an absolute path",
                target.display()
            ),
        ),
        attack(
            "symlink escaping with ../..",
            Tar::new().symlink(b"up", b"../../sentinel").finish(),
            "entry up is a symlink to ../../sentinel, which resolves outside the work dir",
        ),
        attack(
            "symlink chain leaving through another link",
            Tar::new()
                .symlink(b"d1", b".")
                .symlink(b"d2", b"d1/..")
                .file(b"d2/sentinel", b"pwned")
                .finish(),
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        attack(
            "symlink through symlinks to the root and up",
            Tar::new()
                .symlink(b"x", b".")
                .symlink(b"y", b"x/x/x/..")
                .finish(),
            "entry y is a symlink to x/x/x/.., which resolves outside the work dir",
        ),
        attack(
            "symlink chain turned outward after the fact",
            Tar::new()
                .symlink(b"d2", b"d1/..")
                .symlink(b"d1", b".")
                .finish(),
            "entry d2 is a symlink to d1/.., which resolves outside the work dir",
        ),
        attack(
            "hard link outside",
            Tar::new().entry(b"h", b'1', abs, b"", 0).finish(),
            "entry h is a hard link",
        ),
        attack(
            "hard link to an earlier file, then write through it",
            Tar::new()
                .entry(b"h", b'1', b"main.tf", b"", 0)
                .file(b"h", b"pwned")
                .finish(),
            "entry h is a hard link",
        ),
        attack(
            "link inside, then write through the link",
            Tar::new()
                .dir(b"sub")
                .symlink(b"l", b"sub")
                .file(b"l/x.tf", b"pwned")
                .finish(),
            "entry l/x.tf is inside l, which is a symlink",
        ),
        attack(
            "character device",
            Tar::new().entry(b"null", b'3', b"", b"", 0).finish(),
            "entry null is a character device",
        ),
        attack(
            "block device",
            Tar::new().entry(b"sda", b'4', b"", b"", 0).finish(),
            "entry sda is a block device",
        ),
        attack(
            "fifo",
            Tar::new().entry(b"pipe", b'6', b"", b"", 0).finish(),
            "entry pipe is a fifo",
        ),
        attack(
            "duplicate",
            Tar::new().file(b"./main.tf", b"# again").finish(),
            "entry ./main.tf appears more than once",
        ),
        attack(
            "NUL in a name",
            Tar::new()
                .pax("path", b"evil\0.tf")
                .file(b"innocent.tf", b"")
                .finish(),
            "entry evil\\u{0}.tf has a NUL byte in its name",
        ),
        attack(
            "invalid UTF-8",
            Tar::new().file(b"bad\xff.tf", b"").finish(),
            "entry bad\u{fffd}.tf has a name that is not valid UTF-8",
        ),
        attack(
            "too deep",
            Tar::new().file(deep, b"").finish(),
            "entry a/b/c/d/e/f/g/h/i.tf is 9 levels deep, over the --max-path-depth limit of 8",
        ),
        attack(
            "over-long name",
            Tar::new()
                .long_name(&[b'n'; 300])
                .file(b"short", b"")
                .finish(),
            format!(
                "entry {} has a name of 300 bytes, over the 255-byte limit",
                "n".repeat(300)
            ),
        ),
        attack(
            "too many entries",
            many.finish(),
            "entry f49.tf is entry number 51, over the --max-entries limit of 50",
        ),
        attack(
            "file over the limit",
            Tar::new().file(b"big.tf", &[b'#'; 1025]).finish(),
            "entry big.tf is 1025 bytes, over the --max-file-bytes limit of 1KiB",
        ),
        attack(
            "total over the limit",
            total.finish(),
            format!(
                "entry t4.tf brings the file data to {} bytes, over the --max-total-bytes limit of 4KiB",
                MAIN_TF.len() + 5000
            ),
        ),
        attack(
            "tar bomb: a terabyte declared, nothing behind it",
            Tar::new()
                .entry(b"bomb.tf", b'0', b"", b"", 1 << 40)
                .finish(),
            "entry bomb.tf is 1099511627776 bytes, over the --max-file-bytes limit of 1KiB",
        ),
        attack(
            "PAX long name with ..",
            Tar::new()
                .pax("path", pax_escape.as_bytes())
                .file(b"innocent.tf", b"")
                .finish(),
            format!("entry {pax_escape} escapes the work dir"),
        ),
        attack(
            "GNU long name with ..",
            Tar::new()
                .long_name(long_escape.as_bytes())
                .file(b"innocent.tf", b"")
                .finish(),
            format!("entry {long_escape} escapes the work dir"),
        ),
        attack(
            "PAX link target escaping",
            Tar::new()
                .pax("linkpath", b"../../../../sentinel")
                .symlink(b"ok", b"fine")
                .finish(),
            "entry ok is a symlink to ../../../../sentinel, which resolves outside the work dir",
        ),
    ]
}
