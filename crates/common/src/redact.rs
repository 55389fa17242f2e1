//! Secrets kept out of logs, errors, metrics and `/ready`: one place that knows what a secret
//! looks like.
//!
//! Two kinds reach the services: passwords in URLs (`rtsp://user:password@camera/...`) and
//! librdkafka properties such as `sasl.password`. [`text`] masks the first in any string, even
//! one that is not a valid URL (a setting that failed to parse is exactly what gets printed);
//! [`KafkaProperties`] holds the second and never shows their values. AWS credentials never pass
//! through the services' own code: the SDK reads them from its provider chain.

use std::borrow::Cow;
use std::fmt;

/// What a masked secret is shown as.
pub const MASK: &str = "***";

/// `s` with the password of every `scheme://user:password@` in it replaced by [`MASK`] (the
/// user name stays: it says which account was used, and is not a secret by itself).
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#', ',' (a list of sources) or white
        // space; the userinfo is what precedes its last '@' (an unencoded password may hold '@').
        let end = after
            .find(|c: char| matches!(c, '/' | '?' | '#' | ',' | '"') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..=colon]);
                        out.push_str(MASK);
                        changed = true;
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Whether a librdkafka property holds a secret: passwords, keys, JAAS and OAUTHBEARER
/// configurations (which embed credentials), tokens.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key == "sasl.jaas.config"
        || key == "sasl.oauthbearer.config"
        || key == "ssl.key.pem"
        || key.ends_with(".key")
}

/// A property that is not `key=value`. It names the item by position only: a stray fragment is
/// most often the tail of a value split at an unescaped comma, that is, part of a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Kafka property (item {0} of the list): expected key=value; a comma inside a value is written \\,"
)]
pub struct KafkaPropertyError(usize);

/// Extra librdkafka properties from `--kafka-property`/`KAFKA_PROPERTIES`: `key=value` pairs
/// separated by commas. A comma inside a value is written `\,` and a backslash `\\`
/// (`sasl.password=a\,b` is the password `a,b`). Debug output and errors never show the value
/// of a secret property.
///
/// As a clap argument it never fails: clap would echo the refused value (a password) in its
/// error, so a malformed list is reported by [`KafkaProperties::merged`] instead.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties {
    pairs: Vec<(String, String)>,
    invalid: Option<KafkaPropertyError>,
}

impl KafkaProperties {
    /// Parses every given string (each flag, or the whole variable) into trimmed pairs.
    pub fn parse<S: AsRef<str>>(given: &[S]) -> Result<Self, KafkaPropertyError> {
        let mut pairs = Vec::new();
        let items = given.iter().flat_map(|g| split_unescaped(g.as_ref()));
        for (n, item) in items.filter(|i| !i.trim().is_empty()).enumerate() {
            let (key, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or(KafkaPropertyError(n + 1))?;
            pairs.push((key.to_string(), value.to_string()));
        }
        Ok(Self {
            pairs,
            invalid: None,
        })
    }

    /// All pairs of several flags, in order; the first malformed one is an error.
    pub fn merged(list: &[Self]) -> Result<Self, KafkaPropertyError> {
        if let Some(e) = list.iter().find_map(|p| p.invalid.clone()) {
            return Err(e);
        }
        Ok(Self {
            pairs: list.iter().flat_map(|p| p.pairs.iter().cloned()).collect(),
            invalid: None,
        })
    }

    /// The pairs, values in clear: for the Kafka client's configuration only.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `message` with URL passwords and the value of every secret property replaced by
    /// [`MASK`], and also the value of any property the message names: the Kafka client's
    /// configuration errors quote the value they refuse, and a misspelt `sasl.pasword` is not
    /// recognisable as a secret by its name.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = text(message).into_owned();
        for (key, value) in &self.pairs {
            if !value.is_empty() && (is_secret_property(key) || message.contains(key.as_str())) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }
}

/// An error whose message was scrubbed of secrets (see [`KafkaProperties::scrubbed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScrubbedError(pub String);

impl KafkaProperties {
    /// `result` with its error scrubbed: wraps every creation of a Kafka client.
    pub fn scrubbed<T, E: fmt::Display>(&self, result: Result<T, E>) -> Result<T, ScrubbedError> {
        result.map_err(|e| ScrubbedError(self.scrub(&e.to_string())))
    }
}

impl std::str::FromStr for KafkaProperties {
    type Err = KafkaPropertyError;

    /// One flag or the whole variable; never fails (see the type's documentation).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(&[s]).unwrap_or_else(|e| Self {
            pairs: Vec::new(),
            invalid: Some(e),
        }))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.pairs {
            if is_secret_property(key) {
                map.entry(key, &MASK);
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

/// Splits on commas not preceded by a backslash, undoing `\,` and `\\`.
fn split_unescaped(s: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let current = items.len() - 1;
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '\\')) => items[current].push(next),
                Some(other) => {
                    items[current].push('\\');
                    items[current].push(other);
                }
                None => items[current].push('\\'),
            },
            ',' => items.push(String::new()),
            c => items[current].push(c),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_anywhere_in_a_text() {
        assert_eq!(
            text("connecting to rtsp://admin:s3cret@cam.local:554/stream1 failed"),
            "connecting to rtsp://admin:***@cam.local:554/stream1 failed"
        );
        assert_eq!(
            text("cam=rtsp://u:p@ss@h/x,b=rtsps://v:w@h2?q"),
            "cam=rtsp://u:***@h/x,b=rtsps://v:***@h2?q"
        );
        assert_eq!(text("a=rtsp://u:p@h,b=x"), "a=rtsp://u:***@h,b=x");
        // Not a URL the parser accepts, and still masked.
        assert_eq!(text("rtsp://u:p%zz@[bad"), "rtsp://u:***@[bad");
        assert_eq!(text("\"rtsp://u:pw@h\""), "\"rtsp://u:***@h\"");
        assert_eq!(text("rtsp://user@h/x"), "rtsp://user@h/x");
        assert_eq!(text("no url here"), "no url here");
        assert!(matches!(text("rtsp://h/x"), Cow::Borrowed(_)));
    }

    #[test]
    fn kafka_properties_split_on_unescaped_commas() {
        let p = KafkaProperties::parse(&[
            r" security.protocol = SASL_SSL,sasl.password=a\,b\\c , a=b=c",
            "client.id=x",
        ])
        .expect("valid");
        let pairs: Vec<_> = p.iter().collect();
        assert_eq!(
            pairs,
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.password", r"a,b\c"),
                ("a", "b=c"),
                ("client.id", "x"),
            ]
        );
        assert!(KafkaProperties::parse(&["=x"]).is_err());
        let empty = KafkaProperties::parse(&[""]).expect("nothing given is no property");
        assert!(empty.iter().next().is_none());
    }

    #[test]
    fn secret_values_never_show() {
        let p = KafkaProperties::parse(&[
            "sasl.password=hunter2,ssl.key.password=k3y,sasl.jaas.config=x pw=j4as,acks=all",
        ])
        .expect("valid");
        let debug = format!("{p:?}");
        for secret in ["hunter2", "k3y", "j4as"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("\"acks\": \"all\""), "{debug}");
        assert_eq!(
            p.scrub("Invalid value \"hunter2\" for sasl.password"),
            "Invalid value \"***\" for sasl.password"
        );
        let typo = KafkaProperties::parse(&["sasl.pasword=hunter3"]).expect("valid");
        assert_eq!(
            typo.scrub("No such configuration property: \"sasl.pasword\" sasl.pasword hunter3"),
            "No such configuration property: \"sasl.pasword\" sasl.pasword ***"
        );
        // As clap gives it: accepted, and refused by `merged` without the value.
        let flag: KafkaProperties = "sasl.password=a,b".parse().expect("never fails");
        assert!(KafkaProperties::merged(&[flag]).is_err());
        // `sasl.password=a,b` unescaped: the stray "b" is part of the password.
        let bad = KafkaProperties::parse(&["acks=all,sasl.password=a,b"]).expect_err("no =");
        assert_eq!(
            bad.to_string(),
            r"invalid Kafka property (item 3 of the list): expected key=value; a comma inside a value is written \,"
        );
    }
}
