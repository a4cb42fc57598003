//! A pseudo-terminal for tests of interactive commands: the binary runs in a private tmux
//! server; tests type keys and read the screen.

use std::process::Command;
use std::time::{Duration, Instant};

use super::Workspace;

/// A command running in its own tmux server, killed on drop.
pub struct Terminal {
    socket: String,
}

impl Terminal {
    /// Whether tmux is available (the test command installs it).
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts `runbook ARGS` in the workspace, with its state and config dirs, on a
    /// 160x50 terminal.
    pub fn start(ws: &Workspace, args: &[&str]) -> Terminal {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "{}-{}",
            super::run_id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut command = format!(
            "cd '{}' && env RUNBOOK_STATE_DIR='{}' RUNBOOK_CONFIG_DIR='{}' RUNBOOK_DATA_DIR='{}' '{}'",
            ws.path().display(),
            ws.join("state").display(),
            ws.join("config").display(),
            ws.join("data").display(),
            env!("CARGO_BIN_EXE_runbook"),
        );
        for arg in args {
            command.push_str(&format!(" '{arg}'"));
        }
        // Keep the pane after the command ends, so its last words can be read.
        command.push_str("; echo \"[exited $?]\"; sleep 30");
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "160", "-y", "50"])
            .arg(command)
            .env_remove("TMUX")
            .status()
            .expect("start tmux");
        assert!(status.success(), "tmux did not start");
        Terminal { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text literally (no Enter).
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "0", "-l", text]);
    }

    /// Presses keys by tmux name: `Enter`, `Tab`, `C-c`, `C-d`.
    pub fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "0", key]);
    }

    /// Types a line and presses Enter.
    pub fn line(&self, text: &str) {
        self.type_text(text);
        self.press("Enter");
    }

    /// The screen and scrollback as text.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-200", "-t", "0"])
    }

    /// Waits until the screen shows `text` `count` times; panics with the screen after 20 s.
    pub fn wait_for_count(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= count {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the terminal never showed {text:?} {count} time(s); screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&self, text: &str) -> String {
        self.wait_for_count(text, 1)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}
