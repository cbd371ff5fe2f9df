//! `{{variable}}` placeholders in request strings.

/// A parsed template: literal text and variable references, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Variable(String),
}

impl Template {
    /// Parses `text`; an unterminated `{{` or an empty `{{}}` is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("unterminated '{{{{' in {text:?}"))?;
            let name = after[..close].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in {text:?}"));
            }
            parts.push(TemplatePart::Variable(name.to_string()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The variables this template refers to.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Variable(name) => Some(name.as_str()),
            TemplatePart::Literal(_) => None,
        })
    }

    /// Renders with `lookup` supplying each variable's value.
    pub fn render<'a>(&self, mut lookup: impl FnMut(&str) -> &'a str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Literal(text) => out.push_str(text),
                TemplatePart::Variable(name) => out.push_str(lookup(name)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let t = Template::parse("/product/{{ product }}?q={{n}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), vec!["product", "n"]);
        assert_eq!(t.render(|name| if name == "product" { "P1" } else { "3" }), "/product/P1?q=3");
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(Template::parse("/a/{{b").is_err());
        assert!(Template::parse("/a/{{}}").is_err());
        assert!(Template::parse("/a/{{b c}}").is_err());
    }
}
