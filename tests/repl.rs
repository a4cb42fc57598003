//! `runbook repl`: scripted over stdin, and at a real prompt through a pseudo-terminal.

mod common;

use common::terminal::Terminal;
use common::{header, require, Workspace};

fn two_step_playbook(ws: &Workspace) {
    ws.write(
        "p.rhai",
        &(header("p", &["greeting: string = \"hi\""])
            + "let a = step(\"write greeting\", || {\n    fs::write_text(\"greeting.txt\", params.greeting);\n    #{ wrote: \"greeting.txt\", bytes: params.greeting.len() }\n});\n\
               step(\"write second\", || { fs::write_text(\"second.txt\", \"2\"); 2 });\n"),
    );
}

#[test]
fn statements_from_stdin_keep_variables_functions_and_imports_and_print_records_as_tables() {
    let ws = Workspace::new();
    let input = "let x = 40;\n\
                 fn add(a) {\n    a + 2\n}\n\
                 add(x)\n\
                 if x > 1 {\n    print(`big ${x}`);\n}\n\
                 import \"backup_set\" as sets;\n\
                 [#{name: \"db\", state: \"running\"}, #{name: \"cache\", health: \"ok\"}]\n\
                 let y = nope + 1;\n\
                 add(1)\n";
    let out = ws.run_with_stdin(&["repl"], input);
    out.expect_code(0);
    assert!(out.stdout.contains("42\n"), "{}", out.stdout);
    assert!(out.stdout.contains("big 40"), "{}", out.stdout);
    assert!(
        out.stdout.contains("name   state    health"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("3\n"),
        "a function defined earlier is callable: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("<prompt>:1:9") && out.stderr.contains("nope"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_secret_stays_masked_at_the_prompt_and_in_the_journal() {
    let ws = Workspace::new();
    let canary = "canary-Pa55word-1f9e";
    let out = ws.run_env_with_stdin(
        &["repl"],
        "let s = env::secret(\"REPL_CANARY\");\ns\nprint(s);\n#{ password: s }\n`${s}`\n",
        &[("REPL_CANARY", canary)],
    );
    out.expect_code(0);
    assert!(out.stdout.contains("***"), "{}", out.stdout);
    assert!(!out.all_output().contains(canary), "{}", out.all_output());
    assert!(!ws.journals().contains(canary));
    assert!(
        ws.journals().contains("\"event\":\"entry\""),
        "every entry is journaled"
    );
}

#[test]
fn dry_run_toggle_plans_instead_of_acting_and_the_journal_lists_what_was_done() {
    let ws = Workspace::new();
    let out = ws.run_with_stdin(
        &["repl"],
        "fs::write_text(\"real.txt\", \"1\")\n:dry-run on\nfs::write_text(\"planned.txt\", \"2\")\n:journal\n",
    );
    out.expect_code(0);
    assert!(ws.join("real.txt").is_file());
    assert!(!ws.join("planned.txt").exists(), "a dry run must not write");
    assert!(
        out.stderr.contains("[dry run] would fs::write_text"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("fs::write_text: write 1 bytes"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("planned.txt"), "{}", out.stdout);
}

#[test]
fn load_steps_through_a_playbook_in_a_dry_run() {
    let ws = Workspace::new();
    two_step_playbook(&ws);
    let out = ws.run_with_stdin(
        &["repl", "--dry-run"],
        ":load p.rhai greeting=hello\n:steps\n:next\n:steps\n:run\n",
    );
    out.expect_code(0);
    let stdout = &out.stdout;
    let first = stdout.find("next  write greeting").expect(stdout);
    let result = stdout.find("wrote  greeting.txt").expect(stdout);
    let done = stdout.find("done  write greeting").expect(stdout);
    let end = stdout.find("p 1.0.0: success").expect(stdout);
    assert!(first < result && result < done && done < end, "{stdout}");
    assert!(
        stdout.contains("bytes  5"),
        "the step's result is shown: {stdout}"
    );
    assert!(stdout.contains("plan (2 changes)"), "{stdout}");
    assert!(!ws.join("greeting.txt").exists() && !ws.join("second.txt").exists());

    let out = ws.run_with_stdin(&["repl"], ":load p.rhai gretting=x\n:next\n");
    assert!(
        out.stderr.contains("unknown parameter `gretting`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no playbook loaded"), "{}", out.stderr);
}

#[test]
fn save_writes_a_playbook_that_check_accepts() {
    let ws = Workspace::new();
    let out = ws.run_with_stdin(
        &["repl"],
        "let n = 2;\nfn twice(v) {\n    v * 2\n}\nlet broken = ;\nlog::info(`n is ${twice(n)}`)\n:save incident.rhai\n",
    );
    out.expect_code(0);
    let saved = ws.read("incident.rhai");
    assert!(
        saved.starts_with("//! name: incident\n//! version: 0.1.0\n"),
        "{saved}"
    );
    assert!(
        !saved.contains("broken"),
        "failed entries are left out: {saved}"
    );
    ws.run(&["check", "incident.rhai"]).expect_code(0);
    let out = ws.run(&["run", "incident.rhai"]);
    out.expect_code(0);
    assert!(out.stderr.contains("n is 4"), "{}", out.stderr);
}

fn terminal_available() -> bool {
    require("tmux", Terminal::available(), "tmux is not installed")
}

#[test]
fn at_a_terminal_completion_multiline_ctrl_c_and_history_work() {
    if !terminal_available() {
        return;
    }
    let ws = Workspace::new();
    let term = Terminal::start(&ws, &["repl"]);
    term.wait_for("runbook> ");

    term.type_text("docker::insp");
    term.press("Tab");
    term.wait_for("docker::inspect(");
    term.press("C-u");

    term.entry_at_prompt("runbook> ", 1, "let total = 0;");
    term.entry_at_prompt("runbook> ", 2, "for i in 1..4 {");
    term.wait_for("for i in 1..4 {");
    term.line("    total += i;");
    term.line("}");
    term.entry_at_prompt("runbook> ", 3, "`total is ${total}`");
    term.wait_for("total is 6");

    term.entry_at_prompt("runbook> ", 4, "time::sleep(30)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    term.press("C-c");
    let screen = term.wait_for("interrupted");
    term.entry_at_prompt("runbook> ", 5, "`still here ${total}`");
    term.wait_for("still here 6");
    assert!(
        !screen.contains("[exited"),
        "Ctrl-C must not end the REPL:\n{screen}"
    );

    term.press("C-d");
    term.wait_for("[exited 0]");
    drop(term);

    let again = Terminal::start(&ws, &["repl"]);
    again.wait_for("runbook> ");
    again.press("Up");
    again.wait_for("runbook> `still here ${total}`");
    again.press("C-u");
    again.press("C-d");
    again.wait_for("[exited 0]");
}
