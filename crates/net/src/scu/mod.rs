//! Service class users: one small client per service, over an established [`crate::Association`].

mod echo;

pub use echo::echo;
