//! ParseDateTime (the field splitter of PostgreSQL's date/time input) and
//! the keyword table DecodeDateTime looks words up in. Split from
//! [`super`] so each half stays readable; the field types and keywords are
//! PostgreSQL's, named as there.

use super::DtErr;
use crate::values::is_pg_space;

pub(super) const MAXDATEFIELDS: usize = 25;
/// `MAXDATELEN + MAXDATEFIELDS`: ParseDateTime's work buffer.
const WORKBUF: usize = 128 + MAXDATEFIELDS;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ft {
    Number,
    Date,
    Time,
    Tz,
    Str,
    Special,
}

/// ParseDateTime: splits the input into typed fields (lower-cased).
pub(super) fn tokenize(input: &[u8]) -> Result<Vec<(Ft, Vec<u8>)>, DtErr> {
    let mut out: Vec<(Ft, Vec<u8>)> = Vec::new();
    let mut used = 0usize;
    let mut i = 0usize;
    let at = |i: usize| input.get(i).copied().unwrap_or(0);
    while i < input.len() {
        let c = at(i);
        if is_pg_space(c) {
            i += 1;
            continue;
        }
        if out.len() >= MAXDATEFIELDS {
            return Err(DtErr::BadFormat);
        }
        let mut f = Vec::new();
        let mut push = |f: &mut Vec<u8>, b: u8| {
            if used + 1 >= WORKBUF {
                return Err(DtErr::BadFormat);
            }
            used += 1;
            f.push(b.to_ascii_lowercase());
            Ok(())
        };
        let ft;
        if c.is_ascii_digit() {
            while at(i).is_ascii_digit() {
                push(&mut f, at(i))?;
                i += 1;
            }
            let d = at(i);
            if d == b':' {
                ft = Ft::Time;
                while matches!(at(i), b'0'..=b'9' | b':' | b'.') {
                    push(&mut f, at(i))?;
                    i += 1;
                }
            } else if matches!(d, b'-' | b'/' | b'.') {
                push(&mut f, d)?;
                i += 1;
                if at(i).is_ascii_digit() {
                    let mut t = if d == b'.' { Ft::Number } else { Ft::Date };
                    while at(i).is_ascii_digit() {
                        push(&mut f, at(i))?;
                        i += 1;
                    }
                    if at(i) == d {
                        t = Ft::Date;
                        while at(i).is_ascii_digit() || at(i) == d {
                            push(&mut f, at(i))?;
                            i += 1;
                        }
                    }
                    ft = t;
                } else {
                    ft = Ft::Date;
                    while at(i).is_ascii_alphanumeric() || at(i) == d {
                        push(&mut f, at(i))?;
                        i += 1;
                    }
                }
            } else {
                ft = Ft::Number;
            }
        } else if c == b'.' {
            push(&mut f, c)?;
            i += 1;
            while at(i).is_ascii_digit() {
                push(&mut f, at(i))?;
                i += 1;
            }
            ft = Ft::Number;
        } else if c.is_ascii_alphabetic() {
            while at(i).is_ascii_alphabetic() {
                push(&mut f, at(i))?;
                i += 1;
            }
            let n = at(i);
            let is_date = matches!(n, b'-' | b'/' | b'.')
                || ((n == b'+' || n.is_ascii_digit()) && keyword(&f).is_none());
            if is_date {
                ft = Ft::Date;
                loop {
                    push(&mut f, at(i))?;
                    i += 1;
                    if !(matches!(at(i), b'+' | b'-' | b'/' | b'_' | b'.' | b':')
                        || at(i).is_ascii_alphanumeric())
                    {
                        break;
                    }
                }
            } else {
                ft = Ft::Str;
            }
        } else if c == b'+' || c == b'-' {
            push(&mut f, c)?;
            i += 1;
            while is_pg_space(at(i)) {
                i += 1;
            }
            if at(i).is_ascii_digit() {
                ft = Ft::Tz;
                while matches!(at(i), b'0'..=b'9' | b':' | b'.' | b'-') {
                    push(&mut f, at(i))?;
                    i += 1;
                }
            } else if at(i).is_ascii_alphabetic() {
                ft = Ft::Special;
                while at(i).is_ascii_alphabetic() {
                    push(&mut f, at(i))?;
                    i += 1;
                }
            } else {
                return Err(DtErr::BadFormat);
            }
        } else if c.is_ascii_punctuation() {
            i += 1;
            continue;
        } else {
            return Err(DtErr::BadFormat);
        }
        used += 1;
        out.push((ft, f));
    }
    Ok(out)
}

/// The entries of datetktbl (and the UTC abbreviations of the Default
/// timezone_abbreviations set) that matter here.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kw {
    Month(i64),
    Dow,
    Ad,
    Bc,
    Am,
    Pm,
    Ignore,
    IsoTime,
    Julian,
    /// Other field labels (`y`, `m`, `d`, `doy`, …): not supported.
    OtherUnit,
    Epoch,
    Late,
    Early,
    Zulu,
    /// now, today, tomorrow, yesterday: depend on the clock.
    Clock,
    Dst,
}

pub(super) fn keyword(w: &[u8]) -> Option<Kw> {
    use Kw::*;
    Some(match w {
        b"jan" | b"january" => Month(1),
        b"feb" | b"february" => Month(2),
        b"mar" | b"march" => Month(3),
        b"apr" | b"april" => Month(4),
        b"may" => Month(5),
        b"jun" | b"june" => Month(6),
        b"jul" | b"july" => Month(7),
        b"aug" | b"august" => Month(8),
        b"sep" | b"sept" | b"september" => Month(9),
        b"oct" | b"october" => Month(10),
        b"nov" | b"november" => Month(11),
        b"dec" | b"december" => Month(12),
        b"sun" | b"sunday" | b"mon" | b"monday" | b"tue" | b"tues" | b"tuesday" | b"wed"
        | b"wednesday" | b"weds" | b"thu" | b"thur" | b"thurs" | b"thursday" | b"fri"
        | b"friday" | b"sat" | b"saturday" => Dow,
        b"ad" => Ad,
        b"bc" => Bc,
        b"am" => Am,
        b"pm" => Pm,
        b"at" | b"on" => Ignore,
        b"t" => IsoTime,
        b"j" | b"jd" | b"julian" => Julian,
        b"d" | b"h" | b"m" | b"mm" | b"s" | b"y" | b"dow" | b"doy" | b"isodow" | b"isoyear" => {
            OtherUnit
        }
        b"epoch" => Epoch,
        b"infinity" => Late,
        b"-infinity" => Early,
        b"allballs" => Zulu,
        b"now" | b"today" | b"tomorrow" | b"yesterday" => Clock,
        b"dst" => Dst,
        _ => return None,
    })
}

/// Abbreviations are looked up before keywords; only the UTC ones are
/// known here (a session can change the rest with timezone_abbreviations).
pub(super) fn utc_abbrev(w: &[u8]) -> bool {
    matches!(w, b"utc" | b"gmt" | b"ut" | b"z" | b"zulu")
}
