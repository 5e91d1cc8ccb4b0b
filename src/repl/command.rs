//! The REPL's backslash commands (`\d`, `\timing`, `\q`, ...), parsed into [`Command`]
//! before anything runs, so a typo is reported rather than half-executed.

use std::path::PathBuf;

use super::output::OutputFormat;

/// A backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\d`: every table and view.
    ListTables,
    /// `\d name`: one table's columns, connector and options.
    Describe(String),
    /// `\h [function]`: the functions, or one function's documentation.
    Help(Option<String>),
    /// `\i file.sql`: runs the statements of a file.
    Include(PathBuf),
    /// `\timing [on|off]`: shows how long each statement took.
    Timing(Option<bool>),
    /// `\format table|json|csv`: how query results are printed.
    Format(OutputFormat),
    /// `\q`: leaves the REPL.
    Quit,
    /// `\?`: the list of commands.
    Commands,
}

/// What `\?` prints.
pub const COMMANDS_HELP: &str = "\
  \\d              list tables and views
  \\d NAME         describe a table or view: columns, connector, options
  \\h [FUNCTION]   list functions, or show one function's documentation
  \\i FILE         run the statements of a .sql file
  \\timing [on|off] show how long each statement takes
  \\format table|json|csv   how query results are printed
  \\q              quit (Ctrl-D does too)
  \\?              this list
Statements end with ';' and may span lines. Ctrl-C cancels a running query.";

impl Command {
    /// Parses a line that starts with a backslash.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim().trim_end_matches(';').trim();
        let mut words = line.splitn(2, char::is_whitespace);
        let name = words.next().unwrap_or_default();
        let argument = words.next().map(str::trim).filter(|a| !a.is_empty());
        let none = |command: Command| match argument {
            None => Ok(command),
            Some(extra) => Err(format!("{name} takes no argument (got '{extra}')")),
        };
        match name {
            "\\d" => Ok(match argument {
                None => Self::ListTables,
                Some(table) => Self::Describe(table.to_string()),
            }),
            "\\h" => Ok(Self::Help(argument.map(str::to_string))),
            "\\i" => match argument {
                Some(path) => Ok(Self::Include(PathBuf::from(path))),
                None => Err("\\i needs a file: \\i pipeline.sql".into()),
            },
            "\\timing" => match argument.map(str::to_ascii_lowercase).as_deref() {
                None => Ok(Self::Timing(None)),
                Some("on") => Ok(Self::Timing(Some(true))),
                Some("off") => Ok(Self::Timing(Some(false))),
                Some(other) => Err(format!("\\timing takes on or off, not '{other}'")),
            },
            "\\format" => match argument {
                Some(format) => OutputFormat::parse(format).map(Self::Format),
                None => Err("\\format needs one of table, json, csv".into()),
            },
            "\\q" | "\\quit" => none(Self::Quit),
            "\\?" | "\\help" => none(Self::Commands),
            other => Err(format!(
                "unknown command '{other}' (\\? lists the commands)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_and_without_arguments() {
        assert_eq!(Command::parse("\\d"), Ok(Command::ListTables));
        assert_eq!(
            Command::parse("\\d events "),
            Ok(Command::Describe("events".into()))
        );
        assert_eq!(Command::parse("\\h"), Ok(Command::Help(None)));
        assert_eq!(
            Command::parse("\\h score_tree"),
            Ok(Command::Help(Some("score_tree".into())))
        );
        assert_eq!(Command::parse("\\timing"), Ok(Command::Timing(None)));
        assert_eq!(
            Command::parse("\\timing off"),
            Ok(Command::Timing(Some(false)))
        );
        assert_eq!(
            Command::parse("\\format csv"),
            Ok(Command::Format(OutputFormat::Csv))
        );
        assert_eq!(Command::parse("\\q"), Ok(Command::Quit));
        assert_eq!(
            Command::parse("\\i a.sql"),
            Ok(Command::Include(PathBuf::from("a.sql")))
        );
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(
            Command::parse("\\x")
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(Command::parse("\\format xml").unwrap_err().contains("xml"));
        assert!(
            Command::parse("\\q now")
                .unwrap_err()
                .contains("no argument")
        );
        assert!(Command::parse("\\i").unwrap_err().contains("needs a file"));
        assert!(Command::parse("\\timing maybe").is_err());
    }
}
