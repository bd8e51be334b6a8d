//! The one error type of the backup service, with stable machine-readable codes.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// The stable error codes. Their string forms never change; scripts and callers match on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorCode {
    /// The options break a rule (the message names which).
    #[serde(rename = "INVALID_BACKUP_CONFIG")]
    InvalidBackupConfig,
    /// Creating the backup failed; nothing was left in the store.
    #[serde(rename = "BACKUP_CREATE_FAILED")]
    BackupCreateFailed,
    /// No backup with that id exists in the store.
    #[serde(rename = "BACKUP_NOT_FOUND")]
    BackupNotFound,
    /// The backup exists but its TTL has run out (with the 60 s safety buffer).
    #[serde(rename = "BACKUP_EXPIRED")]
    BackupExpired,
    /// Restoring failed; the target directory is as it was before.
    #[serde(rename = "BACKUP_RESTORE_FAILED")]
    BackupRestoreFailed,
}

impl ErrorCode {
    /// The stable string form, e.g. `"BACKUP_NOT_FOUND"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidBackupConfig => "INVALID_BACKUP_CONFIG",
            ErrorCode::BackupCreateFailed => "BACKUP_CREATE_FAILED",
            ErrorCode::BackupNotFound => "BACKUP_NOT_FOUND",
            ErrorCode::BackupExpired => "BACKUP_EXPIRED",
            ErrorCode::BackupRestoreFailed => "BACKUP_RESTORE_FAILED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the error was about. Every field is optional; set fields are printed with the error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorContext {
    /// The backup id concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// The directory concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// When the backup expired (RFC 3339 UTC), for `BACKUP_EXPIRED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
}

/// A backup service error: a stable [`code`](BackupError::code), a message naming the problem,
/// and [`context`](BackupError::context).
#[derive(Debug)]
pub struct BackupError {
    code: ErrorCode,
    message: String,
    context: ErrorContext,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackupError {
    /// A new error with `code` and `message` and empty context.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BackupError {
            code,
            message: message.into(),
            context: ErrorContext::default(),
            source: None,
        }
    }

    /// `INVALID_BACKUP_CONFIG` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidBackupConfig, message)
    }

    /// `BACKUP_CREATE_FAILED` with `message`.
    pub fn create_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BackupCreateFailed, message)
    }

    /// `BACKUP_NOT_FOUND` with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BackupNotFound, message)
    }

    /// `BACKUP_RESTORE_FAILED` with `message`.
    pub fn restore_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BackupRestoreFailed, message)
    }

    /// Attach the backup id to the context.
    pub fn with_id(mut self, id: impl ToString) -> Self {
        self.context.backup_id = Some(id.to_string());
        self
    }

    /// Attach the directory to the context.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.context.dir = Some(dir.into());
        self
    }

    /// Attach the expiry time to the context.
    pub fn with_expired_at(mut self, at: impl Into<String>) -> Self {
        self.context.expired_at = Some(at.into());
        self
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The stable code string, e.g. `"BACKUP_EXPIRED"`.
    pub fn code(&self) -> &'static str {
        self.code.as_str()
    }

    /// The code as an enum, for matching.
    pub fn kind(&self) -> ErrorCode {
        self.code
    }

    /// The human-readable message (without code or context).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context: backup id, directory, expiry time.
    pub fn context(&self) -> &ErrorContext {
        &self.context
    }

    /// The error as the JSON object the CLI prints: `{"code","message","context"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "code": self.code(),
            "message": self.message,
            "context": self.context,
        })
    }

    /// Re-label the error with another code, keeping message, context and source. Used when
    /// a lower step's error must be reported under the operation's code.
    pub(crate) fn recode(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(id) = &self.context.backup_id {
            write!(f, " (backup {id})")?;
        }
        if let Some(dir) = &self.context.dir {
            write!(f, " (dir {})", dir.display())?;
        }
        if let Some(at) = &self.context.expired_at {
            write!(f, " (expired at {at})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result alias for the backup service.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;
