//! Where runbook keeps its state (run journals, REPL history) and looks for user playbooks.

use std::path::PathBuf;

/// The state directory: `$RUNBOOK_STATE_DIR`, else `$XDG_STATE_HOME/runbook`, else
/// `~/.local/state/runbook`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNBOOK_STATE_DIR") {
        return PathBuf::from(dir);
    }
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("runbook")
}

/// The user's config directory: `$RUNBOOK_CONFIG_DIR`, else `$XDG_CONFIG_HOME/runbook`.
/// Playbooks in its `playbooks/` and modules in its `stdlib/` override the built-in ones.
pub fn config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNBOOK_CONFIG_DIR") {
        return PathBuf::from(dir);
    }
    dirs::config_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("runbook")
}

/// The user's data directory (the local secret store lives here).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNBOOK_DATA_DIR") {
        return PathBuf::from(dir);
    }
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("runbook")
}

/// Where the journals of past runs are kept, one directory per run.
pub fn runs_dir() -> PathBuf {
    state_dir().join("runs")
}

/// Where the stack locks are, one `<stack>.lock` file per stack a locking run has acted on.
pub fn locks_dir() -> PathBuf {
    state_dir().join("locks")
}
