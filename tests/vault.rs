//! The vault primitives, the secrets facade and the Vault playbooks against a real OpenBao
//! dev server (one per test, on a free port).

mod common;

use common::openbao::OpenBao;
use common::{header, Outcome, Workspace};
use serde_json::json;

/// A value that must never appear in any output, journal or report.
const CANARY: &str = "canary-7f3a9c41-do-not-print";

fn run_with(ws: &Workspace, bao: &OpenBao, args: &[&str], extra: &[(&str, &str)]) -> Outcome {
    let env = bao.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    ws.run_env(args, &all)
}

/// Runs a script against the server with the root token and the canary in `CANARY`; it must
/// succeed.
fn run_script(ws: &Workspace, bao: &OpenBao, body: &str) -> Outcome {
    ws.write("p.rhai", &(header("p", &[]) + body));
    let out = run_with(ws, bao, &["run", "p.rhai", "--json"], &[("CANARY", CANARY)]);
    out.expect_code(0);
    out
}

/// The mutating actions of a `--json` run, in order.
fn actions(out: &Outcome) -> Vec<String> {
    out.json()["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

/// Panics if the canary shows anywhere an operator or a log collector could see it.
fn assert_canary_hidden(ws: &Workspace, out: &Outcome) {
    assert!(
        !out.all_output().contains(CANARY),
        "the canary leaked into the output:\n{}",
        out.all_output()
    );
    assert!(
        !ws.journals().contains(CANARY),
        "the canary leaked into a journal"
    );
}

const PRIMITIVES: &str = r#"
let v = vault::connect();
let checks = #{};
let st = vault::status(v);
checks.status = `${st.state} ${st.initialized} ${st.sealed} ${st.version != ""}`;

// KV v2
let canary = env::secret("CANARY");
checks.version1 = vault::kv_put(v, "secret", "shop/db", #{ password: canary, user: "shop" });
checks.version2 = vault::kv_put(v, "secret", "shop/db", #{ password: canary, user: "shop2" });
let got = vault::kv_get(v, "secret", "shop/db");
checks.get_type = type_of(got.password);
checks.get_matches = got.password == canary;
checks.get_printed = `${got.password}`;
vault::kv_put(v, "secret", "shop/api", #{ key: "k1" });
checks.list = vault::kv_list(v, "secret", "shop");
checks.list_root = vault::kv_list(v, "secret", "");
checks.list_missing = vault::kv_list(v, "secret", "nothing/here");
let meta = vault::kv_metadata(v, "secret", "shop/db");
checks.meta = `${meta.current_version} ${meta.versions.len()}`;
vault::kv_delete(v, "secret", "shop/api");
checks.readable_deleted = vault::kv_readable(v, "secret", "shop/api");
vault::kv_destroy(v, "secret", "shop/api");
checks.list_after_destroy = vault::kv_list(v, "secret", "shop");

// policies
vault::policy_write(v, "shop", `path "secret/data/shop/*" { capabilities = ["read"] }`);
vault::policy_write(v, "shop", `path "secret/data/shop/*" { capabilities = ["read"] }`);
checks.policy = vault::policy_read(v, "shop");
checks.policies = vault::policy_list(v);
vault::policy_write(v, "doomed", `path "x/*" { capabilities = ["read"] }`);
vault::policy_delete(v, "doomed");
checks.policies_after = vault::policy_list(v);

// auth methods
vault::auth_enable(v, "approle", "approle");
vault::auth_enable(v, "approle", "approle");
checks.auth = vault::auth_list(v).keys();
checks.auth_type = vault::auth_list(v).approle.type;

// tokens
let me = vault::token_lookup(v);
checks.token_policies = me.policies;
checks.token_has_no_id = !me.contains("id");
checks
"#;

#[test]
fn every_kv_policy_auth_and_token_primitive_against_a_real_server() {
    let Some(bao) = OpenBao::start() else { return };
    let ws = Workspace::new();
    let out = run_script(&ws, &bao, PRIMITIVES);
    let c = &out.json()["result"];
    assert_eq!(c["status"], "active true false true");
    assert_eq!(c["version1"], 1);
    assert_eq!(c["version2"], 2);
    assert_eq!(c["get_type"], "Secret");
    assert_eq!(c["get_matches"], true);
    assert_eq!(c["get_printed"], "***");
    assert_eq!(c["list"], json!(["api", "db"]));
    assert_eq!(c["list_root"], json!(["shop/"]));
    assert_eq!(c["list_missing"], json!([]));
    assert_eq!(c["meta"], "2 2");
    assert_eq!(c["readable_deleted"], true);
    assert_eq!(c["list_after_destroy"], json!(["db"]));
    assert!(c["policy"].as_str().unwrap().contains("secret/data/shop/*"));
    assert!(c["policies"].as_array().unwrap().contains(&json!("shop")));
    assert!(!c["policies_after"]
        .as_array()
        .unwrap()
        .contains(&json!("doomed")));
    assert!(c["auth"].as_array().unwrap().contains(&json!("approle")));
    assert_eq!(c["auth_type"], "approle");
    assert_eq!(c["token_policies"], json!(["root"]));
    assert_eq!(c["token_has_no_id"], true);

    // What the server holds, read independently of runbook.
    assert_eq!(
        bao.kv_get("shop/db").unwrap(),
        json!({"password": CANARY, "user": "shop2"})
    );
    assert!(bao.kv_get("shop/api").is_none());
    let (code, _) = bao.api("GET", "sys/policy/shop", None);
    assert_eq!(code, 200);

    // The second policy_write and auth_enable were no-ops: not in the actions.
    let actions = actions(&out);
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "vault::policy_write")
            .count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "vault::auth_enable")
            .count(),
        1,
        "{actions:?}"
    );
    assert_canary_hidden(&ws, &out);
}

const APPROLE_AND_PKI: &str = r#"
let v = vault::connect();
let checks = #{};
vault::auth_enable(v, "approle", "approle");
vault::policy_write(v, "shop", `path "secret/data/shop/*" { capabilities = ["read"] }`);
vault::approle_write_role(v, "approle", "shop", #{
    token_policies: ["shop"], token_ttl: "1h", token_max_ttl: "24h", secret_id_ttl: "720h",
});
let role = vault::approle_read_role(v, "approle", "shop");
checks.ttls = `${role.token_ttl} ${role.token_max_ttl} ${role.secret_id_ttl}`;
checks.roles = vault::approle_roles(v, "approle");
let role_id = vault::approle_role_id(v, "approle", "shop");
let secret_id = vault::approle_secret_id(v, "approle", "shop");
checks.secret_id_type = type_of(secret_id);
let app = vault::login_approle(v, "approle", role_id, secret_id);
let me = vault::token_lookup(app);
checks.app_policies = me.policies;
checks.app_ttl = me.creation_ttl;
checks.own = vault::kv_readable(app, "secret", "shop/db");
checks.other = vault::kv_readable(app, "secret", "billing/db");
checks.app_reads = vault::kv_get(app, "secret", "shop/db").password == env::secret("CANARY");
fs::write_secret("creds/role-id", role_id);
fs::write_secret("creds/secret-id", vault::approle_secret_id(v, "approle", "shop"));
let from_files = vault::connect(#{ role_id_file: "creds/role-id", secret_id_file: "creds/secret-id" });
checks.file_login = vault::token_lookup(from_files).policies;
let doomed = vault::login_approle(v, "approle", role_id, vault::approle_secret_id(v, "approle", "shop"));
vault::token_revoke(doomed);
try { vault::token_lookup(doomed); checks.revoked = "still valid"; } catch (e) { checks.revoked = `${e}`; }

// PKI
vault::pki_enable(v, "pki", "87600h");
vault::pki_enable(v, "pki", "87600h");
let root = vault::pki_root(v, "pki", "Test Root CA", #{ ttl: "8760h" });
checks.root_cn = certs::parse(root.certificate)[0].subject;
checks.root_days = root.days_left;
vault::pki_role(v, "pki", "web", #{ allowed_domains: ["example.test"], allow_subdomains: true, max_ttl: "720h" });
let cert = vault::pki_issue(v, "pki", "web", "shop.example.test", #{ ttl: "48h", alt_names: ["api.example.test"] });
checks.key_type = type_of(cert.private_key);
checks.key_printed = `${cert.private_key}`;
checks.cert_names = certs::parse(cert.certificate)[0].names;
checks.cert_days = cert.days_left;
checks.expiration_matches = certs::parse(cert.certificate)[0].not_after == cert.expiration;
fs::write_secret("tls/shop.key", cert.private_key);
checks
"#;

#[test]
fn approle_and_pki_primitives_against_a_real_server() {
    let Some(bao) = OpenBao::start() else { return };
    bao.kv_put("shop/db", json!({"password": CANARY}));
    bao.kv_put("billing/db", json!({"password": "billing-secret-value"}));
    let ws = Workspace::new();
    let before = bao.token_accessors().len();
    let out = run_script(&ws, &bao, APPROLE_AND_PKI);
    let c = &out.json()["result"];
    assert_eq!(c["ttls"], "3600 86400 2592000");
    assert_eq!(c["roles"], json!(["shop"]));
    assert_eq!(c["secret_id_type"], "Secret");
    assert_eq!(c["app_policies"], json!(["default", "shop"]));
    assert_eq!(c["app_ttl"], 3600);
    assert_eq!(c["own"], true);
    assert_eq!(c["other"], false);
    assert_eq!(c["app_reads"], true);
    assert_eq!(c["file_login"], json!(["default", "shop"]));
    let revoked = c["revoked"].as_str().unwrap();
    assert!(
        revoked.contains("auth/token/lookup-self: permission denied"),
        "{revoked}"
    );
    assert_eq!(c["root_cn"], "CN=Test Root CA");
    assert!((364..=365).contains(&c["root_days"].as_i64().unwrap()));
    assert_eq!(c["key_type"], "Secret");
    assert_eq!(c["key_printed"], "***");
    assert_eq!(
        c["cert_names"],
        json!(["shop.example.test", "api.example.test"])
    );
    assert!((1..=2).contains(&c["cert_days"].as_i64().unwrap()));
    assert_eq!(c["expiration_matches"], true);

    // The issued key went to a 0600 file and is a real private key.
    use std::os::unix::fs::PermissionsExt;
    let key = ws.join("tls/shop.key");
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!out.all_output().contains("PRIVATE KEY"));
    assert!(!ws.journals().contains("PRIVATE KEY"));
    assert_canary_hidden(&ws, &out);

    // Every token the run obtained by logging in was revoked when it ended.
    assert_eq!(bao.token_accessors().len(), before);
}

#[test]
fn tokens_obtained_by_a_run_are_revoked_even_when_it_fails() {
    let Some(bao) = OpenBao::start() else { return };
    bao.api("POST", "sys/auth/approle", Some(json!({"type": "approle"})));
    bao.api(
        "POST",
        "auth/approle/role/shop",
        Some(json!({"token_policies": ["default"]})),
    );
    let (_, role_id) = bao.api("GET", "auth/approle/role/shop/role-id", None);
    let (_, secret_id) = bao.api("POST", "auth/approle/role/shop/secret-id", None);
    let ws = Workspace::new();
    ws.write(
        "creds/role-id",
        role_id["data"]["role_id"].as_str().unwrap(),
    );
    ws.write(
        "creds/secret-id",
        secret_id["data"]["secret_id"].as_str().unwrap(),
    );
    ws.write(
        "fail.rhai",
        &(header("fail", &[])
            + r#"
let app = step("log in", || {
    let app = vault::connect(#{ role_id_file: "creds/role-id", secret_id_file: "creds/secret-id" });
    vault::token_lookup(app).accessor
});
step("break", || { throw "something went wrong after the login"; });
"#),
    );
    let before = bao.token_accessors();
    let out = ws.run_env(
        &["run", "fail.rhai", "--json"],
        &[("VAULT_ADDR", &bao.addr)],
    );
    out.expect_code(1);
    let accessor = out.json()["steps"][0]["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!before.contains(&accessor));
    assert!(
        !bao.token_accessors().contains(&accessor),
        "the login token outlived the failed run"
    );
    assert!(
        out.stderr.contains("cleanup: revoke Vault token"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dry_run_plans_every_change_and_makes_none() {
    let Some(bao) = OpenBao::start() else { return };
    let ws = Workspace::new();
    ws.write(
        "p.rhai",
        &(header("p", &[])
            + r#"
let v = vault::connect();
vault::kv_put(v, "secret", "shop/db", #{ password: env::secret("CANARY") });
vault::policy_write(v, "shop", `path "secret/data/shop/*" { capabilities = ["read"] }`);
vault::auth_enable(v, "approle", "approle");
vault::secrets_enable(v, "kv2", "kv");
vault::pki_enable(v, "pki", "8760h");
vault::kv_list(v, "secret", "")
"#),
    );
    let out = run_with(
        &ws,
        &bao,
        &["run", "p.rhai", "--dry-run", "--json"],
        &[("CANARY", CANARY)],
    );
    out.expect_code(0);
    let report = out.json();
    let actions = actions(&out);
    assert_eq!(
        actions,
        [
            "vault::kv_put",
            "vault::policy_write",
            "vault::auth_enable",
            "vault::secrets_enable",
            "vault::pki_enable"
        ]
    );
    assert_eq!(report["result"], json!([]));
    assert!(bao.kv_get("shop/db").is_none());
    assert_eq!(bao.api("GET", "sys/policy/shop", None).0, 404);
    let (_, auths) = bao.api("GET", "sys/auth", None);
    assert!(auths["data"].get("approle/").is_none());
    let (_, mounts) = bao.api("GET", "sys/mounts", None);
    assert!(mounts["data"].get("kv2/").is_none() && mounts["data"].get("pki/").is_none());
    assert_canary_hidden(&ws, &out);
}

#[test]
fn a_sealed_server_gives_its_status_and_one_clear_error() {
    let Some(bao) = OpenBao::start() else { return };
    bao.kv_put("shop/db", json!({"password": CANARY}));
    bao.seal();
    let ws = Workspace::new();
    ws.write(
        "status.rhai",
        &(header("status", &[]) + "vault::status(vault::connect())\n"),
    );
    let out = run_with(&ws, &bao, &["run", "status.rhai", "--json"], &[]);
    out.expect_code(0);
    let status = &out.json()["result"];
    assert_eq!(status["state"], "sealed");
    assert_eq!(status["sealed"], true);
    assert_eq!(status["initialized"], true);

    ws.write(
        "read.rhai",
        &(header("read", &[])
            + "step(\"read\", || vault::kv_get(vault::connect(), \"secret\", \"shop/db\"));\n"),
    );
    let out = run_with(&ws, &bao, &["run", "read.rhai"], &[]);
    out.expect_code(1);
    let expected = format!(
        "Vault at {} is sealed; unseal it (`bao operator unseal`) and retry",
        bao.addr
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("sealed").count(),
        1,
        "one sentence, not a cascade:\n{}",
        out.stderr
    );
}

#[test]
fn an_unreachable_server_gives_one_clear_error() {
    let port = common::openbao::free_port();
    let addr = format!("http://127.0.0.1:{port}");
    let ws = Workspace::new();
    ws.write(
        "read.rhai",
        &(header("read", &[])
            + "step(\"read\", || vault::kv_get(vault::connect(), \"secret\", \"shop/db\"));\n"),
    );
    let out = ws.run_env(
        &["run", "read.rhai"],
        &[("VAULT_ADDR", &addr), ("VAULT_TOKEN", "t0ken-unused")],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "Vault at {addr} is unreachable: Connection refused"
        )),
        "{}",
        out.stderr
    );
    let out = ws.run_env(&["run", "read.rhai"], &[("VAULT_ADDR", "")]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("no Vault configured: set VAULT_ADDR (or BAO_ADDR)"),
        "{}",
        out.stderr
    );
}

#[test]
fn permission_denied_names_the_server_and_path() {
    let Some(bao) = OpenBao::start() else { return };
    bao.kv_put("shop/db", json!({"password": CANARY}));
    let (code, token) = bao.api(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["default"], "ttl": "10m"})),
    );
    assert_eq!(code, 200);
    let token = token["auth"]["client_token"].as_str().unwrap().to_string();
    let ws = Workspace::new();
    ws.write(
        "read.rhai",
        &(header("read", &[]) + "vault::kv_get(vault::connect(), \"secret\", \"shop/db\")\n"),
    );
    let out = ws.run_env(
        &["run", "read.rhai"],
        &[("BAO_ADDR", &bao.addr), ("BAO_TOKEN", &token)],
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains(&format!(
            "Vault at {}: secret/data/shop/db: permission denied: the token is invalid or \
             expired, or none of its policies allows this path",
            bao.addr
        )),
        "{}",
        out.stderr
    );
    assert!(!out.all_output().contains(&token));
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn write_policies(ws: &Workspace, services: &[&str]) {
    for service in services {
        ws.write(
            &format!("policies/{service}.hcl"),
            &format!("path \"secret/data/{service}/*\" {{ capabilities = [\"read\"] }}\n"),
        );
    }
}

/// Logs in with a service's credential files through the API, as the service would.
fn service_token(bao: &OpenBao, ws: &Workspace, service: &str) -> String {
    let role_id = ws.read(&format!("creds/{service}/role-id"));
    let secret_id = ws.read(&format!("creds/{service}/secret-id"));
    let (code, body) = bao.api_as(
        "",
        "POST",
        "auth/approle/login",
        Some(json!({"role_id": role_id, "secret_id": secret_id})),
    );
    assert_eq!(code, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_string()
}

const BOOTSTRAP: [&str; 8] = [
    "run",
    "vault-approle-bootstrap",
    "-p",
    "policies=policies",
    "-p",
    "out=creds",
    "-p",
    "probe=db",
];

#[test]
fn approle_bootstrap_proves_least_privilege_and_keeps_credentials_private() {
    let Some(bao) = OpenBao::start() else { return };
    bao.kv_put("shop/db", json!({"password": CANARY}));
    bao.kv_put("billing/db", json!({"password": "billing-canary-0042"}));
    let ws = Workspace::new();
    write_policies(&ws, &["shop", "billing"]);

    // A dry run plans and changes nothing.
    let mut dry = BOOTSTRAP.to_vec();
    dry.extend(["--dry-run", "--json"]);
    let out = run_with(&ws, &bao, &dry, &[]);
    out.expect_code(0);
    let planned = actions(&out);
    for action in [
        "vault::auth_enable",
        "vault::policy_write",
        "vault::approle_write_role",
        "vault::approle_credentials",
        "fs::write_secret",
    ] {
        assert!(
            planned.contains(&action.to_string()),
            "{action} not planned: {planned:?}"
        );
    }
    assert!(!ws.join("creds").exists());
    let (_, auths) = bao.api("GET", "sys/auth", None);
    assert!(auths["data"].get("approle/").is_none());

    let tokens_before = bao.token_accessors().len();
    let mut real = BOOTSTRAP.to_vec();
    real.push("--json");
    let out = run_with(&ws, &bao, &real, &[]);
    out.expect_code(0);
    let report = out.json();
    let proofs = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prove least privilege")
        .unwrap()["result"]
        .clone();
    assert_eq!(
        proofs,
        json!([
            {"service": "billing", "reads": "secret/billing/db", "denied": ["shop"]},
            {"service": "shop", "reads": "secret/shop/db", "denied": ["billing"]},
        ])
    );
    // The logins the proof made were revoked when the run ended.
    assert_eq!(bao.token_accessors().len(), tokens_before);

    // Credentials: 0600 files in 0700 dirs.
    assert_eq!(mode(&ws.join("creds")), 0o700);
    for service in ["shop", "billing"] {
        assert_eq!(mode(&ws.join(&format!("creds/{service}"))), 0o700);
        for file in ["role-id", "secret-id"] {
            assert_eq!(mode(&ws.join(&format!("creds/{service}/{file}"))), 0o600);
            let value = ws.read(&format!("creds/{service}/{file}"));
            assert!(!value.is_empty());
            assert!(
                !out.all_output().contains(&value),
                "{service} {file} leaked"
            );
            assert!(
                !ws.journals().contains(&value),
                "{service} {file} in a journal"
            );
        }
    }

    // The roles as asked: own policy, TTL 1h, max 24h, secret-id 30 days.
    let (_, role) = bao.api("GET", "auth/approle/role/shop", None);
    assert_eq!(role["data"]["token_policies"], json!(["shop"]));
    assert_eq!(role["data"]["token_ttl"], 3600);
    assert_eq!(role["data"]["token_max_ttl"], 86400);
    assert_eq!(role["data"]["secret_id_ttl"], 2_592_000);

    // Checked independently: shop's credentials read shop's secret and nothing of billing's.
    let shop = service_token(&bao, &ws, "shop");
    let (code, body) = bao.api_as(&shop, "GET", "secret/data/shop/db", None);
    assert_eq!(
        (code, &body["data"]["data"]["password"]),
        (200, &json!(CANARY))
    );
    assert_eq!(
        bao.api_as(&shop, "GET", "secret/data/billing/db", None).0,
        403
    );
    let billing = service_token(&bao, &ws, "billing");
    assert_eq!(
        bao.api_as(&billing, "GET", "secret/data/shop/db", None).0,
        403
    );
    assert_canary_hidden(&ws, &out);

    // A second run changes no policy and proves it again with fresh secret-ids.
    let out = run_with(&ws, &bao, &real, &[]);
    out.expect_code(0);
    let actions = actions(&out);
    assert!(
        !actions.contains(&"vault::policy_write".to_string()),
        "{actions:?}"
    );
    assert!(
        !actions.contains(&"vault::auth_enable".to_string()),
        "{actions:?}"
    );
    assert_canary_hidden(&ws, &out);
}

#[test]
fn approle_bootstrap_refuses_a_policy_that_reaches_another_service() {
    let Some(bao) = OpenBao::start() else { return };
    let ws = Workspace::new();
    write_policies(&ws, &["shop"]);
    ws.write(
        "policies/billing.hcl",
        "path \"secret/data/*\" { capabilities = [\"read\"] }\n",
    );
    let out = run_with(&ws, &bao, &BOOTSTRAP, &[]);
    out.expect_code(1);
    assert!(
        out.stderr.contains(
            "billing can read shop's secret secret/shop/db: its policy billing.hcl is too broad"
        ),
        "{}",
        out.stderr
    );
}

const DOTENV: &str = "# shop\nDB_USER=shop\nDB_PASSWORD=canary-7f3a9c41-do-not-print\nexport STRIPE_API_KEY=\"sk_test_4eC39HqLyjWDarjtT1zdp7dc\"\nPORT=8080\n";

/// secrets-migrate of app.env to shop/env, confirmed, with a JSON report.
const MIGRATE: [&str; 8] = [
    "run",
    "secrets-migrate",
    "-p",
    "file=app.env",
    "-p",
    "to=shop/env",
    "--yes",
    "--json",
];

/// Writes the `.env` file to migrate, mode 0640.
fn write_dotenv(ws: &Workspace) {
    let env_file = ws.write("app.env", DOTENV);
    std::fs::set_permissions(
        &env_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
}

/// What secrets-migrate does, in order, in a dry run and a real one alike.
const MIGRATE_ACTIONS: [&str; 5] = [
    "fs::mkdir",
    "fs::copy",
    "fs::chmod",
    "secrets::put",
    "dotenv::remove",
];

fn assert_migrated(ws: &Workspace, out: &Outcome) {
    let rewritten = ws.read("app.env");
    assert!(!rewritten.contains(CANARY), "{rewritten}");
    assert!(
        !rewritten.contains("sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
        "{rewritten}"
    );
    assert!(rewritten.contains("DB_USER=shop\n") && rewritten.contains("PORT=8080\n"));
    assert!(
        rewritten.contains("# DB_PASSWORD: moved to shop/env in "),
        "{rewritten}"
    );
    assert_eq!(mode(&ws.join("app.env")), 0o640, "the file keeps its mode");
    let backups: Vec<_> = std::fs::read_dir(ws.join("secrets-migrate-backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), DOTENV);
    assert_eq!(mode(&backups[0]), 0o600);
    assert_eq!(mode(&ws.join("secrets-migrate-backups")), 0o700);
    assert_canary_hidden(ws, out);
}

#[test]
fn secrets_migrate_moves_env_secrets_into_vault_and_each_reads_back() {
    let Some(bao) = OpenBao::start() else { return };
    bao.kv_put("shop/env", json!({"KEPT": "already-there"}));
    let ws = Workspace::new();
    write_dotenv(&ws);
    let args = MIGRATE;

    // Without --yes and a terminal the rewrite is refused, after the secrets are safe.
    let out = run_with(&ws, &bao, &args[..6], &[]);
    out.expect_code(3);
    assert_eq!(ws.read("app.env"), DOTENV);
    std::fs::remove_dir_all(ws.join("secrets-migrate-backups")).unwrap();

    let out = run_with(&ws, &bao, &args, &[]);
    out.expect_code(0);
    assert_eq!(
        out.json()["result"]["moved"],
        json!(["DB_PASSWORD", "STRIPE_API_KEY"])
    );
    assert_eq!(
        actions(&out),
        MIGRATE_ACTIONS,
        "the same as the dry run plans"
    );
    assert_migrated(&ws, &out);
    assert_eq!(
        bao.kv_get("shop/env").unwrap(),
        json!({
            "DB_PASSWORD": CANARY,
            "STRIPE_API_KEY": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "KEPT": "already-there",
        })
    );

    // Reading them back through the facade, as a playbook would.
    ws.write(
        "read.rhai",
        &(header("read", &[])
            + "let s = secrets::get(\"shop/env\");\nprint(s.DB_PASSWORD);\n#{ kind: type_of(s.DB_PASSWORD), keys: s.keys(), store: secrets::describe(secrets::open()) }\n"),
    );
    let out = run_with(&ws, &bao, &["run", "read.rhai", "--json"], &[]);
    out.expect_code(0);
    let result = &out.json()["result"];
    assert_eq!(result["kind"], "Secret");
    assert_eq!(
        result["keys"],
        json!(["DB_PASSWORD", "KEPT", "STRIPE_API_KEY"])
    );
    assert_eq!(
        result["store"],
        format!("Vault at {} (KV secret/)", bao.addr).as_str()
    );
    assert!(out.stderr.contains("***"));
    assert_canary_hidden(&ws, &out);
}

#[test]
fn secrets_migrate_into_the_local_store_without_vault() {
    let ws = Workspace::new();
    write_dotenv(&ws);
    let out = ws.run(&MIGRATE);
    out.expect_code(0);
    assert_migrated(&ws, &out);
    let store = ws.join("data/secrets.age");
    assert_eq!(mode(&store), 0o600);
    assert_eq!(mode(&ws.join("data/secrets.key")), 0o600);
    let raw = std::fs::read(&store).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(CANARY));

    // The standard age tool reads the store with its key.
    let age = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(ws.join("data/secrets.key"))
        .arg(&store)
        .output();
    if common::require("age", age.is_ok(), "the age CLI is not installed") {
        let age = age.unwrap();
        assert!(
            age.status.success(),
            "{}",
            String::from_utf8_lossy(&age.stderr)
        );
        let plain: serde_json::Value = serde_json::from_slice(&age.stdout).unwrap();
        assert_eq!(plain["secrets"]["shop/env"]["DB_PASSWORD"], CANARY);
    }

    ws.write(
        "read.rhai",
        &(header("read", &[])
            + "let s = secrets::get(\"shop/env\");\nsecrets::put(\"shop/other\", #{ a: s.DB_PASSWORD });\nsecrets::delete(\"shop/other\");\n#{ same: s.DB_PASSWORD == secrets::get(secrets::open(), \"shop/env\", \"DB_PASSWORD\"), list: secrets::list(\"shop\") }\n"),
    );
    let out = ws.run(&["run", "read.rhai", "--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["result"], json!({"same": true, "list": ["env"]}));
    assert_canary_hidden(&ws, &out);
}

#[test]
fn secrets_migrate_dry_run_changes_nothing() {
    let Some(bao) = OpenBao::start() else { return };
    let ws = Workspace::new();
    ws.write("app.env", DOTENV);
    let out = run_with(
        &ws,
        &bao,
        &[
            "run",
            "secrets-migrate",
            "-p",
            "file=app.env",
            "-p",
            "to=shop/env",
            "--dry-run",
            "--json",
        ],
        &[],
    );
    out.expect_code(0);
    assert_eq!(actions(&out), MIGRATE_ACTIONS);
    assert_eq!(ws.read("app.env"), DOTENV);
    assert!(!ws.join("secrets-migrate-backups").exists());
    assert!(bao.kv_get("shop/env").is_none());
    assert_canary_hidden(&ws, &out);
}

#[test]
fn tls_with_a_ca_file_and_a_namespace_from_the_environment() {
    let Some(bao) = OpenBao::start_tls() else {
        return;
    };
    let ca = bao.ca.clone().unwrap();
    assert_eq!(
        bao.api("POST", "sys/namespaces/team", Some(json!({}))).0,
        200
    );
    let (code, body) = bao.api_in(
        "team",
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    );
    assert_eq!(code, 204, "{body}");
    let ws = Workspace::new();
    ws.write(
        "p.rhai",
        &(header("p", &[])
            + r#"
let v = vault::connect();
vault::kv_put(v, "secret", "app/db", #{ password: env::secret("CANARY") });
vault::status(v).state
"#),
    );
    let ca_text = ca.display().to_string();
    let env = [
        ("VAULT_ADDR", bao.addr.as_str()),
        ("VAULT_TOKEN", bao.token.as_str()),
        ("VAULT_NAMESPACE", "team"),
        ("CANARY", CANARY),
        ("VAULT_CACERT", ca_text.as_str()),
    ];
    let out = ws.run_env(&["run", "p.rhai", "--json"], &env);
    out.expect_code(0);
    assert_eq!(out.json()["result"], "active");
    let (code, body) = bao.api_in("team", "GET", "secret/data/app/db", None);
    assert_eq!(
        (code, &body["data"]["data"]["password"]),
        (200, &json!(CANARY))
    );
    assert_eq!(bao.api("GET", "secret/data/app/db", None).0, 404);
    assert_canary_hidden(&ws, &out);

    // Without the CA the server's certificate is not trusted: one sentence saying so.
    let out = ws.run_env(&["run", "p.rhai"], &env[..4]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains(&format!("Vault at {} is unreachable: ", bao.addr))
            && out
                .stderr
                .contains("(set VAULT_CACERT to the CA that signed"),
        "{}",
        out.stderr
    );
}

/// Every path under `dir` (restore leftovers excluded) with its mode and, for files, bytes.
fn tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, (u32, Option<Vec<u8>>)> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, (u32, Option<Vec<u8>>)>,
    ) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with(".before-restore-") {
                continue;
            }
            if path.is_dir() {
                out.insert(rel, (mode(&path), None));
                walk(root, &path, out);
            } else {
                out.insert(rel, (mode(&path), Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// An operator's Vault material: unseal keys and root token holding the canary, TLS files and
/// AppRole credentials, all private.
fn write_material(ws: &Workspace) {
    use std::os::unix::fs::PermissionsExt;
    ws.write(
        "operator/unseal-keys.json",
        &format!("{{\"keys_b64\": [\"{CANARY}-1\", \"{CANARY}-2\"], \"threshold\": 2}}\n"),
    );
    ws.write("operator/root-token", &format!("s.{CANARY}\n"));
    ws.write(
        "operator/tls/ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    ws.write(
        "operator/tls/vault.key",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    );
    ws.write("operator/approle/shop/role-id", "9f0c7a1e-role");
    ws.write("operator/approle/shop/secret-id", "5b2d11aa-secret");
    for (rel, m) in [
        ("operator", 0o700),
        ("operator/tls", 0o700),
        ("operator/approle", 0o700),
        ("operator/approle/shop", 0o700),
        ("operator/unseal-keys.json", 0o600),
        ("operator/root-token", 0o600),
        ("operator/tls/ca.pem", 0o600),
        ("operator/tls/vault.key", 0o600),
        ("operator/approle/shop/role-id", 0o600),
        ("operator/approle/shop/secret-id", 0o600),
    ] {
        std::fs::set_permissions(ws.join(rel), std::fs::Permissions::from_mode(m)).unwrap();
    }
}

const PASSPHRASE: &str = "correct-horse-battery-staple-42";

fn vault_backup(ws: &Workspace) -> Outcome {
    ws.run_env(
        &[
            "run",
            "vault-backup",
            "-p",
            "dir=operator",
            "-p",
            "work_factor=10",
            "--json",
        ],
        &[("RUNBOOK_BACKUP_PASSPHRASE", PASSPHRASE)],
    )
}

fn vault_restore(ws: &Workspace, passphrase: &str, extra: &[&str]) -> Outcome {
    let mut args = vec![
        "run",
        "vault-restore",
        "-p",
        "dir=operator",
        "--yes",
        "--json",
    ];
    args.extend_from_slice(extra);
    ws.run_env(&args, &[("RUNBOOK_BACKUP_PASSPHRASE", passphrase)])
}

#[test]
fn vault_backup_and_restore_round_trip_with_private_modes() {
    let ws = Workspace::new();
    write_material(&ws);
    let original = tree(&ws.join("operator"));

    let out = vault_backup(&ws);
    out.expect_code(0);
    assert_canary_hidden(&ws, &out);
    let set = std::path::PathBuf::from(out.json()["result"].as_str().unwrap());
    assert_eq!(set.parent().unwrap(), ws.join("vault-backups/vault"));
    assert_eq!(mode(&set), 0o700);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(set.join("manifest.json")).unwrap()).unwrap();
    let names: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["approle", "root-token", "tls", "unseal-keys.json"]);
    for artifact in manifest["artifacts"].as_array().unwrap() {
        let bytes = std::fs::read(set.join(artifact["file"].as_str().unwrap())).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!String::from_utf8_lossy(&bytes).contains(CANARY));
        assert_eq!(artifact["encryption"], "age-passphrase");
    }

    // The material drifts: a changed token, a lost key, loose modes.
    ws.write("operator/root-token", "s.replaced-by-mistake\n");
    std::fs::remove_file(ws.join("operator/tls/vault.key")).unwrap();
    std::fs::set_permissions(
        ws.join("operator/unseal-keys.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let drifted = tree(&ws.join("operator"));

    let out = vault_restore(&ws, PASSPHRASE, &[]);
    out.expect_code(0);
    assert_canary_hidden(&ws, &out);
    assert_eq!(
        tree(&ws.join("operator")),
        original,
        "restored byte for byte, files 0600 and directories 0700"
    );
    let aside = ws.join(out.json()["result"]["aside"].as_str().unwrap());
    assert_eq!(mode(&aside), 0o700);
    assert_eq!(
        tree(&aside),
        drifted,
        "the files it replaced were kept aside whole"
    );

    // A backup of the restored material leaves the kept-aside copies out.
    let out = vault_backup(&ws);
    out.expect_code(0);
    assert_eq!(
        out.json()["steps"][0]["result"].as_array().unwrap().len(),
        4
    );
}

#[test]
fn vault_restore_refuses_a_corrupted_set_or_a_wrong_passphrase_and_touches_nothing() {
    let ws = Workspace::new();
    write_material(&ws);
    vault_backup(&ws).expect_code(0);
    ws.write("operator/root-token", "s.current-token\n");
    let before = tree(&ws.join("operator"));
    let untouched = |ws: &Workspace| {
        assert_eq!(tree(&ws.join("operator")), before);
        let names: Vec<String> = std::fs::read_dir(ws.join("operator"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "nothing kept aside or staged: {names:?}"
        );
    };

    let out = vault_restore(&ws, "not-the-backup-passphrase", &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("wrong passphrase"), "{}", out.stderr);
    untouched(&ws);

    // A dry run checks the set for real and plans the rest.
    let out = vault_restore(&ws, PASSPHRASE, &["--dry-run"]);
    out.expect_code(0);
    assert!(actions(&out).contains(&"fs::move".to_string()));
    untouched(&ws);

    let set = std::fs::read_dir(ws.join("vault-backups/vault"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let artifact = set.join("tls.tar.zst.age");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&artifact, bytes).unwrap();
    let out = vault_restore(&ws, PASSPHRASE, &[]);
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("1 of 4 artifacts do not match: `tls` (tls.tar.zst.age) has SHA-256"),
        "{}",
        out.stderr
    );
    untouched(&ws);
}
