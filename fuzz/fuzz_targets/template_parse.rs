//! Template parsing on arbitrary `main.tf` text, and the same bytes as
//! `main.tf.json`, through the same path a push takes (a tar, extracted and
//! read): any input gives a template or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provisionerd::{archive, template};

fuzz_target!(|data: &[u8]| {
    for name in ["main.tf", "main.tf.json"] {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, name, data)
            .expect("append");
        let tar = builder.into_inner().expect("finish");
        let _ = template::parse_archive(&tar, &archive::Limits::default());
    }
});
