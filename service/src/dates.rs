//! `google.type.Date` in requests: validation into calendar days and
//! periods.

use chrono::{Datelike, Months, NaiveDate};
use count_proto::google::r#type::Date;

use crate::error::{Error, Result};

/// A complete date (year, month and day all set), or an error naming `field`.
pub fn day(date: Option<Date>, field: &str) -> Result<NaiveDate> {
    let date = date.ok_or_else(|| Error::invalid(field, "must be set"))?;
    check_year(&date, field)?;
    check_month(&date, field)?;
    check_day(&date, field)?;
    calendar_day(date.year, date.month, date.day, field)
}

/// The first and last day of the year, month or day that `date` names: month
/// and day 0 mean a year; day 0 means a month.
pub fn period(date: Option<Date>, field: &str) -> Result<(NaiveDate, NaiveDate)> {
    let date = date.ok_or_else(|| Error::invalid(field, "must be set"))?;
    check_year(&date, field)?;
    if date.month == 0 {
        if date.day != 0 {
            return Err(Error::invalid(
                format!("{field}.day"),
                format!("must be 0 when month is 0, got {}", date.day),
            ));
        }
        let first = calendar_day(date.year, 1, 1, field)?;
        let last = calendar_day(date.year, 12, 31, field)?;
        return Ok((first, last));
    }
    check_month(&date, field)?;
    if date.day == 0 {
        let first = calendar_day(date.year, date.month, 1, field)?;
        let last = first
            .checked_add_months(Months::new(1))
            .and_then(|next| next.pred_opt())
            .ok_or_else(|| Error::invalid(field, "is out of range"))?;
        return Ok((first, last));
    }
    check_day(&date, field)?;
    let day = calendar_day(date.year, date.month, date.day, field)?;
    Ok((day, day))
}

/// The wire form of a day.
pub fn to_proto(day: NaiveDate) -> Date {
    Date {
        year: day.year(),
        // Both are small positive numbers by construction.
        month: day.month() as i32,
        day: day.day() as i32,
    }
}

fn check_year(date: &Date, field: &str) -> Result<()> {
    if !(1..=9999).contains(&date.year) {
        return Err(Error::invalid(
            format!("{field}.year"),
            format!("must be 1 to 9999, got {}", date.year),
        ));
    }
    Ok(())
}

fn check_month(date: &Date, field: &str) -> Result<()> {
    if !(1..=12).contains(&date.month) {
        return Err(Error::invalid(
            format!("{field}.month"),
            format!("must be 1 to 12, got {}", date.month),
        ));
    }
    Ok(())
}

fn check_day(date: &Date, field: &str) -> Result<()> {
    if !(1..=31).contains(&date.day) {
        return Err(Error::invalid(
            format!("{field}.day"),
            format!("must be 1 to 31, got {}", date.day),
        ));
    }
    Ok(())
}

fn calendar_day(year: i32, month: i32, day: i32, field: &str) -> Result<NaiveDate> {
    u32::try_from(month)
        .ok()
        .zip(u32::try_from(day).ok())
        .and_then(|(m, d)| NaiveDate::from_ymd_opt(year, m, d))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{year:04}-{month:02}-{day:02} is not a date"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: i32, day: i32) -> Option<Date> {
        Some(Date { year, month, day })
    }

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn periods_cover_a_year_a_month_or_a_day() {
        assert_eq!(
            period(date(2024, 0, 0), "period").unwrap(),
            (ymd(2024, 1, 1), ymd(2024, 12, 31))
        );
        assert_eq!(
            period(date(2024, 2, 0), "period").unwrap(),
            (ymd(2024, 2, 1), ymd(2024, 2, 29))
        );
        assert_eq!(
            period(date(2023, 12, 0), "period").unwrap(),
            (ymd(2023, 12, 1), ymd(2023, 12, 31))
        );
        assert_eq!(
            period(date(2024, 2, 29), "period").unwrap(),
            (ymd(2024, 2, 29), ymd(2024, 2, 29))
        );
    }

    #[test]
    fn impossible_dates_name_the_field() {
        let cases = [
            (day(None, "date"), "date: must be set"),
            (
                day(date(2024, 13, 1), "date"),
                "date.month: must be 1 to 12, got 13",
            ),
            (
                day(date(2023, 2, 29), "date"),
                "date: 2023-02-29 is not a date",
            ),
            (
                day(date(2024, 2, 0), "start_date"),
                "start_date.day: must be 1 to 31, got 0",
            ),
            (
                day(date(0, 1, 1), "end_date"),
                "end_date.year: must be 1 to 9999, got 0",
            ),
            (
                day(date(2024, 4, 31), "date"),
                "date: 2024-04-31 is not a date",
            ),
            (
                day(date(2024, 1, -3), "date"),
                "date.day: must be 1 to 31, got -3",
            ),
        ];
        for (result, expected) in cases {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
        let cases = [
            (
                period(date(2024, 0, 5), "period"),
                "period.day: must be 0 when month is 0, got 5",
            ),
            (
                period(date(2024, -1, 0), "period"),
                "period.month: must be 1 to 12, got -1",
            ),
            (
                period(date(2023, 2, 30), "period"),
                "period: 2023-02-30 is not a date",
            ),
            (period(None, "period"), "period: must be set"),
        ];
        for (result, expected) in cases {
            assert_eq!(result.unwrap_err().to_string(), expected);
        }
    }
}
