//! The console's statements. A closed set, matched word by word without
//! regard to case, so that what is audited is the canonical command name
//! and never free text a client typed.

/// One console command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Nothing but whitespace and semicolons.
    Empty,
    Clients,
    Stats,
    Rules,
    Keys,
    Audit,
    Config,
    Version,
    Help,
    Reload,
}

impl Command {
    /// Parses one statement (a trailing `;` allowed); None when it is not
    /// a console command, including several statements in one Query.
    pub fn parse(sql: &str) -> Option<Command> {
        let text = sql
            .trim()
            .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        if text.contains(';') {
            return None;
        }
        let words: Vec<String> = text
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        Some(match words.as_slice() {
            [] => Command::Empty,
            ["RELOAD"] => Command::Reload,
            ["SHOW", "CLIENTS"] => Command::Clients,
            ["SHOW", "STATS"] => Command::Stats,
            ["SHOW", "RULES"] => Command::Rules,
            ["SHOW", "KEYS"] => Command::Keys,
            ["SHOW", "AUDIT"] => Command::Audit,
            ["SHOW", "CONFIG"] => Command::Config,
            ["SHOW", "VERSION"] => Command::Version,
            ["SHOW", "HELP"] | ["HELP"] => Command::Help,
            _ => return None,
        })
    }

    /// The canonical text, as audited.
    pub fn name(self) -> &'static str {
        match self {
            Command::Empty => "",
            Command::Clients => "SHOW CLIENTS",
            Command::Stats => "SHOW STATS",
            Command::Rules => "SHOW RULES",
            Command::Keys => "SHOW KEYS",
            Command::Audit => "SHOW AUDIT",
            Command::Config => "SHOW CONFIG",
            Command::Version => "SHOW VERSION",
            Command::Help => "SHOW HELP",
            Command::Reload => "RELOAD",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_ignore_case_space_and_a_trailing_semicolon() {
        assert_eq!(Command::parse("show clients"), Some(Command::Clients));
        assert_eq!(Command::parse("  SHOW\n  Keys ;; "), Some(Command::Keys));
        assert_eq!(Command::parse("reload;"), Some(Command::Reload));
        assert_eq!(Command::parse(" ; "), Some(Command::Empty));
        assert_eq!(Command::parse(""), Some(Command::Empty));
    }

    #[test]
    fn anything_else_is_not_a_command() {
        for bad in [
            "SHOW CLIENTS; SHOW STATS",
            "SELECT 1",
            "SHOW CLIENT",
            "SHOW KEYS material",
            "RELOAD RULES",
        ] {
            assert_eq!(Command::parse(bad), None, "{bad}");
        }
    }
}
