//! Input checks shared by the services. Lengths count Unicode characters, as the contract
//! says, and every failure names the offending field.

use crate::error::{AppError, AppResult};

/// Trims `value` and requires `min..=max` characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> AppResult<String> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars < min {
        return Err(if min == 1 {
            AppError::validation(field, format!("{field} must not be empty"))
        } else {
            AppError::validation(field, format!("{field} must be at least {min} characters"))
        });
    }
    if chars > max {
        return Err(AppError::validation(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(AppError::validation(
            field,
            format!("{field} contains control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// A normalised (trimmed, lower-cased) email address of plausible shape.
pub fn email(value: &str) -> AppResult<String> {
    let email = value.trim().to_lowercase();
    let invalid = || AppError::validation("email", "email is not a valid address");
    if email.chars().count() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(email)
}

/// Passwords: at least 8 characters; the upper bound only keeps hashing cost bounded.
pub fn password(value: &str) -> AppResult<()> {
    let chars = value.chars().count();
    if chars < 8 {
        return Err(AppError::validation(
            "password",
            "password must be at least 8 characters",
        ));
    }
    if chars > 1024 {
        return Err(AppError::validation(
            "password",
            "password must be at most 1024 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(text("title", "ééééé", 1, 5).is_ok());
        assert!(text("title", "éééééé", 1, 5).is_err());
        assert_eq!(text("title", "  hi  ", 1, 5).unwrap(), "hi");
        assert!(text("title", "   ", 1, 5).is_err());
        assert!(text("title", "a\u{0}b", 1, 5).is_err());
    }

    #[test]
    fn normalises_emails() {
        assert_eq!(email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "a b@example.com",
            "ada@localhost",
            "a@@b.c",
        ] {
            assert!(email(bad).is_err(), "{bad} accepted");
        }
    }
}
