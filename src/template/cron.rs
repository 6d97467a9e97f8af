//! Prebuild schedules: `* HOUR DOM MONTH DOW` cron specs read the way
//! Coder's reconciler reads them (robfig/cron: `*`, `?`, numbers, ranges
//! `a-b`, lists, steps `/n`, month and weekday names), and whether two of
//! them are ever active in the same hour.

/// Which hours of which days a spec covers. Bit `i` set means value `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spec {
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    /// Cron's day rule: when either day field is `*`, a day must match
    /// both; when both are restricted, either is enough.
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

/// Parses a spec; the error says which field is wrong and why.
pub(super) fn parse(spec: &str) -> Result<Spec, String> {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "has {} fields; it must have 5: * HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK",
            fields.len()
        ));
    };
    // Schedules cover whole hours, so the minute field is always `*`.
    if minute != "*" {
        return Err(format!("minute field is {minute:?}; it must be *"));
    }
    let field = |what, min, max, names| Field {
        what,
        min,
        max,
        names,
    };
    let (hours, _) = bits(hour, &field("hour", 0, 23, &[]))?;
    let (dom_bits, dom_star) = bits(dom, &field("day-of-month", 1, 31, &[]))?;
    let (month_bits, _) = bits(month, &field("month", 1, 12, &MONTHS))?;
    let (dow_bits, dow_star) = bits(dow, &field("day-of-week", 0, 6, &WEEKDAYS))?;
    Ok(Spec {
        hours: u32::try_from(hours).unwrap_or(u32::MAX),
        dom: u32::try_from(dom_bits).unwrap_or(u32::MAX),
        months: u16::try_from(month_bits).unwrap_or(u16::MAX),
        dow: u8::try_from(dow_bits).unwrap_or(u8::MAX),
        dom_star,
        dow_star,
    })
}

/// The set a field denotes, and whether it was written `*` (or `?`).
fn bits(text: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut set = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let bad = |why: String| format!("{} field {text:?}: {why}", f.what);
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0 && *s <= f.max)
                    .ok_or_else(|| {
                        bad(format!("step {step:?} is not a number from 1 to {}", f.max))
                    })?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            // `*/2` is a step over the whole range, not a wildcard.
            star |= step.is_none_or(|s| s == 1);
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f).map_err(bad)?, value(b, f).map_err(bad)?)
        } else {
            let start = value(range, f).map_err(bad)?;
            // `5/15` means from 5 to the end, every 15.
            (start, if step.is_some() { f.max } else { start })
        };
        if start > end {
            return Err(bad(format!("range {range:?} runs backwards")));
        }
        // Stepping in u64 from values ≤ 59: no overflow whatever the step.
        let mut v = u64::from(start);
        while v <= u64::from(end) {
            set |= 1 << v;
            v += u64::from(step.unwrap_or(1));
        }
    }
    Ok((set, star))
}

fn value(text: &str, f: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = f
        .names
        .iter()
        .position(|n| *n == lower)
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + f.min);
    let n = named
        .or_else(|| text.parse().ok())
        .ok_or_else(|| format!("{text:?} is not a number"))?;
    if n < f.min || n > f.max {
        return Err(format!("{n} is outside {}-{}", f.min, f.max));
    }
    Ok(n)
}

impl Spec {
    fn day(&self, dom: u32, dow: u32) -> bool {
        let dom_match = self.dom & (1 << dom) != 0;
        let dow_match = self.dow & (1 << dow) != 0;
        if self.dom_star || self.dow_star {
            dom_match && dow_match
        } else {
            dom_match || dow_match
        }
    }
}

/// Are `a` and `b` ever active in the same hour? Every date of the year
/// falls on every weekday in some year, so it is enough to find a month,
/// day of month (valid in that month, Feb 29 included), weekday and hour
/// that both cover. Exact, unlike comparing fields one by one: `* 8 1 * 1`
/// and `* 8 2 * 2` do overlap on a 1st that is a Tuesday.
pub(super) fn overlap(a: &Spec, b: &Spec) -> bool {
    if a.hours & b.hours == 0 || a.months & b.months == 0 {
        return false;
    }
    (1..=12u32)
        .filter(|m| a.months & b.months & (1 << m) != 0)
        .any(|m| {
            let days = match m {
                2 => 29,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            (1..=days).any(|d| (0..7).any(|w| a.day(d, w) && b.day(d, w)))
        })
}

impl Spec {
    /// Whether the spec covers this hour (0-23) of this day: day of month
    /// 1-31, month 1-12, weekday 0-6 with Sunday 0.
    pub(super) fn covers(&self, hour: u32, dom: u32, month: u32, dow: u32) -> bool {
        self.hours & (1 << hour) != 0 && self.months & (1 << month) != 0 && self.day(dom, dow)
    }
}

#[cfg(test)]
mod tests;
