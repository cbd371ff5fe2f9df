//! Each page carries its own stylesheet (a report page must work alone from file://), so each carries only
//! the rules its markup can match: a cell page has no Pareto front to style, a succeeded cell no failed badge.
//!
//! The stylesheets are our own (orchestrator/templates/*.css): rules `selectors{declarations}`, `@media`
//! blocks of such rules, and comments. A selector is kept when every element name and class it requires occurs
//! somewhere in the page; pseudo-classes and what `:not(...)` excludes are not requirements. That keeps every
//! rule that can apply, and some that cannot (a descendant selector whose parts occur apart), which is safe.

use std::collections::HashSet;

/// What a page's markup holds: its element names (lower case) and class names.
#[derive(Debug, Default)]
pub struct Used {
    elements: HashSet<String>,
    classes: HashSet<String>,
}

impl Used {
    /// The elements and classes of `html`. Text is escaped by the templates, so every `<` here opens a tag.
    pub fn of(html: &str) -> Used {
        let mut used = Used::default();
        let bytes = html.as_bytes();
        let mut i = 0;
        while let Some(offset) = html[i..].find('<') {
            let start = i + offset + 1;
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
            if end > start && bytes[start].is_ascii_alphabetic() {
                used.elements.insert(html[start..end].to_ascii_lowercase());
            }
            i = end.max(start);
        }
        // Class lists, quoted or (a single class) not.
        let mut rest = html;
        while let Some(at) = rest.find("class=") {
            rest = &rest[at + 6..];
            let (value, after) = match rest.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
                None => rest.split_at(rest.find(|c: char| c.is_ascii_whitespace() || c == '>').unwrap_or(rest.len())),
            };
            used.classes.extend(value.split_ascii_whitespace().map(str::to_string));
            rest = after;
        }
        used
    }

    /// Whether `selector` (one of a list) may match an element of the page.
    fn may_match(&self, selector: &str) -> bool {
        let bytes = selector.as_bytes();
        let (mut i, mut depth) = (0, 0);
        while i < bytes.len() {
            let c = bytes[i] as char;
            let starts_compound = i == 0 || matches!(bytes[i - 1], b' ' | b'>' | b'+' | b'~');
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                // A pseudo-class requires nothing (what its argument names is skipped by the depth count).
                ':' if depth == 0 => i += take_name(selector, i + 1).len(),
                '.' if depth == 0 => {
                    let class = take_name(selector, i + 1);
                    if !self.classes.contains(class) {
                        return false;
                    }
                    i += class.len();
                }
                c if depth == 0 && starts_compound && c.is_ascii_alphabetic() => {
                    let element = take_name(selector, i).to_ascii_lowercase();
                    // The document's own elements exist on every page.
                    if !matches!(element.as_str(), "html" | "body") && !self.elements.contains(&element) {
                        return false;
                    }
                    i += element.len() - 1;
                }
                _ => {}
            }
            i += 1;
        }
        true
    }
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn take_name(text: &str, from: usize) -> &str {
    let end = text[from..].find(|c: char| !is_name(c)).map_or(text.len(), |n| from + n);
    &text[from..end]
}

/// The rules of `stylesheet` that may apply to a page holding `used`, minified: comments, line breaks and
/// selectors nothing matches are dropped.
pub fn used_rules(stylesheet: &str, used: &Used) -> String {
    let text = strip_comments(stylesheet);
    let mut out = String::with_capacity(text.len());
    write_rules(&text, used, &mut out);
    out
}

fn write_rules(text: &str, used: &Used, out: &mut String) {
    let mut rest = text.trim();
    while let Some(open) = rest.find('{') {
        let prelude = rest[..open].trim();
        if prelude.starts_with('@') {
            // A block of rules: its closing brace follows the inner rules' own.
            let close = matching_brace(rest, open);
            let mut inner = String::new();
            write_rules(&rest[open + 1..close], used, &mut inner);
            if !inner.is_empty() {
                out.push_str(&prelude.replace(char::is_whitespace, " "));
                out.push('{');
                out.push_str(&inner);
                out.push('}');
            }
            rest = rest[close + 1..].trim_start();
            continue;
        }
        let close = rest[open..].find('}').map_or(rest.len(), |n| open + n);
        let selectors: Vec<&str> = split_top_level(prelude)
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty() && used.may_match(s))
            .collect();
        if !selectors.is_empty() {
            out.push_str(&selectors.join(","));
            out.push('{');
            out.push_str(rest[open + 1..close].trim());
            out.push('}');
        }
        rest = rest[(close + 1).min(rest.len())..].trim_start();
    }
}

/// The index of the brace closing the one at `open`.
fn matching_brace(text: &str, open: usize) -> usize {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    text.len().saturating_sub(1)
}

/// A selector list split at its commas, but not at those inside `:not(...)`.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start + 2..].find("*/").map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    out.push_str(rest);
    out.replace('\n', "")
}

/// Replaces the page's inline stylesheet (its first `<style>` element) by the rules its markup may use.
pub fn prune_page(page: &str) -> String {
    let (Some(open), Some(close)) = (page.find("<style>"), page.find("</style>")) else { return page.to_string() };
    let sheet = &page[open + 7..close];
    let body = &page[close..];
    let used = Used::of(body);
    let rules = used_rules(sheet, &used);
    let mut out = String::with_capacity(page.len() - sheet.len() + rules.len());
    out.push_str(&page[..open + 7]);
    out.push_str(&rules);
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = "/* page */\nbody{margin:0}\nh1{font-size:2em}.badge{padding:1px}\n\
        td:not(.name) .seeds{margin-left:auto}.legend .dot{width:9px}.x{}\n\
        th,td{padding:4px}.st-ok,.st-failed{background:#fee}\n\
        @media (max-width:700px){body{padding:8px}.figs{display:block}}\nsvg text{fill:#111}\n";

    #[test]
    fn only_rules_the_markup_can_match_are_kept() {
        let used = Used::of("<body><table><tr><td class=seeds>1<td><span class=\"badge st-ok\">ok</span></table>");
        assert_eq!(
            used_rules(SHEET, &used),
            "body{margin:0}.badge{padding:1px}td:not(.name) .seeds{margin-left:auto}td{padding:4px}\
             .st-ok{background:#fee}@media (max-width:700px){body{padding:8px}}"
        );
    }

    #[test]
    fn descendant_and_element_selectors_need_every_part() {
        let used =
            Used::of("<div class=\"legend figs\"><svg viewBox=\"0 0 1 1\"><text>a</text></svg><i class=\"dot\"></i>");
        let rules = used_rules(SHEET, &used);
        assert!(rules.contains(".legend .dot{width:9px}"), "{rules}");
        assert!(rules.contains("svg text{fill:#111}"), "{rules}");
        assert!(rules.contains("@media (max-width:700px){body{padding:8px}.figs{display:block}}"), "{rules}");
        assert!(!rules.contains("h1") && !rules.contains(".badge") && !rules.contains("td"), "{rules}");
    }

    #[test]
    fn escaped_text_adds_no_elements_and_the_page_keeps_its_body() {
        let page = "<html><head><style>h1{a:b}\np{c:d}</style></head><body><p>&lt;h1&gt; is text</p></body></html>";
        assert_eq!(
            prune_page(page),
            "<html><head><style>p{c:d}</style></head><body><p>&lt;h1&gt; is text</p></body></html>"
        );
    }
}
