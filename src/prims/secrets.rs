//! The `secrets` facade: get, put, list and delete secrets by path, in Vault KV v2 when a Vault
//! is configured (`VAULT_ADDR`), else in the local age-encrypted store in the data dir. Values
//! come back as Secrets; writes plan in a dry run.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Map};

use super::vault::{check_options, connect_env, plain_values, Vault};
use super::{error, opt_string, PrimResult};
use crate::run::Run;
use crate::secrets::store::LocalStore;
use crate::secrets::Secret;
use crate::vault::Config;

/// A store as scripts hold it (the `SecretStore` type).
pub type SecretStore = Arc<crate::secrets::store::SecretStore>;

/// The KV v2 mount the facade uses in Vault unless told otherwise.
const DEFAULT_MOUNT: &str = "secret";

/// Registers the `SecretStore` type and the `secrets` module.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<SecretStore>("SecretStore")
        .register_fn("to_string", |s: &mut SecretStore| s.describe())
        .register_fn("to_debug", |s: &mut SecretStore| s.describe());
    engine.register_static_module("secrets", rhai::exported_module!(api).into());
}

fn local() -> SecretStore {
    Arc::new(crate::secrets::store::SecretStore::Local(LocalStore::new(
        crate::locations::data_dir(),
    )))
}

fn in_vault(vault: Vault, mount: Option<String>) -> SecretStore {
    Arc::new(crate::secrets::store::SecretStore::Vault {
        vault,
        mount: mount.unwrap_or_else(|| DEFAULT_MOUNT.into()),
    })
}

/// Vault when one is configured in the environment, else the local store.
fn open_default() -> PrimResult<SecretStore> {
    if Config::in_env() {
        Ok(in_vault(connect_env()?, None))
    } else {
        Ok(local())
    }
}

fn open_with(options: &Map) -> PrimResult<SecretStore> {
    check_options(options, &["backend", "vault", "mount"], "secrets::open")?;
    let mount = opt_string(options, "mount")?;
    let given = options
        .get("vault")
        .filter(|v| !v.is_unit())
        .map(|v| {
            v.clone()
                .try_cast::<Vault>()
                .ok_or_else(|| error("option `vault` must be a connection from vault::connect"))
        })
        .transpose()?;
    match opt_string(options, "backend")?.as_deref().unwrap_or("auto") {
        "vault" => Ok(in_vault(given.map_or_else(connect_env, Ok)?, mount)),
        "local" => Ok(local()),
        "auto" => match given {
            Some(vault) => Ok(in_vault(vault, mount)),
            None if Config::in_env() => Ok(in_vault(connect_env()?, mount)),
            None => Ok(local()),
        },
        other => Err(error(format!(
            "secrets backend `{other}` is not one of auto, vault, local"
        ))),
    }
}

fn get(ctx: &NativeCallContext, store: &SecretStore, path: &str) -> PrimResult<Map> {
    let values = Run::of(ctx)
        .block_on(&store.describe(), store.get(path))?
        .map_err(|e| error(e.to_string()))?;
    Ok(values
        .into_iter()
        .map(|(k, v)| (k.into(), Dynamic::from(v)))
        .collect())
}

fn get_key(
    ctx: &NativeCallContext,
    store: &SecretStore,
    path: &str,
    key: &str,
) -> PrimResult<Secret> {
    let mut values = get(ctx, store, path)?;
    values
        .remove(key)
        .and_then(|v| v.try_cast::<Secret>())
        .ok_or_else(|| {
            error(format!(
                "{}: {path} has no key `{key}` (it has: {})",
                store.describe(),
                values
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

fn put(ctx: &NativeCallContext, store: &SecretStore, path: &str, data: &Map) -> PrimResult<()> {
    let run = Run::of(ctx);
    let values = plain_values(data, "value")?;
    if !run.mutate(
        "secrets::put",
        format!(
            "write {} keys ({}) to {path} in {}",
            values.len(),
            values.keys().cloned().collect::<Vec<_>>().join(", "),
            store.describe()
        ),
    ) {
        return Ok(());
    }
    run.block_on(&store.describe(), store.put(path, &values))?
        .map_err(|e| error(e.to_string()))
}

fn list(ctx: &NativeCallContext, store: &SecretStore, prefix: &str) -> PrimResult<Array> {
    let names = Run::of(ctx)
        .block_on(&store.describe(), store.list(prefix))?
        .map_err(|e| error(e.to_string()))?;
    Ok(names.into_iter().map(Dynamic::from).collect())
}

fn delete(ctx: &NativeCallContext, store: &SecretStore, path: &str) -> PrimResult<()> {
    let run = Run::of(ctx);
    if !run.mutate(
        "secrets::delete",
        format!("delete {path} for good from {}", store.describe()),
    ) {
        return Ok(());
    }
    run.block_on(&store.describe(), store.delete(path))?
        .map_err(|e| error(e.to_string()))
}

#[export_module]
pub mod api {
    /// The default store: Vault (KV v2 at `secret/`) when `VAULT_ADDR` or `BAO_ADDR` is set,
    /// else the local age-encrypted store in the data dir (`$RUNBOOK_DATA_DIR`).
    #[rhai_fn(name = "open", return_raw)]
    pub fn open_default() -> Result<SecretStore, Box<EvalAltResult>> {
        super::open_default()
    }

    /// A chosen store: `#{backend: "auto" | "vault" | "local", vault: connection, mount:
    /// "secret"}`; `vault` defaults to the environment's Vault.
    #[rhai_fn(name = "open", return_raw)]
    pub fn open_with(options: Map) -> Result<SecretStore, Box<EvalAltResult>> {
        super::open_with(&options)
    }

    /// Which store this is, in words (`Vault at ... (KV secret/)`, `local store ...`).
    pub fn describe(store: SecretStore) -> String {
        store.describe()
    }

    /// The keys of the secret at `path` in the default store, each value a Secret.
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_default(ctx: NativeCallContext, path: &str) -> Result<Map, Box<EvalAltResult>> {
        super::get(&ctx, &super::open_default()?, path)
    }

    /// The keys of the secret at `path` in a store, each value a Secret.
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_in(
        ctx: NativeCallContext,
        store: SecretStore,
        path: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::get(&ctx, &store, path)
    }

    /// One key of the secret at `path` in a store, as a Secret.
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_key_in(
        ctx: NativeCallContext,
        store: SecretStore,
        path: &str,
        key: &str,
    ) -> Result<Secret, Box<EvalAltResult>> {
        super::get_key(&ctx, &store, path, key)
    }

    /// Replaces the secret at `path` in the default store with a map of strings or Secrets.
    #[rhai_fn(name = "put", return_raw)]
    pub fn put_default(
        ctx: NativeCallContext,
        path: &str,
        values: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::put(&ctx, &super::open_default()?, path, &values)
    }

    /// Replaces the secret at `path` in a store with a map of strings or Secrets.
    #[rhai_fn(name = "put", return_raw)]
    pub fn put_in(
        ctx: NativeCallContext,
        store: SecretStore,
        path: &str,
        values: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        super::put(&ctx, &store, path, &values)
    }

    /// The entries under `prefix` in the default store: `db` for a secret, `shop/` for a folder.
    #[rhai_fn(name = "list", return_raw)]
    pub fn list_default(ctx: NativeCallContext, prefix: &str) -> Result<Array, Box<EvalAltResult>> {
        super::list(&ctx, &super::open_default()?, prefix)
    }

    /// The entries under `prefix` in a store.
    #[rhai_fn(name = "list", return_raw)]
    pub fn list_in(
        ctx: NativeCallContext,
        store: SecretStore,
        prefix: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        super::list(&ctx, &store, prefix)
    }

    /// Deletes the secret at `path` from the default store, for good (every version in Vault).
    #[rhai_fn(name = "delete", return_raw)]
    pub fn delete_default(ctx: NativeCallContext, path: &str) -> Result<(), Box<EvalAltResult>> {
        super::delete(&ctx, &super::open_default()?, path)
    }

    /// Deletes the secret at `path` from a store, for good.
    #[rhai_fn(name = "delete", return_raw)]
    pub fn delete_in(
        ctx: NativeCallContext,
        store: SecretStore,
        path: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::delete(&ctx, &store, path)
    }
}
