//! `coder_workspace` and `coder_workspace_owner`: the build's workspace and
//! its owner, read from the variables Coder's provisioner sets.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::Schema;
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::env;
use crate::provider::AccessUrl;
use crate::schema::{Kind::Computed, Kind::Secret, block, boolean, list_of_strings, number};
use crate::schema::{schema, string};

pub struct Workspace {
    pub access_url: AccessUrl,
}

#[derive(Serialize, Deserialize)]
pub struct WorkspaceState {
    access_port: Value<i64>,
    access_url: Value<String>,
    id: Value<String>,
    is_prebuild: Value<bool>,
    is_prebuild_claim: Value<bool>,
    name: Value<String>,
    prebuild_count: Value<i64>,
    start_count: Value<i64>,
    template_id: Value<String>,
    template_name: Value<String>,
    template_version: Value<String>,
    transition: Value<String>,
    // Deprecated in the real provider in favour of coder_workspace_owner,
    // but older templates still read them.
    owner: Value<String>,
    owner_email: Value<String>,
    owner_id: Value<String>,
    owner_name: Value<String>,
}

#[async_trait]
impl DataSource for Workspace {
    type State<'a> = WorkspaceState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        let strings = [
            "access_url",
            "id",
            "name",
            "template_id",
            "template_name",
            "template_version",
            "transition",
            "owner",
            "owner_email",
            "owner_id",
            "owner_name",
        ];
        let numbers = ["access_port", "prebuild_count", "start_count"];
        let bools = ["is_prebuild", "is_prebuild_claim"];
        let attrs = strings
            .map(|n| (n, Computed, string()))
            .into_iter()
            .chain(numbers.map(|n| (n, Computed, number())))
            .chain(bools.map(|n| (n, Computed, boolean())));
        schema(block("The workspace being built", attrs, []))
    }

    async fn read<'a>(
        &self,
        _: &mut Diagnostics,
        _: WorkspaceState,
        _: ValueEmpty,
    ) -> Option<WorkspaceState> {
        let transition = Some(env::get("CODER_WORKSPACE_TRANSITION"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "start".into());
        let is_prebuild = env::is_true("CODER_WORKSPACE_IS_PREBUILD");
        let (access_url, access_port) = self.access_url.get();
        Some(WorkspaceState {
            access_port: Value::Value(access_port),
            access_url: Value::Value(access_url),
            id: env::get("CODER_WORKSPACE_ID").into(),
            is_prebuild: Value::Value(is_prebuild),
            is_prebuild_claim: Value::Value(env::is_true("CODER_WORKSPACE_IS_PREBUILD_CLAIM")),
            name: env::get("CODER_WORKSPACE_NAME").into(),
            prebuild_count: Value::Value(i64::from(is_prebuild)),
            start_count: Value::Value(i64::from(transition == "start")),
            template_id: env::get("CODER_WORKSPACE_TEMPLATE_ID").into(),
            template_name: env::get("CODER_WORKSPACE_TEMPLATE_NAME").into(),
            template_version: env::get("CODER_WORKSPACE_TEMPLATE_VERSION").into(),
            transition: transition.into(),
            owner: env::get("CODER_WORKSPACE_OWNER").into(),
            owner_email: env::get("CODER_WORKSPACE_OWNER_EMAIL").into(),
            owner_id: env::get("CODER_WORKSPACE_OWNER_ID").into(),
            owner_name: env::get("CODER_WORKSPACE_OWNER_NAME").into(),
        })
    }
}

pub struct Owner;

#[derive(Serialize, Deserialize, Default)]
struct Role {
    name: String,
    org_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct OwnerState {
    email: Value<String>,
    full_name: Value<String>,
    groups: Value<Vec<String>>,
    id: Value<String>,
    login_type: Value<String>,
    name: Value<String>,
    oidc_access_token: Value<String>,
    rbac_roles: Value<Vec<Role>>,
    session_token: Value<String>,
    ssh_private_key: Value<String>,
    ssh_public_key: Value<String>,
}

#[async_trait]
impl DataSource for Owner {
    type State<'a> = OwnerState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        let role = tf_provider::schema::AttributeType::Object(
            [("name", string()), ("org_id", string())]
                .map(|(n, t)| (n.to_string(), t))
                .into(),
        );
        let strings = ["email", "full_name", "id", "login_type", "name"];
        let secrets = ["oidc_access_token", "session_token", "ssh_private_key"];
        let attrs = strings
            .map(|n| (n, Computed, string()))
            .into_iter()
            .chain(secrets.map(|n| (n, Secret, string())))
            .chain([
                ("ssh_public_key", Computed, string()),
                ("groups", Computed, list_of_strings()),
                (
                    "rbac_roles",
                    Computed,
                    tf_provider::schema::AttributeType::List(Box::new(role)),
                ),
            ]);
        schema(block("The owner of the workspace being built", attrs, []))
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        _: OwnerState,
        _: ValueEmpty,
    ) -> Option<OwnerState> {
        let lists = env::json::<Vec<String>>("CODER_WORKSPACE_OWNER_GROUPS", "a list of groups")
            .and_then(|groups| {
                let roles = env::json::<Vec<Role>>(
                    "CODER_WORKSPACE_OWNER_RBAC_ROLES",
                    "a list of {name, org_id} roles",
                )?;
                Ok((groups, roles))
            });
        let (groups, roles) = match lists {
            Ok(lists) => lists,
            Err(err) => {
                diags.root_error_short(format!("read workspace owner: {err}"));
                return None;
            }
        };
        Some(OwnerState {
            email: env::get("CODER_WORKSPACE_OWNER_EMAIL").into(),
            full_name: env::get("CODER_WORKSPACE_OWNER_NAME").into(),
            groups: Value::Value(groups),
            id: env::get("CODER_WORKSPACE_OWNER_ID").into(),
            login_type: env::get("CODER_WORKSPACE_OWNER_LOGIN_TYPE").into(),
            name: env::get("CODER_WORKSPACE_OWNER").into(),
            oidc_access_token: env::get("CODER_WORKSPACE_OWNER_OIDC_ACCESS_TOKEN").into(),
            rbac_roles: Value::Value(roles),
            session_token: env::get("CODER_WORKSPACE_OWNER_SESSION_TOKEN").into(),
            ssh_private_key: env::get("CODER_WORKSPACE_OWNER_SSH_PRIVATE_KEY").into(),
            ssh_public_key: env::get("CODER_WORKSPACE_OWNER_SSH_PUBLIC_KEY").into(),
        })
    }
}
