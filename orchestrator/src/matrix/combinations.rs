//! Matrix expansion with GitHub Actions' `exclude` and `include` semantics, over named axes of string values.
//!
//! 1. The axes' cartesian product, in axis order (the first axis varies slowest).
//! 2. `exclude`: each entry names some axes; a combination matching all of them (a glob per axis) is removed.
//! 3. `include`, entry by entry: an entry whose axis values all agree with an original (not excluded, not added)
//!    combination is merged into every such combination; its other keys are added to them and may overwrite what
//!    an earlier include added, never an axis value. An entry that merges into none is added as a new combination
//!    after the others. Here a new combination must be complete: an axis it leaves out is filled in only when that
//!    axis has a single value.

use glob::Pattern;

/// One axis of the matrix: `key` in a combination (`app`), `list` in the file (`apps`).
#[derive(Debug, Clone)]
pub struct Axis {
    pub key: &'static str,
    pub list: &'static str,
    pub values: Vec<String>,
}

/// A combination of one value per axis, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combination {
    pub values: Vec<String>,
    pub origin: Origin,
    /// The include entries merged into this combination (or, for an added one, the entry that added it), in order.
    pub includes: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Index of the value on each axis.
    Axes(Vec<usize>),
    /// Added by this include entry.
    Include(usize),
}

/// An exclude or include entry that cannot be applied: the field path inside the matrix and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ExpandError {
    pub field: String,
    pub message: String,
}

impl ExpandError {
    fn new(field: String, message: String) -> Self {
        ExpandError { field, message }
    }
}

/// Expands `axes`, minus `exclude` (a glob or nothing per axis), plus `include` (a value or nothing per axis).
pub fn expand(
    axes: &[Axis],
    exclude: &[Vec<Option<Pattern>>],
    include: &[Vec<Option<String>>],
) -> Result<Vec<Combination>, ExpandError> {
    for (e, entry) in exclude.iter().enumerate() {
        if entry.iter().all(Option::is_none) {
            return Err(ExpandError::new(
                format!("exclude[{e}]"),
                "names no axis, so it would exclude every cell".into(),
            ));
        }
        for (axis, pattern) in axes.iter().zip(entry) {
            if let Some(pattern) = pattern
                && !axis.values.iter().any(|v| pattern.matches(v))
            {
                return Err(ExpandError::new(
                    format!("exclude[{e}].{}", axis.key),
                    format!("{:?} matches no value of {}: {:?}", pattern.as_str(), axis.list, axis.values),
                ));
            }
        }
    }

    let mut originals = Vec::new();
    let mut index = vec![0usize; axes.len()];
    let total: usize = axes.iter().map(|a| a.values.len()).product();
    for _ in 0..total {
        let values: Vec<String> = axes.iter().zip(&index).map(|(a, &i)| a.values[i].clone()).collect();
        let excluded = exclude.iter().any(|entry| {
            entry.iter().zip(&values).all(|(pattern, value)| pattern.as_ref().is_none_or(|p| p.matches(value)))
        });
        if !excluded {
            originals.push(Combination { values, origin: Origin::Axes(index.clone()), includes: Vec::new() });
        }
        // Odometer: the last axis turns fastest.
        for k in (0..axes.len()).rev() {
            index[k] += 1;
            if index[k] < axes[k].values.len() {
                break;
            }
            index[k] = 0;
        }
    }

    let mut added: Vec<Combination> = Vec::new();
    for (i, entry) in include.iter().enumerate() {
        let mut merged = false;
        for combination in &mut originals {
            let agrees =
                entry.iter().zip(&combination.values).all(|(want, have)| want.as_ref().is_none_or(|w| w == have));
            if agrees {
                combination.includes.push(i);
                merged = true;
            }
        }
        if merged {
            continue;
        }
        let mut values = Vec::with_capacity(axes.len());
        for (axis, want) in axes.iter().zip(entry) {
            match want {
                Some(value) => values.push(value.clone()),
                None if axis.values.len() == 1 => values.push(axis.values[0].clone()),
                None => {
                    return Err(ExpandError::new(
                        format!("include[{i}]"),
                        format!(
                            "matches no combination, so it adds one, but it lacks `{}` ({} has {} values)",
                            axis.key,
                            axis.list,
                            axis.values.len()
                        ),
                    ));
                }
            }
        }
        if let Some(previous) = added.iter().find(|c| c.values == values) {
            let Origin::Include(first) = previous.origin else { unreachable!("added combinations come from include") };
            return Err(ExpandError::new(
                format!("include[{i}]"),
                format!("adds the same cell as include[{first}]: {}", describe(axes, &values)),
            ));
        }
        added.push(Combination { values, origin: Origin::Include(i), includes: vec![i] });
    }
    originals.extend(added);
    Ok(originals)
}

/// `app=online-boutique, policy=hpa, ...` for messages.
pub fn describe(axes: &[Axis], values: &[String]) -> String {
    axes.iter().zip(values).map(|(a, v)| format!("{}={v}", a.key)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(key: &'static str, values: &[&str]) -> Axis {
        Axis { key, list: key, values: values.iter().map(|s| s.to_string()).collect() }
    }

    fn entry(axes: &[Axis], pairs: &[(&str, &str)]) -> Vec<Option<String>> {
        axes.iter().map(|a| pairs.iter().find(|(k, _)| *k == a.key).map(|(_, v)| v.to_string())).collect()
    }

    fn values(c: &[Combination]) -> Vec<Vec<&str>> {
        c.iter().map(|c| c.values.iter().map(String::as_str).collect()).collect()
    }

    #[test]
    fn exclude_is_a_partial_match_with_globs() {
        let axes = [axis("os", &["linux", "windows", "macos"]), axis("version", &["12", "14", "16"])];
        let exclude = vec![
            vec![Some(Pattern::new("macos").unwrap()), Some(Pattern::new("12").unwrap())],
            vec![Some(Pattern::new("win*").unwrap()), None],
        ];
        let out = expand(&axes, &exclude, &[]).unwrap();
        assert_eq!(values(&out), [["linux", "12"], ["linux", "14"], ["linux", "16"], ["macos", "14"], ["macos", "16"]]);
    }

    #[test]
    fn include_merges_into_matching_originals_and_adds_the_rest() {
        // GitHub's documented example: fruit x animal, with include entries that merge, overwrite added
        // values, and add new combinations. Non-axis keys are modelled as the indices in `includes`.
        let axes = [axis("fruit", &["apple", "pear"]), axis("animal", &["cat", "dog"])];
        let include = vec![
            entry(&axes, &[]),                                       // color: green -> every original
            entry(&axes, &[("animal", "cat")]),                      // color: pink -> the cats
            entry(&axes, &[("fruit", "apple")]),                     // shape: circle -> the apples
            entry(&axes, &[("fruit", "banana"), ("animal", "cat")]), // a new combination
        ];
        let out = expand(&axes, &[], &include).unwrap();
        assert_eq!(
            values(&out),
            [["apple", "cat"], ["apple", "dog"], ["pear", "cat"], ["pear", "dog"], ["banana", "cat"]]
        );
        assert_eq!(out[0].includes, [0, 1, 2]);
        assert_eq!(out[1].includes, [0, 2]);
        assert_eq!(out[2].includes, [0, 1]);
        assert_eq!(out[3].includes, [0]);
        assert_eq!(out[4].includes, [3]);
        assert_eq!(out[4].origin, Origin::Include(3));
    }

    #[test]
    fn include_does_not_merge_into_added_combinations() {
        let axes = [axis("fruit", &["apple"]), axis("animal", &["cat", "dog"])];
        let include =
            vec![entry(&axes, &[("fruit", "banana"), ("animal", "cat")]), entry(&axes, &[("fruit", "banana")])];
        let err = expand(&axes, &[], &include).unwrap_err();
        assert_eq!(err.field, "include[1]", "banana without an animal cannot be completed: {err:?}");
    }

    #[test]
    fn an_excluded_combination_can_be_included_back() {
        let axes = [axis("a", &["1", "2"]), axis("b", &["x"])];
        let exclude = vec![vec![Some(Pattern::new("2").unwrap()), None]];
        let out = expand(&axes, &exclude, &[entry(&axes, &[("a", "2")])]).unwrap();
        assert_eq!(values(&out), [["1", "x"], ["2", "x"]]);
        assert_eq!(out[1].origin, Origin::Include(0));
    }

    #[test]
    fn errors_name_the_entry() {
        let axes = [axis("a", &["1", "2"]), axis("b", &["x", "y"])];
        let bad_exclude = vec![vec![Some(Pattern::new("3").unwrap()), None]];
        assert_eq!(expand(&axes, &bad_exclude, &[]).unwrap_err().field, "exclude[0].a");
        assert_eq!(expand(&axes, &[vec![None, None]], &[]).unwrap_err().field, "exclude[0]");
        let incomplete = vec![entry(&axes, &[("a", "3")])];
        assert_eq!(expand(&axes, &[], &incomplete).unwrap_err().field, "include[0]");
        let twice = vec![entry(&axes, &[("a", "3"), ("b", "x")]), entry(&axes, &[("a", "3"), ("b", "x")])];
        assert_eq!(expand(&axes, &[], &twice).unwrap_err().field, "include[1]");
    }
}
