//! Diagnostics: every problem found in a site configuration, rendered rustc-style.

use std::fmt;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, e.g. "SPI 5 is reserved".
    pub message: String,
    /// Key path of the offending value, e.g. `tunnels[0].static_sa.inbound.spi`; empty for the
    /// document itself.
    pub path: String,
    /// 1-based line, or 0 when the problem has no location (e.g. the file cannot be read).
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// Length of the underlined text in characters (at least 1 when a location is known).
    pub width: u32,
    /// Short text under the caret: what was expected.
    pub label: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

/// All problems found while loading one configuration file.
///
/// `Display` renders them rustc-style:
///
/// ```text
/// error: tunnels[0].static_sa.inbound.spi: SPI 5 is reserved
///   --> site.yaml:12:10
///    |
/// 12 |     spi: 5
///    |          ^ expected an SPI of at least 256 (0x100)
/// help: SPIs 1-255 are reserved by RFC 4303 §2.1 and 0 is invalid; e.g. `spi: 0x1000`
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// Name of the file (as given by the caller) used in `-->` lines.
    pub origin: String,
    /// The problems, in document order.
    pub errors: Vec<Diagnostic>,
    /// Source text, for the snippets.
    source: String,
}

impl ConfigErrors {
    /// Creates an error list for `origin` whose snippets come from `source`.
    pub(crate) fn new(origin: &str, source: &str, mut errors: Vec<Diagnostic>) -> Self {
        // Document order; problems without a location (line 0) last.
        errors.sort_by_key(|d| (d.line == 0, d.line, d.column));
        ConfigErrors {
            origin: origin.to_string(),
            errors,
            source: source.to_string(),
        }
    }

    /// A single problem that has no location in the file (I/O, encoding, size).
    pub(crate) fn whole_file(origin: &str, message: String, help: Option<String>) -> Self {
        ConfigErrors::new(
            origin,
            "",
            vec![Diagnostic {
                message,
                path: String::new(),
                line: 0,
                column: 0,
                width: 0,
                label: String::new(),
                help,
            }],
        )
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there is no problem (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            render(f, &self.origin, &self.source, d)?;
        }
        if self.errors.len() > 1 {
            writeln!(f)?;
            writeln!(
                f,
                "error: {} problems in {}",
                self.errors.len(),
                self.origin
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn render(f: &mut fmt::Formatter<'_>, origin: &str, source: &str, d: &Diagnostic) -> fmt::Result {
    if d.path.is_empty() {
        writeln!(f, "error: {}", d.message)?;
    } else {
        writeln!(f, "error: {}: {}", d.path, d.message)?;
    }
    let text = if d.line == 0 {
        None
    } else {
        source.lines().nth(d.line as usize - 1)
    };
    match text {
        None if d.line == 0 => writeln!(f, "  --> {origin}")?,
        None => writeln!(f, "  --> {origin}:{}:{}", d.line, d.column)?,
        Some(text) => {
            let number = d.line.to_string();
            let pad = " ".repeat(number.len());
            writeln!(f, "{pad}--> {origin}:{}:{}", d.line, d.column)?;
            writeln!(f, "{pad} |")?;
            // Never echo control characters from a hostile file into a terminal.
            let shown: String = text
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\t' {
                        '\u{fffd}'
                    } else {
                        c
                    }
                })
                .collect();
            writeln!(f, "{number} | {shown}")?;
            let line_len = shown.chars().count() as u32;
            let start = d.column.saturating_sub(1).min(line_len);
            let width = d.width.max(1).min(line_len.saturating_sub(start).max(1));
            let indent: String = shown
                .chars()
                .take(start as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let carets = "^".repeat(width as usize);
            if d.label.is_empty() {
                writeln!(f, "{pad} | {indent}{carets}")?;
            } else {
                writeln!(f, "{pad} | {indent}{carets} {}", d.label)?;
            }
        }
    }
    if let Some(help) = &d.help {
        writeln!(f, "help: {help}")?;
    }
    Ok(())
}

/// Levenshtein distance between two short strings.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("replay_windo", "replay_window"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("replay_windw", &["name", "replay_window", "esn"]),
            Some("replay_window")
        );
        assert_eq!(suggest("zzzz", &["name", "replay_window"]), None);
    }

    #[test]
    fn renders_caret_under_column() {
        let e = ConfigErrors::new(
            "site.yaml",
            "a: 1\nspi: 5\n",
            vec![Diagnostic {
                message: "bad".into(),
                path: "spi".into(),
                line: 2,
                column: 6,
                width: 1,
                label: "here".into(),
                help: Some("fix it".into()),
            }],
        );
        assert_eq!(
            e.to_string(),
            "error: spi: bad\n --> site.yaml:2:6\n  |\n2 | spi: 5\n  |      ^ here\nhelp: fix it\n"
        );
    }
}
