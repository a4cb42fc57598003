//! rotate-backups on synthetic backup sets: what goes, what stays and why.

mod common;

use common::Workspace;

/// One set a day at 03:00 UTC for 100 days ending 2026-11-22, plus a partial set.
fn make_sets(ws: &Workspace) -> Vec<String> {
    use chrono::{Duration, TimeZone, Utc};
    let end = Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap();
    let mut names = Vec::new();
    for day in 0..100 {
        let name = (end - Duration::days(day))
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        ws.write(&format!("backups/shop/{name}/manifest.json"), "{}");
        ws.write(
            &format!("backups/shop/{name}/volumes/data.tar.zst.age"),
            &"x".repeat(1000),
        );
        names.push(name);
    }
    ws.write(
        "backups/shop/.20261122T040000Z.partial/volumes/data.tar.zst.age",
        "half",
    );
    names
}

fn remaining(ws: &Workspace) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(ws.join("backups/shop"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dry_run_deletes_nothing_and_real_run_keeps_exactly_the_policy() {
    let ws = Workspace::new();
    let all = make_sets(&ws);
    let params = [
        "-p",
        "stack=shop",
        "-p",
        "keep_daily=3",
        "-p",
        "keep_weekly=2",
        "-p",
        "keep_monthly=3",
    ];

    let mut args = vec!["run", "rotate-backups", "--dry-run", "--json"];
    args.extend(params);
    let out = ws.run(&args);
    out.expect_code(0);
    assert_eq!(remaining(&ws).len(), 101, "a dry run deletes nothing");
    let report = out.json();
    let planned = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "fs::remove")
        .count();

    // Without a terminal and without --yes, the deletion is refused.
    let mut args = vec!["run", "rotate-backups"];
    args.extend(params);
    ws.run(&args).expect_code(3);
    assert_eq!(remaining(&ws).len(), 101);

    let mut args = vec!["run", "rotate-backups", "--yes", "--json"];
    args.extend(params);
    let out = ws.run(&args);
    out.expect_code(0);
    // Daily: Nov 22, 21, 20. Weekly (ISO): W47 → Nov 22, W46 → Nov 15. Monthly: Nov 22, Oct 31, Sep 30.
    let mut expected = vec![
        ".20261122T040000Z.partial",
        "20260930T030000Z",
        "20261031T030000Z",
        "20261115T030000Z",
        "20261120T030000Z",
        "20261121T030000Z",
        "20261122T030000Z",
    ];
    expected.sort();
    assert_eq!(remaining(&ws), expected);
    let result = &out.json()["result"];
    assert_eq!(result["deleted"].as_array().unwrap().len(), all.len() - 6);
    assert_eq!(
        result["deleted"].as_array().unwrap().len(),
        planned,
        "the dry-run plan matched the real run"
    );
    assert_eq!(result["freed_bytes"], (all.len() - 6) as u64 * 1002);
    assert!(
        out.stderr.contains(
            "keep   20261122T030000Z (daily 2026-11-22, weekly 2026-W47, monthly 2026-11)"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("incomplete set"), "{}", out.stderr);
}
