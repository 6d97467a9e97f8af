//! The provider itself: its optional `url` setting and the list of data
//! sources and resources it serves (terraform sees them prefixed `coder_`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::agent::Agent;
use crate::env;
use crate::parameter::Parameter;
use crate::schema::{Kind::Optional, block, boolean, schema, string};
use crate::tags::{Preset, Tags};
use crate::workspace::{Owner, Workspace};

/// The deployment's access URL, shared by the provider (which learns it when
/// terraform configures it) and `coder_workspace` (which reports it).
#[derive(Clone, Default)]
pub struct AccessUrl(Arc<Mutex<String>>);

impl AccessUrl {
    fn set(&self, url: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// The URL and its port (from the URL, else its scheme's; 0 when there
    /// is no URL).
    pub fn get(&self) -> (String, i64) {
        let url = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let port = port_of(&url);
        (url, port)
    }
}

fn port_of(url: &str) -> i64 {
    let Some((scheme, rest)) = url.split_once("://") else {
        return 0;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    // An IPv6 literal's colons are inside its brackets.
    let after_host = host.rsplit(']').next().unwrap_or_default();
    if let Some(port) = after_host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
    {
        return port;
    }
    match scheme {
        "https" => 443,
        "http" => 80,
        _ => 0,
    }
}

#[derive(Default)]
pub struct CoderProvider {
    access_url: AccessUrl,
}

#[derive(Serialize, Deserialize)]
pub struct Config {
    url: Value<String>,
    // Accepted for templates written for the 0.x provider; no effect.
    feature_use_managed_variables: Value<bool>,
}

#[async_trait]
impl Provider for CoderProvider {
    type Config<'a> = Config;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        schema(block(
            "Stand-in for Coder's provider, for tests",
            [
                ("url", Optional, string()),
                ("feature_use_managed_variables", Optional, boolean()),
            ],
            [],
        ))
    }

    async fn configure<'a>(&self, _: &mut Diagnostics, _: String, config: Config) -> Option<()> {
        // As the real provider: the template's `url` wins over the agent URL
        // the provisioner passes.
        let url = match config.url {
            Value::Value(url) if !url.is_empty() => url,
            _ => env::get("CODER_AGENT_URL"),
        };
        self.access_url.set(url.trim_end_matches('/').to_string());
        Some(())
    }

    fn get_resources(
        &self,
        _: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        let mut resources: HashMap<String, Box<dyn DynamicResource>> = HashMap::new();
        let agent = Agent {
            access_url: self.access_url.clone(),
        };
        resources.insert("agent".into(), Box::new(agent));
        Some(resources)
    }

    fn get_data_sources(
        &self,
        _: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        let mut sources: HashMap<String, Box<dyn DynamicDataSource>> = HashMap::new();
        let workspace = Workspace {
            access_url: self.access_url.clone(),
        };
        sources.insert("workspace".into(), Box::new(workspace));
        sources.insert("workspace_owner".into(), Box::new(Owner));
        sources.insert("parameter".into(), Box::new(Parameter));
        sources.insert("workspace_tags".into(), Box::new(Tags));
        sources.insert("workspace_preset".into(), Box::new(Preset));
        Some(sources)
    }
}

#[cfg(test)]
mod tests {
    use super::port_of;

    #[test]
    fn access_port_comes_from_the_url_or_its_scheme() {
        assert_eq!(port_of("https://coder.example.com"), 443);
        assert_eq!(port_of("http://coder.example.com/path"), 80);
        assert_eq!(port_of("https://coder.example.com:8443/x"), 8443);
        assert_eq!(port_of("http://[::1]:3000"), 3000);
        assert_eq!(port_of("http://[::1]"), 80);
        assert_eq!(port_of(""), 0);
    }
}
