//! A robust baseline: the median of recent normal values and their median absolute deviation.
//! Medians ignore the odd outlier that an average (or an EWMA) would follow, and need no
//! assumption about the distribution; seasonality is left out on purpose.

/// The centre and spread of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub median: f64,
    /// 1.4826 × the median absolute deviation: the standard deviation for normal data.
    pub spread: f64,
}

/// Scales the MAD to a standard deviation for normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

impl Baseline {
    /// `None` for no values.
    pub fn of(values: impl Iterator<Item = f64>) -> Option<Baseline> {
        let mut sorted: Vec<f64> = values.filter(|v| v.is_finite()).collect();
        let median = median(&mut sorted)?;
        let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
        let mad = median_of(&mut deviations)?;
        Some(Baseline { median, spread: MAD_TO_SIGMA * mad })
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    median_of(values)
}

fn median_of(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let upper = values.get(n / 2).copied()?;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values.get(n / 2 - 1).copied()?;
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_ignore_an_outlier() {
        let b = Baseline::of([10.0, 11.0, 9.0, 10.0, 500.0].into_iter()).unwrap();
        assert_eq!(b.median, 10.0);
        assert!((b.spread - 1.4826).abs() < 1e-9, "{b:?}");
        let even = Baseline::of([1.0, 2.0, 3.0, 4.0].into_iter()).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Baseline::of(std::iter::empty()), None);
        assert_eq!(Baseline::of([f64::NAN].into_iter()), None);
    }
}
