//! The errors the CLI reports, and the exit code each one maps to.

use crate::secrets;

/// Exit codes, documented in `runbook --help` and the README; scripts and monitoring rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// The command did what was asked.
    Success = 0,
    /// The playbook ran and failed (a step raised an error, or `--timeout` stopped it).
    Failed = 1,
    /// Bad usage: unknown playbook, invalid parameter, a playbook that does not compile.
    Usage = 2,
    /// Refused: a confirmation was not given, another run holds the stack's lock, or a dry run
    /// met an action it cannot plan.
    Refused = 3,
    /// Interrupted by Ctrl-C or SIGTERM; the journal is left resumable.
    Interrupted = 130,
}

/// What went wrong, with the context an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    /// A playbook or stdlib module that does not compile or whose header is invalid; already
    /// rendered with `file:line:col`, the source line and a caret.
    #[error("{0}")]
    Compile(String),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Interrupted(String),
    /// A playbook chose its exit code (monitoring plugins: 0 OK, 1 warning, 2 critical,
    /// 3 unknown); its output already said why.
    #[error("exit status {0}")]
    Status(i32),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error with the path or action it concerns.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The exit code scripts see for this error.
    pub fn exit_code(&self) -> i32 {
        let code = match self {
            Error::Usage(_) | Error::Compile(_) => ExitCode::Usage,
            Error::Failed(_) | Error::Io { .. } => ExitCode::Failed,
            Error::Refused(_) => ExitCode::Refused,
            Error::Interrupted(_) => ExitCode::Interrupted,
            Error::Status(code) => return *code,
        };
        code as i32
    }

    /// Whether there is anything to print (a chosen exit status was explained already).
    pub fn is_silent(&self) -> bool {
        matches!(self, Error::Status(_))
    }

    /// The message for stderr, with every known secret value masked.
    pub fn render(&self) -> String {
        let text = self.to_string();
        let text = if text.starts_with("error") {
            text
        } else {
            format!("error: {text}")
        };
        secrets::redact(&text)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
