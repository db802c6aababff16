//! asgd library facade.
