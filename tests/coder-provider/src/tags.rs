//! `coder_workspace_tags` and `coder_workspace_preset`: Coder reads both from
//! the template's source before terraform runs (routing tags, presets,
//! prebuild pools), so in a plan they only have to be accepted and hand
//! their settings back. The real provider also checks a preset's cron and
//! timezone; here that is left to provisionerd's template parser, which
//! reads them where they matter.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{NestedBlock, Schema};
use tf_provider::value::{self, Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::schema::Kind::{Computed, Optional, Required};
use crate::schema::{block, boolean, map_of_strings, number, schema, string};

type StringMap = Value<BTreeMap<String, Value<String>>>;

pub struct Tags;

#[derive(Serialize, Deserialize)]
pub struct TagsState {
    id: Value<String>,
    tags: StringMap,
}

#[async_trait]
impl DataSource for Tags {
    type State<'a> = TagsState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        schema(block(
            "Tags a workspace build's provisioner job must match",
            [
                ("id", Computed, string()),
                ("tags", Optional, map_of_strings()),
            ],
            [],
        ))
    }

    async fn read<'a>(
        &self,
        _: &mut Diagnostics,
        config: TagsState,
        _: ValueEmpty,
    ) -> Option<TagsState> {
        Some(TagsState {
            id: Value::Value(uuid::Uuid::new_v4().to_string()),
            ..config
        })
    }
}

pub struct Preset;

#[derive(Serialize, Deserialize)]
pub struct PresetState {
    id: Value<String>,
    name: Value<String>,
    default: Value<bool>,
    description: Value<String>,
    icon: Value<String>,
    parameters: StringMap,
    #[serde(with = "value::serde_as_vec")]
    prebuilds: Value<Prebuilds>,
}

#[derive(Serialize, Deserialize)]
struct Prebuilds {
    instances: Value<i64>,
    #[serde(with = "value::serde_as_vec")]
    expiration_policy: Value<ExpirationPolicy>,
    #[serde(with = "value::serde_as_vec")]
    scheduling: Value<Scheduling>,
}

#[derive(Serialize, Deserialize)]
struct ExpirationPolicy {
    ttl: Value<i64>,
}

#[derive(Serialize, Deserialize)]
struct Scheduling {
    timezone: Value<String>,
    schedule: Value<Vec<Schedule>>,
}

#[derive(Serialize, Deserialize)]
struct Schedule {
    cron: Value<String>,
    instances: Value<i64>,
}

#[async_trait]
impl DataSource for Preset {
    type State<'a> = PresetState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        let schedule = block(
            "When to keep how many prebuilds",
            [
                ("cron", Required, string()),
                ("instances", Required, number()),
            ],
            [],
        );
        let scheduling = block(
            "Prebuild counts by time of day",
            [("timezone", Required, string())],
            [("schedule", NestedBlock::List(schedule))],
        );
        let expiration = block(
            "When an unclaimed prebuild is replaced",
            [("ttl", Required, number())],
            [],
        );
        let prebuilds = block(
            "Prebuilt workspaces kept for this preset",
            [("instances", Required, number())],
            [
                ("expiration_policy", NestedBlock::Optional(expiration)),
                ("scheduling", NestedBlock::Optional(scheduling)),
            ],
        );
        schema(block(
            "A named set of parameter values",
            [
                ("id", Computed, string()),
                ("name", Required, string()),
                ("default", Optional, boolean()),
                ("description", Optional, string()),
                ("icon", Optional, string()),
                ("parameters", Optional, map_of_strings()),
            ],
            [("prebuilds", NestedBlock::Optional(prebuilds))],
        ))
    }

    async fn read<'a>(
        &self,
        _: &mut Diagnostics,
        config: PresetState,
        _: ValueEmpty,
    ) -> Option<PresetState> {
        Some(PresetState {
            id: Value::Value(uuid::Uuid::new_v4().to_string()),
            ..config
        })
    }
}
