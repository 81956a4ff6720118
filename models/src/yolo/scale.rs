//! The YOLO11 compound-scaling table (`scales:` in ultralytics' `yolo11.yaml`) and the two rules
//! `parse_model` applies with it: output channels `make_divisible(min(c, max_channels) * width,
//! 8)` and repeats `max(round(n * depth), 1)` for `n > 1`. Every model size is derived from this
//! one table.

use std::fmt;
use std::str::FromStr;

/// A YOLO11 model size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    N,
    S,
    M,
    L,
    X,
}

/// One row of the scale table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleParams {
    /// Multiplier on block repeats.
    pub depth: f64,
    /// Multiplier on channels.
    pub width: f64,
    /// Channel cap applied before the width multiplier.
    pub max_channels: i64,
}

/// `[depth, width, max_channels]` per size, as in `yolo11.yaml`.
const TABLE: [(Scale, ScaleParams); 5] = [
    (Scale::N, ScaleParams { depth: 0.50, width: 0.25, max_channels: 1024 }),
    (Scale::S, ScaleParams { depth: 0.50, width: 0.50, max_channels: 1024 }),
    (Scale::M, ScaleParams { depth: 0.50, width: 1.00, max_channels: 512 }),
    (Scale::L, ScaleParams { depth: 1.00, width: 1.00, max_channels: 512 }),
    (Scale::X, ScaleParams { depth: 1.00, width: 1.50, max_channels: 512 }),
];

#[derive(Debug, thiserror::Error)]
#[error("unknown YOLO11 scale `{0}` (expected one of n, s, m, l, x or yolo11n ... yolo11x)")]
pub struct UnknownScale(pub String);

impl Scale {
    pub const ALL: [Scale; 5] = [Scale::N, Scale::S, Scale::M, Scale::L, Scale::X];

    /// This size's row of the table.
    pub fn params(self) -> ScaleParams {
        // The table lists every variant once, in order.
        TABLE[self as usize].1
    }

    /// The size letter (`n`, `s`, ...).
    pub fn letter(self) -> char {
        match self {
            Scale::N => 'n',
            Scale::S => 's',
            Scale::M => 'm',
            Scale::L => 'l',
            Scale::X => 'x',
        }
    }

    /// Output channels of a layer the YAML declares with `c` channels.
    pub fn channels(self, c: i64) -> i64 {
        let p = self.params();
        make_divisible(c.min(p.max_channels) as f64 * p.width, 8)
    }

    /// Repeats of a block the YAML declares with `n` repeats (Python's round half to even).
    pub fn repeats(self, n: i64) -> i64 {
        if n > 1 { ((n as f64 * self.params().depth).round_ties_even() as i64).max(1) } else { n }
    }

    /// `parse_model` forces `c3k=True` in every C3k2 for the m, l and x sizes.
    pub fn forces_c3k(self) -> bool {
        matches!(self, Scale::M | Scale::L | Scale::X)
    }
}

/// The smallest multiple of `divisor` that is `>= x`.
pub fn make_divisible(x: f64, divisor: i64) -> i64 {
    (x / divisor as f64).ceil() as i64 * divisor
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

impl FromStr for Scale {
    type Err = UnknownScale;

    /// Accepts `n` or `yolo11n` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let letter = lower.strip_prefix("yolo11").unwrap_or(&lower);
        Scale::ALL
            .into_iter()
            .find(|sc| letter.len() == 1 && letter.starts_with(sc.letter()))
            .ok_or_else(|| UnknownScale(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table_order_matches_variants() {
        for (i, (s, _)) in TABLE.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn channel_and_repeat_rules() {
        assert_eq!(Scale::N.channels(64), 16);
        assert_eq!(Scale::N.channels(1024), 256);
        assert_eq!(Scale::M.channels(1024), 512);
        assert_eq!(Scale::X.channels(1024), 768);
        assert_eq!(Scale::X.channels(64), 96);
        assert_eq!(Scale::N.repeats(2), 1);
        assert_eq!(Scale::L.repeats(2), 2);
        assert_eq!(Scale::N.repeats(1), 1);
    }

    #[test]
    fn parses_names() {
        assert_eq!("s".parse::<Scale>().unwrap(), Scale::S);
        assert_eq!("YOLO11x".parse::<Scale>().unwrap(), Scale::X);
        assert!("yolo11q".parse::<Scale>().is_err());
        assert!("".parse::<Scale>().is_err());
    }
}
