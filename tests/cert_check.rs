//! cert-check on real certificates: made with openssl (with expiry dates chosen around now),
//! issued by a real OpenBao PKI, and mounted into a running container; thresholds, chains, the
//! three output formats with the Nagios plugin contract (first line, exit codes 0/1/2/3), and
//! renewal from the PKI written atomically.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::docker::{docker, setup, BUSYBOX};
use common::openbao::OpenBao;
use common::{Outcome, Workspace};
use serde_json::{json, Value};

/// A self-signed certificate for `cn` at `rel` that expires `days` days from now (negative:
/// expired), an hour more so the whole days left are exactly `days`. `openssl ca` takes dates
/// where `req -days` takes only positive counts.
fn make_cert(ws: &Workspace, rel: &str, cn: &str, days: i64) {
    let path = ws.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
         default_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
    std::fs::write(work.path().join("index.txt"), "").unwrap();
    std::fs::write(work.path().join("serial"), "01\n").unwrap();
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y%m%d%H%M%SZ").to_string();
    let start = stamp(now - chrono::Duration::days(10));
    let end = stamp(now + chrono::Duration::days(days) + chrono::Duration::hours(1));
    let subject = format!("/CN={cn}");
    common::tls::openssl(
        work.path(),
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            &subject,
        ],
    );
    common::tls::openssl(
        work.path(),
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "key.pem",
            "-in",
            "req.csr",
            "-out",
            "cert.pem",
            "-notext",
            "-startdate",
            &start,
            "-enddate",
            &end,
        ],
    );
    std::fs::copy(work.path().join("cert.pem"), &path).unwrap();
}

/// A PKI mount `pki` with a root CA and a role `web` for *.example.test, through the API.
fn pki(bao: &OpenBao) {
    let post = |path: &str, body: Value| {
        let (code, reply) = bao.api("POST", path, Some(body));
        assert!(code < 300, "{path}: {code} {reply}");
    };
    post(
        "sys/mounts/pki",
        json!({"type": "pki", "config": {"max_lease_ttl": "8760h"}}),
    );
    post(
        "pki/root/generate/internal",
        json!({"common_name": "Shop Test Root", "ttl": "8760h"}),
    );
    post(
        "pki/roles/web",
        json!({"allowed_domains": ["example.test"], "allow_subdomains": true,
               "allow_ip_sans": true, "max_ttl": "2000h", "key_type": "ec", "key_bits": 256}),
    );
}

/// A certificate OpenBao issued.
struct Issued {
    certificate: String,
    issuing_ca: String,
    private_key: String,
    serial: String,
}

/// Issues a certificate from the `web` role.
fn issue(bao: &OpenBao, body: Value) -> Issued {
    let (code, reply) = bao.api("POST", "pki/issue/web", Some(body));
    assert_eq!(code, 200, "{reply}");
    let d = &reply["data"];
    let text = |k: &str| d[k].as_str().unwrap().to_string();
    Issued {
        certificate: text("certificate"),
        issuing_ca: text("issuing_ca"),
        private_key: text("private_key"),
        serial: text("serial_number"),
    }
}

/// `runbook run cert-check` with `NAME=VALUE` parameters and `--flags`, against `bao`.
fn cert_check(ws: &Workspace, bao: Option<&OpenBao>, args: &[&str]) -> Outcome {
    let mut argv = vec!["run", "cert-check"];
    for a in args {
        if a.starts_with("--") {
            argv.push(a);
        } else {
            argv.extend(["-p", a]);
        }
    }
    let env: Vec<(&str, String)> = bao.map(|b| b.env()).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.run_env(&argv, &env)
}

/// (id, severity, object) of each finding `format=json` printed.
fn findings(out: &Outcome) -> Vec<(String, String, String)> {
    let list: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}:\n{}\n{}", out.stdout, out.stderr));
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("id"), s("severity"), s("object"))
        })
        .collect()
}

fn severity_of(found: &[(String, String, String)], object: &str) -> String {
    let hits: Vec<_> = found.iter().filter(|f| f.2.contains(object)).collect();
    assert_eq!(hits.len(), 1, "one finding about {object}: {found:#?}");
    hits[0].1.clone()
}

#[test]
fn thresholds_chains_and_nagios_exit_codes() {
    let ws = Workspace::new();
    if !common::tls::available() {
        return;
    }
    make_cert(&ws, "certs/ok.pem", "ok.example", 200);
    make_cert(&ws, "certs/warn.pem", "warn.example", 20);
    make_cert(&ws, "other/critical.pem", "critical.example", 3);
    let chain = ws.read("certs/ok.pem") + &ws.read("other/critical.pem");
    ws.write("chain/fullchain.crt", &chain);

    let out = cert_check(&ws, None, &["paths=certs/ok.pem", "format=nagios"]);
    out.expect_code(0);
    assert!(
        out.stdout.starts_with("CERT-CHECK OK - 1 checks passed"),
        "{}",
        out.stdout
    );

    let out = cert_check(&ws, None, &["paths=certs", "format=nagios"]);
    out.expect_code(1);
    assert!(
        out.stdout.starts_with("CERT-CHECK WARNING - "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("warn.example") && out.stdout.contains("expires in 20 days"),
        "{}",
        out.stdout
    );

    let out = cert_check(&ws, None, &["paths=certs,chain", "format=nagios"]);
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

    let out = cert_check(&ws, None, &["paths=missing.pem", "format=nagios"]);
    out.expect_code(3);
    assert!(
        out.stdout.starts_with("CERT-CHECK UNKNOWN - "),
        "{}",
        out.stdout
    );

    let out = cert_check(&ws, None, &["paths=certs", "warn_days=10", "format=json"]);
    out.expect_code(0);
    let severities: Vec<String> = findings(&out).into_iter().map(|f| f.1).collect();
    assert_eq!(
        severities,
        ["ok", "ok"],
        "with warn_days=10 a 20-day certificate is fine"
    );
}

#[test]
fn openssl_and_openbao_certificates_are_classed_in_all_three_formats() {
    let ws = Workspace::new();
    if !common::tls::available() {
        return;
    }
    let Some(bao) = OpenBao::start() else { return };
    make_cert(&ws, "certs/sixty.pem", "sixty.example", 60);
    make_cert(&ws, "certs/twenty.pem", "twenty.example", 20);
    make_cert(&ws, "certs/three.pem", "three.example", 3);
    make_cert(&ws, "certs/expired.pem", "expired.example", -1);
    pki(&bao);
    // Lifetimes an hour over whole days, like make_cert's: 60, 20 and 3 days left; the 3-day
    // warn.example.test is replaced by a longer one: only the one that expires last counts.
    for (cn, ttl) in [
        ("ok.example.test", "1441h"),
        ("warn.example.test", "72h"),
        ("warn.example.test", "481h"),
        ("crit.example.test", "73h"),
    ] {
        issue(&bao, json!({"common_name": cn, "ttl": ttl}));
    }
    let revoked = issue(
        &bao,
        json!({"common_name": "gone.example.test", "ttl": "24h"}),
    );
    let (code, reply) = bao.api(
        "POST",
        "pki/revoke",
        Some(json!({"serial_number": revoked.serial})),
    );
    assert_eq!(code, 200, "{reply}");

    let sources = ["paths=certs", "vault_mount=pki"];
    let out = cert_check(&ws, Some(&bao), &[&sources[..], &["format=json"]].concat());
    out.expect_code(2); // three are critical: the report, then exit 2
    let found = findings(&out);
    for (object, want) in [
        ("sixty.example", "ok"),
        ("twenty.example", "warn"),
        ("three.example", "critical"),
        ("expired.example", "critical"),
        ("Vault pki/ CA", "ok"),
        ("ok.example.test", "ok"),
        ("warn.example.test", "warn"),
        ("crit.example.test", "critical"),
    ] {
        assert_eq!(severity_of(&found, object), want, "{object}");
    }
    assert_eq!(
        found.len(),
        8,
        "revoked and replaced certificates are left out: {found:#?}"
    );
    assert!(found
        .iter()
        .any(|f| f.0 == "expired" && f.2.contains("expired.example")));

    let out = cert_check(&ws, Some(&bao), &[&sources[..], &["format=table"]].concat());
    out.expect_code(2);
    assert!(
        out.stdout.contains("3 ok, 2 warning, 3 critical"),
        "{}",
        out.stdout
    );
    let expired_line = out
        .stdout
        .lines()
        .find(|l| l.contains("expired.example"))
        .unwrap();
    assert!(
        expired_line.starts_with("CRITICAL  expired"),
        "{expired_line}"
    );

    let out = cert_check(
        &ws,
        Some(&bao),
        &[&sources[..], &["format=nagios"]].concat(),
    );
    out.expect_code(2);
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with("CERT-CHECK CRITICAL - "), "{first}");
    assert!(first.ends_with("| ok=3 warning=2 critical=3"), "{first}");
    for name in ["three.example", "expired.example", "crit.example.test"] {
        assert!(first.contains(name), "{name} not in {first}");
    }

    // The thresholds are parameters: at 10 and 2 days, 20 days is fine and 3 days a warning.
    let out = cert_check(
        &ws,
        Some(&bao),
        &[
            &sources[..],
            &["warn_days=10", "critical_days=2", "format=nagios"],
        ]
        .concat(),
    );
    out.expect_code(2); // the expired one
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("| ok=5 warning=2 critical=1"),
        "{}",
        out.stdout
    );

    // Vault unreachable: UNKNOWN to monitoring.
    drop(bao);
    let out = ws.run_env(
        &[
            "run",
            "cert-check",
            "-p",
            "vault_mount=pki",
            "-p",
            "format=nagios",
        ],
        &[("VAULT_ADDR", "http://127.0.0.1:9"), ("VAULT_TOKEN", "t")],
    );
    out.expect_code(3);
    assert!(
        out.stdout.starts_with("CERT-CHECK UNKNOWN - "),
        "{}",
        out.stdout
    );
}

#[test]
fn renew_reissues_expiring_certificates_from_openbao_into_files_and_mounts() {
    if !common::tls::available() {
        return;
    }
    let Some((ws, objects)) = setup() else { return };
    let Some(bao) = OpenBao::start() else { return };
    pki(&bao);
    // A host file with its chain and a key owned by the service user, 3 days left.
    let shop = issue(
        &bao,
        json!({"common_name": "shop.example.test", "alt_names": "www.shop.example.test",
               "ip_sans": "127.0.0.1", "ttl": "72h"}),
    );
    ws.write(
        "tls/shop.crt",
        &format!("{}\n{}\n", shop.certificate, shop.issuing_ca),
    );
    let key_path = ws.write("tls/shop.key", &shop.private_key);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&key_path, Some(999), Some(999)).unwrap();
    // Not from this PKI: checked, never renewed.
    make_cert(&ws, "tls/other.pem", "other.example", 3);
    // Mounted into a running container: found there, renewed through the bind mount.
    let api = issue(
        &bao,
        json!({"common_name": "api.example.test", "ttl": "48h"}),
    );
    ws.write("mounted/fullchain.pem", &format!("{}\n", api.certificate));
    ws.write("mounted/privkey.pem", &api.private_key);
    let stack = objects.name("tls");
    let mount = format!("{}:/etc/nginx/tls:ro", ws.join("mounted").display());
    let web = objects.run(
        "web",
        &["--label", &format!("runbook.stack={stack}"), "-v", &mount],
        BUSYBOX,
        &["sleep", "100000"],
    );
    let before = (ws.read("tls/shop.crt"), ws.read("mounted/fullchain.pem"));
    let stack_param = format!("stack={stack}");
    let renew = [
        "paths=tls",
        &stack_param,
        "vault_mount=pki",
        "vault_role=web",
        "renew=true",
        "renew_ttl=1000h",
    ];

    // A dry run plans the renewals and changes nothing.
    let out = cert_check(
        &ws,
        Some(&bao),
        &[&renew[..], &["--dry-run", "--json"]].concat(),
    );
    out.expect_code(2); // nothing renewed in a dry run: the report still has the critical ones
    let actions: Vec<String> = out.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        [
            "vault::pki_issue",
            "certs::install",
            "vault::pki_issue",
            "certs::install"
        ],
        "{}",
        out.stdout
    );
    assert_eq!(
        (ws.read("tls/shop.crt"), ws.read("mounted/fullchain.pem")),
        before
    );

    // Replacing files asks first: without a terminal and without --yes, nothing is replaced.
    cert_check(&ws, Some(&bao), &renew).expect_code(3);
    assert_eq!(
        (ws.read("tls/shop.crt"), ws.read("mounted/fullchain.pem")),
        before
    );

    let out = cert_check(
        &ws,
        Some(&bao),
        &[&renew[..], &["format=json", "--yes"]].concat(),
    );
    out.expect_code(2); // other.pem stays critical: not Vault's to renew
    let found = findings(&out);
    assert_eq!(
        severity_of(&found, "tls/shop.crt (CN=shop.example.test)"),
        "ok"
    );
    assert_eq!(
        severity_of(&found, &format!("{web}:/etc/nginx/tls/fullchain.pem")),
        "ok"
    );
    assert_eq!(
        severity_of(&found, "tls/other.pem"),
        "critical",
        "not Vault's to renew"
    );
    assert!(
        !out.all_output().contains("PRIVATE KEY"),
        "a key was printed"
    );

    // The new files: same names, 41 days, the chain kept, the key 0600 with its owner, and
    // the key matches the certificate.
    let dates = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-enddate",
            "-ext",
            "subjectAltName",
            "-in",
        ])
        .arg(ws.join("tls/shop.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dates.stdout);
    assert!(
        text.contains("DNS:www.shop.example.test") && text.contains("IP Address:127.0.0.1"),
        "{text}"
    );
    assert_eq!(
        ws.read("tls/shop.crt").matches("BEGIN CERTIFICATE").count(),
        2
    );
    assert_ne!(ws.read("tls/shop.crt"), before.0);
    let meta = std::fs::metadata(&key_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        (meta.uid(), meta.gid()),
        (999, 999),
        "the key's owner was not kept"
    );
    let public_of = |args: &[&str], file: &str| {
        let out = Command::new("openssl")
            .args(args)
            .arg(ws.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(
        public_of(&["x509", "-noout", "-pubkey", "-in"], "tls/shop.crt"),
        public_of(&["pkey", "-pubout", "-in"], "tls/shop.key")
    );
    assert_eq!(
        public_of(
            &["x509", "-noout", "-pubkey", "-in"],
            "mounted/fullchain.pem"
        ),
        public_of(&["pkey", "-pubout", "-in"], "mounted/privkey.pem"),
        "fullchain.pem's key is privkey.pem"
    );
    let leftovers: Vec<_> = std::fs::read_dir(ws.join("tls"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The container sees the renewed certificate through its mount.
    assert_eq!(
        docker(&["exec", &web, "cat", "/etc/nginx/tls/fullchain.pem"]),
        ws.read("mounted/fullchain.pem").trim()
    );

    let out = cert_check(
        &ws,
        Some(&bao),
        &["paths=tls", &stack_param, "format=nagios"],
    );
    out.expect_code(2);
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .ends_with("| ok=3 warning=0 critical=1"),
        "{}",
        out.stdout
    );
}
