//! Service class users: one small client per service, over an established [`crate::Association`]:
//! [`echo`] (Verification) and [`store`] (Storage).

mod echo;
pub mod store;

pub use echo::echo;
