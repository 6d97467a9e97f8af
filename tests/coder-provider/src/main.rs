//! A stand-in for Coder's terraform provider (`coder/coder`), for
//! provisionerd's tests only: the real one cannot be downloaded here. It
//! serves the data sources and the resource Coder templates use most,
//! filled from the same `CODER_*` variables the real provider reads, so a
//! Coder-style template plans and applies offline.
//!
//! Terraform starts it as a plugin (tfplugin6 over gRPC on loopback);
//! scripts/install-coder-provider.sh puts it in a filesystem mirror.

mod agent;
mod check;
mod env;
mod parameter;
mod provider;
mod schema;
mod tags;
mod workspace;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tf_provider::serve("coder", provider::CoderProvider::default()).await?;
    Ok(())
}
