//! `squashbox`: the command-line tool.

fn main() {}
