//! Embeds every `playbooks/*.rhai` and `stdlib/*.rhai` in the binary, so a new playbook needs
//! no code change.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for dir in ["playbooks", "stdlib"] {
        println!("cargo:rerun-if-changed={dir}");
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "rhai"));
        names.sort();
        writeln!(
            code,
            "pub const {}: &[(&str, &str)] = &[",
            dir.to_uppercase()
        )
        .unwrap();
        for path in names {
            let stem = path.file_stem().unwrap().to_string_lossy();
            let abs = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join(&path);
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                code,
                "    ({stem:?}, include_str!({:?})),",
                abs.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    std::fs::write(Path::new(&out).join("embedded.rs"), code).expect("write embedded.rs");
}
