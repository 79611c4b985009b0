//! A small command-line parser: flags with values (`--name VALUE` or `--name=VALUE`)
//! and positional words, consumed in order.

use std::collections::VecDeque;
use std::time::Duration;

/// The remaining arguments.
#[derive(Debug)]
pub struct Args(VecDeque<String>);

impl Args {
    /// Wraps the arguments after the program (and subcommand) name.
    pub fn new(args: impl IntoIterator<Item = String>) -> Args {
        Args(args.into_iter().collect())
    }

    /// The next argument, flag or word; `--name=value` is split in two.
    pub fn next_flag(&mut self) -> Result<Option<String>, String> {
        let Some(arg) = self.0.pop_front() else {
            return Ok(None);
        };
        if arg.starts_with("--") {
            if let Some((name, value)) = arg.split_once('=') {
                self.0.push_front(value.to_string());
                return Ok(Some(name.to_string()));
            }
        }
        Ok(Some(arg))
    }

    /// The value of `flag`.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.0
            .pop_front()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value of `flag` as a whole number in `min..=max`.
    pub fn number(&mut self, flag: &str, min: usize, max: usize) -> Result<usize, String> {
        let v = self.value(flag)?;
        match v.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{flag}: expected a number in {min}..={max}, got '{v}'"
            )),
        }
    }

    /// The value of `flag` as a duration (see [`parse_duration`]).
    pub fn duration(&mut self, flag: &str) -> Result<Duration, String> {
        parse_duration(&self.value(flag)?).map_err(|e| format!("{flag}: {e}"))
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `3m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale < 1e7 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!(
            "expected a positive duration like 500ms or 2s, got '{s}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn flags_and_values() {
        let mut a = Args::new(["--reps=3", "--json", "out.json", "word"].map(String::from));
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("--reps"));
        assert_eq!(a.number("--reps", 1, 10), Ok(3));
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("--json"));
        assert_eq!(a.value("--json").as_deref(), Ok("out.json"));
        assert_eq!(a.next_flag().unwrap().as_deref(), Some("word"));
        assert_eq!(a.next_flag().unwrap(), None);
        assert!(a.value("--x").is_err());
    }
}
