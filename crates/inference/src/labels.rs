//! Class names: from the model's `names` metadata (Ultralytics writes a Python dict literal,
//! `{0: 'person', 1: 'bicycle', ...}`), or from a labels file with one name per line.

use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelsError {
    #[error("class names metadata is not a {{index: 'name'}} dict: {0}")]
    Syntax(String),
    #[error("class indices must be 0..{count} without gaps; index {index} is missing")]
    Gap { index: usize, count: usize },
    #[error("cannot read labels file {path}: {error}")]
    File { path: String, error: String },
    #[error("labels file {0} has no names")]
    Empty(String),
}

/// Parses Ultralytics' `names` metadata into names ordered by class index.
pub fn parse_names_dict(text: &str) -> Result<Vec<String>, LabelsError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut entries = Vec::new();
    p.expect(b'{')?;
    if !p.peek_is(b'}') {
        loop {
            let index = p.integer()?;
            p.expect(b':')?;
            let name = p.quoted()?;
            entries.push((index, name));
            if p.peek_is(b',') {
                p.expect(b',')?;
                if p.peek_is(b'}') {
                    break; // trailing comma
                }
            } else {
                break;
            }
        }
    }
    p.expect(b'}')?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(p.error("text after the closing brace"));
    }
    entries.sort_by_key(|(i, _)| *i);
    let count = entries.len();
    for (expected, (index, _)) in entries.iter().enumerate() {
        if *index != expected {
            return Err(LabelsError::Gap {
                index: expected,
                count,
            });
        }
    }
    Ok(entries.into_iter().map(|(_, n)| n).collect())
}

/// Reads one class name per non-empty line.
pub fn read_labels_file(path: &Path) -> Result<Vec<String>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabelsError::File {
        path: path.display().to_string(),
        error: e.to_string(),
    })?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(LabelsError::Empty(path.display().to_string()));
    }
    Ok(names)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek_is(&mut self, c: u8) -> bool {
        self.skip_ws();
        self.s.get(self.i) == Some(&c)
    }
    fn error(&self, what: &str) -> LabelsError {
        LabelsError::Syntax(format!("{what} at byte {}", self.i))
    }
    fn expect(&mut self, c: u8) -> Result<(), LabelsError> {
        if self.peek_is(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }
    fn integer(&mut self) -> Result<usize, LabelsError> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.error("expected a class index"))
    }
    fn quoted(&mut self) -> Result<String, LabelsError> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(q @ (b'\'' | b'"')) => *q,
            _ => return Err(self.error("expected a quoted name")),
        };
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => {
                    let escaped = self
                        .s
                        .get(self.i)
                        .copied()
                        .ok_or_else(|| self.error("dangling escape"))?;
                    self.i += 1;
                    out.push(escaped);
                }
                c if c == quote => {
                    return String::from_utf8(out).map_err(|_| self.error("name is not UTF-8"));
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ultralytics_dict() {
        let names =
            parse_names_dict("{0: 'person', 1: 'bicycle', 2: \"traffic light\", 3: 'it\\'s'}");
        assert_eq!(
            names,
            Ok(vec![
                "person".into(),
                "bicycle".into(),
                "traffic light".into(),
                "it's".into()
            ])
        );
    }

    #[test]
    fn rejects_gaps_and_garbage() {
        assert_eq!(
            parse_names_dict("{0: 'a', 2: 'c'}"),
            Err(LabelsError::Gap { index: 1, count: 2 })
        );
        assert!(parse_names_dict("['a', 'b']").is_err());
        assert!(parse_names_dict("{0: 'a'").is_err());
        assert!(parse_names_dict("{0: 'a'} x").is_err());
    }
}
