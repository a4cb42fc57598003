//! X.509 certificates: subject, issuer, names and expiry, from PEM files (chains) or text; and
//! installing a renewed certificate with its key.

use rhai::plugin::*;
use rhai::{Array, Map};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{checked_path, error, PrimResult};
use crate::atomic_file::AtomicFile;
use crate::run::Run;
use crate::secrets::Secret;

/// Everything cert-check looks at in one certificate.
fn describe(cert: &x509_parser::certificate::X509Certificate<'_>, now: i64) -> Map {
    let not_after = cert.validity().not_after.timestamp();
    let mut dns: Array = Array::new();
    let mut ips: Array = Array::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_string().into()),
                GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    ips.extend(ip.map(|ip| ip.to_string().into()));
                }
                _ => {}
            }
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let names: Array = dns.iter().chain(ips.iter()).cloned().collect();
    let mut map = Map::new();
    map.insert("subject".into(), cert.subject().to_string().into());
    map.insert("common_name".into(), common_name.into());
    map.insert("dns_names".into(), dns.into());
    map.insert("ip_addresses".into(), ips.into());
    map.insert("issuer".into(), cert.issuer().to_string().into());
    map.insert("serial".into(), cert.raw_serial_as_string().into());
    map.insert(
        "not_before".into(),
        cert.validity().not_before.timestamp().into(),
    );
    map.insert("not_after".into(), not_after.into());
    map.insert(
        "days_left".into(),
        ((not_after - now).div_euclid(86_400)).into(),
    );
    map.insert("is_ca".into(), cert.is_ca().into());
    map.insert("names".into(), names.into());
    map
}

/// Every certificate in PEM text (a chain gives several, leaf first as written); DER is
/// accepted too.
pub fn parse(bytes: &[u8], source: &str) -> PrimResult<Array> {
    let now = chrono::Utc::now().timestamp();
    let mut certs = Array::new();
    if bytes.starts_with(b"-----") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        for pem in Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| error(format!("{source}: not a readable PEM file: {e}")))?;
            if pem.label != "CERTIFICATE" {
                continue;
            }
            let cert = pem
                .parse_x509()
                .map_err(|e| error(format!("{source}: a certificate that does not parse: {e}")))?;
            certs.push(describe(&cert, now).into());
        }
    } else {
        let (_, cert) = x509_parser::parse_x509_certificate(bytes)
            .map_err(|e| error(format!("{source}: not a PEM or DER certificate: {e}")))?;
        certs.push(describe(&cert, now).into());
    }
    Ok(certs)
}

/// The owner of the file a new one replaces, and the mode to give it.
fn replacing(target: &Path, default_mode: u32) -> (Option<(u32, u32)>, u32) {
    match std::fs::metadata(target) {
        Ok(meta) => (Some((meta.uid(), meta.gid())), meta.mode() & 0o7777),
        Err(_) => (None, default_mode),
    }
}

fn staged(target: &Path, bytes: &[u8], mode: u32, what: &str) -> PrimResult<AtomicFile> {
    let (owner, _) = replacing(target, mode);
    let fail = |e: std::io::Error| error(format!("cannot write {what} {}: {e}", target.display()));
    let mut file = AtomicFile::create(target, mode).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    if let Some((uid, gid)) = owner {
        file.set_owner(uid, gid).map_err(fail)?;
    }
    Ok(file)
}

/// Writes a certificate and its key beside the current ones and renames both into place
/// only when both are whole: the key 0600, the certificate with the mode it had (0644 when
/// new), each with the owner of the file it replaces.
fn install(
    ctx: &NativeCallContext,
    cert_path: &str,
    key_path: &str,
    pem: &str,
    key: &Secret,
) -> PrimResult<()> {
    let run = Run::of(ctx);
    let cert_file = checked_path(&run, cert_path)?;
    let key_file = checked_path(&run, key_path)?;
    // A dry run plans before checking: what `vault::pki_issue` planned is empty.
    if !run.mutate(
        "certs::install",
        format!(
            "install a certificate in {} and its key in {} (0600)",
            cert_file.display(),
            key_file.display()
        ),
    ) {
        return Ok(());
    }
    if parse(pem.as_bytes(), "the new certificate")?.is_empty() {
        return Err(error(format!(
            "{cert_path}: the new certificate text holds no certificate"
        )));
    }
    if !key.expose().contains("PRIVATE KEY-----") {
        return Err(error(format!(
            "{key_path}: the new key is not a PEM private key"
        )));
    }
    let (_, cert_mode) = replacing(&cert_file, 0o644);
    let new_key = staged(&key_file, key.expose().as_bytes(), 0o600, "the key")?;
    let new_cert = staged(&cert_file, pem.as_bytes(), cert_mode, "the certificate")?;
    // Both are whole on disk: swap them in one after the other.
    new_key
        .commit()
        .map_err(|e| error(format!("cannot replace the key {key_path}: {e}")))?;
    new_cert
        .commit()
        .map_err(|e| error(format!("cannot replace the certificate {cert_path}: {e}")))
}

#[export_module]
pub mod api {
    /// The certificates in a PEM (or DER) file: `[#{subject, common_name, issuer, serial,
    /// not_before, not_after, days_left, is_ca, dns_names, ip_addresses, names}]` (`names`:
    /// both kinds of alternative names); a file with no certificate gives `[]`.
    #[rhai_fn(return_raw)]
    pub fn read(ctx: NativeCallContext, path: &str) -> Result<Array, Box<EvalAltResult>> {
        let resolved = checked_path(&Run::of(&ctx), path)?;
        let bytes = std::fs::read(&resolved)
            .map_err(|e| super::error(format!("cannot read {path}: {e}")))?;
        super::parse(&bytes, path)
    }

    /// The certificates in PEM text (e.g. issued by Vault PKI).
    #[rhai_fn(name = "parse", return_raw)]
    pub fn parse(pem: &str) -> Result<Array, Box<EvalAltResult>> {
        super::parse(pem.as_bytes(), "certificate text")
    }

    /// The certificates in bytes, PEM or DER (a file `docker::read_files` read).
    #[rhai_fn(name = "parse", return_raw)]
    pub fn parse_blob(bytes: rhai::Blob) -> Result<Array, Box<EvalAltResult>> {
        super::parse(&bytes, "certificate bytes")
    }

    /// Installs a renewed certificate (PEM text, a chain when it ends with its CA) and its
    /// key (a Secret, as `vault::pki_issue` returns it): both written whole beside the
    /// current files, then renamed into place; the key 0600, the certificate keeping its
    /// mode, both keeping their owners. Planned in a dry run.
    #[rhai_fn(return_raw)]
    pub fn install(
        ctx: NativeCallContext,
        cert_path: &str,
        key_path: &str,
        certificate: &str,
        key: Secret,
    ) -> Result<(), Box<EvalAltResult>> {
        super::install(&ctx, cert_path, key_path, certificate, &key)
    }
}
