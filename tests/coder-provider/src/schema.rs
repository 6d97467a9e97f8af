//! Short constructors for the schemas below: each data source and resource
//! lists its attributes as (name, kind, type) rows instead of spelling out
//! tf-provider's structs field by field.

use std::collections::HashMap;

use tf_provider::schema::{
    Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema,
};

/// Who sets an attribute: the template (`Required`, `Optional`), the
/// provider (`Computed`), or either (`Defaulted`: the provider fills in a
/// value the template left out).
#[derive(Clone, Copy)]
pub enum Kind {
    Required,
    Optional,
    Defaulted,
    Computed,
    /// Computed and hidden from terraform's output (tokens, keys).
    Secret,
}

pub fn string() -> AttributeType {
    AttributeType::String
}

pub fn number() -> AttributeType {
    AttributeType::Number
}

pub fn boolean() -> AttributeType {
    AttributeType::Bool
}

pub fn list_of_strings() -> AttributeType {
    AttributeType::List(Box::new(AttributeType::String))
}

pub fn map_of_strings() -> AttributeType {
    AttributeType::Map(Box::new(AttributeType::String))
}

/// A block of attributes and nested blocks.
pub fn block<'a>(
    description: &str,
    attributes: impl IntoIterator<Item = (&'a str, Kind, AttributeType)>,
    blocks: impl IntoIterator<Item = (&'a str, NestedBlock)>,
) -> Block {
    let attributes = attributes
        .into_iter()
        .map(|(name, kind, attr_type)| {
            let constraint = match kind {
                Kind::Required => AttributeConstraint::Required,
                Kind::Optional => AttributeConstraint::Optional,
                Kind::Defaulted => AttributeConstraint::OptionalComputed,
                Kind::Computed | Kind::Secret => AttributeConstraint::Computed,
            };
            let attr = Attribute {
                attr_type,
                description: Description::plain(name),
                constraint,
                sensitive: matches!(kind, Kind::Secret),
                deprecated: false,
            };
            (name.to_string(), attr)
        })
        .collect();
    let blocks: HashMap<String, NestedBlock> = blocks
        .into_iter()
        .map(|(name, nested)| (name.to_string(), nested))
        .collect();
    Block {
        version: 1,
        attributes,
        blocks,
        description: Description::plain(description),
        deprecated: false,
    }
}

pub fn schema(block: Block) -> Option<Schema> {
    Some(Schema { version: 1, block })
}
