//! Sizes such as `4GiB` in the configuration.

/// Parses `N`, `NKiB`, `NMiB`, `NGiB` or `NTiB` (also `K`/`M`/`G`/`T`, binary) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| {
        format!("invalid size `{text}`: expected a number with a unit such as 512MiB or 4GiB")
    })?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "invalid size unit `{other}` in `{text}`: allowed units are B, KiB, MiB, GiB, TiB"
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn parses_binary_units() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
    }

    #[test]
    fn rejects_unknown_units_and_garbage() {
        assert!(parse_size("4GB").unwrap_err().contains("allowed units"));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}

/// The longest duration a setting may hold. Deadlines are `Instant::now() + duration`,
/// which panics on overflow; nothing pikaci runs needs more than a year.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A duration written as text (`90s`, `10m`, `1h 30m`), as humantime parses it; zero is
/// rejected because a job with no time cannot run, more than [`MAX_DURATION`] because it
/// cannot be a deadline, and a fraction of a millisecond because the guest protocol
/// carries milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationText(pub std::time::Duration);

impl<'de> serde::Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}`: {e}; write it like `90s`, `10m` or `1h 30m`"
            ))
        })?;
        check_duration(duration)
            .map_err(|why| serde::de::Error::custom(format!("invalid duration `{text}`: {why}")))?;
        Ok(DurationText(duration))
    }
}

fn check_duration(duration: std::time::Duration) -> Result<(), &'static str> {
    if duration.is_zero() {
        Err("must be greater than zero")
    } else if duration > MAX_DURATION {
        Err("must be at most 365 days")
    } else if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        Err("must be a whole number of milliseconds")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    fn parse(text: &str) -> Result<std::time::Duration, String> {
        let toml = format!("d = {text:?}");
        #[derive(serde::Deserialize)]
        struct Holder {
            d: DurationText,
        }
        toml::from_str::<Holder>(&toml)
            .map(|h| h.d.0)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn keeps_sub_second_durations_exact() {
        assert_eq!(parse("1ms"), Ok(std::time::Duration::from_millis(1)));
        assert_eq!(parse("1.5s"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(parse("365days"), Ok(MAX_DURATION));
    }

    #[test]
    fn rejects_durations_no_deadline_can_hold() {
        let err = parse("18446744073709551615s").unwrap_err();
        assert!(err.contains("at most 365 days"), "{err}");
        assert!(parse("366days").unwrap_err().contains("at most 365 days"));
        assert!(parse("0s").unwrap_err().contains("greater than zero"));
        assert!(
            parse("1500us")
                .unwrap_err()
                .contains("whole number of milliseconds")
        );
    }
}
