//! The CLI's single error-reporting convention (see the crate docs in `main.rs`).

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;

/// An error ending a command: one line of text and an exit status.
#[derive(Debug)]
pub struct CliError {
    message: String,
    code: u8,
    broken_pipe: bool,
}

/// What every command's `run` returns.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error with a message and exit status 1.
    pub fn msg(message: impl Display) -> Self {
        CliError {
            message: message.to_string(),
            code: 1,
            broken_pipe: false,
        }
    }

    /// The same error with another exit status.
    #[allow(dead_code)] // part of the convention for other subcommands
    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// The message printed after `squashbox: `.
    #[allow(dead_code)]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        let dynamic: &(dyn std::error::Error + 'static) = &e;
        let broken_pipe = dynamic
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe);
        CliError {
            message: e.to_string(),
            code: 1,
            broken_pipe,
        }
    }
}

/// Prefix an error with what was being done.
pub trait Context<T> {
    /// `Err(e)` becomes `"<context>: <e>"`.
    fn context(self, context: impl Display) -> CliResult<T>;
}

impl<T, E: Into<CliError>> Context<T> for Result<T, E> {
    fn context(self, context: impl Display) -> CliResult<T> {
        self.map_err(|e| {
            let mut e: CliError = e.into();
            e.message = format!("{context}: {}", e.message);
            e
        })
    }
}

/// Print a command's error, if any, and pick the exit status.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.broken_pipe => ExitCode::SUCCESS,
        Err(e) => {
            print_line(&e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Print one line `squashbox: <message>` to stderr. Newlines inside the message are folded so
/// the convention holds even for multi-line error texts.
pub fn print_line(message: &str) {
    let one_line = message.trim_end().replace('\n', " ");
    let _ = writeln!(io::stderr().lock(), "squashbox: {one_line}");
}

/// Print a warning line `squashbox: warning: <message>`.
pub fn warn(message: impl Display) {
    print_line(&format!("warning: {message}"));
}

/// Handle a clap parse failure: help and version go to stdout with status 0; usage errors
/// become one line on stderr with status 2.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            print_line("missing subcommand (try 'squashbox --help')");
            ExitCode::from(2)
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid usage");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            print_line(&format!("{first} (try --help)"));
            ExitCode::from(2)
        }
    }
}
