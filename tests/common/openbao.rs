//! A real OpenBao dev server for one test: started on a free port with its own root token,
//! killed when dropped. `scripts/provision-openbao` installs the binary.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `bao` binary: `$RUNBOOK_TEST_BAO`, else the venv `scripts/provision-openbao` makes,
/// else `bao` on PATH; only one that answers `bao version`.
pub fn binary() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("bao"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::env::var_os("RUNBOOK_TEST_BAO")
        .map(PathBuf::from)
        .into_iter()
        .chain(cache.map(|c| c.join("runbook-test/venv/bin/bao")))
        .chain(on_path)
        .find(|bao| {
            Command::new(bao)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One running dev server.
pub struct OpenBao {
    child: Child,
    pub addr: String,
    pub token: String,
    /// The CA that signed the server's certificate, for a TLS server.
    pub ca: Option<PathBuf>,
    _home: tempfile::TempDir,
}

impl OpenBao {
    /// Starts a dev server on plain HTTP, or returns None (skipping the test; failing it in
    /// CI) when OpenBao is not installed.
    pub fn start() -> Option<OpenBao> {
        Self::launch(false)
    }

    /// Starts a dev server on HTTPS with a certificate from its own CA (`ca`).
    pub fn start_tls() -> Option<OpenBao> {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Option<OpenBao> {
        let bao = binary();
        if !super::require(
            "OpenBao",
            bao.is_some(),
            "no `bao` binary (set RUNBOOK_TEST_BAO or run scripts/provision-openbao)",
        ) {
            return None;
        }
        let bao = bao.unwrap();
        let mut last_log = String::new();
        for _attempt in 0..3 {
            // The dev server writes its token to ~/.vault-token: give it a home of its own.
            let home = tempfile::tempdir().unwrap();
            let port = free_port();
            let token = format!("root-{}-{port}", super::run_id());
            let log = home.path().join("bao.log");
            let mut command = Command::new(&bao);
            command
                .args(["server", "-dev"])
                .arg(format!("-dev-root-token-id={token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .env("HOME", home.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .args(if tls {
                    vec![
                        "-dev-tls".to_string(),
                        format!("-dev-tls-cert-dir={}", home.path().display()),
                    ]
                } else {
                    Vec::new()
                })
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::from(
                    std::fs::File::options().append(true).open(&log).unwrap(),
                ));
            // SAFETY: prctl is async-signal-safe; the server dies with the test thread even if
            // the test process is killed before Drop runs.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn().expect("start bao server -dev");
            let scheme = if tls { "https" } else { "http" };
            let server = OpenBao {
                child,
                addr: format!("{scheme}://127.0.0.1:{port}"),
                token,
                ca: tls.then(|| home.path().join("vault-ca.pem")),
                _home: home,
            };
            if server.wait_ready(Duration::from_secs(30)) {
                return Some(server);
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("OpenBao dev server did not start:\n{last_log}");
    }

    fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.try_api("GET", "sys/health", None) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// `VAULT_ADDR` and `VAULT_TOKEN` (root) for a `runbook` run.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("VAULT_ADDR", self.addr.clone()),
            ("VAULT_TOKEN", self.token.clone()),
        ]
    }

    fn try_api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        self.call(&self.token, None, method, path, body)
    }

    /// One API call with the root token: (status, JSON body or Null).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_api(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One API call with another token.
    pub fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(token, None, method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One API call with the root token in a namespace.
    pub fn api_in(
        &self,
        namespace: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(&self.token, Some(namespace), method, path, body)
            .unwrap_or_else(|e| panic!("{method} {namespace}/{path}: {e}"))
    }

    /// Writes a KV v2 secret at `secret/<path>`.
    pub fn kv_put(&self, path: &str, data: Value) {
        let (code, body) = self.api(
            "POST",
            &format!("secret/data/{path}"),
            Some(serde_json::json!({"data": data})),
        );
        assert_eq!(code, 200, "writing secret/{path}: {body}");
    }

    /// The data of the latest version of `secret/<path>`, or None when missing.
    pub fn kv_get(&self, path: &str) -> Option<Value> {
        match self.api("GET", &format!("secret/data/{path}"), None) {
            (200, body) => Some(body["data"]["data"].clone()),
            (404, _) => None,
            (code, body) => panic!("reading secret/{path}: HTTP {code} {body}"),
        }
    }

    /// The accessors of every token the server holds.
    pub fn token_accessors(&self) -> Vec<String> {
        let (code, body) = self.api("LIST", "auth/token/accessors", None);
        assert_eq!(code, 200, "{body}");
        body["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }

    /// Seals the server through the API.
    pub fn seal(&self) {
        let (code, body) = self.api("PUT", "sys/seal", None);
        assert_eq!(code, 204, "sealing: {body}");
    }
}

impl OpenBao {
    fn call(
        &self,
        token: &str,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Some(ca) = &self.ca {
            let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
            client = client.add_root_certificate(cert);
        }
        let client = client.build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let mut request = client
                .request(method, format!("{}/v1/{path}", self.addr))
                .header("X-Vault-Token", token);
            if let Some(namespace) = namespace {
                request = request.header("X-Vault-Namespace", namespace);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            let code = response.status().as_u16();
            let text = response.text().await.map_err(|e| e.to_string())?;
            Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
        })
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
