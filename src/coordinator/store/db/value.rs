//! Values crossing the store's boundary, the same for both engines: what a
//! parameter binds ([`ToSql`]) and what a column reads into ([`FromSql`]).
//! Conversions are as lenient as SQLite's (an integer column reads as a
//! `bool`, a `u64` or an `i32`), so a query reads the same on PostgreSQL,
//! whose drivers would otherwise insist on the exact column type.

/// One value, borrowed from a parameter or a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl ValueRef<'_> {
    fn kind(&self) -> &'static str {
        match self {
            ValueRef::Null => "NULL",
            ValueRef::Integer(_) => "an integer",
            ValueRef::Real(_) => "a real",
            ValueRef::Text(_) => "text",
            ValueRef::Blob(_) => "a blob",
        }
    }
}

/// A parameter.
pub trait ToSql {
    fn to_sql(&self) -> ValueRef<'_>;
}

/// A column's value read into a Rust type; the error says what was found.
pub trait FromSql: Sized {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String>;
}

fn wrong<T>(v: ValueRef<'_>, want: &str) -> Result<T, String> {
    Err(format!("expected {want}, found {}", v.kind()))
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> ValueRef<'_> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> ValueRef<'_> {
        match self {
            Some(v) => v.to_sql(),
            None => ValueRef::Null,
        }
    }
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> ValueRef<'_> {
                // u64/usize above i64::MAX never occur (sizes, counts).
                ValueRef::Integer(*self as i64)
            }
        }
        impl FromSql for $t {
            fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
                match v {
                    ValueRef::Integer(n) => <$t>::try_from(n)
                        .map_err(|_| format!("integer {n} out of range for {}", stringify!($t))),
                    _ => wrong(v, "an integer"),
                }
            }
        }
    )*};
}
int_to_sql!(i64, i32, u32, u64, usize, u8, i16);

impl ToSql for bool {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Integer(*self as i64)
    }
}

impl FromSql for bool {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Integer(n) => Ok(n != 0),
            _ => wrong(v, "a boolean"),
        }
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Real(*self)
    }
}

impl FromSql for f64 {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(n) => Ok(n as f64),
            _ => wrong(v, "a number"),
        }
    }
}

impl ToSql for str {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl ToSql for String {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Text(self)
    }
}

impl FromSql for String {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(s) => Ok(s.to_string()),
            ValueRef::Blob(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
            _ => wrong(v, "text"),
        }
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> ValueRef<'_> {
        ValueRef::Blob(self)
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            ValueRef::Text(s) => Ok(s.as_bytes().to_vec()),
            _ => wrong(v, "a blob"),
        }
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_sql(v).map(Some),
        }
    }
}

/// A statement's parameters: `[]`, an array of one type, or `params![…]`.
pub trait Params {
    fn values(&self) -> Vec<ValueRef<'_>>;
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        Vec::new()
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<ValueRef<'_>> {
        self.iter().map(|p| p.to_sql()).collect()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Vec<ValueRef<'_>> {
                self.iter().map(|p| p.to_sql()).collect()
            }
        }
        impl<T: ToSql> Params for &[T; $n] {
            fn values(&self) -> Vec<ValueRef<'_>> {
                self.iter().map(|p| p.to_sql()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// Parameters of mixed types: `params![id, 3, None::<String>]`.
#[macro_export]
#[doc(hidden)]
macro_rules! __store_params {
    () => {
        &[] as &[&dyn $crate::coordinator::store::db::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::coordinator::store::db::ToSql),+] as &[&dyn $crate::coordinator::store::db::ToSql]
    };
}
pub use crate::__store_params as params;
