//! Constraints: restrictions on a grant, each kind with its "at least as strict" order.
//!
//! Constraints are carried and compared here; they are evaluated against runtime inputs
//! (amount, clock, rate counters, trust) by the gate.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Number;

use super::action::Action;
use super::error::{ScopeError, shown};
use super::limits::Ctx;

/// The largest amount: 2^53, the last integer every JSON implementation holds exactly.
pub const MAX_AMOUNT: f64 = 9_007_199_254_740_992.0;

/// The constraints of one authorization detail. Every member is optional; absent means
/// unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawConstraints")]
pub struct Constraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_amount: Option<MaxAmount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_window: Option<TimeWindow>,
    /// Never `Some` of an empty set: an empty list parses as absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_required_for: Option<BTreeSet<Action>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_trust: Option<MinTrust>,
}

impl Constraints {
    /// No constraints.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether there are no constraints.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `max_amount`, if set.
    pub fn max_amount(&self) -> Option<&MaxAmount> {
        self.max_amount.as_ref()
    }

    /// `time_window`, if set.
    pub fn time_window(&self) -> Option<&TimeWindow> {
        self.time_window.as_ref()
    }

    /// The actions that need an approval (empty if none).
    pub fn approval_required_for(&self) -> impl Iterator<Item = &Action> {
        self.approval_required_for.iter().flatten()
    }

    /// `rate`, if set.
    pub fn rate(&self) -> Option<&Rate> {
        self.rate.as_ref()
    }

    /// `min_trust`, if set.
    pub fn min_trust(&self) -> Option<MinTrust> {
        self.min_trust
    }

    /// Sets `max_amount`.
    pub fn with_max_amount(mut self, value: MaxAmount) -> Self {
        self.max_amount = Some(value);
        self
    }

    /// Sets `time_window`.
    pub fn with_time_window(mut self, value: TimeWindow) -> Self {
        self.time_window = Some(value);
        self
    }

    /// Sets `approval_required_for` (an empty set clears it).
    pub fn with_approval_required_for(mut self, actions: BTreeSet<Action>) -> Self {
        self.approval_required_for = (!actions.is_empty()).then_some(actions);
        self
    }

    /// Sets `rate`.
    pub fn with_rate(mut self, value: Rate) -> Self {
        self.rate = Some(value);
        self
    }

    /// Sets `min_trust`.
    pub fn with_min_trust(mut self, value: MinTrust) -> Self {
        self.min_trust = Some(value);
        self
    }

    /// Whether `self` (a child's constraints) restricts at least as much as `parent`: every
    /// constraint present in `parent` is present here and at least as strict. The child may
    /// add constraints.
    pub fn at_least_as_strict_as(&self, parent: &Constraints) -> bool {
        self.first_looser_than(parent).is_none()
    }

    /// The name of the first constraint of `parent` that `self` lacks or relaxes.
    pub(crate) fn first_looser_than(&self, parent: &Constraints) -> Option<&'static str> {
        fn check<T>(
            name: &'static str,
            parent: Option<&T>,
            child: Option<&T>,
            stricter: impl Fn(&T, &T) -> bool,
        ) -> Option<&'static str> {
            match (parent, child) {
                (None, _) => None,
                (Some(p), Some(c)) if stricter(c, p) => None,
                (Some(_), _) => Some(name),
            }
        }
        check(
            "max_amount",
            parent.max_amount.as_ref(),
            self.max_amount.as_ref(),
            MaxAmount::at_least_as_strict_as,
        )
        .or_else(|| {
            check(
                "time_window",
                parent.time_window.as_ref(),
                self.time_window.as_ref(),
                TimeWindow::at_least_as_strict_as,
            )
        })
        .or_else(|| {
            check(
                "approval_required_for",
                parent.approval_required_for.as_ref(),
                self.approval_required_for.as_ref(),
                |c, p| c.is_superset(p),
            )
        })
        .or_else(|| {
            check(
                "rate",
                parent.rate.as_ref(),
                self.rate.as_ref(),
                Rate::at_least_as_strict_as,
            )
        })
        .or_else(|| {
            check(
                "min_trust",
                parent.min_trust.as_ref(),
                self.min_trust.as_ref(),
                |c, p| c >= p,
            )
        })
    }

    /// Builds constraints from their raw JSON shape under `ctx`.
    pub(crate) fn from_raw(raw: RawConstraints, ctx: &Ctx<'_>) -> Result<Self, ScopeError> {
        let approval_required_for = match raw.approval_required_for {
            None => None,
            Some(names) => {
                Ctx::check_len("approval_required_for", names.len(), ctx.max_items)?;
                let actions = names
                    .iter()
                    .map(|name| ctx.action(name))
                    .collect::<Result<BTreeSet<_>, _>>()?;
                (!actions.is_empty()).then_some(actions)
            }
        };
        Ok(Self {
            max_amount: raw.max_amount.map(MaxAmount::try_from).transpose()?,
            time_window: raw.time_window.map(TimeWindow::try_from).transpose()?,
            approval_required_for,
            rate: raw.rate.map(Rate::try_from).transpose()?,
            min_trust: raw.min_trust.map(MinTrust::from_number).transpose()?,
        })
    }
}

impl TryFrom<RawConstraints> for Constraints {
    type Error = ScopeError;

    fn try_from(raw: RawConstraints) -> Result<Self, Self::Error> {
        Self::from_raw(raw, &Ctx::structural())
    }
}

/// `max_amount`: `{"value": 0..=2^53, "currency": "USD"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawMaxAmount")]
pub struct MaxAmount {
    value: Amount,
    currency: Currency,
}

impl MaxAmount {
    /// A limit of `value` in `currency`.
    pub fn new(value: Amount, currency: Currency) -> Self {
        Self { value, currency }
    }

    /// The amount.
    pub fn value(&self) -> Amount {
        self.value
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Same currency and a value no larger.
    pub fn at_least_as_strict_as(&self, parent: &MaxAmount) -> bool {
        self.currency == parent.currency && self.value <= parent.value
    }
}

impl TryFrom<RawMaxAmount> for MaxAmount {
    type Error = ScopeError;

    fn try_from(raw: RawMaxAmount) -> Result<Self, Self::Error> {
        let value = raw
            .value
            .as_f64()
            .ok_or_else(|| invalid("max_amount", "value must be a number"))?;
        Ok(Self {
            value: Amount::new(value)?,
            currency: Currency::new(&raw.currency)?,
        })
    }
}

/// A finite, non-negative amount no larger than [`MAX_AMOUNT`]. Whole amounts serialize as
/// JSON integers.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
#[serde(try_from = "f64")]
pub struct Amount(f64);

impl Amount {
    /// Checks the range; `-0` becomes `0`.
    pub fn new(value: f64) -> Result<Self, ScopeError> {
        if value.is_finite() && (0.0..=MAX_AMOUNT).contains(&value) {
            Ok(Self(value + 0.0))
        } else {
            Err(invalid(
                "max_amount",
                "value must be a finite number from 0 to 2^53",
            ))
        }
    }

    /// The amount.
    pub fn get(self) -> f64 {
        self.0
    }
}

// INVARIANT: never NaN (checked in `Amount::new`), so equality is an equivalence.
impl Eq for Amount {}

impl TryFrom<f64> for Amount {
    type Error = ScopeError;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 {
            // Exact: the value is a whole number in 0..=2^53.
            let whole = self.0 as u64;
            serializer.serialize_u64(whole)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

/// An ISO 4217-style currency code: three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses `[A-Z]{3}`.
    pub fn new(code: &str) -> Result<Self, ScopeError> {
        match *code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(invalid(
                "max_amount",
                format!("currency `{}` must be three uppercase letters", shown(code)),
            )),
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        // INVARIANT: three ASCII uppercase letters, always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl TryFrom<String> for Currency {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `time_window`: days of the week and a daily `[start, end)` interval in a named time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawTimeWindow")]
pub struct TimeWindow {
    days: DaySet,
    start: TimeOfDay,
    end: TimeOfDay,
    tz: TimeZoneName,
}

impl TimeWindow {
    /// A window; `start` must be before `end`.
    pub fn new(
        days: DaySet,
        start: TimeOfDay,
        end: TimeOfDay,
        tz: TimeZoneName,
    ) -> Result<Self, ScopeError> {
        if start < end {
            Ok(Self {
                days,
                start,
                end,
                tz,
            })
        } else {
            Err(invalid("time_window", "`start` must be before `end`"))
        }
    }

    /// The days.
    pub fn days(&self) -> DaySet {
        self.days
    }

    /// The start of the daily interval (inclusive).
    pub fn start(&self) -> TimeOfDay {
        self.start
    }

    /// The end of the daily interval (exclusive).
    pub fn end(&self) -> TimeOfDay {
        self.end
    }

    /// The time zone.
    pub fn tz(&self) -> &TimeZoneName {
        &self.tz
    }

    /// Same zone, a subset of the days, and an interval inside the parent's.
    pub fn at_least_as_strict_as(&self, parent: &TimeWindow) -> bool {
        self.tz == parent.tz
            && self.days.is_subset(parent.days)
            && parent.start <= self.start
            && self.end <= parent.end
    }
}

impl TryFrom<RawTimeWindow> for TimeWindow {
    type Error = ScopeError;

    fn try_from(raw: RawTimeWindow) -> Result<Self, Self::Error> {
        Self::new(
            DaySet::parse(&raw.days)?,
            TimeOfDay::parse(&raw.start)?,
            TimeOfDay::parse(&raw.end)?,
            TimeZoneName::new(&raw.tz)?,
        )
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A non-empty set of weekdays, written like `mon-fri` or `mon,wed,fri` or `mon-wed,sat`
/// (ranges run forward from Monday and do not wrap). Serialized canonically: comma-separated,
/// runs of two or more days as ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DaySet(u8);

impl DaySet {
    /// Parses the day list.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let fail = || {
            invalid(
                "time_window",
                format!(
                    "days `{}` must be day names (`mon`…`sun`) or forward ranges, comma-separated",
                    shown(input)
                ),
            )
        };
        let day = |name: &str| DAY_NAMES.iter().position(|d| *d == name);
        let mut mask = 0u8;
        for item in input.split(',') {
            let (from, to) = match item.split_once('-') {
                Some((from, to)) => (day(from).ok_or_else(fail)?, day(to).ok_or_else(fail)?),
                None => {
                    let d = day(item).ok_or_else(fail)?;
                    (d, d)
                }
            };
            if from > to {
                return Err(fail());
            }
            for d in from..=to {
                mask |= 1 << d;
            }
        }
        if mask == 0 {
            return Err(fail());
        }
        Ok(Self(mask))
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day as u8) != 0
    }

    /// Whether every day of `self` is in `other`.
    pub fn is_subset(self, other: DaySet) -> bool {
        self.0 & !other.0 == 0
    }
}

impl TryFrom<String> for DaySet {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut d = 0;
        while d < DAY_NAMES.len() {
            if self.0 & (1 << d) == 0 {
                d += 1;
                continue;
            }
            let mut end = d;
            while end + 1 < DAY_NAMES.len() && self.0 & (1 << (end + 1)) != 0 {
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            let name = |i: usize| DAY_NAMES.get(i).copied().unwrap_or("");
            if end == d {
                f.write_str(name(d))?;
            } else {
                write!(f, "{}-{}", name(d), name(end))?;
            }
            d = end + 1;
        }
        Ok(())
    }
}

impl Serialize for DaySet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A time of day `HH:MM` from `00:00` to `24:00`, stored as minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Parses `HH:MM` (two digits each; `24:00` is the end of the day).
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let minutes = match *input.as_bytes() {
            [h1, h2, b':', m1, m2] => two_digits(h1, h2)
                .zip(two_digits(m1, m2))
                .filter(|&(hours, minutes)| minutes < 60 && hours * 60 + minutes <= 24 * 60)
                .map(|(hours, minutes)| hours * 60 + minutes),
            _ => None,
        };
        minutes.map(Self).ok_or_else(|| {
            invalid(
                "time_window",
                format!(
                    "time `{}` must be `HH:MM` from 00:00 to 24:00",
                    shown(input)
                ),
            )
        })
    }

    /// Minutes since midnight, `0..=1440`.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An IANA-style time zone name: `UTC` or `Area/Location[/More]` of `[A-Za-z0-9_+-]`,
/// at most 64 bytes. Whether the zone exists is for whoever evaluates the window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    /// Parses a zone name.
    pub fn new(name: &str) -> Result<Self, ScopeError> {
        let part_ok = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
        };
        let ok = name == "UTC"
            || (name.len() <= 64 && name.split('/').count() >= 2 && name.split('/').all(part_ok));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(invalid(
                "time_window",
                format!(
                    "time zone `{}` must be `UTC` or an IANA name like `Europe/Berlin`",
                    shown(name)
                ),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = ScopeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<TimeZoneName> for String {
    fn from(value: TimeZoneName) -> Self {
        value.0
    }
}

/// `rate`: at most `max` requests per `per_seconds` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRate")]
pub struct Rate {
    max: u32,
    per_seconds: u32,
}

impl Rate {
    /// A rate; `max` in `1..=1_000_000`, `per_seconds` in `1..=86_400`.
    pub fn new(max: u64, per_seconds: u64) -> Result<Self, ScopeError> {
        let max = u32::try_from(max)
            .ok()
            .filter(|m| (1..=1_000_000).contains(m))
            .ok_or_else(|| invalid("rate", "`max` must be an integer from 1 to 1000000"))?;
        let per_seconds = u32::try_from(per_seconds)
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| invalid("rate", "`per_seconds` must be an integer from 1 to 86400"))?;
        Ok(Self { max, per_seconds })
    }

    /// Requests allowed per window.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The window in seconds.
    pub fn per_seconds(&self) -> u32 {
        self.per_seconds
    }

    /// No more requests, over a window no shorter.
    pub fn at_least_as_strict_as(&self, parent: &Rate) -> bool {
        self.max <= parent.max && self.per_seconds >= parent.per_seconds
    }
}

impl TryFrom<RawRate> for Rate {
    type Error = ScopeError;

    fn try_from(raw: RawRate) -> Result<Self, Self::Error> {
        // Non-integers and negatives map to 0, which is out of range.
        Self::new(
            raw.max.as_u64().unwrap_or(0),
            raw.per_seconds.as_u64().unwrap_or(0),
        )
    }
}

/// `min_trust`: the least trust score (0–100) the agent must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct MinTrust(u8);

impl MinTrust {
    /// A minimum in `0..=100`.
    pub fn new(value: u8) -> Result<Self, ScopeError> {
        if value <= 100 {
            Ok(Self(value))
        } else {
            Err(invalid("min_trust", "must be an integer from 0 to 100"))
        }
    }

    /// The minimum score.
    pub fn get(self) -> u8 {
        self.0
    }

    fn from_number(n: Number) -> Result<Self, ScopeError> {
        let value = n
            .as_u64()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| invalid("min_trust", "must be an integer from 0 to 100"))?;
        Self::new(value)
    }
}

impl TryFrom<u8> for MinTrust {
    type Error = ScopeError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<MinTrust> for u8 {
    fn from(value: MinTrust) -> Self {
        value.0
    }
}

/// The value of two ASCII digits.
fn two_digits(tens: u8, ones: u8) -> Option<u16> {
    let digit = |b: u8| b.is_ascii_digit().then(|| u16::from(b - b'0'));
    Some(digit(tens)? * 10 + digit(ones)?)
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ScopeError {
    ScopeError::InvalidConstraint {
        name,
        reason: reason.into(),
    }
}

/// The JSON shape of [`Constraints`], before any checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConstraints {
    #[serde(default)]
    max_amount: Option<RawMaxAmount>,
    #[serde(default)]
    time_window: Option<RawTimeWindow>,
    #[serde(default)]
    approval_required_for: Option<Vec<String>>,
    #[serde(default)]
    rate: Option<RawRate>,
    #[serde(default)]
    min_trust: Option<Number>,
}

/// The JSON shape of [`MaxAmount`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMaxAmount {
    value: Number,
    currency: String,
}

/// The JSON shape of [`TimeWindow`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeWindow {
    days: String,
    start: String,
    end: String,
    tz: String,
}

/// The JSON shape of [`Rate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    max: Number,
    per_seconds: Number,
}
