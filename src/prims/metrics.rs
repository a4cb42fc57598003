//! Metrics for monitoring: files in the Prometheus text format, written whole for
//! node-exporter's textfile collector (a scrape never sees half a file).

use rhai::plugin::*;
use rhai::{Array, Map};

use super::{checked_path, error, PrimResult};
use crate::run::Run;
use crate::secrets::Secret;

/// One metric family: a name, its help text and type, and its samples.
#[derive(Debug, Clone, PartialEq)]
struct Family {
    name: String,
    help: String,
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    labels: Vec<(String, String)>,
    value: f64,
}

const KINDS: [&str; 3] = ["gauge", "counter", "untyped"];

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn escape_label_value(text: &str) -> String {
    text.replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// The text format of the families, in the order given.
fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        out.push_str(&format!(
            "# HELP {} {}\n# TYPE {} {}\n",
            family.name,
            escape_help(&family.help),
            family.name,
            family.kind
        ));
        for sample in &family.samples {
            out.push_str(&family.name);
            if !sample.labels.is_empty() {
                let labels: Vec<String> = sample
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                    .collect();
                out.push_str(&format!("{{{}}}", labels.join(",")));
            }
            out.push(' ');
            out.push_str(&format_value(sample.value));
            out.push('\n');
        }
    }
    out
}

fn text_field(map: &Map, key: &str, what: &str) -> PrimResult<String> {
    match map.get(key) {
        Some(v) if v.is_string() => Ok(v.to_string()),
        Some(v) if v.is_unit() => Ok(String::new()),
        None => Ok(String::new()),
        Some(v) => Err(error(format!(
            "{what}: `{key}` must be a string, got {}",
            crate::value::kind(v)
        ))),
    }
}

fn sample_of(value: &Dynamic, family: &str) -> PrimResult<Sample> {
    let map = value.read_lock::<Map>().ok_or_else(|| {
        error(format!(
            "metric {family}: each sample must be a map #{{labels, value}}"
        ))
    })?;
    let raw = map.get("value").cloned().unwrap_or(Dynamic::UNIT);
    let value = if let Ok(i) = raw.as_int() {
        i as f64
    } else if let Ok(f) = raw.as_float() {
        f
    } else {
        return Err(error(format!(
            "metric {family}: a sample's `value` must be a number, got {}",
            crate::value::kind(&raw)
        )));
    };
    let mut labels = Vec::new();
    if let Some(given) = map.get("labels").filter(|v| !v.is_unit()) {
        let given = given.read_lock::<Map>().ok_or_else(|| {
            error(format!(
                "metric {family}: `labels` must be a map of name: value"
            ))
        })?;
        for (name, v) in given.iter() {
            if !valid_label_name(name) {
                return Err(error(format!(
                    "metric {family}: `{name}` is not a label name (letters, digits and _, not starting with a digit or __)"
                )));
            }
            if v.is::<Secret>() {
                return Err(error(format!(
                    "metric {family}: label `{name}` is a secret; metrics are read by anyone who can scrape them"
                )));
            }
            labels.push((name.to_string(), v.to_string()));
        }
    }
    Ok(Sample { labels, value })
}

fn family_of(value: &Dynamic) -> PrimResult<Family> {
    let map = value
        .read_lock::<Map>()
        .ok_or_else(|| error("each metric must be a map #{name, help, type, samples}"))?;
    let name = text_field(&map, "name", "a metric")?;
    if !valid_metric_name(&name) {
        return Err(error(format!(
            "`{name}` is not a metric name (letters, digits, _ and :, not starting with a digit)"
        )));
    }
    let what = format!("metric {name}");
    let kind = match text_field(&map, "type", &what)? {
        k if k.is_empty() => "gauge".to_string(),
        k if KINDS.contains(&k.as_str()) => k,
        k => {
            return Err(error(format!(
                "{what}: type must be gauge, counter or untyped, got `{k}`"
            )))
        }
    };
    let samples = match map.get("samples") {
        Some(v) if v.is_array() => v
            .read_lock::<Array>()
            .expect("checked is_array")
            .iter()
            .map(|s| sample_of(s, &name))
            .collect::<PrimResult<Vec<_>>>()?,
        _ => return Err(error(format!("{what}: `samples` must be a list"))),
    };
    Ok(Family {
        help: text_field(&map, "help", &what)?,
        name,
        kind,
        samples,
    })
}

#[export_module]
pub mod api {
    /// Writes metrics in the Prometheus text format, atomically (mode 0644), for
    /// node-exporter's textfile collector: `[#{name, help, type: "gauge", samples: [#{labels:
    /// #{step: "load volumes"}, value: 1.5}]}]`. Names and labels are checked, label values
    /// escaped, secrets refused. Planned in a dry run.
    #[rhai_fn(return_raw)]
    pub fn write_textfile(
        ctx: NativeCallContext,
        path: &str,
        metrics: Array,
    ) -> Result<(), Box<EvalAltResult>> {
        let families = metrics
            .iter()
            .map(super::family_of)
            .collect::<PrimResult<Vec<_>>>()?;
        let run = Run::of(&ctx);
        let target = checked_path(&run, path)?;
        let samples: usize = families.iter().map(|f| f.samples.len()).sum();
        if !run.mutate(
            "metrics::write_textfile",
            format!("write {samples} samples to {}", target.display()),
        ) {
            return Ok(());
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| error(format!("cannot create the directory of {path}: {e}")))?;
        }
        crate::atomic_file::write(&target, super::render(&families).as_bytes(), 0o644)
            .map_err(|e| error(format!("cannot write {path}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn families_render_with_help_type_and_labels() {
        let families = vec![
            Family {
                name: "runbook_dr_step_seconds".into(),
                help: "Time of each step.".into(),
                kind: "gauge".into(),
                samples: vec![
                    sample(&[("stack", "shop"), ("step", "load volumes")], 1.25),
                    sample(&[("stack", "shop"), ("step", "start the stack")], 3.0),
                ],
            },
            Family {
                name: "runbook_dr_last_success_timestamp_seconds".into(),
                help: String::new(),
                kind: "gauge".into(),
                samples: vec![sample(&[], 1_795_000_000.0)],
            },
        ];
        assert_eq!(
            render(&families),
            "# HELP runbook_dr_step_seconds Time of each step.\n\
             # TYPE runbook_dr_step_seconds gauge\n\
             runbook_dr_step_seconds{stack=\"shop\",step=\"load volumes\"} 1.25\n\
             runbook_dr_step_seconds{stack=\"shop\",step=\"start the stack\"} 3\n\
             # HELP runbook_dr_last_success_timestamp_seconds \n\
             # TYPE runbook_dr_last_success_timestamp_seconds gauge\n\
             runbook_dr_last_success_timestamp_seconds 1795000000\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let families = vec![Family {
            name: "m".into(),
            help: "a \\ b\nc".into(),
            kind: "untyped".into(),
            samples: vec![sample(&[("path", "C:\\x \"y\"\nz")], f64::INFINITY)],
        }];
        assert_eq!(
            render(&families),
            "# HELP m a \\\\ b\\nc\n# TYPE m untyped\nm{path=\"C:\\\\x \\\"y\\\"\\nz\"} +Inf\n"
        );
    }

    #[test]
    fn names_follow_the_data_model() {
        assert!(valid_metric_name("runbook_dr_rto_seconds"));
        assert!(valid_metric_name("job:rate5m"));
        assert!(!valid_metric_name("5xx"));
        assert!(!valid_metric_name("dr-seconds"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("step"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name("1a"));
    }

    #[test]
    fn special_values_use_the_format_spelling() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(42.0), "42");
    }
}
