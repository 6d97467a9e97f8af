//! A parameter value against its declaration: its type, its options, and
//! its validation block (min/max for numbers, regex for strings, monotonic
//! against the previous build's value).

use crate::parameter::Validation;

pub struct Rules<'a> {
    /// `string`, `number`, `bool` or `list(string)`.
    pub kind: &'a str,
    /// The option values; empty when any value goes.
    pub options: &'a [String],
    pub validation: Option<&'a Validation>,
}

/// Why `value` breaks `rules`, as the end of a sentence that starts with
/// the value's role ("value", "default").
pub fn check(rules: &Rules, value: &str, previous: Option<&str>) -> Result<(), String> {
    let in_options = |v: &str| rules.options.is_empty() || rules.options.iter().any(|o| o == v);
    let not_an_option = |v: &str| {
        format!(
            "{v:?} is not one of the options ({})",
            rules.options.join(", ")
        )
    };
    match rules.kind {
        "string" => {}
        "number" => {
            let n: f64 = value
                .parse()
                .map_err(|_| format!("{value:?} is not a number"))?;
            if let Some(v) = rules.validation {
                check_number(v, n, previous)?;
            }
        }
        "bool" => {
            if value != "true" && value != "false" {
                return Err(format!("{value:?} is not true or false"));
            }
        }
        "list(string)" => {
            let items: Vec<String> = serde_json::from_str(value)
                .map_err(|_| format!("{value:?} is not a JSON list of strings"))?;
            if let Some(bad) = items.iter().find(|i| !in_options(i)) {
                return Err(not_an_option(bad));
            }
            return Ok(());
        }
        other => {
            return Err(format!(
                "type {other:?} is not one of string, number, bool, list(string)"
            ));
        }
    }
    if !in_options(value) {
        return Err(not_an_option(value));
    }
    if let Some(pattern) = rules.validation.and_then(|v| v.regex.as_ref_option()) {
        let re = regex::Regex::new(pattern)
            .map_err(|e| format!("cannot be checked: bad validation regex: {e}"))?;
        if !re.is_match(value) {
            let why = rules
                .validation
                .and_then(|v| v.error.as_ref_option().cloned())
                .unwrap_or_else(|| format!("does not match {pattern}"));
            return Err(format!("{value:?}: {why}"));
        }
    }
    Ok(())
}

fn check_number(v: &Validation, n: f64, previous: Option<&str>) -> Result<(), String> {
    if let Some(min) = v.min.as_ref_option().filter(|min| n < **min as f64) {
        return Err(format!("{n} is below the minimum {min}"));
    }
    if let Some(max) = v.max.as_ref_option().filter(|max| n > **max as f64) {
        return Err(format!("{n} is above the maximum {max}"));
    }
    let previous = previous.and_then(|p| p.parse::<f64>().ok());
    match (v.monotonic.as_ref_option().map(String::as_str), previous) {
        (Some("increasing"), Some(prev)) if n < prev => Err(format!(
            "{n} is below the previous build's {prev} (monotonic increasing)"
        )),
        (Some("decreasing"), Some(prev)) if n > prev => Err(format!(
            "{n} is above the previous build's {prev} (monotonic decreasing)"
        )),
        (Some(m), _) if m != "increasing" && m != "decreasing" => Err(format!(
            "cannot be checked: monotonic must be increasing or decreasing, not {m:?}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tf_provider::value::Value;

    fn validation(min: Option<i64>, max: Option<i64>, monotonic: Option<&str>) -> Validation {
        Validation {
            min: min.into(),
            max: max.into(),
            monotonic: monotonic.map(String::from).into(),
            regex: Value::Null,
            error: Value::Null,
            min_disabled: Value::Null,
            max_disabled: Value::Null,
        }
    }

    #[test]
    fn options_and_types() {
        let options = ["eu".to_string(), "us".to_string()];
        let rules = Rules {
            kind: "string",
            options: &options,
            validation: None,
        };
        assert_eq!(check(&rules, "eu", None), Ok(()));
        assert_eq!(
            check(&rules, "mars", None),
            Err("\"mars\" is not one of the options (eu, us)".into())
        );
        let list = Rules {
            kind: "list(string)",
            ..rules
        };
        assert_eq!(check(&list, r#"["us","eu"]"#, None), Ok(()));
        assert!(check(&list, r#"["us","x"]"#, None).is_err());
        let boolean = Rules {
            kind: "bool",
            options: &[],
            validation: None,
        };
        assert!(check(&boolean, "yes", None).is_err());
        assert!(check(&boolean, "false", None).is_ok());
    }

    #[test]
    fn number_ranges_and_monotonic() {
        let v = validation(Some(1), Some(10), Some("increasing"));
        let rules = Rules {
            kind: "number",
            options: &[],
            validation: Some(&v),
        };
        assert_eq!(check(&rules, "5", Some("3")), Ok(()));
        assert!(check(&rules, "0", None).unwrap_err().contains("minimum 1"));
        assert!(
            check(&rules, "11", None)
                .unwrap_err()
                .contains("maximum 10")
        );
        assert!(
            check(&rules, "2", Some("3"))
                .unwrap_err()
                .contains("previous")
        );
        assert!(check(&rules, "two", None).is_err());
    }
}
