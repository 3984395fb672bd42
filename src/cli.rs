//! The command line: a handful of words, parsed by hand.

use std::ffi::OsString;

use pulse::build_info::BUILD;
use pulse::config::SETTINGS;

/// What the binary was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Serve,
    Healthcheck,
    AlertLog,
    Migrate,
    Version,
    Help,
}

/// Exit code for a bad setting or a bad command line.
pub const EXIT_USAGE: u8 = 2;

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    let words: Vec<&str> = args
        .iter()
        .map(|a| a.to_str().unwrap_or("\u{fffd}"))
        .collect();
    match words.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["healthcheck"] => Ok(Command::Healthcheck),
        ["alert-log"] => Ok(Command::AlertLog),
        ["migrate"] => Ok(Command::Migrate),
        ["--version" | "-V" | "version"] => Ok(Command::Version),
        ["--help" | "-h" | "help"] => Ok(Command::Help),
        [word, ..] if words.len() == 1 => Err(format!("unknown command {word:?}")),
        _ => Err(format!("expected at most one command, got {}", words.len())),
    }
}

pub fn version_line() -> String {
    format!(
        "pulse {} (commit {}, {}, {})",
        BUILD.version, BUILD.commit, BUILD.rustc, BUILD.target
    )
}

pub fn help_text() -> String {
    let mut text = format!(
        "{}\n\nUSAGE:\n  pulse               serve HTTP until SIGTERM or Ctrl-C\n  pulse healthcheck   GET /livez on $HOST:$PORT (loopback when HOST is 0.0.0.0 or ::); exit 0 if it answers 200, else 1\n  pulse alert-log     receive Alertmanager webhooks on $PORT and log each alert\n  pulse migrate       apply the database migrations (PULSE_DATABASE_URL) and exit; 0 when done\n  pulse --version     print the version and build\n  pulse --help        print this help\n\nSETTINGS (environment, or a .env file in the working directory; the environment wins):\n",
        version_line()
    );
    for setting in SETTINGS {
        text.push_str(&format!(
            "  {:<27} {:<7} {}\n",
            setting.name,
            if setting.default.is_empty() {
                "unset"
            } else {
                setting.default
            },
            setting.meaning
        ));
    }
    text.push_str("\nA bad setting exits with code 2 before pulse binds its port.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, String> {
        parse(words.iter().map(OsString::from))
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse_words(&[]), Ok(Command::Serve));
        assert_eq!(parse_words(&["healthcheck"]), Ok(Command::Healthcheck));
        assert_eq!(parse_words(&["alert-log"]), Ok(Command::AlertLog));
        assert_eq!(parse_words(&["migrate"]), Ok(Command::Migrate));
        assert_eq!(parse_words(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_words(&["--help"]), Ok(Command::Help));
        assert!(parse_words(&["--port"]).unwrap_err().contains("--port"));
        assert!(parse_words(&["serve", "now"]).is_err());
    }

    /// The help and the README's configuration table name the same
    /// settings with the same defaults.
    #[test]
    fn help_and_the_readme_table_list_the_same_settings_defaults_and_meanings() {
        let help = help_text();
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a Configuration section");
        let mut rows = 0;
        for line in section.lines().filter(|line| line.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let name = cells[0].trim_start_matches("| ").trim_matches('`');
            let default = cells[1].trim_matches('`');
            // The README's meaning, its code spans plain, is --help's.
            let meaning = cells[2].trim_end_matches(" |").replace('`', "");
            let listed = help
                .lines()
                .find(|help_line| help_line.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("pulse --help does not list {name}"));
            assert!(
                listed.split_whitespace().nth(1) == Some(default),
                "{name}: the README says {default}, pulse --help says {listed:?}"
            );
            assert!(
                listed.ends_with(&format!(" {meaning}")),
                "{name}: the README says {meaning:?}, pulse --help says {listed:?}"
            );
            rows += 1;
        }
        assert_eq!(rows, SETTINGS.len(), "the README table has {rows} rows");
    }

    /// The healthcheck follows HOST, as the README's command table says.
    #[test]
    fn help_and_readme_agree_on_the_healthcheck_address() {
        let help = help_text();
        let readme = include_str!("../README.md");
        let in_help = help
            .lines()
            .find(|l| l.contains("pulse healthcheck"))
            .unwrap();
        let in_readme = readme
            .lines()
            .find(|l| l.starts_with("| `pulse healthcheck`"))
            .unwrap();
        for text in [in_help, in_readme] {
            assert!(text.contains("$HOST:$PORT"), "{text}");
        }
    }
}
