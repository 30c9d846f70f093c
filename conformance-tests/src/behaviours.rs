//! One `pub async fn` per rule of the store contract, grouped by topic.
//!
//! Every behaviour opens its stores through [`StoreFactory`](crate::StoreFactory)
//! on fresh namespaces and clears them when it is done.

mod basic;
mod concurrency;
mod expiry;
mod listing;
mod paging;
mod principals;
mod update;

pub use basic::*;
pub use concurrency::*;
pub use expiry::*;
pub use listing::*;
pub use paging::*;
pub use principals::*;
pub use update::*;
