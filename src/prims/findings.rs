//! Findings of health and security checks (doctor, audit, cert-check): one shape, rendered as
//! a table, as JSON, or in the Nagios plugin format with its exit codes.

use rhai::plugin::*;
use rhai::{Array, Map, INT};

use super::{error, PrimResult};
use crate::run::Run;

const SEVERITIES: [&str; 3] = ["ok", "warn", "critical"];

fn field(finding: &Map, key: &str) -> String {
    finding.get(key).map(|v| v.to_string()).unwrap_or_default()
}

fn new_finding(
    id: &str,
    severity: &str,
    object: &str,
    message: &str,
    fix: &str,
) -> PrimResult<Map> {
    if !SEVERITIES.contains(&severity) {
        return Err(error(format!(
            "finding `{id}`: severity must be ok, warn or critical, got `{severity}`"
        )));
    }
    let mut map = Map::new();
    for (k, v) in [
        ("id", id),
        ("severity", severity),
        ("object", object),
        ("message", message),
        ("fix", fix),
    ] {
        map.insert(k.into(), v.into());
    }
    Ok(map)
}

fn findings_of(list: &Array) -> PrimResult<Vec<Map>> {
    list.iter()
        .map(|f| {
            f.read_lock::<Map>()
                .map(|m| m.clone())
                .ok_or_else(|| error("findings must be maps made by findings::new"))
        })
        .collect()
}

fn counts(findings: &[Map]) -> (usize, usize, usize) {
    let n = |s: &str| {
        findings
            .iter()
            .filter(|f| field(f, "severity") == s)
            .count()
    };
    (n("ok"), n("warn"), n("critical"))
}

fn table(findings: &[Map]) -> String {
    let width = |key: &str, min: usize| {
        findings
            .iter()
            .map(|f| field(f, key).len())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let (wi, wo) = (width("id", 2), width("object", 6));
    let mut out = format!(
        "{:8}  {:wi$}  {:wo$}  MESSAGE / FIX\n",
        "SEVERITY", "ID", "OBJECT"
    );
    for f in findings {
        out.push_str(&format!(
            "{:8}  {:wi$}  {:wo$}  {}\n",
            field(f, "severity").to_uppercase(),
            field(f, "id"),
            field(f, "object"),
            field(f, "message")
        ));
        let fix = field(f, "fix");
        if !fix.is_empty() && field(f, "severity") != "ok" {
            out.push_str(&format!("{:8}  {:wi$}  {:wo$}  fix: {fix}\n", "", "", ""));
        }
    }
    let (ok, warn, critical) = counts(findings);
    out.push_str(&format!("{ok} ok, {warn} warning, {critical} critical\n"));
    out
}

/// The exit status of a findings report, in every format: 0 all ok, 1 a warning, 2 critical
/// (the Nagios plugin contract; 3, unknown, is `findings::unknown`'s).
fn status(findings: &[Map]) -> (&'static str, i32) {
    let (_, warn, critical) = counts(findings);
    if critical > 0 {
        ("CRITICAL", 2)
    } else if warn > 0 {
        ("WARNING", 1)
    } else {
        ("OK", 0)
    }
}

/// Nagios plugin output: `SERVICE STATUS - summary | perfdata`, then one line per problem.
fn nagios(service: &str, findings: &[Map]) -> (String, i32) {
    let (ok, warn, critical) = counts(findings);
    let (status, code) = status(findings);
    let worst: Vec<String> = findings
        .iter()
        .filter(|f| field(f, "severity") == if critical > 0 { "critical" } else { "warn" })
        .map(|f| format!("{}: {}", field(f, "object"), field(f, "message")))
        .collect();
    let summary = if worst.is_empty() {
        format!("{ok} checks passed")
    } else {
        worst.join("; ")
    };
    let mut out = format!(
        "{} {status} - {summary} | ok={ok} warning={warn} critical={critical}\n",
        service.to_uppercase()
    );
    for f in findings.iter().filter(|f| field(f, "severity") != "ok") {
        out.push_str(&format!(
            "{} {}: {} (fix: {})\n",
            field(f, "severity").to_uppercase(),
            field(f, "object"),
            field(f, "message"),
            field(f, "fix")
        ));
    }
    (out, code)
}

/// Prints through the engine's `print`, so the text goes where the run's output goes (stderr
/// when stdout carries the `--json` report).
fn print(ctx: &NativeCallContext, text: &str) -> PrimResult<()> {
    ctx.call_native_fn::<()>("print", (text.trim_end_matches('\n').to_string(),))
}

fn render(ctx: &NativeCallContext, service: &str, list: &Array, format: &str) -> PrimResult<Map> {
    let run = Run::of(ctx);
    let findings = findings_of(list)?;
    match format {
        "table" => print(ctx, &table(&findings))?,
        "json" => {
            let json: Vec<serde_json::Value> = findings
                .iter()
                .map(|f| crate::value::to_json(&Dynamic::from(f.clone())))
                .collect();
            print(
                ctx,
                &serde_json::to_string_pretty(&json).unwrap_or_default(),
            )?;
        }
        "nagios" => print(ctx, &nagios(service, &findings).0)?,
        other => {
            return Err(error(format!(
                "output format must be table, json or nagios, got `{other}`"
            )))
        }
    }
    // The report speaks for itself: no run summary after it (a dry run's plan still follows),
    // and the run exits with the worst severity, never as a script error.
    run.set_exit_status(status(&findings).1);
    let (ok, warn, critical) = counts(&findings);
    let mut summary = Map::new();
    summary.insert("ok".into(), (ok as INT).into());
    summary.insert("warn".into(), (warn as INT).into());
    summary.insert("critical".into(), (critical as INT).into());
    summary.insert("findings".into(), list.clone().into());
    Ok(summary)
}

#[export_module]
pub mod api {
    /// Reports that a check could not run, in the Nagios format: `SERVICE UNKNOWN - message`,
    /// exit status 3.
    #[rhai_fn(return_raw)]
    pub fn unknown(
        ctx: NativeCallContext,
        service: &str,
        message: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        super::print(
            &ctx,
            &format!("{} UNKNOWN - {message}", service.to_uppercase()),
        )?;
        Run::of(&ctx).set_exit_status(3);
        Ok(())
    }

    /// A finding: `id` (e.g. `privileged`), `severity` (ok, warn or critical), the object it is
    /// about (container, volume, file, port), one sentence saying what is wrong, and the fix.
    #[rhai_fn(name = "record", return_raw)]
    pub fn new_finding(
        id: &str,
        severity: &str,
        object: &str,
        message: &str,
        fix: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::new_finding(id, severity, object, message, fix)
    }

    /// Prints findings as `table`, `json` or `nagios` (plugin format); the run then exits 0
    /// when all are ok, 1 on a warning, 2 on a critical finding, in every format. Returns `#{ok, warn, critical, findings}`; with `--json` the
    /// text goes to stderr and the run's report carries the findings.
    #[rhai_fn(return_raw)]
    pub fn render(
        ctx: NativeCallContext,
        service: &str,
        findings: Array,
        format: &str,
    ) -> Result<Map, Box<EvalAltResult>> {
        super::render(&ctx, service, &findings, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(severity: &str, object: &str) -> Map {
        new_finding(
            "x",
            severity,
            object,
            &format!("{object} is {severity}"),
            "do y",
        )
        .unwrap()
    }

    #[test]
    fn nagios_status_is_the_worst_severity() {
        assert_eq!(nagios("audit", &[f("ok", "a")]).1, 0);
        assert_eq!(nagios("audit", &[f("ok", "a"), f("warn", "b")]).1, 1);
        let (text, code) = nagios("audit", &[f("warn", "b"), f("critical", "c")]);
        assert_eq!(code, 2);
        assert!(
            text.starts_with("AUDIT CRITICAL - c: c is critical | ok=0 warning=1 critical=1\n"),
            "{text}"
        );
    }

    #[test]
    fn unknown_severity_is_refused() {
        assert!(new_finding("x", "bad", "o", "m", "f").is_err());
    }
}
