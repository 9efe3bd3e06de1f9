//! A payment card number, as the shop accepts it: 12 to 19 digits, written with
//! optional spaces or dashes (at most 32 characters in all).
//!
//! Orders checks it when an order is placed, before anything is written, and payments
//! when it authorizes; both with [`CardNumber::parse`], so an order can never be
//! created with a card its payment will refuse. There is no check digit (Luhn) rule:
//! the shop's test cards and its declined test card are judged by payments alone.

/// A card number that passed [`CardNumber::parse`]: its digits only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardNumber(String);

/// Why a card number was refused; its message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("card: expected 12 to 19 digits (spaces and dashes allowed)")]
pub struct InvalidCard;

/// Fewest and most digits of a card number.
const DIGITS: std::ops::RangeInclusive<usize> = 12..=19;
/// Longest card number as written, separators included.
const MAX_WRITTEN: usize = 32;

impl CardNumber {
    pub fn parse(written: &str) -> Result<CardNumber, InvalidCard> {
        if written.len() > MAX_WRITTEN {
            return Err(InvalidCard);
        }
        let mut digits = String::with_capacity(*DIGITS.end());
        for c in written.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(InvalidCard),
            }
        }
        if !DIGITS.contains(&digits.len()) {
            return Err(InvalidCard);
        }
        Ok(CardNumber(digits))
    }

    /// The digits, without separators.
    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn into_digits(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_to_nineteen_digits_with_optional_separators() {
        for (written, digits) in [
            ("424242424242", "424242424242"),
            ("4242 4242-4242 4242", "4242424242424242"),
            ("4242-4242-4242-4242-424", "4242424242424242424"),
        ] {
            assert_eq!(CardNumber::parse(written).unwrap().digits(), digits);
        }
    }

    /// Issue 13: orders took 20 to 32 digits, which payments then refused.
    #[test]
    fn more_than_nineteen_digits_is_refused() {
        for digits in 20..=32 {
            let card = "4".repeat(digits);
            assert_eq!(
                CardNumber::parse(&card),
                Err(InvalidCard),
                "{digits} digits"
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let long = format!("{}4242", " ".repeat(29));
        for bad in [
            "",
            "42424242424",
            "4242x4242x4242",
            "４２４２４２４２４２４２",
            &long,
        ] {
            assert_eq!(CardNumber::parse(bad), Err(InvalidCard), "{bad:?}");
        }
    }
}
