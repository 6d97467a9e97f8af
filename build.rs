// Compiles proto/provisionerd.proto with protox (pure Rust, no system protoc)
// and generates the tonic client and server code.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/provisionerd.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The messages carrying a job secret get a hand-written `Debug`
        // that redacts it (src/proto/redact.rs).
        .skip_debug([
            ".provisionerd.v1.JobOffer",
            ".provisionerd.v1.AckJob",
            ".provisionerd.v1.UpdateJobRequest",
            ".provisionerd.v1.GetJobInputRequest",
            ".provisionerd.v1.FinishJobRequest",
        ])
        .compile_fds(fds)?;
    Ok(())
}
