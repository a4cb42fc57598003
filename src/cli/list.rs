//! `runbook list` and `runbook show`: what playbooks there are, read from their headers only.

use serde_json::json;

use crate::error::Result;
use crate::playbook::{catalog, Playbook};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Playbook name or path.
    pub playbook: String,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Lists every playbook by name with its version, origin and description.
pub fn list(args: ListArgs) -> Result<()> {
    let mut rows = Vec::new();
    for source in catalog::all_playbooks() {
        match source.and_then(Playbook::from_source) {
            Ok(p) => rows.push(p),
            Err(e) => eprintln!("{}", e.render()),
        }
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|p| json!({"name": p.header.name, "version": p.header.version.to_string(), "description": p.header.description, "destructive": p.header.destructive, "origin": p.source.origin}))
            .collect();
        super::print_json(&json!(list));
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|p| p.header.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:width$}  {:8}  {:11}  {:10}  DESCRIPTION",
        "NAME", "VERSION", "DESTRUCTIVE", "ORIGIN"
    );
    for p in &rows {
        println!(
            "{:width$}  {:8}  {:11}  {:10}  {}",
            p.header.name,
            p.header.version.to_string(),
            if p.header.destructive { "yes" } else { "no" },
            p.source.origin.describe(),
            p.header.description
        );
    }
    Ok(())
}

/// Shows one playbook's header: description, parameters, whether destructive, and origin.
pub fn show(args: ShowArgs) -> Result<()> {
    let p = Playbook::load(&args.playbook)?;
    if args.json {
        super::print_json(
            &json!({"header": p.header, "origin": p.source.origin, "sha256": p.sha256}),
        );
        return Ok(());
    }
    println!(
        "{} v{}: {}",
        p.header.name, p.header.version, p.header.description
    );
    println!(
        "origin: {}   sha256: {}",
        p.source.origin.describe(),
        p.sha256
    );
    if p.header.destructive {
        println!("destructive: yes (asks for confirmation; --yes answers in scripts)");
    }
    if p.header.locks_stack {
        println!("locks: the stack (one locking run per stack at a time; --wait-lock waits)");
    }
    if !p.header.details.is_empty() {
        println!("\n{}", p.header.details);
    }
    if !p.header.params.is_empty() {
        println!("\nparameters:");
        let width = p
            .header
            .params
            .iter()
            .map(|q| q.name.len())
            .max()
            .unwrap_or(0);
        for q in &p.header.params {
            let mut default = match (&q.default, q.required) {
                (_, true) => "required".to_string(),
                (Some(d), _) => format!("default {d}"),
                (None, _) => "optional".to_string(),
            };
            if let Some(c) = &q.constraint {
                default.push_str(&format!(" ({})", c.describe()));
            }
            println!(
                "  -p {:width$}  {:8}  {:22}  {}",
                q.name,
                q.kind.to_string(),
                default,
                q.help
            );
        }
    }
    Ok(())
}
