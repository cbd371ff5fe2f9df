//! Size and range limits of a scenario, so that no input, from a file or the control API, can hold the agent's
//! memory or CPU: lists and maps are bounded while they are read (a list over its limit is refused at its first
//! element too many, before the rest is read), a whole scenario is bounded in elements, and every number has a
//! range.
//!
//! | what                                         | limit            |
//! |----------------------------------------------|------------------|
//! | user classes                                 | 64               |
//! | tasks of one class                           | 1,000            |
//! | requests of one task, or of one `on_start`   | 100              |
//! | requests of the whole scenario               | 10,000           |
//! | variables; values of one variable            | 1,000; 10,000    |
//! | headers, form fields, redis arguments         | 100 per request  |
//! | values in one request's `json` body           | 10,000           |
//! | stages, ramps or arrival-rate stages          | 100,000          |
//! | elements of the whole scenario (all of the above, and JSON values) | 200,000 |
//! | durations (stage ends, ramps, deadline)      | up to 7 days     |
//! | `request_timeout_s`                          | up to 3,600 s    |
//! | waits (`constant`, `between`, `constant_pacing`) | up to 86,400 s |
//! | `constant_throughput`                        | 1/86,400 to 1,000,000 per s |
//! | `spawn_rate`                                 | up to 1,000,000 users/s |
//! | arrival rates (`start_rate`, `target`)        | up to 10,000,000 task starts/s |
//! | names (scenario, user class, task, request's stats name) | 1,024 characters |
//! | an HTTP request's path (before templates are filled) | 8,192 characters |
//! | the distinct stats names of a scenario, together | 262,144 bytes |

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub const MAX_USER_CLASSES: usize = 64;
pub const MAX_TASKS_PER_CLASS: usize = 1_000;
pub const MAX_REQUESTS_PER_TASK: usize = 100;
pub const MAX_REQUESTS: usize = 10_000;
pub const MAX_VARIABLES: usize = 1_000;
pub const MAX_VALUES_PER_VARIABLE: usize = 10_000;
/// Headers, form fields, or redis command parts of one request.
pub const MAX_FIELDS_PER_REQUEST: usize = 100;
pub const MAX_JSON_VALUES_PER_REQUEST: usize = 10_000;
pub const MAX_STAGES: usize = 100_000;
/// Everything counted above, together: what one scenario may cost to hold, whatever its body size.
pub const MAX_ELEMENTS: usize = 200_000;

/// Seven days: the longest run, stage end or ramp.
pub const MAX_DURATION_S: f64 = 7.0 * 86_400.0;
pub const MAX_REQUEST_TIMEOUT_S: f64 = 3_600.0;
pub const MAX_WAIT_S: f64 = 86_400.0;
pub const MAX_THROUGHPUT_PER_USER: f64 = 1_000_000.0;
pub const MAX_SPAWN_RATE: f64 = 1_000_000.0;
pub const MAX_ARRIVAL_RATE: f64 = 10_000_000.0;
/// Names are written into every per-second window and every CSV row: a long one costs at each second, not once.
pub const MAX_NAME_CHARS: usize = 1_024;
pub const MAX_PATH_CHARS: usize = 8_192;
/// All distinct stats names of a scenario, in bytes: what one window may spend on names.
pub const MAX_STATS_NAMES_BYTES: usize = 262_144;

/// At most `max` characters.
pub(super) fn not_too_long(field: &str, value: &str, max: usize) -> Result<(), (String, String)> {
    let chars = value.chars().count();
    if chars > max {
        return Err((field.to_string(), format!("is {chars} characters long; at most {max}: its limit")));
    }
    Ok(())
}

thread_local! {
    /// Elements the scenario being read may still hold; `None` outside a scenario.
    static ELEMENTS_LEFT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Counts the elements of one scenario while it is read (on this thread); restores the outer count when dropped,
/// so scenarios read inside others (or after a failed read) count on their own.
pub(super) struct ElementBudget {
    outer: Option<usize>,
}

impl ElementBudget {
    pub(super) fn begin() -> ElementBudget {
        ElementBudget { outer: ELEMENTS_LEFT.with(|left| left.replace(Some(MAX_ELEMENTS))) }
    }
}

impl Drop for ElementBudget {
    fn drop(&mut self) {
        ELEMENTS_LEFT.with(|left| left.set(self.outer));
    }
}

/// Takes one element from the budget of the scenario being read.
fn charge<E: de::Error>() -> Result<(), E> {
    ELEMENTS_LEFT.with(|left| match left.get() {
        None => Ok(()),
        Some(0) => Err(E::custom(format_args!(
            "the scenario holds more than {MAX_ELEMENTS} elements in all (list and map entries, JSON values): \
             its size limit"
        ))),
        Some(n) => {
            left.set(Some(n - 1));
            Ok(())
        }
    })
}

fn too_many<E: de::Error>(max: usize) -> E {
    E::custom(format_args!("holds more than {max} entries: the limit here"))
}

struct SeqVisitor<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for SeqVisitor<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {MAX} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // The hint comes from the input: trust it only up to the limit.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(1024));
        while let Some(item) = seq.next_element()? {
            if out.len() == MAX {
                return Err(too_many(MAX));
            }
            charge()?;
            out.push(item);
        }
        Ok(out)
    }
}

/// A list of at most `MAX` entries (`#[serde(deserialize_with = "limits::list::<MAX, _, _>")]`).
pub fn list<'de, const MAX: usize, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(SeqVisitor::<T, MAX>(PhantomData))
}

/// A bounded list that may be absent or null.
pub fn optional_list<'de, const MAX: usize, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    struct Bounded<T, const MAX: usize>(Vec<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            list::<MAX, D, T>(d).map(Bounded)
        }
    }
    Ok(Option::<Bounded<T, MAX>>::deserialize(d)?.map(|b| b.0))
}

struct MapVisitor<V, const MAX: usize>(PhantomData<V>);

impl<'de, V: Deserialize<'de>, const MAX: usize> Visitor<'de> for MapVisitor<V, MAX> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a map of at most {MAX} entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, V>()? {
            if out.len() == MAX {
                return Err(too_many(MAX));
            }
            charge()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// A map of at most `MAX` entries.
pub fn map<'de, const MAX: usize, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<BTreeMap<String, V>, D::Error> {
    d.deserialize_map(MapVisitor::<V, MAX>(PhantomData))
}

/// A bounded map that may be absent or null.
pub fn optional_map<'de, const MAX: usize, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, V>>, D::Error> {
    struct Bounded<V, const MAX: usize>(BTreeMap<String, V>);
    impl<'de, V: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<V, MAX> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            map::<MAX, D, V>(d).map(Bounded)
        }
    }
    Ok(Option::<Bounded<V, MAX>>::deserialize(d)?.map(|b| b.0))
}

/// Reads a JSON value, counting its values against `left` (this body's) and the scenario's budget.
struct JsonSeed<'a> {
    left: &'a Cell<usize>,
}

impl JsonSeed<'_> {
    fn count<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get() {
            0 => Err(E::custom(format_args!(
                "holds more than {MAX_JSON_VALUES_PER_REQUEST} JSON values: the limit of one request body"
            ))),
            n => {
                self.left.set(n - 1);
                charge()
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(v.into())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(v.into())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(v.into())
    }

    fn visit_unit<E: de::Error>(self) -> Result<serde_json::Value, E> {
        self.count()?;
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<serde_json::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<serde_json::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<serde_json::Value, A::Error> {
        self.count()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(JsonSeed { left: self.left })? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<serde_json::Value, A::Error> {
        self.count()?;
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(JsonSeed { left: self.left })?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// A request's JSON body (absent or null: none), of at most [`MAX_JSON_VALUES_PER_REQUEST`] values.
pub fn optional_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    let left = Cell::new(MAX_JSON_VALUES_PER_REQUEST);
    match (JsonSeed { left: &left }).deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => Ok(Some(value)),
    }
}

/// `value` lies in `[low, high]` (or `(low, high]` when `low_open`), finite: the message says which range.
pub(super) fn in_range(field: &str, value: f64, low: f64, low_open: bool, high: f64) -> Result<(), (String, String)> {
    let above_low = if low_open { value > low } else { value >= low };
    if value.is_finite() && above_low && value <= high {
        return Ok(());
    }
    let range = if low_open { format!("above {low} and at most {high}") } else { format!("from {low} to {high}") };
    Err((field.to_string(), format!("must be a number {range}, got {value:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        #[serde(deserialize_with = "list::<3, _, _>")]
        items: Vec<u32>,
        #[serde(default, deserialize_with = "optional_json")]
        json: Option<serde_json::Value>,
    }

    fn read(text: &str) -> Result<Doc, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    #[test]
    fn lists_stop_at_their_limit() {
        assert_eq!(read(r#"{"items": [1, 2, 3]}"#).unwrap().items, [1, 2, 3]);
        let error = read(r#"{"items": [1, 2, 3, 4]}"#).unwrap_err();
        assert!(error.starts_with("items: holds more than 3 entries"), "{error}");
    }

    #[test]
    fn json_bodies_are_counted() {
        let doc = read(r#"{"items": [], "json": {"a": [1, "x", null]}}"#).unwrap();
        assert_eq!(doc.json, Some(serde_json::json!({"a": [1, "x", null]})));
        let big = format!(r#"{{"items": [], "json": [{}0]}}"#, "0,".repeat(MAX_JSON_VALUES_PER_REQUEST));
        let error = read(&big).unwrap_err();
        assert!(error.contains("JSON values"), "{error}");
        assert!(read(r#"{"items": [], "json": null}"#).unwrap().json.is_none());
    }

    #[test]
    fn a_scenario_budget_spans_lists_and_restores_the_outer_one() {
        let _outer = ElementBudget::begin();
        ELEMENTS_LEFT.with(|left| left.set(Some(2)));
        {
            let _inner = ElementBudget::begin();
            assert!(read(r#"{"items": [1, 2, 3]}"#).is_ok());
        }
        let error = read(r#"{"items": [1, 2, 3]}"#).unwrap_err();
        assert!(error.contains("elements in all"), "{error}");
    }

    #[test]
    fn ranges_name_their_bounds() {
        assert!(in_range("x", 5.0, 0.0, true, 10.0).is_ok());
        assert!(in_range("x", 0.0, 0.0, true, 10.0).is_err());
        assert!(in_range("x", 0.0, 0.0, false, 10.0).is_ok());
        let (field, message) = in_range("x", 1e308, 0.0, false, 10.0).unwrap_err();
        assert_eq!(field, "x");
        assert!(message.contains("from 0 to 10, got 1e308"), "{message}");
        assert!(in_range("x", f64::NAN, 0.0, false, 10.0).is_err());
    }
}
