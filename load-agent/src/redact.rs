//! Parse errors that say where and what was expected, never what the file holds. serde quotes the offending value
//! (`invalid type: string "root:x:0:0:...", expected struct X`), which would print a secret read from a wrongly
//! named file; here the quoted text is replaced by its kind and length.

/// Longest name of an unknown field or variant repeated as written (field names help fix a typo).
const NAME_SHOWN_MAX: usize = 64;

/// `message` with quoted strings and odd names from the input replaced by their kind and length.
pub fn parse_error(message: &str) -> String {
    let named = redact_unknown_names(message);
    redact_strings(&named)
}

/// serde's `unknown field `NAME`, expected ...` and `unknown variant `NAME`, ...`: NAME is kept when it looks like
/// a field name, replaced otherwise. The end is the last "`, " marker, as NAME is not escaped.
fn redact_unknown_names(message: &str) -> String {
    for prefix in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(prefix) else { continue };
        let name_start = start + prefix.len();
        let rest = &message[name_start..];
        let end = ["`, expected", "`, there are no"].iter().filter_map(|marker| rest.rfind(marker)).max();
        let (name, after) = match end {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest.strip_suffix('`').unwrap_or(rest), ""),
        };
        if is_plain_name(name) {
            return message.to_string();
        }
        let kind = &prefix[..prefix.len() - 2];
        return format!("{}{kind} (a name of {} characters){after}", &message[..start], name.chars().count());
    }
    message.to_string()
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_SHOWN_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
}

/// Every `string "..."` (a Rust-escaped string, as serde's `Unexpected::Str` prints it) becomes
/// `a string of N characters`.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(MARK) {
        out.push_str(&rest[..start]);
        let body = &rest[start + MARK.len()..];
        let (length, consumed) = escaped_length(body);
        out.push_str(&format!("a string of {length} characters"));
        rest = &body[consumed..];
    }
    out.push_str(rest);
    out
}

/// The characters of an escaped string body up to its closing quote, and the bytes read including that quote
/// (all of `body` when it is not closed).
fn escaped_length(body: &str) -> (usize, usize) {
    let mut length = 0;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (length, i + 1),
            '\\' => {
                // `\u{1f600}` is one character; every other escape is the backslash and one more.
                if let Some((_, 'u')) = chars.next() {
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                    }
                }
                length += 1;
            }
            _ => length += 1,
        }
    }
    (length, body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_become_their_length() {
        let message = "invalid type: string \"root:x:0:0:root:/root:/bin/bash\", expected struct TypeMeta";
        assert_eq!(parse_error(message), "invalid type: a string of 31 characters, expected struct TypeMeta");
        assert_eq!(
            parse_error("invalid value: string \"a\\\"b\\n\\u{1f600}\", expected x or \"y\""),
            "invalid value: a string of 5 characters, expected x or \"y\""
        );
        assert_eq!(parse_error("string \"unclosed"), "a string of 8 characters");
    }

    #[test]
    fn field_names_stay_and_odd_names_go() {
        let typo = "unknown field `weigth`, expected one of `weight`, `name`";
        assert_eq!(parse_error(typo), typo);
        let odd = "unknown field `root:x:0:0`, expected one of `a`, `b`";
        assert_eq!(parse_error(odd), "unknown field (a name of 10 characters), expected one of `a`, `b`");
        // A name holding the marker itself is cut at the last marker, so none of it shows.
        let marked = "unknown field `s`, expected e`, expected one of `a`";
        assert_eq!(parse_error(marked), "unknown field (a name of 14 characters), expected one of `a`");
        let variant = "unknown variant `pass word`, there are no variants";
        assert_eq!(parse_error(variant), "unknown variant (a name of 9 characters), there are no variants");
    }

    #[test]
    fn messages_without_quotes_are_unchanged() {
        let syntax = "did not find expected key at line 2 column 3, while parsing a block mapping";
        assert_eq!(parse_error(syntax), syntax);
    }
}
