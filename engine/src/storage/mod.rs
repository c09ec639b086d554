//! Storage: the lakehouse and its Delta tables, below any SQL.
//!
//! The lakehouse root, its object stores and table names ([`lakehouse`]); writing query
//! results into Delta tables ([`write`](mod@write), and appends with a writer per core,
//! [`partitioned_append`]) with types every Delta reader holds
//! ([`delta_types`]) and without lossy casts ([`lossless`]); table and column descriptions in
//! the Delta metadata ([`descriptions`]); the lineage metadata of every
//! commit ([`commit`]); table listings and history ([`inspect`]); quarantine tables
//! ([`quarantine`]); the names of the tables lakescore writes ([`system_tables`]); removing
//! files no version needs ([`vacuum`]); and content hashes
//! ([`hashing`]). Nothing here imports [`crate::sql`] or [`crate::ml`].

pub mod commit;
pub mod delta_types;
pub mod descriptions;
pub mod hashing;
pub mod inspect;
pub mod lakehouse;
pub mod lossless;
pub mod partitioned_append;
pub mod quarantine;
pub mod system_tables;
pub mod vacuum;
pub mod write;
