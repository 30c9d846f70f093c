//! Millisecond UTC timestamps: the one notion of time every store shares.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time in UTC, with millisecond precision, as milliseconds since
/// the Unix epoch.
///
/// Every store keeps `expires_at` and `created_at` at exactly this precision,
/// so a record read back from any backend compares equal to the one written.
/// A record is live while `now < expires_at`.
///
/// ```
/// use std::time::Duration;
/// use session_core::Timestamp;
///
/// let now = Timestamp::now();
/// let later = now + Duration::from_secs(60);
/// assert_eq!(later.as_millis() - now.as_millis(), 60_000);
/// assert!(later > now);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(0);

    /// The current time of this process's clock, truncated to milliseconds.
    #[must_use]
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// The timestamp `millis` milliseconds after the Unix epoch (negative:
    /// before it).
    #[must_use]
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    #[must_use]
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `self + duration`, saturating at the largest representable time
    /// instead of overflowing.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// `self - duration`, saturating at the smallest representable time.
    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// How long after `earlier` this timestamp is; zero if it is not later.
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        let ms = self.0.saturating_sub(earlier.0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// Whether a record expiring at `self` is still live at `now`
    /// (`now < self`).
    #[must_use]
    pub fn is_after(self, now: Self) -> bool {
        now < self
    }

    /// This timestamp as a [`time::OffsetDateTime`] in UTC, or `None` if it is
    /// outside the range that type can represent.
    #[must_use]
    pub fn to_offset_date_time(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_millis()).unwrap_or(i64::MAX)),
            // Before the epoch: round towards negative infinity so that
            // truncation never moves a time later.
            Err(e) => {
                let before = e.duration();
                let mut ms = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
                if before.subsec_nanos() % 1_000_000 != 0 {
                    ms = ms.saturating_add(1);
                }
                Self(-ms)
            }
        }
    }
}

impl From<time::OffsetDateTime> for Timestamp {
    fn from(t: time::OffsetDateTime) -> Self {
        let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
        Self(i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX }))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;

    /// Saturating addition (see [`Timestamp::saturating_add`]).
    fn add(self, rhs: Duration) -> Self {
        self.saturating_add(rhs)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Self;

    /// Saturating subtraction (see [`Timestamp::saturating_sub`]).
    fn sub(self, rhs: Duration) -> Self {
        self.saturating_sub(rhs)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with milliseconds when representable, raw milliseconds
    /// otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = self.to_offset_date_time().and_then(|t| {
            let format = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            t.format(&format).ok()
        });
        match formatted {
            Some(s) => f.write_str(&s),
            None => write!(f, "{}ms", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_truncates_to_millis() {
        let t = UNIX_EPOCH + Duration::from_micros(1_234_567);
        assert_eq!(Timestamp::from(t).as_millis(), 1_234);
        let before = UNIX_EPOCH - Duration::from_micros(1_500);
        assert_eq!(Timestamp::from(before).as_millis(), -2);
        // A whole number of milliseconds before the epoch is not rounded.
        let whole = UNIX_EPOCH - Duration::from_millis(2);
        assert_eq!(Timestamp::from(whole).as_millis(), -2);
    }

    #[test]
    fn offset_date_time_round_trips() {
        let ts = Timestamp::from_millis(1_700_000_000_123);
        let odt = ts.to_offset_date_time().unwrap();
        assert_eq!(Timestamp::from(odt), ts);
        assert_eq!(ts.to_string(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn arithmetic_saturates() {
        let max = Timestamp::from_millis(i64::MAX);
        assert_eq!(max + Duration::from_secs(1), max);
        let min = Timestamp::from_millis(i64::MIN);
        assert_eq!(min - Duration::from_secs(1), min);
        assert_eq!(
            Timestamp::from_millis(5).duration_since(Timestamp::from_millis(9)),
            Duration::ZERO
        );
    }

    #[test]
    fn liveness_is_strict() {
        let exp = Timestamp::from_millis(1_000);
        assert!(exp.is_after(Timestamp::from_millis(999)));
        assert!(!exp.is_after(Timestamp::from_millis(1_000)));
    }
}
