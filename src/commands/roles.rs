//! `svc roles`: the roles this binary can run, from their manifests.

use std::process::ExitCode;

use crate::roles;

pub fn run() -> ExitCode {
    let catalog = roles::catalog();
    println!(
        "{:<14} {:<6} {:<9} {:<34} {:<34} CONSUMES",
        "ROLE", "PORT", "STATEFUL", "CALLS", "PUBLISHES"
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    for m in catalog.iter() {
        let port = if m.port == 0 {
            "any".to_string()
        } else {
            m.port.to_string()
        };
        println!(
            "{:<14} {:<6} {:<9} {:<34} {:<34} {}",
            m.name,
            port,
            if m.stateful { "yes" } else { "no" },
            list(&m.calls),
            list(&m.publishes),
            list(&m.consumes)
        );
    }
    println!();
    for m in catalog.iter() {
        println!("{:<14} {}", m.name, m.description);
    }
    ExitCode::SUCCESS
}
