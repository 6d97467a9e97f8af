//! The compiled twin of `scripts/noop-terraform`, for the latency
//! benchmarks: it answers every command at once and stamps
//! "<unix time> <cmd>" to `$NOOP_TF_STAMPS` when set; `version` prints a
//! version, `apply` writes an empty state. Compiled, it starts in well
//! under a millisecond, where bash spends about 1.5 ms before the script's
//! first line: that time is bash's, not provisionerd's, and it made the
//! "terraform started" stamp late by as much. (The log benchmark keeps the
//! script, whose `NOOP_TF_LINES` flood is awk's.)

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> std::io::Result<()> {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    if let Some(stamps) = std::env::var_os("NOOP_TF_STAMPS") {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(stamps)?;
        // One write: daemons running at once append to the same file, and
        // `writeln!` may split a line over several writes.
        f.write_all(format!("{now:.6} {cmd}\n").as_bytes())?;
    }
    match cmd.as_str() {
        "version" => println!("Terraform v1.15.0 (noop)"),
        "apply" => std::fs::write(
            "terraform.tfstate",
            "{\"version\":4,\"terraform_version\":\"1.15.0\",\"serial\":1,\"lineage\":\"noop\",\"outputs\":{},\"resources\":[]}\n",
        )?,
        _ => {}
    }
    Ok(())
}
