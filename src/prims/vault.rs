//! Vault (or OpenBao) over its HTTP API: connect, status, KV v2, policies, auth methods,
//! AppRole, PKI and tokens. Values read from Vault are Secrets. Every call that changes the
//! server plans in a dry run; tokens a run obtains by logging in are revoked when it ends.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::{checked_path, error, opt_bool, opt_int, opt_string, plain_or_secret, PrimResult};
use crate::prims::log;
use crate::run::Run;
use crate::secrets::Secret;
use crate::vault::{Config, VaultError};

/// A connection as scripts hold it (the `Vault` type).
pub type Vault = Arc<crate::vault::Vault>;

/// How long the revocation of a token at the end of a run may take.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Registers the `Vault` type and the `vault` module.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Vault>("Vault")
        .register_fn("to_string", |v: &mut Vault| {
            format!("Vault({})", v.address())
        })
        .register_fn("to_debug", |v: &mut Vault| {
            format!("Vault({})", v.address())
        })
        .register_get("address", |v: &mut Vault| v.address().to_string());
    engine.register_static_module("vault", rhai::exported_module!(api).into());
}

/// Runs a Vault call on the run's runtime; a failure becomes the error's sentence.
pub fn call<T>(
    run: &Run,
    vault: &crate::vault::Vault,
    fut: impl Future<Output = Result<T, VaultError>>,
) -> PrimResult<T> {
    run.block_on(&format!("Vault at {}", vault.address()), fut)?
        .map_err(|e| error(e.to_string()))
}

/// A change to the server: planned (returning `planned`) in a dry run, made otherwise.
/// `detail` says what it does, in words; the server's address is added.
fn change<T, F: Future<Output = Result<T, VaultError>>>(
    ctx: &NativeCallContext,
    vault: &crate::vault::Vault,
    action: &str,
    detail: String,
    planned: T,
    act: impl FnOnce() -> F,
) -> PrimResult<T> {
    let run = Run::of(ctx);
    if !run.mutate(action, format!("{detail} on Vault at {}", vault.address())) {
        return Ok(planned);
    }
    call(&run, vault, act())
}

/// A mount path for messages: `secret`, not `/secret/`.
fn at(mount: &str) -> &str {
    mount.trim_matches('/')
}

/// Connects from the environment, or fails with the sentence saying what to set.
pub fn connect_env() -> PrimResult<Vault> {
    let config = Config::from_env().ok_or_else(|| error(VaultError::NotConfigured.to_string()))?;
    crate::vault::Vault::connect(config)
        .map(Arc::new)
        .map_err(|e| error(e.to_string()))
}

/// Revokes a token obtained during the run when the run ends, also when it fails.
fn revoke_at_end(run: &Run, vault: Vault, accessor: String) {
    let runtime = run.runtime().clone();
    let what = format!("revoke Vault token {accessor} at {}", vault.address());
    run.on_finish(what, move || {
        let outcome = runtime.block_on(tokio::time::timeout(
            REVOKE_TIMEOUT,
            vault.token_revoke_self(),
        ));
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within 10s".to_string(),
        };
        log::emit(
            log::Level::Warn,
            &format!("Vault token {accessor} was not revoked: {problem}; it expires with its TTL"),
        );
    });
}

/// Logs in with AppRole and arranges for the token to be revoked at the end of the run.
fn login(
    run: &Run,
    vault: &crate::vault::Vault,
    mount: &str,
    role_id: &Secret,
    secret_id: &Secret,
) -> PrimResult<Vault> {
    let login = call(run, vault, vault.login_approle(mount, role_id, secret_id))?;
    let conn = Arc::new(login.vault);
    revoke_at_end(run, conn.clone(), login.accessor);
    Ok(conn)
}

/// Refuses option keys a primitive does not know (a typo would otherwise be ignored).
pub fn check_options(options: &Map, known: &[&str], what: &str) -> PrimResult<()> {
    for key in options.keys() {
        if !known.contains(&key.as_str()) {
            return Err(error(format!(
                "unknown option `{key}` of {what} (it takes: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// A duration option as Vault reads it: `"1h"`, `"30d"`, or a number of seconds.
fn opt_duration(options: &Map, key: &str) -> PrimResult<Option<String>> {
    match options.get(key) {
        Some(v) if v.is_int() => Ok(Some(format!("{}s", v.as_int().unwrap_or_default()))),
        _ => opt_string(options, key),
    }
}

/// A list-of-strings option (a list, or one comma-separated string).
fn opt_list(options: &Map, key: &str) -> PrimResult<Vec<String>> {
    match options.get(key) {
        None => Ok(Vec::new()),
        Some(v) if v.is_unit() => Ok(Vec::new()),
        Some(v) if v.is_string() => Ok(v
            .to_string()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()),
        Some(v) if v.is_array() => Ok(v
            .read_lock::<Array>()
            .map(|a| a.iter().map(ToString::to_string).collect())
            .unwrap_or_default()),
        Some(v) => Err(error(format!(
            "option `{key}` must be a list of strings, got {}",
            crate::value::kind(v)
        ))),
    }
}

fn opt_count(options: &Map, key: &str) -> PrimResult<Option<u64>> {
    opt_int(options, key)?
        .map(|n| {
            u64::try_from(n).map_err(|_| error(format!("option `{key}` must not be negative")))
        })
        .transpose()
}

fn secrets_map(values: BTreeMap<String, Secret>) -> Map {
    values
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect()
}

/// The string values of a map of strings or secrets, for writing to Vault.
pub fn plain_values(data: &Map, what: &str) -> PrimResult<BTreeMap<String, String>> {
    data.iter()
        .map(|(k, v)| Ok((k.to_string(), plain_or_secret(v, &format!("{what} `{k}`"))?)))
        .collect()
}

fn json(value: &impl serde::Serialize) -> Dynamic {
    crate::value::from_json(&serde_json::to_value(value).unwrap_or_default())
}

/// Adds `expiration` (Unix seconds) and `days_left` (rounded down, negative once past).
fn insert_expiry(out: &mut Map, expiration: u64) {
    let expiration = INT::try_from(expiration).unwrap_or(INT::MAX);
    let days_left = if expiration == 0 {
        0
    } else {
        (expiration - chrono::Utc::now().timestamp()).div_euclid(86_400)
    };
    out.insert("expiration".into(), expiration.into());
    out.insert("days_left".into(), days_left.into());
}

/// Enables an auth method or secrets engine unless the same kind is already at that path.
/// Returns whether it had to act.
fn enable_once(
    run: &Run,
    vault: &Vault,
    action: &str,
    path: &str,
    kind: &str,
    enabled: BTreeMap<String, crate::vault::Mount>,
) -> PrimResult<bool> {
    let path = path.trim_matches('/');
    match enabled.get(path) {
        Some(m) if m.kind == kind => Ok(false),
        Some(m) => Err(error(format!(
            "Vault at {}: `{path}` is already enabled as {}, not {kind}",
            vault.address(),
            m.kind
        ))),
        None => Ok(run.mutate(
            action,
            format!("enable {kind} at {path}/ on Vault at {}", vault.address()),
        )),
    }
}

fn connect_with(ctx: &NativeCallContext, options: &Map) -> PrimResult<Vault> {
    check_options(
        options,
        &[
            "addr",
            "token",
            "namespace",
            "ca_cert",
            "role_id",
            "role_id_file",
            "secret_id_file",
            "approle_mount",
        ],
        "vault::connect",
    )?;
    let run = Run::of(ctx);
    let env = Config::from_env();
    let address = match opt_string(options, "addr")? {
        Some(addr) => addr.trim_end_matches('/').to_string(),
        None => env
            .as_ref()
            .map(|c| c.address.clone())
            .ok_or_else(|| error(VaultError::NotConfigured.to_string()))?,
    };
    let token = match options.get("token").filter(|v| !v.is_unit()) {
        Some(v) => Some(Secret::new(plain_or_secret(v, "option `token`")?)),
        None => env.as_ref().and_then(|c| c.token.clone()),
    };
    let ca_cert = match opt_string(options, "ca_cert")? {
        Some(path) => Some(checked_path(&run, &path)?),
        None => env.as_ref().and_then(|c| c.ca_cert.clone()),
    };
    let config = Config {
        address,
        token,
        namespace: opt_string(options, "namespace")?
            .or_else(|| env.as_ref().and_then(|c| c.namespace.clone())),
        ca_cert,
    };
    let vault = crate::vault::Vault::connect(config).map_err(|e| error(e.to_string()))?;
    let read_file = |key: &str| -> PrimResult<Option<Secret>> {
        let Some(file) = opt_string(options, key)? else {
            return Ok(None);
        };
        let path = checked_path(&run, &file)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| error(format!("cannot read the {key} {file}: {e}")))?;
        Ok(Some(Secret::new(text.trim())))
    };
    let role_id = match options.get("role_id").filter(|v| !v.is_unit()) {
        Some(v) => Some(Secret::new(plain_or_secret(v, "option `role_id`")?)),
        None => read_file("role_id_file")?,
    };
    match (role_id, read_file("secret_id_file")?) {
        (None, None) => Ok(Arc::new(vault)),
        (Some(role_id), Some(secret_id)) => {
            let mount = opt_string(options, "approle_mount")?.unwrap_or_else(|| "approle".into());
            login(&run, &vault, &mount, &role_id, &secret_id)
        }
        _ => Err(error(
            "an AppRole login needs both a role id (`role_id` or `role_id_file`) and `secret_id_file`",
        )),
    }
}

#[export_module]
pub mod api {
    use super::*;

    /// Connects to the Vault (or OpenBao) server in `VAULT_ADDR`, with `VAULT_TOKEN`,
    /// `VAULT_NAMESPACE` and `VAULT_CACERT` (or their `BAO_` spellings). Nothing is sent
    /// until the first call.
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect_default() -> Result<Vault, Box<EvalAltResult>> {
        connect_env()
    }

    /// Connects with options, each defaulting to the environment: `#{addr, token, namespace,
    /// ca_cert}`; with `role_id` (or `role_id_file`) and `secret_id_file` it logs in with
    /// AppRole (`approle_mount`, default `approle`) and the token is revoked when the run ends.
    #[rhai_fn(name = "connect", return_raw)]
    pub fn connect_options(
        ctx: NativeCallContext,
        options: Map,
    ) -> Result<Vault, Box<EvalAltResult>> {
        connect_with(&ctx, &options)
    }

    /// True when `VAULT_ADDR` (or `BAO_ADDR`) is set.
    pub fn configured() -> bool {
        Config::in_env()
    }

    /// The server's state, also when it is sealed: `#{address, state, initialized, sealed,
    /// standby, version}`; `state` is `active`, `standby`, `sealed` or `uninitialized`.
    #[rhai_fn(return_raw)]
    pub fn status(ctx: NativeCallContext, vault: Vault) -> Result<Map, Box<EvalAltResult>> {
        let status = call(&Run::of(&ctx), &vault, vault.status())?;
        Ok(json(&status).try_cast::<Map>().unwrap_or_default())
    }

    /// The token of a connection, as a Secret (to hand to a container's environment).
    #[rhai_fn(return_raw)]
    pub fn token(vault: Vault) -> Result<Secret, Box<EvalAltResult>> {
        vault.token().cloned().ok_or_else(|| {
            error(format!(
                "the connection to {} has no token",
                vault.address()
            ))
        })
    }

    // ---- KV v2 ------------------------------------------------------------------------

    /// Reads the latest version of a KV v2 secret: a map of its keys to Secrets.
    #[rhai_fn(return_raw)]
    pub fn kv_get(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        call(&Run::of(&ctx), &vault, vault.kv_get(mount, path)).map(secrets_map)
    }

    /// Writes a KV v2 secret (a map of strings or Secrets; replaces every key) and returns
    /// the new version (0 in a dry run).
    #[rhai_fn(return_raw)]
    pub fn kv_put(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
        data: Map,
    ) -> Result<INT, Box<EvalAltResult>> {
        let values = plain_values(&data, "value")?;
        let keys = values.keys().cloned().collect::<Vec<_>>().join(", ");
        let detail = format!(
            "write {} keys ({keys}) to {}/{path}",
            values.len(),
            at(mount)
        );
        let version = change(&ctx, &vault, "vault::kv_put", detail, 0, || {
            vault.kv_put(mount, path, &values)
        })?;
        Ok(INT::try_from(version).unwrap_or(INT::MAX))
    }

    /// The keys under a KV v2 path (`shop/` for a folder, `db` for a secret); `[]` when empty.
    #[rhai_fn(return_raw)]
    pub fn kv_list(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let keys = call(&Run::of(&ctx), &vault, vault.kv_list(mount, path))?;
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }

    /// Deletes the latest version of a KV v2 secret (recoverable with `bao kv undelete`).
    #[rhai_fn(return_raw)]
    pub fn kv_delete(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let detail = format!("delete the latest version of {}/{path}", at(mount));
        change(&ctx, &vault, "vault::kv_delete", detail, (), || {
            vault.kv_delete(mount, path)
        })
    }

    /// Deletes every version and the metadata of a KV v2 secret, for good.
    #[rhai_fn(return_raw)]
    pub fn kv_destroy(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let detail = format!("destroy every version of {}/{path}", at(mount));
        change(&ctx, &vault, "vault::kv_destroy", detail, (), || {
            vault.kv_destroy(mount, path)
        })
    }

    /// The metadata of a KV v2 secret: `#{current_version, oldest_version, created_time,
    /// updated_time, max_versions, custom_metadata, versions: [#{version, created_time,
    /// deletion_time, destroyed}]}`.
    #[rhai_fn(return_raw)]
    pub fn kv_metadata(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        let meta = call(&Run::of(&ctx), &vault, vault.kv_metadata(mount, path))?;
        Ok(json(&meta).try_cast::<Map>().unwrap_or_default())
    }

    /// Whether this connection may read a KV v2 secret: a real read; a missing secret counts
    /// as readable, "permission denied" as not.
    #[rhai_fn(return_raw)]
    pub fn kv_readable(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        path: &str,
    ) -> Result<bool, Box<EvalAltResult>> {
        call(&Run::of(&ctx), &vault, vault.kv_readable(mount, path))
    }

    // ---- policies ---------------------------------------------------------------------

    /// Creates or replaces a policy from its HCL text; does nothing when it already reads so.
    #[rhai_fn(return_raw)]
    pub fn policy_write(
        ctx: NativeCallContext,
        vault: Vault,
        name: &str,
        rules: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let current = match Run::of(&ctx).block_on("Vault policy", vault.policy_read(name))? {
            Ok(text) => Some(text),
            Err(VaultError::NotFound { .. }) => None,
            Err(e) => return Err(error(e.to_string())),
        };
        if current.as_deref().map(str::trim) == Some(rules.trim()) {
            return Ok(());
        }
        let verb = if current.is_some() {
            "replace"
        } else {
            "create"
        };
        change(
            &ctx,
            &vault,
            "vault::policy_write",
            format!("{verb} policy {name}"),
            (),
            || vault.policy_write(name, rules),
        )
    }

    /// The HCL text of a policy.
    #[rhai_fn(return_raw)]
    pub fn policy_read(
        ctx: NativeCallContext,
        vault: Vault,
        name: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        call(&Run::of(&ctx), &vault, vault.policy_read(name))
    }

    /// The names of every policy.
    #[rhai_fn(return_raw)]
    pub fn policy_list(ctx: NativeCallContext, vault: Vault) -> Result<Array, Box<EvalAltResult>> {
        let names = call(&Run::of(&ctx), &vault, vault.policy_list())?;
        Ok(names.into_iter().map(Dynamic::from).collect())
    }

    /// Deletes a policy.
    #[rhai_fn(return_raw)]
    pub fn policy_delete(
        ctx: NativeCallContext,
        vault: Vault,
        name: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            &vault,
            "vault::policy_delete",
            format!("delete policy {name}"),
            (),
            || vault.policy_delete(name),
        )
    }

    // ---- auth methods and secrets engines ---------------------------------------------

    /// The enabled auth methods: a map of path to `#{type, description, accessor, options}`.
    #[rhai_fn(return_raw)]
    pub fn auth_list(ctx: NativeCallContext, vault: Vault) -> Result<Map, Box<EvalAltResult>> {
        let methods = call(&Run::of(&ctx), &vault, vault.auth_list())?;
        Ok(json(&methods).try_cast::<Map>().unwrap_or_default())
    }

    /// Enables an auth method (`approle`, `userpass`, ...) at a path; does nothing when that
    /// kind is already enabled there.
    #[rhai_fn(return_raw)]
    pub fn auth_enable(
        ctx: NativeCallContext,
        vault: Vault,
        path: &str,
        kind: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let enabled = call(&run, &vault, vault.auth_list())?;
        if enable_once(&run, &vault, "vault::auth_enable", path, kind, enabled)? {
            call(&run, &vault, vault.auth_enable(path, kind))?;
        }
        Ok(())
    }

    /// The enabled secrets engines: a map of path to `#{type, description, accessor, options}`.
    #[rhai_fn(return_raw)]
    pub fn secrets_list(ctx: NativeCallContext, vault: Vault) -> Result<Map, Box<EvalAltResult>> {
        let mounts = call(&Run::of(&ctx), &vault, vault.mount_list())?;
        Ok(json(&mounts).try_cast::<Map>().unwrap_or_default())
    }

    /// Enables a secrets engine (`kv` is KV version 2) at a path; does nothing when that kind
    /// is already enabled there.
    #[rhai_fn(return_raw)]
    pub fn secrets_enable(
        ctx: NativeCallContext,
        vault: Vault,
        path: &str,
        kind: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let enabled = call(&run, &vault, vault.mount_list())?;
        if enable_once(&run, &vault, "vault::secrets_enable", path, kind, enabled)? {
            let mut settings = crate::vault::EngineSettings::default();
            if kind == "kv" {
                settings.options.insert("version".into(), "2".into());
            }
            call(&run, &vault, vault.mount_enable(path, kind, &settings))?;
        }
        Ok(())
    }

    // ---- AppRole ------------------------------------------------------------------------

    /// Creates or updates an AppRole role. Options: `token_policies` (list), `token_ttl`,
    /// `token_max_ttl`, `secret_id_ttl` (`"1h"`, `"720h"` or seconds), `secret_id_num_uses`,
    /// `token_num_uses`.
    #[rhai_fn(return_raw)]
    pub fn approle_write_role(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        check_options(
            &options,
            &[
                "token_policies",
                "token_ttl",
                "token_max_ttl",
                "secret_id_ttl",
                "secret_id_num_uses",
                "token_num_uses",
            ],
            "vault::approle_write_role",
        )?;
        let settings = crate::vault::RoleSettings {
            token_policies: opt_list(&options, "token_policies")?,
            token_ttl: opt_duration(&options, "token_ttl")?,
            token_max_ttl: opt_duration(&options, "token_max_ttl")?,
            secret_id_ttl: opt_duration(&options, "secret_id_ttl")?,
            secret_id_num_uses: opt_count(&options, "secret_id_num_uses")?,
            token_num_uses: opt_count(&options, "token_num_uses")?,
        };
        let detail = format!(
            "write AppRole role {role} at auth/{}/ (policies: {})",
            at(mount),
            settings.token_policies.join(", ")
        );
        change(
            &ctx,
            &vault,
            "vault::approle_write_role",
            detail,
            (),
            || vault.approle_role_write(mount, role, &settings),
        )
    }

    /// An AppRole role's settings: `#{token_policies, token_ttl, token_max_ttl,
    /// secret_id_ttl, ...}`, durations in seconds.
    #[rhai_fn(return_raw)]
    pub fn approle_read_role(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        let role = call(&Run::of(&ctx), &vault, vault.approle_role_read(mount, role))?;
        Ok(json(&role).try_cast::<Map>().unwrap_or_default())
    }

    /// The names of the roles of an AppRole mount.
    #[rhai_fn(return_raw)]
    pub fn approle_roles(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let roles = call(&Run::of(&ctx), &vault, vault.approle_role_list(mount))?;
        Ok(roles.into_iter().map(Dynamic::from).collect())
    }

    /// The role-id of an AppRole role, as a Secret: with a secret-id it is a login.
    #[rhai_fn(return_raw)]
    pub fn approle_role_id(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
    ) -> Result<Secret, Box<EvalAltResult>> {
        call(&Run::of(&ctx), &vault, vault.approle_role_id(mount, role)).map(Secret::new)
    }

    /// Generates a new secret-id for an AppRole role, as a Secret (empty in a dry run).
    #[rhai_fn(return_raw)]
    pub fn approle_secret_id(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
    ) -> Result<Secret, Box<EvalAltResult>> {
        let detail = format!(
            "generate a secret-id for AppRole role {role} at auth/{}/",
            at(mount)
        );
        change(
            &ctx,
            &vault,
            "vault::approle_secret_id",
            detail,
            Secret::new(""),
            || async { Ok(vault.approle_secret_id(mount, role).await?.secret_id) },
        )
    }

    /// Issues login credentials for an AppRole role: `#{role_id, secret_id}`, both Secrets,
    /// with a newly generated secret-id. Planned in a dry run (both empty then).
    #[rhai_fn(return_raw)]
    pub fn approle_credentials(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        let detail = format!(
            "issue a role-id and a new secret-id for AppRole role {role} at auth/{}/",
            at(mount)
        );
        let empty = (String::new(), Secret::new(""));
        let (role_id, secret_id) = change(
            &ctx,
            &vault,
            "vault::approle_credentials",
            detail,
            empty,
            || async {
                let role_id = vault.approle_role_id(mount, role).await?;
                Ok((
                    role_id,
                    vault.approle_secret_id(mount, role).await?.secret_id,
                ))
            },
        )?;
        let mut out = Map::new();
        out.insert("role_id".into(), Dynamic::from(Secret::new(role_id)));
        out.insert("secret_id".into(), Dynamic::from(secret_id));
        Ok(out)
    }

    /// Logs in with AppRole (role-id as text or Secret, secret-id as Secret) and returns a
    /// connection with the new token; the token is revoked when the run ends, also on failure.
    #[rhai_fn(return_raw)]
    pub fn login_approle(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role_id: Dynamic,
        secret_id: Secret,
    ) -> Result<Vault, Box<EvalAltResult>> {
        let role_id = Secret::new(plain_or_secret(&role_id, "the role id")?);
        login(&Run::of(&ctx), &vault, mount, &role_id, &secret_id)
    }

    // ---- PKI ----------------------------------------------------------------------------

    /// Enables a PKI engine at `mount` issuing certificates up to `max_ttl` (`"8760h"`); does
    /// nothing when a PKI engine is already there.
    #[rhai_fn(return_raw)]
    pub fn pki_enable(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        max_ttl: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let run = Run::of(&ctx);
        let enabled = call(&run, &vault, vault.mount_list())?;
        if enable_once(&run, &vault, "vault::pki_enable", mount, "pki", enabled)? {
            call(&run, &vault, vault.pki_enable(mount, max_ttl))?;
        }
        Ok(())
    }

    /// Generates a PKI mount's root CA (its key stays in Vault). Options: `ttl`, `key_type`,
    /// `key_bits`. Returns `#{certificate, serial, expiration, days_left}` (empty in a dry run).
    #[rhai_fn(return_raw)]
    pub fn pki_root(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        common_name: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        check_options(
            &options,
            &["ttl", "key_type", "key_bits"],
            "vault::pki_root",
        )?;
        let settings = crate::vault::RootSettings {
            ttl: opt_duration(&options, "ttl")?,
            key_type: opt_string(&options, "key_type")?,
            key_bits: opt_count(&options, "key_bits")?,
        };
        let detail = format!("generate root CA `{common_name}` in {}/", at(mount));
        let root = change(&ctx, &vault, "vault::pki_root", detail, None, || async {
            Ok(Some(vault.pki_root(mount, common_name, &settings).await?))
        })?;
        let (certificate, serial, expiration) = root
            .map(|r| (r.certificate, r.serial, r.expiration))
            .unwrap_or_default();
        let mut out = Map::new();
        out.insert("certificate".into(), certificate.into());
        out.insert("serial".into(), serial.into());
        insert_expiry(&mut out, expiration);
        Ok(out)
    }

    /// Creates or updates a PKI role. Options: `allowed_domains` (list), `allow_subdomains`,
    /// `allow_bare_domains`, `allow_localhost`, `allow_any_name`, `allow_ip_sans`, `ttl`,
    /// `max_ttl`, `key_type`, `key_bits`.
    #[rhai_fn(return_raw)]
    pub fn pki_role(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        name: &str,
        options: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        check_options(
            &options,
            &[
                "allowed_domains",
                "allow_subdomains",
                "allow_bare_domains",
                "allow_localhost",
                "allow_any_name",
                "allow_ip_sans",
                "ttl",
                "max_ttl",
                "key_type",
                "key_bits",
            ],
            "vault::pki_role",
        )?;
        let settings = crate::vault::PkiRoleSettings {
            allowed_domains: opt_list(&options, "allowed_domains")?,
            allow_subdomains: opt_bool(&options, "allow_subdomains")?,
            allow_bare_domains: opt_bool(&options, "allow_bare_domains")?,
            allow_localhost: opt_bool(&options, "allow_localhost")?,
            allow_any_name: opt_bool(&options, "allow_any_name")?,
            allow_ip_sans: opt_bool(&options, "allow_ip_sans")?,
            ttl: opt_duration(&options, "ttl")?,
            max_ttl: opt_duration(&options, "max_ttl")?,
            key_type: opt_string(&options, "key_type")?,
            key_bits: opt_count(&options, "key_bits")?,
        };
        let detail = format!("write PKI role {name} in {}/", at(mount));
        change(&ctx, &vault, "vault::pki_role", detail, (), || {
            vault.pki_role(mount, name, &settings)
        })
    }

    /// Issues a certificate under a PKI role. Options: `ttl`, `alt_names` (list), `ip_sans`
    /// (list). Returns `#{certificate, issuing_ca, ca_chain, private_key (Secret),
    /// private_key_type, serial, expiration (Unix seconds), days_left}`; empty in a dry run.
    #[rhai_fn(return_raw)]
    pub fn pki_issue(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
        role: &str,
        common_name: &str,
        options: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        check_options(
            &options,
            &["ttl", "alt_names", "ip_sans"],
            "vault::pki_issue",
        )?;
        let settings = crate::vault::IssueSettings {
            ttl: opt_duration(&options, "ttl")?,
            alt_names: opt_list(&options, "alt_names")?,
            ip_sans: opt_list(&options, "ip_sans")?,
        };
        let detail = format!(
            "issue a certificate for {common_name} under role {role} of {}/",
            at(mount)
        );
        let planned = crate::vault::Issued {
            certificate: String::new(),
            issuing_ca: String::new(),
            ca_chain: Vec::new(),
            private_key: Secret::new(""),
            private_key_type: String::new(),
            serial: String::new(),
            expiration: 0,
        };
        let issued = change(&ctx, &vault, "vault::pki_issue", detail, planned, || {
            vault.pki_issue(mount, role, common_name, &settings)
        })?;
        let mut out = Map::new();
        out.insert("certificate".into(), issued.certificate.into());
        out.insert("issuing_ca".into(), issued.issuing_ca.into());
        out.insert(
            "ca_chain".into(),
            issued
                .ca_chain
                .into_iter()
                .map(Dynamic::from)
                .collect::<Array>()
                .into(),
        );
        out.insert("private_key".into(), Dynamic::from(issued.private_key));
        out.insert("private_key_type".into(), issued.private_key_type.into());
        out.insert("serial".into(), issued.serial.into());
        insert_expiry(&mut out, issued.expiration);
        Ok(out)
    }

    /// Every certificate a PKI mount has stored, its CAs too: `[#{serial, certificate (PEM),
    /// revoked}]`; `[]` when it issued none. Read `certs::parse(c.certificate)` for expiry.
    #[rhai_fn(return_raw)]
    pub fn pki_certificates(
        ctx: NativeCallContext,
        vault: Vault,
        mount: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let stored = call(&Run::of(&ctx), &vault, vault.pki_certificates(mount))?;
        Ok(stored
            .into_iter()
            .map(|c| {
                let mut out = Map::new();
                out.insert("serial".into(), c.serial.into());
                out.insert("certificate".into(), c.certificate.into());
                out.insert("revoked".into(), c.revoked.into());
                Dynamic::from(out)
            })
            .collect())
    }

    // ---- tokens -------------------------------------------------------------------------

    /// What this connection's token is: `#{accessor, display_name, policies, ttl,
    /// creation_ttl, expire_time, renewable, orphan, num_uses, path, role, meta}`.
    #[rhai_fn(name = "token_lookup", return_raw)]
    pub fn token_lookup_self(
        ctx: NativeCallContext,
        vault: Vault,
    ) -> Result<Map, Box<EvalAltResult>> {
        let token = call(&Run::of(&ctx), &vault, vault.token_lookup_self())?;
        Ok(json(&token).try_cast::<Map>().unwrap_or_default())
    }

    /// What another token (a Secret) is, looked up with this connection.
    #[rhai_fn(name = "token_lookup", return_raw)]
    pub fn token_lookup_other(
        ctx: NativeCallContext,
        vault: Vault,
        token: Secret,
    ) -> Result<Map, Box<EvalAltResult>> {
        let token = call(&Run::of(&ctx), &vault, vault.token_lookup(&token))?;
        Ok(json(&token).try_cast::<Map>().unwrap_or_default())
    }

    /// Revokes this connection's token (and the tokens it created).
    #[rhai_fn(name = "token_revoke", return_raw)]
    pub fn token_revoke_self(
        ctx: NativeCallContext,
        vault: Vault,
    ) -> Result<(), Box<EvalAltResult>> {
        let detail = "revoke this connection's token".to_string();
        change(&ctx, &vault, "vault::token_revoke", detail, (), || {
            vault.token_revoke_self()
        })
    }

    /// Revokes another token (a Secret) and the tokens it created.
    #[rhai_fn(name = "token_revoke", return_raw)]
    pub fn token_revoke_other(
        ctx: NativeCallContext,
        vault: Vault,
        token: Secret,
    ) -> Result<(), Box<EvalAltResult>> {
        change(
            &ctx,
            &vault,
            "vault::token_revoke",
            "revoke a token".into(),
            (),
            || vault.token_revoke(&token),
        )
    }
}
