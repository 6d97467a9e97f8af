//! `keys create|list|delete`.

use serde_json::json;

use super::columns::Columns;
use super::confirm::confirm;
use super::render::{self, tags_text};
use super::{CliError, client, pages, pairs, print_json};
use crate::config::{KeysCmd, Output};
use crate::proto;

const HEADERS: [&str; 3] = ["NAME", "TAGS", "CREATED"];

pub async fn keys(cmd: KeysCmd) -> Result<(), CliError> {
    match cmd {
        KeysCmd::Create { name, tags, admin } => {
            let tags = pairs("--tag", &tags)?;
            let resp = client(&admin)
                .await?
                .create_key(proto::CreateKeyRequest {
                    name: name.clone(),
                    tags,
                })
                .await?
                .into_inner();
            eprintln!(
                "Created provisioner key {name:?}. Save the secret below: it is not shown again."
            );
            println!("{}", resp.secret);
        }
        KeysCmd::List {
            page,
            out,
            cols,
            admin,
        } => {
            let columns = Columns::pick("keys list", &HEADERS, &cols.columns)?;
            let c = client(&admin).await?;
            let (keys, next) =
                pages::collect(pages::limit(page.limit), page.after, |limit, after| {
                    let mut c = c.clone();
                    async move {
                        let r = c
                            .list_keys(proto::ListKeysRequest { limit, after })
                            .await?
                            .into_inner();
                        Ok((r.keys, r.next_cursor))
                    }
                })
                .await?;
            if out.output == Output::Json {
                print_json(&json!(
                    keys.iter().map(render::key_json).collect::<Vec<_>>()
                ));
            } else {
                columns.print(
                    &HEADERS,
                    keys.iter()
                        .map(|k| {
                            vec![
                                k.name.clone(),
                                tags_text(&k.tags),
                                render::table_time(k.created_at),
                            ]
                        })
                        .collect(),
                );
            }
            pages::hint("keys", &next);
        }
        KeysCmd::Delete { name, yes, admin } => {
            confirm(
                &format!("delete provisioner key {name:?}"),
                "Daemons using it are disconnected.",
                yes.yes,
            )?;
            client(&admin)
                .await?
                .delete_key(proto::DeleteKeyRequest { name: name.clone() })
                .await?;
            eprintln!("Deleted provisioner key {name:?}; its daemons are disconnected.");
        }
    }
    Ok(())
}
