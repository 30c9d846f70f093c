//! What SQL stores share whatever their dialect: the check of the names
//! they splice into statements, the decision on a table's recorded layout
//! version, and a record's columns.
//!
//! The SQL text stays in each store: only the logic that is the same in
//! every dialect lives here.
//!
//! ```
//! use session_core::sql::{Identifiers, Layout};
//!
//! const NAMES: Identifiers = Identifiers::new("mydb", 63).reserving("my_", "MyDB");
//! assert!(NAMES.check("table", "sessions").is_ok());
//! assert!(NAMES.check("table", "my_sessions").is_err());
//!
//! const LAYOUT: Layout = Layout::new("mydb", "session-store-mydb", 1);
//! assert!(!LAYOUT.check("\"sessions\"", None)?); // absent: create it
//! assert!(LAYOUT.check("\"sessions\"", Some(1))?); // known
//! assert!(LAYOUT.check("\"sessions\"", Some(2)).is_err()); // unknown
//! # Ok::<(), session_core::Error>(())
//! ```

use crate::{EncodedData, Error, Record, Result};

/// The rule for the names (tables, schemas) a SQL store interpolates into
/// its statements: an ASCII identifier `[A-Za-z][A-Za-z0-9_]*` of at most
/// the engine's length, without `__` (reserved for the store's own tables
/// and indexes), and, where the engine reserves a prefix for itself, not
/// starting with it (case-insensitively). A name is spliced into SQL only
/// after this check, and quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identifiers {
    backend: &'static str,
    max_len: usize,
    reserved: Option<(&'static str, &'static str)>,
}

impl Identifiers {
    /// Names of at most `max_len` characters; mistakes are
    /// [`Error::Config`] naming `backend`.
    #[must_use]
    pub const fn new(backend: &'static str, max_len: usize) -> Self {
        Self {
            backend,
            max_len,
            reserved: None,
        }
    }

    /// Also refuse names starting with `prefix` (lower case), which
    /// `engine` reserves for itself.
    #[must_use]
    pub const fn reserving(self, prefix: &'static str, engine: &'static str) -> Self {
        Self {
            reserved: Some((prefix, engine)),
            ..self
        }
    }

    /// Check `name`, a `what` (`"table"`, `"schema"`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] saying what is wrong with the name.
    pub fn check(&self, what: &str, name: &str) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::config(
                self.backend,
                format!("{what} name {name:?}: {reason}"),
            ))
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return bad("must not be empty"),
            Some(c) if !c.is_ascii_alphabetic() => return bad("must start with an ASCII letter"),
            Some(_) => {}
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return bad("may hold only ASCII letters, digits and '_'");
        }
        if name.len() > self.max_len {
            return bad(&format!("must be at most {} characters", self.max_len));
        }
        if name.contains("__") {
            return bad(
                "must not contain \"__\" (reserved for the store's own tables and indexes)",
            );
        }
        if let Some((prefix, engine)) = self.reserved
            && name.to_ascii_lowercase().starts_with(prefix)
        {
            return bad(&format!(
                "names starting with {prefix:?} are reserved by {engine}"
            ));
        }
        Ok(())
    }
}

/// The layout version a SQL store records for each of its tables (in a
/// registry table of its own), and the decision on what a registry says
/// when a store is built: a table not recorded is created (unless another
/// application's table of that name is in the way: [`foreign`](Self::foreign)),
/// one recorded at this version is used, and one recorded at any other
/// version is refused, never touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    backend: &'static str,
    package: &'static str,
    version: i64,
}

impl Layout {
    /// The layout `version` that `package` (the store's crate, named in the
    /// advice to upgrade) writes; mistakes are [`Error::Config`] naming
    /// `backend`.
    #[must_use]
    pub const fn new(backend: &'static str, package: &'static str, version: i64) -> Self {
        Self {
            backend,
            package,
            version,
        }
    }

    /// Decide on `table` (as it reads in SQL, quoted) from the version its
    /// registry row `recorded`: `Ok(true)` if recorded at this version,
    /// `Ok(false)` if not recorded (create it).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if it is recorded at another version.
    pub fn check(&self, table: &str, recorded: Option<i64>) -> Result<bool> {
        match recorded {
            None => Ok(false),
            Some(version) if version == self.version => Ok(true),
            Some(other) => Err(Error::config(
                self.backend,
                format!(
                    "table {table} has session layout version {other}, which this crate \
                     (layout {}) does not know: upgrade {} or use another namespace",
                    self.version, self.package
                ),
            )),
        }
    }

    /// The error for `table` (as it reads in SQL), which exists but is not
    /// a session table: the registry does not list it and it is not this
    /// store's shape.
    #[must_use]
    pub fn foreign(&self, table: &str) -> Error {
        Error::config(
            self.backend,
            format!(
                "table {table} exists but is not a session table (the store's registry does not \
                 list it): choose another namespace"
            ),
        )
    }
}

/// The columns of a record, encoded for binding: the data as JSON text,
/// the times in Unix milliseconds, the version. A row is read back into a
/// record with [`Header::record`](crate::header::Header::record).
#[derive(Clone, Debug)]
pub struct Columns {
    /// The data, as [`Record::encode_data`] JSON text.
    pub data: EncodedData,
    /// `created_at` in milliseconds.
    pub created_at: i64,
    /// `expires_at` in milliseconds.
    pub expires_at: i64,
    /// The version.
    pub version: u64,
    /// The principal's name, `NULL` for none: the indexed column of
    /// [`PrincipalIndex`](crate::PrincipalIndex). Read back with
    /// [`Principal::stored`](crate::Principal::stored).
    pub principal: Option<crate::Principal>,
}

impl Columns {
    /// The columns of `record`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the data cannot be encoded.
    pub fn of(record: &Record) -> Result<Self> {
        Ok(Self {
            data: Record::encode_data(&record.data)?,
            created_at: record.created_at.as_millis(),
            expires_at: record.expires_at.as_millis(),
            version: record.version,
            principal: record.principal.clone(),
        })
    }

    /// The version for an engine whose largest integer is signed
    /// ([`version_to_signed`]).
    #[must_use]
    pub fn signed_version(&self) -> i64 {
        version_to_signed(self.version)
    }
}

/// A version as the `i64` of an engine without unsigned 64-bit integers
/// (PostgreSQL's `BIGINT`, SQLite's `INTEGER`): stored bit for bit, so the
/// whole `u64` range round-trips (`u64::MAX` is stored as `-1`). A version is
/// only ever compared for equality, so the order does not matter.
#[must_use]
pub fn version_to_signed(version: u64) -> i64 {
    i64::from_ne_bytes(version.to_ne_bytes())
}

/// Inverse of [`version_to_signed`].
#[must_use]
pub fn version_from_signed(version: i64) -> u64 {
    u64::from_ne_bytes(version.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, reason = "tests")]

    use super::*;

    const NAMES: Identifiers = Identifiers::new("test", 63).reserving("pg_", "PostgreSQL");

    #[test]
    fn identifiers_are_ascii_without_double_underscores_or_reserved_prefixes() {
        for good in ["sessions", "conf_0123abcd", "A1_b", &"a".repeat(63)] {
            assert!(NAMES.check("table", good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "1abc",
            "_x",
            "a-b",
            "a b",
            "a\"b",
            "a`b",
            "x; DROP TABLE y",
            "a__b",
            "pg_catalog",
            "PG_x",
            "é",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(NAMES.check("table", bad), Err(Error::Config { .. })),
                "{bad:?} accepted"
            );
        }
        let unreserved = Identifiers::new("test", 64);
        assert!(unreserved.check("table", "pg_x").is_ok());
        assert!(unreserved.check("table", &"a".repeat(64)).is_ok());
        let Err(Error::Config { reason, .. }) = NAMES.check("schema", "pg_x") else {
            panic!("a reserved prefix accepted");
        };
        assert_eq!(
            reason,
            "schema name \"pg_x\": names starting with \"pg_\" are reserved by PostgreSQL"
        );
    }

    #[test]
    fn a_layout_is_created_when_absent_used_when_known_refused_otherwise() {
        let layout = Layout::new("test", "session-store-test", 3);
        assert!(!layout.check("`t`", None).unwrap_or(true));
        assert!(layout.check("`t`", Some(3)).unwrap_or(false));
        for other in [2, 4, -1] {
            let Err(Error::Config { reason, .. }) = layout.check("`t`", Some(other)) else {
                panic!("version {other} accepted");
            };
            assert!(reason.contains(&format!("version {other}")), "{reason}");
            assert!(reason.contains("session-store-test"), "{reason}");
        }
        assert!(matches!(layout.foreign("`t`"), Error::Config { .. }));
    }

    #[test]
    fn versions_round_trip_through_signed_integers_bit_for_bit() {
        for v in [0, 1, u64::MAX >> 1, 1 << 63, u64::MAX] {
            assert_eq!(version_from_signed(version_to_signed(v)), v);
        }
        assert_eq!(version_to_signed(u64::MAX), -1);
    }
}
