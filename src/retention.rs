//! Which backup sets to keep: restic's `--keep-daily/--keep-weekly/--keep-monthly` meaning.
//! For each policy, walking from the newest set back, the newest set of each calendar period
//! (UTC day, ISO week, month) is kept until N periods have one; the policies are ORed.

use chrono::{DateTime, Datelike, Utc};

/// How many periods of each kind to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

/// The verdict on one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub set: String,
    pub time: DateTime<Utc>,
    pub keep: bool,
    /// Why it is kept: `daily 2026-11-22`, `weekly 2026-W47`, `monthly 2026-11`.
    pub reasons: Vec<String>,
}

fn bucket(kind: &str, t: &DateTime<Utc>) -> String {
    match kind {
        "daily" => t.format("%Y-%m-%d").to_string(),
        "weekly" => {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }
        _ => t.format("%Y-%m").to_string(),
    }
}

/// Decides for every set, newest first in the result.
pub fn apply(sets: &[(String, DateTime<Utc>)], policy: Policy) -> Vec<Verdict> {
    let mut verdicts: Vec<Verdict> = sets
        .iter()
        .map(|(set, time)| Verdict {
            set: set.clone(),
            time: *time,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    verdicts.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.set.cmp(&a.set)));
    for (kind, limit) in [
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
    ] {
        let mut last: Option<String> = None;
        let mut kept = 0;
        for verdict in verdicts.iter_mut() {
            if kept >= limit {
                break;
            }
            let b = bucket(kind, &verdict.time);
            if last.as_deref() != Some(b.as_str()) {
                verdict.keep = true;
                verdict.reasons.push(format!("{kind} {b}"));
                kept += 1;
                last = Some(b);
            }
        }
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn kept(verdicts: &[Verdict]) -> Vec<String> {
        let mut k: Vec<String> = verdicts
            .iter()
            .filter(|v| v.keep)
            .map(|v| v.set.clone())
            .collect();
        k.sort();
        k
    }

    /// Two sets a day (02:00 and 14:00) for two years, ending 2026-11-22.
    fn two_years() -> Vec<(String, DateTime<Utc>)> {
        let end = at(2026, 11, 22, 14);
        (0..730 * 2)
            .map(|i| {
                let t = end - Duration::hours(12 * i);
                (t.format("%Y%m%dT%H%M%SZ").to_string(), t)
            })
            .collect()
    }

    #[test]
    fn default_policy_over_two_years_keeps_the_expected_sets() {
        let verdicts = apply(&two_years(), Policy::default());
        // Daily: the newest (14:00) set of the last 7 days: Nov 16..22.
        let daily: Vec<String> = (16..=22).map(|d| format!("202611{d:02}T140000Z")).collect();
        // Weekly (ISO weeks, Monday start): newest set of W47 (Nov 22, Sunday) back to W44.
        // W47 → Nov 22, W46 → Nov 15, W45 → Nov 8, W44 → Nov 1 (all Sundays, 14:00).
        let weekly = [
            "20261122T140000Z",
            "20261115T140000Z",
            "20261108T140000Z",
            "20261101T140000Z",
        ];
        // Monthly: the newest set of each of the last 12 months: Nov 22, then each month's last day.
        let mut monthly = vec!["20261122T140000Z".to_string()];
        for (y, m, d) in [
            (2026, 10, 31),
            (2026, 9, 30),
            (2026, 8, 31),
            (2026, 7, 31),
            (2026, 6, 30),
            (2026, 5, 31),
            (2026, 4, 30),
            (2026, 3, 31),
            (2026, 2, 28),
            (2026, 1, 31),
            (2025, 12, 31),
        ] {
            monthly.push(format!("{y}{m:02}{d:02}T140000Z"));
        }
        let mut expected: Vec<String> = daily
            .into_iter()
            .chain(weekly.iter().map(|s| s.to_string()))
            .chain(monthly)
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(kept(&verdicts), expected);
        assert_eq!(verdicts.len(), 1460);

        let newest = verdicts
            .iter()
            .find(|v| v.set == "20261122T140000Z")
            .unwrap();
        assert_eq!(
            newest.reasons,
            ["daily 2026-11-22", "weekly 2026-W47", "monthly 2026-11"]
        );
        let old = verdicts
            .iter()
            .find(|v| v.set == "20251231T140000Z")
            .unwrap();
        assert_eq!(old.reasons, ["monthly 2025-12"]);
    }

    #[test]
    fn iso_weeks_cross_year_boundaries() {
        // 2026-01-01 is a Thursday in ISO week 2026-W01; 2025-12-29 (Monday) is in it too.
        let sets = vec![
            ("a".to_string(), at(2026, 1, 1, 0)),
            ("b".to_string(), at(2025, 12, 29, 0)),
            ("c".to_string(), at(2025, 12, 28, 0)),
        ];
        let v = apply(
            &sets,
            Policy {
                daily: 0,
                weekly: 2,
                monthly: 0,
            },
        );
        assert_eq!(kept(&v), ["a", "c"]);
    }

    #[test]
    fn zero_everywhere_keeps_nothing_and_fewer_sets_than_periods_keeps_all() {
        let sets = two_years();
        assert!(apply(
            &sets,
            Policy {
                daily: 0,
                weekly: 0,
                monthly: 0
            }
        )
        .iter()
        .all(|v| !v.keep));
        let few = vec![
            ("x".to_string(), at(2026, 1, 1, 0)),
            ("y".to_string(), at(2026, 3, 1, 0)),
        ];
        assert_eq!(kept(&apply(&few, Policy::default())), ["x", "y"]);
    }
}
