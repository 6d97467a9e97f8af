//! `coder_parameter`: a build parameter's value, from
//! `CODER_PARAMETER_<sha256 hex of its name>` else its default, checked
//! against its type, options and validation the way the real provider does.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{NestedBlock, Schema};
use tf_provider::value::{self, Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::check::{Rules, check};
use crate::env;
use crate::schema::Kind::{Computed, Defaulted, Optional, Required};
use crate::schema::{block, boolean, number, schema, string};

pub struct Parameter;

#[derive(Serialize, Deserialize)]
pub struct ParameterState {
    id: Value<String>,
    name: Value<String>,
    display_name: Value<String>,
    description: Value<String>,
    icon: Value<String>,
    styling: Value<String>,
    #[serde(rename = "type")]
    kind: Value<String>,
    form_type: Value<String>,
    default: Value<String>,
    value: Value<String>,
    mutable: Value<bool>,
    ephemeral: Value<bool>,
    optional: Value<bool>,
    order: Value<i64>,
    option: Value<Vec<ParamOption>>,
    #[serde(with = "value::serde_as_vec")]
    validation: Value<Validation>,
}

#[derive(Serialize, Deserialize)]
pub struct ParamOption {
    pub name: Value<String>,
    pub value: Value<String>,
    pub description: Value<String>,
    pub icon: Value<String>,
}

#[derive(Serialize, Deserialize)]
pub struct Validation {
    pub min: Value<i64>,
    pub max: Value<i64>,
    pub monotonic: Value<String>,
    pub regex: Value<String>,
    pub error: Value<String>,
    pub min_disabled: Value<bool>,
    pub max_disabled: Value<bool>,
}

#[async_trait]
impl DataSource for Parameter {
    type State<'a> = ParameterState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _: &mut Diagnostics) -> Option<Schema> {
        let option = block(
            "One value the parameter may take",
            [
                ("name", Required, string()),
                ("value", Required, string()),
                ("description", Optional, string()),
                ("icon", Optional, string()),
            ],
            [],
        );
        let validation = block(
            "Rules the value must follow",
            [
                ("min", Optional, number()),
                ("max", Optional, number()),
                ("monotonic", Optional, string()),
                ("regex", Optional, string()),
                ("error", Optional, string()),
                ("min_disabled", Computed, boolean()),
                ("max_disabled", Computed, boolean()),
            ],
            [],
        );
        let strings = ["display_name", "description", "icon", "styling", "default"];
        let attrs = strings.map(|n| (n, Optional, string())).into_iter().chain([
            ("id", Computed, string()),
            ("name", Required, string()),
            ("type", Defaulted, string()),
            ("form_type", Defaulted, string()),
            ("value", Computed, string()),
            ("mutable", Defaulted, boolean()),
            ("ephemeral", Defaulted, boolean()),
            ("optional", Computed, boolean()),
            ("order", Optional, number()),
        ]);
        schema(block(
            "A value the workspace's owner chooses",
            attrs,
            [
                ("option", NestedBlock::List(option)),
                ("validation", NestedBlock::Optional(validation)),
            ],
        ))
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: ParameterState,
        _: ValueEmpty,
    ) -> Option<ParameterState> {
        match evaluate(config) {
            Ok(state) => Some(state),
            Err(err) => {
                diags.root_error_short(err);
                None
            }
        }
    }
}

fn evaluate(mut p: ParameterState) -> Result<ParameterState, String> {
    let name = p.name.as_ref_option().cloned().unwrap_or_default();
    let fail = |problem: String| format!("read parameter \"{name}\": {problem}");
    let kind = p
        .kind
        .as_ref_option()
        .cloned()
        .unwrap_or_else(|| "string".into());
    let mutable = p.mutable.as_ref_option().copied().unwrap_or(false);
    let ephemeral = p.ephemeral.as_ref_option().copied().unwrap_or(false);
    if ephemeral && !mutable {
        return Err(fail("an ephemeral parameter must be mutable".into()));
    }
    let options: Vec<String> = p
        .option
        .iter()
        .flatten()
        .filter_map(|o| o.value.as_ref_option().cloned())
        .collect();
    if let Value::Value(v) = &mut p.validation {
        v.min_disabled = Value::Value(v.min.is_null());
        v.max_disabled = Value::Value(v.max.is_null());
    }
    let rules = Rules {
        kind: &kind,
        options: &options,
        validation: p.validation.as_ref_option(),
    };
    let default = p.default.as_ref_option().cloned();
    if let Some(default) = &default {
        check(&rules, default, None).map_err(|e| fail(format!("default {e}")))?;
    }
    let value = match env::lookup(&env::parameter_var(&name)) {
        Some(given) => {
            let previous = env::lookup(&env::previous_parameter_var(&name));
            check(&rules, &given, previous.as_deref()).map_err(|e| fail(format!("value {e}")))?;
            given
        }
        None => match &default {
            Some(default) => default.clone(),
            // A template import has no values; only a build needs one.
            None if env::in_build() => {
                return Err(fail(format!(
                    "no value given ({} is unset) and no default",
                    env::parameter_var(&name)
                )));
            }
            None => String::new(),
        },
    };
    let form_type = match (kind.as_str(), options.is_empty()) {
        (_, false) => "radio",
        ("bool", true) => "checkbox",
        ("list(string)", true) => "tag-select",
        _ => "input",
    };
    Ok(ParameterState {
        id: Value::Value(uuid::Uuid::new_v4().to_string()),
        optional: Value::Value(default.is_some()),
        form_type: p.form_type.or(Value::Value(form_type.into())),
        kind: Value::Value(kind),
        value: Value::Value(value),
        mutable: Value::Value(mutable),
        ephemeral: Value::Value(ephemeral),
        ..p
    })
}
