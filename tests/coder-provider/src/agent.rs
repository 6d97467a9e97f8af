//! `coder_agent`: the agent a workspace runs. The resource only exists in
//! the state (Coder creates the real agent from it), so create mints an id
//! and a token, read keeps what the state has, and delete forgets it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{NestedBlock, Schema};
use tf_provider::value::{self, Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::env;
use crate::provider::AccessUrl;
use crate::schema::Kind::{Computed, Defaulted, Optional, Required, Secret};
use crate::schema::{block, boolean, map_of_strings, number, schema, string};

const OSES: [&str; 3] = ["linux", "darwin", "windows"];
const ARCHES: [&str; 4] = ["amd64", "arm64", "armv7", "386"];

pub struct Agent {
    pub access_url: AccessUrl,
}

#[derive(Serialize, Deserialize)]
pub struct AgentState {
    id: Value<String>,
    token: Value<String>,
    init_script: Value<String>,
    os: Value<String>,
    arch: Value<String>,
    auth: Value<String>,
    dir: Value<String>,
    env: Value<BTreeMap<String, Value<String>>>,
    startup_script: Value<String>,
    startup_script_behavior: Value<String>,
    shutdown_script: Value<String>,
    connection_timeout: Value<i64>,
    troubleshooting_url: Value<String>,
    motd_file: Value<String>,
    order: Value<i64>,
    api_key_scope: Value<String>,
    metadata: Value<Vec<Metadata>>,
    #[serde(with = "value::serde_as_vec")]
    display_apps: Value<DisplayApps>,
}

#[derive(Serialize, Deserialize)]
struct Metadata {
    key: Value<String>,
    display_name: Value<String>,
    script: Value<String>,
    interval: Value<i64>,
    timeout: Value<i64>,
    order: Value<i64>,
}

#[derive(Serialize, Deserialize)]
struct DisplayApps {
    vscode: Value<bool>,
    vscode_insiders: Value<bool>,
    web_terminal: Value<bool>,
    ssh_helper: Value<bool>,
    port_forwarding_helper: Value<bool>,
}

#[async_trait]
impl Resource for Agent {
    type State<'a> = AgentState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        let metadata = block(
            "A value the agent reports about the workspace",
            [
                ("key", Required, string()),
                ("display_name", Optional, string()),
                ("script", Required, string()),
                ("interval", Required, number()),
                ("timeout", Optional, number()),
                ("order", Optional, number()),
            ],
            [],
        );
        let apps = ["vscode", "vscode_insiders", "web_terminal", "ssh_helper"];
        let display_apps = block(
            "Built-in apps shown for the agent",
            apps.map(|n| (n, Optional, boolean())).into_iter().chain([(
                "port_forwarding_helper",
                Optional,
                boolean(),
            )]),
            [],
        );
        let optional_strings = [
            "dir",
            "startup_script",
            "startup_script_behavior",
            "shutdown_script",
            "troubleshooting_url",
            "motd_file",
            "api_key_scope",
        ];
        let attrs = optional_strings
            .map(|n| (n, Optional, string()))
            .into_iter()
            .chain([
                ("id", Computed, string()),
                ("token", Secret, string()),
                ("init_script", Computed, string()),
                ("os", Required, string()),
                ("arch", Required, string()),
                ("auth", Defaulted, string()),
                ("env", Optional, map_of_strings()),
                ("connection_timeout", Optional, number()),
                ("order", Optional, number()),
            ]);
        schema(block(
            "The agent running inside the workspace",
            attrs,
            [
                ("metadata", NestedBlock::List(metadata)),
                ("display_apps", NestedBlock::Optional(display_apps)),
            ],
        ))
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: AgentState) -> Option<()> {
        for (attr, value, allowed) in [
            ("os", &config.os, &OSES[..]),
            ("arch", &config.arch, &ARCHES),
        ] {
            if let Value::Value(v) = value
                && !allowed.contains(&v.as_str())
            {
                diags.error_short(
                    format!(
                        "coder_agent: {attr} {v:?} is not one of {}",
                        allowed.join(", ")
                    ),
                    AttributePath::new(attr),
                );
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        _: &mut Diagnostics,
        state: AgentState,
        private: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<(AgentState, ValueEmpty)> {
        Some((state, private))
    }

    async fn plan_create<'a>(
        &self,
        _: &mut Diagnostics,
        proposed: AgentState,
        _: AgentState,
        _: ValueEmpty,
    ) -> Option<(AgentState, ValueEmpty)> {
        let planned = AgentState {
            id: Value::Unknown,
            token: Value::Unknown,
            init_script: Value::Unknown,
            auth: proposed.auth.or(Value::Value("token".into())),
            ..proposed
        };
        Some((planned, Value::Null))
    }

    async fn plan_update<'a>(
        &self,
        _: &mut Diagnostics,
        prior: AgentState,
        proposed: AgentState,
        _: AgentState,
        private: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<(AgentState, ValueEmpty, Vec<AttributePath>)> {
        // The init script is for one platform: another one is another agent.
        let mut replace = Vec::new();
        if prior.os != proposed.os {
            replace.push(AttributePath::new("os"));
        }
        if prior.arch != proposed.arch {
            replace.push(AttributePath::new("arch"));
        }
        let planned = AgentState {
            auth: proposed.auth.or(Value::Value("token".into())),
            ..proposed
        };
        Some((planned, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _: &mut Diagnostics,
        _: AgentState,
        private: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<ValueEmpty> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        _: &mut Diagnostics,
        planned: AgentState,
        _: AgentState,
        private: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<(AgentState, ValueEmpty)> {
        let init_script = self.init_script(&planned);
        let state = AgentState {
            id: Value::Value(uuid::Uuid::new_v4().to_string()),
            token: Value::Value(uuid::Uuid::new_v4().to_string()),
            init_script: Value::Value(init_script),
            ..planned
        };
        Some((state, private))
    }

    async fn update<'a>(
        &self,
        _: &mut Diagnostics,
        _: AgentState,
        planned: AgentState,
        _: AgentState,
        private: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<(AgentState, ValueEmpty)> {
        // os and arch replace the agent, so id, token and init script carry
        // over from the prior state through the plan.
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        _: &mut Diagnostics,
        _: AgentState,
        _: ValueEmpty,
        _: ValueEmpty,
    ) -> Option<()> {
        Some(())
    }
}

impl Agent {
    /// Coder passes the bootstrap script per platform in
    /// `CODER_AGENT_SCRIPT_<os>_<arch>`, with the access URL and auth type
    /// left as placeholders; without one the script is empty.
    fn init_script(&self, state: &AgentState) -> String {
        let os = state.os.as_ref_option().map_or("", String::as_str);
        let arch = state.arch.as_ref_option().map_or("", String::as_str);
        let auth = state.auth.as_ref_option().map_or("token", String::as_str);
        let (url, _) = self.access_url.get();
        env::get(&format!("CODER_AGENT_SCRIPT_{os}_{arch}"))
            .replace("${ACCESS_URL}", &format!("{url}/"))
            .replace("${AUTH_TYPE}", auth)
    }
}
