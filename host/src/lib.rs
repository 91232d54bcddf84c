#![allow(clippy::disallowed_methods)]
