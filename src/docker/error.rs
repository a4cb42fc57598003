//! What can go wrong talking to the Docker engine, each error naming the object it concerns.

use std::fmt;
use std::time::Duration;

/// The Docker object an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The engine itself (ping, version, listings).
    Engine,
    Container(String),
    Image(String),
    Volume(String),
    Network(String),
    Stack(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Engine => f.write_str("Docker engine"),
            Target::Container(name) => write!(f, "container `{name}`"),
            Target::Image(name) => write!(f, "image `{name}`"),
            Target::Volume(name) => write!(f, "volume `{name}`"),
            Target::Network(name) => write!(f, "network `{name}`"),
            Target::Stack(name) => write!(f, "stack `{name}`"),
        }
    }
}

/// A failed call to the engine, with the context an operator needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No engine answers at the address (socket missing, connection refused, TLS failure).
    #[error("Docker engine at {host} is not reachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// The object does not exist.
    #[error("{target}: not found")]
    NotFound { target: Target },
    /// The engine refused or failed the call; `message` is the engine's own explanation.
    #[error("{target}: {message}")]
    Refused { target: Target, message: String },
    /// A wait ran out of time or can no longer succeed; `state` says where the container is.
    #[error("{target}: not {condition} after {}: {state}", humantime::format_duration(*waited))]
    NotReady {
        target: Target,
        condition: String,
        waited: Duration,
        state: String,
    },
    /// Bad input from the caller (a spec that does not parse, an unknown condition).
    #[error("{target}: {message}")]
    Invalid { target: Target, message: String },
    /// Reading or writing the local end of a stream (an archive file, a pipe) failed.
    #[error("{target}: {context}: {source}")]
    Io {
        target: Target,
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Results of engine calls.
pub type Result<T, E = DockerError> = std::result::Result<T, E>;

impl DockerError {
    /// Turns a bollard error about `target` into one an operator can act on.
    pub(crate) fn from_api(host: &str, target: Target, error: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match error {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } if target != Target::Engine && !refers_to_other_object(&target, &message) => {
                DockerError::NotFound { target }
            }
            E::DockerResponseServerError { message, .. } => DockerError::Refused {
                target,
                message: message.trim().to_string(),
            },
            E::RequestTimeoutError => DockerError::Unreachable {
                host: host.to_string(),
                reason: "no answer in time".into(),
            },
            e @ (E::HyperLegacyError { .. }
            | E::HyperResponseError { .. }
            | E::IOError { .. }
            | E::SocketNotFoundError(_)
            | E::CertPathError { .. }
            | E::CertParseError { .. }
            | E::CertMultipleKeys { .. }
            | E::NoHomePathError
            | E::UnsupportedURISchemeError { .. }) => DockerError::Unreachable {
                host: host.to_string(),
                reason: chain(&e),
            },
            other => DockerError::Refused {
                target,
                message: chain(&other),
            },
        }
    }
}

/// A 404 whose message names something else ("No such image" while creating a container) is
/// not about the target itself.
fn refers_to_other_object(target: &Target, message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    match target {
        Target::Image(_) => false,
        Target::Network(_) => lower.contains("no such container"),
        _ => lower.contains("no such image") || lower.contains("network"),
    }
}

/// An error and its sources, joined: hyper's "client error (Connect)" alone says nothing.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        }
    }

    #[test]
    fn a_missing_container_is_named() {
        let e = DockerError::from_api(
            "unix:///var/run/docker.sock",
            Target::Container("shop-db-1".into()),
            server(404, "No such container: shop-db-1"),
        );
        assert_eq!(e.to_string(), "container `shop-db-1`: not found");
    }

    #[test]
    fn a_missing_image_while_creating_is_not_a_missing_container() {
        let e = DockerError::from_api(
            "unix:///var/run/docker.sock",
            Target::Container("web".into()),
            server(404, "No such image: nginx:1.99"),
        );
        assert_eq!(e.to_string(), "container `web`: No such image: nginx:1.99");
    }

    #[test]
    fn an_unreachable_engine_names_its_address_and_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = DockerError::from_api(
            "unix:///tmp/dead.sock",
            Target::Engine,
            bollard::errors::Error::IOError { err: io },
        );
        assert_eq!(
            e.to_string(),
            "Docker engine at unix:///tmp/dead.sock is not reachable: connection refused"
        );
    }

    #[test]
    fn waits_say_how_long_and_where_the_container_is() {
        let e = DockerError::NotReady {
            target: Target::Container("db".into()),
            condition: "healthy".into(),
            waited: Duration::from_secs(30),
            state: "unhealthy; last health check exited 1: no response".into(),
        };
        assert_eq!(
            e.to_string(),
            "container `db`: not healthy after 30s: unhealthy; last health check exited 1: no response"
        );
    }
}
