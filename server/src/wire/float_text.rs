//! `real` and `double precision` values written as PostgreSQL writes them (`float4out`,
//! `float8out`).
//!
//! With `extra_float_digits` above 0 (PostgreSQL's default is 1; drivers set 3) a value is
//! written with the fewest digits that read back as the same value; at 0 or below, rounded to
//! 15 significant digits for a double (6 for a real) plus `extra_float_digits`. A value whose
//! decimal exponent is below -4, or at least 15 for a double (6 for a real; the number of
//! digits, when rounded), is written with an exponent that has a sign and at least two digits
//! (`1e+100`, `1.5e-05`); any other without one, and without a trailing `.0` (`1200`,
//! `0.001`). The special values are `NaN`, `Infinity` and `-Infinity`. (pgwire writes
//! `1200.0`, `1e100` and `inf`.)

use std::fmt::{self, Write};

/// Room for any value's text: a sign, 17 digits, a point, up to 15 zeros, an exponent.
const CAPACITY: usize = 48;

/// A float's text as PostgreSQL writes it, held on the stack.
pub struct FloatText {
    bytes: [u8; CAPACITY],
    len: usize,
}

/// `f64` (`double precision`) or `f32` (`real`).
trait Float: fmt::LowerExp + Copy {
    /// Digits the type holds exactly (C's `DBL_DIG`, `FLT_DIG`).
    const EXACT_DIGITS: i32;

    /// `NaN`, `Infinity` or `-Infinity`, for those values.
    fn special(self) -> Option<&'static str>;
}

impl Float for f64 {
    const EXACT_DIGITS: i32 = 15;

    fn special(self) -> Option<&'static str> {
        special_text(self.is_nan(), self.is_infinite(), self.is_sign_negative())
    }
}

impl Float for f32 {
    const EXACT_DIGITS: i32 = 6;

    fn special(self) -> Option<&'static str> {
        special_text(self.is_nan(), self.is_infinite(), self.is_sign_negative())
    }
}

/// PostgreSQL's text for a NaN or an infinity.
fn special_text(nan: bool, infinite: bool, negative: bool) -> Option<&'static str> {
    match (nan, infinite, negative) {
        (true, _, _) => Some("NaN"),
        (false, true, false) => Some("Infinity"),
        (false, true, true) => Some("-Infinity"),
        (false, false, _) => None,
    }
}

impl FloatText {
    /// `value`, a `double precision`, written with the session's `extra_float_digits`.
    pub fn double(value: f64, extra_float_digits: i8) -> Self {
        Self::written(value, extra_float_digits)
    }

    /// `value`, a `real`, written with the session's `extra_float_digits`.
    pub fn real(value: f32, extra_float_digits: i8) -> Self {
        Self::written(value, extra_float_digits)
    }

    fn written<F: Float>(value: F, extra_float_digits: i8) -> Self {
        let mut text = Self::empty();
        if let Some(special) = value.special() {
            let _ = text.write_str(special);
            return text;
        }
        // Rust writes the fewest digits that read back, or rounds to a precision.
        let exponent_from = if extra_float_digits > 0 {
            let _ = write!(text, "{value:e}");
            F::EXACT_DIGITS
        } else {
            let digits = (F::EXACT_DIGITS + i32::from(extra_float_digits)).max(1);
            let after_point = usize::try_from(digits - 1).unwrap_or_default();
            let _ = write!(text, "{value:.after_point$e}");
            digits
        };
        text.laid_out(exponent_from)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    fn empty() -> Self {
        Self {
            bytes: [0; CAPACITY],
            len: 0,
        }
    }

    /// This text, Rust's exponent form (`-1.25e-7`), written PostgreSQL's way: with an exponent
    /// when it is below -4 or at least `exponent_from`, else without.
    fn laid_out(&self, exponent_from: i32) -> Self {
        let text = self.as_str();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(unsigned) => (true, unsigned),
            None => (false, text),
        };
        let (mantissa, exponent) = unsigned.split_once('e').unwrap_or((unsigned, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let mut digits = [0_u8; CAPACITY];
        let mut count = 0;
        for digit in mantissa.bytes().filter(u8::is_ascii_digit) {
            digits[count] = digit;
            count += 1;
        }
        while count > 1 && digits[count - 1] == b'0' {
            count -= 1;
        }
        let digits = &digits[..count];
        let mut out = Self::empty();
        if negative {
            out.push(b'-');
        }
        if exponent < -4 || exponent >= exponent_from {
            out.push(digits[0]);
            if digits.len() > 1 {
                out.push(b'.');
                out.extend(&digits[1..]);
            }
            let _ = write!(
                out,
                "e{}{:02}",
                if exponent < 0 { '-' } else { '+' },
                exponent.unsigned_abs()
            );
        } else if let Some(whole) = usize::try_from(exponent + 1)
            .ok()
            .filter(|&whole| whole > 0)
        {
            out.extend(&digits[..whole.min(digits.len())]);
            for _ in digits.len()..whole {
                out.push(b'0');
            }
            if digits.len() > whole {
                out.push(b'.');
                out.extend(&digits[whole..]);
            }
        } else {
            out.extend(b"0.");
            for _ in 1..exponent.unsigned_abs() {
                out.push(b'0');
            }
            out.extend(digits);
        }
        out
    }

    fn push(&mut self, byte: u8) {
        if self.len < CAPACITY {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.push(*byte);
        }
    }
}

impl Write for FloatText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.len + text.len();
        if end > CAPACITY {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::FloatText;

    #[test]
    fn doubles_are_written_as_postgresql_writes_them() {
        let cases = [
            (1200.0, "1200"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e100, "1e+100"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, text) in cases {
            assert_eq!(FloatText::double(value, 1).as_str(), text, "{value:e}");
        }
        // Rounded to 15 + extra_float_digits significant digits.
        assert_eq!(FloatText::double(0.1 + 0.2, 0).as_str(), "0.3");
        assert_eq!(FloatText::double(1.0 / 3.0, -5).as_str(), "0.3333333333");
        assert_eq!(FloatText::double(1e15, 0).as_str(), "1e+15");
        assert_eq!(FloatText::double(123456.0, -12).as_str(), "1.23e+05");
    }

    #[test]
    fn reals_are_written_as_postgresql_writes_them() {
        let cases = [
            (1.5_f32, "1.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.1, "0.1"),
            (f32::NAN, "NaN"),
        ];
        for (value, text) in cases {
            assert_eq!(FloatText::real(value, 1).as_str(), text, "{value:e}");
        }
        assert_eq!(FloatText::real(1.0 / 3.0, 0).as_str(), "0.333333");
    }
}
