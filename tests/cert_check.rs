//! cert-check on real certificates made with openssl: thresholds, chains, and the Nagios
//! plugin contract (first line, exit codes 0/1/2/3).

mod common;

use common::Workspace;

fn make_cert(ws: &Workspace, rel: &str, cn: &str, days: u32) -> bool {
    let path = ws.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(ws.join("key.pem"))
        .arg("-out")
        .arg(&path)
        .args(["-days", &days.to_string(), "-subj", &format!("/CN={cn}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn thresholds_chains_and_nagios_exit_codes() {
    let ws = Workspace::new();
    if !common::require(
        "openssl",
        make_cert(&ws, "certs/ok.pem", "ok.example", 200),
        "openssl CLI not found",
    ) {
        return;
    }
    assert!(make_cert(&ws, "certs/warn.pem", "warn.example", 20));
    assert!(make_cert(&ws, "other/critical.pem", "critical.example", 3));
    let chain = ws.read("certs/ok.pem") + &ws.read("other/critical.pem");
    ws.write("chain/fullchain.crt", &chain);

    let out = ws.run(&[
        "run",
        "cert-check",
        "-p",
        "paths=certs/ok.pem",
        "-p",
        "format=nagios",
    ]);
    out.expect_code(0);
    assert!(
        out.stdout.starts_with("CERT-CHECK OK - 1 checks passed"),
        "{}",
        out.stdout
    );

    let out = ws.run(&[
        "run",
        "cert-check",
        "-p",
        "paths=certs",
        "-p",
        "format=nagios",
    ]);
    out.expect_code(1);
    assert!(
        out.stdout.starts_with("CERT-CHECK WARNING - "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("warn.example")
            && (out.stdout.contains("expires in 19 days")
                || out.stdout.contains("expires in 20 days")),
        "{}",
        out.stdout
    );

    let out = ws.run(&[
        "run",
        "cert-check",
        "-p",
        "paths=certs,chain",
        "-p",
        "format=nagios",
    ]);
    out.expect_code(2);
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .contains("chain/fullchain.crt (CN=critical.example)"),
        "every certificate of a chain is checked:\n{}",
        out.stdout
    );

    let out = ws.run(&[
        "run",
        "cert-check",
        "-p",
        "paths=missing.pem",
        "-p",
        "format=nagios",
    ]);
    out.expect_code(3);
    assert!(
        out.stdout.starts_with("CERT-CHECK UNKNOWN - "),
        "{}",
        out.stdout
    );

    let out = ws.run(&[
        "run",
        "cert-check",
        "-p",
        "paths=certs",
        "-p",
        "warn_days=10",
        "-p",
        "format=json",
    ]);
    out.expect_code(0);
    let start = out.stdout.find('[').unwrap();
    let end = out.stdout.find("\n]").unwrap() + 2;
    let findings: serde_json::Value = serde_json::from_str(&out.stdout[start..end]).unwrap();
    let severities: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect();
    assert_eq!(
        severities,
        ["ok", "ok"],
        "with warn_days=10 a 20-day certificate is fine"
    );
}
