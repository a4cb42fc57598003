//! X.509 certificates: subject, issuer, names and expiry, from PEM files (chains) or text.

use rhai::plugin::*;
use rhai::{Array, Map};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::{checked_path, error, PrimResult};
use crate::run::Run;

/// Everything cert-check looks at in one certificate.
fn describe(cert: &x509_parser::certificate::X509Certificate<'_>, now: i64) -> Map {
    let not_after = cert.validity().not_after.timestamp();
    let mut names: Vec<Dynamic> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_string().into()),
                GeneralName::IPAddress(ip) if ip.len() == 4 => names.push(
                    std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])
                        .to_string()
                        .into(),
                ),
                _ => {}
            }
        }
    }
    let mut map = Map::new();
    map.insert("subject".into(), cert.subject().to_string().into());
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
    map.insert("names".into(), Array::from(names).into());
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

#[export_module]
pub mod api {
    /// The certificates in a PEM (or DER) file: `[#{subject, issuer, serial, not_before,
    /// not_after, days_left, is_ca, names}]`; a file with no certificate gives `[]`.
    #[rhai_fn(return_raw)]
    pub fn read(ctx: NativeCallContext, path: &str) -> Result<Array, Box<EvalAltResult>> {
        let resolved = checked_path(&Run::of(&ctx), path)?;
        let bytes = std::fs::read(&resolved)
            .map_err(|e| super::error(format!("cannot read {path}: {e}")))?;
        super::parse(&bytes, path)
    }

    /// The certificates in PEM text (e.g. issued by Vault PKI).
    #[rhai_fn(return_raw)]
    pub fn parse(pem: &str) -> Result<Array, Box<EvalAltResult>> {
        super::parse(pem.as_bytes(), "certificate text")
    }
}
