//! Cron specs and overlap, including the seed docs' example schedules.

use super::{overlap, parse};

fn spec(s: &str) -> super::Spec {
    parse(s).unwrap_or_else(|why| panic!("{s:?}: {why}"))
}

fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (spec(a), spec(b));
    assert_eq!(overlap(&a, &b), overlap(&b, &a), "overlap is symmetric");
    overlap(&a, &b)
}

#[test]
fn accepts_what_cron_accepts() {
    for s in [
        "* * * * *",
        "* 8-18 * * 1-5",
        "* 19-23,0-7 * * 1,5",
        "* */2 * * *",
        "* 5/6 1-31/2 * ?",
        "* 9 * jan-mar MON-fri",
        "*   8   *   *   sun",
    ] {
        spec(s);
    }
    assert_eq!(spec("* 8 * JAN *"), spec("* 8 * 1 *"));
    assert_eq!(spec("* 8 * * sun"), spec("* 8 * * 0"));
}

#[test]
fn refuses_malformed_specs() {
    let cases = [
        ("* * * *", "has 4 fields; it must have 5"),
        ("* * * * * *", "has 6 fields"),
        ("0 * * * *", "minute field is \"0\"; it must be *"),
        ("*/5 * * * *", "minute field is \"*/5\""),
        ("* 24 * * *", "hour field \"24\": 24 is outside 0-23"),
        ("* * 0 * *", "day-of-month field \"0\": 0 is outside 1-31"),
        ("* * * 13 *", "month field \"13\": 13 is outside 1-12"),
        ("* * * * 7", "day-of-week field \"7\": 7 is outside 0-6"),
        ("* 18-8 * * *", "range \"18-8\" runs backwards"),
        ("* */0 * * *", "step \"0\" is not a number from 1 to 23"),
        ("* x * * *", "\"x\" is not a number"),
        ("* 1,,2 * * *", "\"\" is not a number"),
        ("* * * foo *", "\"foo\" is not a number"),
    ];
    for (s, want) in cases {
        let err = parse(s).expect_err(s);
        assert!(err.contains(want), "{s:?}: {err}");
    }
}

#[test]
fn overlap_needs_a_common_hour_day_and_month() {
    // The seed docs' "24/7 coverage" schedules do not overlap each other...
    assert!(!overlaps("* 8-18 * * 1-5", "* 19-23,0-7 * * 1,5"));
    assert!(!overlaps("* 8-18 * * 1-5", "* * * * 6,0"));
    assert!(!overlaps("* 19-23,0-7 * * 1,5", "* * * * 6,0"));
    // ...but their separate "weekend support" example overlaps "weekends".
    assert!(overlaps("* * * * 6,0", "* 10-16 * * 6,0"));
    assert!(overlaps("* 8-18 * * 1-5", "* 18 * * 5"));
    assert!(!overlaps("* 8-18 * * 1-5", "* 8-18 * * 6"));
    assert!(!overlaps("* 8 * 1 *", "* 8 * 2 *"));
    assert!(!overlaps("* */2 * * *", "* 1-23/2 * * *"));
    assert!(overlaps("* */2 * * *", "* 4 * * *"));
}

#[test]
fn day_fields_follow_crons_or_rule() {
    // Both day fields restricted: either matches. A 1st that is a Tuesday
    // runs both.
    assert!(overlaps("* 8 1 * 1", "* 8 2 * 2"));
    // One day field `*`: both must match. The 1st and Mondays coincide in
    // some months.
    assert!(overlaps("* 8 1 * *", "* 8 * * 1"));
    // The 31st never falls in a 30-day month, but Feb 29 exists.
    assert!(!overlaps("* 8 31 * *", "* 8 * 4 *"));
    assert!(overlaps("* 8 29 * *", "* 8 * 2 *"));
    assert!(!overlaps("* 8 30 2 *", "* 8 * * *"));
}

#[test]
fn a_huge_step_is_refused_not_overflowed() {
    let err = parse("* 1/4294967295 * * *").unwrap_err();
    assert!(
        err.contains("step \"4294967295\" is not a number from 1 to 23"),
        "{err}"
    );
    let err = parse("* 1/99999999999 * * *").unwrap_err();
    assert!(err.contains("is not a number from 1 to 23"), "{err}");
    // A step as large as the field is fine: just the start.
    assert!(parse("* 5/23 * * *").is_ok());
}
