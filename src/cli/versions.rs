//! `templates versions list|promote|archive|unarchive`.

use serde_json::json;

use super::columns::Columns;
use super::{CliError, client, pages, print_json, render};
use crate::config::{Output, VersionArgs, VersionsCmd};
use crate::proto;

const HEADERS: [&str; 7] = [
    "NAME",
    "STATUS",
    "ACTIVE",
    "WORKSPACES",
    "CREATED BY",
    "CREATED",
    "MESSAGE",
];

pub async fn versions(cmd: VersionsCmd) -> Result<(), CliError> {
    match cmd {
        VersionsCmd::List {
            template,
            include_archived,
            page,
            out,
            cols,
            admin,
        } => {
            let columns = Columns::pick("templates versions list", &HEADERS, &cols.columns)?;
            let c = client(&admin).await?;
            let (vs, next) =
                pages::collect(pages::limit(page.limit), page.after, |limit, after| {
                    let mut c = c.clone();
                    let template = template.clone();
                    async move {
                        let r = c
                            .list_template_versions(proto::ListTemplateVersionsRequest {
                                template,
                                include_archived,
                                limit,
                                after,
                            })
                            .await?
                            .into_inner();
                        Ok((r.versions, r.next_cursor))
                    }
                })
                .await?;
            if out.output == Output::Json {
                print_json(&json!(
                    vs.iter().map(render::version_json).collect::<Vec<_>>()
                ));
            } else {
                columns.print(&HEADERS, vs.iter().map(row).collect());
            }
            pages::hint("versions", &next);
        }
        VersionsCmd::Promote(a) => {
            let mut c = client(&a.admin).await?;
            let v = c
                .promote_template_version(proto::PromoteTemplateVersionRequest {
                    template: a.template.clone(),
                    version: a.version.clone(),
                })
                .await?
                .into_inner();
            eprintln!(
                "Template {:?}: version {} ({}) is active",
                v.template, v.name, v.id
            );
            print_version(&v, a.out.output);
        }
        VersionsCmd::Archive(a) => archive(a, true).await?,
        VersionsCmd::Unarchive(a) => archive(a, false).await?,
    }
    Ok(())
}

async fn archive(a: VersionArgs, archived: bool) -> Result<(), CliError> {
    let mut c = client(&a.admin).await?;
    let v = c
        .archive_template_version(proto::ArchiveTemplateVersionRequest {
            template: a.template.clone(),
            version: a.version.clone(),
            unarchive: !archived,
        })
        .await?
        .into_inner();
    eprintln!(
        "Template {:?}: version {} {}",
        v.template,
        v.name,
        if archived { "archived" } else { "unarchived" }
    );
    print_version(&v, a.out.output);
    Ok(())
}

fn row(v: &proto::TemplateVersion) -> Vec<String> {
    let status = if v.archived {
        format!("{} (archived)", v.status)
    } else {
        v.status.clone()
    };
    vec![
        v.name.clone(),
        status,
        if v.active { "yes" } else { "" }.into(),
        v.workspaces.to_string(),
        v.created_by.clone(),
        render::table_time(v.created_at),
        v.message.clone(),
    ]
}

fn print_version(v: &proto::TemplateVersion, output: Output) {
    if output == Output::Json {
        print_json(&render::version_json(v));
    } else {
        // All columns: picking none cannot fail.
        if let Ok(all) = Columns::pick("templates versions", &HEADERS, &[]) {
            all.print(&HEADERS, vec![row(v)]);
        }
    }
}
