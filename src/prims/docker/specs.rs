//! Container specs: everything needed to recreate a container, and creating one from a spec.

use rhai::plugin::*;
use rhai::Map;

use super::*;
use crate::docker::ContainerSpec;
use crate::prims::{error, opt_string, PrimResult};

fn create(ctx: &NativeCallContext, spec: Map, options: &Map) -> PrimResult<String> {
    let spec: ContainerSpec = rhai::serde::from_dynamic(&Dynamic::from_map(spec)).map_err(|e| {
        error(format!(
            "not a container spec (as docker::spec returns it): {e}"
        ))
    })?;
    let name = opt_string(options, "name")?.unwrap_or_else(|| spec.name.clone());
    let image = opt_string(options, "image")?.unwrap_or_else(|| spec.image.clone());
    let detail = format!("create container `{name}` from image `{image}`");
    must_exist(ctx, Kind::Image, &image)?;
    must_be_new(ctx, &name)?;
    let (name_ref, image_ref) = (name.as_str(), image.as_str());
    change(ctx, "docker::create", detail, |d| async move {
        d.create(&spec, Some(name_ref), Some(image_ref))
            .await
            .map(drop)
    })?;
    planned(ctx, Kind::Container, &name, true);
    Ok(name)
}

#[export_module]
pub mod api {
    use super::*;

    /// Everything needed to recreate a container: `#{name, image, image_id, config,
    /// host_config, networks}` with the container's own settings (not its image's defaults),
    /// its mounts, ports, networks and aliases. JSON-able: save it with `fs::write_json`.
    #[rhai_fn(return_raw)]
    pub fn spec(ctx: NativeCallContext, name: &str) -> Result<Map, Box<EvalAltResult>> {
        let spec = call(&ctx, "capturing a container spec", |d| async move {
            d.spec(name).await
        })?;
        to_map(&spec)
    }

    /// Creates (does not start) a container from a spec `docker::spec` captured; returns its name.
    #[rhai_fn(name = "create", return_raw)]
    pub fn create(ctx: NativeCallContext, spec: Map) -> Result<String, Box<EvalAltResult>> {
        super::create(&ctx, spec, &Map::new())
    }

    /// Creates a container from a spec with `#{name: "...", image: "..."}` overriding the
    /// spec's (rollback: the same container from another image).
    #[rhai_fn(name = "create", return_raw)]
    pub fn create_with(
        ctx: NativeCallContext,
        spec: Map,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        super::create(&ctx, spec, &options)
    }
}
