//! The schema, as an append-only list of migrations applied in order from an empty file.
//!
//! `PRAGMA user_version` records how many have run. Never edit a released migration: add one.

use rusqlite::Connection;

use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: the home's facts, and resources as ARM documents.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE resources (
        key        TEXT PRIMARY KEY,   -- lower-cased ARM id
        kind       TEXT NOT NULL,
        group_key  TEXT NOT NULL,      -- lower-cased resource group name
        parent_key TEXT,               -- lower-cased id of the parent resource, for nested kinds
        id         TEXT NOT NULL,      -- the id as created (canonical casing)
        name       TEXT NOT NULL,
        doc        TEXT NOT NULL,      -- the ARM document, JSON
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX resources_by_parent ON resources(parent_key, kind);
    CREATE INDEX resources_by_group ON resources(group_key, kind);
    CREATE INDEX resources_by_kind ON resources(kind);",
    // 2: long-running operations (`Azure-AsyncOperation` documents).
    "CREATE TABLE operations (
        id         TEXT PRIMARY KEY,
        target     TEXT NOT NULL,      -- lower-cased id of the resource it acts on
        doc        TEXT NOT NULL,      -- the OperationStatus document, JSON
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX operations_by_target ON operations(target, created_ms);",
    // 3: scale-set instances, the home's loopback addresses, counters, and the decision log.
    "CREATE TABLE instances (
        scale_set   TEXT NOT NULL,     -- lower-cased scale set id
        instance_id INTEGER NOT NULL,
        doc         TEXT NOT NULL,     -- the instance record, JSON
        PRIMARY KEY (scale_set, instance_id)
    );
    CREATE TABLE addresses (
        address TEXT PRIMARY KEY,      -- an IPv4 address in the home's block
        owner   TEXT NOT NULL          -- what holds it (an instance, a load balancer frontend)
    );
    CREATE UNIQUE INDEX addresses_by_owner ON addresses(owner);
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        scale_set   TEXT NOT NULL,
        instance_id INTEGER,
        at_ms       INTEGER NOT NULL,
        doc         TEXT NOT NULL      -- what was decided and why, JSON
    );
    CREATE INDEX events_by_instance ON events(scale_set, instance_id, seq);",
    // 4: rolling upgrades, persisted so that one survives a kill -9 of the control plane.
    "CREATE TABLE upgrades (
        id         TEXT PRIMARY KEY,   -- its operation's id
        scale_set  TEXT NOT NULL,      -- lower-cased scale set id
        doc        TEXT NOT NULL,      -- the upgrade record, JSON
        active     INTEGER NOT NULL,   -- 1 until it reaches Completed, Cancelled or Faulted
        started_ms INTEGER NOT NULL
    );
    CREATE INDEX upgrades_by_set ON upgrades(scale_set, started_ms);",
];

/// The schema version this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn run(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > LATEST {
        return Err(StoreError::TooNew { found: current, known: LATEST });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(current).unwrap_or(0)) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
