//! The CLI's one error type and its exit codes, as `az`'s: 1 an error, 2 a usage error, 3 a resource
//! that does not exist. Printed as one line: `ERROR: (Code) message`.

use galleon_client::ClientError;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit: i32,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit: 1 }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit: 2 }
    }

    pub fn not_found(message: impl Into<String>) -> CliError {
        CliError { message: message.into(), exit: 3 }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        let exit = match &e {
            ClientError::Api { status, .. } if status.as_u16() == 404 => 3,
            _ => 1,
        };
        // One line, whatever the daemon said.
        CliError { message: e.to_string().replace('\n', " "), exit }
    }
}

impl From<crate::edit::EditError> for CliError {
    fn from(e: crate::edit::EditError) -> CliError {
        CliError::usage(e.0)
    }
}

impl From<crate::output::QueryError> for CliError {
    fn from(e: crate::output::QueryError) -> CliError {
        CliError::usage(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::new(e.to_string())
    }
}
