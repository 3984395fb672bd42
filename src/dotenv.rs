//! A strict parser for the optional `.env` file.
//!
//! It accepts the common subset that shells and docker compose agree on:
//! `KEY=value`, an optional `export ` prefix, `#` comments, blank lines, and
//! values in single quotes (literal) or double quotes (`\"`, `\\` and `\n`
//! escapes). Anything else is an error that names the line, because a typo
//! silently ignored is a setting silently lost.

use std::fmt;

/// Why one line of a `.env` file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotEnvError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for DotEnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for DotEnvError {}

/// Parses the text of a `.env` file into `(name, value)` pairs, in file order.
/// A name given twice keeps both; the caller lets the later one win.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, DotEnvError> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let fail = |reason: String| DotEnvError {
            line: line_number,
            reason,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err(fail(format!(
                "expected NAME=value, found {:?}",
                shorten(line)
            )));
        };
        let name = name.trim_end();
        if !is_valid_name(name) {
            return Err(fail(format!(
                "{:?} is not a variable name: use letters, digits and _, not starting with a digit",
                shorten(name)
            )));
        }
        let value = parse_value(value.trim_start()).map_err(fail)?;
        pairs.push((name.to_owned(), value));
    }
    Ok(pairs)
}

fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn parse_value(value: &str) -> Result<String, String> {
    match value.chars().next() {
        Some(quote @ ('"' | '\'')) => parse_quoted(&value[1..], quote),
        _ => {
            // An unquoted value ends at a ` #` comment, as in a shell.
            let value = match value.find(" #") {
                Some(comment) => &value[..comment],
                None => value,
            };
            Ok(value.trim_end().to_owned())
        }
    }
}

fn parse_quoted(rest: &str, quote: char) -> Result<String, String> {
    let mut value = String::new();
    let mut chars = rest.char_indices();
    while let Some((index, c)) = chars.next() {
        if c == quote {
            let after = rest[index + 1..].trim_start();
            if after.is_empty() || after.starts_with('#') {
                return Ok(value);
            }
            return Err(format!(
                "unexpected text {:?} after the closing {quote}",
                shorten(after)
            ));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            }
        } else {
            value.push(c);
        }
    }
    Err(format!("the value has no closing {quote}"))
}

/// Keeps error messages to one readable line.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("valid .env")
    }

    #[test]
    fn parses_plain_quoted_exported_and_commented_lines() {
        let text = "# comment\n\nPORT=9000\nexport HOST = 127.0.0.1\nA='x # y'\nB=\"a\\\"b\\nc\" # note\nC=v # trailing\nD=\n";
        assert_eq!(
            pairs(text),
            vec![
                ("PORT".into(), "9000".into()),
                ("HOST".into(), "127.0.0.1".into()),
                ("A".into(), "x # y".into()),
                ("B".into(), "a\"b\nc".into()),
                ("C".into(), "v".into()),
                ("D".into(), "".into()),
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().line, 2);
        assert_eq!(parse("1A=1").unwrap_err().line, 1);
        assert!(parse("A=\"open").unwrap_err().reason.contains("closing"));
        assert!(parse("A='x' y").unwrap_err().reason.contains("after"));
        assert!(parse("=value").is_err());
    }

    #[test]
    fn handles_multibyte_text_without_panicking() {
        assert!(parse("é=1").is_err());
        assert!(parse("A=\"é\\").is_err());
        assert_eq!(pairs("A='é'"), vec![("A".into(), "é".into())]);
    }
}
