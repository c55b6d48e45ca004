//! The `Range` header, single ranges only (RFC 9110 §14). A header that is not a well-formed
//! `bytes` range, or that asks for several ranges, is ignored and the whole file served —
//! the RFC allows that, and multipart/byteranges answers are rarely what a client wants.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    Full,
    /// Inclusive byte offsets within the file.
    Partial {
        start: u64,
        end: u64,
    },
    /// 416, with `Content-Range: bytes */size`.
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ranged::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ranged::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            None => Ranged::Full,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if size == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            None => Ranged::Full,
            Some(start) if start >= size => Ranged::Unsatisfiable,
            Some(start) => Ranged::Partial {
                start,
                end: size - 1,
            },
        },
        // `a-b`, with b clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    Ranged::Unsatisfiable
                } else {
                    Ranged::Partial {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => Ranged::Full,
        },
        (true, true) => Ranged::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(header: &str, size: u64) -> Ranged {
        parse(Some(header), size)
    }

    #[test]
    fn single_ranges_in_every_form() {
        assert_eq!(p("bytes=0-0", 10), Ranged::Partial { start: 0, end: 0 });
        assert_eq!(p("bytes=5-", 10), Ranged::Partial { start: 5, end: 9 });
        assert_eq!(p("bytes=-3", 10), Ranged::Partial { start: 7, end: 9 });
        assert_eq!(p("bytes=-30", 10), Ranged::Partial { start: 0, end: 9 });
        assert_eq!(p("bytes=2-999", 10), Ranged::Partial { start: 2, end: 9 });
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable() {
        assert_eq!(p("bytes=10-", 10), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=10-20", 10), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=-0", 10), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        for header in [
            "bytes=abc",
            "items=0-1",
            "bytes=5-2",
            "bytes=-",
            "bytes=0-1,4-5",
            "bytes=+1-2",
        ] {
            assert_eq!(p(header, 10), Ranged::Full, "{header}");
        }
        assert_eq!(parse(None, 10), Ranged::Full);
    }
}
