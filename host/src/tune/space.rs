//! The search space (`fracture tune --space`): one TOML table per hyperparameter, keyed by its
//! dotted path in the `--hyp` TOML (`[lr0]`, `["augment.fliplr"]`, `["frcnn.loss_classifier"]`,
//! or nested `[augment.fliplr]`), holding `low`/`high` (with `log = true` for a log scale and
//! `int = true` to round) or `choices = [...]`. A point of the unit cube becomes values, and
//! values are applied to a base [`TrainConfig`] through its TOML form, so an unknown name is an
//! error naming the key and the result is validated like any `--hyp` file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::train::config::TrainConfig;

#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("search space: {0}")]
    Parse(String),
    #[error("search space key \"{key}\": {message}")]
    Key { key: String, message: String },
}

fn key_err(key: &str, message: impl std::fmt::Display) -> SpaceError {
    SpaceError::Key { key: key.to_string(), message: message.to_string() }
}

/// What one parameter may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// A continuous range; `log`: uniform in log space; `int`: rounded to an integer.
    Range { low: f64, high: f64, log: bool, int: bool },
    /// One of these values, equally likely.
    Choices(Vec<toml::Value>),
}

/// One searched hyperparameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Dotted path in the TrainConfig TOML (`augment.fliplr`).
    pub key: String,
    pub domain: Domain,
}

/// The parameters, sorted by key (dimension `d` of a point is `params[d]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Space {
    pub params: Vec<Param>,
}

/// A table as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamTable {
    low: Option<f64>,
    high: Option<f64>,
    #[serde(default)]
    log: bool,
    #[serde(default)]
    int: bool,
    choices: Option<Vec<toml::Value>>,
}

const PARAM_KEYS: [&str; 5] = ["low", "high", "log", "int", "choices"];

impl Space {
    pub fn from_file(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SpaceError::Io { path: path.display().to_string(), source })?;
        Self::from_toml_str(&text)
            .map_err(|e| SpaceError::Parse(format!("{}: {}", path.display(), e)))
    }

    pub fn from_toml_str(text: &str) -> Result<Self, SpaceError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| SpaceError::Parse(e.to_string()))?;
        let mut params = BTreeMap::new();
        collect(&table, "", &mut params)?;
        if params.is_empty() {
            return Err(SpaceError::Parse("no parameters (one table per hyperparameter)".into()));
        }
        Ok(Self { params: params.into_values().collect() })
    }

    pub fn dims(&self) -> usize {
        self.params.len()
    }

    pub fn keys(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.key.as_str()).collect()
    }

    /// The values at point `u` (one coordinate in [0, 1) per parameter).
    pub fn values(&self, u: &[f64]) -> Vec<(String, toml::Value)> {
        self.params
            .iter()
            .zip(u)
            .map(|(p, &u)| {
                let u = u.clamp(0.0, 1.0);
                let v = match &p.domain {
                    Domain::Range { low, high, log, int } => {
                        let x = if *log {
                            (low.ln() + u * (high.ln() - low.ln())).exp()
                        } else {
                            low + u * (high - low)
                        };
                        let x = x.clamp(*low, *high);
                        if *int {
                            toml::Value::Integer(x.round() as i64)
                        } else {
                            toml::Value::Float(x)
                        }
                    }
                    Domain::Choices(c) => {
                        c[((u * c.len() as f64) as usize).min(c.len() - 1)].clone()
                    }
                };
                (p.key.clone(), v)
            })
            .collect()
    }

    /// Checks every key against `base` (it must name a setting, of a fitting type) and that the
    /// ends of every range and every choice give a valid configuration.
    pub fn check(&self, base: &TrainConfig) -> Result<(), SpaceError> {
        for p in &self.params {
            let ends: Vec<toml::Value> = match &p.domain {
                Domain::Range { low, high, int, .. } if *int => {
                    vec![
                        toml::Value::Integer(low.round() as i64),
                        toml::Value::Integer(high.round() as i64),
                    ]
                }
                Domain::Range { low, high, .. } => {
                    vec![toml::Value::Float(*low), toml::Value::Float(*high)]
                }
                Domain::Choices(c) => c.clone(),
            };
            for v in ends {
                apply(base, &[(p.key.clone(), v)])?;
            }
        }
        Ok(())
    }
}

/// Walks the file's tables: a table with parameter keys is a parameter, any other table a
/// namespace (`[augment.fliplr]` is `augment` -> `fliplr`).
fn collect(
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, Param>,
) -> Result<(), SpaceError> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let toml::Value::Table(t) = v else {
            return Err(key_err(&key, "expected a table such as `[lr0]` with low/high or choices"));
        };
        if !t.keys().any(|k| PARAM_KEYS.contains(&k.as_str())) {
            collect(t, &key, out)?;
            continue;
        }
        let spec: ParamTable =
            toml::Value::Table(t.clone()).try_into().map_err(|e| key_err(&key, e))?;
        let domain = match (spec.low, spec.high, spec.choices) {
            (Some(low), Some(high), None) => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(key_err(&key, format!("need low < high, got {low} and {high}")));
                }
                if spec.log && low <= 0.0 {
                    return Err(key_err(&key, "log = true needs low > 0"));
                }
                Domain::Range { low, high, log: spec.log, int: spec.int }
            }
            (None, None, Some(c)) => {
                if c.is_empty() {
                    return Err(key_err(&key, "choices is empty"));
                }
                if spec.log || spec.int {
                    return Err(key_err(&key, "log and int apply to low/high ranges"));
                }
                Domain::Choices(c)
            }
            _ => return Err(key_err(&key, "give either low and high, or choices")),
        };
        if out.insert(key.clone(), Param { key: key.clone(), domain }).is_some() {
            return Err(key_err(&key, "given twice"));
        }
    }
    Ok(())
}

/// `base` with `values` set at their dotted keys. Integers become floats where the setting is
/// a float (and floats round where it is an integer), so `choices = [0, 0.5]` works for a
/// probability; the result must deserialise (unknown names are errors naming the key), must
/// keep every value (a name the configuration silently dropped is refused too) and validate.
pub fn apply(
    base: &TrainConfig,
    values: &[(String, toml::Value)],
) -> Result<TrainConfig, SpaceError> {
    let mut doc = toml::Value::try_from(base)
        .map_err(|e| SpaceError::Parse(format!("serialising the base configuration: {e}")))?;
    for (key, value) in values {
        let parts: Vec<&str> = key.split('.').collect();
        let (last, parents) = parts.split_last().ok_or_else(|| key_err(key, "empty key"))?;
        let mut node = &mut doc;
        for p in parents {
            let toml::Value::Table(t) = node else {
                return Err(key_err(key, format!("{p} is not a table in the configuration")));
            };
            node = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        }
        let toml::Value::Table(t) = node else {
            return Err(key_err(key, "its parent is not a table in the configuration"));
        };
        let v = match (t.get(*last), value) {
            (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(*i as f64),
            (Some(toml::Value::Integer(_)), toml::Value::Float(f)) if f.is_finite() => {
                toml::Value::Integer(f.round() as i64)
            }
            _ => value.clone(),
        };
        t.insert(last.to_string(), v);
    }
    let cfg: TrainConfig = doc.try_into().map_err(|e| match values {
        [(key, _)] => key_err(key, format!("{e}")),
        _ => SpaceError::Parse(format!("{e}")),
    })?;
    // Everything set must survive the round trip (a struct without deny_unknown_fields would
    // drop an unknown name silently).
    let back = toml::Value::try_from(&cfg)
        .map_err(|e| SpaceError::Parse(format!("serialising the configuration: {e}")))?;
    for (key, _) in values {
        let mut node = Some(&back);
        for p in key.split('.') {
            node = node.and_then(|n| n.get(p));
        }
        if node.is_none() {
            return Err(key_err(
                key,
                "not a setting of the training configuration (`fracture train --hyp`)",
            ));
        }
    }
    cfg.validate().map_err(|e| match values {
        [(key, v)] => key_err(key, format!("{v}: {e}")),
        _ => SpaceError::Parse(e.to_string()),
    })?;
    Ok(cfg)
}

/// Values as JSON (`{"lr0": 0.001, "augment.fliplr": 0.3}`), for the store and reports.
pub fn values_json(values: &[(String, toml::Value)]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null)))
        .collect();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SPACE: &str = r#"
        [lr0]
        low = 1e-4
        high = 1e-2
        log = true

        ["augment.fliplr"]
        low = 0.0
        high = 0.5

        [frcnn.loss_classifier]
        choices = [0.5, 1, 2]

        [close_mosaic]
        low = 0
        high = 10
        int = true

        [optimizer]
        choices = ["adamw", "sgd"]
    "#;

    #[test]
    fn parses_flat_quoted_and_nested_keys_sorted() {
        let s = Space::from_toml_str(SPACE).unwrap();
        assert_eq!(
            s.keys(),
            vec!["augment.fliplr", "close_mosaic", "frcnn.loss_classifier", "lr0", "optimizer"]
        );
        assert_eq!(
            s.params[3].domain,
            Domain::Range { low: 1e-4, high: 1e-2, log: true, int: false }
        );
        s.check(&TrainConfig::default()).unwrap();
    }

    #[test]
    fn samples_log_scale_choices_and_integers() {
        let s = Space::from_toml_str(SPACE).unwrap();
        let v = s.values(&[0.5, 0.55, 0.0, 0.5, 0.99]);
        assert_eq!(v[0], ("augment.fliplr".to_string(), toml::Value::Float(0.25)));
        assert_eq!(v[1].1, toml::Value::Integer(6));
        assert_eq!(v[2].1, toml::Value::Float(0.5));
        // log scale: the middle is the geometric mean
        let lr = v[3].1.as_float().unwrap();
        assert!((lr - 1e-3).abs() < 1e-12, "{lr}");
        assert_eq!(v[4].1, toml::Value::String("sgd".into()));
        assert_eq!(s.values(&[0.0, 0.0, 0.34, 0.0, 0.0])[2].1, toml::Value::Integer(1));
        assert_eq!(s.values(&[0.0, 0.0, 0.999, 0.0, 0.0])[2].1, toml::Value::Integer(2));

        let cfg = apply(&TrainConfig::default(), &v).unwrap();
        assert_eq!(cfg.augment.fliplr, 0.25);
        assert_eq!(cfg.close_mosaic, 6);
        assert!((cfg.lr0 - 1e-3).abs() < 1e-12);
        assert_eq!(cfg.optimizer, crate::train::optimizer::OptimizerKind::Sgd);
        // an integer choice lands in a float setting
        let cfg = apply(
            &TrainConfig::default(),
            &[("frcnn.loss_classifier".into(), toml::Value::Integer(2))],
        )
        .unwrap();
        assert_eq!(cfg.frcnn.loss_classifier, 2.0);
        // untouched settings keep the base's values
        assert_eq!(cfg.batch, TrainConfig::default().batch);
        // an Option setting absent from the base
        let cfg =
            apply(&TrainConfig::default(), &[("cls_pos_weight".into(), toml::Value::Float(3.0))])
                .unwrap();
        assert_eq!(cfg.cls_pos_weight, Some(3.0));
    }

    #[test]
    fn unknown_keys_and_bad_tables_name_the_key() {
        let base = TrainConfig::default();
        for (text, key) in [
            ("[lr1]\nlow = 0.001\nhigh = 0.01\n", "lr1"),
            ("[\"augment.flip\"]\nlow = 0.0\nhigh = 0.5\n", "augment.flip"),
            ("[\"frcnn.loss_box\"]\nchoices = [1.0]\n", "frcnn.loss_box"),
            ("[\"lr0.x\"]\nchoices = [1.0]\n", "lr0.x"),
        ] {
            let s = Space::from_toml_str(text).unwrap();
            let e = s.check(&base).unwrap_err().to_string();
            assert!(e.contains(&format!("\"{key}\"")), "{e}");
        }
        for (text, needle) in [
            ("[lr0]\nlow = 0.01\nhigh = 0.001\n", "low < high"),
            ("[lr0]\nlow = 0.0\nhigh = 0.01\nlog = true\n", "low > 0"),
            ("[lr0]\nlow = 0.001\n", "either low and high"),
            ("[lr0]\nlo = 0.001\nhigh = 0.1\n", "lo"),
            ("[lr0]\nchoices = []\n", "empty"),
            ("lr0 = 0.1\n", "expected a table"),
            ("", "no parameters"),
        ] {
            let e = Space::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        // a range that leaves the valid settings is caught before any trial runs
        let s = Space::from_toml_str("[lr0]\nlow = 0.1\nhigh = 2.0\n").unwrap();
        let e = s.check(&base).unwrap_err().to_string();
        assert!(e.contains("lr0") && e.contains("(0, 1)"), "{e}");
        let s = Space::from_toml_str("[optimizer]\nchoices = [\"adam\"]\n").unwrap();
        assert!(s.check(&base).unwrap_err().to_string().contains("optimizer"));
    }
}
