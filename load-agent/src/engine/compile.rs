//! A scenario compiled for one target: templates parsed once, variables indexed, everything that does not depend
//! on drawn values (paths, headers, bodies) built once, so a request costs as little as possible to send.

use std::collections::HashMap;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Method, Uri};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::target::Target;
use crate::scenario::{Request, RequestKind, Scenario, Template, TemplatePart, Variable, WaitTime};

/// A scenario ready to run.
pub struct Compiled {
    pub classes: Vec<Class>,
    /// `(method, name)` of every request, as the statistics record them; [`Req::stat`] indexes it.
    pub stats_keys: Vec<(String, String)>,
    /// Where each key lies in `stats_keys`, so compiling stays linear in the requests.
    stats_index: HashMap<(String, String), u32>,
    /// The scenario's variables, in name order (as [`Draws`] holds their values).
    variables: Vec<Variable>,
}

/// A user class.
pub struct Class {
    pub on_start: Vec<Req>,
    pub tasks: Vec<TaskDef>,
    total_weight: u64,
    pub wait: Option<WaitTime>,
}

pub struct TaskDef {
    weight: u64,
    pub requests: Vec<Req>,
}

/// One request of a task.
pub struct Req {
    pub stat: u32,
    pub kind: ReqKind,
}

pub enum ReqKind {
    Http(HttpReq),
    Redis(Vec<Tpl>),
}

pub struct HttpReq {
    pub method: Method,
    pub path: PathTpl,
    pub headers: Vec<(HeaderName, HeaderTpl)>,
    pub body: BodyTpl,
}

/// The request target (base path + path): prebuilt when it has no variables.
pub enum PathTpl {
    Static(Uri),
    Dynamic(Tpl),
}

pub enum HeaderTpl {
    Static(HeaderValue),
    Dynamic(Tpl),
}

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

pub enum BodyTpl {
    None,
    /// A body without variables, with its content type.
    Static(&'static str, Bytes),
    Form(Vec<(String, Tpl)>),
    Json(JsonTpl),
}

/// A JSON body whose string leaves are templates.
pub enum JsonTpl {
    Literal(serde_json::Value),
    String(Tpl),
    Array(Vec<JsonTpl>),
    Object(Vec<(String, JsonTpl)>),
}

/// A template with variables resolved to indices into [`Compiled`]'s variables.
pub struct Tpl(Vec<Part>);

enum Part {
    Literal(String),
    Variable(usize),
}

/// How a variable's value is written into the output.
#[derive(Clone, Copy)]
pub enum Escape {
    /// As is (headers, form fields before form encoding, JSON strings, Redis arguments).
    None,
    /// Characters a URI may not hold are percent-encoded, as python-requests requotes URLs.
    Uri,
}

/// Values drawn for one task execution, so all its requests agree (e.g. the product added to the cart).
#[derive(Default)]
pub struct Draws(Vec<Drawn>);

#[derive(Clone, Copy)]
enum Drawn {
    Choice(usize),
    Integer(i64),
}

impl Compiled {
    /// Compiles a validated scenario for `target`; every request must suit it (`redis` or HTTP).
    pub fn new(scenario: &Scenario, target: &Target) -> Result<Compiled, String> {
        let names: Vec<&str> = scenario.variables.keys().map(String::as_str).collect();
        let mut compiled = Compiled {
            classes: Vec::new(),
            stats_keys: Vec::new(),
            stats_index: HashMap::new(),
            variables: scenario.variables.values().cloned().collect(),
        };
        for user in &scenario.users {
            let mut on_start = Vec::new();
            for request in &user.on_start {
                on_start.push(compiled.request(request, target, &names)?);
            }
            let mut tasks = Vec::new();
            for task in &user.tasks {
                let mut requests = Vec::new();
                for request in &task.requests {
                    requests.push(compiled.request(request, target, &names)?);
                }
                tasks.push(TaskDef { weight: task.weight as u64, requests });
            }
            let total_weight = tasks.iter().map(|t| t.weight).sum();
            if total_weight == 0 {
                return Err(format!("user class {:?} has no task with a positive weight", user.name));
            }
            compiled.classes.push(Class { on_start, tasks, total_weight, wait: user.wait });
        }
        Ok(compiled)
    }

    fn stat(&mut self, method: &str, name: String) -> u32 {
        let key = (method.to_string(), name);
        if let Some(&i) = self.stats_index.get(&key) {
            return i;
        }
        let i = self.stats_keys.len() as u32;
        self.stats_index.insert(key.clone(), i);
        self.stats_keys.push(key);
        i
    }

    fn request(&mut self, request: &Request, target: &Target, names: &[&str]) -> Result<Req, String> {
        let tpl = |text: &str| Tpl::parse(text, names);
        match (request.kind(), target) {
            (RequestKind::Redis { command, args }, Target::Redis { .. }) => {
                let mut parts = vec![tpl(command)?];
                for arg in args {
                    parts.push(tpl(arg)?);
                }
                Ok(Req { stat: self.stat("REDIS", request.stats_name()), kind: ReqKind::Redis(parts) })
            }
            (RequestKind::Http { method, path }, Target::Http { base_path, .. }) => {
                let method_value =
                    Method::from_bytes(method.as_bytes()).map_err(|e| format!("method {method:?}: {e}"))?;
                let path_tpl = tpl(&format!("{base_path}{path}"))?;
                let path = match path_tpl.literal() {
                    Some(text) => {
                        let mut escaped = String::new();
                        push_escaped(&mut escaped, text, Escape::Uri);
                        PathTpl::Static(
                            Uri::from_maybe_shared(Bytes::from(escaped))
                                .map_err(|e| format!("path {path:?} is not a valid request path: {e}"))?,
                        )
                    }
                    None => PathTpl::Dynamic(path_tpl),
                };
                let mut headers = Vec::new();
                for (name, value) in &request.headers {
                    let header = HeaderName::try_from(name.as_str()).map_err(|e| format!("header {name:?}: {e}"))?;
                    let value_tpl = tpl(value)?;
                    let value = match value_tpl.literal() {
                        Some(text) => HeaderTpl::Static(
                            HeaderValue::from_str(text).map_err(|e| format!("header {name:?} value: {e}"))?,
                        ),
                        None => HeaderTpl::Dynamic(value_tpl),
                    };
                    headers.push((header, value));
                }
                let body = match (&request.form, &request.json) {
                    (Some(form), _) => {
                        let fields = form
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), tpl(v)?)))
                            .collect::<Result<Vec<(String, Tpl)>, String>>()?;
                        if fields.iter().all(|(_, v)| v.literal().is_some()) {
                            BodyTpl::Static(FORM, Bytes::from(self.render_form(&fields, &Draws::default())))
                        } else {
                            BodyTpl::Form(fields)
                        }
                    }
                    (None, Some(json)) => {
                        let json = JsonTpl::new(json, names)?;
                        match json {
                            JsonTpl::Literal(value) => BodyTpl::Static(
                                JSON,
                                Bytes::from(serde_json::to_vec(&value).map_err(|e| e.to_string())?),
                            ),
                            other => BodyTpl::Json(other),
                        }
                    }
                    (None, None) => BodyTpl::None,
                };
                Ok(Req {
                    stat: self.stat(method, request.stats_name()),
                    kind: ReqKind::Http(HttpReq { method: method_value, path, headers, body }),
                })
            }
            (RequestKind::Redis { .. }, Target::Http { .. }) => {
                Err("redis requests need a redis:// target, not an http:// one".to_string())
            }
            (RequestKind::Http { .. }, Target::Redis { .. }) => {
                Err("HTTP requests need an http:// target, not a redis:// one".to_string())
            }
        }
    }

    /// A user class's next task: picked independently at random in proportion to the weights (Locust's
    /// semantics, not round robin).
    pub fn pick_task<'a>(&self, class: &'a Class, rng: &mut ChaCha8Rng) -> &'a TaskDef {
        let mut pick = rng.gen_range(0..class.total_weight);
        for task in &class.tasks {
            if pick < task.weight {
                return task;
            }
            pick -= task.weight;
        }
        unreachable!("the weights sum to total_weight")
    }

    /// Draws every variable once: a value from a list uniformly, an integer of a range (both ends included).
    pub fn draw(&self, rng: &mut ChaCha8Rng, draws: &mut Draws) {
        draws.0.clear();
        for variable in &self.variables {
            draws.0.push(match variable {
                Variable::Values(values) => Drawn::Choice(rng.gen_range(0..values.len())),
                Variable::Range([low, high]) => Drawn::Integer(rng.gen_range(*low..=*high)),
            });
        }
    }

    /// Appends `tpl` rendered with `draws` to `out`.
    pub fn render_into(&self, tpl: &Tpl, draws: &Draws, out: &mut String, escape: Escape) {
        for part in &tpl.0 {
            match part {
                Part::Literal(text) => push_escaped(out, text, escape),
                Part::Variable(i) => match (draws.0.get(*i), &self.variables[*i]) {
                    (Some(Drawn::Choice(c)), Variable::Values(values)) => push_escaped(out, &values[*c], escape),
                    (Some(Drawn::Integer(n)), _) => {
                        use std::fmt::Write;
                        let _ = write!(out, "{n}");
                    }
                    _ => {}
                },
            }
        }
    }

    pub fn render(&self, tpl: &Tpl, draws: &Draws) -> String {
        let mut out = String::new();
        self.render_into(tpl, draws, &mut out, Escape::None);
        out
    }

    /// `application/x-www-form-urlencoded`, as python's `urlencode` writes it (Locust's requests).
    pub fn render_form(&self, fields: &[(String, Tpl)], draws: &Draws) -> String {
        let mut out = String::new();
        let mut value = String::new();
        for (i, (key, tpl)) in fields.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            form_encode_into(&mut out, key);
            out.push('=');
            value.clear();
            self.render_into(tpl, draws, &mut value, Escape::None);
            form_encode_into(&mut out, &value);
        }
        out
    }

    pub fn render_json(&self, json: &JsonTpl, draws: &Draws) -> serde_json::Value {
        match json {
            JsonTpl::Literal(value) => value.clone(),
            JsonTpl::String(tpl) => serde_json::Value::String(self.render(tpl, draws)),
            JsonTpl::Array(items) => items.iter().map(|item| self.render_json(item, draws)).collect(),
            JsonTpl::Object(fields) => {
                fields.iter().map(|(key, value)| (key.clone(), self.render_json(value, draws))).collect()
            }
        }
    }
}

impl Tpl {
    fn parse(text: &str, names: &[&str]) -> Result<Tpl, String> {
        let template = Template::parse(text)?;
        let parts = template
            .parts
            .into_iter()
            .map(|part| match part {
                TemplatePart::Literal(text) => Ok(Part::Literal(text)),
                TemplatePart::Variable(name) => names
                    .iter()
                    .position(|n| *n == name)
                    .map(Part::Variable)
                    .ok_or_else(|| format!("unknown template variable {name:?} in {text:?}")),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Tpl(parts))
    }

    /// The text, when the template has no variables.
    fn literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }
}

impl JsonTpl {
    fn new(value: &serde_json::Value, names: &[&str]) -> Result<JsonTpl, String> {
        let compiled = match value {
            serde_json::Value::String(text) => {
                let tpl = Tpl::parse(text, names)?;
                if tpl.literal().is_some() {
                    return Ok(JsonTpl::Literal(value.clone()));
                }
                JsonTpl::String(tpl)
            }
            serde_json::Value::Array(items) => {
                JsonTpl::Array(items.iter().map(|item| JsonTpl::new(item, names)).collect::<Result<_, _>>()?)
            }
            serde_json::Value::Object(fields) => {
                JsonTpl::Object(fields.iter().map(|(k, v)| Ok((k.clone(), JsonTpl::new(v, names)?))).collect::<Result<
                    _,
                    String,
                >>(
                )?)
            }
            other => return Ok(JsonTpl::Literal(other.clone())),
        };
        // Containers whose leaves are all literal are literal too.
        let literal = match &compiled {
            JsonTpl::Array(items) => items.iter().all(|i| matches!(i, JsonTpl::Literal(_))),
            JsonTpl::Object(fields) => fields.iter().all(|(_, v)| matches!(v, JsonTpl::Literal(_))),
            _ => false,
        };
        Ok(if literal { JsonTpl::Literal(value.clone()) } else { compiled })
    }
}

fn push_escaped(out: &mut String, text: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(text),
        Escape::Uri => {
            for c in text.chars() {
                let keep = c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/?%".contains(c);
                if keep {
                    out.push(c);
                } else {
                    let mut buf = [0u8; 4];
                    for byte in c.encode_utf8(&mut buf).bytes() {
                        push_percent(out, byte);
                    }
                }
            }
        }
    }
}

fn push_percent(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(byte >> 4) as usize] as char);
    out.push(HEX[(byte & 15) as usize] as char);
}

/// python's `quote_plus`: letters, digits and `_.-~` stay, a space becomes `+`, every other byte `%XX`.
fn form_encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => push_percent(out, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rand::SeedableRng;

    use super::*;

    fn compile(yaml: &str) -> Compiled {
        let scenario = Scenario::parse(yaml, Path::new("t.yaml")).unwrap();
        Compiled::new(&scenario, &Target::parse("http://h:1/base").unwrap()).unwrap()
    }

    #[test]
    fn forms_are_encoded_as_python_does() {
        let c = compile(
            "variables: {v: {values: ['a b@c.d*~']}}\nusers: [{name: u, tasks: [{name: t, requests: [{method: POST, path: /, form: {q: 'x&y=z', e: '{{v}}'}}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}\n",
        );
        let ReqKind::Http(req) = &c.classes[0].tasks[0].requests[0].kind else { panic!() };
        let BodyTpl::Form(fields) = &req.body else { panic!("a form with a variable is rendered per task") };
        let mut draws = Draws::default();
        c.draw(&mut ChaCha8Rng::seed_from_u64(1), &mut draws);
        assert_eq!(c.render_form(fields, &draws), "e=a+b%40c.d%2A~&q=x%26y%3Dz");
    }

    #[test]
    fn static_parts_are_built_once_and_paths_escaped() {
        let c = compile(
            "variables: {p: {values: ['a b/ü']}, n: {range: [3, 3]}}\nusers: [{name: u, tasks: [{name: t, requests: [\
             {method: GET, path: '/x y', headers: {X-A: '1'}, json: {k: [1, 'two']}},\
             {method: GET, path: '/p/{{p}}?n={{n}}', name: named, json: {k: '{{n}}'}}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}\n",
        );
        let requests = &c.classes[0].tasks[0].requests;
        let ReqKind::Http(first) = &requests[0].kind else { panic!() };
        let PathTpl::Static(uri) = &first.path else { panic!("no variables: prebuilt") };
        assert_eq!(uri.to_string(), "/base/x%20y");
        assert!(matches!(first.headers[0].1, HeaderTpl::Static(_)));
        let BodyTpl::Static(JSON, body) = &first.body else { panic!("literal json is prebuilt") };
        assert_eq!(&body[..], br#"{"k":[1,"two"]}"#);
        let ReqKind::Http(second) = &requests[1].kind else { panic!() };
        let PathTpl::Dynamic(tpl) = &second.path else { panic!() };
        let mut draws = Draws::default();
        c.draw(&mut ChaCha8Rng::seed_from_u64(1), &mut draws);
        let mut out = String::new();
        c.render_into(tpl, &draws, &mut out, Escape::Uri);
        assert_eq!(out, "/base/p/a%20b/%C3%BC?n=3");
        let BodyTpl::Json(json) = &second.body else { panic!() };
        assert_eq!(c.render_json(json, &draws), serde_json::json!({"k": "3"}));
        assert_eq!(c.stats_keys, vec![("GET".into(), "/x y".into()), ("GET".into(), "named".into())]);
    }

    #[test]
    fn tasks_are_picked_by_weight_and_ranges_include_both_ends() {
        let c = compile(
            "variables: {n: {range: [1, 3]}}\nusers: [{name: u, tasks: [{name: a, weight: 1, requests: [{method: GET, path: /a}]}, {name: b, weight: 3, requests: [{method: GET, path: /b}]}]}]\nshape: {stages: [{end: 1, users: 1, spawn_rate: 1}]}\n",
        );
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let class = &c.classes[0];
        let b = (0..40_000).filter(|_| c.pick_task(class, &mut rng).weight == 3).count();
        assert!((b as f64 / 40_000.0 - 0.75).abs() < 0.01, "{b}");
        let mut seen = [false; 4];
        let mut draws = Draws::default();
        for _ in 0..200 {
            c.draw(&mut rng, &mut draws);
            let Drawn::Integer(n) = draws.0[0] else { panic!() };
            seen[n as usize] = true;
        }
        assert_eq!(seen, [false, true, true, true]);
    }
}
