//! Cursor pagination: `?cursor=&limit=` in, `{items, nextCursor}` out.
//!
//! A cursor is the opaque (base64url) id of the last item of the previous page. Ids are
//! UUIDv7, so "after this id" is stable under concurrent inserts: nothing is skipped or
//! repeated.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::{
    domain::Page,
    error::{AppError, AppResult},
};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 100 (default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: u32,
}

/// A list's `limit`: 1 to 100, 50 when absent.
pub fn limit(limit: Option<u32>) -> AppResult<u32> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::validation(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(limit)
}

/// Cuts rows fetched one past `limit` to a page; when more follow, the cursor is
/// `cursor_of` the page's last item. Every list pages this way; lists differ only in what
/// their cursor says (an opaque id, a message id for `before`, a search offset).
pub fn cut<T>(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(cursor_of)
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

impl PageQuery {
    pub fn parse(&self) -> AppResult<PageRequest> {
        let limit = limit(self.limit)?;
        let after = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => Some(
                decode(cursor)
                    .ok_or_else(|| AppError::validation("cursor", "cursor is not valid"))?,
            ),
        };
        Ok(PageRequest { after, limit })
    }
}

pub fn encode(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

pub fn decode(cursor: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    Uuid::from_slice(&bytes).ok()
}

impl PageRequest {
    /// How many rows to ask the store for: one more than the page, to learn whether another
    /// page follows.
    pub fn fetch(&self) -> u32 {
        self.limit + 1
    }

    /// Cuts the over-fetched rows to a page; `key` gives each item's cursor id.
    pub fn finish<T>(&self, rows: Vec<T>, key: impl Fn(&T) -> Uuid) -> Page<T> {
        cut(rows, self.limit, |r| encode(key(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_input_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(decode(&encode(id)), Some(id));
        assert!(
            PageQuery {
                cursor: Some("!!".into()),
                limit: None
            }
            .parse()
            .is_err()
        );
        assert!(
            PageQuery {
                cursor: None,
                limit: Some(0)
            }
            .parse()
            .is_err()
        );
        assert!(
            PageQuery {
                cursor: None,
                limit: Some(101)
            }
            .parse()
            .is_err()
        );
        assert_eq!(PageQuery::default().parse().unwrap().limit, 50);
    }

    #[test]
    fn a_full_page_carries_a_cursor_to_the_next() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let req = PageRequest {
            after: None,
            limit: 2,
        };
        let page = req.finish(ids.clone(), |u| *u);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor, Some(encode(ids[1])));
        let last = req.finish(ids[..2].to_vec(), |u| *u);
        assert_eq!(last.next_cursor, None);
    }
}
