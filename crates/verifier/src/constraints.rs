//! Runtime evaluation of the constraints of an authorization detail (DESIGN §3): `max_amount`
//! against the operation's inputs, `time_window` against the clock in its time zone, `rate`
//! against in-memory counters. `min_trust` needs the registry and lives in the verifier.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::Weekday as JiffWeekday;
use jiff::tz::TimeZone;
use mandate_core::scope::{MaxAmount, Rate, TimeWindow, Weekday};
use serde_json::{Map, Value};

use crate::denial::{Denial, DenyCode};

/// The most rate buckets kept (one per agent, delegation and detail).
const MAX_RATE_BUCKETS: usize = 1 << 16;

/// `max_amount`: the operation's `amount` input must not exceed the limit, and its `currency`
/// input, when given, must be the limit's currency.
///
/// An operation without an `amount` input moves no amount and is not limited: which operations
/// carry an amount is decided by the gate's route mapping (DESIGN §7, "`amount` ←
/// `arguments.amount`"). An `amount` that is present but not a finite, non-negative number (or
/// a decimal string of one) is refused.
pub(crate) fn check_max_amount(
    limit: &MaxAmount,
    inputs: &Map<String, Value>,
) -> Result<(), Denial> {
    let deny = |reason: String| Err(Denial::new(DenyCode::MaxAmount, reason));
    let Some(raw) = inputs.get("amount") else {
        return Ok(());
    };
    let amount = match raw {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if is_decimal(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    let Some(amount) = amount.filter(|a| a.is_finite() && *a >= 0.0) else {
        return deny("the operation's `amount` is not a non-negative number".into());
    };
    if let Some(currency) = inputs.get("currency")
        && currency.as_str() != Some(limit.currency().as_str())
    {
        return deny(format!(
            "the operation's currency is not {}, the currency of `max_amount`",
            limit.currency()
        ));
    }
    if amount > limit.value().get() {
        return deny(format!(
            "the amount exceeds `max_amount` ({} {})",
            limit.value().get(),
            limit.currency()
        ));
    }
    Ok(())
}

/// Plain decimal notation: digits, at most one `.`, no sign, exponent or whitespace.
fn is_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && s.bytes().filter(|b| *b == b'.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// `time_window`: the current time, in the window's IANA time zone (bundled tz database, so
/// daylight saving time is applied), falls on one of its days and within `[start, end)`.
pub(crate) fn check_time_window(window: &TimeWindow, now_ms: i64) -> Result<(), Denial> {
    let deny = |reason: String| Err(Denial::new(DenyCode::TimeWindow, reason));
    let tz = match TimeZone::get(window.tz().as_str()) {
        Ok(tz) => tz,
        Err(_) => {
            return deny(format!(
                "the time zone `{}` of `time_window` is unknown",
                window.tz().as_str()
            ));
        }
    };
    let Ok(ts) = Timestamp::from_millisecond(now_ms) else {
        return deny("the clock is out of range".into());
    };
    let local = ts.to_zoned(tz);
    let day = match local.weekday() {
        JiffWeekday::Monday => Weekday::Mon,
        JiffWeekday::Tuesday => Weekday::Tue,
        JiffWeekday::Wednesday => Weekday::Wed,
        JiffWeekday::Thursday => Weekday::Thu,
        JiffWeekday::Friday => Weekday::Fri,
        JiffWeekday::Saturday => Weekday::Sat,
        JiffWeekday::Sunday => Weekday::Sun,
    };
    // Hours and minutes of a civil time are within 0..24 and 0..60.
    let minute =
        u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
    let outside = || {
        deny(format!(
            "outside the allowed time window ({} {}–{} {})",
            window.days(),
            window.start(),
            window.end(),
            window.tz().as_str()
        ))
    };
    if !window.days().contains(day) {
        return outside();
    }
    if minute < window.start().minutes() || minute >= window.end().minutes() {
        return outside();
    }
    Ok(())
}

/// A token bucket per key: capacity `max`, refilled at `max` per `per_seconds`, so at most
/// `max` requests in a burst and `max / per_seconds` per second sustained. Kept in fixed
/// point (1 request = `per_seconds * 1000` units, one unit refilled per ms per request of
/// `max`) so that no float is involved.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Units available.
    units: u64,
    /// When `units` was last brought up to date, unix ms.
    at: i64,
}

/// Rate counters by `(agent, delegation, detail)`, bounded.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: HashMap<(String, String, usize), Bucket>,
}

impl RateLimiter {
    /// Takes one request from the bucket of `key` under `rate` at `now_ms`.
    pub(crate) fn take(
        &mut self,
        key: (&str, &str, usize),
        rate: &Rate,
        now_ms: i64,
    ) -> Result<(), Denial> {
        let per_request = u64::from(rate.per_seconds()) * 1000;
        let capacity = per_request * u64::from(rate.max());
        let refill_per_ms = u64::from(rate.max());
        let limited = || {
            Err(Denial::new(
                DenyCode::RateLimited,
                format!(
                    "more than {} requests per {} s",
                    rate.max(),
                    rate.per_seconds()
                ),
            ))
        };
        let owned = (key.0.to_owned(), key.1.to_owned(), key.2);
        if !self.buckets.contains_key(&owned) && self.buckets.len() >= MAX_RATE_BUCKETS {
            // A bucket that would be full again holds no information: drop those.
            self.buckets.retain(|_, b| {
                let idle = u64::try_from(now_ms.saturating_sub(b.at)).unwrap_or(0);
                b.units.saturating_add(idle.saturating_mul(refill_per_ms)) < capacity
            });
            if self.buckets.len() >= MAX_RATE_BUCKETS {
                // Bounded memory first: refuse rather than forget a counter.
                return limited();
            }
        }
        let bucket = self.buckets.entry(owned).or_insert(Bucket {
            units: capacity,
            at: now_ms,
        });
        let elapsed = u64::try_from(now_ms.saturating_sub(bucket.at)).unwrap_or(0);
        bucket.units = bucket
            .units
            .saturating_add(elapsed.saturating_mul(refill_per_ms))
            .min(capacity);
        bucket.at = bucket.at.max(now_ms);
        if bucket.units < per_request {
            return limited();
        }
        bucket.units -= per_request;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::scope::{Amount, Currency, DaySet, TimeOfDay, TimeZoneName};
    use serde_json::json;

    fn limit() -> MaxAmount {
        MaxAmount::new(Amount::new(100.0).unwrap(), Currency::new("USD").unwrap())
    }

    fn inputs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn max_amount() {
        let l = limit();
        assert!(check_max_amount(&l, &inputs(json!({}))).is_ok());
        assert!(check_max_amount(&l, &inputs(json!({"amount": 100}))).is_ok());
        assert!(
            check_max_amount(&l, &inputs(json!({"amount": "99.5", "currency": "USD"}))).is_ok()
        );
        for bad in [
            json!({"amount": 100.01}),
            json!({"amount": "101"}),
            json!({"amount": -1}),
            json!({"amount": "1e3"}),
            json!({"amount": " 5"}),
            json!({"amount": null}),
            json!({"amount": 5, "currency": "EUR"}),
            json!({"amount": 5, "currency": 1}),
        ] {
            let d = check_max_amount(&l, &inputs(bad.clone())).unwrap_err();
            assert_eq!(d.code, DenyCode::MaxAmount, "{bad}");
        }
    }

    fn window(days: &str, start: &str, end: &str, tz: &str) -> TimeWindow {
        TimeWindow::new(
            DaySet::parse(days).unwrap(),
            TimeOfDay::parse(start).unwrap(),
            TimeOfDay::parse(end).unwrap(),
            TimeZoneName::new(tz).unwrap(),
        )
        .unwrap()
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn time_window_in_a_named_zone_follows_daylight_saving() {
        let w = window("mon-fri", "09:00", "17:00", "Europe/Berlin");
        // Wednesday 2026-07-01, summer (UTC+2): 07:30Z is 09:30 local; 06:30Z is 08:30.
        assert!(check_time_window(&w, ms("2026-07-01T07:30:00Z")).is_ok());
        assert!(check_time_window(&w, ms("2026-07-01T06:30:00Z")).is_err());
        // Wednesday 2026-01-07, winter (UTC+1): 07:30Z is 08:30 local; 08:30Z is 09:30.
        assert!(check_time_window(&w, ms("2026-01-07T07:30:00Z")).is_err());
        assert!(check_time_window(&w, ms("2026-01-07T08:30:00Z")).is_ok());
        // End is exclusive: 15:00Z in summer is 17:00 local.
        assert!(check_time_window(&w, ms("2026-07-01T14:59:00Z")).is_ok());
        assert!(check_time_window(&w, ms("2026-07-01T15:00:00Z")).is_err());
        // Saturday.
        let d = check_time_window(&w, ms("2026-07-04T08:00:00Z")).unwrap_err();
        assert_eq!(d.code, DenyCode::TimeWindow);
        // The local day decides: Friday 23:30Z is Saturday 01:30 in Berlin.
        let night = window("fri", "00:00", "24:00", "Europe/Berlin");
        assert!(check_time_window(&night, ms("2026-07-03T23:30:00Z")).is_err());
        assert!(check_time_window(&night, ms("2026-07-03T21:30:00Z")).is_ok());
        let utc = window("mon-sun", "00:00", "24:00", "UTC");
        assert!(check_time_window(&utc, ms("2026-07-03T23:59:00Z")).is_ok());
        let unknown = window("mon-sun", "00:00", "24:00", "Mars/Olympus_Mons");
        assert!(check_time_window(&unknown, 0).is_err());
    }

    #[test]
    fn rate_is_a_token_bucket_per_key() {
        let rate = Rate::new(2, 60).unwrap();
        let mut r = RateLimiter::default();
        let k = ("agt_a", "dlg_1", 0);
        assert!(r.take(k, &rate, 0).is_ok());
        assert!(r.take(k, &rate, 1).is_ok());
        let d = r.take(k, &rate, 2).unwrap_err();
        assert_eq!(d.code, DenyCode::RateLimited);
        // Another delegation of the same agent has its own bucket.
        assert!(r.take(("agt_a", "dlg_2", 0), &rate, 2).is_ok());
        // One request back every 30 s.
        assert!(r.take(k, &rate, 29_999).is_err());
        assert!(r.take(k, &rate, 30_001).is_ok());
        assert!(r.take(k, &rate, 30_002).is_err());
        // A clock that steps back does not mint requests.
        assert!(r.take(k, &rate, 0).is_err());
    }
}
